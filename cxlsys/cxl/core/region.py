"""drivers/cxl/core/region.c: struct cxl_region, its sysfs attributes, region creation and the cxl_region driver.

State machine IDLE < INTERLEAVE_ACTIVE < ACTIVE < RESET_PENDING < COMMIT, with
validation errors before state errors (cxl-core-abi.md §4).  Every refusal raises
``KernelError`` before anything is modified; the reason names the rule.

This module holds the region device and its attribute groups (``cxl_region_group``, the
``target0`` .. ``target15`` group, ``access0``/``access1``), the root decoder's
``create_*_region``/``delete_region`` stores, firmware region assembly (cxl_add_to_region) and
the cxl_region driver.  The rest of region.c is split by concern:

* :mod:`~cxlsys.cxl.core.region_state` - enum cxl_config_state, is_cxl_region();
* :mod:`~cxlsys.cxl.core.region_hpa` - HPA allocation (alloc_hpa, free_hpa);
* :mod:`~cxlsys.cxl.core.region_commit` - commit/decommit (cxl_region_decode_commit/reset);
* :mod:`~cxlsys.cxl.core.region_attach` - position math, target attach/detach, target setup.
"""

from __future__ import annotations

import errno
import uuid as uuidlib

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import RO, RW, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core import core
from cxlsys.cxl.core.pmem import devm_cxl_add_pmem_region
from cxlsys.cxl.core.port import CxlDevice, CxlEndpointDecoder, CxlRootDecoder
from cxlsys.cxl.core.region_attach import calc_hb as calc_hb  # re-exported: region.c's position math
from cxlsys.cxl.core.region_attach import (
    calc_interleave_pos,
    cxl_region_attach,
    cxl_region_detach,
    cxl_region_setup_targets,
)
from cxlsys.cxl.core.region_commit import cxl_region_decode_commit, region_decommit
from cxlsys.cxl.core.region_hpa import alloc_hpa, free_hpa
from cxlsys.cxl.core.region_state import ACTIVE, COMMIT, IDLE, INTERLEAVE_ACTIVE, MAX_TARGETS, STATE_NAMES
from cxlsys.dax.cxl import devm_cxl_add_dax_region
from cxlsys.errors import KernelError
from cxlsys.hazards import note_hazard
from cxlsys.kstrto import kstrtobool, kstrtoint, kstrtouint, kstrtoull, strip_newline, uuid_is_valid, vsscanf

# ------------------------------------------------------------------ attribute groups

def _target_attr(n: int) -> Attr:
    """TARGET_ATTR_RW(n): ``targetN``, the endpoint decoder at interleave position n."""
    return Attr(f"target{n}", 0o644, lambda cxlr: cxlr.target_show(n), lambda cxlr, buf: target_store(cxlr, n, buf))


# target_attrs[] and cxl_region_target_group: target0 .. target15, shown up to interleave_ways
cxl_region_target_group = AttrGroup([_target_attr(n) for n in range(MAX_TARGETS)],
                                    is_visible="cxl_region_target_visible")

ACCESS_COORDINATES = ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")


def _access_attr(n: int, coord: str) -> Attr:
    """ACCESS_ATTR(coord) of ``accessN/``: the region's performance coordinate (0 hides the file)."""
    return Attr(coord, 0o444, lambda cxlr: f"{cxlr.coords[n].get(coord, 0)}\n")


# access0: from the nearest initiator (ACCESS_COORDINATE_LOCAL), access1: the nearest CPU (ACCESS_COORDINATE_CPU)
access0_coordinate_group = AttrGroup([_access_attr(0, c) for c in ACCESS_COORDINATES], name="access0",
                                     is_visible="access0_coordinate_visible")
access1_coordinate_group = AttrGroup([_access_attr(1, c) for c in ACCESS_COORDINATES], name="access1",
                                     is_visible="access1_coordinate_visible")


