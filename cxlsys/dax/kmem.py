"""drivers/dax/kmem.c: hand a dev_dax's ranges to the memory hotplug core as System RAM."""

from __future__ import annotations

import errno

import attrs

from cxlsys.dax.bus import DaxDriver, DevDax
from cxlsys.errors import KernelError


@attrs.define(eq=False, kw_only=True)
class KmemDriver(DaxDriver):
    name: str = "kmem"
    module: str = "kmem"

    def probe(self, dd: DevDax) -> None:
        super().probe(dd)
        mem = dd.sys.memory
        bs = mem.policy.block_size
        ranges = []
        for start, size, _ in dd.ranges:
            s = (start + bs - 1) // bs * bs
            e = (start + size) // bs * bs
            if e > s:
                ranges.append((s, e - s))
        if not ranges:
            raise KernelError(errno.EINVAL, f"{dd.name}: rejecting DAX region without any memory after alignment")
        nid = dd.target_node
        if nid not in dd.sys.nodes:
            raise KernelError(errno.EINVAL, f"{dd.name}: target node {nid} does not exist")
        added = []
        try:
            for s, n in ranges:
                mem.add_memory(s, n, nid, dd, dd.memmap_on_memory and mem.policy.memmap_on_memory)
                added.append((s, n))
        except KernelError:
            for s, n in added:
                mem.remove_memory(s, n)
            raise
        dd.kmem_state = added
        node = dd.sys.nodes[nid]
        if not node.registered:
            from cxlsys.base.device import device_add
            node.online = True
            device_add(node)

    def remove(self, dd: DevDax) -> None:
        mem = dd.sys.memory
        for s, n in dd.kmem_state or []:
            try:
                mem.remove_memory(s, n)
            except KernelError:
                mem.leaked.append((s, n, dd.name))
                dd.sys.klog.log(f"kmem {dd.name}: mapping {s:#x}-{s + n - 1:#x} cannot be hotremoved until the next reboot", "err")
        dd.kmem_state = None
