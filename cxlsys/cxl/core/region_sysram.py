"""drivers/cxl/core/region_sysram.c of the private memory nodes v4 series (RFC 2026-02-22, patches 24-25;
policy-proposals.md §A.3): a region's memory hot-added as System RAM directly, without the
dax_region / dax device / kmem layers.

``devm_cxl_add_sysram(cxlr, private, online_type)`` adds ``sysram_regionN``, a child of ``regionN`` on
the cxl bus (device type ``cxl_sysram``, ``cxl:t10``), for the region's HPA range trimmed to
memory-block alignment (nothing left: ENOSPC), on the target node of the region's start (not a
possible node: EINVAL), in one static memory group, the node given the low-tier memory type unless
it has one.  Hot-adding claims the range in iomem as ``cxl_sysramN`` (its System RAM child reads
"System RAM (CXL)") and adds it with the online type; with ``private`` it goes through the
node-private core instead (``add_private_memory_driver_managed()``: the node is registered with the
device's :class:`~cxlsys.mm.node_private.NodePrivate` record and enters N_MEMORY_PRIVATE, not
N_MEMORY), and removal through ``offline_and_remove_private_memory()`` (an EBUSY from the node's
unregistration — other private ranges remain — is not an error).  Userspace cannot choose ``private``
(v4 has no knob): only a driver can, e.g. :mod:`cxlsys.cxl.mempolicy`.

The write-only ``hotplug`` attribute takes the memory-block words: ``offline`` offlines and removes
the whole range (all or nothing; a failure is returned and the memory stays online), ``online`` /
``online_kernel`` / ``online_movable`` add the range and online it that way: EBUSY if it is already
added or the iomem claim fails, other hotplug errors as they come, EINVAL for any other word.

Teardown (the devres action on the host given, by default the region; or the region going away
with its children) offlines and removes what is added; memory that cannot be offlined stays online
and leaks, as kmem's does (logged, ``/sys/kernel/debug/cxlsys/memory/leaked``), until "reboot".

Interpretations of the digest [I]: ``online_type`` None means the region is not hot-added at creation
(the digest's "none of the Kconfig choices: left offline"; ``offline`` adds the blocks offline);
``offline`` written while nothing is added is a no-op; the memmap is not placed on the memory
(no MHP_MEMMAP_ON_MEMORY); the abstract distance is the default low-tier one (no HMAT/CDAT model).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Optional

import attrs

from cxlsys.base.device import WO, AttrGroup, Device, device_add, device_del
from cxlsys.cxl.core.port import CxlDevice
from cxlsys.errors import KernelError
from cxlsys.kernel.resource import Resource
from cxlsys.kstrto import strip_newline
from cxlsys.mm.memory_hotplug import MMOP_OFFLINE, ONLINE_TYPES, PAGE_SIZE, MemoryGroup, memory_block_aligned_range
from cxlsys.mm.memory_tiers import MEMTIER_DEFAULT_DAX_ADISTANCE
from cxlsys.mm.node_private import NodePrivate

if TYPE_CHECKING:  # pragma: no cover - forward declaration (region.py sits above this file)
    from cxlsys.cxl.core.region import CxlRegion

CXL_DEVICE_SYSRAM = 10                             # cxl.h of the series: the cxl_sysram device type id
SYSRAM_RESOURCE_NAME = "System RAM (CXL)"          # the hot-added System RAM resource
# mm/memory-tiers.c MEMTIER_DEFAULT_LOWTIER_ADISTANCE (the later name of the default dax distance)
SYSRAM_DEFAULT_ADISTANCE = MEMTIER_DEFAULT_DAX_ADISTANCE


@attrs.define(eq=False, kw_only=True)
class CxlSysram(CxlDevice):
    """struct cxl_sysram: ``sysram_regionN``, the region's range as directly hot-plugged System RAM."""

    devtype = "cxl_sysram"
    cxl_type = CXL_DEVICE_SYSRAM
    cxlr: "CxlRegion" = attrs.field(repr=False)
    private: bool = False
    start: int = 0                      # the block-aligned range
    size: int = 0
    nid: int = -1
    res_name: str = ""                  # cxl_sysramN: the iomem claim
    group: Optional[MemoryGroup] = attrs.field(default=None, repr=False)
    np: Optional[NodePrivate] = attrs.field(default=None, repr=False)   # private: the node's record
    res: Optional[Resource] = attrs.field(default=None, repr=False)     # held while the range is added
    added: bool = False                 # the range's memory blocks exist
    online_type: Optional[str] = None   # the type the range was last added with
    leaked: bool = False
    torn_down: bool = False

    groups = (AttrGroup([WO("hotplug")]),)

    # ----- the hotplug attribute ----------------------------------------------------------
    def hotplug_store(self, buf: str) -> None:
        want = strip_newline(buf)
        if want not in ONLINE_TYPES:               # mhp_online_type_from_str()
            raise KernelError(errno.EINVAL, f"{self.name}: hotplug: {want!r} is not offline, online, "
                                            "online_kernel or online_movable")
        if self.torn_down:
            raise KernelError(errno.ENXIO, f"{self.name}: hotplug: being removed")
        if want == MMOP_OFFLINE:
            if self.added:
                self.hotremove()
            return
        if self.added:
            raise KernelError(errno.EBUSY, f"{self.name}: hotplug: {self._range()} is already added "
                                           f"({self.online_type}); write offline first")
        self.hotplug(want)

    def _range(self) -> str:
        return f"{self.start:#x}-{self.start + self.size - 1:#x}"

    # ----- add / remove ----------------------------------------------------------------------
    def hotplug(self, online_type: str) -> None:
        """Claim the range and hot-add it with ``online_type`` (private: through the node-private core)."""
        mem = self.sys.memory
        try:
            res = mem.iomem.request_region(self.start, self.size, self.res_name)
        except KernelError as e:
            raise KernelError(errno.EBUSY, f"{self.name}: could not reserve {self._range()}: {e.reason}") from e
        res.child = SYSRAM_RESOURCE_NAME
        try:
            if self.private:
                assert self.np is not None           # devm_cxl_add_sysram() gives a private sysram its record
                mem.private.add_private_memory_driver_managed(self.nid, self.start, self.size, self.np, online_type,
                                                              owner=self, group=self.group)
            else:
                mem.add_memory(self.start, self.size, self.nid, self, False, self.group, online_type=online_type)
        except KernelError as e:
            mem.iomem.release_region(res)
            self.sys.klog.log(f"cxl_sysram {self.name}: {self._range()}: hotplug failed: {e.reason}", "warn")
            raise
        self.res, self.added, self.online_type = res, True, online_type
        self.sys.klog.dev_dbg(self, f"{self._range()} added on node {self.nid} ({online_type}"
                                    f"{', private' if self.private else ''})")

    def hotremove(self) -> None:
        """Offline and remove the whole range (all or nothing), then give the claim back."""
        mem = self.sys.memory
        if self.private:
            mem.private.offline_and_remove_private_memory(self.nid, self.start, self.size)
        else:
            mem.offline_and_remove_memory_ranges([(self.start, self.size)])
        if self.res is not None:
            mem.iomem.release_region(self.res)
        self.res, self.added = None, False
        self.sys.klog.dev_dbg(self, f"{self._range()} removed from node {self.nid}")

    # ----- teardown ----------------------------------------------------------------------------
    def teardown(self) -> None:
        """Remove what is added (memory that cannot be offlined leaks, logged), then the group and the
        node's memory type.  Runs once."""
        if self.torn_down:
            return
        self.torn_down = True
        sys, mem = self.sys, self.sys.memory
        if self.added:
            try:
                self.hotremove()
            except KernelError as e:
                sys.klog.log(f"cxl_sysram {self.name}: {self._range()}: cannot be hotremoved: {e.reason}", "warn")
                sys.klog.log(f"cxl_sysram {self.name}: {self._range()} stuck online until reboot", "err")
                mem.leak(self.start, self.size, self.name, owner=self)
                self.added, self.leaked = False, True
                return
        if self.group is not None:
            mem.unregister_group(self.group)
            self.group = None
            if mem.tiers is not None:
                mem.tiers.clear_node_memory_type(self.nid)

    def release(self) -> None:
        """The region went away with its children: what devres did not tear down goes now."""
        self.teardown()


