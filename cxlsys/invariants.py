"""One consistency checker over the whole model: what must hold between any two operations.

:func:`check_invariants` reads a :class:`~cxlsys.system.System` (under ``system.lock``, changing
nothing) and returns one line per broken rule, ``"<object>: <rule>: <what is wrong>"``;
:func:`assert_invariants` raises ``AssertionError`` with them.  The model tests run it after every
operation (:func:`cxlsys.testing.invariant_checks`), the fuzzers after every write.

Each rule restates something the CXL core, the dax drivers or the memory hotplug core maintain
(Linux 6.12), checked from the objects themselves rather than from the code that keeps it:

``tree.*``
    the device tree and the buses agree: a child is registered under the name it has, a device on
    a bus is in that bus's list, names are unique per bus, a bound driver is the bus's.
``ids.*``
    every IDA hands out exactly the ids live objects hold: ports (``cxl_port_ida``), memdevs,
    memregion ids (regions plus each root decoder's next region id), dax minors, nvdimm bridges,
    BI-IDs, the nd bus and dimm ids; decoder ids per port; dax device ids per dax region; names
    follow the ids (``decoder<port>.<n>``, ``region<id>``, ``dax<region>.<n>``, ``mem<id>``).
``dpa.*``
    per endpoint: decoders with DPA are exactly decoder 0 .. ``hdm_end`` (allocation in id order),
    each placed right after the previous one plus its skip (stacked, disjoint), 256 MiB multiples,
    inside the device's capacity and inside the partition its mode names (``mixed`` spans both);
    the device's partitions are the ram-then-pmem layout the allocator assumes.
``commit.*``
    per port with HDM decoders: ``commit_end`` (``decoders_committed`` - 1) is the highest enabled
    decoder (and, where out-of-order reset is refused, every lower one is enabled); each decoder's
    enable bit matches its register block and the registers hold the decoder's programming; ports
    without HDM decoders (passthrough) commit nothing; an enabled endpoint decoder has its DPA and is
    in a region unless firmware committed it (auto).
``hpa.*``, ``iomem.*``
    CFMWS windows are disjoint; a region has HPA exactly from INTERLEAVE_ACTIVE on, inside its root
    decoder's window, 256 MiB aligned and a 256 MiB x ways multiple; regions are disjoint; the busy
    iomem claims are disjoint, each inside a live region (or a leaked range); a claim in a driver's
    name (``daxX.Y``, ``cxl_sysramN``, anondax's) is held by that driver, and what a driver holds is
    claimed.
``region.*``
    a region sits below its root decoder in a mode the window allows, with encodable geometry;
    its target array holds ``nr_targets`` distinct decoders of distinct memdevs, only below
    ``interleave_ways``, each pointing back (``region``, ``pos``); from ACTIVE on every position is
    set, routes through the host bridge the root decoder's interleave math names, and carries the
    region's mode, range and geometry; COMMIT means every decoder on every path is enabled with that
    programming, IDLE to ACTIVE means none is (auto regions aside); the per-port region references
    (``cxl_region_ref``) match the targets; a bound region is committed.
``switch.*``
    from ACTIVE on, each switch and host-bridge decoder of a region lists, in position order, the
    dports its endpoints route through, repeating as the interleave requires (a position's dport is
    ``(pos / distance above) mod ways``), with the region's range and the ways and granularity
    derived from its parent.
``mem.*``, ``node.*``
    memory blocks: registered under ``memory<N>`` on their node, online exactly when in a zone, in
    that zone's list of their node; zone present/managed bytes and memory group counters match the
    blocks, and a registered group is held by the driver that made it (or keeps leaked blocks, or
    was leaked by it: 6.12's kmem with a range smaller than a memory block);
    N_MEMORY / N_NORMAL_MEMORY and the online mask match nodes with memory; the memory tiers list
    exactly the nodes with memory; node and /proc/meminfo totals are boot memory plus the
    managed bytes of online blocks; every block belongs to the driver range that added it (kmem,
    anondax, cxl_sysram) or to a leaked range, and every range a driver holds maps to its blocks.
``dax.*``
    dax devices: in their region's list, ranges inside the region, disjoint, aligned, with page
    offsets and ``mappingN`` children in order; bound only with a size; device_dax's claims cover
    its ranges; a region's seed is unbound; a CXL dax region matches its region's range.

Only what the model has is checked; each rule is planted broken once in ``tests/test_invariants.py``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from cxlsys.base.memory import MemoryBlock
from cxlsys.base.node import NodeRoot, node_memory
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.memdev import CXL_MEM_MAJOR, CxlMemdev
from cxlsys.cxl.core.pmem import CxlNvdimmBridge, CxlPmemRegion
from cxlsys.cxl.core.port import (
    CxlDecoder,
    CxlEndpointDecoder,
    CxlPort,
    CxlRootDecoder,
    CxlSwitchDecoder,
    ep_path,
    port_name,
)
from cxlsys.cxl.core.region import CxlRegion
from cxlsys.cxl.core.region_attach import calc_hb
from cxlsys.cxl.core.region_state import ACTIVE, COMMIT, IDLE, INTERLEAVE_ACTIVE, MAX_TARGETS, STATE_NAMES
from cxlsys.cxl.core.region_sysram import CxlSysram
from cxlsys.dax.anon import RES_NAME as ANON_RES_NAME
from cxlsys.dax.bus import MEMREMAP_COMPAT_ALIGN, PAGE_SIZE, DaxMapping, DaxRegion, DevDax
from cxlsys.dax.cxl import CxlDaxRegion
from cxlsys.mm.memory_hotplug import KERNEL_ZONES, MOVABLE, ZONES, memory_block_aligned_range
from cxlsys.mm.memory_tiers import tier_of
from cxlsys.nvdimm.bus import NvdimmBus, NvdimmBusType
from cxlsys.nvdimm.dimm_devs import Nvdimm

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

__all__ = ["RULES", "assert_invariants", "check_invariants"]

SZ_256M = C.SZ_256M

#: The rule ids :func:`check_invariants` reports (the second field of each line).
RULES = (
    "tree.child", "tree.top", "tree.bus", "tree.name", "tree.driver",
    "ids.port", "ids.memdev", "ids.memregion", "ids.dax_minor", "ids.nvdimm_bridge", "ids.bi", "ids.nd",
    "ids.decoder", "ids.region", "ids.dax",
    "dpa.partitions", "dpa.order", "dpa.stacked", "dpa.size", "dpa.capacity", "dpa.mode", "dpa.free",
    "commit.end", "commit.order", "commit.regs", "commit.passthrough", "commit.dpa", "commit.orphan",
    "hpa.windows", "hpa.state", "hpa.window", "hpa.align", "hpa.disjoint",
    "iomem.disjoint", "iomem.owner", "iomem.holder",
    "region.parent", "region.mode", "region.geometry", "region.targets", "region.target", "region.state",
    "region.position", "region.commit", "region.decoders", "region.refs", "region.driver",
    "switch.targets", "switch.geometry", "switch.interleave",
    "mem.block", "mem.zone", "mem.zone_pages", "mem.group", "mem.owner", "mem.kmem", "mem.sysram",
    "mem.meminfo", "mem.tiers", "node.online", "node.mask",
    "dax.region", "dax.ranges", "dax.align", "dax.mappings", "dax.bound", "dax.seed",
)


def check_invariants(system: "System") -> list[str]:
    """Every broken invariant of ``system``, one line each (``"<object>: <rule>: <detail>"``); an
    empty list when the model is consistent.  Reads only, under ``system.lock``."""
    with system.lock:
        c = _Check(system)
        for fn in _CHECKS:
            fn(c)
        return c.out


def assert_invariants(system: "System") -> None:
    """Raise ``AssertionError`` listing every broken invariant of ``system`` (none: return)."""
    out = check_invariants(system)
    if out:
        raise AssertionError(f"{len(out)} model invariant(s) broken:\n" + "\n".join(out))


# ============================================================================ the collected model

class _Check:
    """The model's objects, sorted out once, and the lines found so far."""

    def __init__(self, system: "System") -> None:
        self.sys = system
        self.out: list[str] = []
        self.ports: list[CxlPort] = []
        self.decoders: list[CxlDecoder] = []
        self.roots: list[CxlRootDecoder] = []
        self.regions: list[CxlRegion] = []
        self.memdevs: list[CxlMemdev] = []
        self.bridges: list[CxlNvdimmBridge] = []
        self.dax_hosts: list[CxlDaxRegion] = []
        self.sysrams: list[CxlSysram] = []
        bus = getattr(system, "cxl_bus", None)
        for d in (bus.devices if bus is not None else ()):
            if isinstance(d, CxlPort):
                self.ports.append(d)
            elif isinstance(d, CxlRootDecoder):
                self.roots.append(d)
                self.decoders.append(d)
            elif isinstance(d, CxlDecoder):
                self.decoders.append(d)
            elif isinstance(d, CxlRegion):
                self.regions.append(d)
            elif isinstance(d, CxlMemdev):
                self.memdevs.append(d)
            elif isinstance(d, CxlNvdimmBridge):
                self.bridges.append(d)
            elif isinstance(d, CxlDaxRegion):
                self.dax_hosts.append(d)
            elif isinstance(d, CxlSysram):
                self.sysrams.append(d)
        dax_bus = getattr(system, "dax_bus", None)
        self.daxdevs: list[DevDax] = [d for d in (dax_bus.devices if dax_bus is not None else ())
                                      if isinstance(d, DevDax)]
        self.dax_regions: list[DaxRegion] = []
        seen: set[int] = set()
        for dd in self.daxdevs:
            if id(dd.region) not in seen:
                seen.add(id(dd.region))
                self.dax_regions.append(dd.region)
        for h in self.dax_hosts:
            if h.dax_region is not None and id(h.dax_region) not in seen:
                seen.add(id(h.dax_region))
                self.dax_regions.append(h.dax_region)

    def bad(self, obj: Any, rule: str, detail: str) -> None:
        name = obj if isinstance(obj, str) else getattr(obj, "name", repr(obj))
        self.out.append(f"{name}: {rule}: {detail}")


