"""drivers/nvdimm/pmem.c: the ``nd_pmem`` driver (module nd_pmem), registered for namespaces and
their btt/pfn/dax claims.  No namespaces are modelled, so nothing binds to it.
"""

from __future__ import annotations

from typing import Optional

import attrs

from cxlsys.nvdimm.bus import NdDeviceDriver, NvdimmBusType
from cxlsys.uapi.ndctl import ND_DRIVER_NAMESPACE_IO, ND_DRIVER_NAMESPACE_PMEM


@attrs.define(eq=False, kw_only=True)
class NdPmemDriver(NdDeviceDriver):
    name: str = "nd_pmem"
    module: Optional[str] = "nd_pmem"
    type: int = ND_DRIVER_NAMESPACE_IO | ND_DRIVER_NAMESPACE_PMEM


def nd_pmem_init(bt: NvdimmBusType) -> None:
    bt.register_driver(NdPmemDriver())
