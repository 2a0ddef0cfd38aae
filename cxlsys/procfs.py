"""/proc files that tools read about memory, from the model: fs/proc/meminfo.c's ``/proc/meminfo``
and kernel/resource.c's ``/proc/iomem`` (as root sees it: real addresses).

``meminfo``: MemTotal is every online node's memory (boot memory plus the hot-added memory the
buddy allocator manages, as ``nodeN/meminfo`` counts it); MemFree/MemAvailable follow the same
model as the node files; counters the model has no notion of read 0.

``iomem``: the resource tree, nested by containment and indented two spaces a level: boot
``System RAM``, each CFMWS window as ``CXL Window N`` with its regions (``regionN``) below, and
below those the dax claims (``daxX.Y``, kmem's and device_dax's) with a ``System RAM (kmem)``
child where kmem hot-added memory.

Served by the projection at ``/sys/.cxlsys/proc/{meminfo,iomem}`` (a directory the root does not
list); ``cxlsys run`` binds them over the namespace's ``/proc/meminfo`` and ``/proc/iomem``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from cxlsys.base.node import node_memory
from cxlsys.cxl.core.port import CxlRootDecoder
from cxlsys.cxl.core.region import CxlRegion
from cxlsys.kernfs import KDir, KFile

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

# fs/proc/meminfo.c, x86-64 with THP, no CMA: the rows after MemTotal/MemFree/MemAvailable
_ZERO_ROWS = ("Buffers", "Cached", "SwapCached", "Active", "Inactive", "Active(anon)", "Inactive(anon)",
              "Active(file)", "Inactive(file)", "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Zswap",
              "Zswapped", "Dirty", "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab",
              "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "SecPageTables", "NFS_Unstable",
              "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed",
              "VmallocChunk", "Percpu", "HardwareCorrupted", "AnonHugePages", "ShmemHugePages",
              "ShmemPmdMapped", "FileHugePages", "FilePmdMapped")


def meminfo_show(sys: "System") -> str:
    total = free = 0
    for nid, node in sorted(sys.nodes.items()):
        if node.online:
            t, f, _ = node_memory(sys, nid)
            total, free = total + t, free + f
    rows = [("MemTotal", total >> 10), ("MemFree", free >> 10), ("MemAvailable", free >> 10)]
    rows += [(k, 0) for k in _ZERO_ROWS]
    out = "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in rows)
    out += "".join(f"{k + ':':<16}{0:>5}\n" for k in ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd",
                                                      "HugePages_Surp"))
    out += f"{'Hugepagesize:':<16}{2048:>8} kB\n{'Hugetlb:':<16}{0:>8} kB\n"
    return out


@attrs.define(eq=False)
class _Res:
    start: int
    end: int                     # inclusive
    name: str
    children: list = attrs.field(factory=list)


def _insert(parent: _Res, r: _Res) -> None:
    for c in parent.children:
        if c.start <= r.start and r.end <= c.end:
            _insert(c, r)
            return
    parent.children.append(r)


def iomem_resources(sys: "System") -> list:
    """The /proc/iomem tree: top-level resources with their children, each sorted by address."""
    mem = sys.memory
    flat: list[_Res] = []
    for nm in mem.nodes.values():
        spans = sorted(z.boot for z in nm.zones.values() if z.boot is not None)
        merged: list[list[int]] = []
        for s, e in spans:
            if merged and merged[-1][1] == s:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        flat += [_Res(max(s, 0x1000), e - 1, "System RAM") for s, e in merged]
    for d in sys.cxl_bus.devices:            # cxl_acpi's "CXL Window N", region.c's regionN below it
        if isinstance(d, CxlRootDecoder) and d.hpa_size:
            flat.append(_Res(d.hpa_start, d.hpa_start + d.hpa_size - 1, f"CXL Window {d.window_index}"))
    for d in sys.cxl_bus.devices:
        if isinstance(d, CxlRegion) and d.hpa_start is not None and d.hpa_size:
            flat.append(_Res(d.hpa_start, d.hpa_start + d.hpa_size - 1, d.name))
    for claim in mem.iomem.busy:
        flat.append(_Res(claim.start, claim.end, claim.name))
    bs = mem.policy.block_size
    for claim in mem.iomem.busy:
        if any(i in mem.blocks for i in range(claim.start // bs, (claim.end + 1) // bs)):
            flat.append(_Res(claim.start, claim.end, claim.child))
    root = _Res(0, (1 << 64) - 1, "iomem")
    # parents first: by start, then the larger (outer) first; equal ranges keep their order above
    for r in sorted(flat, key=lambda r: (r.start, -r.end)):
        _insert(root, r)
    return root.children


def iomem_show(sys: "System") -> str:
    lines: list[str] = []

    def emit(rs, depth):
        for r in sorted(rs, key=lambda r: r.start):
            lines.append(f"{'  ' * depth}{r.start:08x}-{r.end:08x} : {r.name}\n")
            emit(r.children, depth + 1)

    emit(iomem_resources(sys), 0)
    return "".join(lines)


def iomem_dax_blocks(iomem: str, dax: str, block_size: int) -> list[int]:
    """The memory block numbers of ``dax``'s ranges in ``/proc/iomem`` text (the resources kmem
    names after the device) — how the kernel's dax-kmem-hotplug selftest finds a device's blocks."""
    out: list[int] = []
    for line in iomem.splitlines():
        rng, _, name = line.strip().partition(" : ")
        if name == dax:
            s, e = (int(x, 16) for x in rng.split("-"))
            out += range(s // block_size, e // block_size + 1)
    return out


def procfs_dir(sys: "System") -> KDir:
    """The ``proc/`` files the projection serves."""
    return KDir(lambda: {"meminfo": KFile(0o444, lambda: meminfo_show(sys)),
                         "iomem": KFile(0o444, lambda: iomem_show(sys))})
