"""QEMU command lines and topologies, both ways: ``cxlsys import-qemu`` / ``export-qemu``.

:func:`parse_qemu_argv` reads a QEMU x86 command line (``-M q35,cxl=on``, ``pxb-cxl``, ``cxl-rp``,
``cxl-upstream``, ``cxl-downstream``, ``cxl-type3``, ``memory-backend-*``, ``cxl-fmw.N.*``) and
returns the topology the guest kernel would see, as a topology-file dict (:func:`toml_text`
writes it); :func:`to_qemu_argv` is the reverse for a :class:`Topology` QEMU can express, checked
by importing what it wrote and comparing.  Every refusal is a :class:`QemuError`, one line
naming the option (``cxl-type3 'cxl-mem0': unknown property 'foo'``).  Pure functions, no I/O.

What the guest sees, and where each fact comes from (QEMU's sources and docs, read, not copied):

* Machine (hw/i386/pc_q35.c, hw/cxl/cxl-host.c): only q35 builds CXL on x86; ``cxl=on`` is
  needed as soon as a pxb-cxl exists ("CXL host bridges present, but cxl=off").
* pxb-cxl (hw/pci-bridge/pci_expander_bridge.c, hw/acpi/cxl.c): an ACPI0016 host bridge whose
  ``_UID`` and CHBS UID are its ``bus_nr``, root bus ``pci0000:<bus_nr>``; ``numa_node`` is the
  NUMA node of every PCI function below it (none without it).  It has 4 HDM decoders
  (CXL_HDM_DECODER_COUNT) with target count 8, except with exactly one root port and
  ``hdm_for_passthrough`` off (the default): then no HDM decoder capability at all (the
  kernel's passthrough decoder).
* Slots (hw/pci/pci.c): a device without ``addr=`` takes the lowest free slot of its bus,
  function 0, in command-line order; below a PCIe port (root or downstream) only slot 0 exists.
* Bus numbers: the guest firmware (SeaBIOS; OVMF alike) numbers buses depth-first: below a
  pxb-cxl's root bus ``bus_nr``, each bridge in slot order gets the next bus number as its
  secondary bus, then its subtree; every root and downstream port and every switch upstream
  port is a bridge, even with nothing below it.  Linux keeps that numbering.
* cxl-rp / cxl-downstream ``port=``: the PCIe port number = the kernel's dport id;
  ``chassis``/``slot`` pairs must be unique (QEMU refuses a second one).
* cxl-upstream (hw/pci-bridge/cxl_upstream.c): 4 HDM decoders, target count 8.
* cxl-type3 (hw/mem/cxl_type3.c): ``volatile-memdev`` -> ram, ``persistent-memdev`` (or the old
  ``memdev``) -> pmem, which needs ``lsa`` ("lsa property must be set for persistent devices");
  ``sn`` -> serial (none: no serial capability, the kernel reads 0); ``x-256b-flit=on`` -> 256B
  flit, ``hdm-db=on`` -> HDM-DB, which needs the flit ("hdm-db requires operating in 256b flit",
  from the HDM-DB series of the LPC 2025 talk); 4 HDM decoders, mailbox payload 2048
  (CXL_MAILBOX_PAYLOAD_SHIFT 11), IDENTIFY firmware revision "BWFW VERSION 00", PCI id
  8086:0d93.  ``volatile-dc-memdev`` (dynamic capacity) is refused: the model has no DC regions.
* cxl-fmw (hw/cxl/cxl-host.c, hw/acpi/cxl.c): ``targets.N`` name pxb-cxl ids (their number is
  the interleave ways: 1, 2, 3, 4, 6, 8, 12 or 16), ``size`` a multiple of 256M,
  ``interleave-granularity`` 256..16K (default 256); modulo arithmetic; QTG id 0, and the
  ACPI0017 ``_DSM`` answers QTG 0, hence ``qos_class`` 0 on the devices.  Window restrictions:
  QEMU writes 0x0f (type2, type3, volatile, pmem).  With an HDM-DB device the topology mirrors
  the ``qemu-hdm-db`` preset instead, type2, type3, volatile and ``bi`` (the Back-Invalidate
  proposal's window flag; the kernel profile ``6.12-bi`` goes with it).
* Window base (hw/i386/pc.c): q35 puts RAM below 4G up to 2G when ``-m`` >= 2.75G (else up to
  2.75G; ``max-ram-below-4g`` lowers that), the rest from 4G.  With ``maxmem`` above ``-m`` the
  hotplug area starts at the next 1G above that and is ``maxmem - m + slots x 1G`` long; after
  it (or after RAM) 1M of CXL host registers, then the windows from the next 256M, one after
  another in index order.
* NUMA (Linux drivers/acpi/numa): QEMU's SRAT does not cover the windows, so Linux gives each
  window a node of its own after the CPU node (1, 2, ...), offline until memory is added there.
  ``-smp`` CPUs and ``-m`` memory are node 0's; ``-numa`` is not supported here.
* Memory blocks: 128M (x86 guests of this size).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Iterator

import attrs

from cxlsys.topology import RESTRICTIONS, HostBridgeCfg, Topology, TopologyError, parse_topology
from cxlsys.topology.reader import _fmt_size
from cxlsys.topology.tomltext import Hex, Size

__all__ = ["QemuError", "format_command_line", "parse_qemu_argv", "split_command_line", "to_qemu_argv"]

SZ_1M, SZ_256M, SZ_1G, SZ_4G = 1 << 20, 256 << 20, 1 << 30, 4 << 30
QEMU_DECODERS = 4
QEMU_TARGETS = 8
PAYLOAD_MAX = 2048
FW_VERSION = "BWFW VERSION 00"
QTG_ID = 0
WAYS = (1, 2, 3, 4, 6, 8, 12, 16)
RESTRICT_QEMU = ["type2", "type3", "volatile", "pmem"]          # CFMWS window restrictions 0x0f
RESTRICT_BI = ["type2", "type3", "volatile", "bi"]              # the qemu-hdm-db preset's
BI_KERNEL = "6.12-bi"
PROGRAM = "qemu-system-x86_64"

# options that take no argument (the others take one)
NOARG = frozenset({"nographic", "no-reboot", "no-shutdown", "enable-kvm", "S", "s", "snapshot", "daemonize",
                   "nodefaults", "no-user-config", "no-acpi", "no-hpet", "full-screen", "usb", "version",
                   "help", "h", "preconfig", "only-migratable", "no-fd-bootchk", "win2k-hack", "alt-grab",
                   "ctrl-grab", "semihosting", "old-param", "no-quit", "no-frame", "vga-none"})

_COMMON = {"id", "bus", "addr", "multifunction"}
PROPS = {
    "pxb-cxl": _COMMON | {"bus_nr", "numa_node", "hdm_for_passthrough", "bypass_iommu"},
    "cxl-rp": _COMMON | {"port", "chassis", "slot", "x-256b-flit", "x-speed", "x-width", "hotplug"},
    "cxl-upstream": _COMMON | {"x-256b-flit", "sn", "port"},
    "cxl-downstream": _COMMON | {"port", "chassis", "slot", "hotplug"},
    "cxl-type3": _COMMON | {"volatile-memdev", "persistent-memdev", "memdev", "lsa", "sn", "hdm-db", "x-256b-flit",
                            "volatile-dc-memdev", "num-dc-regions", "x-speed", "x-width", "chmu-port", "cdat"},
}
BRIDGES = ("cxl-rp", "cxl-upstream", "cxl-downstream")
PARENTS = {"cxl-rp": ("pxb-cxl",), "cxl-upstream": ("cxl-rp", "cxl-downstream"),
           "cxl-downstream": ("cxl-upstream",), "cxl-type3": ("cxl-rp", "cxl-downstream")}
FMW_KEYS = ("targets", "size", "interleave-granularity")


class QemuError(ValueError):
    """A command line cxlsys cannot import, or a topology QEMU cannot express: ``str()`` is one
    line naming the option or the field."""


# ----------------------------------------------------------------------- reading the text

def split_command_line(text: str) -> list[str]:
    """A shell command line as a file holds it (``\\``-newline continuations, ``#`` comments,
    quotes) -> argv, without a leading program name (``qemu-system-x86_64``)."""
    out, quote, word_start = [], "", True
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(text):
                out.append(c)
                i += 1
                c = text[i]
        elif c in "'\"":
            quote = c
        elif c == "\\" and i + 1 < len(text):
            if text[i + 1] == "\n":
                i += 2
                out.append(" ")
                word_start = True
                continue
            out.append(c)
            i += 1
            c = text[i]
        elif c == "#" and word_start:
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        word_start = c.isspace() and not quote
        out.append(c)
        i += 1
    try:
        argv = shlex.split("".join(out))
    except ValueError as e:
        raise QemuError(f"not a command line: {e}") from None
    if argv and not argv[0].startswith("-"):
        argv = argv[1:]
    return argv


def _props(text: str, implied: str | None) -> list[tuple[str, str]]:
    """QEMU's ``key=value,key=value`` (``,,`` is a comma; a first item without ``=`` is the
    implied key's value; a bare ``flag`` is ``flag=on``)."""
    items, cur = [], []
    i = 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            items.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    items.append("".join(cur))
    out = []
    for n, item in enumerate(items):
        if not item:
            continue
        k, eq, v = item.partition("=")
        if not eq:
            out.append((implied, item) if n == 0 and implied else (item, "on"))
        else:
            out.append((k, v))
    return out