def unregister_sysram(sr: CxlSysram) -> None:
    """The devres action: tear the memory down, then delete the device."""
    sr.teardown()
    if sr.registered:
        device_del(sr)


def devm_cxl_add_sysram(cxlr: "CxlRegion", private: bool, online_type: Optional[str],
                        host: Optional[Device] = None) -> CxlSysram:
    """Add ``sysram_region<id>`` below ``cxlr`` and hot-add the region with ``online_type`` (None: not
    yet); unregistered (and its memory removed) when ``host``'s driver is unbound (default: the region's)."""
    sys = cxlr.sys
    mem = sys.memory
    if online_type is not None and online_type not in ONLINE_TYPES:
        raise KernelError(errno.EINVAL, f"{cxlr.name}: sysram: online type {online_type!r} out of range")
    if cxlr.hpa_start is None or not cxlr.hpa_size:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: sysram: region has no HPA range")
    r = memory_block_aligned_range(cxlr.hpa_start, cxlr.hpa_size, mem.policy.block_size)
    if r is None:
        raise KernelError(errno.ENOSPC, f"{cxlr.name}: sysram: no whole memory block in "
                                        f"{cxlr.hpa_start:#x}-{cxlr.hpa_start + cxlr.hpa_size - 1:#x}")
    start, size = r
    nid = sys.target_node_of(cxlr.hpa_start)     # phys_to_target_node(), memory_add_physaddr_to_nid()
    if nid < 0 or nid not in sys.nodes:
        raise KernelError(errno.EINVAL, f"{cxlr.name}: sysram: rejecting region with invalid node: {nid}")
    name = f"sysram_region{cxlr.id}"
    if name in cxlr.children:
        raise KernelError(errno.EBUSY, f"{cxlr.name}: sysram: {name} already exists")
    sr = CxlSysram(name=name, parent=cxlr, sys=sys, bus=sys.cxl_bus, cxlr=cxlr, private=private, start=start,
                   size=size, nid=nid, res_name=f"cxl_sysram{cxlr.id}")
    if private:
        sr.np = NodePrivate(owner=name)
    if mem.tiers is not None:
        mem.tiers.init_node_memory_type(nid, SYSRAM_DEFAULT_ADISTANCE)
    sr.group = mem.register_static_group(nid, size // PAGE_SIZE)
    device_add(sr)
    if online_type is not None:
        try:
            sr.hotplug(online_type)
        except KernelError:
            unregister_sysram(sr)
            raise
    (host if host is not None else cxlr).devm_add_action(_unregister_action(sr), f"sysram:{name}")
    return sr


def _unregister_action(sr: CxlSysram) -> Callable[[], None]:
    return lambda: unregister_sysram(sr)
