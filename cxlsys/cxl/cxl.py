"""drivers/cxl/cxl.h: constants, interleave encodings and decoder flags."""

from __future__ import annotations

import errno

from cxlsys.errors import KernelError

SZ_256M = 256 << 20
SZ_4K = 4096

# modalias types (cxl.h CXL_DEVICE_*)
CXL_DEVICE_NVDIMM_BRIDGE = 1
CXL_DEVICE_NVDIMM = 2
CXL_DEVICE_PORT = 3
CXL_DEVICE_ROOT = 4
CXL_DEVICE_MEMORY_EXPANDER = 5
CXL_DEVICE_REGION = 6
CXL_DEVICE_PMEM_REGION = 7
CXL_DEVICE_DAX_REGION = 8
CXL_DEVICE_PMU = 9

# decoder flags
CXL_DECODER_F_RAM = 1 << 0
CXL_DECODER_F_PMEM = 1 << 1
CXL_DECODER_F_TYPE2 = 1 << 2
CXL_DECODER_F_TYPE3 = 1 << 3
CXL_DECODER_F_LOCK = 1 << 4
CXL_DECODER_F_ENABLE = 1 << 5

CXL_DECODER_DEVMEM = 2     # accelerator (type 2)
CXL_DECODER_HOSTONLYMEM = 3  # expander (type 3)

# endpoint decoder modes
MODE_NONE, MODE_RAM, MODE_PMEM, MODE_MIXED, MODE_DEAD = "none", "ram", "pmem", "mixed", "dead"

# CFMWS restriction bits (ACPI CEDT)
ACPI_CEDT_CFMWS_RESTRICT_TYPE2 = 1 << 0
ACPI_CEDT_CFMWS_RESTRICT_TYPE3 = 1 << 1
ACPI_CEDT_CFMWS_RESTRICT_VOLATILE = 1 << 2
ACPI_CEDT_CFMWS_RESTRICT_PMEM = 1 << 3
ACPI_CEDT_CFMWS_RESTRICT_FIXED = 1 << 4

ARITH_MODULO, ARITH_XOR = 0, 1

_EIW = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4, 3: 8, 6: 9, 12: 10}
_EIW_REV = {v: k for k, v in _EIW.items()}


def ways_to_eiw(ways: int) -> int:
    if ways not in _EIW:
        raise KernelError(errno.EINVAL, f"interleave ways {ways} not encodable")
    return _EIW[ways]


def eiw_to_ways(eiw: int) -> int:
    if eiw not in _EIW_REV:
        raise KernelError(errno.EINVAL, f"interleave ways encoding {eiw} invalid")
    return _EIW_REV[eiw]


def granularity_to_eig(gran: int) -> int:
    if gran < 256 or gran > 16384 or gran & (gran - 1):
        raise KernelError(errno.EINVAL, f"interleave granularity {gran} not encodable")
    return gran.bit_length() - 1 - 8


def eig_to_granularity(eig: int) -> int:
    if eig < 0 or eig > 6:
        raise KernelError(errno.EINVAL, f"interleave granularity encoding {eig} invalid")
    return 256 << eig


def restrictions_to_flags(restrictions: int) -> int:
    flags = CXL_DECODER_F_ENABLE
    if restrictions & ACPI_CEDT_CFMWS_RESTRICT_TYPE2:
        flags |= CXL_DECODER_F_TYPE2
    if restrictions & ACPI_CEDT_CFMWS_RESTRICT_TYPE3:
        flags |= CXL_DECODER_F_TYPE3
    if restrictions & ACPI_CEDT_CFMWS_RESTRICT_VOLATILE:
        flags |= CXL_DECODER_F_RAM
    if restrictions & ACPI_CEDT_CFMWS_RESTRICT_PMEM:
        flags |= CXL_DECODER_F_PMEM
    if restrictions & ACPI_CEDT_CFMWS_RESTRICT_FIXED:
        flags |= CXL_DECODER_F_LOCK
    return flags
