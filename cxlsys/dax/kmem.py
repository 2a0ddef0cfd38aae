"""drivers/dax/kmem.c: hand a dev_dax's ranges to the memory hotplug core as System RAM.

probe: the target node must be >= 0 (EINVAL); each range is trimmed to whole memory
blocks (a range with no whole block is skipped, a device with none is refused with
EINVAL); the node gets the default dax memory type (memory tier 22) unless it has one;
one static memory group covers the device; each range is claimed in iomem (a busy
range -> EBUSY while nothing is mapped yet, skipped after) and added with
add_memory_driver_managed(), which creates the blocks and auto-onlines them per
``auto_online_blocks``.

remove (unbind, never fails): each range is removed; a range with an online block
cannot be: it stays, with its blocks and its iomem claim, "until the next reboot"
(``MemoryHotplug.leaked``), and later probes of it fail with EBUSY.
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.device import Device
from cxlsys.dax.bus import DaxDriver, DevDax
from cxlsys.errors import KernelError
from cxlsys.kernel.resource import Resource
from cxlsys.mm.memory_hotplug import PAGE_SIZE, MemoryGroup
from cxlsys.mm.memory_tiers import MEMTIER_DEFAULT_DAX_ADISTANCE


@attrs.define
class KmemData:
    group: MemoryGroup
    ranges: list          # per dev_dax range: (start, size, iomem claim) or None (skipped / not mapped)


def dax_kmem_ranges(dd: DevDax, bs: int) -> list:
    """dax_kmem_range() for every range: the block-aligned part, or None when nothing is left."""
    out = []
    for start, size, _ in dd.ranges:
        s = (start + bs - 1) // bs * bs
        e = (start + size) // bs * bs
        out.append((s, e - s) if e > s else None)
    return out


@attrs.define(eq=False, kw_only=True)
class KmemDriver(DaxDriver):
    name: str = "kmem"
    module: str = "kmem"
    kmem_type: bool = True
    adistance: int = MEMTIER_DEFAULT_DAX_ADISTANCE

    def dax_probe(self, dd: DevDax) -> None:
        sys = dd.sys
        mem = sys.memory
        nid = dd.target_node
        if nid < 0:
            raise KernelError(errno.EINVAL, f"{dd.name}: rejecting DAX region with invalid node: {nid}")
        ranges = dax_kmem_ranges(dd, mem.policy.block_size)
        for i, (r, (start, size, _)) in enumerate(zip(ranges, dd.ranges)):
            if r is None:
                sys.klog.dev_info(dd, f"mapping{i}: {start:#x}-{start + size - 1:#x} too small after alignment")
        total = sum(r[1] for r in ranges if r)
        if not total:
            raise KernelError(errno.EINVAL, f"{dd.name}: rejecting DAX region without any memory after alignment")
        if nid not in sys.nodes:
            raise KernelError(errno.EINVAL, f"{dd.name}: node {nid} is not possible")
        tiers = mem.tiers
        assert tiers is not None           # memory_tier_init() ran at boot, once the nodes existed
        tiers.init_node_memory_type(nid, self.adistance)
        group = mem.register_static_group(nid, total // PAGE_SIZE)
        done: list[Optional[tuple[int, int, Resource]]] = [None] * len(ranges)
        mapped = 0
        try:
            for i, r in enumerate(ranges):
                if r is None:
                    continue
                s, n = r
                try:
                    claim = mem.iomem.request_region(s, n, dd.name)
                except KernelError:
                    sys.klog.log(f"kmem {dd.name}: mapping{i}: {s:#x}-{s + n - 1:#x} could not reserve region", "warn")
                    if mapped:
                        continue
                    raise KernelError(errno.EBUSY,
                                      f"{dd.name}: mapping{i}: {s:#x}-{s + n - 1:#x} could not reserve region")
                try:
                    mem.add_memory(s, n, nid, dd, dd.memmap_on_memory, group)
                except KernelError as e:
                    mem.iomem.release_region(claim)
                    sys.klog.log(f"kmem {dd.name}: mapping{i}: {s:#x}-{s + n - 1:#x} memory add failed", "warn")
                    if mapped:
                        continue
                    raise e
                done[i] = (s, n, claim)
                mapped += 1
        except KernelError:
            mem.unregister_group(group)
            tiers.clear_node_memory_type(nid)
            raise
        dd.kmem_state = KmemData(group, done)

    def remove(self, dd: Device) -> None:
        assert isinstance(dd, DevDax)      # match() accepts dev_dax devices only
        sys = dd.sys
        mem = sys.memory
        data = dd.kmem_state
        if data is None:
            return
        success = 0
        for i, r in enumerate(data.ranges):
            if r is None:
                continue
            s, n, claim = r
            try:
                mem.remove_memory(s, n)
            except KernelError as e:
                sys.klog.log(e.reason, "warn")
                sys.klog.log(f"kmem {dd.name}: mapping{i}: {s:#x}-{s + n - 1:#x} cannot be hotremoved until "
                             "the next reboot", "err")
                mem.leaked.append((s, n, dd.name))
                for b in mem.blocks.values():
                    if b.owner is dd and s <= b.start < s + n:
                        b.owner = None
                continue
            mem.iomem.release_region(claim)
            data.ranges[i] = None
            success += 1
        if success >= len(dd.ranges):
            mem.unregister_group(data.group)
            assert mem.tiers is not None   # as in dax_probe()
            mem.tiers.clear_node_memory_type(dd.target_node)
        dd.kmem_state = None
