"""drivers/base/memory.c: memory block devices and the ``memory`` subsystem.

Memory is hot-added (mm/memory_hotplug.c, :mod:`cxlsys.mm.memory_hotplug`) in ``block_size``
chunks; each chunk is a ``/sys/devices/system/memory/memoryN`` device on the ``memory`` bus
(N = start / block_size).  The root device ``/sys/devices/system/memory`` carries
``block_size_bytes`` and ``auto_online_blocks``.  A block's ``state``/``online`` stores and its
``valid_zones`` go to the hotplug core (``sys.memory``) for onlining, offlining and the zone choice.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import attrs

from cxlsys.base.bus import Bus
from cxlsys.base.device import RO, RW, AttrGroup, Device, device_add
from cxlsys.errors import KernelError
from cxlsys.kernfs import CONST, OWN
from cxlsys.kstrto import kstrtobool, strip_newline

if TYPE_CHECKING:  # pragma: no cover - forward declaration (mm/memory_hotplug.c sits above this file)
    from cxlsys.mm.memory_hotplug import MemoryGroup

# the state file's words (online_type_to_str[], mhp_online_type_from_str()), also auto_online_blocks' values
MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE = \
    "offline", "online", "online_kernel", "online_movable"
ONLINE_TYPES = (MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE)
AUTO_ONLINE_VALUES = ONLINE_TYPES


@attrs.define(eq=False, kw_only=True)
class MemoryBlock(Device):
    """struct memory_block: ``memoryN``, one block_size chunk of hot-added memory."""

    phys_index: int = 0
    nid: int = 0
    online: bool = False
    zone: str | None = None
    group: MemoryGroup | None = attrs.field(default=None, repr=False)
    owner: object = attrs.field(default=None, repr=False)   # the dev_dax that added it (None once leaked)
    unmovable: bool = False                                  # holds unmovable pages: offline fails EBUSY
    memmap_on_memory: bool = False                           # its memmap lives in its own first pages

    groups = (AttrGroup([RO("phys_index", scope=CONST), RW("state", scope=OWN), RO("phys_device", scope=CONST),
                         RO("removable", scope=CONST), RO("valid_zones"), RW("online", scope=OWN)]),)

    @property
    def start(self) -> int:
        return self.phys_index * self.sys.memory.policy.block_size

    @property
    def memmap_bytes(self) -> int:
        return self.sys.memory.policy.memmap_bytes() if self.memmap_on_memory else 0

    def links(self):
        n = self.sys.nodes.get(self.nid)
        return {f"node{self.nid}": n} if n is not None and n.registered else {}

    def linked_from(self):
        """nodeN/ lists its blocks (register_memory_block_under_node)."""
        n = self.sys.nodes.get(self.nid)
        return (n,) if n is not None else ()

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
            raise KernelError(errno.EINVAL,
                              f"{self.name}: state: {t!r} is not offline/online/online_kernel/online_movable")
        mem = self.sys.memory
        if t == MMOP_OFFLINE:
            if not self.online:      # device_offline() returns 1: "already" -> EINVAL
                raise KernelError(errno.EINVAL, f"{self.name}: state: already offline")
            mem.offline_block(self)
        else:
            if self.online:
                raise KernelError(errno.EINVAL, f"{self.name}: state: already online")
            mem.online_block(self, t)

    def online_show(self):
        return f"{int(self.online)}\n"

    def online_store(self, buf: str):
        val = kstrtobool(buf)
        mem = self.sys.memory
        if val and not self.online:
            mem.online_block(self, MMOP_ONLINE)
        elif not val and self.online:
            mem.offline_block(self)

    def valid_zones_show(self):
        if self.online:
            return f"{self.zone or 'none'}\n"
        mem = self.sys.memory
        default = mem.zone_for_online(self, MMOP_ONLINE)
        out = [default]
        for t in (MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE):
            z = mem.zone_for_online(self, t)
            if z != default:
                out.append(z)
        return " ".join(out) + "\n"


@attrs.define(eq=False, kw_only=True)
class MemoryRoot(Device):
    """/sys/devices/system/memory: the memory subsystem's root device."""

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


class DeviceList(list):
    """A bus's device list with O(1) membership and a fast removal of recently added entries:
    16384 memory blocks come and go in one write."""

    def __init__(self, *a):
        super().__init__(*a)
        self._ids = {id(d) for d in self}

    def append(self, d) -> None:
        super().append(d)
        self._ids.add(id(d))

    def __contains__(self, d) -> bool:
        return id(d) in self._ids

    def remove(self, d) -> None:
        if id(d) not in self._ids:
            raise ValueError("not in list")
        n = len(self)
        try:
            i = self.index(d, max(0, n - 64))
        except ValueError:
            i = self.index(d)
        del self[i]
        self._ids.discard(id(d))


@attrs.define(eq=False, kw_only=True)
class MemoryBus(Bus):
    """The ``memory`` subsystem bus (/sys/bus/memory): no drivers, many devices."""

    devices: list = attrs.field(factory=DeviceList, repr=False)


def memory_dev_init(sys, system_dev: Device) -> tuple:
    """memory_dev_init(): register the ``memory`` subsystem, its bus and its root device below
    /sys/devices/system; returns (bus, root)."""
    bus = MemoryBus(name="memory", sys=sys)
    sys.buses["memory"] = bus
    root = MemoryRoot(name="memory", parent=system_dev, sys=sys)
    device_add(root)
    return bus, root
