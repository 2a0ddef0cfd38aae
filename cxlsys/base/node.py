"""drivers/base/node.c + drivers/base/cpu.c: NUMA nodes and CPUs under /sys/devices/system.

Every declared node is *possible*; a node is *online* (``nodeN/`` exists, it is in the
``online`` mask) when it has CPUs or boot memory, or while hot-added memory blocks
exist on it (a CXL window's node: kmem brings it online, removing its last block takes
it offline again).  ``has_memory``/``has_normal_memory`` follow the online blocks' zones.
"""

from __future__ import annotations

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.device import RO, WO, AttrGroup, Device, device_add
from cxlsys.mm.node_private import NP_OPS_MEMPOLICY, V4_HAS_MEMORY_INCLUDES_MEMPOLICY


def nodelist(ids) -> str:
    """Kernel %*pbl format: '0-1,3'."""
    ids = sorted(set(ids))
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)


def cpumask_hex(ids) -> str:
    v = 0
    for i in ids:
        v |= 1 << i
    return f"{v:x}"


@attrs.define(eq=False, kw_only=True)
class SubsysRoot(Device):
    """A subsystem root such as /sys/devices/system/node with state-mask files."""

    has_uevent = True


@attrs.define(eq=False, kw_only=True)
class NodeRoot(SubsysRoot):
    groups = (AttrGroup([RO("possible"), RO("online"), RO("has_normal_memory"), RO("has_memory"),
                         RO("has_cpu"), RO("has_generic_initiator"), RO("has_private_memory")],
                        is_visible="node_state_visible"),)

    def node_state_visible(self, attr) -> int:
        if attr.name == "has_private_memory":          # the private-nodes proposals (v4 and v5)
            return attr.mode if self.sys.profile.private_nodes is not None else 0
        return attr.mode

    def has_private_memory_show(self):
        return self._mask(lambda n: self.sys.memory.private.has_private_memory(n.id))

    def _mask(self, pred) -> str:
        return nodelist(n.id for n in self.sys.nodes.values() if pred(n)) + "\n"

    def possible_show(self):
        return self._mask(lambda n: True)

    def online_show(self):
        return self._mask(lambda n: n.online)

    def has_normal_memory_show(self):
        return self._mask(lambda n: self.sys.memory.node_has_normal(n.id))

    def has_memory_show(self):
        mem = self.sys.memory
        pn = self.sys.profile.private_nodes
        if pn is not None and pn.version == 4 and V4_HAS_MEMORY_INCLUDES_MEMPOLICY:
            # v4: numactl keeps working: private nodes that opted into mempolicy count as memory
            return self._mask(lambda n: mem.node_has_memory(n.id) or (
                mem.private.has_private_memory(n.id) and mem.private.allows(n.id, op=NP_OPS_MEMPOLICY)))
        return self._mask(lambda n: mem.node_has_memory(n.id))

    def has_cpu_show(self):
        return self._mask(lambda n: bool(n.cpus))

    def has_generic_initiator_show(self):
        return "\n"


# node_read_meminfo(): the fields after MemTotal/MemFree/MemUsed, in order (x86-64, THP, no HIGHMEM)
_MEMINFO_ZERO = ("SwapCached", "Active", "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)",
                 "Inactive(file)", "Unevictable", "Mlocked", "Dirty", "Writeback", "FilePages", "Mapped",
                 "AnonPages", "Shmem", "KernelStack", "PageTables", "SecPageTables", "NFS_Unstable", "Bounce",
                 "WritebackTmp", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "AnonHugePages",
                 "ShmemHugePages", "ShmemPmdMapped", "FileHugePages", "FilePmdMapped")


@attrs.define(eq=False, kw_only=True)
class Node(Device):
    id: int = 0
    cpus: tuple = ()
    boot_memory: int = 0          # bytes of memory present at boot (not hotplugged)
    distances: dict = attrs.field(factory=dict)
    online: bool = True

    groups = (AttrGroup([RO("cpumap"), RO("cpulist"), RO("meminfo"), RO("distance"), WO("compact")]),)

    def links(self):
        out = {f"cpu{c}": f"devices/system/cpu/cpu{c}" for c in self.cpus}
        nm = self.sys.memory.nodes.get(self.id)
        if nm is not None:
            for blk in nm.blocks.values():
                out[blk.name] = blk
        return out

    def linked_from(self):
        """Its memory blocks link back to it (memoryN/nodeN)."""
        nm = self.sys.memory.nodes.get(self.id)
        return tuple(nm.blocks.values()) if nm is not None else ()

    def cpumap_show(self):
        return cpumask_hex(self.cpus) + "\n"

    def cpulist_show(self):
        return nodelist(self.cpus) + "\n"

    def distance_to(self, other: Node) -> int:
        if other.id == self.id:
            return self.distances.get(self.id, 10)
        if other.id in self.distances:
            return self.distances[other.id]
        return other.distances.get(self.id, 20)

    def distance_show(self):
        # for_each_online_node: "%s%d" with a leading space for every node id but 0
        out = ""
        for i in sorted(self.sys.nodes):
            n = self.sys.nodes[i]
            if n.online:
                out += f"{' ' if i else ''}{self.distance_to(n)}"
        return out + "\n"

    def meminfo_show(self):
        total, free, used = (v >> 10 for v in node_memory(self.sys, self.id))
        rows = [("MemTotal", total), ("MemFree", free), ("MemUsed", used)]
        rows += [(k, 0) for k in _MEMINFO_ZERO]
        n = self.id
        out = "".join(f"Node {n} {k + ':':<16}{v:>8} kB\n" for k, v in rows)
        out += f"Node {n} HugePages_Total: {0:>5}\nNode {n} HugePages_Free:  {0:>5}\nNode {n} HugePages_Surp:  {0:>5}\n"
        return out

    def compact_store(self, buf: str):
        return None


def node_memory(sys, nid: int) -> tuple:
    """(total, free, used) bytes of node ``nid``: its boot memory plus the hot-added memory the
    buddy allocator manages; a fifth of the boot memory counts as used (the kernel's own)."""
    node = sys.nodes[nid]
    nm = sys.memory.nodes.get(nid)
    hot = sum(z.managed for z in nm.zones.values()) if nm else 0
    used = node.boot_memory // 5
    total = node.boot_memory + hot
    return total, total - used, used


@attrs.define(eq=False, kw_only=True)
class Cpu(Device):
    id: int = 0
    groups = (AttrGroup([RO("online")]),)

    def online_show(self):
        return "1\n"


def build_nodes(sys, root_system: Device, nodes_cfg) -> None:
    node_bus = sys.buses.get("node")
    if node_bus is None:
        node_bus = sys.buses["node"] = Bus(name="node", sys=sys)
    noderoot = NodeRoot(name="node", parent=root_system, sys=sys)
    device_add(noderoot)
    cpuroot = SubsysRoot(name="cpu", parent=root_system, sys=sys)
    device_add(cpuroot)
    sys.memory.boot_layout(nodes_cfg)
    for cfg in nodes_cfg:
        n = Node(name=f"node{cfg.id}", parent=noderoot, sys=sys, bus=node_bus, id=cfg.id, cpus=tuple(cfg.cpus),
                 boot_memory=cfg.memory, distances=dict(cfg.distances), online=cfg.online)
        sys.nodes[cfg.id] = n
        sys.memory.node(cfg.id)
        if cfg.online:
            device_add(n)
        for c in cfg.cpus:
            device_add(Cpu(name=f"cpu{c}", parent=cpuroot, sys=sys, id=c))
    sys.memory.memory_tier_init()      # mm/memory-tiers.c's initcall, once the node devices exist
