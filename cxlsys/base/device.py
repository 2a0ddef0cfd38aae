"""drivers/base/core.c + dd.c + devres.c: devices, attribute groups, driver binding.

Attributes are declared as tables next to the object that owns them, like the
kernel's DEVICE_ATTR_* groups::

    class CxlDecoder(Device):
        groups = (AttrGroup([RO("interleave_ways"), ADMIN_RO("start")]),)

        def interleave_ways_show(self): return f"{self.interleave_ways}\\n"

``RO("x")`` looks up ``x_show`` on the device, ``RW("x")`` also ``x_store``.  A
group may be a named subdirectory and may have an ``is_visible`` method name
returning the effective mode (0 hides the attribute), evaluated on every lookup
so visibility follows the model's state like ``sysfs_update_group`` does.
"""

from __future__ import annotations

import errno
import functools
from typing import TYPE_CHECKING, Callable, ClassVar, Iterable, Optional, Union

import attrs

from cxlsys.errors import KernelError
from cxlsys.kernfs import ANY, CONST, OWN, KDir, KFile, KLink, is_pure, pure
from cxlsys.kstrto import kobject_synth_uevent_parse

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.base.bus import Bus, Driver
    from cxlsys.system import System


@attrs.define(frozen=True)
class Attr:
    name: str
    mode: int
    show: Optional[Union[str, Callable]] = None
    store: Optional[Union[str, Callable]] = None
    scope: str = ANY        # what the value depends on (cxlsys.kernfs CONST / OWN / ANY)


def RO(name: str, show: Optional[str] = None, scope: str = ANY) -> Attr:
    return Attr(name, 0o444, show or f"{name}_show", scope=scope)


def ADMIN_RO(name: str, show: Optional[str] = None, scope: str = ANY) -> Attr:
    return Attr(name, 0o400, show or f"{name}_show", scope=scope)


def RW(name: str, show: Optional[str] = None, store: Optional[str] = None, scope: str = ANY) -> Attr:
    return Attr(name, 0o644, show or f"{name}_show", store or f"{name}_store", scope=scope)


def WO(name: str, store: Optional[str] = None) -> Attr:
    return Attr(name, 0o200, None, store or f"{name}_store")


def _attr_tuple(items: Iterable[Attr]) -> tuple:
    return tuple(items)


_field = attrs.field      # (AttrGroup has a field named attrs)


@attrs.define(frozen=True)
class AttrGroup:
    attrs: tuple = attrs.field(converter=_attr_tuple)
    name: Optional[str] = None
    is_visible: Optional[str] = None   # method name: (attr) -> mode (0 = hidden)
    modes: tuple = _field(init=False)     # the declared modes (what a group without is_visible shows)

    def __attrs_post_init__(self):
        object.__setattr__(self, "modes", tuple(a.mode for a in self.attrs))


def call(dev, fn, *args):
    if isinstance(fn, str):
        return getattr(dev, fn)(*args)
    return fn(dev, *args)


def _bound(owner, fn):
    """An attribute's show/store bound to its owner (``fn`` is a method name or ``fn(owner, ...)``)."""
    if fn is None:
        return None
    return getattr(owner, fn) if isinstance(fn, str) else functools.partial(fn, owner)


def attr_node(owner, a: Attr, mode: int) -> KFile:
    """The kernfs file of attribute ``a`` of ``owner`` (a device, bus or driver)."""
    store = _bound(owner, a.store)
    return KFile(mode, _bound(owner, a.show), store, owner=owner,
                 pure=is_pure(a.store if callable(a.store) else store), scope=a.scope)


