"""``cxlsys generate``: topologies for scale, written as a topology file.

A generated machine is PCIe throughout, as a server's: ``host_bridges`` CXL host bridges (one
PCI domain each, ``pciDDDD:0c``), ``root_ports`` root ports on each, and below every root port
either one memdev or, with ``switch_ports``, a switch with that many downstream ports, a memdev on
each.  Bus numbers follow the PCI hierarchy (the loader checks them); memdevs are numbered in
that order, ``serial`` 1, 2, ...  Each host bridge gets one ram window (and one pmem window when
the memdevs have pmem) the size of the capacity below it, on a CPU-less NUMA node of its own, so
hot-added memory lands on node 1, 2, ...; with ``interleave`` a window over all host bridges is
added first.  ``auto_region`` ways commits firmware's ram region over the first memdevs of host
bridge 0 (as BIOS does), so the machine boots with a region, a dax device and its blocks.

Sizes for scale: ``--host-bridges 8 --root-ports 2 --switch-ports 64 --ram 8G`` is 1 024 memdevs
and 8 TiB of windows, 65 536 memory blocks of 128 MiB.  :func:`generate` returns the text;
the loader's limits (:mod:`cxlsys.topology.limits`) still apply to what it writes.
"""

from __future__ import annotations

import attrs

from cxlsys.cxl import cxl as C

__all__ = ["GenSpec", "GenerateError", "generate"]

ROOT_BUS = 0x0C
WAYS = (1, 2, 4, 8, 16, 3, 6, 12)       # CFMWS interleave ways
PORT_TARGETS = 8                        # HDM decoder target count of generated ports (the most there is)


class GenerateError(ValueError):
    """A spec that cannot make a valid machine; ``str()`` is one line naming the option."""


@attrs.frozen
class GenSpec:
    host_bridges: int = 1
    root_ports: int = 2                 # per host bridge
    switch_ports: int = 0               # downstream ports per switch; 0: memdevs on the root ports
    memdevs: int | None = None          # at most this many (None: one on every leaf port)
    ram: int = 256 << 20                # per memdev
    pmem: int = 0
    block_size: int = 128 << 20
    interleave: bool = False            # a ram window over all host bridges too (ways = host_bridges)
    auto_region: int = 0                # ways of a firmware-committed ram region on host bridge 0
    name: str = ""


def _size(n: int) -> str:
    for unit, s in (("T", 40), ("G", 30), ("M", 20)):
        if n % (1 << s) == 0:
            return f'"{n >> s}{unit}"'
    return f'"{n:#x}"'


def _check(s: GenSpec) -> None:
    def bad(opt: str, msg: str) -> GenerateError:
        return GenerateError(f"--{opt.replace('_', '-')}: {msg}")

    if not 1 <= s.host_bridges <= 256:
        raise bad("host_bridges", f"{s.host_bridges}: 1..256 (one PCI domain each)")
    if not 1 <= s.root_ports <= 256:
        raise bad("root_ports", f"{s.root_ports}: 1..256 per host bridge (32 devices x 8 functions)")
    if not 0 <= s.switch_ports <= 256:
        raise bad("switch_ports", f"{s.switch_ports}: 0..256 downstream ports per switch")
    per_rp = 2 + s.switch_ports if s.switch_ports else 1
    if ROOT_BUS + s.root_ports * per_rp > 0xFF:
        raise bad("root_ports", f"{s.root_ports} root ports x {per_rp} buses each do not fit one PCI domain's "
                                f"256 buses: use more --host-bridges")
    if s.ram < 0 or s.pmem < 0 or s.ram % C.SZ_256M or s.pmem % C.SZ_256M or s.ram + s.pmem == 0:
        raise bad("ram", "ram and pmem per memdev: multiples of 256M, not both 0")
    if s.memdevs is not None and s.memdevs < 1:
        raise bad("memdevs", f"{s.memdevs}: at least 1")
    if s.interleave and s.host_bridges not in WAYS:
        raise bad("interleave", f"a window over {s.host_bridges} host bridges: ways must be one of "
                                f"{', '.join(map(str, WAYS))}")
    if s.auto_region:
        fan = s.switch_ports or s.root_ports
        if s.auto_region not in (1, 2, 4, 8) or s.auto_region > fan:
            raise bad("auto_region", f"{s.auto_region} ways: 1, 2, 4 or 8, at most the "
                                     f"{'downstream' if s.switch_ports else 'root'} ports below one "
                                     f"{'switch' if s.switch_ports else 'host bridge'} ({fan})")
        if not s.ram:
            raise bad("auto_region", "a ram region needs --ram")


