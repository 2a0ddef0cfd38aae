"""Topologies as data: the TOML format a user writes, validated with messages that name
the file, the field and what is wrong (never a traceback).

A topology describes the *hardware and firmware*: host devices (platform or PCI),
host bridges with their ACPI UIDs, root ports, switches, memory devices, CFMWS
windows, and decoders firmware already committed (auto regions).  The kernel model
(``cxlsys.cxl``) then enumerates it exactly as the kernel would.  See
``fixtures/README.md`` for the format.

Validation happens in two passes: each table's own fields (types, ranges, units),
then the cross references (parents, PCI naming and bus numbers, port ids, window
targets, auto regions), rejecting what the kernel or QEMU would reject.  Every
message has the form ``<file>: <field>: <what is wrong>``, on one line.
"""

from __future__ import annotations

import json
import re
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

SZ_256M = 256 << 20
# HDM decoder counts the capability register can encode (CXL 3.x 8.2.4.20.1; kernel
# cxl_hdm_decoder_count()); 0 = no HDM decoder capability (passthrough port).
DECODER_COUNTS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
TARGET_COUNTS = (1, 2, 4, 8)
INTERLEAVE_WAYS = (1, 2, 4, 8, 16, 3, 6, 12)
KINDS = ("platform", "pci")
FLITS = (68, 256)
MEMDEV_DRIVERS = ("cxl_mock_mem", "cxl_pci")

_PCI_ROOT = re.compile(r"pci([0-9a-f]{4}):([0-9a-f]{2})")
_PCI_FN = re.compile(r"([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])")
_NAME = re.compile(r"[^\s/]+")


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
    kernel: Optional[str] = None          # default kernel profile (cxlsys.profile), e.g. "6.12-bi"
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

def _fmt_size(n: int) -> str:
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return f"{n:#x}"


def _compatible(a: dict, b: dict) -> bool:
    """Can two ``when`` conditions hold at the same time?"""
    return all(b[k] == v for k, v in a.items() if k in b)


def _ilog2(n: int) -> int:
    return n.bit_length() - 1


class _Reader:
    def __init__(self, src: str):
        self.src = src

    def err(self, where: str, msg: str):
        line = f"{self.src}: {where}: {msg}"
        raise TopologyError("".join(c if c.isprintable() else repr(c)[1:-1] for c in line))

    def table(self, data: dict, where: str, spec: dict, required=()) -> dict:
        if not isinstance(data, dict):
            self.err(where, f"expected a table, got {_tname(data)}")
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
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                self.err(where, f"{_lit(v)} is not a size (use bytes, 0x..., or 256M/1G/2T)")
            try:
                n = parse_size(v)
            except (ValueError, TypeError):
                self.err(where, f"{_lit(v)} is not a size (use bytes, 0x..., or 256M/1G/2T)")
            if n < 0:
                self.err(where, f"{_lit(v)}: a size must not be negative")
            return n
        if kind in ("int", "uint"):
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                self.err(where, f"{_lit(v)} is not an integer")
            try:
                n = v if isinstance(v, int) else int(v.strip(), 0)
            except ValueError:
                self.err(where, f"{_lit(v)} is not an integer")
            if kind == "uint" and n < 0:
                self.err(where, f"{n} must not be negative")
            return n
        if kind == "str":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            return v
        if kind == "name":
            if not isinstance(v, str):
                self.err(where, f"{_lit(v)} is not a string")
            if not _NAME.fullmatch(v) or v in (".", ".."):
                self.err(where, f"{_lit(v)} is not a device name (non-empty, no '/' or spaces)")
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                self.err(where, f"{_lit(v)} is not true/false")
            return v
        if kind == "list":
            if not isinstance(v, list):
                self.err(where, f"{_lit(v)} is not a list")
            return v
        if kind == "dict":
            if not isinstance(v, dict):
                self.err(where, f"{_lit(v)} is not a table")
            return v
        if kind == "when":
            if not isinstance(v, dict):
                self.err(where, f"{_lit(v)} is not a table of module parameters")
            return {k: self.value(x, f"{where}.{k}", "int") for k, x in v.items()}
        if isinstance(kind, tuple):
            if all(isinstance(c, int) for c in kind) and (isinstance(v, bool) or not isinstance(v, int)):
                self.err(where, f"{_lit(v)} is not one of {', '.join(map(str, kind))}")
            if not isinstance(v, (str, int)) or v not in kind:
                self.err(where, f"{_lit(v)} is not one of {', '.join(map(repr, kind))}")
            return v
        raise AssertionError(kind)

    def items(self, v: list, where: str, kind) -> list:
        return [self.value(x, f"{where}[{j}]", kind) for j, x in enumerate(v)]

    def within(self, v: int, where: str, lo: int, hi: int, what: str = "") -> int:
        if not lo <= v <= hi:
            top = f"{hi:#x}" if hi > 0xFFFF else str(hi)
            self.err(where, f"{v} is out of range {lo}..{top}" + (f" ({what})" if what else ""))
        return v


