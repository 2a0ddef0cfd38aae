"""drivers/cxl/core/pmem.c: the nvdimm bridge (``nvdimm-bridgeN`` below a root port), the
per-memdev ``pmemN`` (``struct cxl_nvdimm``) and ``pmem_regionN``.  Their drivers (cxl_pmem.ko,
drivers/cxl/pmem.c) are :mod:`cxlsys.cxl.pmem`: the bridge's registers the libnvdimm bus, the
``pmemN`` one the ``nmemN`` dimm."""

from __future__ import annotations

import errno
from typing import Any, Optional

import attrs

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
    nvdimm_bus: Any = attrs.field(default=None, repr=False)    # struct nvdimm_bus, while the driver is bound
    nd_desc: Any = attrs.field(default=None, repr=False)       # struct nvdimm_bus_descriptor

    def release(self) -> None:
        self.sys.nvdimm_bridge_ida.free(self.id)


@attrs.define(eq=False, kw_only=True)
class CxlNvdimm(CxlDevice):
    devtype = "cxl_nvdimm"
    cxl_type = C.CXL_DEVICE_NVDIMM
    bridge: Optional[CxlNvdimmBridge] = attrs.field(default=None, repr=False)    # cxlmd->cxl_nvb
    cxlmd: Any = attrs.field(default=None, repr=False)        # the memdev it bridges (its parent)
    dev_id: str = ""          # the nvdimm's dimm_id: the serial as "%llx" (its key is "nvdimm:<dev_id>")
    nvdimm: Any = attrs.field(default=None, repr=False)       # drvdata: the nmemN while bound


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
    nd = CxlNvdimm(name=f"pmem{memdev.id}", parent=memdev, sys=memdev.sys, bus=memdev.sys.cxl_bus, bridge=br,
                   cxlmd=memdev, dev_id=f"{memdev.mds.serial:x}")
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
