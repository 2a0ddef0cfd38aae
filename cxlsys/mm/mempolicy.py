"""An allocation oracle: which nodes may serve an allocation, per profile — the rules of
mm/page_alloc.c's zonelist walk (gfp_zone(), __GFP_THISNODE, cpuset_zone_allowed(), interrupt
context), mm/mempolicy.c's policies (default/local, bind, preferred, interleave and their
validation in set_mempolicy(2)), and each private-node proposal's gate.

``Mm.alloc_candidates(gfp, nid=None, policy=None, interrupt=False, cpuset=None)`` returns the nodes
in the order the allocator would try them; an empty list means the allocation cannot be served.
``Mm.set_mempolicy(policy)`` validates and installs the task policy (``KernelError(EINVAL)``
where the kernel refuses).  Policies are numactl-like strings: ``"default"``, ``"local"``,
``"bind:1"``, ``"bind:0,2"``, ``"interleave:0-1"``, ``"preferred:1"``.

What decides a node (x86-64, no HIGHMEM):

* it has memory the gfp's zones can use: ZONE_MOVABLE only for ``__GFP_MOVABLE|__GFP_HIGHMEM``
  (GFP_HIGHUSER_MOVABLE), DMA/DMA32 for ``__GFP_DMA``/``__GFP_DMA32``;
* interrupt context ignores the task policy and cpuset and uses N_MEMORY nodes only;
* ``__GFP_HARDWALL`` (user allocations) keeps to ``cpuset`` mems;
* ``__GFP_THISNODE``: the preferred node only, no fallback;
* private nodes: none exist before the proposals.  **v4**: reachable only with ``__GFP_PRIVATE``
  (``GFP_PRIVATE`` = ``__GFP_PRIVATE|__GFP_THISNODE``) or under a policy that carries
  ``MPOL_F_PRIVATE`` (every private node of its mask has NP_OPS_MEMPOLICY); cpuset mems partition
  them.  **v5**: no GFP flag reaches them — not even ``__GFP_THISNODE``; only ``ZONELIST_PRIVATE``,
  used by a policy with ``MPOL_F_PRIVATE`` (a bind whose private nodes have CAP_MEMPOLICY);
  cpuset neither grants nor denies them.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.errors import KernelError
from cxlsys.mm.node_private import (
    CAP_HOTUNPLUG,
    CAP_LTPIN,
    CAP_MEMPOLICY,
    CAP_RECLAIM,
    CAP_TIERING,
    CAP_USER_MIGRATE,
    NP_OPS_DEMOTION,
    NP_OPS_LONGTERM_PIN,
    NP_OPS_MEMPOLICY,
    NP_OPS_MIGRATION,
    NP_OPS_RECLAIM,
)

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

# include/linux/gfp_types.h: the flags the oracle understands (their meaning here, not their bits)
GFP_BITS = ("__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_MOVABLE", "__GFP_RECLAIMABLE", "__GFP_HIGH",
            "__GFP_IO", "__GFP_FS", "__GFP_ZERO", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_WRITE",
            "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_MEMALLOC",
            "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE", "__GFP_ACCOUNT",
            "__GFP_NOLOCKDEP")
_RECLAIM = ("__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM")
GFP_COMPOSITES = {
    "GFP_ATOMIC": ("__GFP_HIGH", "__GFP_KSWAPD_RECLAIM"),
    "GFP_KERNEL": (*_RECLAIM, "__GFP_IO", "__GFP_FS"),
    "GFP_KERNEL_ACCOUNT": (*_RECLAIM, "__GFP_IO", "__GFP_FS", "__GFP_ACCOUNT"),
    "GFP_NOWAIT": ("__GFP_KSWAPD_RECLAIM", "__GFP_NOWARN"),
    "GFP_NOIO": _RECLAIM,
    "GFP_NOFS": (*_RECLAIM, "__GFP_IO"),
    "GFP_USER": (*_RECLAIM, "__GFP_IO", "__GFP_FS", "__GFP_HARDWALL"),
    "GFP_DMA": ("__GFP_DMA",),
    "GFP_DMA32": ("__GFP_DMA32",),
    "GFP_HIGHUSER": (*_RECLAIM, "__GFP_IO", "__GFP_FS", "__GFP_HARDWALL", "__GFP_HIGHMEM"),
    "GFP_HIGHUSER_MOVABLE": (*_RECLAIM, "__GFP_IO", "__GFP_FS", "__GFP_HARDWALL", "__GFP_HIGHMEM",
                             "__GFP_MOVABLE"),
}
V4_GFP = {"__GFP_PRIVATE": ("__GFP_PRIVATE",), "GFP_PRIVATE": ("__GFP_PRIVATE", "__GFP_THISNODE")}

POLICY_MODES = ("default", "local", "bind", "preferred", "interleave")

# the mm services a private node may opt into: service -> (v5 cap, v4 NP_OPS flag) that gates it
SERVICES = {
    "reclaim": (CAP_RECLAIM, NP_OPS_RECLAIM),              # kswapd/direct reclaim, MADV_COLD/PAGEOUT/FREE
    "mempolicy": (CAP_MEMPOLICY, NP_OPS_MEMPOLICY),        # mbind, set_mempolicy, home node
    "user_migrate": (CAP_USER_MIGRATE, NP_OPS_MIGRATION),  # move_pages, migrate_pages
    "hotunplug": (CAP_HOTUNPLUG, NP_OPS_MIGRATION),        # offlining migrates the folios away
    "tiering": (CAP_TIERING, NP_OPS_DEMOTION),             # a demotion target, NUMA balancing, DAMON
    "ltpin": (CAP_LTPIN, NP_OPS_LONGTERM_PIN),             # FOLL_LONGTERM pins (else the pin fails)
}


def parse_nodelist(text: str) -> list:
    """``"0-2,4"`` -> [0, 1, 2, 4] (nodelist_parse / numactl)."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty element in nodelist {text!r}")
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ValueError(f"bad range {part!r} in nodelist {text!r}")
        out.update(range(a, b + 1))
    return sorted(out)


