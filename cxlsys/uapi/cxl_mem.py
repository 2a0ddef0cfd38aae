"""include/uapi/linux/cxl_mem.h (Linux 6.12): the ``/dev/cxl/memN`` ioctl ABI.

Two ioctls: ``CXL_MEM_QUERY_COMMANDS`` (which commands the driver offers and how big their
payloads are) and ``CXL_MEM_SEND_COMMAND`` (run one mailbox command for user space).  Command ids
come from the ``CXL_CMDS`` list; an id marked deprecated keeps its number but no longer names a
command the kernel offers (``CXL_MEM_DEPRECATED_ID_*``).  Structs are little-endian and packed
exactly as the C header lays them out (no implicit padding), with their sizes checked below.
"""

from __future__ import annotations

import struct

import attrs

# ----------------------------------------------------------------------------- asm-generic/ioctl.h
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IOR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ, type_, nr, size)


def _IOWR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, size)


# ----------------------------------------------------------------------------- command ids
# CXL_CMDS: (name, description, deprecated) in id order; ___DEPRECATED entries keep their slot.
CXL_CMDS: tuple[tuple[str, str, bool], ...] = (
    ("INVALID", "Invalid Command", False),
    ("IDENTIFY", "Identify Command", False),
    ("RAW", "Raw device command", False),
    ("GET_SUPPORTED_LOGS", "Get Supported Logs", False),
    ("GET_FW_INFO", "Get FW Info", False),
    ("GET_PARTITION_INFO", "Get Partition Information", False),
    ("GET_LSA", "Get Label Storage Area", False),
    ("GET_HEALTH_INFO", "Get Health Info", False),
    ("GET_LOG", "Get Log", False),
    ("SET_PARTITION_INFO", "Set Partition Information", False),
    ("SET_LSA", "Set Label Storage Area", False),
    ("GET_ALERT_CONFIG", "Get Alert Configuration", False),
    ("SET_ALERT_CONFIG", "Set Alert Configuration", False),
    ("GET_SHUTDOWN_STATE", "Get Shutdown State", False),
    ("SET_SHUTDOWN_STATE", "Set Shutdown State", False),
    ("GET_POISON", "Get Poison List", True),
    ("INJECT_POISON", "Inject Poison", True),
    ("CLEAR_POISON", "Clear Poison", True),
    ("GET_SCAN_MEDIA_CAPS", "Get Scan Media Capabilities", False),
    ("SCAN_MEDIA", "Scan Media", True),
    ("GET_SCAN_MEDIA", "Get Scan Media Results", True),
    ("GET_TIMESTAMP", "Get Timestamp", False),
    ("GET_LOG_CAPS", "Get Log Capabilities", False),
    ("CLEAR_LOG", "Clear Log", False),
    ("GET_SUP_LOG_SUBLIST", "Get Supported Logs Sub-List", False),
    ("MAX", "invalid / last command", False),
)

# cxl_command_names[]: the text user space prints for an id ("Deprecated " for retired ones)
cxl_command_names: tuple[str, ...] = tuple(("Deprecated " + d) if dep else d for _, d, dep in CXL_CMDS)

CXL_MEM_COMMAND_ID = {name: i for i, (name, _, dep) in enumerate(CXL_CMDS) if not dep}
CXL_MEM_DEPRECATED_ID = {name: i for i, (name, _, dep) in enumerate(CXL_CMDS) if dep}

CXL_MEM_COMMAND_ID_INVALID = CXL_MEM_COMMAND_ID["INVALID"]
CXL_MEM_COMMAND_ID_IDENTIFY = CXL_MEM_COMMAND_ID["IDENTIFY"]
CXL_MEM_COMMAND_ID_RAW = CXL_MEM_COMMAND_ID["RAW"]
CXL_MEM_COMMAND_ID_GET_SUPPORTED_LOGS = CXL_MEM_COMMAND_ID["GET_SUPPORTED_LOGS"]
CXL_MEM_COMMAND_ID_GET_FW_INFO = CXL_MEM_COMMAND_ID["GET_FW_INFO"]
CXL_MEM_COMMAND_ID_GET_PARTITION_INFO = CXL_MEM_COMMAND_ID["GET_PARTITION_INFO"]
CXL_MEM_COMMAND_ID_GET_LSA = CXL_MEM_COMMAND_ID["GET_LSA"]
CXL_MEM_COMMAND_ID_GET_HEALTH_INFO = CXL_MEM_COMMAND_ID["GET_HEALTH_INFO"]
CXL_MEM_COMMAND_ID_GET_LOG = CXL_MEM_COMMAND_ID["GET_LOG"]
CXL_MEM_COMMAND_ID_SET_PARTITION_INFO = CXL_MEM_COMMAND_ID["SET_PARTITION_INFO"]
CXL_MEM_COMMAND_ID_SET_LSA = CXL_MEM_COMMAND_ID["SET_LSA"]
CXL_MEM_COMMAND_ID_GET_ALERT_CONFIG = CXL_MEM_COMMAND_ID["GET_ALERT_CONFIG"]
CXL_MEM_COMMAND_ID_SET_ALERT_CONFIG = CXL_MEM_COMMAND_ID["SET_ALERT_CONFIG"]
CXL_MEM_COMMAND_ID_GET_SHUTDOWN_STATE = CXL_MEM_COMMAND_ID["GET_SHUTDOWN_STATE"]
CXL_MEM_COMMAND_ID_SET_SHUTDOWN_STATE = CXL_MEM_COMMAND_ID["SET_SHUTDOWN_STATE"]
CXL_MEM_DEPRECATED_ID_GET_POISON = CXL_MEM_DEPRECATED_ID["GET_POISON"]
CXL_MEM_DEPRECATED_ID_INJECT_POISON = CXL_MEM_DEPRECATED_ID["INJECT_POISON"]
CXL_MEM_DEPRECATED_ID_CLEAR_POISON = CXL_MEM_DEPRECATED_ID["CLEAR_POISON"]
CXL_MEM_COMMAND_ID_GET_SCAN_MEDIA_CAPS = CXL_MEM_COMMAND_ID["GET_SCAN_MEDIA_CAPS"]
CXL_MEM_DEPRECATED_ID_SCAN_MEDIA = CXL_MEM_DEPRECATED_ID["SCAN_MEDIA"]
CXL_MEM_DEPRECATED_ID_GET_SCAN_MEDIA = CXL_MEM_DEPRECATED_ID["GET_SCAN_MEDIA"]
CXL_MEM_COMMAND_ID_GET_TIMESTAMP = CXL_MEM_COMMAND_ID["GET_TIMESTAMP"]
CXL_MEM_COMMAND_ID_GET_LOG_CAPS = CXL_MEM_COMMAND_ID["GET_LOG_CAPS"]
CXL_MEM_COMMAND_ID_CLEAR_LOG = CXL_MEM_COMMAND_ID["CLEAR_LOG"]
CXL_MEM_COMMAND_ID_GET_SUP_LOG_SUBLIST = CXL_MEM_COMMAND_ID["GET_SUP_LOG_SUBLIST"]
CXL_MEM_COMMAND_ID_MAX = CXL_MEM_COMMAND_ID["MAX"]

