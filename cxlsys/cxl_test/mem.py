"""tools/testing/cxl/test/mem.c: the mock memory device (platform driver ``cxl_mock_mem``).

Baseline: Linux 6.12.  :class:`MockMem` is mem.c's ``struct cxl_mockmem_data`` together with
``cxl_mock_mbox_send``: the device end of the mailbox.  The core fills a
:class:`~cxlsys.cxl.cxlmem.CxlMboxCmd` and calls :meth:`MockMem.mbox_send`, which answers like
mem.c: ``0`` with ``return_code`` set, or a negative errno straight from the mock (``-EINVAL`` for
malformed input, ``-ENXIO`` with ``return_code`` SECURITY/PASSPHRASE, ``-EBUSY``, and ``-EIO`` for an
opcode the mock does not handle).

Output convention: when a command produces output, ``cmd.payload_out`` holds exactly
``cmd.size_out`` bytes — the bytes mem.c writes, followed by zeros when mem.c leaves ``size_out``
at the caller's capacity (the core's buffers are zeroed).  Where mem.c reads an input structure
without checking ``size_in``, the missing bytes read as zero.

Values come from mem.c (``LSA_SIZE``, ``FW_SIZE``, fw slot revisions, health info, the mock event
records, poison limits), except what the topology's ``MemdevInfo`` gives: capacities
(``ram_size``/``pmem_size``; 0/0 means mem.c's 2 GiB), label storage size, serial, payload size,
firmware revision, and whether poison / sanitize are in the Command Effects Log.

Where this port differs from 6.12's mem.c, on purpose:

* **SET_PARTITION_INFO is an extension** (mem.c has none): per the spec, ``volatile_capacity``
  (256 MiB units) must fit the partitionable capacity; with the Immediate flag it applies at once,
  otherwise it is reported as the "next" partition by GET_PARTITION_INFO and becomes active at the
  next reset — :meth:`MockMem.reset`, and a re-probe of the platform device (mem.c rebuilds its
  whole state at probe, so a probe is this mock's reset; the pending values are kept on the
  :class:`MockMemDevice`).  It is listed in the CEL so ``cxl set-partition`` can work.
* SANITIZE answers ``return_code`` BACKGROUND (what a device reports for a started background
  command; mem.c itself marks the kernel's ``sanitize_active``), completes after
  ``sanitize_timeout`` ms through ``sys.timers`` and then calls :attr:`MockMem.on_background_done`.
  SECURE_ERASE completes at once, as in mem.c (6.12's core does not poll a background erase).
* Get Event Records' overflow count is the log's real overflow count (mem.c copies an
  uninitialized local); the 1..3 records-per-call rotation (``ret_limit``) is per device (a
  module-wide static in mem.c).
* Bounds checks use unbounded arithmetic (mem.c's u32 ``offset + length`` can wrap and overrun);
  GET_POISON refuses an output buffer too small for its records (mem.c would overrun it).
* Poison injected into a device is dropped from the shared list when its driver unbinds (mem.c
  leaves stale entries in its static array until the module unloads).

Kept from mem.c although it disagrees with the spec: GET_POISON compares the requested length
as bytes (the core sends 64-byte units), so only the first ``length`` bytes after ``offset`` are
searched.

Mainline (after 6.12) adds, not ported: Get Supported Features / Get Feature / Set Feature for a
test feature, the ``struct cxl_mailbox`` host, CXL 3.1 fields in the mock event records, and
dynamic-capacity mocks (in flight on the list).
"""

from __future__ import annotations

import errno
import hashlib
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import attrs

from cxlsys.base.device import RO, RW, WO, AttrGroup, Device
from cxlsys.base.platform import PlatformDevice, PlatformDriver
from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core import mbox, memdev
from cxlsys.cxl.cxlmem import (  # the layouts and values the core uses too
    CXL_CEL_ENTRY,
    CXL_DISABLE_PASS,
    CXL_EVENT_DRAM_UUID,
    CXL_EVENT_GEN_MEDIA_UUID,
    CXL_EVENT_MEM_MODULE_UUID,
    CXL_EVENT_RECORD_HANDLE_OFFSET,
    CXL_EVENT_RECORD_RAW_SIZE,
    CXL_EVENT_TYPE_FAIL,
    CXL_EVENT_TYPE_FATAL,
    CXL_EVENT_TYPE_INFO,
    CXL_EVENT_TYPE_MAX,
    CXL_FW_ACTIVATE_OFFLINE,
    CXL_FW_ACTIVATE_ONLINE,
    CXL_FW_TRANSFER_ACTION_ABORT,
    CXL_FW_TRANSFER_ACTION_CONTINUE,
    CXL_FW_TRANSFER_ACTION_END,
    CXL_FW_TRANSFER_ACTION_FULL,
    CXL_FW_TRANSFER_ACTION_INITIATE,
    CXL_FW_TRANSFER_ALIGNMENT,
    CXL_GET_EVENT_FLAG_MORE_RECORDS,
    CXL_GET_EVENT_FLAG_OVERFLOW,
    CXL_GET_SECURITY_OUTPUT,
    CXL_GSL_ENTRY,
    CXL_MBOX_ACTIVATE_FW,
    CXL_MBOX_CLEAR_POISON,
    CXL_MBOX_GET_LOG,
    CXL_MBOX_GET_LSA,
    CXL_MBOX_GET_PARTITION_INFO,
    CXL_MBOX_IDENTIFY,
    CXL_MBOX_INJECT_POISON,
    CXL_MBOX_POISON_IN,
    CXL_MBOX_SET_PARTITION_INFO,
    CXL_MBOX_SET_TIMESTAMP_IN,
    CXL_PASS_ERASE,
    CXL_PMEM_SEC_PASS_MASTER,
    CXL_PMEM_SEC_PASS_USER,
    CXL_PMEM_SEC_STATE_FROZEN,
    CXL_PMEM_SEC_STATE_LOCKED,
    CXL_PMEM_SEC_STATE_MASTER_PASS_SET,
    CXL_PMEM_SEC_STATE_MASTER_PLIMIT,
    CXL_PMEM_SEC_STATE_USER_PASS_SET,
    CXL_PMEM_SEC_STATE_USER_PLIMIT,
    CXL_POISON_LIST_MAX,
    CXL_POISON_SOURCE_INJECTED,
    CXL_SET_PARTITION_IMMEDIATE_FLAG,
    CXL_SET_PASS,
    CXLDEV_EVENT_STATUS_ALL,
    CXLDEV_EVENT_STATUS_FAIL,
    CXLDEV_EVENT_STATUS_FATAL,
    CXLDEV_EVENT_STATUS_INFO,
    CxlMboxCmd,
)
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtoint, kstrtoull
from cxlsys.nvdimm.nd import NVDIMM_PASSPHRASE_LEN

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.cxl.core.memdev import MemdevInfo
    from cxlsys.kernel.timer import TimerHandle
    from cxlsys.system import System

SZ_4K = 4 << 10
SZ_128K = 128 << 10
SZ_256M = 256 << 20
SZ_2G = 2 << 30
SZ_64M = 64 << 20

# ------------------------------------------------------------------ mem.c constants
LSA_SIZE = SZ_128K
FW_SIZE = SZ_64M
FW_SLOTS = 3
DEV_SIZE = SZ_2G
MOCK_INJECT_DEV_MAX = 8
MOCK_INJECT_TEST_MAX = 128
PASS_TRY_LIMIT = 3
CXL_TEST_EVENT_CNT_MAX = 15
CXL_TEST_EVENT_RET_MAX = 4
MOCK_FW_REVISION = "mock fw v1 "
MOCK_FW_SLOT_REVISIONS = ("cxl_test_fw_001", "cxl_test_fw_002", "cxl_test_fw_003", "")
GET_POISON_LENGTH_UNIT = 1      # mem.c compares Get Poison List's length as bytes (spec: 64-byte units)

