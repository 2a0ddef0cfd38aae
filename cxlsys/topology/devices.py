"""The host devices: ``[[host_bridge]]``, ``[[root_port]]``, ``[[switch]]`` (with its
``downstream`` ports) and ``[[memdev]]``, all in one namespace of device names."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import attrs

from cxlsys.topology.limits import limit
from cxlsys.topology.reader import SZ_256M, Kind, _num, _Reader

# HDM decoder counts the capability register can encode (CXL 3.x 8.2.4.20.1; kernel
# cxl_hdm_decoder_count()); 0 = no HDM decoder capability (passthrough port).
DECODER_COUNTS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
TARGET_COUNTS = (1, 2, 4, 8)
KINDS = ("platform", "pci")
FLITS = (68, 256)

_PCI_ROOT = re.compile(r"pci([0-9a-f]{4}):([0-9a-f]{2})")
_PCI_FN = re.compile(r"([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])")


@attrs.define
class _Dev:
    """One host device of the topology, for the cross-reference pass."""

    role: str            # host_bridge | root_port | switch | downstream | memdev | acpi
    where: str           # "memdev[2]"
    cfg: HostBridgeCfg | PortCfg | SwitchCfg | MemdevCfg | None      # None for the ACPI0017 device
    kind_given: str | None = None

    @property
    def node(self) -> HostBridgeCfg | PortCfg | SwitchCfg | MemdevCfg:
        """The config of any device but the ACPI0017 one."""
        assert self.cfg is not None, self.where
        return self.cfg

    @property
    def bridge(self) -> HostBridgeCfg:
        """The config of a ``host_bridge`` device."""
        assert isinstance(self.cfg, HostBridgeCfg), self.where
        return self.cfg


_ROLE_TEXT = {"host_bridge": "a host bridge", "root_port": "a root port", "switch": "a switch upstream port",
              "downstream": "a switch downstream port", "memdev": "a memdev", "acpi": "the ACPI0017 device"}


def claim(r: _Reader, devs: dict[str, _Dev], name: str, dev: _Dev) -> None:
    """Enter a device name into the namespace, refusing a second device of that name."""
    if name in devs:
        field = dev.where if dev.role == "acpi" else f"{dev.where}.name"
        r.err(field, f"device name {name!r} is already used by {devs[name].where}")
    devs[name] = dev


def check_decoders(r: _Reader, d: dict[str, Any], w: str, allow_passthrough: bool) -> None:
    if "decoders" in d:
        n = d["decoders"]
        ok = DECODER_COUNTS + ((0,) if allow_passthrough else ())
        if n not in ok:
            r.err(f"{w}.decoders", f"{_num(n)} HDM decoders cannot be encoded (one of "
                                   f"{', '.join(map(str, ok))}" + ("; 0 = passthrough" if allow_passthrough
                                                                    else "") + ")")
    if "targets" in d and d["targets"] not in TARGET_COUNTS:
        r.err(f"{w}.targets", f"{_num(d['targets'])} is not a valid HDM target count (1, 2, 4 or 8)")


# ----------------------------------------------------------------------- [[host_bridge]]

@attrs.define
class HostBridgeCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "uid": "uint", "kind": KINDS, "rch": "bool",
                                         "companion": ("physical_node", "firmware_node"), "decoders": "uint",
                                         "targets": "int", "parent": ("platform", "")}
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "uid")

    name: str
    uid: int
    kind: str = "platform"            # platform | pci
    rch: bool = False
    companion: str | None = None      # physical_node | firmware_node self-link
    decoders: int = 8
    targets: int = 2
    parent: str = "platform"          # directory under /sys/devices holding it ("" = top level)


def parse_host_bridges(r: _Reader, raw: list[Any], devs: dict[str, _Dev],
                       where: dict[int, str]) -> list[HostBridgeCfg]:
    host_bridges: list[HostBridgeCfg] = []
    for i, h in enumerate(raw):
        w = f"host_bridge[{i}]"
        d = r.table(h, w, HostBridgeCfg.FIELDS, required=HostBridgeCfg.REQUIRED)
        r.within(d["uid"], f"{w}.uid", 0, 0xFFFFFFFF, "ACPI _UID / CHBS UID is 32-bit")
        kind = d.setdefault("kind", "platform")
        if kind == "pci" and not _PCI_ROOT.fullmatch(d["name"]):
            r.err(f"{w}.name", f"{d['name']!r} is not a PCI host bridge name: the kernel names them "
                               "pciDDDD:BB (lowercase hex), e.g. pci0000:0c")
        if kind == "pci":
            if d.get("parent", "") != "":
                r.err(f"{w}.parent", "a pci host bridge is a top-level /sys/devices/pciDDDD:BB "
                                     "directory: use parent = \"\" (or leave it out)")
            d["parent"] = ""
            if "companion" in d:
                r.err(f"{w}.companion", "only platform host bridges (cxl_test) have a companion link")
        elif d.get("parent", "platform") != "platform":
            r.err(f"{w}.parent", "a platform host bridge lives under /sys/devices/platform: "
                                 "use parent = \"platform\" (or leave it out)")
        check_decoders(r, d, w, allow_passthrough=True)
        hb = HostBridgeCfg(**d)
        for o in host_bridges:
            if o.uid == hb.uid:
                r.err(f"{w}.uid", f"uid {hb.uid} is already used by {where[id(o)]} ({o.name})")
        claim(r, devs, hb.name, _Dev("host_bridge", w, hb, kind))
        where[id(hb)] = w
        host_bridges.append(hb)
    return host_bridges


# ----------------------------------------------------------------------- [[root_port]], downstream ports

@attrs.define
class PortCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "parent": "name", "port_id": "uint", "kind": KINDS,
                                         "flit": FLITS}
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "parent", "port_id")
    # a switch's downstream[] entry: its parent is the switch
    DOWNSTREAM_FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "port_id": "uint", "kind": KINDS, "flit": FLITS}
    DOWNSTREAM_REQUIRED: ClassVar[tuple[str, ...]] = ("name", "port_id")

    name: str
    parent: str
    port_id: int
    kind: str = "platform"
    flit: int = 68


def parse_root_ports(r: _Reader, raw: list[Any], devs: dict[str, _Dev], where: dict[int, str]) -> list[PortCfg]:
    root_ports: list[PortCfg] = []
    for i, h in enumerate(raw):
        w = f"root_port[{i}]"
        d = r.table(h, w, PortCfg.FIELDS, required=PortCfg.REQUIRED)
        r.within(d["port_id"], f"{w}.port_id", 0, limit("port_id"), "the kernel's int port_id")
        given = d.pop("kind", None)
        rp = PortCfg(**d)
        claim(r, devs, rp.name, _Dev("root_port", w, rp, given))
        where[id(rp)] = w
        root_ports.append(rp)
    return root_ports


# ----------------------------------------------------------------------- [[switch]]

@attrs.define
class SwitchCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "parent": "name", "kind": KINDS, "decoders": "uint",
                                         "targets": "int", "flit": FLITS, "downstream": "list"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "parent", "downstream")

    name: str
    parent: str
    kind: str = "platform"
    decoders: int = 8
    targets: int = 2
    flit: int = 68
    downstream: list[PortCfg] = attrs.field(factory=list)


def parse_switches(r: _Reader, raw: list[Any], devs: dict[str, _Dev], where: dict[int, str]) -> list[SwitchCfg]:
    switches: list[SwitchCfg] = []
    ports = 0
    for i, h in enumerate(raw):
        w = f"switch[{i}]"
        d = r.table(h, w, SwitchCfg.FIELDS, required=SwitchCfg.REQUIRED)
        check_decoders(r, d, w, allow_passthrough=True)
        given = d.pop("kind", None)
        raw_ds = d.pop("downstream")
        sw = SwitchCfg(**d)
        claim(r, devs, sw.name, _Dev("switch", w, sw, given))
        where[id(sw)] = w
        r.count(raw_ds, f"{w}.downstream", "downstream_ports")
        ports += len(raw_ds)
        if ports > limit("all_downstream_ports"):
            r.over(f"{w}.downstream", f"the switches up to this one have {ports} downstream ports",
                   "all_downstream_ports")
        for j, p in enumerate(raw_ds):
            wj = f"{w}.downstream[{j}]"
            pd = r.table(p, wj, PortCfg.DOWNSTREAM_FIELDS, required=PortCfg.DOWNSTREAM_REQUIRED)
            r.within(pd["port_id"], f"{wj}.port_id", 0, limit("port_id"), "the kernel's int port_id")
            pgiven = pd.pop("kind", None)
            dp = PortCfg(parent=sw.name, **pd)
            claim(r, devs, dp.name, _Dev("downstream", wj, dp, pgiven))
            where[id(dp)] = wj
            sw.downstream.append(dp)
        switches.append(sw)
    return switches


# ----------------------------------------------------------------------- [[memdev]]

@attrs.define
class MemdevCfg:
    FIELDS: ClassVar[dict[str, Kind]] = {"name": "name", "parent": "name", "kind": KINDS, "ram": "size",
                                         "pmem": "size", "serial": "uint", "numa_node": "int", "lsa": "size",
                                         "payload_max": "int", "firmware_version": "str", "qos_class": "int",
                                         "decoders": "uint", "hdm_db": "bool", "device_type": (2, 3),
                                         "flit": FLITS, "mock": "bool", "rcd": "bool", "vendor": "uint",
                                         "device": "uint"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "parent")

    name: str
    parent: str
    kind: str = "platform"
    ram: int = 0
    pmem: int = 0
    serial: int = 0
    numa_node: int = -1
    lsa: int = 0
    payload_max: int = 4096
    firmware_version: str = ""
    qos_class: int = -1
    decoders: int = 8
    hdm_db: bool = False
    device_type: int = 3
    flit: int = 68
    mock: bool = False                # cxl_test mock attributes on the host device
    rcd: bool = False
    vendor: int = 0x8086
    device: int = 0x0d93


def parse_memdevs(r: _Reader, raw: list[Any], devs: dict[str, _Dev], where: dict[int, str],
                  given_fields: dict[str, set[str]]) -> list[MemdevCfg]:
    """The ``[[memdev]]`` tables; ``given_fields`` records the fields each one sets."""
    memdevs: list[MemdevCfg] = []
    lsa_total = 0
    for i, h in enumerate(raw):
        w = f"memdev[{i}]"
        d = r.table(h, w, MemdevCfg.FIELDS, required=MemdevCfg.REQUIRED)
        for k in ("ram", "pmem"):
            if d.get(k, 0) % SZ_256M:
                r.err(f"{w}.{k}", f"{d[k]:#x} is not a multiple of 256M (CXL capacity unit)")
        if not d.get("ram", 0) and not d.get("pmem", 0):
            r.err(w, "no capacity: give ram and/or pmem (QEMU: at least one memdev property must be set)")
        # the DPA space: ram from 0, pmem right after it
        r.fits(f"{w}.ram", "ram (DPA 0) size", 0, d.get("ram", 0))
        r.fits(f"{w}.pmem", "pmem placed after ram at DPA", d.get("ram", 0), d.get("pmem", 0))
        r.within(d.get("serial", 0), f"{w}.serial", 0, (1 << 64) - 1, "64-bit serial number")
        r.within(d.get("numa_node", -1), f"{w}.numa_node", -1, 1023, "-1 = no node")
        lsa = d.get("lsa", 0)
        if lsa > limit("lsa_size"):
            r.over(f"{w}.lsa", f"a label storage area of {lsa:#x} bytes is too large", "lsa_size")
        lsa_total += lsa
        if lsa_total > limit("all_lsa_size"):
            r.over(f"{w}.lsa", f"the label storage areas up to this memdev are {lsa_total:#x} bytes",
                   "all_lsa_size")
        pm = d.get("payload_max", 4096)
        if pm < 256 or pm > (1 << 20) or pm & (pm - 1):
            r.err(f"{w}.payload_max", f"{_num(pm)} is not a mailbox payload size (a power of two, 256..1M; "
                                      "cxl_pci rejects smaller mailboxes)")
        if len(d.get("firmware_version", "")) > 16:
            r.err(f"{w}.firmware_version", f"{d['firmware_version']!r} is longer than the 16 bytes of "
                                           "IDENTIFY's FW Revision")
        r.within(d.get("qos_class", -1), f"{w}.qos_class", -1, 0xFFFF, "-1 = none")
        if "decoders" in d and d["decoders"] not in DECODER_COUNTS:
            r.err(f"{w}.decoders", f"{_num(d['decoders'])} HDM decoders cannot be encoded (one of "
                                   f"{', '.join(map(str, DECODER_COUNTS))})")
        for k in ("vendor", "device"):
            if k in d:
                r.within(d[k], f"{w}.{k}", 0, 0xFFFF, "16-bit PCI id")
        if d.get("hdm_db") and d.get("flit", 68) != 256:
            r.err(f"{w}.hdm_db", "HDM-DB needs flit = 256 (QEMU: hdm-db requires operating in 256b flit)")
        given = d.pop("kind", None)
        md = MemdevCfg(**d)
        claim(r, devs, md.name, _Dev("memdev", w, md, given))
        where[id(md)] = w
        given_fields[md.name] = set(d)
        memdevs.append(md)
    return memdevs