@attrs.define(eq=False, kw_only=True)
class CxlRegion(CxlDevice):
    """struct cxl_region: ``regionN`` below its root decoder, with its configuration (cxl_region_params)."""

    devtype = "cxl_region"
    cxl_type = C.CXL_DEVICE_REGION
    id: int = 0
    root: CxlRootDecoder = attrs.field(repr=False)
    mode: str = C.MODE_PMEM
    uuid: bytes = bytes(16)
    interleave_ways: int = 0
    interleave_granularity: int = 0
    hpa_start: int | None = None
    hpa_size: int = 0
    state: int = IDLE
    targets: list = attrs.field(factory=lambda: [None] * MAX_TARGETS, repr=False)
    nr_targets: int = 0
    auto: bool = False
    needs_reset: bool = False
    bi: bool = False
    child: object | None = attrs.field(default=None, repr=False)      # dax_region / pmem_region
    leaked: bool = False
    id_released: bool = False
    # access coordinates (access0: any initiator, access1: CPU); a zero value hides the file
    coords: tuple = ({}, {})

    def release(self) -> None:
        if not self.id_released:
            self.sys.memregion_ida.free(self.id)
            self.id_released = True

    groups = (
        AttrGroup([RW("uuid"), RW("commit"), RW("interleave_ways"), RW("interleave_granularity"), RW("size"),
                   RO("resource"), RO("mode")], is_visible="cxl_region_visible"),     # cxl_region_group
        cxl_region_target_group,
        access0_coordinate_group,
        access1_coordinate_group,
    )

    def cxl_region_visible(self, attr: Attr) -> int:
        if attr.name == "uuid" and self.mode == C.MODE_RAM:
            return 0o444
        return attr.mode

    def cxl_region_target_visible(self, attr: Attr) -> int:
        """Only target0 .. target<interleave_ways - 1> exist."""
        return attr.mode if int(attr.name.removeprefix("target")) < self.interleave_ways else 0

    def access0_coordinate_visible(self, attr: Attr) -> int:
        return attr.mode if self.coords[0].get(attr.name, 0) else 0

    def access1_coordinate_visible(self, attr: Attr) -> int:
        return attr.mode if self.coords[1].get(attr.name, 0) else 0

    # ----- shows ----------------------------------------------------------------
    def uuid_show(self):
        if self.mode == C.MODE_RAM:
            return "\n"
        return f"{uuidlib.UUID(bytes=self.uuid)}\n"

    def commit_show(self):
        return f"{int(self.state >= COMMIT)}\n"

    def interleave_ways_show(self):
        return f"{self.interleave_ways}\n"

    def interleave_granularity_show(self):
        return f"{self.interleave_granularity}\n"

    def size_show(self):
        return f"{self.hpa_size:#x}\n" if self.hpa_size else "0x0\n"

    def resource_show(self):
        return f"{self.hpa_start:#x}\n" if self.hpa_start is not None else "0xffffffffffffffff\n"

    def mode_show(self):
        return f"{self.mode}\n"

    def target_show(self, n: int):
        if n >= self.interleave_ways:
            raise KernelError(errno.ENXIO, f"{self.name}: target{n} beyond interleave_ways")
        t = self.targets[n]
        return f"{t.name}\n" if t is not None else "\n"

    # ----- stores ------------------------------------------------------------------
    def uuid_store(self, buf: str):
        if self.mode == C.MODE_RAM:
            raise KernelError(errno.EACCES, f"{self.name}: uuid is read-only on ram regions")
        count = getattr(buf, "count_", len(buf))
        if count != 37:
            raise KernelError(errno.EINVAL,
                              f"{self.name}: uuid: write exactly 36 characters and a newline ({count} bytes given)")
        u = uuid_parse(buf[:36])
        if u is None:
            raise KernelError(errno.EINVAL, f"{self.name}: uuid: {buf[:36]!r} is not a UUID")
        if u.int == 0:
            raise KernelError(errno.EINVAL, f"{self.name}: uuid: the null uuid is not allowed")
        if u.bytes == self.uuid:
            return
        if self.state >= ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: uuid: region is {STATE_NAMES[self.state]}")
        for other in all_regions(self.sys):
            if other is not self and other.uuid == u.bytes:
                raise KernelError(errno.EBUSY, f"{self.name}: uuid: already used by {other.name}")
        self.uuid = u.bytes

    def interleave_ways_store(self, buf: str):
        val = kstrtouint(buf)
        try:
            C.ways_to_eiw(val)
        except KernelError:
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_ways {val} is not a valid way count")
        rw = self.root.interleave_ways
        q, r = divmod(val, rw)
        if r or q & (q - 1) or q == 0:
            raise KernelError(errno.EINVAL,
                              f"{self.name}: interleave_ways {val} is not {self.root.name} ways ({rw}) x 2^k")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY,
                              f"{self.name}: interleave_ways: region is {STATE_NAMES[self.state]} (free size first)")
        self.interleave_ways = val

    def interleave_granularity_store(self, buf: str):
        val = kstrtoint(buf)
        if val < 256 or val > 16384 or val & (val - 1):
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_granularity {val} not a power of 2 in 256..16384")
        if self.root.interleave_ways > 1 and val != self.root.interleave_granularity:
            raise KernelError(errno.EINVAL, f"{self.name}: interleave_granularity {val} != {self.root.name} "
                              f"granularity {self.root.interleave_granularity}")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: interleave_granularity: region is {STATE_NAMES[self.state]}")
        self.interleave_granularity = val

    def size_store(self, buf: str):
        val = kstrtoull(buf)
        if val == 0:
            if self.hpa_start is None:
                return
            if self.state >= ACTIVE:
                raise KernelError(errno.EBUSY, f"{self.name}: size: region is {STATE_NAMES[self.state]}")
            free_hpa(self)
            return
        if self.hpa_start is not None:
            if self.hpa_size == val:
                return
            raise KernelError(errno.EBUSY,
                              f"{self.name}: size: HPA already allocated ({self.hpa_size:#x}), write 0 first")
        if self.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{self.name}: size: region is {STATE_NAMES[self.state]}")
        if not self.interleave_ways or not self.interleave_granularity:
            raise KernelError(errno.ENXIO, f"{self.name}: size: set interleave_ways and interleave_granularity first")
        if self.mode == C.MODE_PMEM and self.uuid == bytes(16):
            raise KernelError(errno.ENXIO, f"{self.name}: size: set uuid first")
        if val % (C.SZ_256M * self.interleave_ways):
            raise KernelError(errno.EINVAL,
                              f"{self.name}: size {val:#x} not a multiple of 256MiB x {self.interleave_ways} ways")
        alloc_hpa(self, val)

    def commit_store(self, buf: str):
        commit = kstrtobool(buf)
        if commit and self.state >= COMMIT:
            return
        if not commit and self.state < COMMIT:
            return
        if commit and self.state < ACTIVE:
            raise KernelError(errno.ENXIO, f"{self.name}: commit: region is {STATE_NAMES[self.state]}, not active "
                              "(targets missing?)")
        if commit:
            cxl_region_decode_commit(self)
            self.state = COMMIT
            self.needs_reset = False
        else:
            region_decommit(self)