def _name(x: Any) -> str:
    return "None" if x is None else str(getattr(x, "name", x))


def _names(xs: Iterable[Any]) -> list:
    return [_name(x) for x in xs]


def _ida(c: _Check, ida, live: Iterable[int], what: str, rule: str) -> None:
    """``ida`` hands out exactly the ids in ``live`` (each once)."""
    ids = list(live)
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        c.bad(ida.name, rule, f"ids {dup} held by more than one {what}")
    extra, missing = sorted(ida.used - set(ids)), sorted(set(ids) - ida.used)
    if extra:
        c.bad(ida.name, rule, f"ids {extra} allocated but no live {what} holds them")
    if missing:
        c.bad(ida.name, rule, f"ids {missing} held by live {what}s but free in the IDA")


def _overlaps(ranges: list, c: _Check, rule: str, what: str) -> None:
    """``ranges`` of (start, end exclusive, owner): report every pair that overlaps."""
    ranges = sorted(ranges, key=lambda r: (r[0], r[1]))
    for (s0, e0, o0), (s1, e1, o1) in zip(ranges, ranges[1:]):
        if s1 < e0:
            c.bad(o1, rule, f"{what} {s1:#x}-{e1 - 1:#x} overlaps {_name(o0)} {s0:#x}-{e0 - 1:#x}")


def _pow2(n: int) -> bool:
    return n > 0 and not n & (n - 1)


# ============================================================================ tree and buses

def _check_tree(c: _Check) -> None:
    s = c.sys
    on_bus: dict[int, set] = {id(b): {id(d) for d in b.devices} for b in s.buses.values()}
    for name, d in s.top_devices.items():
        if d.name != name or d.parent is not None or not d.registered:
            c.bad(d, "tree.top", f"listed at the top as {name!r} (parent {_name(d.parent)}, "
                                 f"registered {d.registered})")
    for d in s.all_devices():
        for name, ch in d.children.items():
            if ch.name != name or ch.parent is not d or not ch.registered:
                c.bad(ch, "tree.child", f"listed below {d.name} as {name!r} (parent {_name(ch.parent)}, "
                                        f"registered {ch.registered})")
        if d.bus is not None:
            ids = on_bus.get(id(d.bus))
            if ids is None:
                c.bad(d, "tree.bus", f"on bus {d.bus.name}, which the system does not have")
            elif id(d) not in ids:
                c.bad(d, "tree.bus", f"registered but not in /sys/bus/{d.bus.name}/devices")
        if d.driver is not None and (d.bus is None or d.bus.drivers.get(d.driver.name) is not d.driver):
            c.bad(d, "tree.driver", f"bound to {d.driver.name}, not a driver of its bus {_name(d.bus)}")
    for b in s.buses.values():
        names: dict[str, Any] = {}
        for d in b.devices:
            if not d.registered or d.bus is not b:
                c.bad(d, "tree.bus", f"in /sys/bus/{b.name}/devices but registered {d.registered}, "
                                     f"bus {_name(d.bus)}")
            elif (d.parent.children.get(d.name) if d.parent is not None else s.top_devices.get(d.name)) is not d:
                c.bad(d, "tree.bus", f"in /sys/bus/{b.name}/devices but not in the device tree")
            if d.name in names:
                c.bad(d, "tree.name", f"two devices named {d.name} on bus {b.name}")
            names[d.name] = d


# ============================================================================ ids

