"""drivers/cxl/cxlmem.h (and include/cxl/mailbox.h): mailbox opcodes, return codes, the command
object the core hands to a device's mailbox, and the mailbox itself.

The contract between the kernel side (:mod:`cxlsys.cxl.core.mbox`) and a device
(:mod:`cxlsys.cxl_test.mem`, the mock of tools/testing/cxl/test/mem.c):

* the core fills a :class:`CxlMboxCmd` (``opcode``, ``payload_in`` bytes, ``size_out`` = the
  capacity of its output buffer, ``min_out``) and calls ``mbox.mbox_send(cmd)``;
* the device sets ``cmd.return_code`` (``CXL_MBOX_CMD_RC_*``), ``cmd.payload_out`` (bytes, at
  most the given ``size_out``) and ``cmd.size_out`` (what it produced), and returns ``0`` or a
  negative errno for a transport failure (the mock's ``-EINVAL`` for an unknown opcode, ...).
"""

from __future__ import annotations

import errno
import struct as _struct
import uuid as _uuid
from typing import Callable

import attrs

# enum cxl_opcode
CXL_MBOX_OP_INVALID = 0x0000
CXL_MBOX_OP_RAW = CXL_MBOX_OP_INVALID
CXL_MBOX_OP_GET_EVENT_RECORD = 0x0100
CXL_MBOX_OP_CLEAR_EVENT_RECORD = 0x0101
CXL_MBOX_OP_GET_EVT_INT_POLICY = 0x0102
CXL_MBOX_OP_SET_EVT_INT_POLICY = 0x0103
CXL_MBOX_OP_GET_FW_INFO = 0x0200
CXL_MBOX_OP_TRANSFER_FW = 0x0201
CXL_MBOX_OP_ACTIVATE_FW = 0x0202
CXL_MBOX_OP_GET_TIMESTAMP = 0x0300
CXL_MBOX_OP_SET_TIMESTAMP = 0x0301
CXL_MBOX_OP_GET_SUPPORTED_LOGS = 0x0400
CXL_MBOX_OP_GET_LOG = 0x0401
CXL_MBOX_OP_GET_LOG_CAPS = 0x0402
CXL_MBOX_OP_CLEAR_LOG = 0x0403
CXL_MBOX_OP_GET_SUP_LOG_SUBLIST = 0x0405
CXL_MBOX_OP_GET_SUPPORTED_FEATURES = 0x0500
CXL_MBOX_OP_GET_FEATURE = 0x0501
CXL_MBOX_OP_SET_FEATURE = 0x0502
CXL_MBOX_OP_IDENTIFY = 0x4000
CXL_MBOX_OP_GET_PARTITION_INFO = 0x4100
CXL_MBOX_OP_SET_PARTITION_INFO = 0x4101
CXL_MBOX_OP_GET_LSA = 0x4102
CXL_MBOX_OP_SET_LSA = 0x4103
CXL_MBOX_OP_GET_HEALTH_INFO = 0x4200
CXL_MBOX_OP_GET_ALERT_CONFIG = 0x4201
CXL_MBOX_OP_SET_ALERT_CONFIG = 0x4202
CXL_MBOX_OP_GET_SHUTDOWN_STATE = 0x4203
CXL_MBOX_OP_SET_SHUTDOWN_STATE = 0x4204
CXL_MBOX_OP_GET_POISON = 0x4300
CXL_MBOX_OP_INJECT_POISON = 0x4301
CXL_MBOX_OP_CLEAR_POISON = 0x4302
CXL_MBOX_OP_GET_SCAN_MEDIA_CAPS = 0x4303
CXL_MBOX_OP_SCAN_MEDIA = 0x4304
CXL_MBOX_OP_GET_SCAN_MEDIA = 0x4305
CXL_MBOX_OP_SANITIZE = 0x4400
CXL_MBOX_OP_SECURE_ERASE = 0x4401
CXL_MBOX_OP_GET_SECURITY_STATE = 0x4500
CXL_MBOX_OP_SET_PASSPHRASE = 0x4501
CXL_MBOX_OP_DISABLE_PASSPHRASE = 0x4502
CXL_MBOX_OP_UNLOCK = 0x4503
CXL_MBOX_OP_FREEZE_SECURITY = 0x4504
CXL_MBOX_OP_PASSPHRASE_SECURE_ERASE = 0x4505
CXL_MBOX_OP_MAX = 0x10000