def uuid_parse(text: str):
    """lib/uuid.c uuid_parse() (:func:`cxlsys.kstrto.uuid_is_valid`): the UUID the first 36
    characters spell (8-4-4-4-12 hex digits); None if malformed."""
    if not uuid_is_valid(text):
        return None
    return uuidlib.UUID(hex=text[:36].replace("-", ""))


def all_regions(sys):
    return [d for d in sys.cxl_bus.devices if isinstance(d, CxlRegion)]


def target_store(cxlr: CxlRegion, n: int, buf: str) -> None:
    """store_targetN(): an endpoint decoder's name attaches it at position n, an empty write detaches."""
    name = strip_newline(buf)
    if name == "":
        if n >= cxlr.interleave_ways:
            raise KernelError(errno.ENXIO, f"{cxlr.name}: target{n} beyond interleave_ways")
        cxl_region_detach(cxlr, n, by_user=True)
        return
    dev = cxlr.sys.cxl_bus.find_device(name)
    if dev is None:
        raise KernelError(errno.ENODEV, f"{cxlr.name}: target{n}: no device {name!r}")
    if not isinstance(dev, CxlEndpointDecoder):
        raise KernelError(errno.EINVAL, f"{cxlr.name}: target{n}: {name} is not an endpoint decoder")
    cxl_region_attach(cxlr, dev, n)