def _check_ids(c: _Check) -> None:
    s = c.sys
    _ida(c, s.cxl_port_ida, (p.port_id for p in c.ports), "port", "ids.port")
    for p in c.ports:
        if p.name != port_name(p.kind, p.port_id):
            c.bad(p, "ids.port", f"a {p.kind} port with id {p.port_id} is named {p.name}")
    _ida(c, s.cxl_memdev_ida, (m.id for m in c.memdevs), "memdev", "ids.memdev")
    for m in c.memdevs:
        if m.name != f"mem{m.id}" or m.devt != (CXL_MEM_MAJOR, m.id):
            c.bad(m, "ids.memdev", f"id {m.id} but name {m.name}, dev {m.devt}")
    held = [r.id for r in c.regions] + [rd.next_region_id for rd in c.roots]
    _ida(c, s.memregion_ida, held, "region or root decoder (next region id)", "ids.memregion")
    for r in c.regions:
        if r.name != f"region{r.id}":
            c.bad(r, "ids.region", f"id {r.id} but named {r.name}")
    _ida(c, s.dax_minor_ida, (d.devt[1] for d in c.daxdevs if d.devt is not None), "dax device", "ids.dax_minor")
    _ida(c, s.nvdimm_bridge_ida, (b.id for b in c.bridges), "nvdimm bridge", "ids.nvdimm_bridge")
    _ida(c, s.bi_id_ida, (m.bi_id for m in c.memdevs if m.bi_id is not None), "memdev (BI-ID)", "ids.bi")
    nd = s.buses.get("nd")
    if isinstance(nd, NvdimmBusType):
        _ida(c, nd.nd_ida, (d.id for d in nd.devices if isinstance(d, NvdimmBus)), "nvdimm bus", "ids.nd")
        _ida(c, nd.dimm_ida, (d.id for d in nd.devices if isinstance(d, Nvdimm)), "nvdimm", "ids.nd")
    for p in c.ports:
        if set(p.decoders) != p.decoder_ida_used:
            c.bad(p, "ids.decoder", f"decoder ids {sorted(p.decoders)}, decoder IDA {sorted(p.decoder_ida_used)}")
        for i, d in p.decoders.items():
            if d.id != i or d.port is not p or d.parent is not p or not d.registered \
                    or d.name != f"decoder{p.port_id}.{i}":
                c.bad(d, "ids.decoder", f"slot {i} of {p.name}: id {d.id}, port {_name(d.port)}, "
                                        f"parent {_name(d.parent)}, registered {d.registered}")
    for d in c.decoders:
        if d.port.decoders.get(d.id) is not d:
            c.bad(d, "ids.decoder", f"not in {d.port.name}'s decoders")
    for dr in c.dax_regions:
        ids = {d.id for d in dr.devs}
        if ids != dr.dev_ida:
            c.bad(dr.host, "ids.dax", f"dax devices {sorted(ids)}, id allocator {sorted(dr.dev_ida)}")
    for dd in c.daxdevs:
        if dd.name != f"dax{dd.region.id}.{dd.id}":
            c.bad(dd, "ids.dax", f"device {dd.id} of dax region {dd.region.id} is named {dd.name}")
    for h in c.dax_hosts:
        if h.name != f"dax_region{h.cxlr.id}" or (h.dax_region is not None and h.dax_region.id != h.cxlr.id):
            c.bad(h, "ids.dax", f"dax region of {h.cxlr.name} (id {h.cxlr.id}) has id "
                                f"{h.dax_region.id if h.dax_region else None}")


# ============================================================================ DPA

def _check_dpa(c: _Check) -> None:
    for p in c.ports:
        if p.kind != "endpoint":
            continue
        md = p.uport
        if not isinstance(md, CxlMemdev):
            continue
        mds = md.mds
        ram, pmem = mds.ram_res, mds.pmem_res
        if (ram.size and ram.start != 0) or (pmem.size and pmem.start != ram.size) \
                or ram.size + pmem.size > mds.dpa_res.size or mds.dpa_res.start != 0:
            c.bad(md, "dpa.partitions", f"ram {ram.start:#x}+{ram.size:#x}, pmem {pmem.start:#x}+{pmem.size:#x} "
                                        f"in dpa {mds.dpa_res.start:#x}+{mds.dpa_res.size:#x}: not ram then pmem "
                                        "from 0")
        eds = sorted((d for d in p.decoders.values() if isinstance(d, CxlEndpointDecoder)), key=lambda d: d.id)
        alloc = [d for d in eds if d.dpa_start is not None]
        if [d.id for d in alloc] != list(range(p.hdm_end + 1)):
            c.bad(p, "dpa.order", f"decoders with DPA {[d.id for d in alloc]}, expected 0..{p.hdm_end} (hdm_end)")
        prev_end, prev = 0, None
        cap = md.ram_size + md.pmem_size
        for d in alloc:
            assert d.dpa_start is not None
            end = d.dpa_start + d.dpa_size
            if d.skip < 0 or d.dpa_start != prev_end + d.skip:
                c.bad(d, "dpa.stacked", f"DPA {d.dpa_start:#x} with skip {d.skip:#x} does not follow "
                                        f"{_name(prev) if prev else 'DPA 0'} (ends {prev_end:#x})")
            if d.dpa_size <= 0 or d.dpa_size % SZ_256M:
                c.bad(d, "dpa.size", f"dpa_size {d.dpa_size:#x} is not a positive multiple of 256MiB")
            if end > cap:
                c.bad(d, "dpa.capacity", f"DPA {d.dpa_start:#x}-{end - 1:#x} beyond {md.name}'s {cap:#x}")
            in_ram = end <= md.ram_size
            in_pmem = d.dpa_start >= md.ram_size and end <= cap
            ok = {C.MODE_RAM: in_ram, C.MODE_PMEM: in_pmem, C.MODE_MIXED: not in_ram and not in_pmem}.get(d.mode)
            # cxl_dpa_set_mode() refuses only an enabled decoder: the mode of an allocated, uncommitted
            # one may be changed away from the partition its DPA came from (6.12 does; the fuzzer got
            # there); a committed decoder's mode and DPA partition agree, and no DPA spans both
            # partitions unless the mode says mixed
            if not ok and not d.enabled and d.mode in (C.MODE_RAM, C.MODE_PMEM) and (in_ram or in_pmem):
                ok = True
            if not ok:
                c.bad(d, "dpa.mode", f"mode {d.mode} but DPA {d.dpa_start:#x}-{end - 1:#x} (ram ends "
                                     f"{md.ram_size:#x})")
            prev_end, prev = max(prev_end, end), d
        for d in eds:
            if d.dpa_start is None and (d.dpa_size or d.skip):
                c.bad(d, "dpa.free", f"no DPA but dpa_size {d.dpa_size:#x}, skip {d.skip:#x}")


# ============================================================================ commit order and registers