_SIZE = re.compile(r"(0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE]?)[bB]?")
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}


def _size(what: str, v: str, default_unit: str = "") -> int:
    m = _SIZE.fullmatch(v.strip())
    if not m:
        raise QemuError(f"{what}: {v!r} is not a size (e.g. 256M, 4G)")
    num, unit = m.group(1), m.group(2).upper() or default_unit
    n = int(num, 16) if num.lower().startswith("0x") else float(num) if "." in num else int(num)
    return int(n * (1 << _UNITS[unit]))


def _int(what: str, v: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    try:
        n = int(v, 0)
    except ValueError:
        raise QemuError(f"{what}: {v!r} is not an integer") from None
    if not lo <= n <= hi:
        raise QemuError(f"{what}: {n} is out of range {lo}..{hi}")
    return n


def _bool(what: str, v: str) -> bool:
    if v in ("on", "true", "yes", "y"):
        return True
    if v in ("off", "false", "no", "n"):
        return False
    raise QemuError(f"{what}: {v!r} is not on or off")


# ----------------------------------------------------------------------- the parsed machine

@attrs.define
class _Dev:
    driver: str
    props: dict[str, str]
    n: int                              # its place among the -device options
    id: str = ""
    parent: _Dev | None = None
    children: list[_Dev] = attrs.field(factory=list)
    devfn: tuple[int, int] = (0, 0)
    bus: int = 0                        # the bus it is on
    secondary: int = 0                  # a bridge's secondary bus
    pxb: _Dev | None = None

    @property
    def what(self) -> str:
        return f"{self.driver} {self.id!r}" if self.id else f"{self.driver} (the {_nth(self.n)} -device)"

    @property
    def pci_name(self) -> str:
        return f"0000:{self.bus:02x}:{self.devfn[0]:02x}.{self.devfn[1]}"

    def on(self, key: str) -> bool:
        return _bool(f"{self.what}: {key}", self.props[key]) if key in self.props else False


def _nth(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


@attrs.define
class _Machine:
    machine: dict[str, str] = attrs.field(factory=dict)
    mem: dict[str, str] = attrs.field(factory=dict)
    smp: dict[str, str] = attrs.field(factory=dict)
    objects: dict[str, tuple[str, dict[str, str]]] = attrs.field(factory=dict)     # id -> (qom-type, props)
    devs: list[_Dev] = attrs.field(factory=list)
    ids: dict[str, _Dev] = attrs.field(factory=dict)


def _options(argv: list[str]) -> Iterator[tuple[str, str]]:
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if not tok.startswith("-") or tok in ("-", "--"):
            continue                    # a disk image (QEMU's -hda default) or a stray word: not CXL
        opt = tok.lstrip("-")
        if opt in NOARG:
            yield opt, ""
            continue
        if i >= len(argv):
            raise QemuError(f"-{opt}: needs a value")
        yield opt, argv[i]
        i += 1


def _read(argv: list[str]) -> _Machine:
    m = _Machine()
    for opt, val in _options(argv):
        if opt in ("M", "machine"):
            for k, v in _props(val, "type"):
                m.machine[k] = v
        elif opt == "m":
            m.mem = dict(_props(val, "size"))
        elif opt == "smp":
            m.smp = dict(_props(val, "cpus"))
        elif opt == "numa":
            raise QemuError(f"-numa {val}: not supported by import-qemu (the guest's CPUs and memory are node 0)")
        elif opt == "object":
            p = dict(_props(val, "qom-type"))
            t = p.pop("qom-type", "")
            if t.startswith("memory-backend-"):
                if "id" not in p:
                    raise QemuError(f"-object {val}: a memory backend needs id=")
                if p["id"] in m.objects:
                    raise QemuError(f"-object {val}: id {p['id']!r} is used twice")
                m.objects[p["id"]] = (t, p)
        elif opt == "device":
            items = _props(val, "driver")
            p = dict(items)
            d = _Dev(p.pop("driver", ""), p, len(m.devs) + 1, id=p.get("id", ""))
            m.devs.append(d)
            if d.id:
                if d.id in m.ids:
                    raise QemuError(f"-device {val}: id {d.id!r} is used twice")
                m.ids[d.id] = d
    return m


# ----------------------------------------------------------------------- import

def _ram_layout(m: _Machine) -> tuple[int, int, int]:
    """(-m bytes, CPUs, the first CFMWS base)."""
    ram = _size("-m", m.mem.get("size", "128"), "M")
    maxmem = _size("-m maxmem", m.mem["maxmem"], "M") if "maxmem" in m.mem else ram
    slots = _int("-m slots", m.mem.get("slots", "0"), 0, 256)
    for k in m.mem:
        if k not in ("size", "maxmem", "slots"):
            raise QemuError(f"-m: unknown property {k!r}")
    if ram <= 0 or ram % SZ_1M:
        raise QemuError(f"-m: {_fmt_size(ram)} is not a whole number of MiB")
    if maxmem < ram:
        raise QemuError(f"-m: maxmem {_fmt_size(maxmem)} is below the initial {_fmt_size(ram)}")
    if maxmem > ram and not slots:
        raise QemuError("-m: maxmem above the initial memory needs slots=")
    if slots and maxmem == ram:
        raise QemuError("-m: slots= needs maxmem above the initial memory")
    lowmem = 0x80000000 if ram >= 0xB0000000 else 0xB0000000
    if "max-ram-below-4g" in m.machine:
        lowmem = min(lowmem, _size("-M max-ram-below-4g", m.machine["max-ram-below-4g"]))
    above = ram - lowmem if ram > lowmem else 0
    end = SZ_4G + above
    if maxmem > ram:
        end = (end + SZ_1G - 1) // SZ_1G * SZ_1G + (maxmem - ram) + slots * SZ_1G
    base = (end + SZ_1M + SZ_256M - 1) // SZ_256M * SZ_256M
    cpus = _smp(m.smp)
    return ram, cpus, base


def _smp(smp: dict[str, str]) -> int:
    if "cpus" in smp:
        return _int("-smp", smp["cpus"], 1, 4096)
    n = 1
    for k in ("sockets", "dies", "clusters", "cores", "threads"):
        if k in smp:
            n *= _int(f"-smp {k}", smp[k], 1, 4096)
    return n


def _check_machine(m: _Machine) -> bool:
    """The machine is q35; returns whether cxl=on."""
    t = m.machine.get("type", "")
    if not (t == "q35" or t.startswith("pc-q35")):
        raise QemuError(f"-M {t or '(none: the default pc)'}: cxlsys imports q35 machines "
                        "(-M q35,cxl=on), QEMU's x86 machine with CXL")
    return _bool("-M cxl", m.machine.get("cxl", "off"))


def _link(m: _Machine) -> None:
    """Each CXL device's bus, and the devices that are not CXL kept off the CXL buses."""
    for d in m.devs:
        if d.driver not in PROPS:
            if "cxl" in d.driver:
                raise QemuError(f"-device {d.driver}: not a device cxlsys models (CXL devices: "
                                f"{', '.join(PROPS)})")
            on = m.ids.get(d.props.get("bus", ""))
            if on is not None and on.driver in PROPS:
                raise QemuError(f"{d.what}: bus {on.id!r} is a CXL {on.driver}: cxlsys models only CXL devices there")
            continue
        for k in d.props:
            if k not in PROPS[d.driver]:
                raise QemuError(f"{d.what}: unknown property {k!r}")
        bus = d.props.get("bus", "pcie.0" if d.driver == "pxb-cxl" else "")
        if d.driver == "pxb-cxl":
            if bus != "pcie.0":
                raise QemuError(f"{d.what}: bus {bus!r}: a pxb-cxl plugs into pcie.0")
            continue
        if not bus:
            raise QemuError(f"{d.what}: needs bus= (a {' or '.join(PARENTS[d.driver])})")
        p = m.ids.get(bus)
        if p is None:
            raise QemuError(f"{d.what}: bus {bus!r} names no device")
        if p.driver not in PARENTS[d.driver]:
            raise QemuError(f"{d.what}: bus {bus!r} is a {p.driver}: a {d.driver} plugs into a "
                            f"{' or '.join(PARENTS[d.driver])}")
        if p.n > d.n:
            raise QemuError(f"{d.what}: bus {bus!r} is created later on the command line")
        d.parent = p
        p.children.append(d)


def _addr(d: _Dev) -> tuple[int, int] | None:
    if "addr" not in d.props:
        return None
    a = d.props["addr"]
    s, _, f = a.partition(".")
    try:
        slot, fn = int(s, 16), int(f or "0", 16)
    except ValueError:
        raise QemuError(f"{d.what}: addr {a!r} is not SLOT or SLOT.FN") from None
    if slot > 31 or fn > 7:
        raise QemuError(f"{d.what}: addr {a!r}: slots are 0..1f, functions 0..7")
    return slot, fn


def _slots(parent: _Dev, below_port: bool) -> None:
    """Give the devices on ``parent``'s bus their slots, in command-line order."""
    used: set[tuple[int, int]] = set()
    for d in parent.children:
        a = _addr(d)
        if a is None:
            free = [s for s in range(1 if below_port else 32) if (s, 0) not in used]
            if not free:
                raise QemuError(f"{d.what}: no free slot on bus {parent.id!r}"
                                + (" (below a PCIe port only slot 0 exists)" if below_port else ""))
            a = (free[0], 0)
        if below_port and a[0] != 0:
            raise QemuError(f"{d.what}: addr {d.props['addr']!r}: below a PCIe port only slot 0 exists")
        if a in used:
            raise QemuError(f"{d.what}: slot {a[0]:02x}.{a[1]} of bus {parent.id!r} is already in use")
        used.add(a)
        d.devfn = a


def _number(d: _Dev, counter: list[int], pxb: _Dev) -> None:
    """Depth-first bus numbers below bridge ``d`` (the guest firmware's order)."""
    for c in sorted(d.children, key=lambda x: x.devfn):
        c.bus = d.secondary
        c.pxb = pxb
        if c.driver in BRIDGES:
            counter[0] += 1
            if counter[0] > 0xFF:
                raise QemuError(f"{c.what}: no bus number left below pxb-cxl {pxb.id!r} (the guest has 256)")
            c.secondary = counter[0]
            _number(c, counter, pxb)


def _backend(m: _Machine, d: _Dev, key: str) -> int:
    oid = d.props[key]
    if oid not in m.objects:
        raise QemuError(f"{d.what}: {key} {oid!r} is not a memory-backend")
    t, p = m.objects[oid]
    if "size" not in p:
        raise QemuError(f"{t} {oid!r}: needs size=")
    return _size(f"{t} {oid!r}: size", p["size"])


def _memdev(m: _Machine, d: _Dev, port: _Dev) -> dict[str, Any]:
    for key in ("volatile-dc-memdev", "num-dc-regions"):
        if key in d.props:
            raise QemuError(f"{d.what}: {key}: dynamic capacity (DCD) is not modelled by cxlsys")
    if "memdev" in d.props and "persistent-memdev" in d.props:
        raise QemuError(f"{d.what}: memdev and persistent-memdev: give one (memdev is the old name)")
    pkey = "persistent-memdev" if "persistent-memdev" in d.props else "memdev"
    ram = _backend(m, d, "volatile-memdev") if "volatile-memdev" in d.props else 0
    pmem = _backend(m, d, pkey) if pkey in d.props else 0
    if not ram and not pmem:
        raise QemuError(f"{d.what}: needs volatile-memdev or persistent-memdev")
    for key, n in (("volatile-memdev", ram), (pkey, pmem)):
        if n % SZ_256M:
            raise QemuError(f"{d.what}: {key} {d.props[key]!r}: {_fmt_size(n)} is not a multiple of 256M "
                            "(the CXL capacity unit)")
    lsa = _backend(m, d, "lsa") if "lsa" in d.props else 0
    if pmem and not lsa:
        raise QemuError(f"{d.what}: persistent memory needs lsa= (QEMU: lsa property must be set for "
                        "persistent devices)")
    flit = d.on("x-256b-flit")
    hdm_db = d.on("hdm-db")
    if hdm_db and not flit:
        raise QemuError(f"{d.what}: hdm-db=on needs x-256b-flit=on (QEMU: hdm-db requires operating in 256b flit)")
    if "cdat" in d.props:
        raise QemuError(f"{d.what}: cdat: a CDAT file is not modelled (QEMU's own CDAT gives qos_class 0)")
    md: dict[str, Any] = {"name": d.pci_name, "parent": port.pci_name, "kind": "pci"}
    if ram:
        md["ram"] = Size(ram)
    if pmem:
        md["pmem"] = Size(pmem)
    if lsa:
        md["lsa"] = Size(lsa)
    if "sn" in d.props:
        md["serial"] = Hex(_int(f"{d.what}: sn", d.props["sn"]))
    assert d.pxb is not None
    if "numa_node" in d.pxb.props:
        md["numa_node"] = _int(f"{d.pxb.what}: numa_node", d.pxb.props["numa_node"], 0, 1023)
        if md["numa_node"] != 0:
            raise QemuError(f"{d.pxb.what}: numa_node {md['numa_node']}: without -numa the guest has node 0 only")
    md.update(payload_max=PAYLOAD_MAX, firmware_version=FW_VERSION, qos_class=QTG_ID, decoders=QEMU_DECODERS)
    if hdm_db:
        md["hdm_db"] = True
    if flit:
        md["flit"] = 256
    return md


def _windows(m: _Machine, pxbs: dict[str, _Dev], cxl: bool) -> list[dict[str, Any]]:
    fmw: dict[int, dict[str, Any]] = {}
    for k, v in m.machine.items():
        if not k.startswith("cxl-fmw"):
            continue
        parts = k.split(".")
        if len(parts) < 3 or not parts[1].isdigit() or parts[2] not in FMW_KEYS \
                or (parts[2] == "targets") != (len(parts) == 4) or len(parts) > 4 \
                or (len(parts) == 4 and not parts[3].isdigit()):
            raise QemuError(f"-M {k}: unknown cxl-fmw property (cxl-fmw.N.targets.M, cxl-fmw.N.size, "
                            "cxl-fmw.N.interleave-granularity)")
        if not cxl:
            raise QemuError(f"-M {k}: CXL fixed memory windows need -M cxl=on")
        w = fmw.setdefault(int(parts[1]), {"targets": {}})
        if parts[2] == "targets":
            w["targets"][int(parts[3])] = v
        else:
            w[parts[2]] = v
    out = []
    for i in range(len(fmw)):
        if i not in fmw:
            raise QemuError(f"cxl-fmw.{i}: missing (windows are numbered from 0 without gaps)")
        w = fmw[i]
        t = w["targets"]
        if not t:
            raise QemuError(f"cxl-fmw.{i}.targets: a window needs at least one target (a pxb-cxl id)")
        for j in range(len(t)):
            if j not in t:
                raise QemuError(f"cxl-fmw.{i}.targets.{j}: missing (targets are numbered from 0 without gaps)")
            if t[j] not in pxbs:
                raise QemuError(f"cxl-fmw.{i}.targets.{j}: no pxb-cxl has id {t[j]!r}")
        if len(t) not in WAYS:
            raise QemuError(f"cxl-fmw.{i}.targets: {len(t)} targets: the interleave ways are "
                            f"{', '.join(map(str, WAYS))}")
        if "size" not in w:
            raise QemuError(f"cxl-fmw.{i}.size: missing")
        size = _size(f"cxl-fmw.{i}.size", w["size"])
        if size == 0 or size % SZ_256M:
            raise QemuError(f"cxl-fmw.{i}.size: {_fmt_size(size)} is not a non-zero multiple of 256M")
        g = _size(f"cxl-fmw.{i}.interleave-granularity", w.get("interleave-granularity", "256"))
        if g < 256 or g > 16384 or g & (g - 1):
            raise QemuError(f"cxl-fmw.{i}.interleave-granularity: {g} is not a power of two in 256..16K")
        out.append({"size": Size(size), "targets": [int(pxbs[t[j]].props["bus_nr"], 0) for j in range(len(t))],
                    "granularity": g})
    return out


def parse_qemu_argv(argv: list[str], name: str = "qemu") -> dict[str, Any]:
    """The topology (a topology-file dict) a guest started with QEMU arguments ``argv`` sees."""
    m = _read(argv)
    cxl = _check_machine(m)
    ram, cpus, base = _ram_layout(m)
    _link(m)
    pxbs = {d.id: d for d in m.devs if d.driver == "pxb-cxl" and d.id}
    roots = [d for d in m.devs if d.driver == "pxb-cxl"]
    if not roots:
        raise QemuError("no -device pxb-cxl: nothing CXL to import")
    seen: dict[int, _Dev] = {}
    for p in roots:
        if not cxl:
            raise QemuError(f"{p.what}: CXL host bridges need -M cxl=on (QEMU: CXL host bridges present, but cxl=off)")
        if "bus_nr" not in p.props:
            raise QemuError(f"{p.what}: needs bus_nr=")
        nr = _int(f"{p.what}: bus_nr", p.props["bus_nr"], 1, 0xFF)
        if nr in seen:
            raise QemuError(f"{p.what}: bus_nr {nr} is already pxb-cxl {seen[nr].id!r}'s")
        seen[nr] = p
        p.bus = p.secondary = nr
    chassis: dict[tuple[str, str], _Dev] = {}
    for d in m.devs:
        if d.driver in PROPS:
            _slots(d, below_port=d.driver in ("cxl-rp", "cxl-downstream"))
        if d.driver in ("cxl-rp", "cxl-downstream"):
            key = (d.props.get("chassis", "0"), d.props.get("slot", "0"))
            if key in chassis:
                raise QemuError(f"{d.what}: chassis={key[0]},slot={key[1]} is already {chassis[key].what}'s")
            chassis[key] = d
    ordered = sorted(roots, key=lambda p: p.bus)
    for i, p in enumerate(ordered):
        counter = [p.bus]
        _number(p, counter, p)
        if i + 1 < len(ordered) and counter[0] >= ordered[i + 1].bus:
            raise QemuError(f"{p.what}: its buses {p.bus:#04x}..{counter[0]:#04x} run into pxb-cxl "
                            f"{ordered[i + 1].id!r} (bus_nr {ordered[i + 1].bus})")
    windows = _windows(m, pxbs, cxl)

    hbs, rps, sws, mds = [], [], [], []
    for d in m.devs:
        if d.driver == "pxb-cxl":
            nrp = sum(c.driver == "cxl-rp" for c in d.children)
            passthrough = nrp == 1 and not d.on("hdm_for_passthrough")
            hbs.append({"name": f"pci0000:{d.bus:02x}", "uid": d.bus, "kind": "pci", "parent": "",
                        "decoders": 0 if passthrough else QEMU_DECODERS, "targets": QEMU_TARGETS})
        elif d.driver == "cxl-rp":
            assert d.parent is not None
            rp: dict[str, Any] = {"name": d.pci_name, "parent": f"pci0000:{d.parent.bus:02x}",
                                  "port_id": _int(f"{d.what}: port", d.props.get("port", "0"), 0, 255), "kind": "pci"}
            if d.on("x-256b-flit"):
                rp["flit"] = 256
            rps.append(rp)
        elif d.driver == "cxl-upstream":
            assert d.parent is not None
            ds = [c for c in d.children if c.driver == "cxl-downstream"]
            if not ds:
                raise QemuError(f"{d.what}: a switch needs at least one cxl-downstream port")
            sw: dict[str, Any] = {"name": d.pci_name, "parent": d.parent.pci_name, "kind": "pci",
                                  "decoders": QEMU_DECODERS, "targets": QEMU_TARGETS}
            if d.on("x-256b-flit"):
                sw["flit"] = 256
            sw["downstream"] = [{"name": c.pci_name,
                                 "port_id": _int(f"{c.what}: port", c.props.get("port", "0"), 0, 255),
                                 "kind": "pci"} for c in ds]
            sws.append(sw)
        elif d.driver == "cxl-type3":
            assert d.parent is not None
            mds.append(_memdev(m, d, d.parent))
    hdm_db = any(md.get("hdm_db") for md in mds)
    nodes: list[dict[str, Any]] = [{"id": 0, "cpus": list(range(cpus)), "memory": Size(ram)}]
    for i, w in enumerate(windows):
        nodes.append({"id": i + 1, "online": False})
        w.update(restrictions=list(RESTRICT_BI if hdm_db else RESTRICT_QEMU), qtg_id=QTG_ID, node=i + 1)
    ram_total = sum(md.get("ram", 0) + md.get("pmem", 0) for md in mds)
    doc: dict[str, Any] = {
        "name": name,
        "description": f"imported from QEMU: {len(hbs)} pxb-cxl, {len(rps)} root port(s), {len(sws)} switch(es), "
                       f"{len(mds)} type-3 device(s) of {_fmt_size(ram_total) if ram_total else '0'}, "
                       f"{len(windows)} window(s)",
    }
    if hdm_db:
        doc["kernel"] = BI_KERNEL
    doc["acpi"] = {"device": "ACPI0017:00", "parent": "platform", "hpa_base": f"{base:#x}"}
    doc["system"] = {"block_size": Size(128 << 20)}
    doc["node"] = nodes
    for table, items in (("host_bridge", hbs), ("root_port", rps), ("switch", sws), ("memdev", mds),
                         ("window", windows)):
        if items:
            doc[table] = items
    return doc


# ----------------------------------------------------------------------- export

def _q(n: int) -> str:
    return _fmt_size(n) if n % 1024 == 0 else str(n)


def _gran(n: int) -> str:
    return f"{n >> 10}k" if n >= 1024 else str(n)


def _hpa_args(t: Topology, ram: int) -> str:
    """The ``-m`` value (with maxmem/slots) that puts the first window at ``t.hpa_base``."""
    lowmem = 0x80000000 if ram >= 0xB0000000 else 0xB0000000
    above_end = SZ_4G + (ram - lowmem if ram > lowmem else 0)
    first = (above_end + SZ_1M + SZ_256M - 1) // SZ_256M * SZ_256M
    if t.hpa_base == first:
        return _q(ram)
    dev_base = (above_end + SZ_1G - 1) // SZ_1G * SZ_1G
    size = t.hpa_base - SZ_256M - dev_base          # hotplug area length that ends 256M below the base
    slots = 8 if size > 8 * SZ_1G else 1
    extra = size - slots * SZ_1G
    if t.hpa_base < first or extra <= 0:
        raise QemuError(f"acpi.hpa_base: {t.hpa_base:#x}: with -m {_q(ram)} QEMU's first window is at {first:#x}, "
                        f"or at {dev_base + SZ_1G + SZ_256M + SZ_256M:#x} and above with maxmem and slots")
    return f"{_q(ram)},maxmem={_q(ram + extra)},slots={slots}"


def _refuse_structure(t: Topology) -> None:
    if t.module:
        raise QemuError(f"module: {t.module!r}: a module-loaded topology (a mock like cxl_test) has no QEMU "
                        "equivalent")
    for i, hb in enumerate(t.host_bridges):
        if hb.kind != "pci":
            raise QemuError(f"host_bridge[{i}].kind: platform devices (cxl_test's mocks) have no QEMU equivalent")
        if hb.rch:
            raise QemuError(f"host_bridge[{i}].rch: QEMU's x86 pxb-cxl is a CXL 2.0 host bridge, not an RCH")
        if not 1 <= hb.uid <= 0xFF:
            raise QemuError(f"host_bridge[{i}].uid: {hb.uid}: a pxb-cxl's uid is its bus_nr (1..255)")
    for i, md in enumerate(t.memdevs):
        if md.device_type != 3:
            raise QemuError(f"memdev[{i}].device_type: QEMU emulates type-3 devices only")
        if md.pmem and not md.lsa:
            raise QemuError(f"memdev[{i}].lsa: QEMU needs a label storage area for persistent memory")
    for i, sw in enumerate(t.switches):
        for j, dp in enumerate(sw.downstream):
            if dp.flit != 68:
                raise QemuError(f"switch[{i}].downstream[{j}].flit: QEMU's cxl-downstream has no flit setting")
    for i, w in enumerate(t.windows):
        if w.arithmetic != "modulo":
            raise QemuError(f"window[{i}].arithmetic: QEMU's CFMWS use modulo arithmetic only")
        if w.when:
            raise QemuError(f"window[{i}].when: conditions need a module; QEMU's windows are fixed")
    if t.cxims:
        raise QemuError("cxims: QEMU writes no CXIMS (no XOR interleave)")
    if t.auto_regions:
        raise QemuError("auto_region[0]: QEMU's firmware commits no HDM decoders (no auto regions)")
    if not t.nodes or t.nodes[0].id != 0 or not t.nodes[0].cpus or not t.nodes[0].memory:
        raise QemuError("node[0]: QEMU's guest has node 0 with the -smp CPUs and the -m memory")


def _emit(t: Topology) -> tuple[list[str], dict[str, str], list[Any]]:
    """The argv, the QEMU id given to each topology device name, and the switches and memdevs
    in the order they were written (parents first)."""
    _refuse_structure(t)
    node0 = t.nodes[0]
    argv = [PROGRAM, "-M", "q35,cxl=on", "-m", _hpa_args(t, node0.memory), "-smp", str(len(node0.cpus))]
    ids: dict[str, str] = {}
    devices: list[str] = []
    objects: list[str] = []
    for i, hb in enumerate(t.host_bridges):
        ids[hb.name] = f"cxl.{i + 1}"
        opts = [f"pxb-cxl,bus_nr={hb.uid},bus=pcie.0,id={ids[hb.name]}"]
        nrp = sum(rp.parent == hb.name for rp in t.root_ports)
        if nrp == 1 and hb.decoders:
            opts.append("hdm_for_passthrough=on")
        nodes = {md.numa_node for md in t.memdevs if _host_of(t, md.parent) == hb.name and md.numa_node >= 0}
        if nodes:
            opts.append(f"numa_node={min(nodes)}")
        devices.append(",".join(opts))
    slot = 0
    used: dict[str, set[tuple[int, int]]] = {}

    def addr(name: str, bus_id: str) -> str:
        s, f = int(name[8:10], 16), int(name[11])
        free = [x for x in range(32) if (x, 0) not in used.setdefault(bus_id, set())]
        used[bus_id].add((s, f))
        return "" if free and free[0] == s and f == 0 else f",addr={s:x}.{f}"

    for i, rp in enumerate(t.root_ports):
        ids[rp.name] = f"root_port{i}"
        devices.append(f"cxl-rp,port={rp.port_id},bus={ids.get(rp.parent, rp.parent)},id={ids[rp.name]},chassis=0,"
                       f"slot={slot}{addr(rp.name, rp.parent)}" + (",x-256b-flit=on" if rp.flit == 256 else ""))
        slot += 1
    pending: list[Any] = list(t.switches) + list(t.memdevs)
    order: list[Any] = []
    n_dsp = 0
    while pending:
        left = []
        for x in pending:
            if x.parent not in ids:
                left.append(x)
                continue
            order.append(x)
            if hasattr(x, "downstream"):
                ids[x.name] = f"us{len([k for k in ids.values() if k.startswith('us')])}"
                devices.append(f"cxl-upstream,bus={ids[x.parent]},id={ids[x.name]}"
                               + (",x-256b-flit=on" if x.flit == 256 else ""))
                for dp in x.downstream:
                    ids[dp.name] = f"swport{n_dsp}"
                    n_dsp += 1
                    devices.append(f"cxl-downstream,port={dp.port_id},bus={ids[x.name]},id={ids[dp.name]},chassis=0,"
                                   f"slot={slot}{addr(dp.name, x.name)}")
                    slot += 1
            else:
                k = t.memdevs.index(x)
                ids[x.name] = f"cxl-mem{k}"
                opts = [f"cxl-type3,bus={ids[x.parent]}"]
                for key, oid, size in (("volatile-memdev", f"cxl-mem{k}", x.ram),
                                       ("persistent-memdev", f"cxl-pmem{k}", x.pmem), ("lsa", f"cxl-lsa{k}", x.lsa)):
                    if size:
                        objects.append(f"memory-backend-ram,id={oid},share=on,size={_q(size)}")
                        opts.append(f"{key}={oid}")
                opts.append(f"id={ids[x.name]}")
                if x.serial:
                    opts.append(f"sn={x.serial:#x}")
                if x.flit == 256:
                    opts.append("x-256b-flit=on")
                if x.hdm_db:
                    opts.append("hdm-db=on")
                devices.append(",".join(opts))
        if len(left) == len(pending):
            raise QemuError(f"{left[0].name}: its parent {left[0].parent!r} is not a port QEMU can plug it into")
        pending = left
    for o in objects:
        argv += ["-object", o]
    for d in devices:
        argv += ["-device", d]
    fmw = []
    for i, w in enumerate(t.windows):
        for j, uid in enumerate(w.targets):
            target = next(h for h in t.host_bridges if h.uid == uid)
            fmw.append(f"cxl-fmw.{i}.targets.{j}={ids[target.name]}")
        fmw.append(f"cxl-fmw.{i}.size={_q(w.size)}")
        if w.granularity != 256:
            fmw.append(f"cxl-fmw.{i}.interleave-granularity={_gran(w.granularity)}")
    if fmw:
        argv += ["-M", ",".join(fmw)]
    return argv, ids, order


def _host_of(t: Topology, name: str) -> str:
    parents = {rp.name: rp.parent for rp in t.root_ports}
    for sw in t.switches:
        parents[sw.name] = sw.parent
        for dp in sw.downstream:
            parents[dp.name] = sw.name
    seen = 0
    while name in parents and seen < 64:
        name, seen = parents[name], seen + 1
    return name


_SKIP = {"name", "source", "description"}


def _fields(x: Any) -> dict[str, Any]:
    return {k: v for k, v in attrs.asdict(x, recurse=False).items() if k not in _SKIP and k != "downstream"}


def _diff(t: Topology, back: Topology, ids: dict[str, str], order: list[Any]) -> str | None:
    """The first field of ``t`` the imported ``back`` does not reproduce, as ``field: why``."""
    by_id: dict[str, Any] = {}
    tables: tuple[tuple[str, list[Any]], ...] = (("host_bridge", t.host_bridges), ("root_port", t.root_ports),
                                                 ("switch", t.switches), ("memdev", t.memdevs))
    for kind, items in tables:
        for i, x in enumerate(items):
            by_id[ids[x.name]] = (f"{kind}[{i}]", x)
            if kind == "switch":
                for j, dp in enumerate(x.downstream):
                    by_id[ids[dp.name]] = (f"switch[{i}].downstream[{j}]", dp)
    # match the imported devices to the source ones through the ids, by order of kind
    back_devs: dict[str, Any] = {}
    for i, hb in enumerate(back.host_bridges):
        back_devs[f"cxl.{i + 1}"] = hb
    for i, rp in enumerate(back.root_ports):
        back_devs[f"root_port{i}"] = rp
    src_sw = [x for x in order if hasattr(x, "downstream")]
    src_md = [x for x in order if not hasattr(x, "downstream")]
    for s, bs in zip(src_sw, back.switches):
        back_devs[ids[s.name]] = bs
        for sd, bd in zip(s.downstream, bs.downstream):
            back_devs[ids[sd.name]] = bd
    for s, bm in zip(src_md, back.memdevs):
        back_devs[ids[s.name]] = bm
    rename = {x.name: back_devs[i].name for i, (_, x) in by_id.items() if i in back_devs}
    for qid, (where, x) in by_id.items():
        b: Any = back_devs.get(qid)
        if b is None:
            return f"{where}: QEMU cannot plug it in"
        if b.name != x.name:
            return (f"{where}.name: {x.name!r}: QEMU's guest names it {b.name!r} (pxb-cxl bus_nr = uid, buses "
                    "numbered depth-first below it, slots in order)")
        fa, fb = _fields(x), _fields(b)
        if isinstance(x, HostBridgeCfg) and x.decoders == 0 == b.decoders:
            fa.pop("targets"), fb.pop("targets")
        for k in fa:
            va = rename.get(fa[k], fa[k]) if k == "parent" else fa[k]
            if va != fb[k]:
                return f"{where}.{k}: {fa[k]!r}: QEMU gives {fb[k]!r}"
    for k in ("kernel", "acpi_device", "acpi_parent", "acpi_driver", "memdev_driver", "hpa_base", "memory"):
        va, vb = getattr(t, k), getattr(back, k)
        if va != vb:
            field = {"hpa_base": "acpi.hpa_base", "memory": "system", "acpi_device": "acpi.device",
                     "acpi_parent": "acpi.parent", "acpi_driver": "acpi.driver",
                     "memdev_driver": "acpi.memdev_driver"}.get(k, k)
            return f"{field}: {va!r}: QEMU gives {vb!r}"
    if len(t.nodes) != len(back.nodes):
        return f"node: {len(t.nodes)} nodes: QEMU's guest has {len(back.nodes)} (node 0, then one per window)"
    for i, (na, nb) in enumerate(zip(t.nodes, back.nodes)):
        for k, v in _fields(na).items():
            if v != getattr(nb, k):
                return f"node[{i}].{k}: {v!r}: QEMU gives {getattr(nb, k)!r}"
    for i, (wa, wb) in enumerate(zip(t.windows, back.windows)):
        for k, v in _fields(wa).items():
            if k == "base" and v is not None:
                return f"window[{i}].base: QEMU places the windows one after another from acpi.hpa_base (no base)"
            if v != getattr(wb, k):
                shown = ", ".join(r for r, bit in _restr() if v & bit) if k == "restrictions" else repr(v)
                gives = ", ".join(r for r, bit in _restr() if getattr(wb, k) & bit) if k == "restrictions" \
                    else repr(getattr(wb, k))
                return f"window[{i}].{k}: {shown}: QEMU gives {gives}"
    return None


def _restr() -> list[tuple[str, int]]:
    return [(k, v) for k, v in RESTRICTIONS.items() if k != "ram"]


def to_qemu_argv(t: Topology) -> list[str]:
    """A QEMU command line whose guest sees topology ``t``; :class:`QemuError` naming the first
    thing QEMU cannot express.  Checked by importing the result and comparing it with ``t``."""
    argv, ids, order = _emit(t)
    try:
        back = parse_topology(parse_qemu_argv(argv[1:], t.name), "<export>")
    except (QemuError, TopologyError) as e:
        raise QemuError(f"the command line does not import back: {e}") from None
    why = _diff(t, back, ids, order)
    if why:
        raise QemuError(why)
    return argv


def format_command_line(argv: list[str]) -> str:
    """``argv`` as a runnable shell command: the program and the machine on the first line, then
    one option and its value per line, ``\\`` continued."""
    q = [shlex.quote(a) for a in argv]
    lines, i = [], 1
    head = [q[0]]
    while i + 1 < len(q) and argv[i] in ("-M", "-m", "-smp") and len(head) < 7:
        head += [q[i], q[i + 1]]
        i += 2
    lines.append(" ".join(head))
    while i < len(q):
        if i + 1 < len(q) and argv[i].startswith("-") and not argv[i + 1].startswith("-"):
            lines.append(f"  {q[i]} {q[i + 1]}")
            i += 2
        else:
            lines.append(f"  {q[i]}")
            i += 1
    return " \\\n".join(lines) + "\n"
