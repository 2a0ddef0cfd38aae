"""Topologies as data: the TOML format a user writes, validated with messages that name
the file, the field and what is wrong (never a traceback).

A topology describes the *hardware and firmware*: host devices (platform or PCI),
host bridges with their ACPI UIDs, root ports, switches, memory devices, CFMWS
windows, and decoders firmware already committed (auto regions).  The kernel model
(``cxlsys.cxl``) then enumerates it exactly as the kernel would.  See
``fixtures/README.md`` for the format.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Optional

import attrs

from cxlsys.kstrto import parse_size

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class TopologyError(Exception):
    """A topology file is wrong: ``str(e)`` is the user-facing message."""


RESTRICTIONS = {"type2": 1 << 0, "type3": 1 << 1, "volatile": 1 << 2, "ram": 1 << 2, "pmem": 1 << 3,
                "fixed": 1 << 4, "bi": 1 << 5}


@attrs.define
class NodeCfg:
    id: int
    cpus: list = attrs.field(factory=list)
    memory: int = 0
    distances: dict = attrs.field(factory=dict)
    online: bool = True


@attrs.define
class HostBridgeCfg:
    name: str
    uid: int
    kind: str = "platform"            # platform | pci
    rch: bool = False
    companion: Optional[str] = None   # physical_node | firmware_node self-link
    decoders: int = 8
    targets: int = 2
    parent: str = "platform"          # directory under /sys/devices holding it ("" = top level)


@attrs.define
class PortCfg:
    name: str
    parent: str
    port_id: int
    kind: str = "platform"
    flit: int = 68


@attrs.define
class SwitchCfg:
    name: str
    parent: str
    kind: str = "platform"
    decoders: int = 8
    targets: int = 2
    flit: int = 68
    downstream: list = attrs.field(factory=list)    # PortCfg


@attrs.define
class MemdevCfg:
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


@attrs.define
class WindowCfg:
    size: int
    targets: list
    ways: int = 1
    granularity: int = 256
    restrictions: int = 0
    qtg_id: int = -1
    arithmetic: str = "modulo"
    base: Optional[int] = None
    node: Optional[int] = None
    when: dict = attrs.field(factory=dict)


@attrs.define
class CximsCfg:
    granularity: int
    xormaps: list
    when: dict = attrs.field(factory=dict)


@attrs.define
class AutoRegionCfg:
    window: int
    size: int
    members: list
    granularity: int = 4096
    offset: int = 0
    decoder: int = 0
    when: dict = attrs.field(factory=dict)


@attrs.define
class Topology:
    name: str
    source: str = ""
    description: str = ""
    module: Optional[str] = None
    params: dict = attrs.field(factory=dict)
    acpi_device: str = "ACPI0017:00"
    acpi_parent: str = "platform"
    acpi_driver: str = "cxl_acpi"
    memdev_driver: Optional[str] = None
    hpa_base: int = 0xF010000000
    nodes: list = attrs.field(factory=list)
    memory: dict = attrs.field(factory=dict)
    host_bridges: list = attrs.field(factory=list)
    root_ports: list = attrs.field(factory=list)
    switches: list = attrs.field(factory=list)
    memdevs: list = attrs.field(factory=list)
    windows: list = attrs.field(factory=list)
    cxims: list = attrs.field(factory=list)
    auto_regions: list = attrs.field(factory=list)

    def active(self, items, params: dict):
        return [x for x in items if all(params.get(k) == v for k, v in x.when.items())]


# ----------------------------------------------------------------------- parsing

class _Reader:
    def __init__(self, src: str):
        self.src = src

    def err(self, where: str, msg: str):
        raise TopologyError(f"{self.src}: {where}: {msg}")

    def table(self, data: dict, where: str, spec: dict, required=()) -> dict:
        if not isinstance(data, dict):
            self.err(where, f"expected a table, got {type(data).__name__}")
        out = {}
        for k in data:
            if k not in spec:
                self.err(f"{where}.{k}", f"unknown field (known: {', '.join(sorted(spec))})")
        for k in required:
            if k not in data:
                self.err(f"{where}.{k}", "missing required field")
        for k, kind in spec.items():
            if k in data:
                out[k] = self.value(data[k], f"{where}.{k}", kind)
        return out

    def value(self, v: Any, where: str, kind):
        if kind == "size":
            try:
                n = parse_size(v)
            except (ValueError, TypeError):
                self.err(where, f"{v!r} is not a size (use bytes, 0x..., or 256M/1G/2T)")
            if n < 0:
                self.err(where, "size must not be negative")
            return n
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                self.err(where, f"{v!r} is not an integer")
            try:
                return v if isinstance(v, int) else int(v, 0)
            except ValueError:
                self.err(where, f"{v!r} is not an integer")
        if kind == "str":
            if not isinstance(v, str):
                self.err(where, f"{v!r} is not a string")
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                self.err(where, f"{v!r} is not true/false")
            return v
        if kind == "list":
            if not isinstance(v, list):
                self.err(where, f"{v!r} is not a list")
            return v
        if kind == "dict":
            if not isinstance(v, dict):
                self.err(where, f"{v!r} is not a table")
            return v
        if isinstance(kind, tuple):
            if v not in kind:
                self.err(where, f"{v!r} is not one of {', '.join(map(str, kind))}")
            return v
        raise AssertionError(kind)


def load_topology(name_or_path: str) -> Topology:
    """A preset name from fixtures/ (``cxl_test``) or a path to a TOML file."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = FIXTURES / f"{name_or_path}.toml"
        if not p.exists():
            names = ", ".join(sorted(x.stem for x in FIXTURES.glob("*.toml")))
            raise TopologyError(f"{name_or_path}: no such topology file or preset (presets: {names})")
    if not p.exists():
        raise TopologyError(f"{p}: no such file")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{p}: not valid TOML: {e}")
    except OSError as e:
        raise TopologyError(f"{p}: cannot read: {e.strerror}")
    return parse_topology(data, str(p))


