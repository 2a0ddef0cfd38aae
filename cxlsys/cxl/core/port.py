"""drivers/cxl/core/port.c: ports (root/port/endpoint), dports, decoders and their sysfs.

One id space (``cxl_port_ida``) names ``rootN``, ``portN`` and ``endpointN``;
decoders are ``decoder<port id>.<n>`` children of their port.  The lifetime rules
that the test suites observe are kept: ports are devm-registered on the device
whose driver created them, an endpoint going away detaches its memdev and may
delete an emptied switch port (``cxl_detach_ep``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.device import ADMIN_RO, RO, RW, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import core
from cxlsys.cxl.core.bi import bi_enable, bi_release
from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.errors import KernelError
from cxlsys.kernfs import pure
from cxlsys.kstrto import kstrtobool, sysfs_streq
from cxlsys.profile import BI_CREATE_ATTR, BI_DECODER_ATTR

if TYPE_CHECKING:  # pragma: no cover - forward declarations (region.py and hdm.py sit above this file)
    from cxlsys.cxl.core.hdm import HdmCap
    from cxlsys.cxl.core.region import CxlRegion


# --------------------------------------------------------------------------- bus

@attrs.define(eq=False, kw_only=True)
class CxlBus(Bus):
    """/sys/bus/cxl: adds the ``flush`` file (waits for the cxl_bus work queue)."""

    extra_files: tuple = ("flush",)

    @pure       # waits for queued work; the work itself bumps the generations
    def flush_store(self, buf: str) -> None:
        if not sysfs_streq(buf, "1"):
            raise KernelError(errno.EINVAL, f"cxl bus flush: expected 1, got {buf!r}")
        self.sys.flush_work()


@attrs.define(eq=False, kw_only=True)
class CxlDevice(Device):
    """A device on the cxl bus: devtype and modalias files, ``cxl:t<N>``."""

    show_devtype_file = True
    cxl_type = 0

    def modalias(self) -> str:
        return f"cxl:t{self.cxl_type}"


# ------------------------------------------------------------------------- dports

@attrs.define(eq=False)
class CxlDport:
    """struct cxl_dport: a downstream port of ``port``, named ``dport<port_id>`` there."""

    port_id: int
    dport_dev: Device
    port: "CxlPort"
    rch: bool = False

    @property
    def name(self) -> str:
        return self.dport_dev.name


# -------------------------------------------------------------------------- ports

@attrs.define(eq=False, kw_only=True)
class CxlPort(CxlDevice):
    devtype = "cxl_port"
    kind: str = "port"                    # root | port | endpoint
    port_id: int = 0
    uport: Device = attrs.field(repr=False)
    parent_dport: Optional[CxlDport] = attrs.field(default=None, repr=False)
    dports: dict = attrs.field(factory=dict, repr=False)       # port_id -> CxlDport (add order)
    decoders: dict = attrs.field(factory=dict, repr=False)     # decoder id -> CxlDecoder
    decoder_ida_used: set = attrs.field(factory=set, repr=False)
    commit_end: int = -1
    hdm_end: int = -1
    endpoints: dict = attrs.field(factory=dict, repr=False)    # memdev name -> memdev (cxl_ep)
    dead: bool = False
    regions: dict = attrs.field(factory=dict, repr=False)      # CxlRegion -> RegionRef (cxl_region_ref)
    hdm: Optional[HdmCap] = attrs.field(default=None, repr=False)   # HDM capability of the uport (firmware data)

    groups = (AttrGroup([RO("decoders_committed")]),)

    @property
    def cxl_type(self) -> int:  # type: ignore[override]
        return C.CXL_DEVICE_ROOT if self.kind == "root" else C.CXL_DEVICE_PORT

    @property
    def depth(self) -> int:
        d, p = 0, self
        while isinstance(p.parent, CxlPort):
            d += 1
            p = p.parent
        return d

    @property
    def parent_port(self) -> Optional["CxlPort"]:
        return self.parent if isinstance(self.parent, CxlPort) else None

    def root(self) -> "CxlPort":
        p = self
        while p.parent_port is not None:
            p = p.parent_port
        return p

    def release(self) -> None:
        self.sys.cxl_port_ida.free(self.port_id)

    def decoders_committed_show(self) -> str:
        return f"{self.commit_end + 1}\n"

    def links(self) -> dict:
        out = {"uport": self.uport}
        if self.parent_dport is not None:
            out["parent_dport"] = self.parent_dport.dport_dev
        for pid, dp in self.dports.items():
            out[f"dport{pid}"] = dp.dport_dev
        return out

    def find_dport_by_dev(self, dev: Device) -> Optional[CxlDport]:
        for dp in self.dports.values():
            if dp.dport_dev is dev:
                return dp
        return None


def port_name(kind: str, port_id: int) -> str:
    return {"root": "root", "endpoint": "endpoint"}.get(kind, "port") + str(port_id)


def devm_cxl_add_port(host: Device, uport: Device, parent_dport: Optional[CxlDport],
                      kind: Optional[str] = None, hdm: Optional[HdmCap] = None) -> CxlPort:
    """Register a port below ``parent_dport.port`` (or a root below ``uport``).

    The port is unregistered when ``host``'s driver is unbound.
    """
    sys = host.sys
    if kind is None:
        kind = "root" if parent_dport is None else ("endpoint" if isinstance(uport, CxlMemdev) else "port")
    pid = sys.cxl_port_ida.alloc()
    parent = uport if parent_dport is None else parent_dport.port
    port = CxlPort(name=port_name(kind, pid), parent=parent, sys=sys, bus=sys.cxl_bus,
                   kind=kind, port_id=pid, uport=uport, parent_dport=parent_dport, hdm=hdm)
    try:
        device_add(port)
    except KernelError:
        sys.cxl_port_ida.free(pid)
        raise
    host.devm_add_action(lambda: unregister_port(port), f"unregister:{port.name}")
    return port


def unregister_port(port: CxlPort) -> None:
    if not port.registered:
        return
    sys = port.sys
    device_del(port)
    if port.kind == "endpoint":
        memdev = port.uport
        bi_release(memdev)
        if getattr(memdev, "endpoint", None) is port:
            memdev.endpoint = None
        # the memdev loses its endpoint: detach it from cxl_mem (schedule_detach)
        sys.queue_work(lambda: memdev_detach(memdev))


def memdev_detach(memdev) -> None:
    if memdev.registered and memdev.driver is not None:
        memdev.driver.release(memdev)


def delete_switch_port(port: CxlPort, host: Device) -> None:
    host.devm_remove_action(f"unregister:{port.name}")
    unregister_port(port)


def cxl_port_add_dport(port: CxlPort, dport_dev: Device, port_id: int, host: Device, rch: bool = False) -> CxlDport:
    if port_id in port.dports:
        raise KernelError(errno.EBUSY, f"{port.name}: dport{port_id} already exists")
    dp = CxlDport(port_id, dport_dev, port, rch)
    # the dportN link (sysfs_create_link in the kernel): a new dict is a field set the tracker sees
    port.dports = {**port.dports, port_id: dp}

    def _remove():
        if port.dports.get(port_id) is dp:
            port.dports = {k: v for k, v in port.dports.items() if k != port_id}

    host.devm_add_action(_remove, f"dport:{port_id}")
    return dp


def find_cxl_port_by_uport(sys, uport: Device) -> Optional[CxlPort]:
    for d in sys.cxl_bus.devices:
        if isinstance(d, CxlPort) and d.uport is uport:
            return d
    return None


def find_dport(sys, dport_dev: Device) -> Optional[CxlDport]:
    """find_cxl_port(): the registered port that has ``dport_dev`` as a dport."""
    for d in sys.cxl_bus.devices:
        if isinstance(d, CxlPort):
            dp = d.find_dport_by_dev(dport_dev)
            if dp is not None:
                return dp
    return None


def cxl_detach_ep(memdev) -> None:
    """Drop ``memdev`` from every port on its path; delete switch ports it emptied."""
    for port in list(memdev.sys.cxl_bus.devices):
        if not isinstance(port, CxlPort) or port.kind != "port":
            continue
        if port.endpoints.pop(memdev.name, None) is None:
            continue
        parent = port.parent_port
        if (not port.dead and not port.endpoints and parent is not None
                and parent.kind != "root" and parent.driver is not None):
            port.dead = True
            delete_switch_port(port, parent)


# ----------------------------------------------------------------------- decoders

@attrs.define(eq=False, kw_only=True)
class CxlDecoder(CxlDevice):
    cxl_type = 0
    port: CxlPort = attrs.field(repr=False)
    id: int = 0
    hpa_start: int = 0
    hpa_size: int = 0
    interleave_ways: int = 1
    interleave_granularity: int = 256
    target_type: int = C.CXL_DECODER_HOSTONLYMEM
    flags: int = 0
    region: Optional["CxlRegion"] = attrs.field(default=None, repr=False)

    common = [ADMIN_RO("start"), RO("size"), RO("locked"), RO("interleave_granularity"), RO("interleave_ways")]

    def modalias(self) -> str:
        return "cxl:t0"

    @property
    def enabled(self) -> bool:
        return bool(self.flags & C.CXL_DECODER_F_ENABLE)

    def start_show(self) -> str:
        return f"{self.hpa_start:#x}\n" if self.hpa_start else "0x0\n"

    def size_show(self) -> str:
        return f"{self.hpa_size:#x}\n" if self.hpa_size else "0x0\n"

    def locked_show(self) -> str:
        return f"{int(bool(self.flags & C.CXL_DECODER_F_LOCK))}\n"

    def interleave_granularity_show(self) -> str:
        return f"{self.interleave_granularity}\n"

    def interleave_ways_show(self) -> str:
        return f"{self.interleave_ways}\n"

    def target_type_show(self) -> str:
        return "accelerator\n" if self.target_type == C.CXL_DECODER_DEVMEM else "expander\n"

    def region_show(self) -> str:
        return f"{self.region.name}\n" if self.region is not None else "\n"

    def hpa_end(self) -> int:
        return self.hpa_start + self.hpa_size - 1


def _target_list(targets, ways: int) -> str:
    out = []
    for i in range(ways):
        if i >= len(targets) or targets[i] is None:
            break
        out.append(str(targets[i].port_id))
    return ",".join(out) + "\n"


@attrs.define(eq=False, kw_only=True)
class CxlSwitchDecoder(CxlDecoder):
    devtype = "cxl_decoder_switch"
    nr_targets: int = 0
    targets: list = attrs.field(factory=list, repr=False)    # slot -> CxlDport | None

    groups = (AttrGroup(CxlDecoder.common + [RO("target_list"), RO("target_type"), RO("region")]),)

    def target_list_show(self) -> str:
        return _target_list(self.targets, self.interleave_ways)


@attrs.define(eq=False, kw_only=True)
class CxlRootDecoder(CxlSwitchDecoder):
    devtype = "cxl_decoder_root"
    qos_class: int = -1
    next_region_id: int = -1
    interleave_arithmetic: int = C.ARITH_MODULO
    xormaps: tuple = ()
    window_index: int = 0
    bi_capable: bool = False

    groups = (
        AttrGroup(CxlDecoder.common + [RO("target_list"), RO("cap_pmem"), RO("cap_ram"), RO("cap_type2"),
                                       RO("cap_type3"), RO("qos_class"),
                                       # region.c's attributes (SET_CXL_REGION_ATTR), stores linked via core.h
                                       Attr("create_pmem_region", 0o644, "create_region_show",
                                            core.create_pmem_region_store),
                                       Attr("create_ram_region", 0o644, "create_region_show",
                                            core.create_ram_region_store),
                                       Attr(BI_CREATE_ATTR, 0o644, "create_region_show",
                                            core.create_ram_bi_region_store),
                                       Attr("delete_region", 0o200, None, core.delete_region_store)],
                  is_visible="root_decoder_visible"),
    )

    def root_decoder_visible(self, attr: Attr) -> int:
        can_pmem = bool(self.flags & C.CXL_DECODER_F_PMEM) and bool(self.flags & C.CXL_DECODER_F_TYPE3)
        can_ram = bool(self.flags & C.CXL_DECODER_F_RAM) and bool(self.flags & C.CXL_DECODER_F_TYPE3)
        if attr.name == "create_pmem_region":
            return attr.mode if can_pmem else 0
        if attr.name == "create_ram_region":
            return attr.mode if can_ram else 0
        if attr.name == BI_CREATE_ATTR:
            return attr.mode if (can_ram and self.bi_capable and self.sys.profile.bi is not None) else 0
        if attr.name == "delete_region":
            return attr.mode if (can_pmem or can_ram) else 0
        return attr.mode

    def _cap(self, flag: int) -> str:
        return f"{int(bool(self.flags & flag))}\n"

    def cap_pmem_show(self):
        return self._cap(C.CXL_DECODER_F_PMEM)

    def cap_ram_show(self):
        return self._cap(C.CXL_DECODER_F_RAM)

    def cap_type2_show(self):
        return self._cap(C.CXL_DECODER_F_TYPE2)

    def cap_type3_show(self):
        return self._cap(C.CXL_DECODER_F_TYPE3)

    def qos_class_show(self):
        return f"{self.qos_class}\n"

    # the create_*_region files read the next region name; their stores are region.c's
    def create_region_show(self) -> str:
        return f"region{self.next_region_id}\n"

    def window_contains(self, start: int, size: int) -> bool:
        return self.hpa_start <= start and start + size <= self.hpa_start + self.hpa_size


@attrs.define(eq=False, kw_only=True)
class CxlEndpointDecoder(CxlDecoder):
    devtype = "cxl_decoder_endpoint"
    mode: str = C.MODE_NONE
    dpa_start: Optional[int] = None
    dpa_size: int = 0
    skip: int = 0
    auto: bool = False
    pos: int = -1
    bi: bool = False

    groups = (AttrGroup(CxlDecoder.common + [RO("target_type"),
                                             Attr("mode", 0o644, "mode_show", core.cxl_dpa_set_mode),
                                             RO("dpa_resource"),
                                             Attr("dpa_size", 0o644, "dpa_size_show", core.dpa_size_store),
                                             RO("region"), RW(BI_DECODER_ATTR, "bi_show", "bi_store")],
                        is_visible="endpoint_decoder_visible"),)

    def endpoint_decoder_visible(self, attr: Attr) -> int:
        if attr.name == BI_DECODER_ATTR:
            return attr.mode if self.sys.profile.bi is not None else 0
        return attr.mode

    def bi_show(self) -> str:
        return f"{int(self.bi)}\n"

    def bi_store(self, buf: str) -> None:
        prof = self.sys.profile.bi
        assert prof is not None       # the bi file exists only under a BI profile (endpoint_decoder_visible)
        val = kstrtobool(buf)
        if self.enabled:
            raise KernelError(prof.err_busy, f"{self.name}: bi: decoder is committed")
        if self.region is not None:
            raise KernelError(prof.err_busy, f"{self.name}: bi: decoder is in {self.region.name}")
        if val == self.bi:
            return
        if val:
            bi_enable(self.memdev)
        self.bi = val

    def mode_show(self) -> str:
        return f"{self.mode}\n"

    def dpa_resource_show(self) -> str:
        return f"{self.dpa_start:#x}\n" if self.dpa_start is not None else "0xffffffffffffffff\n"

    def dpa_size_show(self) -> str:
        return f"0x{self.dpa_size:016x}\n"

    @property
    def memdev(self):
        return self.port.uport


def ep_path(cxled: CxlEndpointDecoder) -> list:
    """Ports from the endpoint decoder's port up to, not including, the root (the walk of
    cxl_region_attach()/detach and the decoder commit)."""
    out = []
    p: Optional[CxlPort] = cxled.port
    while p is not None and p.kind != "root":
        out.append(p)
        p = p.parent_port
    return out


_Decoder = TypeVar("_Decoder", bound=CxlDecoder)


def add_decoder(port: CxlPort, cls: type[_Decoder], host: Optional[Device] = None, **kw: Any) -> _Decoder:
    """cxl_decoder_add(): name from the port's decoder ida, devm-registered on the port."""
    i = 0
    while i in port.decoder_ida_used:
        i += 1
    port.decoder_ida_used.add(i)
    dec = cls(name=f"decoder{port.port_id}.{i}", parent=port, sys=port.sys, bus=port.sys.cxl_bus, port=port, id=i, **kw)
    device_add(dec)
    port.decoders[i] = dec

    def _unregister():
        core.cxl_decoder_kill_region(dec)
        if getattr(dec, "dpa_start", None) is not None:
            # cxl_dpa_release(): the DPA reservation is devm on the port too, released with it
            dec.dpa_start, dec.dpa_size, dec.skip = None, 0, 0
            port.hdm_end -= 1
        device_del(dec)
        port.decoders.pop(i, None)
        port.decoder_ida_used.discard(i)

    (host or port).devm_add_action(_unregister, f"decoder:{dec.name}")
    return dec