def _check_commit(c: _Check) -> None:
    ebusy = c.sys.profile.out_of_order_reset == "ebusy"
    for p in c.ports:
        if p.kind == "root":
            continue
        decs = sorted(p.decoders.values(), key=lambda d: d.id)
        enabled = [d.id for d in decs if d.enabled]
        cap = p.hdm
        if cap is None or cap.passthrough:
            if enabled or p.commit_end != -1:
                c.bad(p, "commit.passthrough", f"no HDM decoders to program, yet decoders {enabled} enabled, "
                                               f"commit_end {p.commit_end}")
            continue
        if not decs:        # unbound (decoders unregistered): 6.12 leaves commit_end as it was
            continue
        top = max(enabled, default=-1)
        if p.commit_end != top:
            c.bad(p, "commit.end", f"commit_end {p.commit_end} (decoders_committed {p.commit_end + 1}) but the "
                                   f"highest enabled decoder is {top}")
        if ebusy and enabled != list(range(top + 1)):
            c.bad(p, "commit.order", f"enabled decoders {enabled} are not 0..{top}")
        for d in decs:
            r = cap.regs.get(d.id)
            committed = bool(r is not None and r.committed)
            if committed != d.enabled:
                c.bad(d, "commit.regs", f"enabled {d.enabled} but its register block says committed {committed}")
                continue
            if not d.enabled or r is None:
                continue
            prog = (r.base, r.size, r.ways, r.granularity)
            want = (d.hpa_start, d.hpa_size, d.interleave_ways, d.interleave_granularity)
            if prog != want:
                c.bad(d, "commit.regs", f"registers hold base/size/ways/granularity {_hexs(prog)}, "
                                        f"decoder {_hexs(want)}")
            if isinstance(d, CxlEndpointDecoder):
                if r.skip != d.skip:
                    c.bad(d, "commit.regs", f"registers hold skip {r.skip:#x}, decoder {d.skip:#x}")
            elif isinstance(d, CxlSwitchDecoder):
                ids = r.targets if r.targets is not None else tuple(p.dports)
                want_t = tuple(t.port_id if t is not None else None for t in d.targets[: d.interleave_ways])
                if tuple(ids[: d.interleave_ways]) != want_t:
                    c.bad(d, "commit.regs", f"registers target dports {list(ids[: d.interleave_ways])}, "
                                            f"decoder {list(want_t)}")
        if p.kind == "endpoint":
            for d in decs:
                if not isinstance(d, CxlEndpointDecoder) or not d.enabled:
                    continue
                if d.dpa_start is None or d.dpa_size * max(d.interleave_ways, 1) != d.hpa_size:
                    c.bad(d, "commit.dpa", f"enabled with DPA {_hexs((d.dpa_start, d.dpa_size))} for "
                                           f"{d.hpa_size:#x} of HPA over {d.interleave_ways} ways")
                if d.region is None and not d.auto:
                    c.bad(d, "commit.orphan", "enabled, in no region, and not committed by firmware")


def _hexs(vals) -> str:
    return "/".join("None" if v is None else f"{v:#x}" for v in vals)


# ============================================================================ HPA and iomem

def _check_hpa(c: _Check) -> None:
    _overlaps([(rd.hpa_start, rd.hpa_start + rd.hpa_size, rd) for rd in c.roots], c, "hpa.windows", "window")
    for rd in c.roots:
        if rd.hpa_size <= 0:
            c.bad(rd, "hpa.windows", f"window of size {rd.hpa_size:#x}")
    spans = []
    for r in c.regions:
        if (r.hpa_start is None) != (r.state == IDLE) or (r.hpa_start is None) != (r.hpa_size == 0):
            c.bad(r, "hpa.state", f"state {STATE_NAMES[r.state] if 0 <= r.state < 5 else r.state} with HPA "
                                  f"{_hexs((r.hpa_start, r.hpa_size))}")
        if r.hpa_start is None:
            continue
        end = r.hpa_start + r.hpa_size
        spans.append((r.hpa_start, end, r))
        if not r.root.window_contains(r.hpa_start, r.hpa_size):
            c.bad(r, "hpa.window", f"HPA {r.hpa_start:#x}-{end - 1:#x} outside {r.root.name}'s window "
                                   f"{r.root.hpa_start:#x}-{r.root.hpa_start + r.root.hpa_size - 1:#x}")
        if r.hpa_start % SZ_256M or (r.interleave_ways and r.hpa_size % (SZ_256M * r.interleave_ways)):
            c.bad(r, "hpa.align", f"HPA {r.hpa_start:#x}+{r.hpa_size:#x} not 256MiB aligned or not a multiple "
                                  f"of 256MiB x {r.interleave_ways} ways")
    _overlaps(spans, c, "hpa.disjoint", "HPA")


def _holders(c: _Check) -> dict:
    """id(resource) -> who holds that iomem claim (kmem/anondax ranges, device_dax, cxl_sysram)."""
    out: dict[int, Any] = {}
    for dd in c.daxdevs:
        for res in dd.iomem:
            out[id(res)] = dd
        for r in getattr(dd.drvdata, "ranges", None) or ():
            if r is not None and r.res is not None:
                out[id(r.res)] = dd
    for sr in c.sysrams:
        if sr.res is not None:
            out[id(sr.res)] = sr
    return out


# the names the model's drivers claim iomem under (device_dax and kmem: the device; cxl_sysram; anondax):
# such a claim nobody holds is a leak.  Other names are other kernel users (tests claim ranges as such).
_DRIVER_CLAIM = re.compile(r"dax\d+\.\d+|cxl_sysram\d+|" + re.escape(ANON_RES_NAME))


def _check_iomem(c: _Check) -> None:
    mem = c.sys.memory
    busy = mem.iomem.busy
    _overlaps([(r.start, r.end + 1, r.name) for r in busy], c, "iomem.disjoint", "claim")
    regions = [(r.hpa_start, r.hpa_start + r.hpa_size) for r in c.regions if r.hpa_start is not None]
    leaked = [(s, s + n) for s, n, _ in mem.leaked]
    holders = _holders(c)
    for res in busy:
        s, e = res.start, res.end + 1
        in_leak = any(ls <= s and e <= le for ls, le in leaked)
        if not in_leak and not any(rs <= s and e <= re_ for rs, re_ in regions):
            c.bad(res.name, "iomem.owner", f"claim {s:#x}-{e - 1:#x} inside no region and no leaked range")
        if id(res) not in holders and not in_leak and _DRIVER_CLAIM.fullmatch(res.name):
            c.bad(res.name, "iomem.holder", f"claim {s:#x}-{e - 1:#x} in a driver's name, held by no driver")
    in_busy = {id(r) for r in busy}
    for key, who in holders.items():
        if key not in in_busy:
            c.bad(who, "iomem.holder", "holds an iomem claim that is not in the resource tree")


# ============================================================================ regions

def _path_decoders(r: CxlRegion, t: CxlEndpointDecoder) -> list:
    """(port, region ref or None) from the endpoint's port up to the host bridge."""
    return [(p, p.regions.get(r)) for p in ep_path(t)]