# ------------------------------------------------------------------ create/delete (the root decoder's files)

def create_region_store(root: CxlRootDecoder, buf: str, mode: str, bi: bool = False) -> None:
    """create_region_store(): ``sscanf(buf, "region%d\n", &id)`` must convert one int (white space
    and a ``-`` before the digits are taken, what follows them is not looked at), and ``id`` must be
    the next region id (the file's content): EBUSY otherwise."""
    got = vsscanf(buf, "region%d\n")
    if len(got) != 1:
        raise KernelError(errno.EINVAL, f"{root.name}: expected regionN, got {strip_newline(buf)!r}")
    rid = got[0]
    if rid != root.next_region_id:
        raise KernelError(errno.EBUSY,
                          f"{root.name}: region{rid} is not the next region id (region{root.next_region_id})")
    devm_create_region(root, rid, mode, bi=bi)


@core.export
def create_pmem_region_store(cxlrd: CxlRootDecoder, buf: str) -> None:
    create_region_store(cxlrd, buf, C.MODE_PMEM)


@core.export
def create_ram_region_store(cxlrd: CxlRootDecoder, buf: str) -> None:
    create_region_store(cxlrd, buf, C.MODE_RAM)


@core.export
def create_ram_bi_region_store(cxlrd: CxlRootDecoder, buf: str) -> None:
    create_region_store(cxlrd, buf, C.MODE_RAM, bi=True)


def devm_create_region(root: CxlRootDecoder, rid: int, mode: str, auto: bool = False, bi: bool = False) -> CxlRegion:
    """Register ``region<rid>`` below ``root``, unregistered with the root port's driver."""
    sys = root.sys
    if rid != root.next_region_id:
        raise KernelError(errno.EBUSY, f"{root.name}: region{rid} is not the next region id")
    new_id = sys.memregion_ida.alloc()
    root.next_region_id = new_id
    cxlr = CxlRegion(name=f"region{rid}", parent=root, sys=sys, bus=sys.cxl_bus, id=rid, root=root, mode=mode,
                     auto=auto, bi=bi)
    device_add(cxlr)
    root.port.devm_add_action(lambda: unregister_region(cxlr), f"region:{cxlr.name}")
    sys.klog.log(f"cxl_core {root.name}: created {cxlr.name} ({mode}{', bi' if bi else ''})", "debug")
    return cxlr


@core.export
def delete_region_store(root: CxlRootDecoder, buf: str) -> None:
    name = strip_newline(buf)
    cxlr = root.children.get(name)
    if not isinstance(cxlr, CxlRegion):
        raise KernelError(errno.ENODEV, f"{root.name}: delete_region: no region {name!r} under this decoder")
    root.port.devm_remove_action(f"region:{cxlr.name}")
    unregister_region(cxlr, by_user=True)