# ----------------------------------------------------------------------------- structs
# struct cxl_command_info { __u32 id; __u32 flags; __u32 size_in; __u32 size_out; }
CXL_COMMAND_INFO = struct.Struct("<IIII")
CXL_MEM_COMMAND_FLAG_ENABLED = 1 << 0
CXL_MEM_COMMAND_FLAG_EXCLUSIVE = 1 << 1
CXL_MEM_COMMAND_FLAG_MASK = 0b11          # GENMASK(1, 0)

# struct cxl_mem_query_commands { __u32 n_commands; __u32 rsvd; struct cxl_command_info commands[]; }
CXL_MEM_QUERY_COMMANDS_HDR = struct.Struct("<II")

# struct cxl_send_command {
#   __u32 id; __u32 flags;
#   union { struct { __u16 opcode; __u16 rsvd; } raw; __u32 rsvd; };
#   __u32 retval;
#   struct { __u32 size; __u32 rsvd; __u64 payload; } in;
#   struct { __u32 size; __u32 rsvd; __u64 payload; } out;
# }
CXL_SEND_COMMAND = struct.Struct("<IIHHIIIQIIQ")

assert CXL_COMMAND_INFO.size == 16 and CXL_MEM_QUERY_COMMANDS_HDR.size == 8 and CXL_SEND_COMMAND.size == 48

CXL_MEM_QUERY_COMMANDS = _IOR(0xCE, 1, CXL_MEM_QUERY_COMMANDS_HDR.size)
CXL_MEM_SEND_COMMAND = _IOWR(0xCE, 2, CXL_SEND_COMMAND.size)


@attrs.define
class CxlCommandInfo:
    """struct cxl_command_info (``size_*`` of ``0xffffffff`` = variable, CXL_VARIABLE_PAYLOAD)."""

    id: int = 0
    flags: int = 0
    size_in: int = 0
    size_out: int = 0

    def pack(self) -> bytes:
        return CXL_COMMAND_INFO.pack(self.id, self.flags, self.size_in & 0xFFFFFFFF, self.size_out & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, data: bytes) -> CxlCommandInfo:
        return cls(*CXL_COMMAND_INFO.unpack(data[:CXL_COMMAND_INFO.size]))


@attrs.define
class CxlSendCommand:
    """struct cxl_send_command.  ``raw_rsvd`` is the union's second half; for a non-RAW command the
    whole union (``raw_opcode | raw_rsvd << 16``, the C ``rsvd``) must be zero."""

    id: int = 0
    flags: int = 0
    raw_opcode: int = 0
    raw_rsvd: int = 0
    retval: int = 0
    in_size: int = 0
    in_rsvd: int = 0
    in_payload: int = 0
    out_size: int = 0
    out_rsvd: int = 0
    out_payload: int = 0

    @property
    def rsvd(self) -> int:
        """The union viewed as ``__u32 rsvd``."""
        return self.raw_opcode | (self.raw_rsvd << 16)

    def pack(self) -> bytes:
        return CXL_SEND_COMMAND.pack(self.id, self.flags, self.raw_opcode, self.raw_rsvd, self.retval,
                                     self.in_size, self.in_rsvd, self.in_payload,
                                     self.out_size, self.out_rsvd, self.out_payload)

    @classmethod
    def unpack(cls, data: bytes) -> CxlSendCommand:
        return cls(*CXL_SEND_COMMAND.unpack(data[:CXL_SEND_COMMAND.size]))
