"""mm/memory_hotplug.c: adding and removing memory, onlining and offlining blocks, zones and policies.

kmem hot-adds memory (``add_memory_driver_managed()``: :meth:`MemoryHotplug.add_memory`) in
``block_size`` chunks, each a memory block device of drivers/base/memory.c
(:mod:`cxlsys.base.memory`).  The policies are explicit, switchable fields of
:class:`MemoryPolicy`: the topology's ``[system]`` table sets them at boot,
``auto_online_blocks`` and ``/sys/module/memory_hotplug/parameters/*`` (:class:`HotplugParams`)
change them at run time.

What the model keeps, per node, is what the kernel's zone choice looks at:

* the boot memory layout (DMA/DMA32 below 4 GiB, Normal above), whose present pages
  are the "early" kernel pages ``auto-movable`` measures its ratio against;
* for ZONE_NORMAL and ZONE_MOVABLE the online hot-plugged blocks, whose hull (with
  the boot span) is the zone span ``contig-zones`` tests for intersection;
* static memory groups (one per kmem device): present kernel/movable pages.

A block onlined into a kernel zone can be marked as holding unmovable pages (the
``unmovable`` debugfs knob, or ``[system] kernel_zone_unmovable`` for all of them): then
offlining it fails with EBUSY, as the kernel's page isolation does.

Only shape changes (blocks added or removed, a node or memory tier appearing or
vanishing) bump ``sys.generation``; onlining and offlining change file contents only.
"""

from __future__ import annotations

import bisect
import errno
from typing import TYPE_CHECKING

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.device import Device, device_add, device_del
from cxlsys.base.memory import (
    MMOP_OFFLINE,
    MMOP_ONLINE_KERNEL,
    MMOP_ONLINE_MOVABLE,
    ONLINE_TYPES,
    MemoryBlock,
    MemoryRoot,
    memory_dev_init,
)
from cxlsys.base.module import KernelParam, Module
from cxlsys.base.node import nodelist
from cxlsys.debugfs import VFile
from cxlsys.errors import KernelError
from cxlsys.kernel.resource import IomemResource
from cxlsys.kstrto import kstrtobool, kstrtouint, strip_newline
from cxlsys.mm.memory_tiers import MemoryTiers
from cxlsys.mm.node_private import NodePrivateCore

if TYPE_CHECKING:  # pragma: no cover - the System owns the hotplug core (system.py imports this file)
    from cxlsys.system import System

PAGE_SIZE = 4096
STRUCT_PAGE = 64                       # sizeof(struct page): the memmap costs 64 B per 4 KiB page
SZ_16M = 16 << 20
SZ_4G = 4 << 30
SZ_3G = 3 << 30

DMA, DMA32, NORMAL, MOVABLE = "DMA", "DMA32", "Normal", "Movable"
KERNEL_ZONES = (DMA, DMA32, NORMAL)
ZONES = KERNEL_ZONES + (MOVABLE,)

ONLINE_POLICIES = ("contig-zones", "auto-movable")


@attrs.define
class MemoryPolicy:
    block_size: int = 128 << 20
    auto_online_blocks: str = MMOP_OFFLINE
    online_policy: str = "contig-zones"         # or auto-movable
    auto_movable_ratio: int = 301
    auto_movable_numa_aware: bool = True
    memmap_on_memory: bool = False              # the memory_hotplug.memmap_on_memory boot parameter
    movable_node: bool = False                  # the movable_node boot option
    kernel_zone_unmovable: bool = False         # blocks onlined to a kernel zone hold unmovable pages

    def memmap_bytes(self) -> int:
        """Size of one block's own memmap (memory_block_memmap_size())."""
        return self.block_size // PAGE_SIZE * STRUCT_PAGE

    def supports_memmap_on_memory(self) -> bool:
        """mhp_supports_memmap_on_memory(): the parameter is on and the memmap covers whole
        pageblocks (always true on x86-64 for >= 128 MiB blocks)."""
        return self.memmap_on_memory and self.memmap_bytes() % PAGE_SIZE == 0


