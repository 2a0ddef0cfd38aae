"""drivers/cxl/core/pmem.c + drivers/cxl/pmem.c: nvdimm bridge, cxl_nvdimm, pmem regions."""

from __future__ import annotations

import errno
from typing import Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Device, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.port import CxlDevice, CxlPort
from cxlsys.errors import KernelError


@attrs.define(eq=False, kw_only=True)
class CxlNvdimmBridge(CxlDevice):
    devtype = "cxl_nvdimm_bridge"
    cxl_type = C.CXL_DEVICE_NVDIMM_BRIDGE
    id: int = 0
    port: CxlPort = attrs.field(repr=False)

    def release(self) -> None:
        self.sys.nvdimm_bridge_ida.free(self.id)


@attrs.define(eq=False, kw_only=True)
class CxlNvdimm(CxlDevice):
    devtype = "cxl_nvdimm"
    cxl_type = C.CXL_DEVICE_NVDIMM
    bridge: Optional[CxlNvdimmBridge] = attrs.field(default=None, repr=False)


@attrs.define(eq=False, kw_only=True)
class CxlPmemRegion(CxlDevice):
    devtype = "cxl_pmem_region"
    cxl_type = C.CXL_DEVICE_PMEM_REGION


def devm_cxl_add_nvdimm_bridge(host: Device, root: CxlPort) -> CxlNvdimmBridge:
    sys = root.sys
    bid = sys.nvdimm_bridge_ida.alloc()
    br = CxlNvdimmBridge(name=f"nvdimm-bridge{bid}", parent=root, sys=sys, bus=sys.cxl_bus, id=bid, port=root)
    device_add(br)

    host.devm_add_action(lambda: device_del(br), f"nvdimm_bridge:{br.name}")
    return br


def cxl_find_nvdimm_bridge(port: CxlPort) -> Optional[CxlNvdimmBridge]:
    root = port.root()
    for d in root.children.values():
        if isinstance(d, CxlNvdimmBridge):
            return d
    return None


def devm_cxl_add_nvdimm(memdev, endpoint_port: CxlPort) -> None:
    br = cxl_find_nvdimm_bridge(endpoint_port)
    if br is None:
        return
    nd = CxlNvdimm(name=f"pmem{memdev.id}", parent=memdev, sys=memdev.sys, bus=memdev.sys.cxl_bus, bridge=br)
    device_add(nd)
    memdev.devm_add_action(lambda: device_del(nd), f"nvdimm:{nd.name}")


def devm_cxl_add_pmem_region(cxlr) -> None:
    br = cxl_find_nvdimm_bridge(cxlr.root.port)
    if br is None:
        raise KernelError(errno.ENODEV, f"{cxlr.name}: no nvdimm bridge for {cxlr.root.port.name}")
    if br.driver is None:
        raise KernelError(errno.ENXIO, f"{cxlr.name}: {br.name} is not enabled")
    pr = CxlPmemRegion(name=f"pmem_region{cxlr.id}", parent=cxlr, sys=cxlr.sys, bus=cxlr.sys.cxl_bus)
    device_add(pr)
    cxlr.devm_add_action(lambda: device_del(pr), f"pmem_region:{pr.name}")


@attrs.define(eq=False, kw_only=True)
class _TypeDriver(Driver):
    dev_type: type = Device

    def match(self, dev) -> bool:
        return isinstance(dev, self.dev_type)


def pmem_drivers():
    return [
        _TypeDriver(name="cxl_nvdimm_bridge", module="cxl_pmem", dev_type=CxlNvdimmBridge, bindable=False),
        _TypeDriver(name="cxl_nvdimm", module="cxl_pmem", dev_type=CxlNvdimm, bindable=False),
        _TypeDriver(name="cxl_pmem_region", module="cxl_pmem", dev_type=CxlPmemRegion, bindable=False),
    ]
