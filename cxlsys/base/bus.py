"""drivers/base/bus.c + dd.c: buses, drivers, bind/unbind and their sysfs files."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.device import Device
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, strip_newline

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System


@attrs.define(eq=False, kw_only=True)
class Driver:
    """struct device_driver.  Subclasses implement match/probe/remove."""

    name: str
    module: Optional[str] = None          # /sys/module/<module> (driver's 'module' link)
    bus: Optional["Bus"] = attrs.field(default=None, repr=False)
    bindable: bool = True                 # has bind/unbind files (suppress_bind_attrs = False)
    extra_files: tuple = ()               # e.g. ('new_id', 'remove_id') for dax drivers

    def match(self, dev: Device) -> bool:
        return False

    def probe(self, dev: Device) -> None:
        """Raise KernelError to fail the probe."""

    def remove(self, dev: Device) -> None:
        """Undo probe; devres actions run after this."""

    # dd.c: really_probe / device_release_driver
    def attach(self, dev: Device) -> None:
        dev.driver = self
        try:
            self.probe(dev)
        except KernelError:
            dev.release_devres()
            dev.driver = None
            raise
        dev.sys.changed()

    def release(self, dev: Device) -> None:
        if dev.driver is not self:
            return
        self.remove(dev)
        dev.release_devres()
        dev.driver = None
        dev.sys.changed()

    def bound_devices(self) -> list:
        return [d for d in self.bus.devices if d.driver is self]


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
        self.sys.changed()
        for dev in list(self.devices):
            if dev.driver is None and drv.match(dev):
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
            if drv.match(dev):
                if self._try_probe(drv, dev):
                    return

    def _try_probe(self, drv: Driver, dev: Device) -> bool:
        try:
            drv.attach(dev)
            return True
        except KernelError as e:
            # -ENODEV/-ENXIO "reject the match" quietly (pr_debug), anything else warns
            level = "debug" if e.errno in (errno.ENODEV, errno.ENXIO) else "warn"
            self.sys.klog.log(f"{drv.name} {dev.name}: probe failed: {e.reason} (-{errno.errorcode.get(e.errno, e.errno)})", level)
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
        dev = self.find_device(strip_newline(buf))
        if dev is None:
            raise KernelError(errno.EINVAL, f"{self.name}: drivers_probe: no device {buf.strip()!r}")
        self.probe_device(dev)

    def drivers_autoprobe_show(self) -> str:
        return f"{int(self.drivers_autoprobe)}\n"

    def drivers_autoprobe_store(self, buf: str) -> None:
        self.drivers_autoprobe = kstrtobool(buf)