# CMD_CMD_RC_TABLE (CXL 3.0 8.2.9.4.5.1): (name, errno the core returns, description)
CMD_RC_TABLE: tuple[tuple[str, int, str | None], ...] = (
    ("SUCCESS", 0, None),
    ("BACKGROUND", errno.ENXIO, "background cmd started successfully"),
    ("INPUT", errno.ENXIO, "cmd input was invalid"),
    ("UNSUPPORTED", errno.ENXIO, "cmd is not supported"),
    ("INTERNAL", errno.ENXIO, "internal device error"),
    ("RETRY", errno.ENXIO, "temporary error, retry once"),
    ("BUSY", errno.ENXIO, "ongoing background operation"),
    ("MEDIADISABLED", errno.ENXIO, "media access is disabled"),
    ("FWINPROGRESS", errno.ENXIO, "one FW package can be transferred at a time"),
    ("FWOOO", errno.ENXIO, "FW package content was transferred out of order"),
    ("FWAUTH", errno.ENXIO, "FW package authentication failed"),
    ("FWSLOT", errno.ENXIO, "FW slot is not supported for requested operation"),
    ("FWROLLBACK", errno.ENXIO, "rolled back to the previous active FW"),
    ("FWRESET", errno.ENXIO, "FW failed to activate, needs cold reset"),
    ("HANDLE", errno.ENXIO, "one or more Event Record Handles were invalid"),
    ("PADDR", errno.EFAULT, "physical address specified is invalid"),
    ("POISONLMT", errno.EBUSY, "poison injection limit has been reached"),
    ("MEDIAFAILURE", errno.ENXIO, "permanent issue with the media"),
    ("ABORT", errno.ENXIO, "background cmd was aborted by device"),
    ("SECURITY", errno.ENXIO, "not valid in the current security state"),
    ("PASSPHRASE", errno.ENXIO, "phrase doesn't match current set passphrase"),
    ("MBUNSUPPORTED", errno.ENXIO, "unsupported on the mailbox it was issued on"),
    ("PAYLOADLEN", errno.ENXIO, "invalid payload length"),
    ("LOG", errno.ENXIO, "invalid or unsupported log page"),
    ("INTERRUPTED", errno.ENXIO, "asynchronous event occured"),
    ("FEATUREVERSION", errno.ENXIO, "unsupported feature version"),
    ("FEATURESELVALUE", errno.ENXIO, "unsupported feature selection value"),
    ("FEATURETRANSFERIP", errno.ENXIO, "feature transfer in progress"),
    ("FEATURETRANSFEROOO", errno.ENXIO, "feature transfer out of order"),
    ("RESOURCEEXHAUSTED", errno.ENXIO, "resources are exhausted"),
    ("EXTLIST", errno.ENXIO, "invalid Extent List"),
)
_RC = {name: i for i, (name, _, _) in enumerate(CMD_RC_TABLE)}
CXL_MBOX_CMD_RC_SUCCESS = _RC["SUCCESS"]
CXL_MBOX_CMD_RC_BACKGROUND = _RC["BACKGROUND"]
CXL_MBOX_CMD_RC_INPUT = _RC["INPUT"]
CXL_MBOX_CMD_RC_UNSUPPORTED = _RC["UNSUPPORTED"]
CXL_MBOX_CMD_RC_INTERNAL = _RC["INTERNAL"]
CXL_MBOX_CMD_RC_RETRY = _RC["RETRY"]
CXL_MBOX_CMD_RC_BUSY = _RC["BUSY"]
CXL_MBOX_CMD_RC_MEDIADISABLED = _RC["MEDIADISABLED"]
CXL_MBOX_CMD_RC_FWINPROGRESS = _RC["FWINPROGRESS"]
CXL_MBOX_CMD_RC_FWOOO = _RC["FWOOO"]
CXL_MBOX_CMD_RC_FWAUTH = _RC["FWAUTH"]
CXL_MBOX_CMD_RC_FWSLOT = _RC["FWSLOT"]
CXL_MBOX_CMD_RC_FWROLLBACK = _RC["FWROLLBACK"]
CXL_MBOX_CMD_RC_FWRESET = _RC["FWRESET"]
CXL_MBOX_CMD_RC_HANDLE = _RC["HANDLE"]
CXL_MBOX_CMD_RC_PADDR = _RC["PADDR"]
CXL_MBOX_CMD_RC_POISONLMT = _RC["POISONLMT"]
CXL_MBOX_CMD_RC_MEDIAFAILURE = _RC["MEDIAFAILURE"]
CXL_MBOX_CMD_RC_ABORT = _RC["ABORT"]
CXL_MBOX_CMD_RC_SECURITY = _RC["SECURITY"]
CXL_MBOX_CMD_RC_PASSPHRASE = _RC["PASSPHRASE"]
CXL_MBOX_CMD_RC_MBUNSUPPORTED = _RC["MBUNSUPPORTED"]
CXL_MBOX_CMD_RC_PAYLOADLEN = _RC["PAYLOADLEN"]
CXL_MBOX_CMD_RC_LOG = _RC["LOG"]

