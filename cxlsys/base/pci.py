"""drivers/pci (just enough): PCI functions and host bridges as hosts of CXL ports and memdevs.

The cxl_pci driver that binds CXL memory devices is drivers/cxl/pci.c: :mod:`cxlsys.cxl.pci`.
"""

from __future__ import annotations

import attrs

from cxlsys.base.device import RO, Attr, AttrGroup, Device


@attrs.define(eq=False, kw_only=True)
class PciDevice(Device):
    vendor: int = 0x8086
    device: int = 0x7075
    pci_class: int = 0x060400
    cfg: object = attrs.field(default=None, repr=False)
    dport_id: int | None = None

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
    dport_id: int | None = None
