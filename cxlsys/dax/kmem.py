"""drivers/dax/kmem.c: hand a dev_dax's ranges to the memory hotplug core as System RAM.

probe: the target node must be >= 0 (EINVAL); each range is trimmed to whole memory
blocks (a range with no whole block is skipped, a device with none is refused with
EINVAL); the node gets the default dax memory type (memory tier 22) unless it has one;
one static memory group covers the device; each range is claimed in iomem (a busy
range -> EBUSY while nothing is mapped yet, skipped after) and added with
add_memory_driver_managed(), which creates the blocks and auto-onlines them per
``auto_online_blocks``.

remove (unbind, never fails): each range that still holds its reservation is removed with
remove_memory() (which never offlines; the driver does not trust its own state); a range with an
online block cannot be: it stays, with its blocks and its iomem claim, "until the next reboot"
(``MemoryHotplug.leaked``), and later probes of it fail with EBUSY.

v7.3 (profile ``kmem_state``): the whole-device ``daxX.Y/state`` attribute, a group of the kmem
driver's (``dev_groups``: present only while bound).  It reads the online type the probe used
(``auto_online_blocks`` then) or the last one written, or ``unplugged``; writes follow
``state_store()`` (kernel-now.md §1.3): an unknown word or ``offline`` is EINVAL, the same state is
a no-op, ``unplugged`` offlines and removes every range at once (``offline_and_remove_memory_ranges``,
all or nothing), an online type is EBUSY unless ``unplugged``, and from ``unplugged`` it re-reserves
each range and hot-adds it with that online type (a later range failing is skipped: partial success).
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.device import Attr, AttrGroup, Device
from cxlsys.dax.bus import DaxDriver, DevDax
from cxlsys.errors import KernelError
from cxlsys.kernel.resource import Resource
from cxlsys.kstrto import strip_newline
from cxlsys.mm.memory_hotplug import MMOP_OFFLINE, ONLINE_TYPES, PAGE_SIZE, MemoryGroup, memory_block_aligned_range
from cxlsys.mm.memory_tiers import MEMTIER_DEFAULT_DAX_ADISTANCE

DAX_KMEM_UNPLUGGED = "unplugged"     # drivers/dax/bus.h: (-1), "Do not create memory blocks"


@attrs.define(eq=False)
class KmemRange:
    """One dev_dax range as kmem sees it: the block-aligned part and its reservation (``daxX.Y`` in
    /proc/iomem) while kmem holds one."""

    start: int
    size: int
    res: Optional[Resource] = None


@attrs.define
class KmemData:
    group: MemoryGroup
    ranges: list                  # per dev_dax range: KmemRange, or None (nothing left after alignment)
    state: str = MMOP_OFFLINE     # the online type last applied, or DAX_KMEM_UNPLUGGED


def dax_kmem_ranges(dd: DevDax, bs: int) -> list:
    """dax_kmem_range() for every range: the block-aligned part, or None when nothing is left."""
    return [memory_block_aligned_range(start, size, bs) for start, size, _ in dd.ranges]


def remove_reserved_ranges(dd: DevDax, ranges: list, leak) -> tuple:
    """remove_memory() on every range that still holds its reservation (never offlining anything);
    a removed range gives its reservation back, one with an online block stays "until the next
    reboot" (``leak(i, range, error)`` logs it; ``MemoryHotplug.leaked`` lists it).  Returns
    (ranges removed, whether any stayed)."""
    mem = dd.sys.memory
    removed, stuck = 0, False
    for i, r in enumerate(ranges):
        if r is None or r.res is None:
            continue
        try:
            mem.remove_memory(r.start, r.size)
        except KernelError as e:
            leak(i, r, e)
            mem.leak(r.start, r.size, dd.name, owner=dd)
            stuck = True
            continue
        mem.iomem.release_region(r.res)
        r.res = None
        removed += 1
    return removed, stuck


def _data(dd: Device) -> KmemData:
    assert isinstance(dd, DevDax) and isinstance(dd.drvdata, KmemData)   # the group exists only while bound
    return dd.drvdata


def state_show(dd: Device) -> str:
    return f"{_data(dd).state}\n"


def state_store(dd: Device, buf: str) -> None:
    assert isinstance(dd, DevDax)
    data = _data(dd)
    want = strip_newline(buf)
    if want != DAX_KMEM_UNPLUGGED and want not in ONLINE_TYPES:       # mhp_online_type_from_str()
        raise KernelError(errno.EINVAL, f"{dd.name}: state: {want!r} is not unplugged, online, online_kernel "
                                        "or online_movable")
    if want == MMOP_OFFLINE:
        raise KernelError(errno.EINVAL, f"{dd.name}: state: offline can be reported, not written")
    if want == data.state:
        return
    if want == DAX_KMEM_UNPLUGGED:
        dax_kmem_do_hotremove(dd, data)
        data.state = DAX_KMEM_UNPLUGGED
        return
    if data.state != DAX_KMEM_UNPLUGGED:
        raise KernelError(errno.EBUSY, f"{dd.name}: state: {data.state}; onlining is only possible from unplugged")
    dax_kmem_init_resources(dd, data.ranges)
    dax_kmem_do_hotplug(dd, data.ranges, _kmem_add(dd, data.group, want))
    data.state = want


KMEM_GROUP = AttrGroup([Attr("state", 0o644, state_show, state_store)])


def dax_kmem_init_resources(dd: DevDax, ranges: list, res_name: Optional[str] = None,
                            child: Optional[str] = None) -> None:
    """request_mem_region() for every aligned range without a reservation (named ``res_name``,
    default the device's name; ``child`` names the System RAM resource hot-add puts below it):
    EBUSY if the first one conflicts, later conflicts are logged and skipped."""
    mem = dd.sys.memory
    first = True
    for i, r in enumerate(ranges):
        if r is None:
            continue
        if r.res is None:
            try:
                r.res = mem.iomem.request_region(r.start, r.size, res_name or dd.name)
            except KernelError:
                what = f"mapping{i}: {r.start:#x}-{r.start + r.size - 1:#x} could not reserve region"
                dd.sys.klog.log(f"{dd.driver_name_for_log()} {dd.name}: {what}", "warn")
                if first:
                    raise KernelError(errno.EBUSY, f"{dd.name}: {what}")
            else:
                if child is not None:
                    r.res.child = child
        first = False


def dax_kmem_cleanup_resources(dd: DevDax, ranges: list) -> None:
    mem = dd.sys.memory
    for r in ranges:
        if r is not None and r.res is not None:
            mem.iomem.release_region(r.res)
            r.res = None


def _kmem_add(dd: DevDax, group: MemoryGroup, online_type: str):
    """kmem's hot-add of one range: __add_memory_driver_managed(..., "System RAM (kmem)", online_type)."""
    def add(r: KmemRange) -> None:
        dd.sys.memory.add_memory(r.start, r.size, dd.target_node, dd, dd.memmap_on_memory, group,
                                 online_type=online_type)
    return add


def dax_kmem_do_hotplug(dd: DevDax, ranges: list, add) -> int:
    """``add(range)`` for each reserved range; the first failing fails the whole (every reservation
    dropped), a later one only drops that range (a partial add succeeds).  Returns the ranges added."""
    mem = dd.sys.memory
    added = 0
    for i, r in enumerate(ranges):
        if r is None or r.res is None:
            continue
        try:
            add(r)
        except KernelError as e:
            dd.sys.klog.log(f"{dd.driver_name_for_log()} {dd.name}: mapping{i}: {r.start:#x}-"
                            f"{r.start + r.size - 1:#x} memory add failed", "warn")
            if not added:
                dax_kmem_cleanup_resources(dd, ranges)
                raise e
            mem.iomem.release_region(r.res)
            r.res = None
            continue
        added += 1
    return added


def dax_kmem_do_hotremove(dd: DevDax, data: KmemData) -> None:
    """One offline_and_remove_memory_ranges() over every reserved range, then release them."""
    mem = dd.sys.memory
    ranges = [r for r in data.ranges if r is not None and r.res is not None]
    if not ranges:
        return
    try:
        mem.offline_and_remove_memory_ranges([(r.start, r.size) for r in ranges])
    except KernelError as e:
        dd.sys.klog.log(f"kmem {dd.name}: hotremove failed, device left online: -{errno.errorcode.get(e.errno)}",
                        "err")
        raise
    for r in ranges:
        assert r.res is not None
        mem.iomem.release_region(r.res)
        r.res = None


@attrs.define(eq=False, kw_only=True)
class KmemDriver(DaxDriver):
    name: str = "kmem"
    module: str = "kmem"
    kmem_type: bool = True
    adistance: int = MEMTIER_DEFAULT_DAX_ADISTANCE

    def dev_groups(self, dev: Device) -> tuple:
        """dev_dax_kmem_groups: ``state`` from v7.3 on."""
        return (KMEM_GROUP,) if dev.sys.profile.kmem_state else ()

    def dax_probe(self, dd: DevDax) -> None:
        sys = dd.sys
        mem = sys.memory
        nid = dd.target_node
        if nid < 0:
            raise KernelError(errno.EINVAL, f"{dd.name}: rejecting DAX region with invalid node: {nid}")
        aligned = dax_kmem_ranges(dd, mem.policy.block_size)
        for i, (r, (start, size, _)) in enumerate(zip(aligned, dd.ranges)):
            if r is None:
                sys.klog.dev_info(dd, f"mapping{i}: {start:#x}-{start + size - 1:#x} too small after alignment")
        total = sum(r[1] for r in aligned if r)
        if not total:
            raise KernelError(errno.EINVAL, f"{dd.name}: rejecting DAX region without any memory after alignment")
        if nid not in sys.nodes:
            raise KernelError(errno.EINVAL, f"{dd.name}: node {nid} is not possible")
        tiers = mem.tiers
        assert tiers is not None           # memory_tier_init() ran at boot, once the nodes existed
        tiers.init_node_memory_type(nid, self.adistance)
        group = mem.register_static_group(nid, total // PAGE_SIZE)
        online_type = mem.policy.auto_online_blocks          # mhp_get_default_online_type(), read once
        data = KmemData(group, [KmemRange(*r) if r else None for r in aligned], state=online_type)
        try:
            dax_kmem_init_resources(dd, data.ranges)
            dax_kmem_do_hotplug(dd, data.ranges, _kmem_add(dd, group, online_type))
        except KernelError:
            dax_kmem_cleanup_resources(dd, data.ranges)
            mem.unregister_group(group)
            tiers.clear_node_memory_type(nid)
            raise
        dd.drvdata = data

    def remove(self, dd: Device) -> None:
        """dax_kmem_remove_ranges(): remove_memory() on every range still reserved, whatever the
        state says; a range with an online block leaks until "reboot"."""
        assert isinstance(dd, DevDax)      # match() accepts dev_dax devices only
        sys = dd.sys
        mem = sys.memory
        data = dd.drvdata
        if not isinstance(data, KmemData):
            return
        def leak(i: int, r: KmemRange, e: KernelError) -> None:
            sys.klog.log(e.reason, "warn")
            end = r.start + r.size - 1
            if sys.profile.kmem_state:
                sys.klog.log(f"kmem {dd.name}: mapping{i}: {r.start:#x}-{end:#x} stuck online until reboot", "err")
            else:
                sys.klog.log(f"kmem {dd.name}: mapping{i}: {r.start:#x}-{end:#x} cannot be hotremoved until "
                             "the next reboot", "err")

        removed, stuck = remove_reserved_ranges(dd, data.ranges, leak)
        if stuck and sys.profile.kmem_state:
            sys.klog.log(f"kmem {dd.name}: Hotplug regions stuck online until reboot", "err")
        # v7.3: the group goes once nothing is stuck.  6.12 loops to the device's nr_range and frees
        # it only when every range was removed in this call ("success >= dev_dax->nr_range"):
        # - a range `mapping` added while bound (mapping_store() has no bound check) was never
        #   hotplugged; when it holds a whole memory block remove_memory() finds nothing there and
        #   counts it, and the kernel then reads data->res[] past the probe-time array: said here;
        # - a range too small for one memory block (dax_kmem_range() fails) is skipped, never
        #   counted: with nothing stuck the group then leaks, registered with no blocks until reboot.
        if not sys.profile.kmem_state:
            bs = mem.policy.block_size
            late = [r for r in dax_kmem_ranges(dd, bs)[len(data.ranges):] if r is not None]
            if late:
                sys.klog.log(f"kmem {dd.name}: {len(late)} range(s) mapped after probe were never hotplugged; "
                             "6.12 reads data->res[] past its end removing them", "warn")
                removed += len(late)
        if (not stuck) if sys.profile.kmem_state else removed >= len(dd.ranges):
            mem.unregister_group(data.group)
            assert mem.tiers is not None   # as in dax_probe()
            mem.tiers.clear_node_memory_type(dd.target_node)
        elif not stuck:
            data.group.leaked = True
            sys.klog.log(f"kmem {dd.name}: memory group {data.group.id} left registered: {len(dd.ranges) - removed} "
                         "range(s) smaller than a memory block count as not removed (6.12)", "warn")
        dd.drvdata = None