def memory_block_aligned_range(start: int, size: int, bs: int) -> tuple | None:
    """The whole memory blocks of [start, start + size) as (start, size), or None when none is left."""
    s = (start + bs - 1) // bs * bs
    e = (start + size) // bs * bs
    return (s, e - s) if e > s else None


@attrs.define(eq=False)
class MemoryGroup:
    """A static memory group (memory_group_register_static): all of one kmem device's memory."""

    id: int
    nid: int
    max_pages: int
    present_kernel_pages: int = 0
    present_movable_pages: int = 0
    blocks: int = 0
    leaked: bool = False    # its driver let go of it without memory_group_unregister(): there until reboot


@attrs.define(eq=False)
class ZoneSpan:
    """One zone of one node: its boot span and the online hot-plugged blocks in it."""

    name: str
    boot: tuple | None = None           # (start, end) bytes, end exclusive
    boot_present: int = 0               # bytes present at boot (present_early_pages)
    online: list = attrs.field(factory=list)   # sorted phys_index of online hot-plugged blocks
    present: int = 0                    # hot-plugged bytes present (vmemmap pages included)
    managed: int = 0                    # hot-plugged bytes handed to the buddy allocator

    def span(self, bs: int) -> tuple | None:
        lo = hi = None
        if self.boot is not None:
            lo, hi = self.boot
        if self.online:
            s, e = self.online[0] * bs, (self.online[-1] + 1) * bs
            lo = s if lo is None else min(lo, s)
            hi = e if hi is None else max(hi, e)
        return None if lo is None else (lo, hi)

    def intersects(self, start: int, end: int, bs: int) -> bool:
        sp = self.span(bs)
        return sp is not None and start < sp[1] and end > sp[0]

    @property
    def populated(self) -> bool:
        return bool(self.boot_present or self.present)


@attrs.define(eq=False)
class NodeMem:
    nid: int
    zones: dict = attrs.field(factory=lambda: {z: ZoneSpan(z) for z in ZONES})
    blocks: dict = attrs.field(factory=dict)      # phys_index -> MemoryBlock present on this node

    def boot_bytes(self) -> int:
        return sum(z.boot_present for z in self.zones.values())

    def kernel_early(self) -> int:
        return sum(self.zones[z].boot_present for z in KERNEL_ZONES)

    def has_memory(self) -> bool:                 # N_MEMORY
        return any(z.populated for z in self.zones.values())

    def has_normal_memory(self) -> bool:          # N_NORMAL_MEMORY (no HIGHMEM on x86-64)
        return any(self.zones[z].populated for z in KERNEL_ZONES)

    def managed(self) -> int:
        return self.boot_bytes() + sum(z.managed for z in self.zones.values())


def hotplug_module(policy: MemoryPolicy) -> Module:
    """``/sys/module/memory_hotplug``: mm/memory_hotplug.c's parameters (built in: no ``initstate``)."""

    def numa_store(buf: str) -> None:
        policy.auto_movable_numa_aware = kstrtobool(buf)        # param_set_bool

    def ratio_store(buf: str) -> None:
        policy.auto_movable_ratio = kstrtouint(buf)             # param_set_uint

    def policy_store(buf: str) -> None:
        t = strip_newline(buf)                                   # sysfs_match_string
        if t not in ONLINE_POLICIES:
            raise KernelError(errno.EINVAL, f"memory_hotplug.online_policy: {t!r} is not contig-zones/auto-movable")
        policy.online_policy = t

    return Module("memory_hotplug", builtin=True, params={
        "auto_movable_numa_aware": KernelParam(0o644, lambda: "Y\n" if policy.auto_movable_numa_aware else "N\n",
                                               numa_store),
        "auto_movable_ratio": KernelParam(0o644, lambda: f"{policy.auto_movable_ratio}\n", ratio_store),
        "memmap_on_memory": KernelParam(0o444, lambda: "Y\n" if policy.memmap_on_memory else "N\n"),
        "online_policy": KernelParam(0o644, lambda: f"{policy.online_policy}\n", policy_store),
    })


