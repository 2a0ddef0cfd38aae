"""drivers/pci (just enough): PCI functions as hosts of CXL ports and memdevs, and cxl_pci."""

from __future__ import annotations

from typing import Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import RO, AttrGroup, Attr, Device


@attrs.define(eq=False, kw_only=True)
class PciDevice(Device):
    vendor: int = 0x8086
    device: int = 0x7075
    pci_class: int = 0x060400
    cfg: object = attrs.field(default=None, repr=False)
    dport_id: Optional[int] = None

    groups = (AttrGroup([RO("vendor"), RO("device"), RO("class", "class_show"), RO("numa_node"), RO("modalias")],
                        is_visible="pci_visible"),)

    def pci_visible(self, attr: Attr) -> int:
        return attr.mode      # numa_node is shown (-1 when none) on NUMA kernels

    def modalias(self):
        return (f"pci:v{self.vendor:08X}d{self.device:08X}sv{0:08X}sd{0:08X}"
                f"bc{self.pci_class >> 16:02X}sc{(self.pci_class >> 8) & 0xff:02X}i{self.pci_class & 0xff:02X}")

    def modalias_show(self):
        return self.modalias() + "\n"

    def vendor_show(self):
        return f"{self.vendor:#06x}\n"

    def device_show(self):
        return f"{self.device:#06x}\n"

    def class_show(self):
        return f"{self.pci_class:#08x}\n"

    def numa_node_show(self):
        return f"{self.numa_node}\n"

    def uevent_vars(self):
        out = super().uevent_vars()
        return [f"PCI_CLASS={self.pci_class:X}", f"PCI_ID={self.vendor:04X}:{self.device:04X}",
                f"PCI_SLOT_NAME={self.name}"] + out


@attrs.define(eq=False, kw_only=True)
class PciRoot(Device):
    """``pciDDDD:BB``: a PCI host bridge (root bus) directory."""

    cfg: object = attrs.field(default=None, repr=False)
    dport_id: Optional[int] = None


@attrs.define(eq=False, kw_only=True)
class CxlPciDriver(Driver):
    """drivers/cxl/pci.c: binds CXL memory-device class functions (0x050210) and adds memN."""

    name: str = "cxl_pci"
    module: str = "cxl_pci"

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return isinstance(dev, PciDevice) and dev.pci_class == 0x050210 and m is not None \
            and dev.name in m.memdev_hosts

    def probe(self, pdev) -> None:
        pdev.sys.machine.probe_memdev(pdev)