CXL_CAPACITY_MULTIPLIER = 256 << 20     # capacities in the mailbox are in 256 MiB units


def cxl_mbox_cmd_rc2errno(cmd: CxlMboxCmd) -> int:
    """0, or the positive errno the core reports for the device's return code."""
    return CMD_RC_TABLE[cmd.return_code][1] if cmd.return_code < len(CMD_RC_TABLE) else errno.ENXIO


def cxl_mbox_cmd_rc2str(cmd: CxlMboxCmd) -> str:
    if cmd.return_code < len(CMD_RC_TABLE):
        return CMD_RC_TABLE[cmd.return_code][2] or ""
    return "unknown return code"


@attrs.define(kw_only=True)
class CxlMboxCmd:
    """struct cxl_mbox_cmd: one mailbox command in flight (payloads as bytes)."""

    opcode: int
    payload_in: bytes = b""
    size_out: int = 0           # in: capacity of the output buffer; out: bytes produced
    payload_out: bytes = b""
    min_out: int = 0
    poll_count: int = 0
    poll_interval_ms: int = 0
    return_code: int = CXL_MBOX_CMD_RC_SUCCESS

    @property
    def size_in(self) -> int:
        return len(self.payload_in)


@attrs.define(eq=False, kw_only=True)
class CxlMailbox:
    """struct cxl_mailbox: the device's mailbox as the core sees it."""

    host: object = attrs.field(default=None, repr=False)     # the device whose drvdata owns it
    payload_size: int = 4096
    mbox_send: Callable[[CxlMboxCmd], int] = attrs.field(repr=False, default=lambda cmd: -errno.EOPNOTSUPP)
    # seconds of device time the commands sent took since the last call (the cxl_test mock sleeps in
    # some: mock_transfer_fw); what a worker that sends many of them waits for in the model
    device_time: Callable[[], float] = attrs.field(repr=False, default=lambda: 0.0)
    enabled_cmds: set = attrs.field(factory=set)      # command ids (enum cxl_mem_cmd_id) the CEL enabled
    exclusive_cmds: set = attrs.field(factory=set)    # ids the kernel holds for itself right now


# ============================================================================ payload layouts
# (appended by the mailbox core, cxlsys/cxl/core/mbox.py).  struct formats, little-endian, packed.

CXL_VARIABLE_PAYLOAD = 0xFFFFFFFF           # ~0U in a command table: size checked by the device


def _uuid_bytes(text: str) -> bytes:
    """uuid_t as the kernel stores it (UUID_INIT: the RFC 4122 byte order)."""
    return _uuid.UUID(text).bytes


# Identify Memory Device output (CXL 3.0 8.2.9.8.1.1): struct cxl_mbox_identify
CXL_MBOX_IDENTIFY = _struct.Struct("<16sQQQQHHHHI3sHBB")
(ID_FW_REVISION, ID_TOTAL_CAPACITY, ID_VOLATILE_CAPACITY, ID_PERSISTENT_CAPACITY, ID_PARTITION_ALIGN,
 ID_INFO_EVENT_LOG_SIZE, ID_WARNING_EVENT_LOG_SIZE, ID_FAILURE_EVENT_LOG_SIZE, ID_FATAL_EVENT_LOG_SIZE,
 ID_LSA_SIZE, ID_POISON_LIST_MAX_MER, ID_INJECT_POISON_LIMIT, ID_POISON_CAPS, ID_QOS_TELEMETRY_CAPS) = range(14)

# Get Partition Info output: struct cxl_mbox_get_partition_info
CXL_MBOX_GET_PARTITION_INFO = _struct.Struct("<QQQQ")
# Set Partition Info input: struct cxl_mbox_set_partition_info (volatile_capacity, flags)
CXL_MBOX_SET_PARTITION_INFO = _struct.Struct("<QB")
CXL_SET_PARTITION_IMMEDIATE_FLAG = 1 << 0