def _lit(v) -> str:
    """A value as the user wrote it in TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_lit(x)}" for k, x in v.items()) + " }"
    return repr(v)


def _tname(v) -> str:
    return {dict: "table", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "float"}.get(type(v), type(v).__name__)


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
    except UnicodeDecodeError:
        raise TopologyError(f"{p}: not valid TOML: not UTF-8 text")
    except OSError as e:
        raise TopologyError(f"{p}: cannot read: {e.strerror}")
    return parse_topology(data, str(p))


def parse_topology(data: dict, src: str = "<topology>") -> Topology:
    return _Parser(data, src).run()


@attrs.define
class _Dev:
    """One host device of the topology, for the cross-reference pass."""

    role: str            # host_bridge | root_port | switch | downstream | memdev | acpi
    where: str           # "memdev[2]"
    cfg: object
    kind_given: Optional[str] = None


_ROLE_TEXT = {"host_bridge": "a host bridge", "root_port": "a root port", "switch": "a switch upstream port",
              "downstream": "a switch downstream port", "memdev": "a memdev", "acpi": "the ACPI0017 device"}


class _Parser:
    def __init__(self, data: dict, src: str):
        self.r = _Reader(src)
        self.data = data
        self.devs: dict = {}           # name -> _Dev
        self.where: dict = {}          # id(cfg) -> "window[3]"
        self.given_fields: dict = {}   # memdev name -> fields the file sets

    def err(self, where, msg):
        self.r.err(where, msg)

    def claim(self, name: str, dev: _Dev) -> None:
        if name in self.devs:
            field = dev.where if dev.role == "acpi" else f"{dev.where}.name"
            self.err(field, f"device name {name!r} is already used by {self.devs[name].where}")
        self.devs[name] = dev

    # ------------------------------------------------------------------ pass 1
    def run(self) -> Topology:
        r = self.r
        top = r.table(self.data, "topology", {
            "name": "str", "description": "str", "module": "dict", "acpi": "dict", "system": "dict",
            "node": "list", "host_bridge": "list", "root_port": "list", "switch": "list", "memdev": "list",
            "window": "list", "cxims": "list", "auto_region": "list", "kernel": "str",
        }, required=("name",))
        if not top["name"].strip():
            self.err("topology.name", "must not be empty")
        self.t = t = Topology(name=top["name"], source=r.src, description=top.get("description", ""))
        if "kernel" in top:
            from cxlsys.profile import PROFILES
            if top["kernel"] not in PROFILES:
                self.err("kernel", f"{top['kernel']!r} is not a kernel profile ({', '.join(PROFILES)})")
            t.kernel = top["kernel"]
        self.top = top
        self.parse_module()
        self.parse_acpi()
        self.parse_system()
        self.parse_nodes()
        self.parse_host_bridges()
        self.parse_root_ports()
        self.parse_switches()
        self.parse_memdevs()
        self.parse_windows()
        self.parse_cxims()
        self.parse_auto_regions()
        # pass 2: cross references
        self.check_parents()
        self.resolve_kinds()
        self.check_pci_names()
        self.check_ports()
        self.check_windows()
        self.check_auto_regions()
        return t

    def when(self, d: dict, where: str) -> dict:
        w = d.get("when", {})
        for k in w:
            if self.t.module is None:
                self.err(f"{where}.when.{k}", "conditions need a [module] table declaring that parameter")
            if k not in self.t.params:
                known = ", ".join(sorted(self.t.params)) or "none"
                self.err(f"{where}.when.{k}", f"{k!r} is not a parameter of module {self.t.module!r} "
                                              f"(declared: {known})")
        return w

    def parse_module(self):
        if "module" not in self.top:
            return
        r, t = self.r, self.t
        m = r.table(self.top["module"], "module", {"name": "name", "params": "dict"}, required=("name",))
        t.module = m["name"]
        t.params = {k: r.value(v, f"module.params.{k}", "int") for k, v in m.get("params", {}).items()}

    def parse_acpi(self):
        r, t = self.r, self.t
        if "acpi" in self.top:
            a = r.table(self.top["acpi"], "acpi", {"device": "name", "parent": ("platform", ""),
                                                   "driver": ("cxl_acpi",), "memdev_driver": MEMDEV_DRIVERS,
                                                   "hpa_base": "size"})
            t.acpi_device = a.get("device", t.acpi_device)
            t.acpi_parent = a.get("parent", t.acpi_parent)
            t.acpi_driver = a.get("driver", t.acpi_driver)
            t.memdev_driver = a.get("memdev_driver")
            t.hpa_base = a.get("hpa_base", t.hpa_base)
            if t.hpa_base % SZ_256M:
                self.err("acpi.hpa_base", f"{t.hpa_base:#x} is not 256M aligned (CFMWS base HPA alignment)")
        self.claim(t.acpi_device, _Dev("acpi", "acpi.device", None))

    def parse_system(self):
        if "system" not in self.top:
            return
        r, t = self.r, self.t
        t.memory = r.table(self.top["system"], "system", {
            "block_size": "size", "auto_online_blocks": ("offline", "online", "online_kernel", "online_movable"),
            "online_policy": ("contig-zones", "auto-movable"), "auto_movable_ratio": "uint",
            "auto_movable_numa_aware": "bool", "memmap_on_memory": "bool", "movable_node": "bool",
            "kernel_zone_unmovable": "bool"})
        bs = t.memory.get("block_size")
        if bs is not None and (bs < (128 << 20) or bs & (bs - 1)):
            self.err("system.block_size", f"{bs:#x} must be a power of two >= 128M")

    def parse_nodes(self):
        r, t = self.r, self.t
        cpus_seen: dict = {}
        for i, n in enumerate(self.top.get("node", [])):
            w = f"node[{i}]"
            d = r.table(n, w, {"id": "uint", "cpus": "list", "memory": "size", "distances": "dict",
                               "online": "bool"}, required=("id",))
            r.within(d["id"], f"{w}.id", 0, 1023, "MAX_NUMNODES")
            for o in t.nodes:
                if o.id == d["id"]:
                    self.err(f"{w}.id", f"node {d['id']} is declared twice")
            cpus = r.items(d.get("cpus", []), f"{w}.cpus", "uint")
            for c in cpus:
                if c in cpus_seen:
                    self.err(f"{w}.cpus", f"cpu {c} is already in {cpus_seen[c]}")
                cpus_seen[c] = w
            dist = {}
            for k, v in d.get("distances", {}).items():
                try:
                    nid = int(k, 0)
                except ValueError:
                    self.err(f"{w}.distances.{k}", f"{k!r} is not a node id")
                dist[nid] = r.within(r.value(v, f"{w}.distances.{k}", "int"), f"{w}.distances.{k}", 10, 255,
                                     "SLIT distance")
            online = d.get("online", True)
            if not online and (cpus or d.get("memory", 0)):
                self.err(f"{w}.online", "a node with CPUs or boot memory is online at boot")
            node = NodeCfg(id=d["id"], cpus=cpus, memory=d.get("memory", 0), distances=dist, online=online)
            self.where[id(node)] = w
            t.nodes.append(node)
        ids = {n.id for n in t.nodes}
        for n in t.nodes:
            for k in n.distances:
                if k not in ids:
                    self.err(f"{self.where[id(n)]}.distances.{k}", f"no node {k} is declared")
        if not t.nodes:
            t.nodes.append(NodeCfg(id=0, cpus=[0, 1], memory=4 << 30))

    def parse_host_bridges(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("host_bridge", [])):
            w = f"host_bridge[{i}]"
            d = r.table(h, w, {"name": "name", "uid": "uint", "kind": KINDS, "rch": "bool",
                               "companion": ("physical_node", "firmware_node"), "decoders": "uint",
                               "targets": "int", "parent": ("platform", "")}, required=("name", "uid"))
            r.within(d["uid"], f"{w}.uid", 0, 0xFFFFFFFF, "ACPI _UID / CHBS UID is 32-bit")
            kind = d.setdefault("kind", "platform")
            if kind == "pci" and not _PCI_ROOT.fullmatch(d["name"]):
                self.err(f"{w}.name", f"{d['name']!r} is not a PCI host bridge name: the kernel names them "
                                      "pciDDDD:BB (lowercase hex), e.g. pci0000:0c")
            if kind == "pci":
                if d.get("parent", "") != "":
                    self.err(f"{w}.parent", "a pci host bridge is a top-level /sys/devices/pciDDDD:BB "
                                            "directory: use parent = \"\" (or leave it out)")
                d["parent"] = ""
                if "companion" in d:
                    self.err(f"{w}.companion", "only platform host bridges (cxl_test) have a companion link")
            elif d.get("parent", "platform") != "platform":
                self.err(f"{w}.parent", "a platform host bridge lives under /sys/devices/platform: "
                                        "use parent = \"platform\" (or leave it out)")
            self.check_decoders(d, w, allow_passthrough=True)
            hb = HostBridgeCfg(**d)
            for o in t.host_bridges:
                if o.uid == hb.uid:
                    self.err(f"{w}.uid", f"uid {hb.uid} is already used by {self.where[id(o)]} ({o.name})")
            self.claim(hb.name, _Dev("host_bridge", w, hb, kind))
            self.where[id(hb)] = w
            t.host_bridges.append(hb)

    def check_decoders(self, d: dict, w: str, allow_passthrough: bool) -> None:
        if "decoders" in d:
            n = d["decoders"]
            ok = DECODER_COUNTS + ((0,) if allow_passthrough else ())
            if n not in ok:
                self.err(f"{w}.decoders", f"{n} HDM decoders cannot be encoded (one of "
                                          f"{', '.join(map(str, ok))}" + ("; 0 = passthrough" if allow_passthrough
                                                                           else "") + ")")
        if "targets" in d and d["targets"] not in TARGET_COUNTS:
            self.err(f"{w}.targets", f"{d['targets']} is not a valid HDM target count (1, 2, 4 or 8)")

    def parse_root_ports(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("root_port", [])):
            w = f"root_port[{i}]"
            d = r.table(h, w, {"name": "name", "parent": "name", "port_id": "uint", "kind": KINDS, "flit": FLITS},
                        required=("name", "parent", "port_id"))
            given = d.pop("kind", None)
            rp = PortCfg(**d)
            self.claim(rp.name, _Dev("root_port", w, rp, given))
            self.where[id(rp)] = w
            t.root_ports.append(rp)

    def parse_switches(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("switch", [])):
            w = f"switch[{i}]"
            d = r.table(h, w, {"name": "name", "parent": "name", "kind": KINDS, "decoders": "uint", "targets": "int",
                               "flit": FLITS, "downstream": "list"}, required=("name", "parent", "downstream"))
            self.check_decoders(d, w, allow_passthrough=True)
            given = d.pop("kind", None)
            raw_ds = d.pop("downstream")
            sw = SwitchCfg(**d)
            self.claim(sw.name, _Dev("switch", w, sw, given))
            self.where[id(sw)] = w
            for j, p in enumerate(raw_ds):
                wj = f"{w}.downstream[{j}]"
                pd = r.table(p, wj, {"name": "name", "port_id": "uint", "kind": KINDS, "flit": FLITS},
                             required=("name", "port_id"))
                pgiven = pd.pop("kind", None)
                dp = PortCfg(parent=sw.name, **pd)
                self.claim(dp.name, _Dev("downstream", wj, dp, pgiven))
                self.where[id(dp)] = wj
                sw.downstream.append(dp)
            t.switches.append(sw)

    def parse_memdevs(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("memdev", [])):
            w = f"memdev[{i}]"
            d = r.table(h, w, {"name": "name", "parent": "name", "kind": KINDS, "ram": "size", "pmem": "size",
                               "serial": "uint", "numa_node": "int", "lsa": "size", "payload_max": "int",
                               "firmware_version": "str", "qos_class": "int", "decoders": "uint", "hdm_db": "bool",
                               "device_type": (2, 3), "flit": FLITS, "mock": "bool", "rcd": "bool",
                               "vendor": "uint", "device": "uint"}, required=("name", "parent"))
            for k in ("ram", "pmem"):
                if d.get(k, 0) % SZ_256M:
                    self.err(f"{w}.{k}", f"{d[k]:#x} is not a multiple of 256M (CXL capacity unit)")
            if not d.get("ram", 0) and not d.get("pmem", 0):
                self.err(w, "no capacity: give ram and/or pmem (QEMU: at least one memdev property must be set)")
            r.within(d.get("serial", 0), f"{w}.serial", 0, (1 << 64) - 1, "64-bit serial number")
            r.within(d.get("numa_node", -1), f"{w}.numa_node", -1, 1023, "-1 = no node")
            r.within(d.get("lsa", 0), f"{w}.lsa", 0, 0xFFFFFFFF, "IDENTIFY LSA size is 32-bit")
            pm = d.get("payload_max", 4096)
            if pm < 256 or pm > (1 << 20) or pm & (pm - 1):
                self.err(f"{w}.payload_max", f"{pm} is not a mailbox payload size (a power of two, 256..1M; "
                                             "cxl_pci rejects smaller mailboxes)")
            if len(d.get("firmware_version", "")) > 16:
                self.err(f"{w}.firmware_version", f"{d['firmware_version']!r} is longer than the 16 bytes of "
                                                  "IDENTIFY's FW Revision")
            r.within(d.get("qos_class", -1), f"{w}.qos_class", -1, 0xFFFF, "-1 = none")
            if "decoders" in d and d["decoders"] not in DECODER_COUNTS:
                self.err(f"{w}.decoders", f"{d['decoders']} HDM decoders cannot be encoded (one of "
                                          f"{', '.join(map(str, DECODER_COUNTS))})")
            for k in ("vendor", "device"):
                if k in d:
                    r.within(d[k], f"{w}.{k}", 0, 0xFFFF, "16-bit PCI id")
            if d.get("hdm_db") and d.get("flit", 68) != 256:
                self.err(f"{w}.hdm_db", "HDM-DB needs flit = 256 (QEMU: hdm-db requires operating in 256b flit)")
            given = d.pop("kind", None)
            md = MemdevCfg(**d)
            self.claim(md.name, _Dev("memdev", w, md, given))
            self.where[id(md)] = w
            self.given_fields[md.name] = set(d)
            t.memdevs.append(md)

    def parse_windows(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("window", [])):
            w = f"window[{i}]"
            d = r.table(h, w, {"size": "size", "targets": "list", "ways": "int", "granularity": "int",
                               "restrictions": "list", "qtg_id": "int", "arithmetic": ("modulo", "xor"),
                               "base": "size", "node": "uint", "when": "when"}, required=("size", "targets"))
            rs = 0
            for j, x in enumerate(d.pop("restrictions", [])):
                if not isinstance(x, str) or x not in RESTRICTIONS:
                    self.err(f"{w}.restrictions[{j}]", f"{_lit(x)} is not one of {', '.join(RESTRICTIONS)}")
                rs |= RESTRICTIONS[x]
            d["targets"] = r.items(d["targets"], f"{w}.targets", "uint")
            if not d["targets"]:
                self.err(f"{w}.targets", "a window needs at least one host bridge uid")
            d.setdefault("ways", len(d["targets"]))
            if d["ways"] != len(d["targets"]):
                self.err(f"{w}.ways", f"{d['ways']} ways but {len(d['targets'])} targets")
            if d["ways"] not in INTERLEAVE_WAYS:
                self.err(f"{w}.ways", f"{d['ways']} is not a valid interleave (1,2,4,8,16,3,6,12)")
            g = d.get("granularity", 256)
            if g < 256 or g > 16384 or g & (g - 1):
                self.err(f"{w}.granularity", f"{g} is not a power of two in 256..16384")
            if d["size"] == 0 or d["size"] % SZ_256M:
                self.err(f"{w}.size", f"{d['size']:#x} is not a non-zero multiple of 256M")
            if d.get("base") is not None and d["base"] % SZ_256M:
                self.err(f"{w}.base", f"{d['base']:#x} is not 256M aligned (CFMWS base HPA alignment)")
            r.within(d.get("qtg_id", -1), f"{w}.qtg_id", -1, 0xFFFF, "-1 = none")
            if "node" in d and not any(n.id == d["node"] for n in t.nodes):
                self.err(f"{w}.node", f"no [[node]] has id {d['node']} (declare the window's NUMA node)")
            d["when"] = self.when(d, w)
            win = WindowCfg(restrictions=rs, **d)
            self.where[id(win)] = w
            t.windows.append(win)

    def parse_cxims(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("cxims", [])):
            w = f"cxims[{i}]"
            d = r.table(h, w, {"granularity": "int", "xormaps": "list", "when": "when"},
                        required=("granularity", "xormaps"))
            g = d["granularity"]
            if g < 256 or g > 16384 or g & (g - 1):
                self.err(f"{w}.granularity", f"{g} is not a power of two in 256..16384")
            d["xormaps"] = r.items(d["xormaps"], f"{w}.xormaps", "uint")
            if not d["xormaps"] or any(x == 0 for x in d["xormaps"]):
                self.err(f"{w}.xormaps", "needs one or more non-zero XOR bitmaps")
            d["when"] = self.when(d, w)
            cx = CximsCfg(**d)
            self.where[id(cx)] = w
            t.cxims.append(cx)

    def parse_auto_regions(self):
        r, t = self.r, self.t
        for i, h in enumerate(self.top.get("auto_region", [])):
            w = f"auto_region[{i}]"
            d = r.table(h, w, {"window": "uint", "size": "size", "members": "list", "granularity": "int",
                               "offset": "size", "decoder": "uint", "when": "when"},
                        required=("window", "size", "members"))
            d["members"] = r.items(d["members"], f"{w}.members", "name")
            d["when"] = self.when(d, w)
            ar = AutoRegionCfg(**d)
            self.where[id(ar)] = w
            t.auto_regions.append(ar)

    # ------------------------------------------------------------------ pass 2
    def dev_of(self, name: str) -> Optional[_Dev]:
        return self.devs.get(name)

    def check_parents(self):
        """Each device hangs where the hardware allows it, and the chain reaches a host bridge."""
        t = self.t
        for rp in t.root_ports:
            w = self.where[id(rp)]
            p = self.dev_of(rp.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {rp.parent!r}")
            if p.role != "host_bridge":
                self.err(f"{w}.parent", f"{rp.parent!r} is {_ROLE_TEXT[p.role]}, not a host bridge "
                                        "(root ports sit directly on a host bridge)")
            if p.cfg.rch:
                self.err(f"{w}.parent", f"{rp.parent!r} is an RCH host bridge (rch = true): it has no root "
                                        "ports; attach an RCD (memdev rcd = true) to it directly")
        for sw in t.switches:
            w = self.where[id(sw)]
            p = self.dev_of(sw.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {sw.parent!r}")
            if p.role not in ("root_port", "downstream"):
                self.err(f"{w}.parent", f"{sw.parent!r} is {_ROLE_TEXT[p.role]}: a switch's upstream port "
                                        "links to a root port or a switch downstream port")
        for md in t.memdevs:
            w = self.where[id(md)]
            p = self.dev_of(md.parent)
            if p is None:
                self.err(f"{w}.parent", f"no device named {md.parent!r}")
            if md.rcd:
                if p.role != "host_bridge" or not p.cfg.rch:
                    self.err(f"{w}.parent", f"{md.parent!r} is {_ROLE_TEXT[p.role]}: an RCD (rcd = true) "
                                            "attaches directly to an RCH host bridge (rch = true)")
            elif p.role == "host_bridge":
                hint = ("only an RCD (rcd = true) attaches to an RCH host bridge" if p.cfg.rch else
                        "a memdev links to a root port or a switch downstream port")
                self.err(f"{w}.parent", f"{md.parent!r} is a host bridge: {hint}")
            elif p.role not in ("root_port", "downstream"):
                self.err(f"{w}.parent", f"{md.parent!r} is {_ROLE_TEXT[p.role]}: a memdev links to a root port "
                                        "or a switch downstream port")
        # switch chains must end at a host bridge (no loops through downstream ports)
        for sw in t.switches:
            seen = set()
            name = sw.name
            while True:
                dev = self.devs[name]
                if dev.role == "host_bridge":
                    break
                if name in seen:
                    self.err(f"{self.where[id(sw)]}.parent", "the parent chain loops back to "
                                                             f"{name!r} and never reaches a host bridge")
                seen.add(name)
                name = dev.cfg.parent

    def parent_name(self, name: str) -> str:
        dev = self.devs[name]
        return dev.cfg.parent if dev.role != "host_bridge" else ""

    def host_bridge_of(self, name: str) -> HostBridgeCfg:
        while self.devs[name].role != "host_bridge":
            name = self.parent_name(name)
        return self.devs[name].cfg

    def resolve_kinds(self):
        """A missing ``kind`` is inherited from the parent; a child's kind must match its parent's."""
        t = self.t
        order = ([(x, "root_port") for x in t.root_ports] +
                 [(x, "switch") for x in self._switches_top_down()] +
                 [(x, "memdev") for x in t.memdevs])
        for cfg, role in order:
            dev = self.devs[cfg.name]
            pdev = self.devs[cfg.parent]
            pkind = pdev.cfg.kind
            kind = dev.kind_given or pkind
            if kind != pkind:
                self.err(f"{dev.where}.kind", f"kind {kind!r} below {pkind} device {cfg.parent!r}: "
                                              f"everything below a {pkind} host bridge is {pkind}")
            cfg.kind = kind
            if role == "switch":
                for dp in cfg.downstream:
                    ddev = self.devs[dp.name]
                    dkind = ddev.kind_given or kind
                    if dkind != kind:
                        self.err(f"{ddev.where}.kind", f"kind {dkind!r} in a {kind} switch {cfg.name!r}")
                    dp.kind = dkind
        driver = t.memdev_driver or ("cxl_mock_mem" if t.module == "cxl_test" else "cxl_pci")
        for md in t.memdevs:
            w = self.where[id(md)]
            given = self.given_fields.get(md.name, set())
            if md.kind == "platform" and driver != "cxl_mock_mem":
                self.err(f"{w}.kind", "a platform memdev is bound by cxl_mock_mem: declare [module] "
                                      "name = \"cxl_test\" or acpi.memdev_driver = \"cxl_mock_mem\" "
                                      "(or make the device kind = \"pci\")")
            if md.kind == "pci":
                if md.mock:
                    self.err(f"{w}.mock", "mock attributes exist only on cxl_test platform memdevs")
            else:
                for k in ("vendor", "device"):
                    if k in given:
                        self.err(f"{w}.{k}", "PCI ids apply to kind = \"pci\" memdevs only")

    def _switches_top_down(self) -> list:
        depth = {}

        def d(name):
            if name not in depth:
                dev = self.devs[name]
                depth[name] = 0 if dev.role == "host_bridge" else d(self.parent_name(name)) + 1
            return depth[name]

        return sorted(self.t.switches, key=lambda s: d(s.name))

    def check_pci_names(self):
        """PCI devices carry the kernel's names; bus numbers follow the PCI hierarchy."""
        t = self.t
        roots: dict = {}         # host bridge name -> (domain, bus)
        for hb in t.host_bridges:
            if hb.kind != "pci":
                continue
            m = _PCI_ROOT.fullmatch(hb.name)
            roots[hb.name] = (int(m.group(1), 16), int(m.group(2), 16))
        fns: dict = {}           # function name -> (domain, bus, dev, fn)
        for name, dev in self.devs.items():
            if dev.role in ("host_bridge", "acpi") or dev.cfg.kind != "pci":
                continue
            m = _PCI_FN.fullmatch(name)
            if not m or int(m.group(3), 16) > 0x1f:
                self.err(f"{dev.where}.name", f"{name!r} is not a PCI function name: the kernel names them "
                                              "DDDD:BB:DD.F (lowercase hex, device <= 1f), e.g. 0000:0c:00.0")
            fns[name] = tuple(int(x, 16) for x in m.groups())
        # the bus below each parent: a host bridge's root bus, a bridge's secondary bus
        bus_owner: dict = {}
        for hb, (dom, bus) in roots.items():
            bus_owner[(dom, bus)] = hb
        for name, (dom, bus, devno, fn) in fns.items():
            dev = self.devs[name]
            parent = self.parent_name(name)
            pdev = self.devs[parent]
            hb = self.host_bridge_of(name)
            hdom, hbus = roots[hb.name]
            if dom != hdom:
                self.err(f"{dev.where}.name", f"{name!r} is in PCI domain {dom:04x} but its host bridge "
                                              f"{hb.name!r} is domain {hdom:04x}")
            if pdev.role == "host_bridge":
                if bus != hbus:
                    self.err(f"{dev.where}.name", f"{name!r} sits on the root bus of {hb.name!r}, "
                                                  f"so its bus must be {hbus:02x}")
            else:
                pbus = fns[parent][1]
                if bus <= pbus:
                    self.err(f"{dev.where}.name", f"{name!r} is below {parent!r} (bus {pbus:02x}): its bus "
                                                  "number must be greater (a bridge's secondary bus)")
                if pdev.role in ("root_port", "downstream") and devno != 0:
                    self.err(f"{dev.where}.name", f"{name!r}: below a PCIe root or downstream port the only "
                                                  "device number is 00 (QEMU: only slot 0 is valid)")
                owner = bus_owner.setdefault((dom, bus), parent)
                if owner != parent:
                    self.err(f"{dev.where}.name", f"bus {bus:02x} of {name!r} (below {parent!r}) is already the "
                                                  f"bus below {owner!r}")

    def check_ports(self):
        """Port ids are unique per upstream port; a passthrough port has exactly one dport."""
        t = self.t
        by_parent: dict = {}
        for rp in t.root_ports:
            by_parent.setdefault(rp.parent, []).append(rp)
        for sw in t.switches:
            by_parent[sw.name] = list(sw.downstream)
        for parent, ports in by_parent.items():
            seen: dict = {}
            for p in ports:
                w = self.where[id(p)]
                if p.kind == "pci":
                    self.r.within(p.port_id, f"{w}.port_id", 0, 255, "PCIe Link Capabilities port number")
                if p.port_id in seen:
                    self.err(f"{w}.port_id", f"port_id {p.port_id} is already used by {seen[p.port_id]} "
                                             f"below {parent!r} (the kernel refuses a second dport{p.port_id})")
                seen[p.port_id] = f"{w} ({p.name})"
        for hb in t.host_bridges:
            n = len(by_parent.get(hb.name, []))
            if hb.decoders == 0 and not hb.rch and n != 1:
                self.err(f"{self.where[id(hb)]}.decoders", f"0 (passthrough, no HDM decoders) needs exactly one "
                                                           f"root port, {hb.name!r} has {n}")
        for sw in t.switches:
            if sw.decoders == 0 and len(sw.downstream) != 1:
                self.err(f"{self.where[id(sw)]}.decoders", f"0 (passthrough, no HDM decoders) needs exactly one "
                                                           f"downstream port, {sw.name!r} has {len(sw.downstream)}")
        below: dict = {}
        for sw in t.switches:
            below.setdefault(sw.parent, []).append(sw)
        for port, sws in below.items():
            if len(sws) > 1:
                self.err(f"{self.where[id(sws[1])]}.parent", f"{port!r} already links to switch {sws[0].name!r}")
            mds = [m for m in t.memdevs if m.parent == port]
            if mds:
                self.err(f"{self.where[id(mds[0])]}.parent", f"{port!r} already links to switch {sws[0].name!r}")

    def check_windows(self):
        t = self.t
        by_uid = {hb.uid: hb for hb in t.host_bridges}
        for win in t.windows:
            w = self.where[id(win)]
            for uid in win.targets:
                hb = by_uid.get(uid)
                if hb is None:
                    self.err(f"{w}.targets", f"no host bridge has uid {uid}")
                if hb.rch and win.ways > 1:
                    self.err(f"{w}.targets", f"uid {uid} is an RCH host bridge ({hb.name}): RCH/RCD memory "
                                             "cannot be interleaved, give it a window of its own")
            if win.arithmetic == "xor" and win.ways not in (1, 3):
                need = _ilog2(win.ways)
                maps = [c for c in t.cxims if c.granularity == win.granularity and _compatible(c.when, win.when)]
                if not maps:
                    self.err(f"{w}.arithmetic", f"an XOR window of {win.ways} ways needs a [[cxims]] with "
                                                f"granularity {win.granularity} (cxl_acpi: No CXIMS for HBIG)")
                if all(len(c.xormaps) < need for c in maps):
                    self.err(f"{w}.arithmetic", f"an XOR window of {win.ways} ways needs {need} xormaps in its "
                                                f"[[cxims]], {self.where[id(maps[0])]} has {len(maps[0].xormaps)}")
        fixed = [x for x in t.windows if x.base is not None]
        for i, a in enumerate(fixed):
            for b in fixed[i + 1:]:
                if _compatible(a.when, b.when) and a.base < b.base + b.size and b.base < a.base + a.size:
                    self.err(f"{self.where[id(b)]}.base", f"[{b.base:#x}, {b.base + b.size:#x}) overlaps "
                                                          f"{self.where[id(a)]}")

    def window_of(self, ar: AutoRegionCfg, w: str) -> WindowCfg:
        """The window an auto region names: its index among all [[window]] tables, in file order."""
        t = self.t
        if ar.window >= len(t.windows):
            self.err(f"{w}.window", f"no window {ar.window}: the file has {len(t.windows)} [[window]] table(s), "
                                    "numbered from 0")
        return t.windows[ar.window]

    def check_auto_regions(self):
        t = self.t
        mds = {m.name: m for m in t.memdevs}
        uses: dict = {}        # memdev name -> [(ar, per-device size)]
        for ar in t.auto_regions:
            w = self.where[id(ar)]
            win = self.window_of(ar, w)
            ways = len(ar.members)
            if ways == 0:
                self.err(f"{w}.members", "needs at least one memdev")
            if ways not in INTERLEAVE_WAYS:
                self.err(f"{w}.members", f"{ways} members is not a valid interleave (1,2,4,8,16,3,6,12)")
            if ways % win.ways:
                self.err(f"{w}.members", f"{ways} members cannot spread over the {win.ways} host bridges of "
                                         f"{self.where[id(win)]}")
            g = ar.granularity
            if g < 256 or g > 16384 or g & (g - 1):
                self.err(f"{w}.granularity", f"{g} is not a power of two in 256..16384")
            if ar.size == 0 or ar.size % (SZ_256M * ways):
                self.err(f"{w}.size", f"{_fmt_size(ar.size)} is not a non-zero multiple of {ways} x 256M "
                                      "(each member decodes a 256M multiple)")
            if ar.offset % SZ_256M:
                self.err(f"{w}.offset", f"{ar.offset:#x} is not 256M aligned (HDM decoder base)")
            if ar.offset + ar.size > win.size:
                self.err(f"{w}.size", f"offset {_fmt_size(ar.offset)} + size {_fmt_size(ar.size)} does not fit "
                                      f"in the {_fmt_size(win.size)} of {self.where[id(win)]}")
            seen = set()
            for m in ar.members:
                if m not in mds:
                    self.err(f"{w}.members", f"no memdev named {m!r}")
                if m in seen:
                    self.err(f"{w}.members", f"{m!r} is listed twice")
                seen.add(m)
                md = mds[m]
                hb = self.host_bridge_of(m)
                if hb.uid not in win.targets:
                    self.err(f"{w}.members", f"{m!r} is below host bridge {hb.name} (uid {hb.uid}), which "
                                             f"{self.where[id(win)]} does not target")
                if ar.decoder >= md.decoders:
                    self.err(f"{w}.decoder", f"{m!r} has only {md.decoders} HDM decoders")
                name = md.parent
                while True:
                    dev = self.devs[name]
                    if dev.role in ("switch", "host_bridge") and 0 < dev.cfg.decoders <= ar.decoder:
                        self.err(f"{w}.decoder", f"{dev.cfg.name!r} on the path of {m!r} has only "
                                                 f"{dev.cfg.decoders} HDM decoders")
                    if dev.role == "host_bridge":
                        break
                    name = dev.cfg.parent
                uses.setdefault(m, []).append((ar, ar.size // ways))
        for m, lst in uses.items():
            md = mds[m]
            cap = md.ram + md.pmem
            for ar, per in lst:
                w = self.where[id(ar)]
                peers = [(o, p) for o, p in lst if _compatible(o.when, ar.when)]
                same = [o for o, _ in peers if o is not ar and o.decoder == ar.decoder]
                if same:
                    self.err(f"{w}.decoder", f"decoder {ar.decoder} of {m!r} is already committed by "
                                             f"{self.where[id(same[0])]}")
                below = {o.decoder for o, _ in peers}
                missing = [k for k in range(ar.decoder) if k not in below]
                if missing:
                    self.err(f"{w}.decoder", f"firmware commits decoders in order: decoder {missing[0]} of {m!r} "
                                             "is not committed by any auto region")
                used = sum(p for o, p in peers if o.decoder <= ar.decoder)
                if used > cap:
                    self.err(f"{w}.size", f"{m!r} would need {_fmt_size(used)} of DPA for its auto regions up to "
                                          f"decoder {ar.decoder}, it has {_fmt_size(cap)}")
