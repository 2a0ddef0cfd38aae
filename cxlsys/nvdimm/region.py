"""drivers/nvdimm/region.c: the ``nd_region`` driver, registered as libnvdimm registers it.

The model creates no nd regions (``cxl_pmem_region`` does not call nvdimm_pmem_region_create()
yet), so nothing binds to it: ``ndctl disable-region -b cxl_test all`` finds no region and says
"disabled 0 regions".
"""

from __future__ import annotations

import attrs

from cxlsys.nvdimm.bus import NdDeviceDriver, NvdimmBusType
from cxlsys.uapi.ndctl import ND_DRIVER_REGION_BLK, ND_DRIVER_REGION_PMEM


@attrs.define(eq=False, kw_only=True)
class NdRegionDriver(NdDeviceDriver):
    name: str = "nd_region"
    type: int = ND_DRIVER_REGION_PMEM | ND_DRIVER_REGION_BLK


def nd_region_init(bt: NvdimmBusType) -> None:
    bt.register_driver(NdRegionDriver())
