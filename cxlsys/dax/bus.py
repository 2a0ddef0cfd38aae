"""drivers/dax/bus.c: dax regions, dev_dax devices, the device_dax and kmem drivers.

A dax region is not a device of its own: its attributes are the ``dax_region/``
group of the device that hosts it (``dax_regionZ`` on the cxl bus).  Devices
``daxZ.N`` sit below that host on the dax bus, char devices with major 254.
"""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.bus import Bus, Driver
from cxlsys.base.device import ADMIN_RO, RO, RW, WO, Attr, AttrGroup, Device, device_add, device_del
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, kstrtoull, strip_newline

DAX_MAJOR = 254
SZ_2M = 2 << 20


@attrs.define(eq=False)
class DaxRegion:
    id: int
    host: Device
    start: int
    size: int
    align: int = SZ_2M
    target_node: int = 0
    kmem_default: bool = True
    devs: list = attrs.field(factory=list)      # DevDax in id order
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


class DaxRegionAttrs:
    """The ``dax_region/`` attribute group, mixed into the hosting device class."""

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
        return attr.mode if self.dax_region is not None else 0

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
        return f"{y.name}\n" if y is not None and y.size == 0 else "\n"

    def dax_region_create_store(self, buf: str):
        r = self.dax_region
        val = kstrtobool(buf) if strip_newline(buf) else False
        if not val:
            raise KernelError(errno.EINVAL, f"{self.name}: create: write 1")
        if r.available() == 0:
            raise KernelError(errno.ENOSPC, f"{self.name}: create: no capacity left")
        if r.seed is not None and r.seed.size == 0:
            raise KernelError(errno.EBUSY, f"{self.name}: create: seed {r.seed.name} is still unused")
        dd = devm_create_dev_dax(r, 0)
        r.seed = dd
        r.youngest = dd

    def dax_region_seed_show(self):
        s = self.dax_region.seed
        return f"{s.name}\n" if s is not None else "\n"

    def dax_region_delete_store(self, buf: str):
        r = self.dax_region
        name = strip_newline(buf)
        dd = next((d for d in r.devs if d.name == name), None)
        if dd is None:
            raise KernelError(errno.ENODEV, f"{self.name}: delete: no {name!r} in this region")
        if dd.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {name} is bound to {dd.driver.name}")
        if dd is r.seed:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {name} is the seed device")
        if dd.size:
            raise KernelError(errno.EBUSY, f"{self.name}: delete: {name} still has size {dd.size}")
        unregister_dev_dax(dd)


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
        return f"{self._rng()[2]:#x}\n"


@attrs.define(eq=False, kw_only=True)
class DevDax(Device):
    region: DaxRegion = attrs.field(repr=False)
    id: int = 0
    ranges: list = attrs.field(factory=list)      # (start, size, pgoff)
    align: int = SZ_2M
    memmap_on_memory: bool = True
    target_node: int = 0
    kmem_state: object = attrs.field(default=None, repr=False)   # set by kmem while bound

    groups = (AttrGroup([RW("size"), RW("align"), WO("mapping"), RO("target_node"), ADMIN_RO("resource"),
                         RO("numa_node"), RO("modalias"), RW("memmap_on_memory")]),)

    def modalias(self):
        return "dax:t0"

    def release(self) -> None:
        self.sys.dax_minor_ida.free(self.devt[1])

    @property
    def size(self) -> int:
        return sum(r[1] for r in self.ranges)

    def size_show(self):
        return f"{self.size}\n"

    def size_store(self, buf: str):
        val = kstrtoull(buf)
        if self.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: size: device is bound to {self.driver.name}")
        if val % self.align:
            raise KernelError(errno.EINVAL, f"{self.name}: size {val} is not a multiple of align {self.align}")
        cur = self.size
        if val < cur:
            shrink_dev_dax(self, val)
        elif val > cur:
            grow_dev_dax(self, val - cur)
        self.sys.changed()

    def align_show(self):
        return f"{self.align}\n"

    def align_store(self, buf: str):
        val = kstrtoull(buf)
        if self.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: align: device is bound")
        if val not in (4096, SZ_2M, 1 << 30) or val % 4096:
            raise KernelError(errno.EINVAL, f"{self.name}: align {val} unsupported")
        if any(s % val or n % val for s, n, _ in self.ranges):
            raise KernelError(errno.EINVAL, f"{self.name}: ranges not aligned to {val}")
        self.align = val

    def mapping_store(self, buf: str):
        t = strip_newline(buf)
        try:
            a, b = t.split("-")
            s, e = int(a, 16), int(b, 16)
        except ValueError:
            raise KernelError(errno.EINVAL, f"{self.name}: mapping: expected start-end in hex")
        if self.driver is not None:
            raise KernelError(errno.EBUSY, f"{self.name}: mapping: device is bound")
        n = e - s + 1
        if not any(fs <= s and s + n <= fs + fn for fs, fn in self.region.free_ranges()):
            raise KernelError(errno.EINVAL, f"{self.name}: mapping {t} is not free region space")
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
        if self.driver is not None and self.driver.name == "kmem":
            raise KernelError(errno.EBUSY, f"{self.name}: memmap_on_memory: bound to kmem")
        self.memmap_on_memory = val


def _add_range(dd: DevDax, start: int, size: int) -> None:
    dd.ranges.append((start, size, sum(r[1] for r in dd.ranges)))
    m = DaxMapping(name=f"mapping{len(dd.ranges) - 1}", parent=dd, sys=dd.sys, index=len(dd.ranges) - 1, owner=dd)
    device_add(m)


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
            device_del(dd.children[f"mapping{len(dd.ranges)}"])
        else:
            dd.ranges[-1] = (st, sz - excess, po)


def devm_create_dev_dax(r: DaxRegion, size: int) -> DevDax:
    sys = r.host.sys
    i = 0
    while i in r.dev_ida:
        i += 1
    r.dev_ida.add(i)
    minor = sys.dax_minor_ida.alloc()
    dd = DevDax(name=f"dax{r.id}.{i}", parent=r.host, sys=sys, bus=sys.dax_bus, region=r, id=i,
                align=r.align, target_node=r.target_node, devt=(DAX_MAJOR, minor), devname=f"dax{r.id}.{i}")
    dd.ranges = []
    r.devs.append(dd)
    if size:
        grow_dev_dax(dd, size)
    r.youngest = dd
    device_add(dd)
    r.host.devm_add_action(lambda: unregister_dev_dax(dd), f"dev_dax:{dd.name}")
    return dd


def unregister_dev_dax(dd: DevDax) -> None:
    if not dd.registered:
        return
    r = dd.region
    r.host.devm_remove_action(f"dev_dax:{dd.name}")
    device_del(dd)
    if dd in r.devs:
        r.devs.remove(dd)
    r.dev_ida.discard(dd.id)
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
    ids: set = attrs.field(factory=set)

    def match(self, dev) -> bool:
        if not isinstance(dev, DevDax):
            return False
        if dev.name in self.ids:
            return True
        wants_kmem = dev.region.kmem_default
        return (self.name == "kmem") == wants_kmem if self.name in ("kmem", "device_dax") else False

    def probe(self, dev: DevDax) -> None:
        if dev.size == 0:
            raise KernelError(errno.ENXIO, f"{dev.name}: zero-sized device cannot be enabled")

    def new_id_store(self, buf: str):
        self.ids.add(strip_newline(buf))

    def remove_id_store(self, buf: str):
        self.ids.discard(strip_newline(buf))