@attrs.frozen
class Policy:
    mode: str                       # default | local | bind | preferred | interleave
    nodes: tuple = ()
    private: bool = False           # MPOL_F_PRIVATE: faults use the private path (v4 flag / v5 zonelist)

    @classmethod
    def parse(cls, text: Optional[str]) -> "Policy":
        if text is None or text.strip() in ("", "default"):
            return cls("default")
        mode, _, rest = text.strip().partition(":")
        if mode not in POLICY_MODES:
            raise ValueError(f"policy {text!r}: mode must be one of {', '.join(POLICY_MODES)}")
        if mode == "local":
            if rest:
                raise ValueError(f"policy {text!r}: local takes no nodes")
            return cls("local")
        if not rest:
            raise ValueError(f"policy {text!r}: {mode} needs nodes ({mode}:0-1)")
        return cls(mode, tuple(parse_nodelist(rest)))


@attrs.define(eq=False)
class Mm:
    sys: "System" = attrs.field(repr=False)
    task_policy: Policy = attrs.field(factory=lambda: Policy("default"))

    # ----- the machine's node facts ---------------------------------------------------
    @property
    def _private_version(self) -> Optional[int]:
        pn = self.sys.profile.private_nodes
        return pn.version if pn is not None else None

    def _is_private(self, nid: int) -> bool:
        return self._private_version is not None and self.sys.memory.private.is_private(nid)

    def _usable(self, nid: int, flags: set) -> bool:
        """The node has online memory in a zone this gfp may use (gfp_zone())."""
        nm = self.sys.memory.nodes.get(nid)
        if nm is None:
            return False
        zones: tuple[str, ...]
        if "__GFP_DMA" in flags:
            zones = ("DMA",)
        elif "__GFP_DMA32" in flags:
            zones = ("DMA", "DMA32")
        elif "__GFP_MOVABLE" in flags and "__GFP_HIGHMEM" in flags:
            zones = ("DMA", "DMA32", "Normal", "Movable")
        else:
            zones = ("DMA", "DMA32", "Normal")
        return any(nm.zones[z].populated for z in zones)

    def _local_node(self) -> int:
        """numa_node_id(): the node of the CPU the task runs on (the first node with CPUs)."""
        with_cpus = [n.id for n in self.sys.nodes.values() if n.cpus]
        return min(with_cpus) if with_cpus else min(self.sys.nodes)

    def _zonelist(self, start: int) -> list:
        """Node order of ``start``'s fallback zonelist: by distance, then node id."""
        nodes = self.sys.nodes
        src = nodes[start]
        return sorted(nodes, key=lambda n: (src.distance_to(nodes[n]) if n != start else -1, n))

    # ----- parsing -------------------------------------------------------------------------
    def gfp_flags(self, gfp: str) -> set:
        """``"GFP_KERNEL|__GFP_THISNODE"`` -> the set of __GFP_* bits; ValueError for a flag this
        profile's kernel does not have."""
        known = dict(GFP_COMPOSITES)
        if self._private_version == 4:
            known.update(V4_GFP)
        out: set[str] = set()
        for name in (x.strip() for x in gfp.split("|")):
            if name in known:
                out.update(known[name])
            elif name in GFP_BITS or (name == "__GFP_PRIVATE" and self._private_version == 4):
                out.add(name)
            else:
                raise ValueError(f"gfp {gfp!r}: {name!r} is not a GFP flag of kernel {self.sys.profile.name}")
        return out

    # ----- set_mempolicy(2) ----------------------------------------------------------------
    def _check_policy(self, pol: Policy, cpuset: Optional[list] = None) -> Policy:
        """mpol_new()/mpol_set_nodemask(): the nodes must leave something with memory (and allowed by
        the cpuset); private nodes need the version's mempolicy opt-in, and set MPOL_F_PRIVATE."""
        if pol.mode in ("default", "local"):
            return pol
        mem = self.sys.memory
        v = self._private_version
        kept, private = [], False
        for n in pol.nodes:
            if n not in self.sys.nodes:
                raise KernelError(errno.EINVAL, f"set_mempolicy: node {n} is not possible")
            if self._is_private(n):
                opted = mem.private.allows(n, cap=CAP_MEMPOLICY, op=NP_OPS_MEMPOLICY)
                if not opted:
                    raise KernelError(errno.EINVAL, f"set_mempolicy: node {n} is private without mempolicy opt-in")
                if v == 4 and cpuset is not None and n not in cpuset:
                    continue                 # v4: cpusets partition private nodes too
                if mem.private.has_private_memory(n):
                    kept.append(n)
                    private = True
                continue
            if cpuset is not None and n not in cpuset:
                continue
            if mem.node_has_memory(n):       # nodes without memory are dropped (N_MEMORY)
                kept.append(n)
        if not kept:
            raise KernelError(errno.EINVAL, f"set_mempolicy: {pol.mode}: no node of {list(pol.nodes)} has memory "
                                            "the task may use")
        if pol.mode == "preferred":
            kept = kept[:1]
        return Policy(pol.mode, tuple(kept), private)

    def set_mempolicy(self, policy: Optional[str], cpuset: Optional[list] = None) -> Policy:
        """Install the task policy (``None``/``"default"`` resets it); returns the effective policy."""
        pol = self._check_policy(Policy.parse(policy), cpuset)
        self.task_policy = pol
        return pol

    def node_allows(self, nid: int, service: str) -> bool:
        """node_allows_*(): may ``service`` (one of SERVICES) act on node ``nid``'s memory?  Every
        ordinary node allows everything; a private node what its record opted into (v5 caps, v4
        NP_OPS flags)."""
        if service not in SERVICES:
            raise ValueError(f"service {service!r}: one of {', '.join(SERVICES)}")
        if not self._is_private(nid):
            return True
        cap, op = SERVICES[service]
        return self.sys.memory.private.allows(nid, cap=cap, op=op)

    # ----- the oracle ------------------------------------------------------------------------
    def alloc_candidates(self, gfp: str, *, nid: Optional[int] = None, policy: Optional[str] = None,
                         interrupt: bool = False, cpuset: Optional[list] = None) -> list:
        """The nodes an allocation may be served from, in the order the allocator tries them."""
        flags = self.gfp_flags(gfp)
        v = self._private_version
        mem = self.sys.memory
        pol = Policy("default") if interrupt else (
            self._check_policy(Policy.parse(policy), cpuset) if policy is not None else self.task_policy)
        local = self._local_node()
        # the zonelist's first node and the policy's nodemask
        if pol.mode in ("bind", "interleave"):
            mask: Optional[set] = set(pol.nodes)
            start = nid if nid is not None and nid in pol.nodes else (
                local if local in pol.nodes else pol.nodes[0])
        elif pol.mode == "preferred":
            mask, start = None, pol.nodes[0]
        else:
            mask, start = None, nid if nid is not None else local
        private_path = False            # the private zonelist / __GFP_PRIVATE unlocks private nodes
        if not interrupt:
            if v == 4 and ("__GFP_PRIVATE" in flags or pol.private):
                private_path = True
            if v == 5 and pol.private:
                private_path = True

        def eligible(n: int) -> bool:
            if self._is_private(n):
                if interrupt or not private_path or not mem.private.has_private_memory(n):
                    return False
                if v == 5 and "__GFP_THISNODE" in flags and not pol.private:
                    return False
                if v == 4 and "__GFP_HARDWALL" in flags and cpuset is not None and n not in cpuset:
                    return False
                return self._usable(n, flags)
            if not mem.node_has_memory(n):
                return False
            if not interrupt and "__GFP_HARDWALL" in flags and cpuset is not None and n not in cpuset:
                return False
            return self._usable(n, flags)

        if "__GFP_THISNODE" in flags:
            order = [start]
        else:
            order = self._zonelist(start)
        if mask is not None:
            order = [n for n in order if n in mask]
            if pol.mode == "interleave":
                order = sorted(order)
        return [n for n in order if eligible(n)]
