"""drivers/nvdimm: libnvdimm (the ``nd`` bus, ``ndbusN``/``ndctlN``, ``nmemN`` dimms and their
labels and security) as far as CXL persistent memory and ndctl's CXL tests reach it.

One module per kernel file: :mod:`.nd` (nd.h, nd-core.h, include/linux/libnvdimm.h),
:mod:`.core`, :mod:`.bus`, :mod:`.dimm_devs`, :mod:`.dimm`, :mod:`.label`, :mod:`.security`,
:mod:`.region` (the ``nd_region`` driver), :mod:`.pmem` (the ``nd_pmem`` driver); :mod:`.keys`
reaches the kernel keyring for security.c's key lookups.  :func:`libnvdimm_init` (core.c's module
init) is here, where every file it calls is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlsys.nvdimm.bus import NvdimmBusType, nvdimm_bus_init
from cxlsys.nvdimm.dimm import nvdimm_init
from cxlsys.nvdimm.region import nd_region_init

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.system import System


def libnvdimm_init(sys: "System") -> NvdimmBusType:
    """core.c's module init: the nd bus with its ``nd_bus`` driver, then the ``nvdimm`` and
    ``nd_region`` drivers (all of libnvdimm.ko)."""
    bt = nvdimm_bus_init(sys)
    nvdimm_init(bt)
    nd_region_init(bt)
    return bt
