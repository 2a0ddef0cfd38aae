"""drivers/base/bus.c + dd.c: buses, drivers, bind/unbind and their sysfs files."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.device import RW, WO, Attr, Device, attr_node
from cxlsys.errors import KernelError
from cxlsys.kernfs import KDir, KLink, pure
from cxlsys.kstrto import kobject_synth_uevent_parse, strip_newline

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System


@attrs.define(eq=False, kw_only=True)
class Driver:
    """struct device_driver.  Subclasses implement match/probe/remove."""

    name: str
    module: Optional[str] = None          # /sys/module/<module> (driver's 'module' link)
    bus: Optional["Bus"] = attrs.field(default=None, repr=False)
    bindable: bool = True                 # has bind/unbind files (suppress_bind_attrs = False)
    autoprobe: bool = True                # False: attached only by a write to its own bind file
    extra_files: tuple = ()               # e.g. ('new_id', 'remove_id') for dax drivers

    def match(self, dev: Device) -> bool:
        return False

    def probe(self, dev: Device) -> None:
        """Raise KernelError to fail the probe."""

    def remove(self, dev: Device) -> None:
        """Undo probe; devres actions run after this."""

    def dev_groups(self, dev: Device) -> tuple:
        """``drv->dev_groups``: attribute groups the driver core adds to a device while it is bound
        to this driver (after probe, gone before remove)."""
        return ()

    # dd.c: really_probe / device_release_driver
    def attach(self, dev: Device) -> None:
        dev.driver = self                  # a field set: the tracker sees the device change
        dev.sys.changes.touch(self)        # ... and this driver's directory list it
        try:
            self.probe(dev)
        except KernelError:
            dev.release_devres()
            dev.driver = None
            raise

    def release(self, dev: Device) -> None:
        if dev.driver is not self:
            return
        self.remove(dev)
        dev.release_devres()
        dev.driver = None
        dev.sys.changes.touch(self)

    @property
    def the_bus(self) -> "Bus":
        """The bus this driver is registered on (``bus_register_driver`` sets it)."""
        assert self.bus is not None, f"driver {self.name} is not registered"
        return self.bus

    def bound_devices(self) -> list:
        return [d for d in self.the_bus.devices if d.driver is self]

    # ----- /sys/bus/<bus>/drivers/<drv>/ ---------------------------------------------
    def driver_attrs(self) -> list:
        """The driver's attribute files (driver_attribute): bind/unbind unless suppressed, the
        driver's own (``extra_files``: ``<name>_store`` methods), uevent."""
        out = [WO(f) for f in self.extra_files]
        if self.bindable:
            out = [Attr("bind", 0o200, None, _bind_store), Attr("unbind", 0o200, None, _unbind_store)] + out
        return out + [Attr("uevent", 0o200, None, _accept)]

    def kernfs_dir(self) -> KDir:
        return KDir(self._kernfs_children, owner=self)

    def kernfs_paths(self) -> list:
        return [f"bus/{self.the_bus.name}/drivers/{self.name}"]

    def _kernfs_children(self) -> dict:
        out: dict = {a.name: attr_node(self, a, a.mode) for a in self.driver_attrs()}
        if self.module:
            out["module"] = KLink(f"module/{self.module}")
        for d in self.bound_devices():
            out[d.name] = KLink(d.path)
        return out


def _bind_store(drv: Driver, buf: str) -> None:
    drv.the_bus.bind_store(drv, buf)


def _unbind_store(drv: Driver, buf: str) -> None:
    drv.the_bus.unbind_store(drv, buf)


@pure
def _accept(owner, buf: str) -> None:
    """``uevent`` of a bus or driver (bus_uevent_store / driver uevent_store): a synthetic event,
    nothing changes; kobject_synth_uevent() refuses a malformed one with EINVAL."""
    kobject_synth_uevent_parse(buf)


