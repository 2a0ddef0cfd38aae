"""``cxlsys generate``: topologies for scale, written as a topology file.

A generated machine is PCIe throughout, as a server's: ``host_bridges`` CXL host bridges (one
PCI domain each, ``pciDDDD:0c``), ``root_ports`` root ports on each, and below every root port
either one memdev or, with ``switch_ports``, a switch with that many downstream ports, a memdev on
each.  Bus numbers follow the PCI hierarchy (the loader checks them); memdevs are numbered in
that order, ``serial`` 1, 2, ...  Each host bridge gets one ram window (and one pmem window when
the memdevs have pmem) the size of the capacity below it, on a CPU-less NUMA node of its own, so
hot-added memory lands on node 1, 2, ...; with ``interleave`` a window over all host bridges is
added first.  ``auto_region`` ways commits firmware's ram region over the first memdevs of host
bridge 0 (as BIOS does), so the machine boots with a region, a dax device and its blocks; with
``auto_regions = "every"`` all the memory is in such regions (each group of ways memdevs below a
switch, or across a host bridge's root ports), each port given the HDM decoders its regions need.

Sizes for scale: ``--host-bridges 8 --root-ports 2 --switch-ports 64 --ram 8G`` is 1 024 memdevs
and 8 TiB of windows; ``--auto-region 8 --auto-regions every`` puts all of it in 128 regions whose
kmem devices add 65 536 memory blocks of 128 MiB at boot.  :func:`generate` returns the text;
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
    """The shape ``cxlsys generate`` builds (its options): host bridges x root ports, a switch of
    ``switch_ports`` below each root port or none, one memdev per leaf port; see :func:`generate`."""

    host_bridges: int = 1
    root_ports: int = 2                 # per host bridge
    switch_ports: int = 0               # downstream ports per switch; 0: memdevs on the root ports
    memdevs: int | None = None          # at most this many (None: one on every leaf port)
    ram: int = 256 << 20                # per memdev
    pmem: int = 0
    block_size: int = 128 << 20
    interleave: bool = False            # a ram window over all host bridges too (ways = host_bridges)
    auto_region: int = 0                # ways of the firmware-committed ram region(s)
    auto_regions: str = "first"         # "first": one, on host bridge 0; "every": all the memory in regions
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
        if s.auto_regions == "every" and s.switch_ports and s.switch_ports % s.auto_region:
            raise bad("auto_region", f"{s.auto_region} ways do not divide the {s.switch_ports} downstream ports "
                                     "of a switch (every region below one switch)")
    if s.auto_regions not in ("first", "every"):
        raise bad("auto_regions", f"{s.auto_regions!r}: first or every")


DECODER_COUNTS = (8, 10, 12, 14, 16, 20, 24, 28, 32)    # HDM decoder counts a port may have (8 at least here)


def _decoders(n: int, what: str) -> int:
    """The HDM decoder count for a port that ``n`` regions go through."""
    for c in DECODER_COUNTS:
        if c >= n:
            return c
    raise GenerateError(f"--auto-region: {n} regions through one {what} need more than 32 HDM decoders: "
                        "use more ways or more host bridges")


def generate(spec: GenSpec) -> str:
    """The topology file (TOML text) for ``spec``; :class:`GenerateError` if it cannot be made."""
    _check(spec)
    s = spec
    hbs: list[list] = []        # [name, [root port names]]
    rps: list[tuple] = []       # (name, host bridge, port_id)
    sws: list[tuple] = []       # (name, root port, [(dport, port_id)], memdevs below)
    mds: list[tuple] = []       # (name, parent, serial)
    below: list[list[str]] = []                # per host bridge: its memdev names, in order
    left = s.memdevs if s.memdevs is not None else 1 << 62

    for h in range(s.host_bridges):
        if left <= 0:
            break
        dom = f"{h:04x}"
        hb = f"pci{dom}:{ROOT_BUS:02x}"
        hbs.append([hb])
        below.append([])
        bus = ROOT_BUS
        for r in range(s.root_ports):
            if left <= 0:
                break
            rp = f"{dom}:{ROOT_BUS:02x}:{r // 8:02x}.{r % 8}"
            rps.append((rp, hb, r))
            bus += 1
            if not s.switch_ports:
                mds.append((f"{dom}:{bus:02x}:00.0", rp, len(mds) + 1))
                below[-1].append(mds[-1][0])
                left -= 1
                continue
            up = f"{dom}:{bus:02x}:00.0"
            bus += 1
            inner = bus
            ds: list[tuple[str, int]] = []
            for d in range(min(s.switch_ports, left)):
                dp = f"{dom}:{inner:02x}:{d // 8:02x}.{d % 8}"
                ds.append((dp, d))
                bus += 1
                mds.append((f"{dom}:{bus:02x}:00.0", dp, len(mds) + 1))
                below[-1].append(mds[-1][0])
                left -= 1
            sws.append((up, rp, ds, len(ds)))
    nh = len(below)
    ways = s.auto_region
    if ways > len(below[0]):
        raise GenerateError(f"--auto-region: {ways} ways, host bridge 0 has {len(below[0])} memdev(s)")
    # the auto regions: host bridge 0's first ``ways`` memdevs, or (every) each full group of ``ways``
    # consecutive memdevs of every host bridge -- below one switch, or across its root ports
    groups: list[tuple[int, list[str]]] = []        # (host bridge, members)
    if ways:
        for h in range(nh if s.auto_regions == "every" else 1):
            mine = below[h]
            for g in range(len(mine) // ways if s.auto_regions == "every" else 1):
                groups.append((h, mine[g * ways:(g + 1) * ways]))
    hb_regions = [sum(1 for h, _ in groups if h == i) for i in range(nh)]
    sw_regions = {sw[0]: (sw[3] // ways if s.auto_regions == "every" else int(ways > 0 and sw is sws[0]))
                  for sw in sws} if ways else {}

    out: list[str] = []
    name = s.name or (f"gen-{nh}hb-{len(mds)}md" + (f"-{s.switch_ports}sw" if s.switch_ports else ""))
    cap = " + ".join(x for x in ((f"{_size(s.ram)[1:-1]} ram" if s.ram else ""),
                                 (f"{_size(s.pmem)[1:-1]} pmem" if s.pmem else "")) if x)
    out.append(f"# generated by cxlsys generate: {nh} host bridge(s) x {s.root_ports} root port(s)"
               + (f" x a {s.switch_ports}-port switch" if s.switch_ports else "") + f", {len(mds)} memdev(s) of {cap}"
               + (f", {len(groups)} firmware-committed {ways}-way ram region(s)" if groups else ""))
    out.append(f'name = "{name}"')
    out.append(f'description = "generated: {nh} host bridges, {len(mds)} memdevs'
               + (f", {s.switch_ports}-port switches" if s.switch_ports else "")
               + (f", {len(groups)} auto regions" if groups else "") + '"\n')
    out.append(f'[system]\nblock_size = {_size(s.block_size)}\nauto_online_blocks = "offline"\n')
    out.append("[[node]]\nid = 0\ncpus = [0, 1]\nmemory = \"4G\"\n")
    for h in range(nh):
        out.append(f"[[node]]\nid = {1 + h}\nonline = false\n")
    for h, (hb,) in enumerate(hbs):
        out.append(f'[[host_bridge]]\nname = "{hb}"\nuid = {h}\nkind = "pci"\n'
                   f"decoders = {_decoders(hb_regions[h], 'host bridge')}\ntargets = {PORT_TARGETS}\n")
    for rp, hb, r in rps:
        out.append(f'[[root_port]]\nname = "{rp}"\nparent = "{hb}"\nport_id = {r}\n')
    for up, rp, ds, _ in sws:
        out.append(f'[[switch]]\nname = "{up}"\nparent = "{rp}"\nkind = "pci"\n'
                   f"decoders = {_decoders(sw_regions.get(up, 0), 'switch')}\ntargets = {PORT_TARGETS}\n"
                   "downstream = [\n" + "\n".join(f'    {{ name = "{dp}", port_id = {d} }},' for dp, d in ds)
                   + "\n]\n")
    for md, parent, serial in mds:
        out.append(f'[[memdev]]\nname = "{md}"\nparent = "{parent}"\nkind = "pci"\n'
                   + (f"ram = {_size(s.ram)}\n" if s.ram else "") + (f"pmem = {_size(s.pmem)}\n" if s.pmem else "")
                   + f"serial = {serial:#x}\n")
    windows = []        # (size, targets, kind, node)
    ram_window = {}     # host bridge -> index of its ram window
    if s.interleave and nh == s.host_bridges and s.ram:
        windows.append((min(len(b) for b in below) * s.ram * nh, list(range(nh)), "volatile", 1))
    for h in range(nh):
        if s.ram:
            ram_window[h] = len(windows)
            windows.append((len(below[h]) * s.ram, [h], "volatile", 1 + h))
        if s.pmem:
            windows.append((len(below[h]) * s.pmem, [h], "pmem", 1 + h))
    for size, targets, kind, node in windows:
        out.append(f"[[window]]\nsize = {_size(size)}\ntargets = {targets}\ngranularity = 4096\n"
                   f'restrictions = ["type3", "{kind}"]\nnode = {node}\n')
    offset: dict[int, int] = {}
    for h, members in groups:
        off = offset.get(h, 0)
        offset[h] = off + ways * s.ram
        out.append(f"[[auto_region]]\nwindow = {ram_window[h]}\nsize = {_size(ways * s.ram)}\n"
                   + (f"offset = {_size(off)}\n" if off else "")
                   + "members = [" + ", ".join(f'"{m}"' for m in members) + "]\ngranularity = 4096\n")
    return "\n".join(out)
