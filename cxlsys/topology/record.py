"""``cxlsys record``: a topology file from a sysfs tree.

:func:`record` reads a directory that plays ``/sys`` -- the machine's real ``/sys`` (read only), a
``cxlsys mount`` mount point, or a ``cxlsys snapshot`` directory -- with plain file reads and
readlinks only, and returns a :class:`Recording`: the topology as a dict (what
:func:`cxlsys.topology.parse_topology` takes) and the list of what the topology format cannot say
about that machine.  :meth:`Recording.text` is the TOML file, with a header naming the source and
time and the not-represented lines as comments.

What is read, and from where (all below the root):

* ``bus/cxl/devices/root0``: its ``uport`` (the ACPI0017 device), its ``dportN`` links (the host
  bridges, ``N`` = the CHBS UID), its ``decoder0.N`` (the CFMWS windows: ``start``, ``size``,
  ``interleave_ways``/``granularity``, ``target_list``, ``cap_*``, ``locked``, ``qos_class``);
* ``portN``: the host bridges' ports (their ``dportN`` = root ports) and switches (``uport`` =
  the upstream port, ``dportN`` = the downstream ports), their decoder counts;
* ``memN``: the host device (its path places it below its port; PCI ids, ``numa_node``, the
  cxl_test mock attributes), ``ram/size``, ``pmem/size``, ``serial``, ``firmware_version``,
  ``payload_max``, ``label_storage_size``, ``*/qos_class``, its endpoint's decoders;
* ``regionN``: committed regions become ``[[auto_region]]`` (what a reboot of a machine whose
  decoders are firmware-programmed or locked shows), with their members' endpoint decoders, and
  the state of their dax device (``dax_mode``, ``online``);
* ``devices/system/memory`` (block size, ``auto_online_blocks``, the hot-added blocks' state and
  zone), ``module/memory_hotplug/parameters``, ``devices/system/node`` (nodes, CPUs, boot memory,
  distances).

Nothing is dropped silently: what cannot be represented is a line in
:attr:`Recording.not_represented`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import attrs

from cxlsys.topology.tomltext import Hex, Size, toml_text

__all__ = ["RecordError", "Recording", "record"]

_PCI_FN = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_PCI_ROOT = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")
_N = re.compile(r"(\d+)$")
TARGET_COUNTS = (1, 2, 4, 8)
DEFAULT_VENDOR, DEFAULT_DEVICE = 0x8086, 0x0D93      # [[memdev]] vendor/device defaults
PCI_PORT_ID = (0x8086, 0x7075)                       # what the model gives every PCI root/switch port
PCI_CLASS_CXL_MEM = 0x050210                         # CXL memory device, CXL.mem
SZ_256M = 256 << 20


class RecordError(ValueError):
    """The root is not a sysfs tree with CXL in it; ``str()`` is one line."""


@attrs.define
class Recording:
    """What :func:`record` found: ``topology`` (the dict :func:`cxlsys.topology.parse_topology`
    takes), ``not_represented`` (one line per fact the format cannot say), :meth:`text` (the file)."""

    root: str
    topology: dict[str, Any]
    not_represented: list[str] = attrs.field(factory=list)

    def text(self, when: str = "") -> str:
        """The topology file: a header comment (source, time, what is not represented), then TOML."""
        head = [f"recorded by cxlsys record from {self.root}" + (f" at {when}" if when else "")]
        if self.not_represented:
            head.append("not represented in this file:")
            head += [f"  {line}" for line in self.not_represented]
        return toml_text(_hexed(self.topology), "\n".join(head))


def _hexed(v: Any) -> Any:
    """Integers of 1M and more (sizes, addresses, serials) written in hex, as sysfs shows them."""
    if isinstance(v, bool) or isinstance(v, (Size, Hex)):
        return v
    if isinstance(v, int):
        return Hex(v) if v >= 1 << 20 else v
    if isinstance(v, list):
        return [_hexed(x) for x in v]
    if isinstance(v, dict):
        return {k: _hexed(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------ reading

class _Tree:
    """Plain reads below ``root``; paths are relative to it (as below /sys)."""

    def __init__(self, root: str):
        self.root = root

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def read(self, rel: str) -> str | None:
        """The file's text without its trailing newline; ``None`` if it cannot be read."""
        try:
            with open(self.p(rel), "rb") as f:
                data = f.read(1 << 16)
        except OSError:
            return None
        return data.decode("utf-8", "replace").removesuffix("\n")

    def int(self, rel: str, base: int = 0) -> int | None:
        v = self.read(rel)
        try:
            return int(v.strip(), base) if v is not None else None
        except ValueError:
            return None

    def ls(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.p(rel)))
        except OSError:
            return []

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.p(rel))

    def real(self, rel: str) -> str:
        """Where ``rel`` leads once its links are followed, relative to the root."""
        return os.path.relpath(os.path.realpath(self.p(rel)), os.path.realpath(self.root))

    def link_name(self, rel: str) -> str | None:
        try:
            return os.path.basename(os.readlink(self.p(rel)))
        except OSError:
            return None


