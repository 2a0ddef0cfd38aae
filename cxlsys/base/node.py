"""drivers/base/node.c + drivers/base/cpu.c: NUMA nodes and CPUs under /sys/devices/system."""

from __future__ import annotations

import attrs

from cxlsys.base.device import RO, WO, AttrGroup, Device, device_add


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
                         RO("has_cpu"), RO("has_generic_initiator")]),)

    def _mask(self, pred) -> str:
        return nodelist(n.id for n in self.sys.nodes.values() if pred(n)) + "\n"

    def possible_show(self):
        return self._mask(lambda n: True)

    def online_show(self):
        return self._mask(lambda n: n.online)

    def has_normal_memory_show(self):
        return self._mask(lambda n: self.sys.memory.node_has_normal(n.id))

    def has_memory_show(self):
        return self._mask(lambda n: self.sys.memory.node_has_memory(n.id))

    def has_cpu_show(self):
        return self._mask(lambda n: bool(n.cpus))

    def has_generic_initiator_show(self):
        return "\n"


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
        for blk in self.sys.memory.blocks_of_node(self.id):
            out[blk.name] = blk
        return out

    def cpumap_show(self):
        return cpumask_hex(self.cpus) + "\n"

    def cpulist_show(self):
        return nodelist(self.cpus) + "\n"

    def distance_show(self):
        ids = sorted(self.sys.nodes)
        return " ".join(str(self.distances.get(i, 10 if i == self.id else 20)) for i in ids) + "\n"

    def meminfo_show(self):
        total = (self.boot_memory + self.sys.memory.online_bytes(self.id)) >> 10
        used = self.boot_memory // 5 >> 10
        free = total - used
        n = self.id
        rows = [("MemTotal", total), ("MemFree", free), ("MemUsed", used)]
        return "".join(f"Node {n} {k + ':':<16}{v:>8} kB\n" for k, v in rows)

    def compact_store(self, buf: str):
        return None


@attrs.define(eq=False, kw_only=True)
class Cpu(Device):
    id: int = 0
    groups = (AttrGroup([RO("online")]),)

    def online_show(self):
        return "1\n"


def build_nodes(sys, root_system: Device, nodes_cfg) -> None:
    noderoot = NodeRoot(name="node", parent=root_system, sys=sys)
    device_add(noderoot)
    cpuroot = SubsysRoot(name="cpu", parent=root_system, sys=sys)
    device_add(cpuroot)
    for cfg in nodes_cfg:
        n = Node(name=f"node{cfg.id}", parent=noderoot, sys=sys, id=cfg.id, cpus=tuple(cfg.cpus),
                 boot_memory=cfg.memory, distances=dict(cfg.distances), online=cfg.online)
        sys.nodes[cfg.id] = n
        if cfg.online:
            device_add(n)
        for c in cfg.cpus:
            device_add(Cpu(name=f"cpu{c}", parent=cpuroot, sys=sys, id=c))