@attrs.define(eq=False, kw_only=True)
class Device:
    """struct device: a directory in /sys/devices, maybe on a bus, maybe bound."""

    # class-level description, overridden by subclasses
    groups: ClassVar[tuple] = ()
    devtype: ClassVar[Optional[str]] = None      # dev->type->name (shown as DEVTYPE / devtype)
    show_devtype_file: ClassVar[bool] = False     # CXL bus devices other than memN show devtype+modalias
    has_uevent: ClassVar[bool] = True

    name: str
    parent: Optional["Device"] = None
    sys: "System" = attrs.field(repr=False)
    bus: Optional["Bus"] = attrs.field(default=None, repr=False)
    driver: Optional["Driver"] = attrs.field(default=None, repr=False)
    children: dict = attrs.field(factory=dict, repr=False)
    registered: bool = False
    devres: list = attrs.field(factory=list, repr=False)   # release actions of the bound driver
    numa_node: int = -1
    devt: Optional[tuple] = None                            # (major, minor) for char devices
    devname: Optional[str] = None                           # /dev name for uevent (DEVNAME=)

    def __setattr__(self, name: str, value) -> None:
        """Every field assignment of a registered device is reported to the change tracker: its
        directory (attribute visibility, links) and values may have changed."""
        object.__setattr__(self, name, value)
        if getattr(self, "registered", False):      # (unset during __init__)
            self.sys.changes.touch(self)

    # ----- identity and paths -------------------------------------------------
    @property
    def path(self) -> str:
        """sysfs path relative to /sys, e.g. 'devices/platform/cxl_acpi.0/root0'."""
        if self.parent is None:
            return f"devices/{self.name}"
        return f"{self.parent.path}/{self.name}"

    def ancestors(self):
        d = self.parent
        while d is not None:
            yield d
            d = d.parent

    def is_descendant_of(self, other: "Device") -> bool:
        return any(a is other for a in self.ancestors())

    def driver_name_for_log(self) -> str:
        if self.driver is not None:
            return self.driver.name
        if self.bus is not None:
            return self.bus.name
        return "device"

    # ----- sysfs content hooks --------------------------------------------------
    def links(self) -> dict:
        """Extra symlinks in this device's directory: name -> Device or '/sys'-relative path."""
        return {}

    def sysfs_notify(self, attr: str) -> None:
        """sysfs_notify(&dev->kobj, group, attr): wake poll(2)ers of ``attr`` (``"security/state"``)."""
        self.sys.changes.notify(f"{self.path}/{attr}")

    def linked_from(self) -> tuple:
        """Other devices whose directories hold a link to this one (besides the bus and driver
        directories): they list differently when this device comes or goes."""
        return ()

    # ----- kernfs -----------------------------------------------------------------
    def kernfs_dir(self) -> KDir:
        """This device's directory: attribute files, named groups, child devices, links."""
        return KDir(self._kernfs_children, owner=self, shape=self._kernfs_shape)

    def kernfs_paths(self) -> list:
        """The directories this device owns (itself and its named groups), for change tracking."""
        p = self.path
        return [p] + [f"{p}/{g.name}" for g in self.all_groups() if g.name is not None]

    def _group_nodes(self, group: AttrGroup) -> dict:
        out = {}
        for a in group.attrs:
            mode = self.attr_mode(group, a)
            if mode:
                out[a.name] = attr_node(self, a, mode)
        return out

    def _group_shape(self, group: AttrGroup) -> tuple:
        if group.is_visible is None:
            return group.modes
        return tuple([self.attr_mode(group, a) for a in group.attrs])

    def _kernfs_shape(self) -> tuple:
        """What ``_kernfs_children`` depends on, without building nodes: visibility, children (the
        objects themselves), driver, links."""
        out: list = []
        for g in self.all_groups():
            out.append(self._group_shape(g) if g.name is None else self.group_visible(g))
        out.append(tuple(self.children.items()))
        out.append((self.driver, self.bus))
        out.append(tuple(self.links().items()))
        return tuple(out)

    def _kernfs_children(self) -> dict:
        out: dict = {}
        for g in self.all_groups():
            if g.name is None:
                out.update(self._group_nodes(g))
            elif self.group_visible(g):
                out[g.name] = KDir(functools.partial(self._group_nodes, g), owner=self,
                                   shape=functools.partial(self._group_shape, g))
        for name, child in self.children.items():
            out[name] = child.kernfs_dir()
        if self.driver is not None and self.bus is not None:
            out["driver"] = KLink(f"bus/{self.bus.name}/drivers/{self.driver.name}")
        if self.bus is not None:
            out["subsystem"] = KLink(f"bus/{self.bus.name}")
        for name, tgt in self.links().items():
            out[name] = KLink(tgt.path if isinstance(tgt, Device) else tgt)
        return out

    def modalias(self) -> Optional[str]:
        return None

    def uevent_vars(self) -> list:
        out = []
        if self.devt is not None:
            out += [f"MAJOR={self.devt[0]}", f"MINOR={self.devt[1]}", f"DEVNAME={self.devname or self.name}"]
        if self.devtype:
            out.append(f"DEVTYPE={self.devtype}")
        if self.driver is not None:
            out.append(f"DRIVER={self.driver.name}")
        m = self.modalias()
        if m:
            out.append(f"MODALIAS={m}")
        return out

    def all_groups(self) -> tuple:
        key = (self.has_uevent, self.devt is not None, self.show_devtype_file)
        base = _BASE_GROUPS.get(key)
        if base is None:
            base = _BASE_GROUPS[key] = (AttrGroup(_base_attrs(*key)),)
        drv = tuple(self.driver.dev_groups(self)) if self.driver is not None else ()
        return base + tuple(self.groups) + drv

    def group_visible(self, group: AttrGroup) -> bool:
        """A named group's directory exists unless the whole group is hidden (SYSFS_GROUP_INVISIBLE)."""
        return True

    def attr_mode(self, group: AttrGroup, attr: Attr) -> int:
        if group.is_visible is None:
            return attr.mode
        return call(self, group.is_visible, attr)

    # ----- devres (devm_*) ------------------------------------------------------
    def devm_add_action(self, fn: Callable[[], None], what: str = "") -> None:
        """Run ``fn`` when this device's driver is unbound (devm_add_action_or_reset)."""
        self.devres.append((fn, what))

    def devm_remove_action(self, what: str) -> bool:
        for i, (fn, w) in enumerate(self.devres):
            if w == what:
                del self.devres[i]
                return True
        return False

    def release(self) -> None:
        """->release(): called once the device is unregistered."""

    def release_devres(self) -> None:
        while self.devres:
            fn, _ = self.devres.pop()
            fn()