# enum cxl_command_effects (mem.c): bit numbers of a CEL entry's effect field
CONF_CHANGE_COLD_RESET = 0
CONF_CHANGE_IMMEDIATE = 1
DATA_CHANGE_IMMEDIATE = 2
POLICY_CHANGE_IMMEDIATE = 3
LOG_CHANGE_IMMEDIATE = 4
SECURITY_CHANGE_IMMEDIATE = 5
BACKGROUND_OP = 6
SECONDARY_MBOX_SUPPORTED = 7


def EFFECT(x: int) -> int:
    return 1 << x


CXL_CMD_EFFECT_NONE = 0

# ------------------------------------------------------------------ cxlmem.h / cxl.h / event.h facts




# trace.h: record header flags and the values the mock records use
CXL_EVENT_RECORD_FLAG_PERMANENT = 1 << 2
CXL_EVENT_RECORD_FLAG_MAINT_NEEDED = 1 << 3
CXL_EVENT_RECORD_FLAG_PERF_DEGRADED = 1 << 4
CXL_EVENT_RECORD_FLAG_HW_REPLACE = 1 << 5
CXL_GMER_EVT_DESC_UNCORECTABLE_EVENT = 1 << 0
CXL_GMER_EVT_DESC_THRESHOLD_EVENT = 1 << 1
CXL_GMER_MEM_EVT_TYPE_INV_ADDR = 0x01
CXL_GMER_MEM_EVT_TYPE_DATA_PATH_ERROR = 0x02
CXL_GMER_TRANS_HOST_WRITE = 0x02
CXL_GMER_TRANS_INTERNAL_MEDIA_SCRUB = 0x05
CXL_GMER_VALID_CHANNEL = 1 << 0
CXL_GMER_VALID_RANK = 1 << 1
CXL_DER_VALID_CHANNEL = 1 << 0
CXL_DER_VALID_BANK_GROUP = 1 << 3
CXL_DER_VALID_BANK = 1 << 4
CXL_DER_VALID_COLUMN = 1 << 6
CXL_MMER_TEMP_CHANGE = 0x03
CXL_DHI_HS_PERFORMANCE_DEGRADED = 1 << 1
CXL_DHI_MS_ALL_DATA_LOST = 0x03
CXL_DHI_AS_WARNING = 0x1
CXL_DHI_AS_CRITICAL = 0x2

CXL_CEL_UUID = uuid.UUID("0da9c0b5-bf41-4b78-8f79-96b1623b3f17").bytes      # DEFINE_CXL_CEL_UUID

# ------------------------------------------------------------------ payload layouts (__packed, LE)
CXL_MBOX_GET_SUPPORTED_LOGS = struct.Struct("<H6x")          # entries, rsvd[6]
# fw_revision, total/volatile/persistent capacity, partition_align, info/warn/fail/fatal event log
# sizes, lsa_size, poison_list_max_mer[3], inject_poison_limit, poison_caps, qos_telemetry_caps
CXL_MBOX_SET_LSA = struct.Struct("<I4x")                     # offset, reserved; data[] follows
CXL_MBOX_HEALTH_INFO = struct.Struct("<BBBBHIII")            # mem.c's struct cxl_mbox_health_info
CXL_MBOX_POISON_OUT = struct.Struct("<BxQH20x")              # flags, overflow_ts, count; record[] follows
CXL_POISON_RECORD = struct.Struct("<QI4x")                   # address (| source), length
CXL_MBOX_GET_FW_INFO = struct.Struct("<BBB13x16s16s16s16s")  # num_slots, slot_info, activation_cap
CXL_MBOX_TRANSFER_FW = struct.Struct("<BB2xI120x")           # action, slot, offset (128 B units); data[]
CXL_GET_EVENT_PAYLOAD = struct.Struct("<BxHQQH10x")          # flags, overflow count, first/last ts, count
CXL_MBOX_CLEAR_EVENT_PAYLOAD = struct.Struct("<BBB3x")       # event_log, clear_flags, nr_recs; handles[]
# struct cxl_event_record_raw: uuid + a 112-byte event whose first 32 bytes are the common header
CXL_EVENT_RECORD_HDR = struct.Struct("<B3sHHQB15x")          # length, flags[3], handle, related, ts, class
CXL_EVENT_GEN_MEDIA_BODY = struct.Struct("<QBBB2sBB3s16s46x")    # after the header
CXL_EVENT_DRAM_BODY = struct.Struct("<QBBB2sBB3sBB3s2s32s23x")
CXL_EVENT_MEM_MODULE_BODY = struct.Struct("<BBBBB2s4s4s4s61x")   # event_type + struct cxl_get_health_info

assert CXL_MBOX_IDENTIFY.size == 0x43 and CXL_MBOX_GET_FW_INFO.size == 0x50
assert CXL_EVENT_RECORD_HDR.size + CXL_EVENT_GEN_MEDIA_BODY.size == 112 == \
    CXL_EVENT_RECORD_HDR.size + CXL_EVENT_DRAM_BODY.size == CXL_EVENT_RECORD_HDR.size + CXL_EVENT_MEM_MODULE_BODY.size


def struct_size_event(n: int) -> int:
    """``struct_size(pl, records, n)`` of struct cxl_get_event_payload."""
    return CXL_GET_EVENT_PAYLOAD.size + n * CXL_EVENT_RECORD_RAW_SIZE


def struct_size_poison(n: int) -> int:
    """``struct_size(po, record, n)`` of struct cxl_mbox_poison_out."""
    return CXL_MBOX_POISON_OUT.size + n * CXL_POISON_RECORD.size


# ------------------------------------------------------------------ the Command Effects Log
# mem.c's mock_cel, in its order; SET_PARTITION_INFO appended (this port's extension)
MOCK_CEL: tuple[tuple[int, int], ...] = (
    (M.CXL_MBOX_OP_GET_SUPPORTED_LOGS, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_IDENTIFY, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_GET_LSA, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_GET_PARTITION_INFO, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_SET_LSA, EFFECT(CONF_CHANGE_IMMEDIATE) | EFFECT(DATA_CHANGE_IMMEDIATE)),
    (M.CXL_MBOX_OP_GET_HEALTH_INFO, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_GET_POISON, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_INJECT_POISON, EFFECT(DATA_CHANGE_IMMEDIATE)),
    (M.CXL_MBOX_OP_CLEAR_POISON, EFFECT(DATA_CHANGE_IMMEDIATE)),
    (M.CXL_MBOX_OP_GET_FW_INFO, CXL_CMD_EFFECT_NONE),
    (M.CXL_MBOX_OP_TRANSFER_FW, EFFECT(CONF_CHANGE_COLD_RESET) | EFFECT(BACKGROUND_OP)),
    (M.CXL_MBOX_OP_ACTIVATE_FW, EFFECT(CONF_CHANGE_COLD_RESET) | EFFECT(CONF_CHANGE_IMMEDIATE)),
    (M.CXL_MBOX_OP_SANITIZE, EFFECT(DATA_CHANGE_IMMEDIATE) | EFFECT(SECURITY_CHANGE_IMMEDIATE)
     | EFFECT(BACKGROUND_OP)),
    (M.CXL_MBOX_OP_SET_PARTITION_INFO, EFFECT(CONF_CHANGE_COLD_RESET) | EFFECT(CONF_CHANGE_IMMEDIATE)),
)
_POISON_OPS = (M.CXL_MBOX_OP_GET_POISON, M.CXL_MBOX_OP_INJECT_POISON, M.CXL_MBOX_OP_CLEAR_POISON)