def _num(name: str) -> int:
    m = _N.search(name)
    return int(m.group(1)) if m else -1


def _dec_key(name: str) -> tuple[int, int]:
    a, _, b = name[len("decoder"):].partition(".")
    return int(a), int(b)


def _natural(name: str) -> tuple:
    """Sort key: names with their numbers compared as numbers (cxl_root_port.10 after .9)."""
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name))


def _kind(name: str) -> str:
    return "pci" if _PCI_FN.match(name) or _PCI_ROOT.match(name) else "platform"


def _round_up(n: int, choices: tuple[int, ...]) -> int:
    return next((c for c in sorted(choices) if c >= n), max(choices))


def _size(n: int) -> str | int:
    for unit, s in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << s) == 0:
            return f"{n >> s}{unit}"
    return n


@attrs.define
class _Port:
    name: str              # portN / endpointN
    uport: str             # the uport device path, relative to the root
    dports: dict[int, str]  # dport id -> device path
    decoders: list[str]    # decoder names, in id order


def record(root: str, name: str = "recorded", progress: Callable[[str], None] | None = None) -> Recording:
    """The topology of the sysfs tree at ``root`` (named ``name``); :class:`RecordError` if there
    is no CXL there.  ``progress`` is told each phase as it starts."""
    if not os.path.isdir(root):
        raise RecordError(f"{root}: {'not a directory' if os.path.lexists(root) else 'no such directory'}")
    t = _Tree(root)
    if not os.path.isdir(t.p("bus/cxl/devices")):
        raise RecordError(f"{root}: no CXL here (no bus/cxl/devices)")
    if not t.exists("bus/cxl/devices/root0"):
        raise RecordError(f"{root}: no CXL root (no bus/cxl/devices/root0: is cxl_acpi loaded?)")
    return _Recorder(t, name, progress or (lambda s: None)).run()


