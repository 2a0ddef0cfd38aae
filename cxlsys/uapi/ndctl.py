"""include/uapi/linux/ndctl.h (Linux 6.12): libnvdimm's ioctl numbers, command payloads, device
types and the names ``commands`` files print.

Payloads are ``__packed`` little-endian structs; each is a :mod:`struct` format here (the
variable-length tail — ``out_buf[]``/``in_buf[]`` — is not part of the format, its size comes from
``in_length``).  An ioctl number is ``_IOWR('N', ND_CMD_*, struct ...)``; the kernel itself only
looks at ``_IOC_NR()`` of it.
"""

from __future__ import annotations

import struct

# ---------------------------------------------------------------- asm-generic/ioctl.h
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE, _IOC_READ = 1, 2


def _IOC(direction: int, typ: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (typ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IOWR(typ: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, typ, nr, size)


def _IOC_NR(cmd: int) -> int:
    return (cmd >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def _IOC_TYPE(cmd: int) -> int:
    return (cmd >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


# ---------------------------------------------------------------- payloads (struct formats)
ND_CMD_DIMM_FLAGS_FMT = "<II"            # struct nd_cmd_dimm_flags: status, flags
ND_CMD_GET_CONFIG_SIZE_FMT = "<III"      # struct nd_cmd_get_config_size: status, config_size, max_xfer
ND_CMD_GET_CONFIG_DATA_HDR_FMT = "<III"  # struct nd_cmd_get_config_data_hdr: in_offset, in_length, status
ND_CMD_SET_CONFIG_HDR_FMT = "<II"        # struct nd_cmd_set_config_hdr: in_offset, in_length (+ in_buf, status)
ND_CMD_VENDOR_HDR_FMT = "<II"            # struct nd_cmd_vendor_hdr: opcode, in_length
ND_CMD_VENDOR_TAIL_FMT = "<II"           # struct nd_cmd_vendor_tail: status, out_length
ND_CMD_ARS_CAP_FMT = "<QQIIIHH"          # address, length, status, max_ars_out, clear_err_unit, flags, reserved
ND_CMD_ARS_START_FMT = "<QQHB5xII"       # address, length, type, flags, reserved[5], status, scrub_time
ND_CMD_ARS_STATUS_FMT = "<IIQQQQHHI"     # status, out_length, address, length, restart_*, type, flags, num_records
ND_CMD_CLEAR_ERROR_FMT = "<QQI4xQ"       # address, length, status, reserved[4], cleared
ND_CMD_PKG_FMT = "<QQII36xI"             # nd_family, nd_command, nd_size_in, nd_size_out, reserved2[9], nd_fw_size

SIZEOF_ND_CMD_DIMM_FLAGS = struct.calcsize(ND_CMD_DIMM_FLAGS_FMT)                  # 8
SIZEOF_ND_CMD_GET_CONFIG_SIZE = struct.calcsize(ND_CMD_GET_CONFIG_SIZE_FMT)        # 12
SIZEOF_ND_CMD_GET_CONFIG_DATA_HDR = struct.calcsize(ND_CMD_GET_CONFIG_DATA_HDR_FMT)  # 12
SIZEOF_ND_CMD_SET_CONFIG_HDR = struct.calcsize(ND_CMD_SET_CONFIG_HDR_FMT)          # 8
SIZEOF_ND_CMD_VENDOR_HDR = struct.calcsize(ND_CMD_VENDOR_HDR_FMT)                  # 8
SIZEOF_ND_CMD_ARS_CAP = struct.calcsize(ND_CMD_ARS_CAP_FMT)                        # 32
SIZEOF_ND_CMD_ARS_START = struct.calcsize(ND_CMD_ARS_START_FMT)                    # 32
SIZEOF_ND_CMD_ARS_STATUS = struct.calcsize(ND_CMD_ARS_STATUS_FMT)                  # 48
SIZEOF_ND_CMD_CLEAR_ERROR = struct.calcsize(ND_CMD_CLEAR_ERROR_FMT)                # 32
SIZEOF_ND_CMD_PKG = struct.calcsize(ND_CMD_PKG_FMT)                                # 64

# ---------------------------------------------------------------- commands
ND_CMD_IMPLEMENTED = 0
# bus commands
ND_CMD_ARS_CAP = 1
ND_CMD_ARS_START = 2
ND_CMD_ARS_STATUS = 3
ND_CMD_CLEAR_ERROR = 4
# per-dimm commands
ND_CMD_SMART = 1
ND_CMD_SMART_THRESHOLD = 2
ND_CMD_DIMM_FLAGS = 3
ND_CMD_GET_CONFIG_SIZE = 4
ND_CMD_GET_CONFIG_DATA = 5
ND_CMD_SET_CONFIG_DATA = 6
ND_CMD_VENDOR_EFFECT_LOG_SIZE = 7
ND_CMD_VENDOR_EFFECT_LOG = 8
ND_CMD_VENDOR = 9
ND_CMD_CALL = 10

ND_ARS_VOLATILE = 1
ND_ARS_PERSISTENT = 2
ND_ARS_RETURN_PREV_DATA = 1 << 1
ND_CONFIG_LOCKED = 1

_BUS_CMD_NAMES = {ND_CMD_ARS_CAP: "ars_cap", ND_CMD_ARS_START: "ars_start", ND_CMD_ARS_STATUS: "ars_status",
                  ND_CMD_CLEAR_ERROR: "clear_error", ND_CMD_CALL: "cmd_call"}
_DIMM_CMD_NAMES = {ND_CMD_SMART: "smart", ND_CMD_SMART_THRESHOLD: "smart_thresh", ND_CMD_DIMM_FLAGS: "flags",
                   ND_CMD_GET_CONFIG_SIZE: "get_size", ND_CMD_GET_CONFIG_DATA: "get_data",
                   ND_CMD_SET_CONFIG_DATA: "set_data", ND_CMD_VENDOR_EFFECT_LOG_SIZE: "effect_size",
                   ND_CMD_VENDOR_EFFECT_LOG: "effect_log", ND_CMD_VENDOR: "vendor", ND_CMD_CALL: "cmd_call"}


def nvdimm_bus_cmd_name(cmd: int) -> str:
    return _BUS_CMD_NAMES.get(cmd, "unknown")


def nvdimm_cmd_name(cmd: int) -> str:
    return _DIMM_CMD_NAMES.get(cmd, "unknown")


ND_IOCTL = ord("N")
ND_IOCTL_DIMM_FLAGS = _IOWR(ND_IOCTL, ND_CMD_DIMM_FLAGS, SIZEOF_ND_CMD_DIMM_FLAGS)
ND_IOCTL_GET_CONFIG_SIZE = _IOWR(ND_IOCTL, ND_CMD_GET_CONFIG_SIZE, SIZEOF_ND_CMD_GET_CONFIG_SIZE)
ND_IOCTL_GET_CONFIG_DATA = _IOWR(ND_IOCTL, ND_CMD_GET_CONFIG_DATA, SIZEOF_ND_CMD_GET_CONFIG_DATA_HDR)
ND_IOCTL_SET_CONFIG_DATA = _IOWR(ND_IOCTL, ND_CMD_SET_CONFIG_DATA, SIZEOF_ND_CMD_SET_CONFIG_HDR)
ND_IOCTL_VENDOR = _IOWR(ND_IOCTL, ND_CMD_VENDOR, SIZEOF_ND_CMD_VENDOR_HDR)
ND_IOCTL_ARS_CAP = _IOWR(ND_IOCTL, ND_CMD_ARS_CAP, SIZEOF_ND_CMD_ARS_CAP)
ND_IOCTL_ARS_START = _IOWR(ND_IOCTL, ND_CMD_ARS_START, SIZEOF_ND_CMD_ARS_START)
ND_IOCTL_ARS_STATUS = _IOWR(ND_IOCTL, ND_CMD_ARS_STATUS, SIZEOF_ND_CMD_ARS_STATUS)
ND_IOCTL_CLEAR_ERROR = _IOWR(ND_IOCTL, ND_CMD_CLEAR_ERROR, SIZEOF_ND_CMD_CLEAR_ERROR)
ND_IOCTL_CALL = _IOWR(ND_IOCTL, ND_CMD_CALL, SIZEOF_ND_CMD_PKG)

# ---------------------------------------------------------------- device types (modalias nd:t<N>)
ND_DEVICE_DIMM = 1            # nd_dimm: container for "config data"
ND_DEVICE_REGION_PMEM = 2     # nd_region: parent of PMEM namespaces
ND_DEVICE_REGION_BLK = 3      # nd_region: parent of BLK namespaces
ND_DEVICE_NAMESPACE_IO = 4    # legacy persistent memory
ND_DEVICE_NAMESPACE_PMEM = 5  # PMEM namespace (may alias with BLK)
ND_DEVICE_DAX_PMEM = 7        # device-dax interface to pmem

ND_DRIVER_DIMM = 1 << ND_DEVICE_DIMM
ND_DRIVER_REGION_PMEM = 1 << ND_DEVICE_REGION_PMEM
ND_DRIVER_REGION_BLK = 1 << ND_DEVICE_REGION_BLK
ND_DRIVER_NAMESPACE_IO = 1 << ND_DEVICE_NAMESPACE_IO
ND_DRIVER_NAMESPACE_PMEM = 1 << ND_DEVICE_NAMESPACE_PMEM
ND_DRIVER_DAX_PMEM = 1 << ND_DEVICE_DAX_PMEM

ND_MIN_NAMESPACE_SIZE = 4096   # PAGE_SIZE

# struct nd_cmd_pkg families
NVDIMM_FAMILY_INTEL = 0
NVDIMM_FAMILY_HPE1 = 1
NVDIMM_FAMILY_HPE2 = 2
NVDIMM_FAMILY_MSFT = 3
NVDIMM_FAMILY_HYPERV = 4
NVDIMM_FAMILY_PAPR = 5
NVDIMM_FAMILY_MAX = NVDIMM_FAMILY_PAPR
NVDIMM_BUS_FAMILY_NFIT = 0
NVDIMM_BUS_FAMILY_INTEL = 1
NVDIMM_BUS_FAMILY_MAX = NVDIMM_BUS_FAMILY_INTEL
