"""mm/memory-tiers.c: memory types, memory tiers and /sys/devices/virtual/memory_tiering.

Every node with memory has a memory type, identified by its abstract distance
(adistance): boot DRAM nodes get the DRAM type (576), kmem gives a node it hot-adds
memory to the default dax type (5 x DRAM = 2880) unless the node already has a type.
A type sits in tier ``adistance >> 7`` (DRAM -> ``memory_tier4``, kmem -> ``memory_tier22``).
A node is listed in its tier's ``nodelist`` only while it has online memory (N_MEMORY);
a tier device exists only while some node is listed in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.device import RO, AttrGroup, Device, device_add, device_del
from cxlsys.base.node import nodelist

if TYPE_CHECKING:  # pragma: no cover - the System owns the memory tiers (system.py imports this file)
    from cxlsys.system import System

MEMTIER_CHUNK_BITS = 7
MEMTIER_ADISTANCE_DRAM = (4 << MEMTIER_CHUNK_BITS) + (1 << (MEMTIER_CHUNK_BITS - 1))   # 576
MEMTIER_DEFAULT_DAX_ADISTANCE = MEMTIER_ADISTANCE_DRAM * 5                             # 2880


def tier_of(adist: int) -> int:
    return adist >> MEMTIER_CHUNK_BITS


@attrs.define(eq=False, kw_only=True)
class _Plain(Device):
    has_uevent = False


@attrs.define(eq=False, kw_only=True)
class MemoryTieringRoot(Device):
    """/sys/devices/virtual/memory_tiering (subsys_virtual_register's root device)."""


@attrs.define(eq=False, kw_only=True)
class MemoryTier(Device):
    tier: int = 0
    groups = (AttrGroup([RO("nodelist")]),)

    def nodelist_show(self):
        return nodelist(self.sys.memory.tiers.tier_nodes(self.tier)) + "\n"


@attrs.define(eq=False)
class MemoryTiers:
    sys: System = attrs.field(repr=False)
    bus: Optional[Bus] = attrs.field(default=None, repr=False)      # set by setup()
    root: Optional[Device] = attrs.field(default=None, repr=False)
    node_type: dict = attrs.field(factory=dict)      # nid -> adistance of its memory type
    map_count: dict = attrs.field(factory=dict)      # nid -> kmem devices mapped (init_node_memory_type)
    type_nodes: dict = attrs.field(factory=dict)     # adistance -> nodes listed (memtype->nodes)
    tiers: dict = attrs.field(factory=dict)          # tier id -> MemoryTier device

    def setup(self) -> None:
        sys = self.sys
        self.bus = Bus(name="memory_tiering", sys=sys)
        sys.buses["memory_tiering"] = self.bus
        virtual = sys.top_devices.get("virtual")
        if virtual is None:
            virtual = device_add(_Plain(name="virtual", sys=sys))
        self.root = device_add(MemoryTieringRoot(name="memory_tiering", parent=virtual, sys=sys))
        for nid in sorted(sys.nodes):
            if sys.memory.node_has_memory(nid):
                self.node_type.setdefault(nid, MEMTIER_ADISTANCE_DRAM)
                self.map_count[nid] = self.map_count.get(nid, 0) + 1
                self.node_memory_changed(nid, True)

    # kmem: init_node_memory_type / clear_node_memory_type
    def init_node_memory_type(self, nid: int, adist: int = MEMTIER_DEFAULT_DAX_ADISTANCE) -> None:
        if nid not in self.node_type:
            self.node_type[nid] = adist
        if self.node_type[nid] == adist:
            self.map_count[nid] = self.map_count.get(nid, 0) + 1

    def clear_node_memory_type(self, nid: int) -> None:
        if nid in self.map_count:
            self.map_count[nid] -= 1
            if self.map_count[nid] <= 0:
                del self.map_count[nid]
                self.node_type.pop(nid, None)

    # the memory hotplug notifier: a node gained (MEM_ONLINE) or lost (MEM_OFFLINE) N_MEMORY
    def node_memory_changed(self, nid: int, has_memory: bool) -> None:
        if has_memory:
            adist = self.node_type.setdefault(nid, MEMTIER_ADISTANCE_DRAM)
            self.type_nodes.setdefault(adist, set()).add(nid)
            t = tier_of(adist)
            if t not in self.tiers:
                dev = MemoryTier(name=f"memory_tier{t}", parent=self.root, sys=self.sys, bus=self.bus, tier=t)
                self.tiers[t] = dev
                device_add(dev)
        else:
            for adist, nodes in list(self.type_nodes.items()):
                if nid in nodes:
                    nodes.discard(nid)
                    if not nodes:
                        del self.type_nodes[adist]
                    t = tier_of(adist)
                    if t in self.tiers and not self.tier_nodes(t):
                        device_del(self.tiers.pop(t))

    def tier_nodes(self, tier: int) -> set:
        out = set()
        for adist, nodes in self.type_nodes.items():
            if tier_of(adist) == tier:
                out |= nodes
        return out
