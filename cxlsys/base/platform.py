"""drivers/base/platform.c: the platform bus, its devices and drivers.

cxl_test builds its whole fake hardware out of platform devices
(``cxl_acpi.0``, ``cxl_host_bridge.N``, ``cxl_root_port.N``, ``cxl_switch_uport.N``,
``cxl_switch_dport.N``, ``cxl_mem.N``, ``cxl_rcd.N``).  A topology's host devices are
instances of :class:`PlatformDevice`; the CXL core only looks at their names,
parents and companions.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import RO, RW, Attr, AttrGroup, Device
from cxlsys.kstrto import driver_set_override


@attrs.define(eq=False, kw_only=True)
class PlatformDevice(Device):
    """struct platform_device: ``<name>.<id>`` under /sys/devices/platform (or a parent)."""

    base_name: str = ""
    driver_override: Optional[str] = None
    fw_companion: Optional[str] = None      # 'physical_node' / 'firmware_node' self link (ACPI companion)
    waiting_for_supplier: bool = False       # fw_devlink file, present on devices with a firmware node
    extra_links: dict = attrs.field(factory=dict)
    dport_id: Optional[int] = None           # this device is a CXL downstream port with that port number
    cfg: object = attrs.field(default=None, repr=False)   # the topology entry it was built from

    groups: ClassVar[tuple[AttrGroup, ...]] = (       # subclasses extend it (cxl_test's MockMemDevice)
        AttrGroup([RO("modalias"), RW("driver_override"), RO("numa_node"), RO("waiting_for_supplier")],
                  is_visible="platform_attr_visible"),
    )

    def platform_attr_visible(self, attr: Attr) -> int:
        if attr.name == "numa_node":
            return attr.mode if self.numa_node >= 0 else 0
        if attr.name == "waiting_for_supplier":
            return attr.mode if self.waiting_for_supplier else 0
        return attr.mode

    def modalias(self) -> str:
        return f"platform:{self.base_name}"

    def modalias_show(self) -> str:
        return f"{self.modalias()}\n"

    def numa_node_show(self) -> str:
        return f"{self.numa_node}\n"

    def waiting_for_supplier_show(self) -> str:
        return "0\n"

    def driver_override_show(self) -> str:
        return f"{self.driver_override if self.driver_override is not None else '(null)'}\n"

    def driver_override_store(self, buf: str) -> None:
        self.driver_override = driver_set_override(buf, getattr(buf, "count_", len(buf)))

    def links(self) -> dict:
        out = dict(self.extra_links)
        if self.fw_companion:
            out[self.fw_companion] = self
        return out


@attrs.define(eq=False, kw_only=True)
class PlatformDriver(Driver):
    """Matches platform devices by base name (or driver_override)."""

    match_names: tuple = ()

    def match(self, dev: Device) -> bool:
        if not isinstance(dev, PlatformDevice):
            return False
        if dev.driver_override is not None:
            return dev.driver_override == self.name
        return dev.base_name in (self.match_names or (self.name,))
