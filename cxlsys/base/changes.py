"""What changed in the model: reported by the device core, read by the projection.

The kernel's sysfs needs no such thing — kernfs nodes are created and removed where the state
changes.  Here directories are computed from the model on demand, so the model tells the
projection which directories may list differently now, and the projection compares only those
with what it served before (:meth:`cxlsys.sysfs.Sysfs.sync`).  Reports come from the core, never
from feature code:

* ``device_add``/``device_del`` (:mod:`cxlsys.base.device`): the parent's directory, the bus's
  ``devices/``, ``/sys/dev/char``, and the directories that link to the device
  (:meth:`~cxlsys.base.device.Device.linked_from`); a deleted device's whole subtree;
* driver bind/unbind and driver registration (:mod:`cxlsys.base.bus`): the device (its
  ``driver`` link, attribute visibility), the driver's directory;
* **any field assignment on a registered device** (``Device.__setattr__``): that device's
  directory and its group directories — attribute visibility and links follow the device's own
  fields — and attribute values;
* module load/unload, and ``everything()`` for a topology load or unload;
* ``setattr()``: root's chmod/chown of one node (kernfs keeps those in the node's ``iattr``, so
  they go away with the node: a deleted device's subtree forgets them here too).

Attribute *values* are not tracked per file.  Each attribute declares what its value depends on
(:data:`cxlsys.kernfs.CONST` / ``OWN`` / ``ANY``); a cache of contents
(:meth:`cxlsys.sysfs.Sysfs.read_held`) is told which of the files it holds read differently now:
``OWN`` ones are compared again only when their owner was touched (or deleted), ``ANY`` ones after
every report, ``CONST`` ones never (they go with their owner).
"""

from __future__ import annotations

import attrs


@attrs.define
class ChangeSet:
    """The reports since the last :meth:`ChangeTracker.take`."""

    owners: list          # objects whose directories may list differently (kernfs_paths())
    removed: list         # sysfs paths of deleted devices: their whole subtrees went away
    everything: bool      # compare every directory served so far
    devices: bool         # a device came or went (char device nodes may need syncing)
    values: bool          # some attribute value may have changed
    notified: list = attrs.field(factory=list)   # sysfs paths sysfs_notify()'d (pollers to wake)
    iattrs: list = attrs.field(factory=list)     # sysfs paths whose mode/owner root changed

    @property
    def shape(self) -> bool:
        return bool(self.owners or self.removed or self.everything or self.iattrs)


EV_TOUCH, EV_ADD, EV_DEL, EV_ALL, EV_VALUES, EV_NOTIFY, EV_IATTR = range(7)


@attrs.define
class ChangeTracker:
    """An append-only log of reports; every consumer (a FUSE mount, a pyfakefs tree, a test's
    projection) reads it from its own position with :meth:`since`, so none steals another's.
    The log is bounded: a consumer that fell further behind than ``limit`` reports is told
    ``everything`` (compare all it served), which is always exact, only slower."""

    limit: int = 1 << 18
    gen: int = 0                  # number of reports so far
    value_gen: int = 0            # bumped when some attribute value may have changed
    floor: int = 0                # gen of the oldest report still in the log
    log: list = attrs.field(factory=list)     # (kind, owners..., removed path | None)
    events: dict = attrs.field(factory=dict)  # sysfs path -> kernfs event count (sysfs_notify)
    iattrs: dict = attrs.field(factory=dict)  # sysfs real path -> {"mode"/"uid"/"gid": int}: chmod/chown

    def _add(self, kind: int, owners=(), path=None) -> None:
        self.log.append((kind, tuple(owners), path))
        self.gen += 1
        self.value_gen += 1
        if len(self.log) > self.limit:
            drop = len(self.log) // 2
            del self.log[:drop]
            self.floor += drop

    def touch(self, owner) -> None:
        """``owner``'s directories may list differently, and its values may have changed."""
        self._add(EV_TOUCH, (owner,))

    def values(self) -> None:
        """Some attribute value may have changed (an accepted store that is not pure)."""
        self._add(EV_VALUES)

    def device_added(self, dev, related) -> None:
        self._add(EV_ADD, related)

    def device_removed(self, dev, path: str, related) -> None:
        if self.iattrs:
            below = path + "/"
            for p in [p for p in self.iattrs if p == path or p.startswith(below)]:
                del self.iattrs[p]
        self._add(EV_DEL, tuple(related) + (dev,), path)    # dev: a cache of its contents forgets them

    def setattr(self, path: str, mode=None, uid=None, gid=None) -> None:
        """kernfs_setattr(): root changed the permission bits or owner of the node at ``path``."""
        ia = self.iattrs.setdefault(path, {})
        for k, v in (("mode", mode), ("uid", uid), ("gid", gid)):
            if v is not None:
                ia[k] = v
        self._add(EV_IATTR, (), path)

    def notify(self, path: str) -> None:
        """kernfs_notify(): the attribute at ``path`` (below /sys) has news for poll(2)ers — its
        event count moves (a poller that opened it before sees POLLERR|POLLPRI)."""
        self.events[path] = self.events.get(path, 0) + 1
        self._add(EV_NOTIFY, (), path)

    def everything(self) -> None:
        self._add(EV_ALL)

    def since(self, gen: int) -> ChangeSet:
        """The reports after position ``gen`` (a consumer's last ``self.gen``)."""
        if gen < self.floor:
            return ChangeSet([], [], True, True, True, list(self.events), list(self.iattrs))
        owners: dict = {}
        removed: list = []
        notified: list = []
        iattrs: list = []
        everything = devices = values = False
        for kind, objs, path in self.log[gen - self.floor:]:
            for o in objs:
                owners[id(o)] = o
            if kind in (EV_ADD, EV_DEL):
                devices = True
            if kind == EV_NOTIFY:
                notified.append(path)
            elif kind == EV_IATTR:
                iattrs.append(path)
            elif path is not None:
                removed.append(path)
            if kind == EV_ALL:
                everything = devices = True
            values = True
        return ChangeSet(list(owners.values()), removed, everything, devices, values, notified, iattrs)
