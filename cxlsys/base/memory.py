"""drivers/base/memory.c + mm/memory_hotplug.c: memory blocks, zones and online policies.

Memory is added by kmem in ``block_size`` chunks; each chunk is a
``/sys/devices/system/memory/memoryN`` device (N = start / block_size).  The
policies are explicit, switchable fields of :class:`MemoryPolicy` so a proposal
can change them in one place.
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.device import RO, RW, AttrGroup, Device, device_add, device_del
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, strip_newline

ONLINE_TYPES = {"online": "online", "online_kernel": "Normal", "online_movable": "Movable", "offline": None}
AUTO_ONLINE_VALUES = ("offline", "online", "online_kernel", "online_movable")


@attrs.define
class MemoryPolicy:
    block_size: int = 128 << 20
    auto_online_blocks: str = "offline"
    online_policy: str = "contig-zones"         # or auto-movable
    auto_movable_ratio: int = 301
    auto_movable_numa_aware: bool = True
    memmap_on_memory: bool = False              # the memory_hotplug.memmap_on_memory module parameter
    movable_node: bool = False


@attrs.define(eq=False, kw_only=True)
class MemoryBlock(Device):
    phys_index: int = 0
    nid: int = 0
    online: bool = False
    zone: Optional[str] = None
    owner: object = attrs.field(default=None, repr=False)   # the dev_dax that added it
    unmovable: bool = False                                  # holds unmovable pages: offline fails EBUSY
    memmap_on_memory: bool = False

    groups = (AttrGroup([RO("phys_index"), RW("state"), RW("online"), RO("phys_device"), RO("removable"),
                         RO("valid_zones")]),)

    @property
    def start(self) -> int:
        return self.phys_index * self.sys.memory.policy.block_size

    def links(self):
        return {f"node{self.nid}": self.sys.nodes[self.nid]} if self.nid in self.sys.nodes else {}

    def phys_index_show(self):
        return f"{self.phys_index:08x}\n"

    def phys_device_show(self):
        return "0\n"

    def removable_show(self):
        return "1\n"

    def state_show(self):
        return "online\n" if self.online else "offline\n"

    def state_store(self, buf: str):
        t = strip_newline(buf)
        if t not in ONLINE_TYPES:
            raise KernelError(errno.EINVAL, f"{self.name}: state: {t!r} is not online/online_kernel/online_movable/offline")
        mem = self.sys.memory
        if t == "offline":
            if not self.online:
                raise KernelError(errno.EINVAL, f"{self.name}: already offline")
            mem.offline_block(self)
        else:
            if self.online:
                raise KernelError(errno.EINVAL, f"{self.name}: already online")
            mem.online_block(self, t)

    def online_show(self):
        return f"{int(self.online)}\n"

    def online_store(self, buf: str):
        val = kstrtobool(buf)
        mem = self.sys.memory
        if val and not self.online:
            mem.online_block(self, "online")
        elif not val and self.online:
            mem.offline_block(self)

    def valid_zones_show(self):
        if self.online:
            return f"{self.zone}\n"
        mem = self.sys.memory
        default = mem.zone_for_online(self, "online")
        out = [default]
        for t in ("online_kernel", "online_movable"):
            z = mem.zone_for_online(self, t)
            if z not in out:
                out.append(z)
        return " ".join(out) + "\n"


@attrs.define(eq=False, kw_only=True)
class MemoryRoot(Device):
    groups = (AttrGroup([RO("block_size_bytes"), RW("auto_online_blocks")]),)

    def block_size_bytes_show(self):
        return f"{self.sys.memory.policy.block_size:x}\n"

    def auto_online_blocks_show(self):
        return f"{self.sys.memory.policy.auto_online_blocks}\n"

    def auto_online_blocks_store(self, buf: str):
        t = strip_newline(buf)
        if t not in AUTO_ONLINE_VALUES:
            raise KernelError(errno.EINVAL, f"auto_online_blocks: {t!r} not one of {', '.join(AUTO_ONLINE_VALUES)}")
        self.sys.memory.policy.auto_online_blocks = t


@attrs.define(eq=False)
class MemoryHotplug:
    sys: object = attrs.field(repr=False)
    policy: MemoryPolicy = attrs.field(factory=MemoryPolicy)
    root: Optional[MemoryRoot] = None
    blocks: dict = attrs.field(factory=dict)        # phys_index -> MemoryBlock
    leaked: list = attrs.field(factory=list)        # ranges that could not be removed (until "reboot")

    def setup(self, system_dev: Device) -> None:
        self.root = MemoryRoot(name="memory", parent=system_dev, sys=self.sys)
        device_add(self.root)

    # ----- queries used by nodes ------------------------------------------------
    def blocks_of_node(self, nid: int):
        return [b for b in self.blocks.values() if b.nid == nid]

    def online_bytes(self, nid: int) -> int:
        return sum(self.policy.block_size for b in self.blocks.values() if b.nid == nid and b.online)

    def node_has_memory(self, nid: int) -> bool:
        n = self.sys.nodes.get(nid)
        return bool(n and n.boot_memory) or any(b.online for b in self.blocks_of_node(nid))

    def node_has_normal(self, nid: int) -> bool:
        n = self.sys.nodes.get(nid)
        return bool(n and n.boot_memory) or any(b.online and b.zone == "Normal" for b in self.blocks_of_node(nid))

    # ----- zones (mm/memory_hotplug.c zone_for_pfn_range) ---------------------------
    def zone_for_online(self, blk: MemoryBlock, online_type: str) -> str:
        if online_type == "online_kernel":
            return "Normal"
        if online_type == "online_movable":
            return "Movable"
        p = self.policy
        if p.online_policy == "auto-movable":
            return self._auto_movable_zone(blk)
        # contig-zones: stay next to what is there already
        node_blocks = [b for b in self.blocks_of_node(blk.nid) if b.online]
        in_kernel = any(b.zone == "Normal" for b in node_blocks)
        in_movable = any(b.zone == "Movable" for b in node_blocks)
        if in_kernel ^ in_movable:
            return "Normal" if in_kernel else "Movable"
        return "Movable" if p.movable_node else "Normal"

    def _auto_movable_zone(self, blk: MemoryBlock) -> str:
        p = self.policy
        bs = p.block_size
        scope = [b for b in self.blocks.values() if b.online and (not p.auto_movable_numa_aware or b.nid == blk.nid)]
        kernel = sum(bs for b in scope if b.zone == "Normal")
        if p.auto_movable_numa_aware:
            n = self.sys.nodes.get(blk.nid)
            kernel += n.boot_memory if n else 0
        else:
            kernel += sum(n.boot_memory for n in self.sys.nodes.values())
        movable = sum(bs for b in scope if b.zone == "Movable")
        if (movable + bs) * 100 <= kernel * p.auto_movable_ratio:
            return "Movable"
        return "Normal"

    # ----- online/offline ----------------------------------------------------------------
    def online_block(self, blk: MemoryBlock, online_type: str) -> None:
        blk.zone = self.zone_for_online(blk, online_type)
        blk.online = True
        self.sys.changed()

    def offline_block(self, blk: MemoryBlock) -> None:
        if blk.unmovable:
            raise KernelError(errno.EBUSY, f"{blk.name}: offline failed: block holds unmovable pages")
        blk.online = False
        blk.zone = None
        self.sys.changed()

    # ----- add/remove (add_memory_driver_managed / remove_memory) ------------------------
    def add_memory(self, start: int, size: int, nid: int, owner, memmap_on_memory: bool) -> list:
        bs = self.policy.block_size
        if start % bs or size % bs:
            raise KernelError(errno.EINVAL, f"add_memory: {start:#x}+{size:#x} not block aligned")
        idxs = range(start // bs, (start + size) // bs)
        if any(i in self.blocks for i in idxs):
            raise KernelError(errno.EEXIST, f"add_memory: {start:#x}+{size:#x} overlaps present memory")
        out = []
        for i in idxs:
            b = MemoryBlock(name=f"memory{i}", parent=self.root, sys=self.sys, phys_index=i, nid=nid, owner=owner,
                            memmap_on_memory=memmap_on_memory)
            self.blocks[i] = b
            device_add(b)
            out.append(b)
        auto = self.policy.auto_online_blocks
        if auto != "offline":
            for b in out:
                self.online_block(b, auto)
        return out

    def remove_memory(self, start: int, size: int) -> None:
        bs = self.policy.block_size
        idxs = list(range(start // bs, (start + size) // bs))
        online = [self.blocks[i] for i in idxs if i in self.blocks and self.blocks[i].online]
        if online:
            raise KernelError(errno.EBUSY, f"remove_memory: {online[0].name} is online")
        for i in idxs:
            b = self.blocks.pop(i, None)
            if b is not None:
                device_del(b)