def unregister_region(cxlr: CxlRegion, *, by_user: bool = False) -> None:
    if not cxlr.registered:
        return
    root = cxlr.root
    sys = cxlr.sys
    if cxlr.driver is not None:
        cxlr.driver.release(cxlr)
    for i in range(cxlr.interleave_ways):
        if cxlr.targets[i] is not None:
            cxl_region_detach(cxlr, i, by_user=by_user)
    if cxlr.hpa_start is not None:
        cxlr.hpa_start, cxlr.hpa_size = None, 0
    # memregion id: hand the lower id back to the root decoder
    if cxlr.id < root.next_region_id and root.registered:
        sys.memregion_ida.free(root.next_region_id)
        root.next_region_id = cxlr.id
        cxlr.id_released = True
    device_del(cxlr)


# ------------------------------------------------------------------ auto regions

def cxl_add_to_region(cxled: CxlEndpointDecoder) -> None:
    """Assemble a region from a firmware-committed (auto) endpoint decoder."""
    sys = cxled.sys
    root = None
    for d in sys.cxl_bus.devices:
        if isinstance(d, CxlRootDecoder) and d.window_contains(cxled.hpa_start, cxled.hpa_size):
            root = d
            break
    if root is None:
        raise KernelError(errno.ENXIO, f"{cxled.name}: no root decoder covers {cxled.hpa_start:#x}")
    cxlr = None
    for r in root.children.values():
        if isinstance(r, CxlRegion) and r.hpa_start == cxled.hpa_start and r.hpa_size == cxled.hpa_size:
            cxlr = r
            break
    if cxlr is None:
        lo, hi = cxled.hpa_start, cxled.hpa_start + cxled.hpa_size
        over = [r for r in root.children.values() if isinstance(r, CxlRegion) and r.hpa_start is not None
                and r.hpa_start < hi and lo < r.hpa_start + r.hpa_size]
        if over:
            note_hazard(sys, "auto-region-overlaps",
                        f"{cxled.name}: firmware's {lo:#x}-{hi - 1:#x} overlaps {', '.join(r.name for r in over)}",
                        cxled, *over)
        cxlr = devm_create_region(root, root.next_region_id, cxled.mode, auto=True)
        cxlr.interleave_ways = cxled.interleave_ways
        cxlr.interleave_granularity = cxled.interleave_granularity
        cxlr.bi = cxled.bi
        alloc_hpa(cxlr, cxled.hpa_size, cxled.hpa_start)
    cxl_region_attach(cxlr, cxled, -1, auto=True)
    if cxlr.nr_targets < cxlr.interleave_ways or any(t is None for t in cxlr.targets[: cxlr.interleave_ways]):
        return          # not every position found yet (e.g. a member re-probed after a detach)
    # sort by calculated position, then verify the programming
    ts = sorted(cxlr.targets[: cxlr.interleave_ways], key=lambda t: calc_interleave_pos(cxlr, t))
    for i, t in enumerate(ts):
        cxlr.targets[i] = t
        t.pos = i
    cxl_region_setup_targets(cxlr, verify=True)
    cxlr.state = COMMIT
    sys.cxl_bus.probe_device(cxlr)


# ------------------------------------------------------------------ cxl_region driver

@attrs.define(eq=False, kw_only=True)
class CxlRegionDriver(Driver):
    """cxl_region_driver: cxl_region_probe() adds a committed region's pmem_region or dax_region."""

    name: str = "cxl_region"
    module: str = "cxl_core"

    def match(self, dev) -> bool:
        return isinstance(dev, CxlRegion)

    def probe(self, cxlr: Device) -> None:
        assert isinstance(cxlr, CxlRegion)      # match() accepts regions only
        if cxlr.state < COMMIT or cxlr.needs_reset:
            raise KernelError(errno.ENXIO,
                              f"{cxlr.name}: cannot bind: region is {STATE_NAMES[cxlr.state]}, commit it first")
        if cxlr.mode == C.MODE_PMEM:
            devm_cxl_add_pmem_region(cxlr)
        else:
            assert cxlr.hpa_start is not None   # a committed region has its HPA
            if cxlr.sys.hpa_is_online_ram(cxlr.hpa_start, cxlr.hpa_size):
                return
            devm_cxl_add_dax_region(cxlr)