class _Recorder:
    def __init__(self, t: _Tree, name: str, progress: Callable[[str], None]):
        self.t = t
        self.name = name
        self.progress = progress
        self.missing: list[str] = []
        self.lsa_mems: list[str] = []

    def note(self, line: str) -> None:
        if line not in self.missing:
            self.missing.append(line)

    # ---------------------------------------------------------------- CXL ports
    def _port(self, name: str) -> _Port:
        t, d = self.t, f"bus/cxl/devices/{name}"
        dports = {}
        for x in t.ls(d):
            if x.startswith("dport") and x[5:].isdigit():
                dports[int(x[5:])] = t.real(f"{d}/{x}")
        decs = sorted((x for x in t.ls(d) if re.fullmatch(r"decoder\d+\.\d+", x)), key=_dec_key)
        return _Port(name, t.real(f"{d}/uport"), dports, decs)

    def run(self) -> Recording:
        t = self.t
        names = t.ls("bus/cxl/devices")
        self.progress("ports")
        ports = {n: self._port(n) for n in names if re.fullmatch(r"(root|port|endpoint)\d+", n)}
        root = ports["root0"]
        acpi = root.uport
        top: dict[str, Any] = {"name": "", "description": ""}
        acpi_dev = os.path.basename(acpi)
        module = None
        if t.exists("module/cxl_test"):
            module = "cxl_test"
        top["kernel"] = self._kernel(root)
        if module:
            params = {}
            for p in t.ls("module/cxl_test/parameters"):
                v = t.int(f"module/cxl_test/parameters/{p}")
                if v is not None:
                    params[p] = v
            top["module"] = {"name": module, "params": params}
        acpi_tab: dict[str, Any] = {"device": acpi_dev,
                                    "parent": "platform" if acpi.startswith("devices/platform/") else ""}

        # host bridges: root0's dports; the uid is the dport id
        hb_by_path: dict[str, dict[str, Any]] = {}
        hbs: list[dict[str, Any]] = []
        for uid, path in sorted(root.dports.items()):
            name = os.path.basename(path)
            hb: dict[str, Any] = {"name": name, "uid": uid, "kind": _kind(name)}
            if hb["kind"] == "platform":
                for c in ("physical_node", "firmware_node"):
                    if t.exists(f"{path}/{c}"):
                        hb["companion"] = c
                        break
            hb_by_path[path] = hb
            hbs.append(hb)
        by_uport = {p.uport: p for p in ports.values() if p.name != "root0"}
        root_ports: list[dict[str, Any]] = []
        switches: list[dict[str, Any]] = []
        dport_paths: list[str] = []                     # every root and downstream port's device path
        for path, hb in hb_by_path.items():
            port = by_uport.get(path)
            if port is None:
                # no portN for it: an RCH (its RCDs attach to root0), or a host bridge cxl_acpi gave up on
                below = [p for p in ports.values() if p.name.startswith("endpoint")
                         and os.path.dirname(os.path.dirname(p.uport)) == path]
                if below:
                    hb["rch"] = True
                else:
                    self.note(f"host bridge {hb['name']}: no CXL port and no RCD below it (recorded as a host "
                              "bridge without root ports; the loader refuses it unless it is an RCH)")
                continue
            self._decoders(hb, port, len(port.dports))
            for pid, dp in sorted(port.dports.items()):
                root_ports.append({"name": os.path.basename(dp), "parent": hb["name"], "port_id": pid})
                if hb["kind"] == "pci":
                    self._pci_port_id(dp)
                dport_paths.append(dp)
        # switches: ports whose uport sits below a dport
        sw_ports = sorted((p for p in ports.values() if p.name.startswith("port") and p.uport not in hb_by_path),
                          key=lambda p: _num(p.name))
        for sp in sw_ports:
            sw: dict[str, Any] = {"name": os.path.basename(sp.uport),
                                  "parent": os.path.basename(os.path.dirname(sp.uport))}
            self._decoders(sw, sp, len(sp.dports))
            sw["downstream"] = [{"name": os.path.basename(dp), "port_id": pid}
                                for pid, dp in sorted(sp.dports.items())]
            dport_paths += list(sp.dports.values())
            switches.append(sw)
        # file order is enumeration order: the root ports as the platform or PCI numbers them
        root_ports.sort(key=lambda rp: _natural(rp["name"]))

        # memdevs, by memN
        self.progress("memdevs")
        mems = sorted((n for n in names if re.fullmatch(r"mem\d+", n)), key=_num)
        ep_of = {p.uport: p for p in ports.values() if p.name.startswith("endpoint")}
        memdevs: list[dict[str, Any]] = []
        mem_host: dict[str, str] = {}           # memN -> host device name
        mem_ep: dict[str, _Port] = {}
        rch_names = {hb["name"] for hb in hbs if hb.get("rch")}
        for m in mems:
            md, ep = self._memdev(m, ep_of, rch_names)
            memdevs.append(md)
            mem_host[m] = md["name"]
            if ep is not None:
                mem_ep[m] = ep
        if module != "cxl_test" and any(md["kind"] == "platform" for md in memdevs):
            acpi_tab["memdev_driver"] = "cxl_mock_mem"         # what binds platform memdevs outside cxl_test
        known = ({os.path.basename(p) for p in dport_paths} | {sw["name"] for sw in switches}
                 | {md["name"] for md in memdevs})
        self._unseen_below(dport_paths, known)

        # windows, in decoder0.N order
        self.progress("windows")
        windows, bases = self._windows(root)
        top["acpi"] = acpi_tab
        top["system"] = self._system()
        self.progress("nodes")
        top["node"] = self._nodes()
        top["host_bridge"] = hbs
        top["root_port"] = root_ports
        top["switch"] = switches
        top["memdev"] = memdevs
        top["window"] = windows
        self.progress("regions")
        top["auto_region"] = self._regions(root, bases, mem_host, mem_ep, ports, windows)
        self._window_nodes(windows, top["node"])
        if self.lsa_mems:
            self.note(f"label storage contents of {', '.join(self.lsa_mems)} (read through the mailbox, not "
                      "sysfs): not recorded; a reboot starts from the device model's")
        self.note("poison lists, event logs, firmware slots (the mailbox and trace events, not sysfs): not recorded")
        for k in ("root_port", "switch", "memdev", "window", "auto_region", "host_bridge", "node"):
            if not top[k]:
                del top[k]
        top["name"] = self.name
        top["description"] = (f"recorded: {len(hbs)} host bridge(s), {len(switches)} switch(es), "
                              f"{len(memdevs)} memdev(s), {len(windows)} window(s), "
                              f"{len(top.get('auto_region', []))} committed region(s)")
        if top["kernel"] is None:
            del top["kernel"]
        return Recording(self.t.root, top, self.missing)

    def _kernel(self, root: _Port) -> str | None:
        """The kernel profile (cxlsys/profile.py) the attributes show, ``None`` for the default:
        the version itself is not in sysfs (/proc/sys/kernel/osrelease), only some of what differs
        -- the BI proposal's ``create_ram_bi_region``, v7.3's ``daxX.Y/state`` while kmem holds a
        device."""
        t = self.t
        bi = any(t.exists(f"bus/cxl/devices/root0/{d}/create_ram_bi_region") for d in root.decoders)
        if bi:
            self.note("hdm_db and flit of memdevs and ports: PCIe DVSEC registers, not in sysfs "
                      "(recorded as 68B flit, no HDM-DB)")
        v73 = any(t.exists(f"bus/dax/devices/{x}/state") for x in t.ls("bus/dax/devices"))
        base = "7.3" if v73 else "6.12"
        self.note(f"the kernel version (not in sysfs): recorded as {base}{'+bi' if bi else ''}, what the "
                  "attributes show (boot the recording with --kernel for another)")
        if not v73 and not bi:
            return None
        return f"{base}+bi" if bi else base

    def _decoders(self, entry: dict[str, Any], port: _Port, ndports: int) -> None:
        entry["decoders"] = len(port.decoders)
        if len(port.decoders) == 1 and ndports == 1:
            self.note(f"{port.name}: one decoder over one dport: an HDM decoder and the passthrough one of a port "
                      "without HDM registers look the same in sysfs: recorded as an HDM decoder")
        if _PCI_FN.match(entry["name"]):
            self._pci_port_id(port.uport)
            for dp in port.dports.values():
                self._pci_port_id(dp)
        ways = [self.t.int(f"bus/cxl/devices/{port.name}/{d}/interleave_ways") or 1 for d in port.decoders]
        entry["targets"] = _round_up(max([ndports, *ways]), TARGET_COUNTS)
        self.note("HDM decoder target counts (an HDM capability register, not in sysfs): recorded as the "
                  "number of dports rounded up to 1, 2, 4 or 8")

    def _pci_port_id(self, path: str) -> None:
        """A PCI port's vendor:device; the model gives every PCI port 8086:7075."""
        v, d = self.t.int(f"{path}/vendor"), self.t.int(f"{path}/device")
        if v is not None and d is not None and (v, d) != PCI_PORT_ID:
            self.note(f"{os.path.basename(path)}: PCI id {v:04x}:{d:04x} (the model gives every PCI port "
                      f"{PCI_PORT_ID[0]:04x}:{PCI_PORT_ID[1]:04x}): not represented")

    def _unseen_below(self, dport_paths: list[str], known: set[str]) -> None:
        """Devices below a root or downstream port that are not on the CXL bus (a switch with no
        endpoint below it yet, a memdev cxl_pci did not bind, a non-CXL device): said, not recorded."""
        t = self.t
        for dp in dport_paths:
            for x in t.ls(dp):
                if x in known or not (_PCI_FN.match(x) or re.fullmatch(r"[\w-]+\.\d+", x)):
                    continue
                if os.path.isdir(t.p(f"{dp}/{x}")) and not os.path.islink(t.p(f"{dp}/{x}")) \
                        and t.exists(f"{dp}/{x}/uevent"):
                    self.note(f"{x} (below {os.path.basename(dp)}): not a CXL port or memdev on the CXL bus: "
                              "not recorded")

    def _memdev(self, m: str, ep_of: dict[str, _Port], rch: set[str]) -> tuple[dict[str, Any], _Port | None]:
        t, d = self.t, f"bus/cxl/devices/{m}"
        path = t.real(d)
        host = os.path.dirname(path)
        hname = os.path.basename(host)
        parent = os.path.basename(os.path.dirname(host))
        md: dict[str, Any] = {"name": hname, "parent": parent, "kind": _kind(hname)}
        ram, pmem = t.int(f"{d}/ram/size") or 0, t.int(f"{d}/pmem/size") or 0
        if ram:
            md["ram"] = _size(ram)
        if pmem:
            md["pmem"] = _size(pmem)
        if (ram % SZ_256M) or (pmem % SZ_256M):
            self.note(f"{m}: capacity ram {ram:#x} pmem {pmem:#x} is not in 256M units (the loader refuses it)")
        serial = t.int(f"{d}/serial")
        md["serial"] = serial or 0
        numa = t.int(f"{host}/numa_node")
        if numa is None:
            numa = t.int(f"{d}/numa_node")
        if numa is not None and numa != -1:
            md["numa_node"] = numa
        lsa = t.int(f"{d}/label_storage_size")
        if lsa:
            md["lsa"] = _size(lsa)
        pm = t.int(f"{d}/payload_max")
        if pm is not None and pm != 4096:
            md["payload_max"] = pm
        fw = t.read(f"{d}/firmware_version")
        if fw:
            md["firmware_version"] = fw
        qos = [t.int(f"{d}/{part}/qos_class") for part in ("ram", "pmem")]
        qos = [q for q in qos if q is not None]
        if qos:
            md["qos_class"] = qos[0]
            if len(set(qos)) > 1:
                self.note(f"{m}: ram and pmem qos_class differ ({qos[0]}, {qos[1]}): recorded as {qos[0]}")
        ep = ep_of.get(path)
        if ep is not None:
            md["decoders"] = max(1, len(ep.decoders))
        else:
            self.note(f"{m}: no endpoint port (not attached to the CXL topology): its HDM decoder count is "
                      "recorded as the default")
        if parent in rch:
            md["rcd"] = True
        if md["kind"] == "platform" and t.exists(f"{host}/event_trigger"):
            md["mock"] = True
        if md["kind"] == "pci":
            v, dv = t.int(f"{host}/vendor"), t.int(f"{host}/device")
            if v is not None and v != DEFAULT_VENDOR:
                md["vendor"] = v
            if dv is not None and dv != DEFAULT_DEVICE:
                md["device"] = dv
        if t.exists(f"{d}/dc") or any(x.startswith("dc") and x[2:].isdigit() for x in t.ls(d)):
            self.note(f"{m}: dynamic capacity partitions: the format has none (not recorded)")
        cls = t.int(f"{host}/class")
        if md["kind"] == "pci" and cls is not None and cls != PCI_CLASS_CXL_MEM:
            self.note(f"{md['name']}: PCI class {cls:#08x}, not a CXL memory device (0x050210) as the model's: "
                      "recorded as one")
        sec = t.read(f"{d}/security/state")
        if sec not in (None, "disabled"):
            self.note(f"{m}: security state {sec} (a passphrase): the format has none, a reboot shows disabled")
        if lsa:
            self.lsa_mems.append(m)
        return md, ep

    # ---------------------------------------------------------------- windows
    def _windows(self, root: _Port) -> tuple[list[dict[str, Any]], list[int]]:
        t = self.t
        out, bases = [], []
        for i, dec in enumerate(root.decoders):
            d = f"bus/cxl/devices/root0/{dec}"
            if _dec_key(dec)[1] != i:
                self.note(f"root decoders are not numbered 0..N-1 ({dec} at place {i}): windows recorded in order")
            size, start = t.int(f"{d}/size") or 0, t.int(f"{d}/start") or 0
            tl = t.read(f"{d}/target_list") or ""
            targets = [int(x) for x in tl.split(",") if x.strip().isdigit()]
            w: dict[str, Any] = {"size": _size(size), "targets": targets, "base": start}
            g = t.int(f"{d}/interleave_granularity", 10) or 256
            if g != 256:
                w["granularity"] = g
            rs = []
            for cap, r in (("cap_type2", "type2"), ("cap_type3", "type3"), ("cap_ram", "volatile"),
                           ("cap_pmem", "pmem")):
                if t.int(f"{d}/{cap}") == 1:
                    rs.append(r)
            if t.int(f"{d}/locked") == 1:
                rs.append("fixed")
            if t.exists(f"{d}/create_ram_bi_region"):
                rs.append("bi")
            w["restrictions"] = rs
            q = t.int(f"{d}/qos_class")
            if q is not None and q != -1:
                w["qtg_id"] = q
            if len(targets) > 1:
                self.note("window interleave arithmetic (a CFMWS field; the CEDT is not parsed): recorded as "
                          "modulo, no [[cxims]]")
            out.append(w)
            bases.append(start)
        return out, bases

    def _window_nodes(self, windows: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        """A window's NUMA node shows only as the target_node of a dax device in it."""
        declared = {n["id"] for n in nodes}
        unknown = []
        for i, w in enumerate(windows):
            if "node" in w:
                if w["node"] not in declared:
                    self.note(f"window {i}: node {w['node']} is not in devices/system/node: node not recorded")
                    del w["node"]
                continue
            unknown.append(f"decoder0.{i}")
        if unknown:
            self.note(f"the NUMA node of {', '.join(unknown)} (shown only as the target_node of a dax device in "
                      "the window; none there): recorded without a node")

    # ---------------------------------------------------------------- regions
    def _regions(self, root: _Port, bases: list[int], mem_host: dict[str, str], mem_ep: dict[str, _Port],
                 ports: dict[str, _Port], windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t = self.t
        regions: list[tuple[int, dict[str, Any], list[str]]] = []
        ep_mem = {ep.name: m for m, ep in mem_ep.items()}
        paths: dict[int, str] = {}
        for i, dec in enumerate(root.decoders):
            d = f"bus/cxl/devices/root0/{dec}"
            for r in sorted((x for x in t.ls(d) if re.fullmatch(r"region\d+", x)), key=_num):
                rd = f"{d}/{r}"
                if t.int(f"{rd}/commit") != 1:
                    self.note(f"{r}: not committed (a run-time setup a reboot does not keep): not recorded")
                    continue
                ways = t.int(f"{rd}/interleave_ways", 10) or 0
                targets = [t.read(f"{rd}/target{k}") or "" for k in range(ways)]
                members, decs = [], []
                for e in targets:
                    ep = os.path.basename(os.path.dirname(t.real(f"bus/cxl/devices/{e}"))) if e else ""
                    if ep not in ep_mem:
                        self.note(f"{r}: target {e or '?'} is not an endpoint decoder of a recorded memdev: "
                                  "not recorded")
                        break
                    members.append(mem_host[ep_mem[ep]])
                    decs.append(_dec_key(e)[1])
                else:
                    if len(set(decs)) != 1:
                        self.note(f"{r}: its members use decoders {', '.join(map(str, decs))} (an auto region "
                                  "commits the same decoder number on every member): not recorded")
                        continue
                    start, size = t.int(f"{rd}/resource") or 0, t.int(f"{rd}/size") or 0
                    ar: dict[str, Any] = {"window": i, "size": _size(size), "members": members,
                                          "granularity": t.int(f"{rd}/interleave_granularity", 10) or 4096}
                    off = start - bases[i]
                    if off:
                        ar["offset"] = _size(off)
                    if decs[0]:
                        ar["decoder"] = decs[0]
                    regions.append((_num(r), ar, targets))
                    paths[_num(r)] = rd
        # firmware's decoders come back only in order, back to back from DPA 0: a region with a member
        # decoder that cannot is dropped, and with it the later decoders of that memdev
        while True:
            used = {e for _, _, targets in regions for e in targets}
            bad = self._unreproducible(mem_ep, used, say=False)
            drop = [x for x in regions if bad.keys() & set(x[2])]
            if not drop:
                break
            for n, _, targets in drop:
                self.note(f"region{n}: " + "; ".join(bad[e] for e in targets if e in bad) + ": not recorded")
            regions = [x for x in regions if x not in drop]
        self._unreproducible(mem_ep, used, say=True)
        for n, ar, _ in regions:
            rd = paths[n]
            if (t.read(f"{rd}/mode") or "") == "pmem":
                self.note(f"region{n}: a pmem region: its uuid ({t.read(f'{rd}/uuid') or ''}), nvdimm labels and "
                          "namespaces are not represented (firmware-committed pmem assembles without them)")
            self._dax_state(f"region{n}", rd, ar, windows[ar["window"]])
        self._stray_decoders(ports, used)
        regions.sort(key=lambda x: x[0])
        self._check_order(regions, ports)
        return [ar for _, ar, _ in regions]

    def _dax_state(self, r: str, rd: str, ar: dict[str, Any], window: dict[str, Any]) -> None:
        t = self.t
        n = _num(r)
        dr = f"{rd}/dax_region{n}"
        if not t.exists(dr):
            if (t.read(f"{rd}/mode") or "") == "ram":
                self.note(f"{r}: no dax region (cxl_region not bound to it?): a reboot binds it")
            return
        daxes = sorted((x for x in t.ls(dr) if re.fullmatch(r"dax\d+\.\d+", x)))
        if daxes != [f"dax{n}.0"]:
            self.note(f"{r}: dax devices {', '.join(daxes) or 'none'} (a reboot gives dax{n}.0 over all of it)")
        if not daxes:
            return
        dd = f"{dr}/{daxes[0]}"
        node = t.int(f"{dd}/target_node")
        if node is not None and node >= 0:
            if "node" in window and window["node"] != node:
                self.note(f"{r}: target_node {node} differs from another region's in the same window "
                          f"({window['node']})")
            window.setdefault("node", node)
        drv = t.link_name(f"{dd}/driver")
        if drv == "device_dax":
            ar["dax_mode"] = "devdax"
            return
        if drv != "kmem":
            self.note(f"{r}: {daxes[0]} bound to {drv or 'no driver'}: recorded as kmem (system-ram)")
            return
        blocks = self._dax_blocks(dd)
        states = set()
        for b in blocks:
            st = t.read(f"devices/system/memory/{b}/state") or "offline"
            zone = (t.read(f"devices/system/memory/{b}/valid_zones") or "").split()
            if st == "online":
                states.add("online_movable" if zone and zone[0] == "Movable" else "online_kernel")
            else:
                states.add(st)
        if len(states) > 1:
            self.note(f"{r}: the blocks of {daxes[0]} are in different states ({', '.join(sorted(states))}): "
                      "recorded as offline")
            states = {"offline"}
        state = states.pop() if states else "offline"
        policy = t.read("devices/system/memory/auto_online_blocks") or "offline"
        if (state, policy) != ("offline", "offline"):
            ar["online"] = state

    def _dax_blocks(self, dd: str) -> list[str]:
        """The memory blocks a kmem-bound dax device's mappings cover (trimmed to whole blocks, as
        kmem adds them)."""
        t = self.t
        bs = t.int("devices/system/memory/block_size_bytes", 16) or (128 << 20)
        out = []
        for mp in sorted(x for x in t.ls(dd) if x.startswith("mapping")):
            s, e = t.int(f"{dd}/{mp}/start"), t.int(f"{dd}/{mp}/end")
            if s is None or e is None:
                continue
            first, last = -(-s // bs), (e + 1) // bs
            out += [f"memory{i}" for i in range(first, last) if t.exists(f"devices/system/memory/memory{i}")]
        return out

    def _unreproducible(self, mem_ep: dict[str, _Port], used: set[str], say: bool) -> dict[str, str]:
        """The endpoint decoders of ``used`` a reboot of the recording cannot give back as they are
        (firmware's decoders are committed in order and map DPA back to back from 0, each in the
        partition there), each with the reason; with ``say``, what else the memdevs hold is noted."""
        t = self.t
        bad: dict[str, str] = {}
        for m, ep in mem_ep.items():
            nxt, broken = 0, ""
            ram = t.int(f"bus/cxl/devices/{m}/ram/size") or 0
            for dec in ep.decoders:
                d = f"bus/cxl/devices/{ep.name}/{dec}"
                size = t.int(f"{d}/dpa_size") or 0
                res = t.int(f"{d}/dpa_resource")
                if dec not in used:
                    if size:
                        broken = broken or f"{dec} before it holds DPA without a recorded region"
                        if say:
                            self.note(f"{dec} ({m}): {size:#x} of DPA allocated without a recorded region: "
                                      "not recorded")
                    else:
                        broken = broken or f"{dec} before it is not committed"
                    continue
                mode = t.read(f"{d}/mode")
                if broken:
                    bad[dec] = f"{dec} ({m}): {broken}"
                elif res != nxt:
                    bad[dec] = (f"{dec} ({m}): DPA {res:#x} after a skip (firmware decoders map DPA back to back "
                                f"from 0)" if res is not None else f"{dec} ({m}): DPA unknown")
                elif (mode == "ram") != (nxt < ram):
                    bad[dec] = (f"{dec} ({m}): mode {mode} at DPA {nxt:#x}, in the "
                                f"{'ram' if nxt < ram else 'pmem'} partition")
                if dec in bad:
                    broken = broken or f"{dec} before it cannot be recorded"
                nxt = (res or 0) + size
                if say and t.int(f"{d}/locked") == 1:
                    self.note(f"{dec} ({m}): locked: the format has no lock bit (recorded as committed)")
        return bad

    def _stray_decoders(self, ports: dict[str, _Port], used: set[str]) -> None:
        """Committed switch and host bridge decoders are recorded with their regions; report any
        region a port decoder names that was not recorded."""
        t = self.t
        for p in ports.values():
            if p.name == "root0" or p.name.startswith("endpoint"):
                continue
            for dec in p.decoders:
                d = f"bus/cxl/devices/{p.name}/{dec}"
                if (t.int(f"{d}/size") or 0) and not (t.read(f"{d}/region") or "").strip():
                    self.note(f"{dec} ({p.name}): committed without a region: not recorded")

    def _check_order(self, regions: list[tuple[int, dict[str, Any], list[str]]], ports: dict[str, _Port]) -> None:
        """The recorded regions are in region id order, and firmware commits a switch's or host
        bridge's decoders 0, 1, ... to the auto regions through it in file order: say where that is
        not what the ports show (a region destroyed and made again, decoders left free in between),
        and where the ids would not come back (a reboot numbers the regions from region0)."""
        t = self.t
        ids = [n for n, _, _ in regions]
        if ids != list(range(len(ids))):
            self.note(f"region ids {', '.join(f'region{n}' for n in ids)}: a reboot numbers the committed "
                      "regions from region0")
        for p in sorted(ports.values(), key=lambda p: _num(p.name)):
            if not p.name.startswith("port"):
                continue
            names = [(_dec_key(d)[1], (t.read(f"bus/cxl/devices/{p.name}/{d}/region") or "").strip())
                     for d in p.decoders]
            held = [(k, _num(r)) for k, r in names if r and _num(r) in ids]       # the recorded regions'
            want = [(k, n) for k, n in enumerate(n for n in ids if n in {r for _, r in held})]
            if held and held != want:
                def show(pairs: list[tuple[int, int]]) -> str:
                    return ", ".join(f"decoder {k}: region{n}" for k, n in pairs)
                self.note(f"{p.name}: its decoders hold {show(held)}; a reboot commits them in order: {show(want)}")

    # ---------------------------------------------------------------- memory and nodes
    def _system(self) -> dict[str, Any]:
        t = self.t
        s: dict[str, Any] = {}
        bs = t.int("devices/system/memory/block_size_bytes", 16)
        if bs:
            s["block_size"] = _size(bs)
        a = t.read("devices/system/memory/auto_online_blocks")
        if a:
            s["auto_online_blocks"] = a
        mp = "module/memory_hotplug/parameters"
        v = t.read(f"{mp}/online_policy")
        if v:
            s["online_policy"] = v
        r = t.int(f"{mp}/auto_movable_ratio", 10)
        if r is not None:
            s["auto_movable_ratio"] = r
        for k in ("auto_movable_numa_aware", "memmap_on_memory"):
            v = t.read(f"{mp}/{k}")
            if v in ("Y", "N"):
                s[k] = v == "Y"
        kz = t.read("kernel/debug/cxlsys/memory/kernel_zone_unmovable")      # the model's knob (debugfs)
        if kz is not None and kz.strip() in ("0", "1", "Y", "N"):
            s["kernel_zone_unmovable"] = kz.strip() in ("1", "Y")
        self.note("movable_node (a boot option, /proc/cmdline, not in sysfs): recorded as off")
        return s

    def _nodes(self) -> list[dict[str, Any]]:
        t = self.t
        base = "devices/system/node"
        possible = _cpus(t.read(f"{base}/possible") or "")
        online = set(_cpus(t.read(f"{base}/online") or ""))
        bs = t.int("devices/system/memory/block_size_bytes", 16) or (128 << 20)
        hot: dict[int, int] = {}                  # node -> bytes of hot-added blocks online
        for b in t.ls("devices/system/memory"):
            if not re.fullmatch(r"memory\d+", b):
                continue
            if t.read(f"devices/system/memory/{b}/state") != "online":
                continue
            for x in t.ls(f"devices/system/memory/{b}"):
                if re.fullmatch(r"node\d+", x):
                    hot[_num(x)] = hot.get(_num(x), 0) + bs
        out = []
        ids = sorted(set(possible) | {_num(x) for x in t.ls(base) if re.fullmatch(r"node\d+", x)})
        for nid in ids:
            nd = f"{base}/node{nid}"
            n: dict[str, Any] = {"id": nid}
            cpus = _cpus(t.read(f"{nd}/cpulist") or "")
            if cpus:
                n["cpus"] = cpus
            total = 0
            for line in (t.read(f"{nd}/meminfo") or "").splitlines():
                f = line.split()
                if len(f) >= 4 and f[2] == "MemTotal:" and f[3].isdigit():
                    total = int(f[3]) * 1024
            boot = total - hot.get(nid, 0)
            if boot > 0:
                n["memory"] = _size(boot)
            dist = (t.read(f"{nd}/distance") or "").split()
            if dist and len(dist) == len([i for i in ids if t.exists(f"{base}/node{i}")]):
                others = [i for i in ids if t.exists(f"{base}/node{i}")]
                dd = {}
                for j, v in zip(others, dist):
                    if v.isdigit() and int(v) != (10 if j == nid else 20):
                        dd[str(j)] = int(v)
                if dd:
                    n["distances"] = dd
            if nid not in online or (not cpus and boot <= 0):
                # a node without CPUs or boot memory is offline at boot: hot-added memory brings it online
                n["online"] = False
            out.append(n)
        return out


def _cpus(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        try:
            out += list(range(int(a), int(b or a) + 1))
        except ValueError:
            continue
    return out