def parse_topology(data: dict, src: str = "<topology>") -> Topology:
    r = _Reader(src)
    top = r.table(data, "topology", {
        "name": "str", "description": "str", "module": "dict", "acpi": "dict", "system": "dict",
        "node": "list", "host_bridge": "list", "root_port": "list", "switch": "list", "memdev": "list",
        "window": "list", "cxims": "list", "auto_region": "list",
    }, required=("name",))
    t = Topology(name=top["name"], source=src, description=top.get("description", ""))
    if "module" in top:
        m = r.table(top["module"], "module", {"name": "str", "params": "dict"}, required=("name",))
        t.module = m["name"]
        t.params = {k: r.value(v, f"module.params.{k}", "int") for k, v in m.get("params", {}).items()}
    if "acpi" in top:
        a = r.table(top["acpi"], "acpi", {"device": "str", "parent": "str", "driver": "str", "memdev_driver": "str",
                                          "hpa_base": "size"})
        t.acpi_device = a.get("device", t.acpi_device)
        t.acpi_parent = a.get("parent", t.acpi_parent)
        t.acpi_driver = a.get("driver", t.acpi_driver)
        t.memdev_driver = a.get("memdev_driver")
        t.hpa_base = a.get("hpa_base", t.hpa_base)
    if "system" in top:
        t.memory = r.table(top["system"], "system", {
            "block_size": "size", "auto_online_blocks": ("offline", "online", "online_kernel", "online_movable"),
            "online_policy": ("contig-zones", "auto-movable"), "auto_movable_ratio": "int",
            "auto_movable_numa_aware": "bool", "memmap_on_memory": "bool", "movable_node": "bool"})
        bs = t.memory.get("block_size")
        if bs is not None and (bs < (128 << 20) or bs & (bs - 1)):
            r.err("system.block_size", f"{bs:#x} must be a power of two >= 128M")
    for i, n in enumerate(top.get("node", [])):
        d = r.table(n, f"node[{i}]", {"id": "int", "cpus": "list", "memory": "size", "distances": "dict",
                                      "online": "bool"}, required=("id",))
        t.nodes.append(NodeCfg(id=d["id"], cpus=[r.value(c, f"node[{i}].cpus", "int") for c in d.get("cpus", [])],
                               memory=d.get("memory", 0),
                               distances={int(k): r.value(v, f"node[{i}].distances.{k}", "int")
                                          for k, v in d.get("distances", {}).items()},
                               online=d.get("online", True)))
    if not t.nodes:
        t.nodes.append(NodeCfg(id=0, cpus=[0, 1], memory=4 << 30))
    names: dict = {}

    def claim(name, where):
        if name in names:
            r.err(where, f"device name {name!r} is already used by {names[name]}")
        names[name] = where

    kinds = ("platform", "pci")
    for i, h in enumerate(top.get("host_bridge", [])):
        w = f"host_bridge[{i}]"
        d = r.table(h, w, {"name": "str", "uid": "int", "kind": kinds, "rch": "bool",
                           "companion": ("physical_node", "firmware_node"), "decoders": "int", "targets": "int",
                           "parent": "str"}, required=("name", "uid"))
        claim(d["name"], w)
        if any(x.uid == d["uid"] for x in t.host_bridges):
            r.err(f"{w}.uid", f"uid {d['uid']} is used twice")
        t.host_bridges.append(HostBridgeCfg(**d))
    for i, h in enumerate(top.get("root_port", [])):
        w = f"root_port[{i}]"
        d = r.table(h, w, {"name": "str", "parent": "str", "port_id": "int", "kind": kinds, "flit": (68, 256)},
                    required=("name", "parent", "port_id"))
        claim(d["name"], w)
        t.root_ports.append(PortCfg(**d))
    for i, h in enumerate(top.get("switch", [])):
        w = f"switch[{i}]"
        d = r.table(h, w, {"name": "str", "parent": "str", "kind": kinds, "decoders": "int", "targets": "int",
                           "flit": (68, 256), "downstream": "list"}, required=("name", "parent", "downstream"))
        claim(d["name"], w)
        ds = []
        for j, p in enumerate(d.pop("downstream")):
            pd = r.table(p, f"{w}.downstream[{j}]", {"name": "str", "port_id": "int", "kind": kinds, "flit": (68, 256)},
                         required=("name", "port_id"))
            claim(pd["name"], f"{w}.downstream[{j}]")
            ds.append(PortCfg(parent=d["name"], **pd))
        t.switches.append(SwitchCfg(downstream=ds, **d))
    for i, h in enumerate(top.get("memdev", [])):
        w = f"memdev[{i}]"
        d = r.table(h, w, {"name": "str", "parent": "str", "kind": kinds, "ram": "size", "pmem": "size",
                           "serial": "int", "numa_node": "int", "lsa": "size", "payload_max": "int",
                           "firmware_version": "str", "qos_class": "int", "decoders": "int", "hdm_db": "bool",
                           "device_type": (2, 3), "flit": (68, 256), "mock": "bool", "rcd": "bool",
                           "vendor": "int", "device": "int"}, required=("name", "parent"))
        claim(d["name"], w)
        for k in ("ram", "pmem"):
            if d.get(k, 0) % (256 << 20):
                r.err(f"{w}.{k}", f"{d[k]:#x} is not a multiple of 256M")
        if d.get("hdm_db") and d.get("flit", 68) != 256:
            r.err(f"{w}.hdm_db", "HDM-DB needs flit = 256 (QEMU: hdm-db requires operating in 256b flit)")
        t.memdevs.append(MemdevCfg(**d))
    for i, h in enumerate(top.get("window", [])):
        w = f"window[{i}]"
        d = r.table(h, w, {"size": "size", "targets": "list", "ways": "int", "granularity": "int",
                           "restrictions": "list", "qtg_id": "int", "arithmetic": ("modulo", "xor"), "base": "size",
                           "node": "int", "when": "dict"}, required=("size", "targets"))
        rs = 0
        for x in d.pop("restrictions", []):
            if x not in RESTRICTIONS:
                r.err(f"{w}.restrictions", f"{x!r} is not one of {', '.join(RESTRICTIONS)}")
            rs |= RESTRICTIONS[x]
        d["targets"] = [r.value(x, f"{w}.targets", "int") for x in d["targets"]]
        d.setdefault("ways", len(d["targets"]))
        if d["ways"] != len(d["targets"]):
            r.err(f"{w}.ways", f"{d['ways']} ways but {len(d['targets'])} targets")
        if d["ways"] not in (1, 2, 4, 8, 16, 3, 6, 12):
            r.err(f"{w}.ways", f"{d['ways']} is not a valid interleave (1,2,4,8,16,3,6,12)")
        g = d.get("granularity", 256)
        if g < 256 or g > 16384 or g & (g - 1):
            r.err(f"{w}.granularity", f"{g} is not a power of two in 256..16384")
        if d["size"] == 0 or d["size"] % (256 << 20):
            r.err(f"{w}.size", f"{d['size']:#x} is not a non-zero multiple of 256M")
        for uid in d["targets"]:
            if not any(hb.uid == uid for hb in t.host_bridges):
                r.err(f"{w}.targets", f"no host bridge has uid {uid}")
        t.windows.append(WindowCfg(restrictions=rs, **d))
    for i, h in enumerate(top.get("cxims", [])):
        d = r.table(h, f"cxims[{i}]", {"granularity": "int", "xormaps": "list", "when": "dict"},
                    required=("granularity", "xormaps"))
        d["xormaps"] = [r.value(x, f"cxims[{i}].xormaps", "int") for x in d["xormaps"]]
        t.cxims.append(CximsCfg(**d))
    for i, h in enumerate(top.get("auto_region", [])):
        w = f"auto_region[{i}]"
        d = r.table(h, w, {"window": "int", "size": "size", "members": "list", "granularity": "int",
                           "offset": "size", "decoder": "int", "when": "dict"}, required=("window", "size", "members"))
        if not 0 <= d["window"] < len(t.windows):
            r.err(f"{w}.window", f"no window {d['window']} (there are {len(t.windows)})")
        for m in d["members"]:
            if not any(md.name == m for md in t.memdevs):
                r.err(f"{w}.members", f"no memdev named {m!r}")
        t.auto_regions.append(AutoRegionCfg(**d))
    # parent references
    known = set(names) | {hb.name for hb in t.host_bridges}
    for lst, label in ((t.root_ports, "root_port"), (t.switches, "switch"), (t.memdevs, "memdev")):
        for i, x in enumerate(lst):
            if x.parent not in known:
                r.err(f"{label}[{i}].parent", f"no device named {x.parent!r}")
    return t
