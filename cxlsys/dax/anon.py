"""drivers/dax/anon.c of the private-memory-nodes v5 line (davejiang/linux; not merged): the
``anondax`` driver, which turns a dax device's memory into a private NUMA node.  Present only
under ``+private-nodes-v5`` (kernel-now.md §2.1).

Bind: ``echo daxX.Y > /sys/bus/dax/drivers/anondax/new_id`` after unbinding the device's driver
(anondax matches only devices named in its ids: DAXDRV_ANON_TYPE is nobody's default).  Probe
leaves the device ``unplugged``.  Its files (driver attribute groups, present while bound):

* ``hotplug`` (RW): ``unplugged`` offlines and removes every range at once
  (``offline_and_remove_memory_ranges``: its errno if pages are in use); ``online_movable`` /
  ``online_kernel`` hot-add every range onto the target node as private memory
  (``add_private_memory_driver_managed`` with the caps set so far; no range added: ENOMEM; the
  first range failing: its errno, EBUSY for a busy reservation); another online zone while online:
  EBUSY; the same state: no-op; anything else (``online`` included): EINVAL; a pending signal while
  taking the lock: EINTR (``mutex_lock_interruptible``).
* one 0/1 file per cap (``reclaim``, ``mempolicy``, ``hotunplug`` and — the later versions, [I] from
  the selftests, switch ``LATER_CAPS`` — ``tiering``, ``ltpin``, ``user_migrate``), parsed with
  kstrtobool, EBUSY unless ``unplugged``; applied at the next hotplug.

The reservation and the hot-added resource are both named ``System RAM (anondax)``.  Unplugging
also drops the node's private registration [I], so new caps apply at the next hotplug.  Unbind with
memory online leaks it, as kmem does.
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.device import Attr, AttrGroup, Device
from cxlsys.dax.bus import DaxDriver, DevDax
from cxlsys.dax.kmem import (
    KmemRange,
    dax_kmem_do_hotplug,
    dax_kmem_init_resources,
    dax_kmem_ranges,
    remove_reserved_ranges,
)
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, strip_newline
from cxlsys.mm.memory_hotplug import MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE, PAGE_SIZE, MemoryGroup
from cxlsys.mm.node_private import CAPS, NodePrivate

UNPLUGGED = "unplugged"
RES_NAME = "System RAM (anondax)"
LATER_CAPS = True          # tiering, ltpin, user_migrate files ([I]: seen in the selftests, not the driver)
FIRST_CAPS = ("reclaim", "mempolicy", "hotunplug")


@attrs.define(eq=False)
class AnonData:
    group: MemoryGroup
    ranges: list                      # KmemRange | None per dev_dax range
    state: str = UNPLUGGED
    caps: int = 0
    np: Optional[NodePrivate] = None


def _data(dd: Device) -> AnonData:
    assert isinstance(dd, DevDax) and isinstance(dd.drvdata, AnonData)   # only while bound to anondax
    return dd.drvdata


def _lock(dd: Device) -> None:
    if dd.sys.memory.signal_pending:
        raise KernelError(errno.EINTR, f"{dd.name}: interrupted while waiting for the device lock")


def hotplug_show(dd: Device) -> str:
    return f"{_data(dd).state}\n"


def hotplug_store(dd: Device, buf: str) -> None:
    assert isinstance(dd, DevDax)
    want = strip_newline(buf)
    if want not in (UNPLUGGED, MMOP_ONLINE_MOVABLE, MMOP_ONLINE_KERNEL):
        raise KernelError(errno.EINVAL, f"{dd.name}: hotplug: {want!r} is not unplugged, online_movable or "
                                        "online_kernel")
    _lock(dd)
    data = _data(dd)
    if want == data.state:
        return
    if want == UNPLUGGED:
        _unplug(dd, data)
        return
    if data.state != UNPLUGGED:
        raise KernelError(errno.EBUSY, f"{dd.name}: hotplug: already {data.state}; unplug first")
    _plug(dd, data, want)


def _plug(dd: DevDax, data: AnonData, online_type: str) -> None:
    """Reserve and hot-add every range as private memory (kmem's reservation and partial-add rules);
    no range added at all: ENOMEM."""
    np = data.np if data.np is not None else NodePrivate(owner=dd.name, caps=data.caps)

    def add(r: KmemRange) -> None:
        dd.sys.memory.private.add_private_memory_driver_managed(dd.target_node, r.start, r.size, np, online_type,
                                                                owner=dd, group=data.group)

    dax_kmem_init_resources(dd, data.ranges, RES_NAME, child=RES_NAME)
    if not dax_kmem_do_hotplug(dd, data.ranges, add):
        raise KernelError(errno.ENOMEM, f"{dd.name}: hotplug: no range could be added")
    data.np, data.state = np, online_type


def _unplug(dd: DevDax, data: AnonData) -> None:
    mem = dd.sys.memory
    ranges = [r for r in data.ranges if r is not None and r.res is not None]
    if ranges:
        mem.offline_and_remove_memory_ranges([(r.start, r.size) for r in ranges])
        for r in ranges:
            assert r.res is not None
            mem.iomem.release_region(r.res)
            r.res = None
    mem.private.node_private_unregister(dd.target_node)
    data.np, data.state = None, UNPLUGGED


def _cap_attr(name: str) -> Attr:
    bit = CAPS[name]

    def show(dd: Device) -> str:
        return f"{int(bool(_data(dd).caps & bit))}\n"

    def store(dd: Device, buf: str) -> None:
        val = kstrtobool(buf)
        data = _data(dd)
        if data.state != UNPLUGGED:
            raise KernelError(errno.EBUSY, f"{dd.name}: {name}: caps change only while unplugged")
        data.caps = data.caps | bit if val else data.caps & ~bit

    return Attr(name, 0o644, show, store)


ANON_GROUP = AttrGroup([Attr("hotplug", 0o644, hotplug_show, hotplug_store)] +
                       [_cap_attr(c) for c in (tuple(CAPS) if LATER_CAPS else FIRST_CAPS)])


@attrs.define(eq=False, kw_only=True)
class AnonDaxDriver(DaxDriver):
    name: str = "anondax"
    module: str = "dax_anon"

    def match(self, dev) -> bool:
        return isinstance(dev, DevDax) and dev.name in self.ids      # DAXDRV_ANON_TYPE: explicit ids only

    def dev_groups(self, dev: Device) -> tuple:
        return (ANON_GROUP,)

    def dax_probe(self, dd: DevDax) -> None:
        mem = dd.sys.memory
        if dd.target_node < 0 or dd.target_node not in dd.sys.nodes:
            raise KernelError(errno.EINVAL, f"{dd.name}: anondax: invalid target node {dd.target_node}")
        aligned = dax_kmem_ranges(dd, mem.policy.block_size)
        total = sum(r[1] for r in aligned if r)
        if not total:
            raise KernelError(errno.EINVAL, f"{dd.name}: anondax: no memory left after alignment")
        group = mem.register_static_group(dd.target_node, total // PAGE_SIZE)
        dd.drvdata = AnonData(group, [KmemRange(*r) if r else None for r in aligned])

    def remove(self, dd: Device) -> None:
        assert isinstance(dd, DevDax)
        data = dd.drvdata
        if not isinstance(data, AnonData):
            return
        mem = dd.sys.memory

        def leak(i: int, r: KmemRange, e: KernelError) -> None:
            dd.sys.klog.log(f"anondax {dd.name}: mapping{i}: {e.reason}: leaked until reboot", "err")

        _, stuck = remove_reserved_ranges(dd, data.ranges, leak)
        if not stuck:
            mem.private.node_private_unregister(dd.target_node)
            mem.unregister_group(data.group)
        dd.drvdata = None