def _check_regions(c: _Check) -> None:
    # each port's region refs, and each decoder's region, point at live regions that use them
    live = {id(r) for r in c.regions}
    for p in c.ports:
        for r, ref in p.regions.items():
            if id(r) not in live:
                c.bad(p, "region.refs", f"holds a reference to {r.name}, which is not registered")
            elif ref.decoder.region is not r or ref.decoder.port is not p:
                c.bad(p, "region.refs", f"{r.name}'s decoder here is {_name(ref.decoder)}, which belongs to "
                                        f"{_name(ref.decoder.port)} and {_name(ref.decoder.region)}")
    for d in c.decoders:
        if d.region is None:
            continue
        ref = d.port.regions.get(d.region)
        if id(d.region) not in live:
            c.bad(d, "region.refs", f"in {d.region.name}, which is not registered")
        elif ref is None or ref.decoder is not d:
            c.bad(d, "region.refs", f"in {d.region.name}, but {d.port.name}'s reference for it names "
                                    f"{_name(ref.decoder) if ref else None}")
    for r in c.regions:
        _check_region(c, r)


def _check_region(c: _Check, r: CxlRegion) -> None:
    root = r.root
    if r.parent is not root or not isinstance(root, CxlRootDecoder) or not root.registered:
        c.bad(r, "region.parent", f"root decoder {_name(root)}, parent {_name(r.parent)}")
        return
    flag = {C.MODE_RAM: C.CXL_DECODER_F_RAM, C.MODE_PMEM: C.CXL_DECODER_F_PMEM}.get(r.mode)
    if flag is None or not root.flags & flag:
        c.bad(r, "region.mode", f"mode {r.mode} in {root.name}, whose window flags are {root.flags:#x}")
    if not 0 <= r.state <= COMMIT:
        c.bad(r, "region.state", f"state {r.state} is no cxl_config_state")
        return
    ways, gran = r.interleave_ways, r.interleave_granularity
    if ways:
        rw = root.interleave_ways
        if ways not in (1, 2, 3, 4, 6, 8, 12, 16) or ways % rw or not _pow2(ways // rw):
            c.bad(r, "region.geometry", f"interleave_ways {ways} is not {root.name}'s {rw} x 2^k")
    if gran and (not _pow2(gran) or not 256 <= gran <= 16384 or (root.interleave_ways > 1
                                                                 and gran != root.interleave_granularity)):
        c.bad(r, "region.geometry", f"interleave_granularity {gran} (window {root.interleave_granularity} x "
                                    f"{root.interleave_ways})")
    if r.state >= INTERLEAVE_ACTIVE and not (ways and gran):
        c.bad(r, "region.geometry", f"{STATE_NAMES[r.state]} without interleave_ways/granularity ({ways}/{gran})")
    # the target array
    if len(r.targets) != MAX_TARGETS:
        c.bad(r, "region.targets", f"{len(r.targets)} target slots, not {MAX_TARGETS}")
    ts = [(i, t) for i, t in enumerate(r.targets) if t is not None]
    beyond = [i for i, _ in ts if i >= ways]
    if beyond:
        c.bad(r, "region.targets", f"targets at positions {beyond}, beyond interleave_ways {ways}")
    if r.nr_targets != len(ts):
        c.bad(r, "region.targets", f"nr_targets {r.nr_targets} but {len(ts)} targets set")
    decs = [t for _, t in ts]
    if len({id(t) for t in decs}) != len(decs):
        c.bad(r, "region.targets", f"a decoder twice among targets {_names(decs)}")
    mds = [t.memdev for t in decs]
    if len({id(m) for m in mds}) != len(mds):
        c.bad(r, "region.targets", f"a memdev twice among targets {_names(mds)}")
    for i, t in ts:
        if not isinstance(t, CxlEndpointDecoder) or not t.registered:
            c.bad(r, "region.targets", f"target{i} {_name(t)} is no registered endpoint decoder")
            return
        if t.region is not r or t.pos != i:
            c.bad(t, "region.target", f"target{i} of {r.name}, but its region is {_name(t.region)}, "
                                      f"position {t.pos}")
        # the mode of an attached decoder that is not committed may be rewritten (cxl_dpa_set_mode()
        # refuses only an enabled one): then its DPA, not its mode, must be of the region's kind
        part = None
        if t.dpa_start is not None:
            part = C.MODE_RAM if t.dpa_start + t.dpa_size <= t.memdev.ram_size else C.MODE_PMEM
        if t.dpa_start is None or (t.mode if t.enabled else part) != r.mode:
            c.bad(t, "region.target", f"mode {t.mode}, DPA {t.dpa_start}, in {r.mode} region {r.name}")
    if r.state >= ACTIVE:
        if len(ts) != ways or any(i >= ways for i, _ in ts):
            c.bad(r, "region.state", f"{STATE_NAMES[r.state]} with {len(ts)} of {ways} positions set")
            return
        for i, t in ts:
            got = (t.hpa_start, t.hpa_size, t.interleave_ways, t.interleave_granularity, t.dpa_size * ways)
            want = (r.hpa_start, r.hpa_size, ways, gran, r.hpa_size)
            if got != want:
                c.bad(t, "region.target", f"HPA/size/ways/granularity/DPA x ways {_hexs(got)}, region "
                                          f"{r.name} {_hexs(want)}")
            hb = ep_path(t)[-1].parent_dport
            want_hb = calc_hb(root, i)
            if hb is not want_hb:
                c.bad(t, "region.position", f"target{i} of {r.name} routes through {_name(hb)}, the root "
                                            f"decoder's interleave sends position {i} to {_name(want_hb)}")
    _check_region_refs(c, r, ts)
    _check_region_decoders(c, r, ts)
    if r.state >= ACTIVE:
        _check_switches(c, r, [t for _, t in ts])
    if r.driver is not None and (r.state != COMMIT or r.needs_reset):
        c.bad(r, "region.driver", f"bound to {r.driver.name} while {STATE_NAMES[r.state]}")
    for ch in r.children.values():
        if isinstance(ch, (CxlDaxRegion, CxlPmemRegion)) and r.driver is None:
            c.bad(ch, "region.driver", f"child of {r.name}, which no driver holds")


def _check_region_refs(c: _Check, r: CxlRegion, ts: list) -> None:
    """Per port: the region ref counts the endpoints (and the children) routed through it."""
    through: dict[int, Any] = {}       # id(port) -> (port, [memdev names], {id(child)})
    for _, t in ts:
        child = None
        for p in ep_path(t):
            ent = through.setdefault(id(p), (p, [], set()))
            ent[1].append(t.memdev.name)
            if child is not None:
                ent[2].add(id(child))
            child = p
            ref = p.regions.get(r)
            if ref is None:
                c.bad(p, "region.refs", f"on the path of {t.name} ({r.name}) but holds no reference to it")
            elif p.kind == "endpoint" and ref.decoder is not t:
                c.bad(p, "region.refs", f"{r.name}'s decoder here is {_name(ref.decoder)}, not {t.name}")
    for p in c.ports:
        pref = p.regions.get(r)
        if pref is None:
            continue
        ent = through.get(id(p))
        eps = sorted(ent[1]) if ent else []
        if sorted(pref.eps) != eps or pref.nr_eps != len(eps):
            c.bad(p, "region.refs", f"{r.name}: {pref.nr_eps} endpoints {sorted(pref.eps)} recorded, targets "
                                    f"route {eps} through it")
        want = 1 if p.kind == "endpoint" else len(ent[2]) if ent else 0
        if ent and pref.nr_targets != want:
            c.bad(p, "region.refs", f"{r.name}: nr_targets {pref.nr_targets}, {want} distinct children route "
                                    "through it")


def _programmable(p: CxlPort) -> bool:
    return p.hdm is not None and not p.hdm.passthrough


def _check_region_decoders(c: _Check, r: CxlRegion, ts: list) -> None:
    """COMMIT: every decoder on every path enabled with the region's range; below: none enabled."""
    for i, t in ts:
        for p, ref in _path_decoders(r, t):
            if ref is None or not _programmable(p):
                continue
            d = ref.decoder
            if r.state == COMMIT:
                if not d.enabled:
                    c.bad(d, "region.commit", f"{r.name} is committed but {d.name} (target{i}'s path) is not")
                elif (d.hpa_start, d.hpa_size) != (r.hpa_start, r.hpa_size):
                    c.bad(d, "region.commit", f"committed for {_hexs((d.hpa_start, d.hpa_size))}, region "
                                              f"{r.name} is {_hexs((r.hpa_start, r.hpa_size))}")
            elif r.state <= ACTIVE and d.enabled and not r.auto:
                c.bad(d, "region.decoders", f"enabled while {r.name} is {STATE_NAMES[r.state]}")


def _check_switches(c: _Check, r: CxlRegion, targets: list) -> None:
    """From ACTIVE on: each switch/host-bridge decoder's target list and geometry follow its endpoints."""
    root = r.root
    # per port above the endpoints, in position order: (pos, dport the position comes through)
    seen: dict[int, tuple] = {}
    for pos, t in enumerate(targets):
        path = ep_path(t)
        for below, p in zip(path, path[1:]):
            ent = seen.setdefault(id(p), (p, []))
            ent[1].append((pos, below.parent_dport))
    # ways and granularity flow down from the root: a port's granularity is its parent's x ways
    geom: dict[int, tuple] = {}

    def parent_geometry(p: CxlPort) -> tuple | None:
        parent = p.parent_port
        if parent is None or parent.kind == "root":
            rw = root.interleave_ways
            return r.interleave_granularity, (rw if _pow2(rw) else rw // 3), root.interleave_ways
        pref = parent.regions.get(r)
        if pref is None:
            return None
        above = geom.get(id(parent))
        dist = (above[2] if above else 1) * max(pref.nr_targets, 1)
        return pref.decoder.interleave_granularity, pref.decoder.interleave_ways, dist

    for p, visits in sorted(seen.values(), key=lambda e: e[0].depth):
        ref = p.regions.get(r)
        if ref is None:
            continue          # reported by region.refs
        d = ref.decoder
        order: list = []
        for _, dp in visits:
            if all(dp is not x for x in order):
                order.append(dp)
        got = list(d.targets[: len(order)]) if isinstance(d, CxlSwitchDecoder) else []
        if len(got) != len(order) or any(a is not b for a, b in zip(got, order)) \
                or ref.nr_targets_set != len(order) or ref.nr_targets != len(order):
            c.bad(d, "switch.targets", f"{r.name}: targets {_names(got)} ({ref.nr_targets_set} set of "
                                       f"{ref.nr_targets}), its endpoints route through {_names(order)}")
        pg = parent_geometry(p)
        if pg is None:
            continue
        pig, piw, above = pg
        geom[id(p)] = (pig, piw, above)
        want = (r.hpa_start, r.hpa_size) + ((len(order), pig * piw) if _programmable(p) else ())
        have = (d.hpa_start, d.hpa_size) + ((d.interleave_ways, d.interleave_granularity) if _programmable(p) else ())
        if have != want:
            c.bad(d, "switch.geometry", f"{r.name}: HPA/size/ways/granularity {_hexs(have)}, expected {_hexs(want)}")
        n = len(order)
        for pos, dp in visits:
            idx = next((k for k, x in enumerate(order) if x is dp), -1)
            if n and idx != (pos // above) % n:
                c.bad(d, "switch.interleave", f"{r.name}: position {pos} comes through {_name(dp)} (target "
                                              f"{idx}), {above}-apart positions must cycle its {n} targets")
                break


# ============================================================================ memory blocks, zones, nodes

def _check_memory(c: _Check) -> None:
    s = c.sys
    mem = s.memory
    bs = mem.policy.block_size
    pages = bs // PAGE_SIZE
    for i, b in mem.blocks.items():
        nm = mem.nodes.get(b.nid)
        node = s.nodes.get(b.nid)
        if b.phys_index != i or b.name != f"memory{i}" or not b.registered or b.parent is not mem.root \
                or b.bus is not mem.bus:
            c.bad(b, "mem.block", f"block {i}: phys_index {b.phys_index}, registered {b.registered}, "
                                  f"parent {_name(b.parent)}")
        if nm is None or nm.blocks.get(i) is not b:
            c.bad(b, "mem.block", f"not among node {b.nid}'s blocks")
        if node is None or not node.registered:
            c.bad(b, "mem.block", f"on node {b.nid}, which is {'impossible' if node is None else 'offline'}")
        if b.online != (b.zone is not None) or (b.zone is not None and b.zone not in ZONES):
            c.bad(b, "mem.zone", f"online {b.online} in zone {b.zone}")
    if mem.bus is not None:
        listed = [d for d in mem.bus.devices if isinstance(d, MemoryBlock)]
        if len(listed) != len(mem.blocks) or any(mem.blocks.get(b.phys_index) is not b for b in listed):
            c.bad("memory", "mem.block", f"/sys/bus/memory lists {len(listed)} blocks, the hotplug core has "
                                         f"{len(mem.blocks)}")
    for nid, nm in mem.nodes.items():
        for i, nb in nm.blocks.items():
            listed_here = id(mem.blocks.get(i)) == id(nb)
            if not listed_here or nb.nid != nid:
                where = f"on node {nb.nid}" if listed_here else "not present"
                c.bad(f"node{nid}", "mem.block", f"lists memory{i}, which is {where}")
        for z in nm.zones.values():
            if z.online != sorted(set(z.online)):
                c.bad(f"node{nid}", "mem.zone", f"zone {z.name}'s online blocks are not sorted and unique")
            managed = 0
            for i in z.online:
                zb = mem.blocks.get(i)
                if zb is None or not zb.online or zb.zone != z.name or zb.nid != nid:
                    what = "absent" if zb is None else f"online {zb.online} in {zb.nid}/{zb.zone}"
                    c.bad(f"node{nid}", "mem.zone", f"zone {z.name} lists memory{i}, which is {what}")
                else:
                    managed += bs - zb.memmap_bytes
            if z.present != len(z.online) * bs or z.managed != managed:
                c.bad(f"node{nid}", "mem.zone_pages", f"zone {z.name}: present {z.present:#x}, managed "
                                                      f"{z.managed:#x}; its {len(z.online)} online blocks make "
                                                      f"{len(z.online) * bs:#x}, {managed:#x}")
    for b in mem.blocks.values():
        if b.online:
            nm = mem.nodes.get(b.nid)
            z = nm.zones.get(b.zone) if nm is not None else None
            if z is None or b.phys_index not in z.online:
                c.bad(b, "mem.zone", f"online in {b.zone}, but not in node {b.nid}'s zone list")
    # memory groups
    counts: dict[int, list] = {}
    for b in mem.blocks.values():
        if b.group is None:
            continue
        if id(mem.groups.get(b.group.id)) != id(b.group) or b.group.nid != b.nid:
            c.bad(b, "mem.group", f"in memory group {b.group.id} (node {b.group.nid}), which is not registered "
                                  "for its node")
        cnt = counts.setdefault(id(b.group), [b.group, 0, 0, 0])
        cnt[1] += 1
        if b.online:
            cnt[3 if b.zone == MOVABLE else 2] += pages
    held = {id(getattr(dd.drvdata, "group", None)) for dd in c.daxdevs} | {id(sr.group) for sr in c.sysrams}
    for g in mem.groups.values():
        if id(g) not in held and not g.blocks and not g.leaked:
            c.bad(f"memory_group{g.id}", "mem.group", f"registered on node {g.nid}, held by no driver, no blocks")
        _, n, kern, mov = counts.get(id(g), [g, 0, 0, 0])
        if (g.blocks, g.present_kernel_pages, g.present_movable_pages) != (n, kern, mov) \
                or kern + mov > g.max_pages:
            c.bad(f"memory_group{g.id}", "mem.group", f"blocks/kernel/movable pages {g.blocks}/"
                                                      f"{g.present_kernel_pages}/{g.present_movable_pages}, its "
                                                      f"blocks make {n}/{kern}/{mov} (max {g.max_pages})")


def _check_nodes(c: _Check) -> None:
    s = c.sys
    mem = s.memory
    bs = mem.policy.block_size
    online_bytes: dict[int, int] = {}
    has_block: set[int] = set()
    normal_block: set[int] = set()
    for b in mem.blocks.values():
        if b.online:
            online_bytes[b.nid] = online_bytes.get(b.nid, 0) + bs - b.memmap_bytes
            has_block.add(b.nid)
            if b.zone in KERNEL_ZONES:
                normal_block.add(b.nid)
    want_memory, want_normal = set(), set()
    total = 0
    for nid, node in s.nodes.items():
        nm = mem.nodes.get(nid)
        if node.online != node.registered:
            c.bad(node, "node.online", f"online {node.online} but registered {node.registered}")
        boot = nm.boot_bytes() if nm is not None else 0
        if boot != node.boot_memory:
            c.bad(node, "mem.meminfo", f"boot memory {node.boot_memory:#x}, its zones hold {boot:#x}")
        private = mem.private.is_private(nid)
        kboot = sum(nm.zones[z].boot_present for z in KERNEL_ZONES) if nm is not None else 0
        if (boot or nid in has_block) and not private:
            want_memory.add(nid)
        if (kboot or nid in normal_block) and not private:
            want_normal.add(nid)
        if mem.node_has_memory(nid) != (nid in want_memory) or mem.node_has_normal(nid) != (nid in want_normal):
            c.bad(node, "node.mask", f"N_MEMORY {mem.node_has_memory(nid)}, N_NORMAL_MEMORY "
                                     f"{mem.node_has_normal(nid)}; its boot memory and online blocks say "
                                     f"{nid in want_memory}, {nid in want_normal}")
        expect = node.boot_memory + online_bytes.get(nid, 0)
        if node.online:
            total += expect
            t = node_memory(s, nid)[0]
            if t != expect:
                c.bad(node, "mem.meminfo", f"MemTotal {t >> 10} kB, boot memory and online blocks make "
                                           f"{expect >> 10} kB")
    nr = next(iter(s.nodes.values())).parent if s.nodes else None
    if isinstance(nr, NodeRoot):
        shown = _parse_nodelist(nr.online_show())
        if shown != {nid for nid, n in s.nodes.items() if n.online}:
            c.bad(nr, "node.online", f"online mask {sorted(shown)}")
        pn = s.profile.private_nodes
        if pn is None or pn.version != 4:
            shown = _parse_nodelist(nr.has_memory_show())
            if shown != want_memory:
                c.bad(nr, "node.mask", f"has_memory {sorted(shown)}, nodes with memory {sorted(want_memory)}")
    from cxlsys.procfs import meminfo_show  # procfs sits above the model objects

    first = meminfo_show(s).split("\n", 1)[0].split()
    if len(first) < 2 or first[0] != "MemTotal:" or int(first[1]) != total >> 10:
        c.bad("/proc/meminfo", "mem.meminfo", f"{' '.join(first)}; online nodes' boot memory and online blocks "
                                              f"make {total >> 10} kB")
    tiers = mem.tiers
    if tiers is not None:
        listed: dict[int, int] = {}
        for adist, nodes in tiers.type_nodes.items():
            for nid in nodes:
                listed[nid] = listed.get(nid, 0) + 1
        if set(listed) != want_memory or any(v > 1 for v in listed.values()):
            c.bad("memory_tiering", "mem.tiers", f"tiers list nodes {sorted(listed)}, nodes with memory "
                                                 f"{sorted(want_memory)}")
        want_tiers = {tier_of(a) for a, nodes in tiers.type_nodes.items() if nodes}
        if set(tiers.tiers) != want_tiers or any(not t.registered for t in tiers.tiers.values()):
            c.bad("memory_tiering", "mem.tiers", f"tier devices {sorted(tiers.tiers)}, tiers with nodes "
                                                 f"{sorted(want_tiers)}")


def _parse_nodelist(text: str) -> set:
    out: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _check_block_owners(c: _Check) -> None:
    """Every block belongs to the range of the driver that added it, every held range has its blocks."""
    mem = c.sys.memory
    bs = mem.policy.block_size
    leaked = [(s, s + n) for s, n, _ in mem.leaked]
    dax_live = {id(d) for d in c.daxdevs}
    sr_live = {id(sr) for sr in c.sysrams}
    for b in mem.blocks.values():
        o = b.owner
        start = b.start
        if o is None:
            if not any(ls <= start < le for ls, le in leaked):
                c.bad(b, "mem.owner", "owned by nobody and in no leaked range")
        elif isinstance(o, DevDax):
            ranges = getattr(o.drvdata, "ranges", None) or ()
            held = any(r is not None and r.res is not None and r.start <= start < r.start + r.size for r in ranges)
            if id(o) not in dax_live or o.driver is None or not held:
                c.bad(b, "mem.owner", f"added by {o.name}, which holds no range over it (bound "
                                      f"{_name(o.driver)}, registered {o.registered})")
            elif b.nid != o.target_node or b.group is not getattr(o.drvdata, "group", None):
                c.bad(b, "mem.owner", f"added by {o.name} but on node {b.nid} (target {o.target_node}) or "
                                      "outside its memory group")
        elif isinstance(o, CxlSysram):
            if id(o) not in sr_live or not o.added or not o.start <= start < o.start + o.size:
                c.bad(b, "mem.owner", f"added by {o.name}, which has not added it")
            elif b.nid != o.nid or b.group is not o.group:
                c.bad(b, "mem.owner", f"added by {o.name} but on node {b.nid} or outside its memory group")
        else:
            c.bad(b, "mem.owner", f"owned by {type(o).__name__} {_name(o)}, which adds no memory")
    for dd in c.daxdevs:
        data = dd.drvdata
        ranges = getattr(data, "ranges", None)
        if ranges is None:
            continue
        # kmem took the ranges the device had at probe; `mapping` may append more while it is bound
        # (mapping_store() has no bound check, 6.12 and v7.3), which it never hotplugs
        if len(ranges) > len(dd.ranges):
            c.bad(dd, "mem.kmem", f"{len(ranges)} hotplug ranges for {len(dd.ranges)} dax ranges")
            continue
        for i, (r, (s, n, _)) in enumerate(zip(ranges, dd.ranges)):
            want = memory_block_aligned_range(s, n, bs)
            if (None if r is None else (r.start, r.size)) != want:
                c.bad(dd, "mem.kmem", f"mapping{i}: hotplug range {None if r is None else _hexs((r.start, r.size))}, "
                                      f"the blocks of {s:#x}+{n:#x} are {None if want is None else _hexs(want)}")
                continue
            if r is None:
                continue
            idx = range(r.start // bs, (r.start + r.size) // bs)
            mine = [i_ for i_ in idx if i_ in mem.blocks and mem.blocks[i_].owner is dd]
            if r.res is not None:
                if (r.res.start, r.res.end) != (r.start, r.start + r.size - 1):
                    c.bad(dd, "mem.kmem", f"mapping{i}: claim {r.res.start:#x}-{r.res.end:#x} for range "
                                          f"{r.start:#x}+{r.size:#x}")
                if len(mine) != len(idx):
                    c.bad(dd, "mem.kmem", f"mapping{i}: holds {r.start:#x}+{r.size:#x} but only {len(mine)} of its "
                                          f"{len(idx)} blocks are present and its own")
            elif mine:
                c.bad(dd, "mem.kmem", f"mapping{i}: released, yet memory{mine[0]} is still its own")
        if getattr(data, "state", None) == "unplugged" and any(r is not None and r.res is not None for r in ranges):
            c.bad(dd, "mem.kmem", "state unplugged while holding a range")
        g = getattr(data, "group", None)
        if g is not None and mem.groups.get(g.id) is not g:
            c.bad(dd, "mem.group", f"bound with memory group {g.id}, which is not registered")
    for sr in c.sysrams:
        idx = range(sr.start // bs, (sr.start + sr.size) // bs)
        mine = [i for i in idx if i in mem.blocks and mem.blocks[i].owner is sr]
        if sr.added != (len(mine) == len(idx)) or (not sr.added and mine) or sr.added != (sr.res is not None):
            c.bad(sr, "mem.sysram", f"added {sr.added}, claim {sr.res is not None}, {len(mine)} of {len(idx)} "
                                    "blocks its own")


# ============================================================================ dax

def _check_dax(c: _Check) -> None:
    busy = {id(r) for r in c.sys.memory.iomem.busy}
    for r in c.dax_regions:
        devs = r.devs
        spans = []
        for dd in devs:
            if not dd.registered or dd.region is not r or dd.parent is not r.host:
                c.bad(dd, "dax.region", f"in {_name(r.host)}'s list but registered {dd.registered}, "
                                        f"parent {_name(dd.parent)}")
            off = 0
            for k, (s, n, pgoff) in enumerate(dd.ranges):
                spans.append((s, s + n, f"{dd.name}/mapping{k}"))
                if n <= 0 or s < r.start or s + n > r.start + r.size or pgoff != off // PAGE_SIZE:
                    c.bad(dd, "dax.ranges", f"mapping{k} {s:#x}+{n:#x} (page offset {pgoff:#x}) outside dax region "
                                            f"{r.start:#x}+{r.size:#x} or out of order")
                if n % max(dd.align, MEMREMAP_COMPAT_ALIGN):
                    c.bad(dd, "dax.align", f"mapping{k} size {n:#x} is not a multiple of align {dd.align:#x}")
                off += n
        _overlaps(spans, c, "dax.ranges", "range")
        if r.allocated() > r.size:
            c.bad(r.host, "dax.ranges", f"{r.allocated():#x} allocated of {r.size:#x}")
        for what, dd in (("seed", r.seed), ("youngest", r.youngest)):
            if dd is not None and all(dd is not x for x in devs):
                c.bad(r.host, "dax.seed", f"{what} {dd.name} is not one of its devices")
        if r.seed is not None and r.seed.driver is not None:
            c.bad(r.host, "dax.seed", f"seed {r.seed.name} is bound to {r.seed.driver.name}")
    for dd in c.daxdevs:
        if all(dd is not x for x in dd.region.devs):
            c.bad(dd, "dax.region", f"not in its dax region's device list ({_name(dd.region.host)})")
        maps = sorted(ch.name for ch in dd.children.values() if isinstance(ch, DaxMapping))
        if maps != sorted(f"mapping{k}" for k in range(len(dd.ranges))) or any(
                isinstance(ch, DaxMapping) and (ch.owner is not dd or ch.name != f"mapping{ch.index}")
                for ch in dd.children.values()):
            c.bad(dd, "dax.mappings", f"children {maps} for {len(dd.ranges)} ranges")
        if dd.driver is not None and (dd.size == 0 or dd.id < 0):
            c.bad(dd, "dax.bound", f"bound to {dd.driver.name} with size {dd.size}")
        if dd.iomem:
            claims = sorted((res.start, res.end) for res in dd.iomem)
            want = sorted((s, s + n - 1) for s, n, _ in dd.ranges)
            if dd.driver is None or claims != want or any(id(res) not in busy for res in dd.iomem):
                c.bad(dd, "dax.bound", f"device_dax claims {[f'{a:#x}-{b:#x}' for a, b in claims]} for its ranges "
                                       f"(bound {_name(dd.driver)})")
    for h in c.dax_hosts:
        hr = h.dax_region
        cxlr = h.cxlr
        if h.parent is not cxlr:
            c.bad(h, "dax.region", f"dax region of {cxlr.name} below {_name(h.parent)}")
        if (hr is not None) != (h.driver is not None):
            c.bad(h, "dax.region", f"dax region {'present' if hr else 'absent'} while bound to {_name(h.driver)}")
        if hr is not None and (hr.start, hr.size, hr.host) != (cxlr.hpa_start, cxlr.hpa_size, h):
            c.bad(h, "dax.region", f"dax region {hr.start:#x}+{hr.size:#x}, {cxlr.name} is "
                                   f"{_hexs((cxlr.hpa_start, cxlr.hpa_size))}")


_CHECKS = (_check_tree, _check_ids, _check_dpa, _check_commit, _check_hpa, _check_iomem, _check_regions,
           _check_memory, _check_nodes, _check_block_owners, _check_dax)
