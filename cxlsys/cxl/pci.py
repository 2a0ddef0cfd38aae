"""drivers/cxl/pci.c: the cxl_pci driver — binds CXL memory-device class functions and adds ``memN``.

Its probe is :meth:`cxlsys.machine.Machine.probe_memdev`: the mailbox core's probe sequence
(enumerate the CEL, identify, partition info, add the memdev, firmware upload, sanitize notifier,
event records) against the function's device model — for now cxl_test's mock memory device
(cxlsys/cxl_test/mem.py) for every topology, so a QEMU-style PCI function's mailbox answers like
the mock's (its capacities, serial, LSA size, payload size and firmware revision from the topology).
"""

from __future__ import annotations

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.pci import PciDevice

PCI_CLASS_MEMORY_CXL = 0x0502          # include/linux/pci_ids.h
CXL_MEMORY_PROGIF = 0x10


@attrs.define(eq=False, kw_only=True)
class CxlPciDriver(Driver):
    """Matches the topology's memory-device PCI functions; probe reads the device and adds memN."""

    name: str = "cxl_pci"
    module: str = "cxl_pci"

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return isinstance(dev, PciDevice) and dev.pci_class == (PCI_CLASS_MEMORY_CXL << 8 | CXL_MEMORY_PROGIF) \
            and m is not None and dev.name in m.memdev_hosts

    def probe(self, pdev) -> None:
        pdev.sys.machine.probe_memdev(pdev)