# ------------------------------------------------------------------ the mock event records

def _event_record(rec_uuid: bytes, flags: int, related_handle: int, body: bytes) -> bytes:
    hdr = CXL_EVENT_RECORD_HDR.pack(CXL_EVENT_RECORD_RAW_SIZE, flags.to_bytes(3, "little"), 0,
                                    related_handle, 0, 0)
    rec = rec_uuid + hdr + body
    assert len(rec) == CXL_EVENT_RECORD_RAW_SIZE
    return rec


def _generic_data() -> bytes:
    return bytes([0xDE, 0xAD, 0xBE, 0xEF]) + bytes(0x50 - 4)


# handle (bytes 20..21) is 0 here; Get Event Records fills it per returned copy
maint_needed = _event_record(uuid.UUID("ba5eba11-abcd-efeb-a55a-a55aa5a55aa5").bytes,
                             CXL_EVENT_RECORD_FLAG_MAINT_NEEDED, 0xA5B6, _generic_data())
hardware_replace = _event_record(uuid.UUID("abcdefeb-ba11-ba5e-a55a-a55aa5a55aa5").bytes,
                                 CXL_EVENT_RECORD_FLAG_HW_REPLACE, 0xB6A5, _generic_data())
gen_media = _event_record(CXL_EVENT_GEN_MEDIA_UUID, CXL_EVENT_RECORD_FLAG_PERMANENT, 0, CXL_EVENT_GEN_MEDIA_BODY.pack(
    0x2000, CXL_GMER_EVT_DESC_UNCORECTABLE_EVENT, CXL_GMER_MEM_EVT_TYPE_DATA_PATH_ERROR, CXL_GMER_TRANS_HOST_WRITE,
    (CXL_GMER_VALID_CHANNEL | CXL_GMER_VALID_RANK).to_bytes(2, "little"), 1, 30, bytes(3), bytes(16)))
dram = _event_record(CXL_EVENT_DRAM_UUID, CXL_EVENT_RECORD_FLAG_PERF_DEGRADED, 0, CXL_EVENT_DRAM_BODY.pack(
    0x8000, CXL_GMER_EVT_DESC_THRESHOLD_EVENT, CXL_GMER_MEM_EVT_TYPE_INV_ADDR, CXL_GMER_TRANS_INTERNAL_MEDIA_SCRUB,
    (CXL_DER_VALID_CHANNEL | CXL_DER_VALID_BANK_GROUP | CXL_DER_VALID_BANK
     | CXL_DER_VALID_COLUMN).to_bytes(2, "little"), 1, 0, bytes(3), 5, 2, bytes(3), bytes([0xDE, 0xAD]), bytes(32)))
mem_module = _event_record(CXL_EVENT_MEM_MODULE_UUID, 0, 0, CXL_EVENT_MEM_MODULE_BODY.pack(
    CXL_MMER_TEMP_CHANGE, CXL_DHI_HS_PERFORMANCE_DEGRADED, CXL_DHI_MS_ALL_DATA_LOST,
    (CXL_DHI_AS_CRITICAL << 2) | (CXL_DHI_AS_WARNING << 4) | (CXL_DHI_AS_WARNING << 5), 0,
    bytes([0xDE, 0xAD]), bytes([0xDE, 0xAD, 0xBE, 0xEF]), bytes([0xDE, 0xAD, 0xBE, 0xEF]),
    bytes([0xDE, 0xAD, 0xBE, 0xEF])))


@attrs.define
class MockEventLog:
    """struct mock_event_log."""

    clear_idx: int = 0
    cur_idx: int = 0
    nr_overflow: int = 0
    overflow_reset: int = 0
    events: list = attrs.field(factory=list)      # raw 128-byte records (the same one may repeat)

    @property
    def nr_events(self) -> int:
        return len(self.events)


@attrs.define
class MockEventStore:
    """struct mock_event_store."""

    mock_logs: list = attrs.field(factory=lambda: [MockEventLog() for _ in range(CXL_EVENT_TYPE_MAX)])
    ev_status: int = 0


def event_reset_log(log: MockEventLog) -> None:
    log.cur_idx = 0
    log.clear_idx = 0
    log.nr_overflow = log.overflow_reset


def event_get_clear_handle(log: MockEventLog) -> int:
    return log.clear_idx + 1          # handles are 1-based: 0 is never a handle


def event_get_cur_event_handle(log: MockEventLog) -> int:
    return log.cur_idx + 1


def event_log_empty(log: MockEventLog) -> bool:
    return log.cur_idx == log.nr_events


def mes_add_event(mes: MockEventStore, log_type: int, event: bytes) -> None:
    if log_type >= CXL_EVENT_TYPE_MAX:
        return
    log = mes.mock_logs[log_type]
    if log.nr_events + 1 > CXL_TEST_EVENT_CNT_MAX:
        log.nr_overflow += 1
        log.overflow_reset = log.nr_overflow
        return
    log.events.append(event)


def cxl_mock_add_event_logs(mes: MockEventStore) -> None:
    """mem.c's fixed mock logs: Informational 3, Failure 15 (+2 overflowed), Fatal 2."""
    for rec in (maint_needed, gen_media, mem_module):
        mes_add_event(mes, CXL_EVENT_TYPE_INFO, rec)
    mes.ev_status |= CXLDEV_EVENT_STATUS_INFO
    for rec in (maint_needed, hardware_replace, dram, gen_media, mem_module, hardware_replace, dram):
        mes_add_event(mes, CXL_EVENT_TYPE_FAIL, rec)
    for _ in range(10):                           # overflow this log
        mes_add_event(mes, CXL_EVENT_TYPE_FAIL, hardware_replace)
    mes.ev_status |= CXLDEV_EVENT_STATUS_FAIL
    for rec in (hardware_replace, dram):
        mes_add_event(mes, CXL_EVENT_TYPE_FATAL, rec)
    mes.ev_status |= CXLDEV_EVENT_STATUS_FATAL


# ------------------------------------------------------------------ poison (mem.c's static list)

@attrs.define(eq=False)
class MockPoisonList:
    """``mock_poison_list[MOCK_INJECT_TEST_MAX]`` and ``poison_inject_dev_max``: shared by every
    device of one cxl_mock_mem driver (slots hold ``(owner, dpa)``; a freed slot is reused first)."""

    inject_dev_max: int = MOCK_INJECT_DEV_MAX
    slots: list = attrs.field(factory=lambda: [None] * MOCK_INJECT_TEST_MAX)

    def count(self, owner: object) -> int:
        return sum(1 for s in self.slots if s is not None and s[0] is owner)

    def empty(self) -> bool:
        return all(s is None for s in self.slots)

    def found(self, owner: object, dpa: int) -> bool:
        return any(s is not None and s[0] is owner and s[1] == dpa for s in self.slots)

    def dpas(self, owner: object) -> list:
        return [s[1] for s in self.slots if s is not None and s[0] is owner]

    def drop(self, owner: object) -> None:
        self.slots = [None if s is not None and s[0] is owner else s for s in self.slots]


def _padded(b: bytes, n: int) -> bytes:
    return b[:n] + bytes(max(0, n - len(b)))


# ------------------------------------------------------------------ the device

# mem.c mock_transfer_fw(): usleep_range(1500, 2000) per slice, so a 16 MiB upload takes seconds
# (what cxl-update-firmware.sh relies on to cancel one in flight)
MOCK_TRANSFER_FW_S = 0.00175


