"""Private memory nodes (``N_MEMORY_PRIVATE``), as proposed — include/linux/node_private.h and the
drivers/base/node.c / mm/memory_hotplug.c parts of the series.  Not in any merged kernel: present
only under a profile with ``+private-nodes-v5`` or ``+private-nodes-v4`` (``sys.profile.private_nodes``).

Both versions share the node state: a node whose pgdat a driver registered as private enters
``N_MEMORY_PRIVATE`` instead of ``N_MEMORY`` when its first block goes online, and leaves it when
the last one goes offline; the two states never coexist (``/sys/devices/system/node/
has_private_memory`` lists it).  They differ in what a registration carries and what it gates:

* **v5** (the "caps" design, 2026-07; kernel-now.md §2.1, the davejiang tree's names): a ``caps``
  bitmap — RECLAIM, MEMPOLICY, HOTUNPLUG, TIERING (needs RECLAIM), LTPIN, USER_MIGRATE; allocations
  are kept off the node by zonelists only (``ZONELIST_PRIVATE``, reached through ``MPOL_F_PRIVATE``);
  ``has_memory`` is unchanged; cpuset does not partition private nodes.
* **v4** (the ops design, RFC 2026-02; policy-proposals.md §A): an ops table with ``NP_OPS_*``
  flags set after registration (``node_private_set_ops``); ``__GFP_PRIVATE``/``GFP_PRIVATE`` unlock
  the node; ``has_memory`` also lists private nodes with NP_OPS_MEMPOLICY (switch
  ``V4_HAS_MEMORY_INCLUDES_MEMPOLICY``); cpuset ``mems`` partitions them.

The calls a driver makes are Python methods here (``sys.memory.private``), with the series' errno
(``KernelError``): a test can act as the driver.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.errors import KernelError

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System

# v5 caps (davejiang/linux node_private.h @31db987e; linux-mm names USER_NUMA for MEMPOLICY and
# DEMOTION for TIERING)
CAP_RECLAIM = 1 << 0
CAP_MEMPOLICY = 1 << 1
CAP_HOTUNPLUG = 1 << 2
CAP_TIERING = 1 << 3            # demotion, NUMA balancing, DAMON; requires RECLAIM
CAP_LTPIN = 1 << 4              # FOLL_LONGTERM pins
CAP_USER_MIGRATE = 1 << 5       # move_pages / migrate_pages
CAPS = {"reclaim": CAP_RECLAIM, "mempolicy": CAP_MEMPOLICY, "hotunplug": CAP_HOTUNPLUG,
        "tiering": CAP_TIERING, "ltpin": CAP_LTPIN, "user_migrate": CAP_USER_MIGRATE}

# v4 NP_OPS flags (only the first two bit positions were seen; the rest are [I] in order)
NP_OPS_MIGRATION = 1 << 0
NP_OPS_MEMPOLICY = 1 << 1
NP_OPS_DEMOTION = 1 << 2
NP_OPS_PROTECT_WRITE = 1 << 3
NP_OPS_RECLAIM = 1 << 4
NP_OPS_NUMA_BALANCING = 1 << 5
NP_OPS_COMPACTION = 1 << 6
NP_OPS_LONGTERM_PIN = 1 << 7
NP_OPS_OOM_ELIGIBLE = NP_OPS_MIGRATION | NP_OPS_DEMOTION

# open questions of v4, with the digest's defaults (policy-proposals.md §A.8)
V4_HAS_MEMORY_INCLUDES_MEMPOLICY = True     # has_memory lists private nodes with NP_OPS_MEMPOLICY


@attrs.define(eq=False)
class NodePrivate:
    """struct node_private: the driver-owned record a node is registered with."""

    owner: str                      # who registered it (a driver or device name, for messages)
    caps: int = 0                   # v5
    ops: int = 0                    # v4: NP_OPS_* installed by node_private_set_ops()


@attrs.define(eq=False)
class NodePrivateCore:
    """Per machine: which node is registered with which record (``pgdat->node_private``)."""

    sys: "System" = attrs.field(repr=False)
    registered: dict = attrs.field(factory=dict)     # nid -> NodePrivate

    @property
    def version(self) -> Optional[int]:
        pn = self.sys.profile.private_nodes
        return pn.version if pn is not None else None

    def _require(self) -> int:
        v = self.version
        if v is None:
            raise KernelError(errno.ENODEV, "private memory nodes are not in this kernel")
        return v

    # ----- node states -------------------------------------------------------------------
    def is_private(self, nid: int) -> bool:
        return nid in self.registered

    def has_private_memory(self, nid: int) -> bool:
        """N_MEMORY_PRIVATE: a registered node with online memory."""
        return self.is_private(nid) and self.sys.memory.node_has_online_memory(nid)

    def np(self, nid: int) -> Optional[NodePrivate]:
        return self.registered.get(nid)

    def allows(self, nid: int, cap: int = 0, op: int = 0) -> bool:
        """node_allows_*(): a non-private node allows everything; a private one what it opted into."""
        np = self.registered.get(nid)
        if np is None:
            return True
        return bool(np.caps & cap) if self.version == 5 else bool(np.ops & op)

    # ----- the driver API ----------------------------------------------------------------
    def node_private_register(self, nid: int, np: Optional[NodePrivate]) -> None:
        v = self._require()
        if np is None or nid not in self.sys.nodes:
            raise KernelError(errno.EINVAL, f"node_private_register: node {nid}: no record or node not possible")
        if v == 5 and np.caps & CAP_TIERING and not np.caps & CAP_RECLAIM:
            raise KernelError(errno.EINVAL, f"node_private_register: node {nid}: TIERING requires RECLAIM")
        if self.sys.memory.node_has_memory(nid):
            raise KernelError(errno.EBUSY, f"node_private_register: node {nid} has N_MEMORY")
        cur = self.registered.get(nid)
        if cur is not None and cur is not np:
            raise KernelError(errno.EBUSY, f"node_private_register: node {nid} is registered by {cur.owner}")
        self.registered[nid] = np
        self._node_changed(nid)

    def node_private_unregister(self, nid: int) -> None:
        self._require()
        if nid not in self.registered:
            return
        if self.has_private_memory(nid):
            raise KernelError(errno.EBUSY, f"node_private_unregister: node {nid} still has N_MEMORY_PRIVATE")
        del self.registered[nid]
        self._node_changed(nid)

    def node_private_set_ops(self, nid: int, np: NodePrivate, ops: int) -> None:
        """v4 only: install the services the owner implements (NP_OPS_*)."""
        if self._require() != 4:
            raise KernelError(errno.ENOSYS, "node_private_set_ops: removed in v5 (caps are given at registration)")
        if nid not in self.sys.nodes:
            raise KernelError(errno.EINVAL, f"node_private_set_ops: node {nid} is not possible")
        if ops & NP_OPS_MEMPOLICY and not ops & NP_OPS_MIGRATION:
            raise KernelError(errno.EINVAL, "node_private_set_ops: MEMPOLICY needs MIGRATION")
        if self.registered.get(nid) is not np:
            raise KernelError(errno.ENODEV, f"node_private_set_ops: node {nid} is not registered with this record")
        np.ops = ops
        self._node_changed(nid)

    def node_private_clear_ops(self, nid: int, np: NodePrivate) -> None:
        if self._require() != 4:
            raise KernelError(errno.ENOSYS, "node_private_clear_ops: removed in v5")
        if self.registered.get(nid) is None:
            raise KernelError(errno.ENODEV, f"node_private_clear_ops: node {nid} is not registered")
        if self.registered[nid] is not np:
            raise KernelError(errno.EINVAL, f"node_private_clear_ops: node {nid}: not the installed ops")
        np.ops = 0
        self._node_changed(nid)

    def add_private_memory_driver_managed(self, nid: int, start: int, size: int, np: NodePrivate,
                                          online_type: str, owner=None, group=None,
                                          memmap_on_memory: bool = False) -> list:
        """Register ``np`` for ``nid`` (the same record again is a no-op), then hot-add the range with
        ``online_type``; a failed add unregisters a registration made here."""
        self._require()
        fresh = nid not in self.registered
        self.node_private_register(nid, np)
        try:
            return self.sys.memory.add_memory(start, size, nid, owner, memmap_on_memory, group,
                                              online_type=online_type)
        except KernelError:
            if fresh:
                self.node_private_unregister(nid)
            raise

    def offline_and_remove_private_memory(self, nid: int, start: int, size: int) -> None:
        """v4: offline and remove the range, then unregister (EBUSY from the unregister: other
        private ranges remain, the memory is gone all the same)."""
        self._require()
        self.sys.memory.offline_and_remove_memory_ranges([(start, size)])
        try:
            self.node_private_unregister(nid)
        except KernelError as e:
            if e.errno != errno.EBUSY:
                raise

    def _node_changed(self, nid: int) -> None:
        """The node masks (has_memory, has_private_memory) list differently now."""
        self.sys.changes.values()
