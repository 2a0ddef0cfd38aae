"""drivers/dax/cxl.c + the cxl_dax_region device of drivers/cxl/core/region.c."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.bus import Driver
from cxlsys.base.device import Device, device_add, device_del
from cxlsys.cxl import cxl as C
from cxlsys.cxl.core.port import CxlDevice
from cxlsys.dax.bus import DaxRegion, DaxRegionAttrs, devm_create_dev_dax

if TYPE_CHECKING:  # pragma: no cover - forward declaration (region.py sits above this file)
    from cxlsys.cxl.core.region import CxlRegion


@attrs.define(eq=False, kw_only=True)
class CxlDaxRegion(DaxRegionAttrs, CxlDevice):
    devtype = "cxl_dax_region"
    cxl_type = C.CXL_DEVICE_DAX_REGION
    cxlr: CxlRegion = attrs.field(repr=False)
    dax_region: Optional[DaxRegion] = attrs.field(default=None, repr=False)

    groups = (DaxRegionAttrs.dax_region_group,)


def devm_cxl_add_dax_region(cxlr: CxlRegion) -> CxlDaxRegion:
    dr = CxlDaxRegion(name=f"dax_region{cxlr.id}", parent=cxlr, sys=cxlr.sys, bus=cxlr.sys.cxl_bus, cxlr=cxlr)
    device_add(dr)
    cxlr.devm_add_action(lambda: device_del(dr), f"dax_region:{dr.name}")
    return dr


@attrs.define(eq=False, kw_only=True)
class CxlDaxRegionDriver(Driver):
    name: str = "cxl_dax_region"
    module: str = "dax_cxl"
    bindable: bool = False

    def match(self, dev) -> bool:
        return isinstance(dev, CxlDaxRegion)

    def probe(self, dr: Device) -> None:
        assert isinstance(dr, CxlDaxRegion)     # match() accepts cxl_dax_region devices only
        cxlr = dr.cxlr
        assert cxlr.hpa_start is not None       # only a committed region gets a dax_region
        nid = dr.sys.target_node_of(cxlr.hpa_start)
        dr.dax_region = DaxRegion(id=cxlr.id, host=dr, start=cxlr.hpa_start, size=cxlr.hpa_size,
                                  target_node=nid, kmem_default=True)
        devm_create_dev_dax(dr.dax_region, cxlr.hpa_size, memmap_on_memory=True)
        dr.devm_add_action(lambda: setattr(dr, "dax_region", None), "dax_region")

    def remove(self, dr: Device) -> None:
        pass
