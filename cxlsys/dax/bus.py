"""drivers/dax/bus.c: dax regions, dev_dax devices, the device_dax and kmem drivers.

A dax region is not a device of its own: its attributes are the ``dax_region/``
group of the device that hosts it (``dax_regionZ`` on the cxl bus).  Devices
``daxZ.N`` sit below that host on the dax bus, char devices with major 254 and a
minor from one global IDA.

Rules kept from the kernel (v6.8+, the dax_region/dax_dev rwsem era):

* ``create`` makes a size-0 ``daxZ.<lowest free id>`` (ENOSPC when nothing is
  available); the first one not yet bound is the region's ``seed``; ``create`` reads
  the youngest one.  A successful probe of the seed clears ``seed``.
* ``delete``: no such child -> ENXIO; bound or sized -> EBUSY; id 0 -> EBUSY.
* ``size``: misaligned -> EINVAL; bound -> EBUSY; growth beyond ``available_size`` ->
  ENOSPC; shrinking trims from the last range; growth fills the lowest gaps, extending
  the last range in place when it is adjacent.
* ``mapping`` (``start-end`` hex): misaligned length -> ENXIO, busy or outside the
  region -> ENOMEM (no "bound" check, as in the kernel).
* ``align``: parse error -> ENXIO (sic), unsupported value or ranges not a multiple
  of it -> EINVAL, bound -> EBUSY.
* ``memmap_on_memory``: 1 without hotplug support -> EOPNOTSUPP; a change while bound
  to kmem -> EBUSY.
* drivers: ``new_id``/``remove_id`` take exactly ``dax%d.%d`` (EINVAL otherwise);
  ``new_id`` attaches every unbound device that now matches; KMEM regions (CXL ram)
  default to kmem, others to device_dax; a size-0 device never probes (ENXIO).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.bus import Bus, Driver
from cxlsys.base.device import ADMIN_RO, RO, RW, WO, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.errors import KernelError
from cxlsys.hazards import note_hazard
from cxlsys.kstrto import kstrtobool, kstrtoint, kstrtoull, strip_newline, sysfs_streq, vsscanf

DAX_MAJOR = 254
PAGE_SIZE = 4096
SZ_2M = 2 << 20
SZ_1G = 1 << 30
MEMREMAP_COMPAT_ALIGN = SZ_2M          # memremap_compat_align() on x86-64 (SUBSECTION_SIZE)


@attrs.define(eq=False)
class DaxRegion:
    id: int
    host: Device
    start: int
    size: int
    align: int = SZ_2M
    target_node: int = 0
    kmem_default: bool = True          # IORESOURCE_DAX_KMEM: devices default to the kmem driver
    static: bool = False               # IORESOURCE_DAX_STATIC (nvdimm pmem): no create/delete/resize
    devs: list = attrs.field(factory=list)      # DevDax in creation order
    seed: Optional["DevDax"] = None
    youngest: Optional["DevDax"] = None
    dev_ida: set = attrs.field(factory=set)

    def allocated(self) -> int:
        return sum(d.size for d in self.devs)

    def available(self) -> int:
        return self.size - self.allocated()

    def free_ranges(self):
        used = sorted((r[0], r[0] + r[1]) for d in self.devs for r in d.ranges)
        out, cur = [], self.start
        for s, e in used:
            if s > cur:
                out.append((cur, s - cur))
            cur = max(cur, e)
        if cur < self.start + self.size:
            out.append((cur, self.start + self.size - cur))
        return out

    def host_bound(self) -> bool:
        return self.host.driver is not None


class DaxRegionAttrs:
    """The ``dax_region/`` attribute group, mixed into the hosting device class."""

    if TYPE_CHECKING:  # provided by the hosting device class
        name: str
        children: dict
        dax_region: Optional[DaxRegion]

    dax_region_group = AttrGroup([RO("id", "dax_region_id_show"), RO("size", "dax_region_size_show"),
                                  ADMIN_RO("align", "dax_region_align_show"),
                                  RO("available_size", "dax_region_available_size_show"),
                                  RW("create", "dax_region_create_show", "dax_region_create_store"),
                                  RO("seed", "dax_region_seed_show"),
                                  WO("delete", "dax_region_delete_store")],
                                 name="dax_region", is_visible="dax_region_visible")

    def group_visible(self, group) -> bool:
        return group.name != "dax_region" or self.dax_region is not None

    def dax_region_visible(self, attr: Attr) -> int:
        r = self.dax_region
        if r is None:
            return 0
        if r.static and attr.name in ("available_size", "create", "seed", "delete"):
            return 0
        return attr.mode

    def dax_region_id_show(self):
        return f"{self.dax_region.id}\n"

    def dax_region_size_show(self):
        return f"{self.dax_region.size}\n"

    def dax_region_align_show(self):
        return f"{self.dax_region.align}\n"

    def dax_region_available_size_show(self):
        return f"{self.dax_region.available()}\n"

    def dax_region_create_show(self):
        y = self.dax_region.youngest
        return f"{y.name}\n" if y is not None else "\n"

    def dax_region_create_store(self, buf: str):
        r = self.dax_region
        assert r is not None       # the create file exists only while the region does
        val = kstrtoint(buf)
        if val != 1:
            raise KernelError(errno.EINVAL, f"{self.name}: create: write 1, not {val}")
        if r.available() == 0:
            raise KernelError(errno.ENOSPC, f"{self.name}: create: no capacity left in {_region_name(r)}")
        dd = devm_create_dev_dax(r, 0, memmap_on_memory=False)
        if r.seed is None:
            r.seed = dd
        r.youngest = dd

    def dax_region_seed_show(self):
        s = self.dax_region.seed
        return f"{s.name}\n" if s is not None else "\n"

    def dax_region_delete_store(self, buf: str):
        victim = next((c for c in self.children.values() if sysfs_streq(c.name, buf)), None)
        if not isinstance(victim, DevDax):
            raise KernelError(errno.ENXIO, f"{self.name}: delete: no device {strip_newline(buf)!r} in this region")
        if victim.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {victim.name} is bound to {victim.driver.name}")
        if victim.size:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {victim.name} still has size {victim.size}")
        if victim.id <= 0:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {victim.name}: id 0 is never deleted")
        unregister_dev_dax(victim)


def _region_name(r: DaxRegion) -> str:
    return f"dax_region{r.id}"


@attrs.define(eq=False, kw_only=True)
class DaxMapping(Device):
    """``mappingN/``: one range of a dev_dax (start/end/page_offset, root-only)."""

    index: int = 0
    owner: Device = attrs.field(repr=False)

    groups = (AttrGroup([ADMIN_RO("start"), ADMIN_RO("end"), ADMIN_RO("page_offset")]),)

    def _rng(self):
        return self.owner.ranges[self.index]

    def start_show(self):
        return f"{self._rng()[0]:#x}\n"

    def end_show(self):
        s, n, _ = self._rng()
        return f"{s + n - 1:#x}\n"

    def page_offset_show(self):
        return f"{self._rng()[2]:#x}\n"      # in pages; "0x0" for the first range


@attrs.define(eq=False, kw_only=True)
class DevDax(Device):
    region: DaxRegion = attrs.field(repr=False)
    id: int = 0
    ranges: list = attrs.field(factory=list)      # (start, size, page offset in pages)
    align: int = SZ_2M
    memmap_on_memory: bool = True
    target_node: int = 0
    drvdata: object = attrs.field(default=None, repr=False)   # dev_get_drvdata(): the bound driver's (kmem, anondax)
    iomem: list = attrs.field(factory=list, repr=False)          # device_dax's reservations

    groups = (AttrGroup([RO("modalias"), RW("size"), WO("mapping"), RO("target_node"), RW("align"),
                         ADMIN_RO("resource"), RO("numa_node"), RW("memmap_on_memory")],
                        is_visible="dev_dax_visible"),)

    def dev_dax_visible(self, attr: Attr) -> int:
        if attr.name == "target_node" and self.target_node < 0:
            return 0
        if attr.name == "mapping" and self.region.static:
            return 0
        if attr.name in ("align", "size") and self.region.static:
            return 0o444
        return attr.mode

    def modalias(self):
        return "dax:t0"

    def release(self) -> None:
        assert self.devt is not None       # every dev_dax is a char device (devm_create_dev_dax)
        self.sys.dax_minor_ida.free(self.devt[1])

    @property
    def size(self) -> int:
        return sum(r[1] for r in self.ranges)

    def alloc_is_aligned(self, size: int) -> bool:
        return size % max(self.align, MEMREMAP_COMPAT_ALIGN) == 0

    def size_show(self):
        return f"{self.size}\n"

    def size_store(self, buf: str):
        val = kstrtoull(buf)
        if not self.alloc_is_aligned(val):
            raise KernelError(errno.EINVAL, f"{self.name}: size: {val} misaligned "
                                            f"(multiple of {max(self.align, MEMREMAP_COMPAT_ALIGN)} needed)")
        if not self.region.host_bound():
            raise KernelError(errno.ENXIO, f"{self.name}: size: region {self.region.host.name} is not enabled")
        if self.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: size: device is bound to {self.driver.name}")
        cur = self.size
        if val > cur and val - cur > self.region.available():
            raise KernelError(errno.ENOSPC, f"{self.name}: size: {val - cur} more wanted, "
                                            f"{self.region.available()} available in {_region_name(self.region)}")
        if val < cur:
            shrink_dev_dax(self, val)
        elif val > cur:
            grow_dev_dax(self, val - cur)

    def align_show(self):
        return f"{self.align}\n"

    def align_store(self, buf: str):
        try:
            val = kstrtoull(buf)
        except KernelError:
            raise KernelError(errno.ENXIO, f"{self.name}: align: {strip_newline(buf)!r} is not a number")
        if val not in (PAGE_SIZE, SZ_2M, SZ_1G):
            raise KernelError(errno.EINVAL, f"{self.name}: align: {val} is not 4096, 2097152 or 1073741824")
        if not self.region.host_bound():
            raise KernelError(errno.ENXIO, f"{self.name}: align: region {self.region.host.name} is not enabled")
        if self.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: align: device is bound to {self.driver.name}")
        unit = max(val, MEMREMAP_COMPAT_ALIGN)
        for i, (_, n, _) in enumerate(self.ranges):
            if n % unit:
                raise KernelError(errno.EINVAL, f"{self.name}: align {val} invalid for range {i}")
        self.align = val

    def mapping_store(self, buf: str):
        start, sep, end = strip_newline(buf).partition("-")
        try:
            if not sep:
                raise KernelError(errno.EINVAL, "")
            s, e = kstrtoull(start, 16), kstrtoull(end, 16)     # range_parse(): kstrtoull's errno
        except KernelError as err:
            raise KernelError(err.errno,
                              f"{self.name}: mapping: expected START-END in hex, got {strip_newline(buf)!r}") from err
        if not self.region.host_bound():
            raise KernelError(errno.ENXIO, f"{self.name}: mapping: region {self.region.host.name} is not enabled")
        n = (e - s + 1) % (1 << 64)              # range_len() in u64: END < START wraps
        if not self.alloc_is_aligned(n):
            raise KernelError(errno.ENXIO, f"{self.name}: mapping: length {n:#x} misaligned")
        if n == 0:                               # the "seed" 0-size allocation: only as the first range
            if self.ranges:
                raise KernelError(errno.EBUSY, f"{self.name}: mapping: 0-size allocation must be first")
            return
        if not any(fs <= s and s + n <= fs + fn for fs, fn in self.region.free_ranges()):
            raise KernelError(errno.ENOMEM, f"{self.name}: mapping {s:#x}-{e:#x} is not free space of "
                                            f"{_region_name(self.region)}")
        if self.driver is not None:
            note_hazard(self.sys, "mapping-while-bound",
                        f"{self.name}: mapping {s:#x}-{e:#x} added while bound to {self.driver.name}", self)
        _add_range(self, s, n)

    def target_node_show(self):
        return f"{self.target_node}\n"

    def resource_show(self):
        return f"{self.ranges[0][0]:#x}\n" if self.ranges else f"{self.region.start:#x}\n"

    def numa_node_show(self):
        return f"{self.numa_node}\n"

    def modalias_show(self):
        return "dax:t0\n"

    def memmap_on_memory_show(self):
        return f"{int(self.memmap_on_memory)}\n"

    def memmap_on_memory_store(self, buf: str):
        val = kstrtobool(buf)
        if val and not self.sys.memory.policy.supports_memmap_on_memory():
            raise KernelError(errno.EOPNOTSUPP, f"{self.name}: memmap_on_memory is not available "
                                                "(memory_hotplug.memmap_on_memory=N)")
        if val != self.memmap_on_memory and self.driver is not None and self.driver.name == "kmem":
            raise KernelError(errno.EBUSY, f"{self.name}: memmap_on_memory: bound to kmem")
        self.memmap_on_memory = val


def _add_range(dd: DevDax, start: int, size: int) -> None:
    pgoff = sum(r[1] for r in dd.ranges) // PAGE_SIZE
    dd.ranges.append((start, size, pgoff))
    if dd.registered:
        _add_mapping(dd, len(dd.ranges) - 1)


def _add_mapping(dd: DevDax, i: int) -> None:
    device_add(DaxMapping(name=f"mapping{i}", parent=dd, sys=dd.sys, index=i, owner=dd))


def grow_dev_dax(dd: DevDax, want: int) -> None:
    r = dd.region
    if want > r.available():
        raise KernelError(errno.ENOSPC, f"{dd.name}: size: only {r.available()} available in region")
    for s, n in r.free_ranges():
        if want == 0:
            break
        take = min(n, want)
        if dd.ranges and dd.ranges[-1][0] + dd.ranges[-1][1] == s:
            st, sz, po = dd.ranges[-1]
            dd.ranges[-1] = (st, sz + take, po)
        else:
            _add_range(dd, s, take)
        want -= take


def shrink_dev_dax(dd: DevDax, to: int) -> None:
    while dd.size > to:
        st, sz, po = dd.ranges[-1]
        excess = dd.size - to
        if sz <= excess:
            dd.ranges.pop()
            m = dd.children.get(f"mapping{len(dd.ranges)}")
            if m is not None:
                device_del(m)
        else:
            dd.ranges[-1] = (st, sz - excess, po)


def devm_create_dev_dax(r: DaxRegion, size: int, memmap_on_memory: bool = False) -> DevDax:
    sys = r.host.sys
    i = 0
    while i in r.dev_ida:
        i += 1
    r.dev_ida.add(i)
    minor = sys.dax_minor_ida.alloc()
    dd = DevDax(name=f"dax{r.id}.{i}", parent=r.host, sys=sys, bus=sys.dax_bus, region=r, id=i,
                align=r.align, target_node=r.target_node, memmap_on_memory=memmap_on_memory,
                devt=(DAX_MAJOR, minor), devname=f"dax{r.id}.{i}", numa_node=r.host.numa_node)
    r.devs.append(dd)
    if size:
        grow_dev_dax(dd, size)
    r.host.devm_add_action(lambda: unregister_dev_dax(dd), f"dev_dax:{dd.name}")
    # device_add() probes at once; the mapping devices of the initial ranges follow it
    drivers_autoprobe = sys.dax_bus.drivers_autoprobe
    sys.dax_bus.drivers_autoprobe = False
    try:
        device_add(dd)
    finally:
        sys.dax_bus.drivers_autoprobe = drivers_autoprobe
    for k in range(len(dd.ranges)):
        _add_mapping(dd, k)
    if drivers_autoprobe:
        sys.dax_bus.probe_device(dd)
    return dd


def unregister_dev_dax(dd: DevDax) -> None:
    if not dd.registered:
        return
    r = dd.region
    r.host.devm_remove_action(f"dev_dax:{dd.name}")
    device_del(dd)
    dd.ranges = []
    if dd in r.devs:
        r.devs.remove(dd)
    r.dev_ida.discard(dd.id)
    dd.id = -1
    if r.seed is dd:
        r.seed = None
    if r.youngest is dd:
        r.youngest = None


@attrs.define(eq=False, kw_only=True)
class DaxBus(Bus):
    pass




@attrs.define(eq=False, kw_only=True)
class DaxDriver(Driver):
    """device_dax / kmem: new_id/remove_id files; kmem is the default for kmem-flagged regions."""

    extra_files: tuple = ("new_id", "remove_id")
    ids: list = attrs.field(factory=list)
    kmem_type: bool = False            # DAXDRV_KMEM_TYPE (kmem) vs DAXDRV_DEVICE_TYPE (device_dax)

    def match(self, dev) -> bool:
        if not isinstance(dev, DevDax):
            return False
        if dev.name in self.ids:
            return True
        return self.kmem_type == dev.region.kmem_default

    # dax_bus_probe(): the bus wrapper around the driver's probe
    def probe(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)     # match() accepts dev_dax devices only
        if dev.size == 0 or dev.id < 0:
            raise KernelError(errno.ENXIO, f"{dev.name}: zero-sized device cannot be enabled")
        self.dax_probe(dev)
        r = dev.region
        if not r.static and r.seed is dev:
            r.seed = None

    def dax_probe(self, dev: DevDax) -> None:
        """device_dax (drivers/dax/device.c): claim each range in iomem under the device name."""
        mem = dev.sys.memory
        claimed = []
        for i, (s, n, _) in enumerate(dev.ranges):
            try:
                claimed.append(mem.iomem.request_region(s, n, dev.name))
            except KernelError:
                for c in claimed:
                    mem.iomem.release_region(c)
                raise KernelError(errno.EBUSY, f"{dev.name}: mapping{i}: {s:#x}-{s + n - 1:#x} could not reserve range")
        dev.iomem = claimed
        dev.devm_add_action(lambda: _release_iomem(dev), "device_dax:iomem")

    def _parse_id(self, buf: str) -> str:
        """do_id_store(): ``sscanf(buf, "dax%d.%d")`` must convert two ints and ``buf`` must be
        ``sysfs_streq`` to the name they print back to; EINVAL otherwise."""
        got = vsscanf(buf, "dax%d.%d")
        name = f"dax{got[0]}.{got[1]}" if len(got) == 2 else ""
        if not name or not sysfs_streq(buf, name):
            raise KernelError(errno.EINVAL, f"{self.name}: expected daxX.Y, got {strip_newline(buf)!r}")
        return name

    def new_id_store(self, buf: str):
        name = self._parse_id(buf)
        if name not in self.ids:
            self.ids.append(name)
        # driver_attach(): probe every unbound device that matches now, failures swallowed
        bus = self.bus
        assert bus is not None             # new_id is a file of a registered driver
        for dev in list(bus.devices):
            if dev.driver is None and self.match(dev):
                bus._try_probe(self, dev)

    def remove_id_store(self, buf: str):
        name = self._parse_id(buf)
        if name in self.ids:
            self.ids.remove(name)


def _release_iomem(dev: DevDax) -> None:
    for c in dev.iomem:
        dev.sys.memory.iomem.release_region(c)
    dev.iomem = []