# Get Supported Logs output: header + struct cxl_gsl_entry[]
CXL_MBOX_GET_SUPPORTED_LOGS = _struct.Struct("<H6s")
CXL_GSL_ENTRY = _struct.Struct("<16sI")
# Command Effects Log entry: struct cxl_cel_entry
CXL_CEL_ENTRY = _struct.Struct("<HH")
# Get Log input: struct cxl_mbox_get_log
CXL_MBOX_GET_LOG = _struct.Struct("<16sII")
DEFINE_CXL_CEL_UUID = _uuid_bytes("0da9c0b5-bf41-4b78-8f79-96b1623b3f17")
DEFINE_CXL_VENDOR_DEBUG_UUID = _uuid_bytes("5e1819d9-11a9-400c-811f-d60719403d86")

# Set Timestamp input: struct cxl_mbox_set_timestamp_in
CXL_MBOX_SET_TIMESTAMP_IN = _struct.Struct("<Q")

# Get FW Info output: struct cxl_mbox_get_fw_info
CXL_MBOX_GET_FW_INFO = _struct.Struct("<BBB13s16s16s16s16s")
CXL_FW_INFO_SLOT_INFO_CUR_MASK = 0x07        # GENMASK(2, 0)
CXL_FW_INFO_SLOT_INFO_NEXT_MASK = 0x38       # GENMASK(5, 3)
CXL_FW_INFO_ACTIVATION_CAP_HAS_LIVE_ACTIVATE = 1 << 0
# Transfer FW input: struct cxl_mbox_transfer_fw, a 128-byte header then the data
CXL_MBOX_TRANSFER_FW = _struct.Struct("<BB2sI120s")
CXL_FW_TRANSFER_ACTION_FULL = 0x0
CXL_FW_TRANSFER_ACTION_INITIATE = 0x1
CXL_FW_TRANSFER_ACTION_CONTINUE = 0x2
CXL_FW_TRANSFER_ACTION_END = 0x3
CXL_FW_TRANSFER_ACTION_ABORT = 0x4
CXL_FW_TRANSFER_ALIGNMENT = 128
# Activate FW input: struct cxl_mbox_activate_fw
CXL_MBOX_ACTIVATE_FW = _struct.Struct("<BB")
CXL_FW_ACTIVATE_ONLINE = 0x0
CXL_FW_ACTIVATE_OFFLINE = 0x1
CXL_FW_CANCEL = 0                            # bit of cxl_fw_state.state

# Get Poison List: struct cxl_mbox_poison_in, struct cxl_mbox_poison_out + cxl_poison_record[]
CXL_MBOX_POISON_IN = _struct.Struct("<QQ")
CXL_MBOX_POISON_OUT = _struct.Struct("<BBQH20s")
CXL_POISON_RECORD = _struct.Struct("<QII")
CXL_POISON_FLAG_MORE = 1 << 0
CXL_POISON_FLAG_OVERFLOW = 1 << 1
CXL_POISON_FLAG_SCANNING = 1 << 2
CXL_POISON_SOURCE_MASK = 0x7
CXL_POISON_SOURCE_UNKNOWN = 0
CXL_POISON_SOURCE_EXTERNAL = 1
CXL_POISON_SOURCE_INTERNAL = 2
CXL_POISON_SOURCE_INJECTED = 3
CXL_POISON_SOURCE_VENDOR = 7
CXL_POISON_LEN_MULT = 64
CXL_POISON_LIST_MAX = 1024
# Inject / Clear Poison input: struct cxl_mbox_inject_poison, struct cxl_mbox_clear_poison
CXL_MBOX_INJECT_POISON = _struct.Struct("<Q")
CXL_MBOX_CLEAR_POISON = _struct.Struct("<Q64s")