@attrs.define(eq=False, kw_only=True)
class MockMem:
    """struct cxl_mockmem_data + cxl_mock_mbox_send: one mock memory device's mailbox state."""

    info: MemdevInfo
    sys: System = attrs.field(repr=False)                          # for sys.timers
    host: Optional[Device] = attrs.field(default=None, repr=False)  # the platform device
    poison: MockPoisonList = attrs.field(factory=MockPoisonList, repr=False)
    mds: Any = attrs.field(default=None, repr=False)                # the kernel's cxl_memdev_state
    on_background_done: Optional[Callable[[], None]] = attrs.field(default=None, repr=False)
    realtime_ns: Callable[[], int] = attrs.field(default=time.time_ns, repr=False)   # ktime_get_real_ns
    # cxl_test's canned device: its fake health (maintenance needed, all data lost, ...) and its
    # mock event records.  False for the device behind a cxl_pci host (a QEMU topology): a healthy
    # device with empty event logs, whose mailbox otherwise answers like the mock's
    canned: bool = True

    lsa: bytearray = attrs.field(init=False, repr=False)
    fw: bytearray = attrs.field(factory=bytearray, repr=False)      # grows up to FW_SIZE as written
    fw_slot: int = 2
    fw_staged: int = 0
    fw_size: int = 0
    busy_s: float = 0.0      # device time its commands took since the caller last asked (device_time())
    security_state: int = 0
    user_pass: bytes = attrs.field(default=bytes(NVDIMM_PASSPHRASE_LEN), repr=False)
    master_pass: bytes = attrs.field(default=bytes(NVDIMM_PASSPHRASE_LEN), repr=False)
    user_limit: int = 0
    master_limit: int = 0
    mes: MockEventStore = attrs.field(factory=MockEventStore, repr=False)
    timestamp: int = 0
    timestamp_at: Optional[float] = None                             # clock() when it was set
    sanitize_timeout: int = 0                                        # ms
    ret_limit: int = 0
    # partitions (bytes); next_* is what SET_PARTITION_INFO staged for the next reset
    active_volatile: int = attrs.field(init=False)
    active_persistent: int = attrs.field(init=False)
    next_volatile: int = 0
    next_persistent: int = 0
    partition_pending: bool = False
    bg_opcode: Optional[int] = None                                  # running background command
    bg_started: float = 0.0
    bg_deadline: float = 0.0
    _bg_timer: Optional[TimerHandle] = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.lsa = bytearray(self.lsa_size)
        ram, pmem = self.info.ram_size, self.info.pmem_size
        if not ram and not pmem:
            ram, pmem = (DEV_SIZE, 0) if self.rcd else (DEV_SIZE // 2, DEV_SIZE // 2)
        self.active_volatile, self.active_persistent = ram, pmem
        if self.canned:
            cxl_mock_add_event_logs(self.mes)

    # ----- what the device is
    @property
    def rcd(self) -> bool:
        return bool(self.info.rcd)

    @property
    def lsa_size(self) -> int:
        return self.info.lsa_size

    @property
    def payload_size(self) -> int:
        return self.info.payload_max or SZ_4K

    @property
    def total_bytes(self) -> int:
        return self.active_volatile + self.active_persistent

    @property
    def partition_align_bytes(self) -> int:
        return 0 if self.rcd else SZ_256M

    def fw_revision(self) -> bytes:
        return (self.info.firmware_version or MOCK_FW_REVISION).encode()[:16].ljust(16, b"\0")

    def cel(self) -> list:
        """This device's Command Effects Log entries: mem.c's, less what the MemdevInfo disables."""
        out = []
        for op, eff in MOCK_CEL:
            if op in _POISON_OPS and not self.info.poison:
                continue
            if op == M.CXL_MBOX_OP_SANITIZE and not self.info.sanitize:
                continue
            out.append((op, eff))
        return out

    def cel_bytes(self) -> bytes:
        return b"".join(CXL_CEL_ENTRY.pack(op, eff) for op, eff in self.cel())

    def device_time_ns(self) -> int:
        """The device clock: the host-set timestamp plus the time since (else the real time)."""
        if self.timestamp_at is None:
            return self.realtime_ns()
        return self.timestamp + int((self.sys.timers.clock() - self.timestamp_at) * 1e9)

    def fw_buf_checksum(self) -> str:
        """sha256 of the image received: the first ``fw_size`` bytes of the staging buffer."""
        return hashlib.sha256(_padded(bytes(self.fw), self.fw_size)).hexdigest()

    # ----- the mailbox
    def device_time(self) -> float:
        """The time the device slept in commands since the last call (then zero again)."""
        t, self.busy_s = self.busy_s, 0.0
        return t

    def mbox_send(self, cmd: CxlMboxCmd) -> int:
        """cxl_mock_mbox_send(): 0 (``cmd.return_code`` set) or a negative errno."""
        handler = self._handlers.get(cmd.opcode)
        if handler is None:
            return -errno.EIO
        return getattr(self, handler)(cmd)

    _handlers: ClassVar[dict] = {
        M.CXL_MBOX_OP_SET_TIMESTAMP: "mock_set_timestamp",
        M.CXL_MBOX_OP_GET_SUPPORTED_LOGS: "mock_gsl",
        M.CXL_MBOX_OP_GET_LOG: "mock_get_log",
        M.CXL_MBOX_OP_IDENTIFY: "mock_identify",
        M.CXL_MBOX_OP_GET_LSA: "mock_get_lsa",
        M.CXL_MBOX_OP_GET_PARTITION_INFO: "mock_partition_info",
        M.CXL_MBOX_OP_SET_PARTITION_INFO: "mock_set_partition_info",
        M.CXL_MBOX_OP_GET_EVENT_RECORD: "mock_get_event",
        M.CXL_MBOX_OP_CLEAR_EVENT_RECORD: "mock_clear_event",
        M.CXL_MBOX_OP_SET_LSA: "mock_set_lsa",
        M.CXL_MBOX_OP_GET_HEALTH_INFO: "mock_health_info",
        M.CXL_MBOX_OP_SANITIZE: "mock_sanitize",
        M.CXL_MBOX_OP_SECURE_ERASE: "mock_secure_erase",
        M.CXL_MBOX_OP_GET_SECURITY_STATE: "mock_get_security_state",
        M.CXL_MBOX_OP_SET_PASSPHRASE: "mock_set_passphrase",
        M.CXL_MBOX_OP_DISABLE_PASSPHRASE: "mock_disable_passphrase",
        M.CXL_MBOX_OP_FREEZE_SECURITY: "mock_freeze_security",
        M.CXL_MBOX_OP_UNLOCK: "mock_unlock_security",
        M.CXL_MBOX_OP_PASSPHRASE_SECURE_ERASE: "mock_passphrase_secure_erase",
        M.CXL_MBOX_OP_GET_POISON: "mock_get_poison",
        M.CXL_MBOX_OP_INJECT_POISON: "mock_inject_poison",
        M.CXL_MBOX_OP_CLEAR_POISON: "mock_clear_poison",
        M.CXL_MBOX_OP_GET_FW_INFO: "mock_fw_info",
        M.CXL_MBOX_OP_TRANSFER_FW: "mock_transfer_fw",
        M.CXL_MBOX_OP_ACTIVATE_FW: "mock_activate_fw",
    }

    @staticmethod
    def _reply(cmd: CxlMboxCmd, data: bytes, size_out: Optional[int] = None) -> None:
        """Write ``data`` at the start of the output buffer; ``size_out`` given: that is what was
        produced, else the capacity stays (the rest of the buffer reads as zeros)."""
        if size_out is not None:
            cmd.size_out = size_out
        cmd.payload_out = data + bytes(cmd.size_out - len(data))

    @staticmethod
    def _fail(cmd: CxlMboxCmd, rc: int) -> int:
        cmd.return_code = rc
        return -errno.ENXIO

    def mock_set_timestamp(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != CXL_MBOX_SET_TIMESTAMP_IN.size or cmd.size_out != 0:
            return -errno.EINVAL
        (self.timestamp,) = CXL_MBOX_SET_TIMESTAMP_IN.unpack(cmd.payload_in)
        self.timestamp_at = self.sys.timers.clock()
        return 0

    def mock_gsl(self, cmd: CxlMboxCmd) -> int:
        out = CXL_MBOX_GET_SUPPORTED_LOGS.pack(1) + CXL_GSL_ENTRY.pack(CXL_CEL_UUID, len(self.cel_bytes()))
        if cmd.size_out < len(out):
            return -errno.EINVAL
        self._reply(cmd, out, len(out))
        return 0

    def mock_get_log(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in < CXL_MBOX_GET_LOG.size:
            return -errno.EINVAL
        log_uuid, offset, length = CXL_MBOX_GET_LOG.unpack(cmd.payload_in[:CXL_MBOX_GET_LOG.size])
        data = self.cel_bytes()
        if length > self.payload_size or offset + length > len(data) or log_uuid != CXL_CEL_UUID \
                or length > cmd.size_out:
            return -errno.EINVAL
        self._reply(cmd, data[offset:offset + length])
        return 0

    def mock_identify(self, cmd: CxlMboxCmd) -> int:
        units = M.CXL_CAPACITY_MULTIPLIER
        if self.rcd:          # mock_rcd_id: all capacity fixed, no partitioning
            out = CXL_MBOX_IDENTIFY.pack(self.fw_revision(), self.total_bytes // units,
                                         self.active_volatile // units, self.active_persistent // units, 0,
                                         0, 0, 0, 0, self.lsa_size, bytes(3), 0, 0, 0)
        else:                 # mock_id: all capacity partitionable, 256 MiB alignment
            poison = bool(self.info.poison)
            out = CXL_MBOX_IDENTIFY.pack(self.fw_revision(), self.total_bytes // units, 0, 0,
                                         self.partition_align_bytes // units, 0, 0, 0, 0, self.lsa_size,
                                         (CXL_POISON_LIST_MAX if poison else 0).to_bytes(3, "little"),
                                         MOCK_INJECT_TEST_MAX if poison else 0, 0, 0)
        if cmd.size_out < len(out):
            return -errno.EINVAL
        self._reply(cmd, out)
        return 0

    def mock_partition_info(self, cmd: CxlMboxCmd) -> int:
        units = M.CXL_CAPACITY_MULTIPLIER
        out = CXL_MBOX_GET_PARTITION_INFO.pack(self.active_volatile // units, self.active_persistent // units,
                                               self.next_volatile // units, self.next_persistent // units)
        if cmd.size_out < len(out):
            return -errno.EINVAL
        self._reply(cmd, out)
        return 0

    def mock_set_partition_info(self, cmd: CxlMboxCmd) -> int:
        """Extension (spec Set Partition Info): volatile capacity now (Immediate) or at the next reset."""
        if cmd.size_in < CXL_MBOX_SET_PARTITION_INFO.size or cmd.size_out != 0:
            return -errno.EINVAL
        vol_units, flags = CXL_MBOX_SET_PARTITION_INFO.unpack(cmd.payload_in[:CXL_MBOX_SET_PARTITION_INFO.size])
        align = self.partition_align_bytes
        vol = vol_units * M.CXL_CAPACITY_MULTIPLIER
        total = self.total_bytes                  # no volatile-only / persistent-only capacity
        if not align or vol > total or vol % align:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_INPUT)
        if flags & CXL_SET_PARTITION_IMMEDIATE_FLAG:
            self.active_volatile, self.active_persistent = vol, total - vol
            self.next_volatile = self.next_persistent = 0
            self.partition_pending = False
        else:
            self.next_volatile, self.next_persistent = vol, total - vol
            self.partition_pending = True
        if isinstance(self.host, MockMemDevice):   # survives the re-probe that is this mock's reset
            self.host.partition = (self.active_volatile, self.active_persistent)
            self.host.partition_next = (self.next_volatile, self.next_persistent) if self.partition_pending else None
        return 0

    def reset(self) -> None:
        """A device reset: a pending partition change becomes active."""
        if self.partition_pending:
            self.active_volatile, self.active_persistent = self.next_volatile, self.next_persistent
            self.next_volatile = self.next_persistent = 0
            self.partition_pending = False
            if isinstance(self.host, MockMemDevice):
                self.host.partition = (self.active_volatile, self.active_persistent)
                self.host.partition_next = None

    def mock_get_lsa(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in < CXL_MBOX_GET_LSA.size:
            return -errno.EINVAL
        offset, length = CXL_MBOX_GET_LSA.unpack(cmd.payload_in[:CXL_MBOX_GET_LSA.size])
        if offset + length > self.lsa_size or length > cmd.size_out:
            return -errno.EINVAL
        self._reply(cmd, bytes(self.lsa[offset:offset + length]))
        return 0

    def mock_set_lsa(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in < CXL_MBOX_SET_LSA.size:
            return -errno.EINVAL
        (offset,) = CXL_MBOX_SET_LSA.unpack(cmd.payload_in[:CXL_MBOX_SET_LSA.size])
        data = cmd.payload_in[CXL_MBOX_SET_LSA.size:]
        if offset + len(data) > self.lsa_size:
            return -errno.EINVAL
        self.lsa[offset:offset + len(data)] = data
        return 0

    def mock_health_info(self, cmd: CxlMboxCmd) -> int:
        # maint needed | perf degraded | hw replacement; media "all data lost"; ext status: life used
        # normal, temperature critical, corrected volatile warning, corrected persistent normal
        out = CXL_MBOX_HEALTH_INFO.pack(0x7, 0x3, 0x18, 15, 25, 10, 20, 30) if self.canned else \
            CXL_MBOX_HEALTH_INFO.pack(0, 0, 0, 0, 25, 0, 0, 0)       # media normal, nothing to report
        if cmd.size_out < len(out):
            return -errno.EINVAL
        self._reply(cmd, out)
        return 0

    # ----- events
    def mock_get_event(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != 1:
            return -errno.EINVAL
        self.ret_limit = (self.ret_limit + 1) % CXL_TEST_EVENT_RET_MAX or 1
        if cmd.size_out < struct_size_event(self.ret_limit):
            return -errno.EINVAL
        log_type = cmd.payload_in[0]
        if log_type >= CXL_EVENT_TYPE_MAX:
            return -errno.EINVAL
        log = self.mes.mock_logs[log_type]
        if event_log_empty(log):
            self._reply(cmd, bytes(CXL_GET_EVENT_PAYLOAD.size))
            return 0
        records: list[bytes] = []
        while len(records) < self.ret_limit and not event_log_empty(log):
            rec = bytearray(log.events[log.cur_idx])
            h = CXL_EVENT_RECORD_HANDLE_OFFSET
            rec[h:h + 2] = event_get_cur_event_handle(log).to_bytes(2, "little")
            records.append(bytes(rec))
            log.cur_idx += 1
        flags = 0 if event_log_empty(log) else CXL_GET_EVENT_FLAG_MORE_RECORDS
        count = first = last = 0
        if log.nr_overflow:
            flags |= CXL_GET_EVENT_FLAG_OVERFLOW
            count = log.nr_overflow
            now = self.device_time_ns()
            first, last = now - 5_000_000_000, now - 1_000_000_000      # 5 s and 1 s ago
        hdr = CXL_GET_EVENT_PAYLOAD.pack(flags, count, first & (2**64 - 1), last & (2**64 - 1), len(records))
        self._reply(cmd, hdr + b"".join(records), struct_size_event(len(records)))
        return 0

    def mock_clear_event(self, cmd: CxlMboxCmd) -> int:
        pl = _padded(cmd.payload_in, CXL_MBOX_CLEAR_EVENT_PAYLOAD.size)
        log_type, _clear_flags, nr_recs = CXL_MBOX_CLEAR_EVENT_PAYLOAD.unpack(pl[:CXL_MBOX_CLEAR_EVENT_PAYLOAD.size])
        if log_type >= CXL_EVENT_TYPE_MAX:
            return -errno.EINVAL
        log = self.mes.mock_logs[log_type]
        if log.clear_idx + nr_recs > log.cur_idx:
            self._dbg("Attempting to clear more events than returned!", "err")
            return -errno.EINVAL
        raw = _padded(cmd.payload_in[CXL_MBOX_CLEAR_EVENT_PAYLOAD.size:], 2 * nr_recs)
        handle = event_get_clear_handle(log)
        for nr in range(nr_recs):
            if int.from_bytes(raw[2 * nr:2 * nr + 2], "little") != (handle + nr) & 0xFFFF:
                self._dbg("Clearing events out of order", "err")
                return -errno.EINVAL
        log.nr_overflow = 0
        log.clear_idx += nr_recs
        return 0

    def event_trigger(self) -> None:
        """cxl_mock_event_trigger(): rewind every log, then let the kernel read them again."""
        for log in self.mes.mock_logs:
            event_reset_log(log)
        if self.mds is not None:
            mbox.cxl_mem_get_event_records(self.mds, self.mes.ev_status)

    # ----- sanitize / erase
    def mock_sanitize(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != 0 or cmd.size_out != 0:
            return -errno.EINVAL
        if self.security_state & (CXL_PMEM_SEC_STATE_USER_PASS_SET | CXL_PMEM_SEC_STATE_LOCKED):
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        if self.bg_opcode is not None:
            return -errno.EBUSY               # the sanitize work is already pending
        now = self.sys.timers.clock()
        self.bg_opcode, self.bg_started = cmd.opcode, now
        self.bg_deadline = now + self.sanitize_timeout / 1000
        self._bg_timer = self.sys.timers.add(self.sanitize_timeout / 1000, self._sanitize_work)
        cmd.return_code = M.CXL_MBOX_CMD_RC_BACKGROUND
        self._dbg("sanitize issued")
        return 0

    def _sanitize_work(self) -> None:
        """cxl_mockmem_sanitize_work(): the background sanitize finished."""
        self.bg_opcode = None
        self._bg_timer = None
        self._dbg("sanitize complete")
        if self.on_background_done is not None:
            self.on_background_done()

    def mbox_background_complete(self) -> bool:
        return self.bg_opcode is None

    def bg_percent_complete(self) -> int:
        """The Background Command Status register's percentage for the running command."""
        if self.bg_opcode is None:
            return 100
        span = self.bg_deadline - self.bg_started
        if span <= 0:
            return 99
        done = (self.sys.timers.clock() - self.bg_started) / span
        return max(0, min(99, int(done * 100)))

    def cancel_background(self) -> None:
        if self._bg_timer is not None:
            self._bg_timer.cancel()
        self._bg_timer = None
        self.bg_opcode = None

    def mock_secure_erase(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != 0 or cmd.size_out != 0:
            return -errno.EINVAL
        if self.security_state & (CXL_PMEM_SEC_STATE_USER_PASS_SET | CXL_PMEM_SEC_STATE_LOCKED):
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        return 0

    # ----- security
    def mock_get_security_state(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in or cmd.size_out != CXL_GET_SECURITY_OUTPUT.size:
            return -errno.EINVAL
        self._reply(cmd, CXL_GET_SECURITY_OUTPUT.pack(self.security_state))
        return 0

    def master_plimit_check(self) -> None:
        if self.master_limit == PASS_TRY_LIMIT:
            return
        self.master_limit += 1
        if self.master_limit == PASS_TRY_LIMIT:
            self.security_state |= CXL_PMEM_SEC_STATE_MASTER_PLIMIT

    def user_plimit_check(self) -> None:
        if self.user_limit == PASS_TRY_LIMIT:
            return
        self.user_limit += 1
        if self.user_limit == PASS_TRY_LIMIT:
            self.security_state |= CXL_PMEM_SEC_STATE_USER_PLIMIT

    def mock_set_passphrase(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != CXL_SET_PASS.size or cmd.size_out != 0:
            return -errno.EINVAL
        st = self.security_state
        if st & CXL_PMEM_SEC_STATE_FROZEN:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        ptype, old, new = CXL_SET_PASS.unpack(cmd.payload_in)
        if ptype == CXL_PMEM_SEC_PASS_MASTER:
            # the master passphrase is set only while no user passphrase is (CXL 3.0 8.2.9.8.6.2)
            if st & (CXL_PMEM_SEC_STATE_MASTER_PLIMIT | CXL_PMEM_SEC_STATE_USER_PASS_SET):
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
            if old != self.master_pass:
                self.master_plimit_check()
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
            self.master_pass = new
            self.security_state |= CXL_PMEM_SEC_STATE_MASTER_PASS_SET
            return 0
        if ptype == CXL_PMEM_SEC_PASS_USER:
            if st & CXL_PMEM_SEC_STATE_USER_PLIMIT:
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
            if old != self.user_pass:
                self.user_plimit_check()
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
            self.user_pass = new
            self.security_state |= CXL_PMEM_SEC_STATE_USER_PASS_SET
            return 0
        cmd.return_code = M.CXL_MBOX_CMD_RC_INPUT
        return -errno.EINVAL

    def mock_disable_passphrase(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != CXL_DISABLE_PASS.size or cmd.size_out != 0:
            return -errno.EINVAL
        st = self.security_state
        if st & CXL_PMEM_SEC_STATE_FROZEN:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        ptype, pw = CXL_DISABLE_PASS.unpack(cmd.payload_in)
        if ptype == CXL_PMEM_SEC_PASS_MASTER:
            if st & CXL_PMEM_SEC_STATE_MASTER_PLIMIT or not st & CXL_PMEM_SEC_STATE_MASTER_PASS_SET:
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
            if pw != self.master_pass:
                self.master_plimit_check()
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
            self.master_limit = 0
            self.master_pass = bytes(NVDIMM_PASSPHRASE_LEN)
            self.security_state &= ~CXL_PMEM_SEC_STATE_MASTER_PASS_SET
            return 0
        if ptype == CXL_PMEM_SEC_PASS_USER:
            if st & CXL_PMEM_SEC_STATE_USER_PLIMIT or not st & CXL_PMEM_SEC_STATE_USER_PASS_SET:
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
            if pw != self.user_pass:
                self.user_plimit_check()
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
            self.user_limit = 0
            self.user_pass = bytes(NVDIMM_PASSPHRASE_LEN)
            self.security_state &= ~(CXL_PMEM_SEC_STATE_USER_PASS_SET | CXL_PMEM_SEC_STATE_LOCKED)
            return 0
        cmd.return_code = M.CXL_MBOX_CMD_RC_INPUT
        return -errno.EINVAL

    def mock_freeze_security(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != 0 or cmd.size_out != 0:
            return -errno.EINVAL
        self.security_state |= CXL_PMEM_SEC_STATE_FROZEN
        return 0

    def mock_unlock_security(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != NVDIMM_PASSPHRASE_LEN or cmd.size_out != 0:
            return -errno.EINVAL
        st = self.security_state
        if st & CXL_PMEM_SEC_STATE_FROZEN or not st & CXL_PMEM_SEC_STATE_USER_PASS_SET \
                or st & CXL_PMEM_SEC_STATE_USER_PLIMIT or not st & CXL_PMEM_SEC_STATE_LOCKED:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        if cmd.payload_in != self.user_pass:
            self.user_limit += 1
            if self.user_limit == PASS_TRY_LIMIT:
                self.security_state |= CXL_PMEM_SEC_STATE_USER_PLIMIT
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
        self.user_limit = 0
        self.security_state &= ~CXL_PMEM_SEC_STATE_LOCKED
        return 0

    def mock_passphrase_secure_erase(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in != CXL_PASS_ERASE.size or cmd.size_out != 0:
            return -errno.EINVAL
        ptype, pw = CXL_PASS_ERASE.unpack(cmd.payload_in)
        st = self.security_state
        if st & CXL_PMEM_SEC_STATE_FROZEN:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        if st & CXL_PMEM_SEC_STATE_USER_PLIMIT and ptype == CXL_PMEM_SEC_PASS_USER:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        if st & CXL_PMEM_SEC_STATE_MASTER_PLIMIT and ptype == CXL_PMEM_SEC_PASS_MASTER:
            return self._fail(cmd, M.CXL_MBOX_CMD_RC_SECURITY)
        if ptype == CXL_PMEM_SEC_PASS_MASTER:
            # with no master passphrase set the device answers Invalid Input (CXL 3.0 8.2.9.8.6.3)
            if not st & CXL_PMEM_SEC_STATE_MASTER_PASS_SET:
                return -errno.EINVAL
            if pw != self.master_pass:
                self.master_plimit_check()
                return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
            self.master_limit = self.user_limit = 0
            self.user_pass = bytes(NVDIMM_PASSPHRASE_LEN)
            self.security_state &= ~(CXL_PMEM_SEC_STATE_USER_PASS_SET | CXL_PMEM_SEC_STATE_LOCKED)
            return 0
        if ptype == CXL_PMEM_SEC_PASS_USER:
            # no user passphrase set: proceeds like a secure erase without passphrase
            if st & CXL_PMEM_SEC_STATE_USER_PASS_SET:
                if pw != self.user_pass:
                    self.user_plimit_check()
                    return self._fail(cmd, M.CXL_MBOX_CMD_RC_PASSPHRASE)
                self.user_limit = 0
                self.user_pass = bytes(NVDIMM_PASSPHRASE_LEN)
                self.security_state &= ~CXL_PMEM_SEC_STATE_USER_PASS_SET
            return 0
        return -errno.EINVAL

    # ----- poison
    def cxl_get_injected_po(self, offset: int, length: int) -> list:
        """The injected DPAs mem.c reports for [offset, offset + length - 1] (u64 arithmetic)."""
        last = (offset + length * GET_POISON_LENGTH_UNIT - 1) & (2**64 - 1)
        out = []
        for dpa in self.poison.dpas(self):
            if dpa < offset or dpa > last:
                continue
            out.append(dpa)
            if len(out) == self.poison.inject_dev_max:
                break
        return out

    def mock_get_poison(self, cmd: CxlMboxCmd) -> int:
        offset, length = CXL_MBOX_POISON_IN.unpack(_padded(cmd.payload_in, CXL_MBOX_POISON_IN.size))
        dpas = self.cxl_get_injected_po(offset, length)
        size = struct_size_poison(len(dpas))
        if size > cmd.size_out:
            return -errno.EINVAL
        recs = b"".join(CXL_POISON_RECORD.pack((dpa + CXL_POISON_SOURCE_INJECTED) & (2**64 - 1), 1)
                        for dpa in dpas)
        self._reply(cmd, CXL_MBOX_POISON_OUT.pack(0, 0, len(dpas)) + recs, size)
        return 0

    def mock_inject_poison(self, cmd: CxlMboxCmd) -> int:
        (dpa,) = CXL_MBOX_INJECT_POISON.unpack(_padded(cmd.payload_in, CXL_MBOX_INJECT_POISON.size))
        pl = self.poison
        if pl.found(self, dpa):
            self._dbg(f"DPA: {dpa:#x} already poisoned")
            return 0              # not an error to inject poison twice
        if pl.count(self) >= pl.inject_dev_max:
            self._dbg(f"Device poison injection limit has been reached: {pl.inject_dev_max}")
            return -errno.EBUSY   # what the CXL driver reports for POISONLMT
        for i, s in enumerate(pl.slots):
            if s is None:
                pl.slots[i] = (self, dpa)
                return 0
        self._dbg(f"Mock test poison injection limit has been reached: {MOCK_INJECT_TEST_MAX}")
        return -errno.ENXIO

    def mock_clear_poison(self, cmd: CxlMboxCmd) -> int:
        # a real device writes write_data at the address; the mock only forgets the address
        (dpa, _data) = CXL_MBOX_CLEAR_POISON.unpack(_padded(cmd.payload_in, CXL_MBOX_CLEAR_POISON.size))
        pl = self.poison
        for i, s in enumerate(pl.slots):
            if s is not None and s[0] is self and s[1] == dpa:
                pl.slots[i] = None
                return 0
        self._dbg(f"DPA: {dpa:#x} not in poison list")
        return 0

    # ----- firmware
    def mock_fw_info(self, cmd: CxlMboxCmd) -> int:
        revs = [r.encode().ljust(16, b"\0") for r in MOCK_FW_SLOT_REVISIONS]
        out = CXL_MBOX_GET_FW_INFO.pack(FW_SLOTS, (self.fw_slot & 0x7) | ((self.fw_staged & 0x7) << 3), 0, *revs)
        if cmd.size_out < len(out):
            return -errno.EINVAL
        self._reply(cmd, out)
        return 0

    def mock_transfer_fw(self, cmd: CxlMboxCmd) -> int:
        if cmd.size_in < CXL_MBOX_TRANSFER_FW.size:
            return -errno.EINVAL          # mem.c: size_in - header underflows, "offset + length > FW_SIZE"
        action, slot, off_units = CXL_MBOX_TRANSFER_FW.unpack(cmd.payload_in[:CXL_MBOX_TRANSFER_FW.size])
        data = cmd.payload_in[CXL_MBOX_TRANSFER_FW.size:]
        offset = off_units * CXL_FW_TRANSFER_ALIGNMENT
        if offset + len(data) > FW_SIZE:
            return -errno.EINVAL
        if action in (CXL_FW_TRANSFER_ACTION_FULL, CXL_FW_TRANSFER_ACTION_END):
            if action == CXL_FW_TRANSFER_ACTION_FULL and offset != 0:
                return -errno.EINVAL
            if slot == 0 or slot > FW_SLOTS:
                return -errno.EINVAL
            self.fw_size = offset + len(data)
        elif action == CXL_FW_TRANSFER_ACTION_ABORT:
            return 0
        elif action not in (CXL_FW_TRANSFER_ACTION_INITIATE, CXL_FW_TRANSFER_ACTION_CONTINUE):
            return -errno.EINVAL
        if len(self.fw) < offset + len(data):
            self.fw.extend(bytes(offset + len(data) - len(self.fw)))
        self.fw[offset:offset + len(data)] = data
        self.busy_s += MOCK_TRANSFER_FW_S
        return 0

    def mock_activate_fw(self, cmd: CxlMboxCmd) -> int:
        action, slot = CXL_MBOX_ACTIVATE_FW.unpack(_padded(cmd.payload_in, CXL_MBOX_ACTIVATE_FW.size))
        if slot == 0 or slot > FW_SLOTS:
            return -errno.EINVAL
        if action == CXL_FW_ACTIVATE_ONLINE:
            self.fw_slot, self.fw_staged = slot, 0
            return 0
        if action == CXL_FW_ACTIVATE_OFFLINE:
            self.fw_staged = slot
            return 0
        return -errno.EINVAL

    # ----- helpers
    def _dbg(self, msg: str, level: str = "debug") -> None:
        if self.host is not None:
            self.sys.klog.log(f"cxl_mock_mem {self.host.name}: {msg}", level)


# ------------------------------------------------------------------ the platform device and driver

def _mock_of(dev: Device) -> MockMem:
    mock = getattr(dev, "drvdata", None)
    if not isinstance(mock, MockMem):
        raise KernelError(errno.ENODEV, f"{dev.name}: cxl_mock_mem is not bound")
    return mock


@attrs.define(eq=False, kw_only=True)
class MockMemDevice(PlatformDevice):
    """A ``cxl_mem.N`` / ``cxl_rcd.N`` platform device.  Its drvdata is the :class:`MockMem` while
    cxl_mock_mem is bound; the mock-only attributes are the driver's ``dev_groups``."""

    drvdata: Optional[MockMem] = attrs.field(default=None, repr=False)
    # Set Partition Info's effect across the re-probe that resets the mock (this port's extension)
    partition: Optional[tuple] = None
    partition_next: Optional[tuple] = None

    @property
    def mock(self) -> Optional[MockMem]:
        return self.drvdata

    def event_trigger_store(self, buf: str) -> None:
        _mock_of(self).event_trigger()

    def fw_buf_checksum_show(self) -> str:
        return _mock_of(self).fw_buf_checksum() + "\n"

    def sanitize_timeout_show(self) -> str:
        return f"{_mock_of(self).sanitize_timeout}\n"

    def sanitize_timeout_store(self, buf: str) -> None:
        mock = _mock_of(self)
        mock.sanitize_timeout = kstrtoull(buf, 0, 2**64 - 1)        # kstrtoul

    def security_lock_show(self) -> str:
        return f"{int(bool(_mock_of(self).security_state & CXL_PMEM_SEC_STATE_LOCKED))}\n"

    def security_lock_store(self, buf: str) -> None:
        mock = _mock_of(self)
        val = _kstrtoint_einval(buf)
        if val != 1:
            raise KernelError(errno.EINVAL, f"{self.name}: security_lock: only 1 (lock) can be written")
        if not mock.security_state & CXL_PMEM_SEC_STATE_USER_PASS_SET:
            raise KernelError(errno.ENXIO, f"{self.name}: security_lock: no user passphrase is set")
        mock.security_state |= CXL_PMEM_SEC_STATE_LOCKED
        mock.security_state &= ~(CXL_PMEM_SEC_STATE_FROZEN | CXL_PMEM_SEC_STATE_USER_PLIMIT
                                 | CXL_PMEM_SEC_STATE_MASTER_PLIMIT)


CXL_MOCK_MEM_GROUP = AttrGroup([RW("security_lock"), WO("event_trigger"), RO("fw_buf_checksum"),
                                RW("sanitize_timeout")])


@attrs.define(eq=False, kw_only=True)
class CxlMockMemDriver(PlatformDriver):
    """Probes a memdev host device and registers ``memN`` (cxl_mock_mem / cxl_pci's role)."""

    name: str = "cxl_mock_mem"
    module: str = "cxl_mock_mem"
    poison: MockPoisonList = attrs.field(factory=MockPoisonList, repr=False)

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return m is not None and getattr(dev, "cfg", None) is not None and dev.name in m.memdev_hosts \
            and m.memdev_driver == self.name

    def dev_groups(self, dev: Device) -> tuple:
        return (CXL_MOCK_MEM_GROUP,) if isinstance(dev, MockMemDevice) else ()

    def driver_attrs(self) -> list:
        return super().driver_attrs() + [RW("poison_inject_max")]

    def poison_inject_max_show(self) -> str:
        return f"{self.poison.inject_dev_max}\n"

    def poison_inject_max_store(self, buf: str) -> None:
        val = _kstrtoint_einval(buf)
        if not self.poison.empty():
            raise KernelError(errno.EBUSY, "poison_inject_max: poison is injected")
        if val > MOCK_INJECT_TEST_MAX:
            raise KernelError(errno.EINVAL, f"poison_inject_max: at most {MOCK_INJECT_TEST_MAX}")
        self.poison.inject_dev_max = val & 0xFFFFFFFF           # an unsigned int in mem.c

    def probe(self, pdev) -> None:
        m = pdev.sys.machine
        m.probe_memdev(pdev)
        if isinstance(pdev, MockMemDevice) and pdev.drvdata is None:
            # the machine did not go through cxl_mock_mem_probe(): keep the mock knobs working
            info, _ = m.memdev_info(pdev.name)
            mock_mem_bind(pdev, info)


def mock_mem_bind(pdev: Device, info: MemdevInfo) -> MockMem:
    """mem.c probe's first half: a fresh ``cxl_mockmem_data`` as the platform device's drvdata
    (released on unbind).  A partition change staged before is applied: the probe is the reset."""
    drv = pdev.driver if isinstance(pdev.driver, CxlMockMemDriver) else None
    if isinstance(pdev, MockMemDevice):
        if pdev.partition_next is not None:
            pdev.partition, pdev.partition_next = pdev.partition_next, None
        if pdev.partition is not None:
            info = attrs.evolve(info, ram_size=pdev.partition[0], pmem_size=pdev.partition[1])
    mock = MockMem(info=info, sys=pdev.sys, host=pdev, canned=isinstance(pdev, MockMemDevice),
                   poison=drv.poison if drv is not None else MockPoisonList())
    if isinstance(pdev, MockMemDevice):       # dev_set_drvdata(); a plain host keeps it via mds only
        pdev.drvdata = mock

    def release() -> None:
        mock.cancel_background()
        mock.poison.drop(mock)
        if isinstance(pdev, MockMemDevice) and pdev.drvdata is mock:
            pdev.drvdata = None

    pdev.devm_add_action(release, "cxl_mock_mem:mdata")
    return mock


def _kstrtoint_einval(buf: str) -> int:
    """mem.c's stores: ``if (kstrtoint(buf, 0, &val) < 0) return -EINVAL`` (ERANGE too)."""
    try:
        return kstrtoint(buf, 0)
    except KernelError as e:
        raise KernelError(errno.EINVAL, e.reason) from e


def cxl_mock_mem_probe(pdev: Device, info: MemdevInfo, hdm: Any) -> Any:
    """mem.c's cxl_mock_mem_probe(), in its order; returns the new ``memN``."""
    mock = mock_mem_bind(pdev, info)
    info = mock.info                                  # with a partition applied at this reset
    mds = mbox.cxl_memdev_state_create(pdev)      # the kernel side raises KernelError where C returns -errno
    mock.mds = mds
    if mock.on_background_done is None:
        mock.on_background_done = mds.on_background_done      # the "background command done" irq
    mds.mbox.mbox_send = mock.mbox_send
    mds.mbox.device_time = mock.device_time
    mds.mbox.payload_size = mock.payload_size
    mds.serial = info.serial
    mds.rcd = bool(info.rcd)
    mbox.cxl_enumerate_cmds(mds)
    mbox.cxl_poison_state_init(mds)
    mbox.cxl_set_timestamp(mds)
    mds.media_ready = True
    mbox.cxl_dev_state_identify(mds)
    mbox.cxl_mem_create_range_info(mds)
    # cxl_mock_add_event_logs(): MockMem() filled the logs already, nothing has read them yet
    cxlmd = memdev.devm_cxl_add_memdev(pdev, mds, hdm, pdev.numa_node, info)
    memdev.devm_cxl_setup_fw_upload(pdev, mds)
    memdev.devm_cxl_sanitize_setup_notifier(pdev, cxlmd)
    mbox.cxl_mem_get_event_records(mds, CXLDEV_EVENT_STATUS_ALL)
    return cxlmd