@attrs.define(eq=False, kw_only=True)
class Bus:
    name: str
    sys: "System" = attrs.field(repr=False)
    devices: list = attrs.field(factory=list, repr=False)
    drivers: dict = attrs.field(factory=dict, repr=False)
    drivers_autoprobe: bool = True
    extra_files: tuple = ()               # e.g. ('flush',) on the cxl bus

    def register_driver(self, drv: Driver) -> Driver:
        drv.bus = self
        self.drivers[drv.name] = drv
        self.sys.changes.touch(self)
        for dev in list(self.devices):
            if drv.autoprobe and dev.driver is None and drv.match(dev):
                self._try_probe(drv, dev)
        return drv

    def add_device(self, dev: Device) -> None:
        self.devices.append(dev)

    def remove_device(self, dev: Device) -> None:
        if dev in self.devices:
            self.devices.remove(dev)

    def find_device(self, name: str) -> Optional[Device]:
        for d in self.devices:
            if d.name == name:
                return d
        return None

    def probe_device(self, dev: Device) -> None:
        """bus_probe_device: first matching driver whose probe succeeds wins."""
        if dev.driver is not None:
            return
        for drv in self.drivers.values():
            if drv.autoprobe and drv.match(dev):
                if self._try_probe(drv, dev):
                    return

    def _try_probe(self, drv: Driver, dev: Device) -> bool:
        try:
            drv.attach(dev)
            return True
        except KernelError as e:
            # -ENODEV/-ENXIO "reject the match" quietly (pr_debug), anything else warns
            level = "debug" if e.errno in (errno.ENODEV, errno.ENXIO) else "warn"
            name = errno.errorcode.get(e.errno, e.errno)
            self.sys.klog.log(f"{drv.name} {dev.name}: probe failed: {e.reason} (-{name})", level)
            return False

    # ----- the sysfs files of /sys/bus/<bus>/drivers/<drv>/ ------------------------
    def bind_store(self, drv: Driver, buf: str) -> None:
        name = strip_newline(buf)
        dev = self.find_device(name)
        if dev is None or not drv.match(dev):
            raise KernelError(errno.ENODEV, f"{drv.name}: bind: no matching device {name!r}")
        if dev.driver is not None:
            raise KernelError(errno.EBUSY, f"{drv.name}: bind: {name} is already bound to {dev.driver.name}")
        drv.attach(dev)

    def unbind_store(self, drv: Driver, buf: str) -> None:
        name = strip_newline(buf)
        dev = self.find_device(name)
        if dev is None or dev.driver is not drv:
            raise KernelError(errno.ENODEV, f"{drv.name}: unbind: {name!r} is not bound to this driver")
        drv.release(dev)

    def drivers_probe_store(self, buf: str) -> None:
        """drivers_probe_store(): bus_find_device_by_name() finds nothing: ENODEV."""
        dev = self.find_device(strip_newline(buf))
        if dev is None:
            raise KernelError(errno.ENODEV, f"{self.name}: drivers_probe: no device {strip_newline(buf)!r}")
        self.probe_device(dev)

    def drivers_autoprobe_show(self) -> str:
        return f"{int(self.drivers_autoprobe)}\n"

    def drivers_autoprobe_store(self, buf: str) -> None:
        """drivers_autoprobe_store(): not kstrtobool: a first character ``0`` turns autoprobe off,
        anything else (``n``, ``off``, garbage) turns it on; never refused."""
        self.drivers_autoprobe = buf[:1] != "0"

    # ----- /sys/bus/<bus>/ ------------------------------------------------------------
    def bus_attrs(self) -> list:
        """The bus's attribute files (bus_attribute): the driver-core ones and the bus's own
        (``extra_files``: ``<name>_store`` methods, e.g. the cxl bus's ``flush``)."""
        return [RW("drivers_autoprobe"), WO("drivers_probe"), Attr("uevent", 0o200, None, _accept)] + \
            [WO(f) for f in self.extra_files]

    def kernfs_dir(self) -> KDir:
        return KDir(self._kernfs_children, owner=self)

    def kernfs_paths(self) -> list:
        return [f"bus/{self.name}", f"bus/{self.name}/devices", f"bus/{self.name}/drivers"]

    def _kernfs_children(self) -> dict:
        out: dict = {
            "devices": KDir(lambda: {d.name: KLink(d.path) for d in self.devices}, owner=self),
            "drivers": KDir(lambda: {n: d.kernfs_dir() for n, d in self.drivers.items()}, owner=self),
        }
        for a in self.bus_attrs():
            out[a.name] = attr_node(self, a, a.mode)
        return out