# Get Event Records output: struct cxl_get_event_payload + struct cxl_event_record_raw[]
CXL_GET_EVENT_PAYLOAD = _struct.Struct("<BBHQQH10s")
CXL_GET_EVENT_FLAG_OVERFLOW = 1 << 0
CXL_GET_EVENT_FLAG_MORE_RECORDS = 1 << 1
CXL_EVENT_RECORD_RAW_SIZE = 128
CXL_EVENT_RECORD_HANDLE_OFFSET = 16 + 4       # after the uuid: u8 length, u8 flags[3], __le16 handle
CXL_EVENT_RECORD_PHYS_ADDR_OFFSET = 16 + 32    # media records: the header, then __le64 phys_addr
CXL_DPA_MASK = ((1 << 64) - 1) & ~0x3F         # GENMASK_ULL(63, 6)
# Clear Event Records input: struct cxl_mbox_clear_event_payload + __le16 handles[]
CXL_MBOX_CLEAR_EVENT_PAYLOAD = _struct.Struct("<BBB3s")
CXL_CLEAR_EVENT_MAX_HANDLES = 0xFF
# enum cxl_event_log_type, and the Event Status register bits naming them
CXL_EVENT_TYPE_INFO, CXL_EVENT_TYPE_WARN, CXL_EVENT_TYPE_FAIL, CXL_EVENT_TYPE_FATAL, CXL_EVENT_TYPE_MAX = range(5)
CXLDEV_EVENT_STATUS_INFO = 1 << 0
CXLDEV_EVENT_STATUS_WARN = 1 << 1
CXLDEV_EVENT_STATUS_FAIL = 1 << 2
CXLDEV_EVENT_STATUS_FATAL = 1 << 3
CXLDEV_EVENT_STATUS_ALL = 0xF
CXL_EVENT_GEN_MEDIA_UUID = _uuid_bytes("fbcd0a77-c260-417f-85a9-088b1621eba6")
CXL_EVENT_DRAM_UUID = _uuid_bytes("601dcbb3-9c06-4eab-b8af-4e9bfb5c9624")
CXL_EVENT_MEM_MODULE_UUID = _uuid_bytes("fe927475-dd59-4339-a586-79bab113b774")
# enum cxl_event_type (the CPER-shared event kinds)
CXL_CPER_EVENT_GENERIC, CXL_CPER_EVENT_GEN_MEDIA, CXL_CPER_EVENT_DRAM, CXL_CPER_EVENT_MEM_MODULE = range(4)

# Get Security State output (a __le32 of these bits)
CXL_PMEM_SEC_STATE_USER_PASS_SET = 0x01
CXL_PMEM_SEC_STATE_MASTER_PASS_SET = 0x02
CXL_PMEM_SEC_STATE_LOCKED = 0x04
CXL_PMEM_SEC_STATE_FROZEN = 0x08
CXL_PMEM_SEC_STATE_USER_PLIMIT = 0x10
CXL_PMEM_SEC_STATE_MASTER_PLIMIT = 0x20

# enum cxl_security_cmd_enabled_bits / enum poison_cmd_enabled_bits
(CXL_SEC_ENABLED_SANITIZE, CXL_SEC_ENABLED_SECURE_ERASE, CXL_SEC_ENABLED_GET_SECURITY_STATE,
 CXL_SEC_ENABLED_SET_PASSPHRASE, CXL_SEC_ENABLED_DISABLE_PASSPHRASE, CXL_SEC_ENABLED_UNLOCK,
 CXL_SEC_ENABLED_FREEZE_SECURITY, CXL_SEC_ENABLED_PASSPHRASE_SECURE_ERASE, CXL_SEC_ENABLED_MAX) = range(9)
(CXL_POISON_ENABLED_LIST, CXL_POISON_ENABLED_INJECT, CXL_POISON_ENABLED_CLEAR, CXL_POISON_ENABLED_SCAN_CAPS,
 CXL_POISON_ENABLED_SCAN_MEDIA, CXL_POISON_ENABLED_SCAN_RESULTS, CXL_POISON_ENABLED_MAX) = range(7)

# enum cxl_devtype
CXL_DEVTYPE_DEVMEM, CXL_DEVTYPE_CLASSMEM = range(2)
CXL_QOS_CLASS_INVALID = -1


# ============================================================================ device state

@attrs.define(eq=False)
class CxlResource:
    """A DPA range of the device (``struct resource`` of cxl_dev_state: dpa_res, ram_res, pmem_res)."""

    name: str = ""
    start: int = 0
    size: int = 0

    @property
    def end(self) -> int:
        return self.start + self.size - 1


@attrs.define(eq=False, kw_only=True)
class CxlPoisonState:
    """struct cxl_poison_state."""

    max_errors: int = 0
    enabled_cmds: set = attrs.field(factory=set)     # CXL_POISON_ENABLED_* bits