_BASE_GROUPS: dict = {}      # (uevent, dev, devtype+modalias) -> the core's attribute group


def _base_attrs(uevent: bool, dev: bool, devtype: bool) -> list:
    """The attributes the driver core gives every device (device_add_attrs, dev_attr_uevent/dev)."""
    out = []
    if uevent:
        out.append(Attr("uevent", 0o644, _uevent_show, _uevent_store, scope=OWN))
    if dev:
        out.append(Attr("dev", 0o444, _dev_show, scope=OWN))
    if devtype:
        out.append(Attr("devtype", 0o444, _devtype_show, scope=CONST))
        out.append(Attr("modalias", 0o444, _modalias_show, scope=OWN))
    return out


def _uevent_show(dev: Device) -> str:
    v = dev.uevent_vars()
    return "".join(f"{x}\n" for x in v)


@pure
def _uevent_store(dev: Device, buf: str) -> None:
    """uevent_store(): kobject_synth_uevent() (an action word, optionally a UUID and KEY=value
    arguments), EINVAL for anything else."""
    try:
        kobject_synth_uevent_parse(buf)
    except KernelError as e:
        raise KernelError(e.errno, f"{dev.name}: uevent: {e.reason}") from e


def _dev_show(dev: Device) -> str:
    assert dev.devt is not None          # the attribute exists only for char devices
    return f"{dev.devt[0]}:{dev.devt[1]}\n"


def _devtype_show(dev: Device) -> str:
    return f"{dev.devtype}\n"


def _modalias_show(dev: Device) -> str:
    return f"{dev.modalias()}\n"


# ----- device_add / device_del --------------------------------------------------

def device_add(dev: Device) -> Device:
    """Register ``dev`` below its parent and on its bus, then let the bus probe it."""
    if dev.parent is not None:
        if dev.name in dev.parent.children:
            raise KernelError(errno.EEXIST, f"{dev.parent.name}: duplicate child {dev.name}")
        dev.parent.children[dev.name] = dev
    else:
        dev.sys.top_devices[dev.name] = dev
    dev.registered = True
    if dev.bus is not None:
        dev.bus.add_device(dev)
    dev.sys.changes.device_added(dev, _listers(dev))
    if dev.bus is not None and dev.bus.drivers_autoprobe:
        dev.bus.probe_device(dev)
    return dev


def device_del(dev: Device) -> None:
    """Unregister ``dev``: unbind its driver (devres), then any children left (newest first), then itself."""
    if not dev.registered:
        return
    # the driver goes first: its devres actions unregister what it created below
    if dev.driver is not None:
        dev.driver.release(dev)
    for child in reversed(list(dev.children.values())):
        device_del(child)
    path = dev.path
    listers = _listers(dev)
    if dev.bus is not None:
        dev.bus.remove_device(dev)
    if dev.parent is not None:
        dev.parent.children.pop(dev.name, None)
    else:
        dev.sys.top_devices.pop(dev.name, None)
    dev.registered = False
    dev.release()
    dev.sys.changes.device_removed(dev, path, listers)


def _listers(dev: Device) -> tuple:
    """The owners of every directory that lists ``dev``: its parent (or /sys/devices), its bus's
    ``devices/``, /sys/dev/char for a char device, and devices that link to it."""
    out: list[object] = [dev.parent if dev.parent is not None else TOP_DEVICES]
    if dev.bus is not None:
        out.append(dev.bus)
    if dev.devt is not None:
        out.append(DEV_CHAR)
    cls = getattr(dev, "dev_class", None)
    if cls:
        out += [CLASSES, SysfsDir(f"class/{cls}")]
    return tuple(out) + tuple(dev.linked_from())


@attrs.frozen
class SysfsDir:
    """A directory of /sys owned by no device (``devices``, ``dev/char``, ``module``)."""

    path: str

    def kernfs_paths(self) -> list:
        return [self.path]


TOP_DEVICES = SysfsDir("devices")
DEV_CHAR = SysfsDir("dev/char")
CLASSES = SysfsDir("class")          # /sys/class/<class>/<dev>: links to devices whose dev_class is set