@attrs.define(eq=False)
class MemoryHotplug:
    """The memory hotplug core of one machine (``sys.memory``): blocks, nodes' zones, groups, iomem."""

    sys: System = attrs.field(repr=False)
    policy: MemoryPolicy = attrs.field(factory=MemoryPolicy)
    root: MemoryRoot | None = None
    bus: Bus | None = attrs.field(default=None, repr=False)
    blocks: dict = attrs.field(factory=dict)        # phys_index -> MemoryBlock
    nodes: dict = attrs.field(factory=dict)         # nid -> NodeMem
    groups: dict = attrs.field(factory=dict)        # mgid -> MemoryGroup
    iomem: IomemResource = attrs.field(factory=IomemResource)   # kernel/resource.c's iomem_resource
    leaked: list = attrs.field(factory=list)        # (start, size, name): not removable until "reboot"
    signal_pending: bool = False                    # debugfs knob: offlining meets a pending signal
    private: NodePrivateCore = attrs.field(init=False, repr=False)   # private memory nodes (proposals)

    def __attrs_post_init__(self) -> None:
        self.private = NodePrivateCore(self.sys)
    params: Module | None = attrs.field(default=None, repr=False)
    tiers: MemoryTiers | None = attrs.field(default=None, repr=False)   # once the nodes exist

    def setup(self, system_dev: Device) -> None:
        self.bus, self.root = memory_dev_init(self.sys, system_dev)
        self.params = self.sys.modules["memory_hotplug"] = hotplug_module(self.policy)

    def memory_tier_init(self) -> None:
        """mm/memory-tiers.c memory_tier_init(), run once the nodes exist: the boot nodes' DRAM tier."""
        self.tiers = MemoryTiers(self.sys)
        self.tiers.setup()

    def boot_layout(self, nodes_cfg) -> None:
        """Place each node's boot memory: the first node from 0 (DMA, DMA32 up to 3 GiB, the
        rest from 4 GiB in Normal), the others after it, all Normal."""
        cursor = 0
        for cfg in sorted(nodes_cfg, key=lambda c: c.id):
            nm = self.node(cfg.id)
            m = cfg.memory
            if not m:
                continue
            z = nm.zones
            if cursor == 0:
                low = min(m, SZ_3G)
                z[DMA].boot, z[DMA].boot_present = (0, min(low, SZ_16M)), min(low, SZ_16M)
                if low > SZ_16M:
                    z[DMA32].boot, z[DMA32].boot_present = (SZ_16M, low), low - SZ_16M
                cursor = SZ_4G
                m -= low
            if m:
                z[NORMAL].boot, z[NORMAL].boot_present = (cursor, cursor + m), m
                cursor += m

    def node(self, nid: int) -> NodeMem:
        nm = self.nodes.get(nid)
        if nm is None:
            nm = self.nodes[nid] = NodeMem(nid)
        return nm

    # ----- queries used by nodes ------------------------------------------------
    def block_counts(self) -> tuple[int, int]:
        """(present, online) hot-added memory blocks: what ``cxlsys run --progress`` shows."""
        return len(self.blocks), sum(1 for b in self.blocks.values() if b.online)

    def blocks_of_node(self, nid: int):
        nm = self.nodes.get(nid)
        return list(nm.blocks.values()) if nm else []

    def online_bytes(self, nid: int) -> int:
        nm = self.nodes.get(nid)
        return sum(z.managed for z in nm.zones.values()) if nm else 0

    def node_has_online_memory(self, nid: int) -> bool:
        """Any populated zone: N_MEMORY, or N_MEMORY_PRIVATE on a node registered as private."""
        nm = self.nodes.get(nid)
        return bool(nm and nm.has_memory())

    def node_has_memory(self, nid: int) -> bool:           # N_MEMORY
        return self.node_has_online_memory(nid) and not self.private.is_private(nid)

    def node_has_normal(self, nid: int) -> bool:           # N_NORMAL_MEMORY
        nm = self.nodes.get(nid)
        return bool(nm and nm.has_normal_memory()) and not self.private.is_private(nid)

    def range_has_system_ram(self, start: int, size: int) -> bool:
        """Any hot-added block (online or not: its "System RAM (kmem)" resource) in the range."""
        bs = self.policy.block_size
        lo, hi = start // bs, (start + size + bs - 1) // bs
        if hi - lo < len(self.blocks):
            return any(i in self.blocks for i in range(lo, hi))
        return any(lo <= i < hi for i in self.blocks)

    # ----- zones (mm/memory_hotplug.c zone_for_pfn_range) ---------------------------
    def _kernel_zone(self, nm: NodeMem, start: int, end: int) -> str:
        bs = self.policy.block_size
        for z in (DMA, DMA32):
            if nm.zones[z].intersects(start, end, bs):
                return z
        return NORMAL

    def zone_for_online(self, blk: MemoryBlock, online_type: str) -> str:
        nm = self.node(blk.nid)
        bs = self.policy.block_size
        start, end = blk.start, blk.start + bs
        kernel_zone = self._kernel_zone(nm, start, end)
        if online_type == MMOP_ONLINE_KERNEL:
            return kernel_zone
        if online_type == MMOP_ONLINE_MOVABLE:
            return MOVABLE
        if self.policy.online_policy == "auto-movable":
            return self._auto_movable_zone(blk, kernel_zone)
        in_kernel = nm.zones[kernel_zone].intersects(start, end, bs)
        in_movable = nm.zones[MOVABLE].intersects(start, end, bs)
        if in_kernel != in_movable:
            return kernel_zone if in_kernel else MOVABLE
        return MOVABLE if self.policy.movable_node else kernel_zone

    def _auto_movable_zone(self, blk: MemoryBlock, kernel_zone: str) -> str:
        p = self.policy
        if not p.auto_movable_ratio:
            return kernel_zone
        g = blk.group
        bs_pages = p.block_size // PAGE_SIZE
        if g is not None:
            if g.present_kernel_pages:
                return kernel_zone
            need = g.max_pages - g.present_movable_pages
        else:
            need = bs_pages
        if not self._can_online_movable(None, need):
            return kernel_zone
        if p.auto_movable_numa_aware and not self._can_online_movable(blk.nid, need):
            return kernel_zone
        return MOVABLE

    def _can_online_movable(self, nid: int | None, need_pages: int) -> bool:
        """auto_movable_can_online_movable(): MOVABLE:KERNEL-early stays within the ratio."""
        scope = self.nodes.values() if nid is None else [self.node(nid)]
        kernel_early = sum(nm.kernel_early() for nm in scope) // PAGE_SIZE
        movable = sum(nm.zones[MOVABLE].present + nm.zones[MOVABLE].boot_present for nm in scope) // PAGE_SIZE
        if kernel_early <= 0:            # no dynamic groups here: nothing early to balance against
            return False
        return movable + need_pages <= self.policy.auto_movable_ratio * kernel_early // 100

    # ----- online/offline ----------------------------------------------------------------
    def online_block(self, blk: MemoryBlock, online_type: str) -> None:
        zone = self.zone_for_online(blk, online_type)
        nm = self.node(blk.nid)
        had_memory = nm.has_memory()
        private = self.private.is_private(blk.nid)
        bs = self.policy.block_size
        zs = nm.zones[zone]
        bisect.insort(zs.online, blk.phys_index)
        zs.present += bs
        zs.managed += bs - blk.memmap_bytes
        if blk.group is not None:
            if zone == MOVABLE:
                blk.group.present_movable_pages += bs // PAGE_SIZE
            else:
                blk.group.present_kernel_pages += bs // PAGE_SIZE
        blk.zone = zone
        blk.online = True
        if not had_memory:
            kind = "private memory (N_MEMORY_PRIVATE)" if private else "memory"
            self.sys.klog.log(f"node {blk.nid} gained {kind} ({blk.name} onlined to {zone})", "debug")
            if not private:
                self.tiers_node_changed(blk.nid, True)

    def offline_block(self, blk: MemoryBlock) -> None:
        if blk.zone is None:
            raise KernelError(errno.EINVAL, f"{blk.name}: offline: the block spans more than one zone")
        if self.signal_pending:            # offline_pages(): any pending signal backs off
            raise KernelError(errno.EINTR, f"{blk.name}: offline interrupted: signal pending")
        if blk.unmovable or (self.policy.kernel_zone_unmovable and blk.zone != MOVABLE):
            raise KernelError(errno.EBUSY, f"{blk.name}: offline failed: failure to isolate range "
                                           f"(unmovable pages in ZONE_{blk.zone.upper()})")
        nm = self.node(blk.nid)
        bs = self.policy.block_size
        zs = nm.zones[blk.zone]
        i = bisect.bisect_left(zs.online, blk.phys_index)
        del zs.online[i]
        zs.present -= bs
        zs.managed -= bs - blk.memmap_bytes
        if blk.group is not None:
            if blk.zone == MOVABLE:
                blk.group.present_movable_pages -= bs // PAGE_SIZE
            else:
                blk.group.present_kernel_pages -= bs // PAGE_SIZE
        blk.online = False
        blk.zone = None
        if not nm.has_memory():
            self.sys.klog.log(f"node {blk.nid} has no online memory left", "debug")
            if not self.private.is_private(blk.nid):
                self.tiers_node_changed(blk.nid, False)

    def tiers_node_changed(self, nid: int, has_memory: bool) -> None:
        if self.tiers is not None:
            self.tiers.node_memory_changed(nid, has_memory)

    # ----- /sys/kernel/debug/cxlsys/memory: the simulator's own knobs ------------------
    def debugfs_entries(self) -> dict:
        """``leaked``: ranges kmem could not remove (``START-END daxX.Y`` lines), in use until "reboot";
        ``unmovable``: the blocks holding unmovable pages, as a list of block numbers
        (``7682,7684-7685``; a write replaces the set, an empty write clears it);
        ``kernel_zone_unmovable``: Y/N, every block onlined to a kernel zone counts as such."""
        def unmovable_store(buf: str) -> None:
            want: set[int] = set()
            for part in filter(None, strip_newline(buf).replace(" ", "").split(",")):
                lo, _, hi = part.partition("-")
                try:
                    a, b = int(lo), int(hi or lo)
                except ValueError:
                    raise KernelError(errno.EINVAL, f"unmovable: {part!r} is not a block number or range")
                if b < a or any(i not in self.blocks for i in range(a, b + 1)):
                    raise KernelError(errno.EINVAL, f"unmovable: {part!r} names blocks that are not present")
                want.update(range(a, b + 1))
            for i, blk in self.blocks.items():
                blk.unmovable = i in want

        def kzu_store(buf: str) -> None:
            self.policy.kernel_zone_unmovable = kstrtobool(buf)

        def leaked_show() -> str:
            return "".join(f"{a:#x}-{a + n - 1:#x} {name}\n" for a, n, name in self.leaked)

        def signal_store(buf: str) -> None:
            self.signal_pending = kstrtobool(buf)

        return {
            "leaked": VFile(0o444, leaked_show),
            # Y: the offlining task has a signal pending (offline_pages() fails with EINTR)
            "signal_pending": VFile(0o644, lambda: "Y\n" if self.signal_pending else "N\n", signal_store),
            "unmovable": VFile(0o644, lambda: nodelist(i for i, b in self.blocks.items() if b.unmovable) + "\n",
                               unmovable_store),
            "kernel_zone_unmovable": VFile(0o644, lambda: "Y\n" if self.policy.kernel_zone_unmovable else "N\n",
                                           kzu_store),
        }

    # ----- memory groups ----------------------------------------------------------
    def register_static_group(self, nid: int, pages: int) -> MemoryGroup:
        gid = 0
        while gid in self.groups:
            gid += 1
        g = self.groups[gid] = MemoryGroup(gid, nid, pages)
        return g

    def unregister_group(self, g: MemoryGroup) -> None:
        if g.blocks:
            raise KernelError(errno.EBUSY, f"memory group {g.id} still has {g.blocks} blocks")
        self.groups.pop(g.id, None)

    # ----- add/remove (add_memory_driver_managed / remove_memory) ------------------------
    def add_memory(self, start: int, size: int, nid: int, owner=None, memmap_on_memory: bool = False,
                   group: MemoryGroup | None = None, online_type: str | None = None) -> list:
        """add_memory_driver_managed(); with ``online_type`` v7.3's __add_memory_driver_managed(...,
        online_type) (None: the default, ``auto_online_blocks``).  Blocks that fail to online are
        left offline: the add still succeeds (walk_memory_blocks() ignores online_memory_block())."""
        if online_type is not None and online_type not in ONLINE_TYPES:
            raise KernelError(errno.EINVAL, f"add_memory: online type {online_type!r} out of range")
        bs = self.policy.block_size
        if not size or start % bs or size % bs:
            raise KernelError(errno.EINVAL, f"add_memory: {start:#x}+{size:#x} not block aligned")
        lo, hi = start // bs, (start + size) // bs
        if self.range_has_system_ram(start, size):
            raise KernelError(errno.EEXIST, f"add_memory: {start:#x}+{size:#x} overlaps present memory")
        node = self.sys.nodes.get(nid)
        if node is None:
            raise KernelError(errno.EINVAL, f"add_memory: node {nid} is not possible")
        memmap = memmap_on_memory and self.policy.supports_memmap_on_memory()
        if not node.registered:          # __try_online_node(): register nodeN first
            node.online = True
            device_add(node)
        nm = self.node(nid)
        out = []
        for i in range(lo, hi):
            b = MemoryBlock(name=f"memory{i}", parent=self.root, sys=self.sys, bus=self.bus, phys_index=i,
                            nid=nid, owner=owner, memmap_on_memory=memmap, group=group)
            self.blocks[i] = b
            nm.blocks[i] = b
            if group is not None:
                group.blocks += 1
            device_add(b)
            out.append(b)
        auto = online_type if online_type is not None else self.policy.auto_online_blocks
        if auto != MMOP_OFFLINE:
            for b in out:
                try:
                    self.online_block(b, auto)
                except KernelError:      # online_memory_block() failures are ignored
                    pass
        return out

    def remove_memory(self, start: int, size: int) -> None:
        bs = self.policy.block_size
        lo, hi = start // bs, (start + size) // bs
        idxs = [i for i in range(lo, hi) if i in self.blocks]
        online = [self.blocks[i] for i in idxs if self.blocks[i].online]
        if online:
            b = online[0]
            raise KernelError(errno.EBUSY, f"remove_memory: memory [{b.start:#x}-{b.start + bs - 1:#x}] "
                                           f"({b.name}) is onlined")
        nids = set()
        for i in reversed(idxs):
            b = self.blocks.pop(i)
            nids.add(b.nid)
            self.nodes[b.nid].blocks.pop(i, None)
            if b.group is not None:
                b.group.blocks -= 1
            device_del(b)
        for nid in nids:
            self.try_offline_node(nid)

    def leak(self, start: int, size: int, name: str, owner=None) -> None:
        """A range whose removal failed stays, blocks and all, "until the next reboot": listed in
        ``leaked`` (and debugfs), its blocks no longer ``owner``'s."""
        self.leaked.append((start, size, name))
        for b in self.blocks.values():
            if b.owner is owner and start <= b.start < start + size:
                b.owner = None

    def offline_and_remove_memory_ranges(self, ranges: list) -> None:
        """v7.3 mm/memory_hotplug.c: offline every block of every (start, size) range under one
        hotplug lock, then remove them all.  A block already offline counts as done; if one fails
        to offline, every block offlined here is onlined back into the zone type it was in
        (movable or kernel) and the error is returned, nothing removed."""
        bs = self.policy.block_size
        if not ranges or any(n == 0 or s % bs or n % bs for s, n in ranges):
            raise KernelError(errno.EINVAL, "offline_and_remove_memory_ranges: empty or unaligned range")
        done: list = []
        try:
            for s, n in ranges:
                for i in range(s // bs, (s + n) // bs):
                    b = self.blocks.get(i)
                    if b is None or not b.online:
                        continue
                    typ = MMOP_ONLINE_MOVABLE if b.zone == MOVABLE else MMOP_ONLINE_KERNEL
                    self.offline_block(b)
                    done.append((b, typ))
        except KernelError:
            for b, typ in reversed(done):
                self.online_block(b, typ)
            raise
        for s, n in ranges:
            self.remove_memory(s, n)

    def try_offline_node(self, nid: int) -> None:
        node = self.sys.nodes.get(nid)
        nm = self.nodes.get(nid)
        if node is None or not node.registered:
            return
        if node.cpus or (nm and (nm.blocks or nm.boot_bytes())):
            return
        node.online = False
        device_del(node)