@attrs.define(eq=False, kw_only=True)
class CxlSecurityState:
    """struct cxl_security_state.  ``sanitize_node`` is the sysfs path of ``security/state`` once
    devm_cxl_sanitize_setup_notifier() took it (None: nobody to notify)."""

    state: int = 0                                    # CXL_PMEM_SEC_STATE_* (from Get Security State)
    enabled_cmds: set = attrs.field(factory=set)     # CXL_SEC_ENABLED_* bits
    poll: bool = False
    poll_tmo_secs: int = 0
    sanitize_active: bool = False
    sanitize_node: str | None = None


@attrs.define(eq=False, kw_only=True)
class CxlFwState:
    """struct cxl_fw_state."""

    num_slots: int = 0
    cur_slot: int = 0
    next_slot: int = 0
    oneshot: bool = False
    state: set = attrs.field(factory=set)            # bits: CXL_FW_CANCEL


@attrs.define(eq=False, kw_only=True)
class CxlMemdevState:
    """struct cxl_memdev_state with its struct cxl_dev_state: what the driver learned from the
    device's mailbox.  Built by cxl_memdev_state_create(); the device driver then sets
    ``mbox.mbox_send``/``mbox.payload_size`` (and ``serial``, ``rcd``, ``media_ready``) before
    the enumerate/identify calls fill in the rest."""

    host: object = attrs.field(default=None, repr=False)       # cxlds->dev
    mbox: CxlMailbox = attrs.field(factory=CxlMailbox, repr=False)
    cxlmd: object = attrs.field(default=None, repr=False)      # the memN device once added
    type: int = CXL_DEVTYPE_CLASSMEM
    serial: int = 0
    rcd: bool = False
    media_ready: bool = False
    dpa_res: CxlResource = attrs.field(factory=lambda: CxlResource("dpa"))
    ram_res: CxlResource = attrs.field(factory=lambda: CxlResource("ram"))
    pmem_res: CxlResource = attrs.field(factory=lambda: CxlResource("pmem"))
    lsa_size: int = 0
    firmware_version: bytes = bytes(16)
    total_bytes: int = 0
    volatile_only_bytes: int = 0
    persistent_only_bytes: int = 0
    partition_align_bytes: int = 0
    active_volatile_bytes: int = 0
    active_persistent_bytes: int = 0
    next_volatile_bytes: int = 0
    next_persistent_bytes: int = 0
    ram_qos_class: int = CXL_QOS_CLASS_INVALID
    pmem_qos_class: int = CXL_QOS_CLASS_INVALID
    poison: CxlPoisonState = attrs.field(factory=CxlPoisonState)
    security: CxlSecurityState = attrs.field(factory=CxlSecurityState)
    fw: CxlFwState = attrs.field(factory=CxlFwState)
    timestamp_ns: int | None = None               # what cxl_set_timestamp() last sent

    @property
    def payload_size(self) -> int:
        return self.mbox.payload_size

    @property
    def enabled_cmds(self) -> set:
        return self.mbox.enabled_cmds

    @property
    def exclusive_cmds(self) -> set:
        return self.mbox.exclusive_cmds

    def on_background_done(self, opcode: int = CXL_MBOX_OP_SANITIZE,
                           return_code: int = CXL_MBOX_CMD_RC_SUCCESS) -> None:
        """The device finished a background command (its "background command complete" interrupt):
        see cxlsys.cxl.core.mbox.cxl_mbox_background_done."""
        from cxlsys.cxl.core.mbox import cxl_mbox_background_done

        cxl_mbox_background_done(self, opcode, return_code)

# LSA and security payloads (cxlmem.h), shared by cxl_pmem (the driver) and the cxl_test mock (the device)
CXL_MBOX_GET_LSA = _struct.Struct("<II")          # struct cxl_mbox_get_lsa: offset, length
CXL_SET_PASS = _struct.Struct("<B31x32s32s")      # struct cxl_set_pass: type, rsvd[31], old_pass, new_pass
CXL_DISABLE_PASS = _struct.Struct("<B31x32s")     # struct cxl_disable_pass: type, rsvd[31], pass
CXL_PASS_ERASE = _struct.Struct("<B31x32s")       # struct cxl_pass_erase: type, rsvd[31], pass
CXL_GET_SECURITY_OUTPUT = _struct.Struct("<I")    # Get Security State: flags (CXL_PMEM_SEC_STATE_*)
CXL_PMEM_SEC_PASS_MASTER = 0
CXL_PMEM_SEC_PASS_USER = 1