def generate(spec: GenSpec) -> str:
    """The topology file (TOML text) for ``spec``; :class:`GenerateError` if it cannot be made."""
    _check(spec)
    s = spec
    out: list[str] = []
    hbs, rps, sws, mds = [], [], [], []        # (text lines) per table kind
    below: list[list[str]] = []                # per host bridge: its memdev names, in order
    left = s.memdevs if s.memdevs is not None else 1 << 62
    serial = 0

    def memdev(name: str, parent: str) -> None:
        nonlocal serial, left
        serial += 1
        left -= 1
        mds.append(f'[[memdev]]\nname = "{name}"\nparent = "{parent}"\nkind = "pci"\n'
                   + (f"ram = {_size(s.ram)}\n" if s.ram else "") + (f"pmem = {_size(s.pmem)}\n" if s.pmem else "")
                   + f"serial = {serial:#x}\n")
        below[-1].append(name)

    for h in range(s.host_bridges):
        if left <= 0:
            break
        dom = f"{h:04x}"
        hbs.append(f'[[host_bridge]]\nname = "pci{dom}:{ROOT_BUS:02x}"\nuid = {h}\nkind = "pci"\n'
                   f"targets = {PORT_TARGETS}\n")
        below.append([])
        bus = ROOT_BUS
        for r in range(s.root_ports):
            if left <= 0:
                break
            rp = f"{dom}:{ROOT_BUS:02x}:{r // 8:02x}.{r % 8}"
            rps.append(f'[[root_port]]\nname = "{rp}"\nparent = "pci{dom}:{ROOT_BUS:02x}"\nport_id = {r}\n')
            bus += 1
            if not s.switch_ports:
                memdev(f"{dom}:{bus:02x}:00.0", rp)
                continue
            up = f"{dom}:{bus:02x}:00.0"
            bus += 1
            inner = bus
            ds: list[str] = []
            kids: list[tuple[str, str]] = []
            for d in range(s.switch_ports):
                if left - len(kids) <= 0:
                    break
                dp = f"{dom}:{inner:02x}:{d // 8:02x}.{d % 8}"
                ds.append(f'    {{ name = "{dp}", port_id = {d} }},')
                bus += 1
                kids.append((f"{dom}:{bus:02x}:00.0", dp))
            sws.append(f'[[switch]]\nname = "{up}"\nparent = "{rp}"\nkind = "pci"\ntargets = {PORT_TARGETS}\n'
                       "downstream = [\n" + "\n".join(ds) + "\n]\n")
            for name, dp in kids:
                memdev(name, dp)
    n_md = serial
    nh = len(below)
    if s.auto_region > len(below[0]):
        raise GenerateError(f"--auto-region: {s.auto_region} ways, host bridge 0 has {len(below[0])} memdev(s)")
    name = s.name or (f"gen-{nh}hb-{n_md}md" + (f"-{s.switch_ports}sw" if s.switch_ports else ""))
    out.append(f"# generated by cxlsys generate: {nh} host bridge(s) x {s.root_ports} root port(s)"
               + (f" x a {s.switch_ports}-port switch" if s.switch_ports else "") + f", {n_md} memdev(s) of "
               + (f"{_size(s.ram)[1:-1]} ram" if s.ram else "") + (" + " if s.ram and s.pmem else "")
               + (f"{_size(s.pmem)[1:-1]} pmem" if s.pmem else ""))
    out.append(f'name = "{name}"')
    out.append(f'description = "generated: {nh} host bridges, {n_md} memdevs'
               + (f", {s.switch_ports}-port switches" if s.switch_ports else "") + '"\n')
    out.append(f'[system]\nblock_size = {_size(s.block_size)}\nauto_online_blocks = "offline"\n')
    out.append("[[node]]\nid = 0\ncpus = [0, 1]\nmemory = \"4G\"\n")
    windows = []
    if s.interleave and nh == s.host_bridges and s.ram:
        per_hb = min(len(b) for b in below) * s.ram
        windows.append((per_hb * nh, list(range(nh)), "volatile", 1))
    for h in range(nh):
        if s.ram:
            windows.append((len(below[h]) * s.ram, [h], "volatile", 1 + h))
        if s.pmem:
            windows.append((len(below[h]) * s.pmem, [h], "pmem", 1 + h))
    for h in range(nh):
        out.append(f"[[node]]\nid = {1 + h}\nonline = false\n")
    out += hbs + rps + sws + mds
    for size, targets, kind, node in windows:
        out.append(f"[[window]]\nsize = {_size(size)}\ntargets = {targets}\ngranularity = 4096\n"
                   f'restrictions = ["type3", "{kind}"]\nnode = {node}\n')
    if s.auto_region:
        w0 = next(i for i, w in enumerate(windows) if w[1] == [0] and w[2] == "volatile")
        members = ", ".join(f'"{m}"' for m in below[0][: s.auto_region])
        out.append(f"[[auto_region]]\nwindow = {w0}\nsize = {_size(s.auto_region * s.ram)}\n"
                   f"members = [{members}]\ngranularity = 4096\n")
    return "\n".join(out)
