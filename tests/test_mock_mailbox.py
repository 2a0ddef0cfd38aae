"""The device end of the mailbox: cxlsys.cxl_test.mem (tools/testing/cxl/test/mem.c).

Expected payloads are packed here from the spec / cxlmem.h layouts (not from the module's tables),
and compared byte for byte with what the mock answers.
"""

import errno
import hashlib
import struct
import uuid

import pytest

from cxlsys.cxl.core import mbox as mbox_core
from cxlsys.cxl.core import memdev as memdev_core
from cxlsys.cxl.core.memdev import MemdevInfo
from cxlsys.cxl.cxlmem import CxlMboxCmd
from cxlsys.cxl_test import CxlMockMemDriver, MockMem, MockMemDevice
from cxlsys.cxl_test.mem import MockPoisonList
from cxlsys.errors import KernelError
from cxlsys.kernel.timer import FakeClock
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import assert_refused

# opcodes (CXL 3.0 8.2.9 / cxlmem.h enum cxl_opcode)
GET_EVENT_RECORD, CLEAR_EVENT_RECORD = 0x0100, 0x0101
GET_FW_INFO, TRANSFER_FW, ACTIVATE_FW = 0x0200, 0x0201, 0x0202
GET_TIMESTAMP, SET_TIMESTAMP = 0x0300, 0x0301
GET_SUPPORTED_LOGS, GET_LOG = 0x0400, 0x0401
IDENTIFY, GET_PARTITION_INFO, SET_PARTITION_INFO, GET_LSA, SET_LSA = 0x4000, 0x4100, 0x4101, 0x4102, 0x4103
GET_HEALTH_INFO = 0x4200
GET_POISON, INJECT_POISON, CLEAR_POISON = 0x4300, 0x4301, 0x4302
SANITIZE, SECURE_ERASE = 0x4400, 0x4401
GET_SECURITY_STATE, SET_PASSPHRASE, DISABLE_PASSPHRASE, UNLOCK, FREEZE_SECURITY, PASSPHRASE_SECURE_ERASE = \
    0x4500, 0x4501, 0x4502, 0x4503, 0x4504, 0x4505
# return codes (CXL 3.0 Table 8-34)
RC_SUCCESS, RC_BACKGROUND, RC_INPUT, RC_SECURITY, RC_PASSPHRASE = 0, 1, 2, 0x13, 0x14
# security state bits (Get Security State output)
USER_PASS_SET, MASTER_PASS_SET, LOCKED, FROZEN, USER_PLIMIT, MASTER_PLIMIT = 1, 2, 4, 8, 0x10, 0x20

CEL_UUID = uuid.UUID("0da9c0b5-bf41-4b78-8f79-96b1623b3f17").bytes
SZ_256M = 256 << 20
PAYLOAD = 4096
EVENT_HDR = 32          # Get Event Records output header
RECORD = 128            # one event record


@pytest.fixture
def sys_():
    s = System.boot("cxl_test")
    s.timers.clock = FakeClock()
    return s


def info(**kw):
    base = dict(ram_size=1 << 30, pmem_size=1 << 30, serial=3, lsa_size=128 << 10, payload_max=PAYLOAD,
                firmware_version="mock fw v1 ")
    base.update(kw)
    return MemdevInfo(**base)


@pytest.fixture
def mock(sys_):
    return MockMem(info=info(), sys=sys_)


def send(m, opcode, payload_in=b"", size_out=0):
    cmd = CxlMboxCmd(opcode=opcode, payload_in=payload_in, size_out=size_out)
    rc = m.mbox_send(cmd)
    return rc, cmd


def pw(s: str) -> bytes:
    return s.encode().ljust(32, b"\0")


def sec_state(m) -> int:
    rc, cmd = send(m, GET_SECURITY_STATE, size_out=4)
    assert rc == 0
    return struct.unpack("<I", cmd.payload_out)[0]


# ------------------------------------------------------------------ generic

def test_unknown_opcode_is_eio_like_mem_c(mock):
    for op in (GET_TIMESTAMP, 0x0102, 0x4201, 0xFFFF):
        rc, cmd = send(mock, op, size_out=64)
        assert rc == -errno.EIO and cmd.return_code == RC_SUCCESS and cmd.payload_out == b""


def test_set_timestamp(mock):
    assert send(mock, SET_TIMESTAMP, struct.pack("<Q", 1234567))[0] == 0
    assert mock.timestamp == 1234567
    assert send(mock, SET_TIMESTAMP, struct.pack("<I", 7))[0] == -errno.EINVAL
    assert send(mock, SET_TIMESTAMP, struct.pack("<Q", 9), size_out=8)[0] == -errno.EINVAL
    assert mock.timestamp == 1234567


# the CEL mem.c publishes (opcode, effect), then this port's SET_PARTITION_INFO
EXPECTED_CEL = [(0x0400, 0), (0x4000, 0), (0x4102, 0), (0x4100, 0), (0x4103, 0b110), (0x4200, 0),
                (0x4300, 0), (0x4301, 0b100), (0x4302, 0b100), (0x0200, 0), (0x0201, 0b1000001),
                (0x0202, 0b11), (0x4400, 0b1100100), (0x4101, 0b11)]


def test_get_supported_logs(mock):
    rc, cmd = send(mock, GET_SUPPORTED_LOGS, size_out=PAYLOAD)
    assert rc == 0 and cmd.return_code == RC_SUCCESS
    assert cmd.size_out == 28
    assert cmd.payload_out == struct.pack("<H6x", 1) + CEL_UUID + struct.pack("<I", 4 * len(EXPECTED_CEL))
    assert send(mock, GET_SUPPORTED_LOGS, size_out=27)[0] == -errno.EINVAL


def _get_log(m, offset, length, size_out=None, log_uuid=CEL_UUID):
    return send(m, GET_LOG, log_uuid + struct.pack("<II", offset, length),
                size_out=length if size_out is None else size_out)


def test_get_log_cel(mock):
    n = 4 * len(EXPECTED_CEL)
    rc, cmd = _get_log(mock, 0, n)
    assert rc == 0 and cmd.size_out == n
    assert cmd.payload_out == b"".join(struct.pack("<HH", op, eff) for op, eff in EXPECTED_CEL)
    rc, cmd = _get_log(mock, 8, 4)                     # a piece: the third entry
    assert rc == 0 and cmd.payload_out == struct.pack("<HH", 0x4102, 0)
    assert _get_log(mock, 4, n)[0] == -errno.EINVAL                       # past the end
    assert _get_log(mock, 0, n, log_uuid=bytes(16))[0] == -errno.EINVAL   # not the CEL
    assert _get_log(mock, 0, n, size_out=n - 1)[0] == -errno.EINVAL       # buffer too small
    assert send(mock, GET_LOG, CEL_UUID + struct.pack("<I", 0), size_out=n)[0] == -errno.EINVAL   # short
    small = MockMem(info=info(payload_max=16), sys=mock.sys)
    assert _get_log(small, 0, 20)[0] == -errno.EINVAL                     # more than the payload size


def test_cel_follows_memdev_info(sys_):
    m = MockMem(info=info(poison=False, sanitize=False), sys=sys_)
    rc, cmd = _get_log(m, 0, 4 * (len(EXPECTED_CEL) - 4))
    want = [e for e in EXPECTED_CEL if e[0] not in (0x4300, 0x4301, 0x4302, 0x4400)]
    assert rc == 0 and cmd.payload_out == b"".join(struct.pack("<HH", *e) for e in want)


# ------------------------------------------------------------------ identify / partitions

def _identify(fw, total, vol, pers, align, lsa, poison_max, inject_limit):
    # Identify Memory Device output payload (CXL 3.0 Table 8-94), 0x43 bytes
    return (fw.encode().ljust(16, b"\0") + struct.pack("<QQQQ", total, vol, pers, align)
            + struct.pack("<HHHH", 0, 0, 0, 0) + struct.pack("<I", lsa) + poison_max.to_bytes(3, "little")
            + struct.pack("<HBB", inject_limit, 0, 0))


def test_identify(mock, sys_):
    rc, cmd = send(mock, IDENTIFY, size_out=0x43)
    assert rc == 0 and cmd.size_out == 0x43
    assert cmd.payload_out == _identify("mock fw v1 ", 8, 0, 0, 1, 128 << 10, 1024, 128)
    rc, cmd = send(mock, IDENTIFY, size_out=PAYLOAD)      # a larger buffer: size_out stays, zeros after
    assert rc == 0 and cmd.size_out == PAYLOAD and cmd.payload_out[0x43:] == bytes(PAYLOAD - 0x43)
    assert send(mock, IDENTIFY, size_out=0x42)[0] == -errno.EINVAL
    rcd = MockMem(info=info(ram_size=2 << 30, pmem_size=0, lsa_size=0, rcd=True, firmware_version="fw2"), sys=sys_)
    assert send(rcd, IDENTIFY, size_out=0x43)[1].payload_out == _identify("fw2", 8, 8, 0, 0, 0, 0, 0)
    dflt = MockMem(info=MemdevInfo(), sys=sys_)              # nothing given: mem.c's 2 GiB device
    assert send(dflt, IDENTIFY, size_out=0x43)[1].payload_out == _identify("mock fw v1 ", 8, 0, 0, 1, 0, 1024, 128)
    assert send(dflt, GET_PARTITION_INFO, size_out=32)[1].payload_out == struct.pack("<QQQQ", 4, 4, 0, 0)


def _partition(m):
    rc, cmd = send(m, GET_PARTITION_INFO, size_out=32)
    assert rc == 0
    return struct.unpack("<QQQQ", cmd.payload_out)


def test_partition_info_and_set_partition(mock):
    assert _partition(mock) == (4, 4, 0, 0)
    assert send(mock, GET_PARTITION_INFO, size_out=31)[0] == -errno.EINVAL
    # next-boot change (what `cxl set-partition` sends: 0x0a bytes, flags 0)
    rc, cmd = send(mock, SET_PARTITION_INFO, struct.pack("<QBx", 2, 0))
    assert rc == 0 and cmd.return_code == RC_SUCCESS
    assert _partition(mock) == (4, 4, 2, 6)
    mock.reset()
    assert _partition(mock) == (2, 6, 0, 0)
    # immediate
    assert send(mock, SET_PARTITION_INFO, struct.pack("<QB", 8, 1))[0] == 0
    assert _partition(mock) == (8, 0, 0, 0)
    # refused: more than the partitionable capacity, short, with output
    rc, cmd = send(mock, SET_PARTITION_INFO, struct.pack("<QB", 9, 0))
    assert rc == -errno.ENXIO and cmd.return_code == RC_INPUT
    assert send(mock, SET_PARTITION_INFO, struct.pack("<Q", 2))[0] == -errno.EINVAL
    assert send(mock, SET_PARTITION_INFO, struct.pack("<QB", 2, 0), size_out=4)[0] == -errno.EINVAL
    assert _partition(mock) == (8, 0, 0, 0)


def test_set_partition_on_rcd_is_invalid_input(sys_):
    rcd = MockMem(info=info(ram_size=2 << 30, pmem_size=0, rcd=True), sys=sys_)
    rc, cmd = send(rcd, SET_PARTITION_INFO, struct.pack("<QB", 4, 0))
    assert rc == -errno.ENXIO and cmd.return_code == RC_INPUT
    assert _partition(rcd) == (8, 0, 0, 0)


def test_pending_partition_applies_at_reprobe(sys_):
    fs = Sysfs(sys_)
    pdev = sys_.machine.devices["cxl_mem.8"]
    assert isinstance(pdev, MockMemDevice) and isinstance(pdev.mock, MockMem)
    assert send(pdev.mock, SET_PARTITION_INFO, struct.pack("<QB", 6, 0))[0] == 0
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_mem.8")
    assert pdev.drvdata is None
    fs.write("bus/platform/drivers/cxl_mock_mem/bind", b"cxl_mem.8")
    assert _partition(pdev.mock) == (6, 2, 0, 0)


# ------------------------------------------------------------------ label storage

def _get_lsa(m, offset, length, size_out=None):
    return send(m, GET_LSA, struct.pack("<II", offset, length), size_out=length if size_out is None else size_out)


def _set_lsa(m, offset, data):
    return send(m, SET_LSA, struct.pack("<II", offset, 0) + data)


def test_lsa_round_trip_and_bounds(mock):
    data = bytes(range(256)) * 4
    assert _set_lsa(mock, 0x100, data)[0] == 0
    rc, cmd = _get_lsa(mock, 0x100, len(data))
    assert rc == 0 and cmd.payload_out == data and cmd.size_out == len(data)
    assert _get_lsa(mock, 0, 0x100)[1].payload_out == bytes(0x100)
    end = 128 << 10
    assert _set_lsa(mock, end - 8, b"\xaa" * 8)[0] == 0                  # up to the last byte
    assert _get_lsa(mock, end - 8, 8)[1].payload_out == b"\xaa" * 8
    before = bytes(mock.lsa)
    assert _set_lsa(mock, end - 4, b"\xbb" * 8)[0] == -errno.EINVAL      # past the end: nothing written
    assert bytes(mock.lsa) == before
    assert _get_lsa(mock, end - 4, 8)[0] == -errno.EINVAL
    assert _get_lsa(mock, 0, 64, size_out=63)[0] == -errno.EINVAL
    assert send(mock, GET_LSA, struct.pack("<I", 0), size_out=8)[0] == -errno.EINVAL
    assert send(mock, SET_LSA, struct.pack("<I", 0))[0] == -errno.EINVAL
    none = MockMem(info=info(lsa_size=0), sys=mock.sys)
    assert _get_lsa(none, 0, 1)[0] == -errno.EINVAL


def test_health_info(mock):
    rc, cmd = send(mock, GET_HEALTH_INFO, size_out=0x12)
    assert rc == 0
    # CXL 3.0 Table 8-100: health status, media status, additional status, life used, temperature,
    # dirty shutdowns, corrected volatile errors, corrected persistent errors
    assert cmd.payload_out == struct.pack("<BBBBhIII", 0x7, 0x3, 0x18, 15, 25, 10, 20, 30)
    assert send(mock, GET_HEALTH_INFO, size_out=0x11)[0] == -errno.EINVAL


# ------------------------------------------------------------------ event logs

INFO, WARN, FAIL, FATAL = range(4)


def get_records_log(m, log, seen, batches=None):
    """drivers/cxl/core/mbox.c cxl_mem_get_records_log(): get until the more-records flag clears,
    clearing the returned handles each time; ``seen`` collects (kind, log, ...) tuples."""
    while True:
        rc, cmd = send(m, GET_EVENT_RECORD, bytes([log]), size_out=PAYLOAD)
        assert rc == 0 and cmd.return_code == RC_SUCCESS
        flags, ovf, first, last, n = struct.unpack("<BxHQQH10x", cmd.payload_out[:EVENT_HDR])
        if not n:
            break
        assert cmd.size_out == EVENT_HDR + n * RECORD
        if batches is not None:
            batches.append(n)
        recs = [cmd.payload_out[EVENT_HDR + i * RECORD: EVENT_HDR + (i + 1) * RECORD] for i in range(n)]
        for r in recs:
            seen.append(("record", log, r))
        if flags & 1:
            seen.append(("overflow", log, ovf, first, last))
        handles = [struct.unpack_from("<H", r, 20)[0] for r in recs]
        assert send(m, CLEAR_EVENT_RECORD, struct.pack("<BBB3x", log, 0, n) + struct.pack(f"<{n}H", *handles))[0] == 0
        if not flags & 2:
            break


def cxl_mem_get_event_records(m, status, seen):
    for log, bit in ((FATAL, 8), (FAIL, 4), (WARN, 2), (INFO, 1)):
        if status & bit:
            get_records_log(m, log, seen)


def counts(seen):
    """What ndctl's cxl-events.sh greps in the trace: overflow lines and lines per log name."""
    n_overflow = sum(1 for s in seen if s[0] == "overflow")
    per_log = {log: sum(1 for s in seen if s[1] == log) for log in range(4)}
    return n_overflow, per_log[FATAL], per_log[FAIL], per_log[INFO], per_log[WARN]


def _hdr(flags, handle, related):
    # Common Event Record header (CXL 3.0 Table 8-42): length, flags[3], handle, related, timestamp,
    # maintenance operation class, reserved[15]
    return struct.pack("<B3sHHQB15x", 128, flags.to_bytes(3, "little"), handle, related, 0, 0)


def test_event_logs_drain_with_ndctl_counts(mock):
    seen: list = []
    cxl_mem_get_event_records(mock, 0xF, seen)
    assert counts(seen) == (1, 2, 16, 3, 0)          # cxl-events.sh: overflow 1, Fatal 2, Failure 16, Info 3
    # drained: nothing more until the logs are re-armed
    seen2: list = []
    cxl_mem_get_event_records(mock, 0xF, seen2)
    assert seen2 == []


def test_event_trigger_rearms_and_calls_the_kernel(mock, monkeypatch):
    seen: list = []
    cxl_mem_get_event_records(mock, 0xF, seen)
    calls = []

    def fake_get(mds, status):
        calls.append((mds, status))
        cxl_mem_get_event_records(mock, status, again)

    monkeypatch.setattr(mbox_core, "cxl_mem_get_event_records", fake_get)   # the kernel's reader, recorded
    mds = object()
    mock.mds = mds
    again: list = []
    mock.event_trigger()
    assert calls == [(mds, 0b1101)]                      # the logs the mock filled: info, fail, fatal
    assert counts(again) == (1, 2, 16, 3, 0)
    assert [s[2] for s in again] == [s[2] for s in seen]   # the same records, handles from 1 again


def test_event_records_bytes(mock):
    seen: list = []
    cxl_mem_get_event_records(mock, 0xF, seen)
    info_recs = [s[2] for s in seen if s[1] == INFO]
    fatal_recs = [s[2] for s in seen if s[1] == FATAL and s[0] == "record"]
    data = bytes([0xDE, 0xAD, 0xBE, 0xEF]) + bytes(76)
    maint = uuid.UUID("ba5eba11-abcd-efeb-a55a-a55aa5a55aa5").bytes + _hdr(1 << 3, 1, 0xA5B6) + data
    gen_media = (uuid.UUID("fbcd0a77-c260-417f-85a9-088b1621eba6").bytes + _hdr(1 << 2, 2, 0)
                 + struct.pack("<QBBBHBB3s16s46x", 0x2000, 1, 2, 2, 0x3, 1, 30, bytes(3), bytes(16)))
    mem_module = (uuid.UUID("fe927475-dd59-4339-a586-79bab113b774").bytes + _hdr(0, 3, 0)
                  + struct.pack("<BBBBB", 3, 1 << 1, 3, 0x38, 0) + bytes([0xDE, 0xAD])
                  + bytes([0xDE, 0xAD, 0xBE, 0xEF]) * 3 + bytes(61))
    assert info_recs == [maint, gen_media, mem_module]
    hw = uuid.UUID("abcdefeb-ba11-ba5e-a55a-a55aa5a55aa5").bytes + _hdr(1 << 5, 1, 0xB6A5) + data
    dram = (uuid.UUID("601dcbb3-9c06-4eab-b8af-4e9bfb5c9624").bytes + _hdr(1 << 4, 2, 0)
            + struct.pack("<QBBBHBB3sBB3s2s32s23x", 0x8000, 2, 1, 5, 0x59, 1, 0, bytes(3), 5, 2, bytes(3),
                          bytes([0xDE, 0xAD]), bytes(32)))
    assert fatal_recs == [hw, dram]
    fail_recs = [s[2] for s in seen if s[1] == FAIL and s[0] == "record"]
    assert [struct.unpack_from("<H", r, 20)[0] for r in fail_recs] == list(range(1, 16))
    assert [r[:16] for r in fail_recs[:7]] == [maint[:16], hw[:16], dram[:16], gen_media[:16], mem_module[:16],
                                               hw[:16], dram[:16]]
    assert all(r[:16] == hw[:16] for r in fail_recs[7:])


def test_overflow_header(mock):
    clock = mock.sys.timers.clock
    t0 = 1_700_000_000_000_000_000
    assert send(mock, SET_TIMESTAMP, struct.pack("<Q", t0))[0] == 0
    clock.advance(3)
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([FAIL]), size_out=PAYLOAD)
    flags, ovf, first, last, n = struct.unpack("<BxHQQH10x", cmd.payload_out[:EVENT_HDR])
    assert flags == 0b11 and ovf == 2 and n == 1
    now = t0 + 3_000_000_000
    assert (first, last) == (now - 5_000_000_000, now - 1_000_000_000)
    # the overflow stays reported until the first clear
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([FAIL]), size_out=PAYLOAD)
    assert cmd.payload_out[0] == 0b11
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xHHH", FAIL, 0, 3, 1, 2, 3))[0] == 0
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([FAIL]), size_out=PAYLOAD)
    assert cmd.payload_out[0] == 0b10 and struct.unpack_from("<H", cmd.payload_out, 2)[0] == 0


def test_records_per_get_rotate_1_2_3(mock):
    batches: list = []
    get_records_log(mock, FAIL, [], batches)
    assert sum(batches) == 15
    assert batches == [(i % 3) + 1 for i in range(len(batches) - 1)] + batches[-1:]
    assert batches[-1] <= (len(batches) - 1) % 3 + 1


def test_get_event_bad_input(mock):
    def count(cmd):
        return struct.unpack_from("<H", cmd.payload_out, 20)[0]

    assert send(mock, GET_EVENT_RECORD, b"", size_out=PAYLOAD)[0] == -errno.EINVAL       # rotation untouched
    assert send(mock, GET_EVENT_RECORD, bytes([4]), size_out=PAYLOAD)[0] == -errno.EINVAL  # rotation: 1
    assert count(send(mock, GET_EVENT_RECORD, bytes([INFO]), size_out=PAYLOAD)[1]) == 2    # rotation: 2
    assert count(send(mock, GET_EVENT_RECORD, bytes([INFO]), size_out=PAYLOAD)[1]) == 1    # 3, one left
    # rotation back at 1: a buffer one byte short of one record is refused, the log not advanced
    assert send(mock, GET_EVENT_RECORD, bytes([FATAL]), size_out=EVENT_HDR + RECORD - 1)[0] == -errno.EINVAL
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([FATAL]), size_out=EVENT_HDR + 2 * RECORD)   # rotation: 2
    assert rc == 0 and count(cmd) == 2 and cmd.size_out == EVENT_HDR + 2 * RECORD
    # an empty log: success, no records, no flags, header zeroed, size_out left alone
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([WARN]), size_out=PAYLOAD)
    assert rc == 0 and cmd.size_out == PAYLOAD and cmd.payload_out == bytes(PAYLOAD)


def test_clear_event_bad_input_changes_nothing(mock):
    rc, cmd = send(mock, GET_EVENT_RECORD, bytes([INFO]), size_out=PAYLOAD)        # first call: 1 record
    assert struct.unpack_from("<H", cmd.payload_out, 20)[0] == 1
    assert struct.unpack_from("<H", cmd.payload_out, EVENT_HDR + 20)[0] == 1    # its handle
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xHH", INFO, 0, 2, 1, 2))[0] == -errno.EINVAL
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xH", INFO, 0, 1, 2))[0] == -errno.EINVAL
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xH", 4, 0, 1, 1))[0] == -errno.EINVAL
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xH", INFO, 0, 1, 1))[0] == 0
    assert send(mock, CLEAR_EVENT_RECORD, struct.pack("<BBB3xH", INFO, 0, 1, 2))[0] == -errno.EINVAL


# ------------------------------------------------------------------ poison

def _poison_list(m, offset=0, length=2**63):
    rc, cmd = send(m, GET_POISON, struct.pack("<QQ", offset, length), size_out=PAYLOAD)
    assert rc == 0 and cmd.return_code == RC_SUCCESS
    flags, ts, n = struct.unpack("<BxQH20x", cmd.payload_out[:32])
    assert (flags, ts) == (0, 0) and cmd.size_out == 32 + 16 * n
    return [struct.unpack("<QI4x", cmd.payload_out[32 + 16 * i: 48 + 16 * i]) for i in range(n)]


def _inject(m, dpa):
    return send(m, INJECT_POISON, struct.pack("<Q", dpa))[0]


def _clear(m, dpa):
    return send(m, CLEAR_POISON, struct.pack("<Q", dpa) + bytes(64))[0]


def test_poison_inject_list_clear(mock):
    dpas = [0x40000000, 0x40001000, 0x600, 0x0]          # what ndctl's cxl-poison.sh injects
    for d in dpas:
        assert _inject(mock, d) == 0
    assert _inject(mock, 0x600) == 0                     # already poisoned: fine, no duplicate
    # address | source "injected" (3), length 1 (in 64-byte units)
    assert _poison_list(mock) == [(d | 3, 1) for d in dpas]
    # mem.c's range check counts the length as bytes
    assert _poison_list(mock, 0x40000000, 0x1000) == [(0x40000000 | 3, 1)]
    assert _poison_list(mock, 0x40000000, 0x1001) == [(0x40000000 | 3, 1), (0x40001000 | 3, 1)]
    assert _clear(mock, 0x600) == 0 and _clear(mock, 0x12340) == 0
    assert _poison_list(mock) == [(d | 3, 1) for d in dpas if d != 0x600]
    assert _inject(mock, 0x8000) == 0                    # reuses the freed slot: listed in its place
    assert _poison_list(mock) == [(0x40000000 | 3, 1), (0x40001000 | 3, 1), (0x8000 | 3, 1), (0x0 | 3, 1)]
    small = send(mock, GET_POISON, struct.pack("<QQ", 0, 2**63), size_out=32 + 16 * 4 - 1)
    assert small[0] == -errno.EINVAL


def test_poison_limits(sys_):
    shared = MockPoisonList()
    a = MockMem(info=info(), sys=sys_, poison=shared)
    b = MockMem(info=info(), sys=sys_, poison=shared)
    for i in range(8):
        assert _inject(a, i * 64) == 0
    assert _inject(a, 0x1000) == -errno.EBUSY            # per device: poison_inject_max (8)
    assert len(_poison_list(a)) == 8 and _poison_list(b) == []
    shared.inject_dev_max = 128
    for i in range(120):
        assert _inject(b, i * 64) == 0                   # b sees only its own
    assert _inject(b, 0x100000) == -errno.ENXIO          # all 128 slots of the mock are taken
    assert len(_poison_list(b)) == 120 and len(_poison_list(a, 0, 2**63)) == 8
    shared.inject_dev_max = 4
    assert len(_poison_list(b)) == 4                     # at most poison_inject_max records per list


def test_poison_inject_max_driver_attr(sys_):
    fs = Sysfs(sys_)
    path = "bus/platform/drivers/cxl_mock_mem/poison_inject_max"
    assert fs.read(path) == b"8\n"
    fs.write(path, b"4\n")
    assert fs.read(path) == b"4\n"
    assert_refused(fs, path, "129", errno.EINVAL)
    mock = sys_.machine.devices["cxl_mem.1"].mock
    assert _inject(mock, 0x40) == 0
    assert_refused(fs, path, "8", errno.EBUSY)
    assert _clear(mock, 0x40) == 0
    fs.write(path, b"8")
    assert fs.read(path) == b"8\n"


# ------------------------------------------------------------------ firmware

def _fw_info(m):
    rc, cmd = send(m, GET_FW_INFO, size_out=0x50)
    assert rc == 0
    return cmd.payload_out


def _fw_info_bytes(slot_info):
    # Get FW Info output (CXL 3.0 Table 8-56)
    return (struct.pack("<BBB13x", 3, slot_info, 0) + b"cxl_test_fw_001\0" + b"cxl_test_fw_002\0"
            + b"cxl_test_fw_003\0" + bytes(16))


def _transfer(m, action, slot, offset_units, data):
    return send(m, TRANSFER_FW, struct.pack("<BB2xI120x", action, slot, offset_units) + data)[0]


def test_fw_info_transfer_activate(mock):
    assert _fw_info(mock) == _fw_info_bytes(2)            # active slot 2, nothing staged
    assert send(mock, GET_FW_INFO, size_out=0x4F)[0] == -errno.EINVAL
    img = bytes((i * 7) & 0xFF for i in range(2560))
    assert mock.fw_buf_checksum() == hashlib.sha256(b"").hexdigest()
    assert _transfer(mock, 1, 0, 0, img[:1024]) == 0        # initiate
    assert _transfer(mock, 2, 0, 8, img[1024:2048]) == 0    # continue at 1024 (128-byte units)
    assert mock.fw_buf_checksum() == hashlib.sha256(b"").hexdigest()   # counted once the end is known
    assert _transfer(mock, 3, 3, 16, img[2048:]) == 0       # end, into slot 3
    assert mock.fw_buf_checksum() == hashlib.sha256(img).hexdigest()
    assert send(mock, ACTIVATE_FW, struct.pack("<BB", 1, 3))[0] == 0      # offline: staged
    assert _fw_info(mock) == _fw_info_bytes(2 | 3 << 3)
    assert send(mock, ACTIVATE_FW, struct.pack("<BB", 0, 1))[0] == 0      # online: active now
    assert _fw_info(mock) == _fw_info_bytes(1)


def test_fw_transfer_bad_input(mock):
    small = b"\x11" * 300
    assert _transfer(mock, 0, 1, 0, small) == 0              # full transfer
    want = hashlib.sha256(small).hexdigest()
    assert mock.fw_buf_checksum() == want
    assert _transfer(mock, 0, 1, 1, small) == -errno.EINVAL   # full at an offset
    assert _transfer(mock, 3, 0, 0, small) == -errno.EINVAL   # end to slot 0
    assert _transfer(mock, 3, 4, 0, small) == -errno.EINVAL   # end to slot 4
    assert _transfer(mock, 5, 1, 0, small) == -errno.EINVAL   # unknown action
    assert _transfer(mock, 2, 1, (64 << 20) // 128, b"x") == -errno.EINVAL   # past FW_SIZE
    assert send(mock, TRANSFER_FW, bytes(127))[0] == -errno.EINVAL            # shorter than the header
    assert _transfer(mock, 4, 1, 0, b"\x22" * 300) == 0       # abort: accepted, nothing written
    assert mock.fw_buf_checksum() == want
    # a new transfer overwrites the buffer; the checksum still counts the last completed length
    assert _transfer(mock, 1, 0, 0, b"\x33" * 200) == 0
    assert mock.fw_buf_checksum() == hashlib.sha256(b"\x33" * 200 + b"\x11" * 100).hexdigest()
    assert send(mock, ACTIVATE_FW, struct.pack("<BB", 0, 4))[0] == -errno.EINVAL
    assert send(mock, ACTIVATE_FW, struct.pack("<BB", 2, 1))[0] == -errno.EINVAL
    assert _fw_info(mock) == _fw_info_bytes(2)


# ------------------------------------------------------------------ security

def _set_pass(m, ptype, old, new):
    return send(m, SET_PASSPHRASE, struct.pack("<B31x", ptype) + pw(old) + pw(new))


def _disable(m, ptype, p):
    return send(m, DISABLE_PASSPHRASE, struct.pack("<B31x", ptype) + pw(p))


def _unlock(m, p):
    return send(m, UNLOCK, pw(p))


def _erase(m, ptype, p):
    return send(m, PASSPHRASE_SECURE_ERASE, struct.pack("<B31x", ptype) + pw(p))


def test_security_state_and_sizes(mock):
    assert sec_state(mock) == 0
    assert send(mock, GET_SECURITY_STATE, size_out=8)[0] == -errno.EINVAL
    assert send(mock, GET_SECURITY_STATE, b"\0", size_out=4)[0] == -errno.EINVAL
    assert send(mock, SET_PASSPHRASE, bytes(95))[0] == -errno.EINVAL
    assert send(mock, SET_PASSPHRASE, bytes(96), size_out=1)[0] == -errno.EINVAL
    assert send(mock, DISABLE_PASSPHRASE, bytes(63))[0] == -errno.EINVAL
    assert send(mock, UNLOCK, bytes(31))[0] == -errno.EINVAL
    assert send(mock, FREEZE_SECURITY, b"\0")[0] == -errno.EINVAL
    assert send(mock, PASSPHRASE_SECURE_ERASE, bytes(65))[0] == -errno.EINVAL
    rc, cmd = _set_pass(mock, 2, "", "x")
    assert rc == -errno.EINVAL and cmd.return_code == RC_INPUT
    rc, cmd = _disable(mock, 7, "")
    assert rc == -errno.EINVAL and cmd.return_code == RC_INPUT
    assert sec_state(mock) == 0


def test_user_passphrase_lock_unlock_and_try_limit(sys_):
    fs = Sysfs(sys_)
    pdev = sys_.machine.devices["cxl_mem.2"]
    m = pdev.mock
    lock = "bus/platform/devices/cxl_mem.2/security_lock"
    assert fs.read(lock) == b"0\n"
    assert_refused(fs, lock, "1", errno.ENXIO)                        # no user passphrase yet
    rc, cmd = _set_pass(m, 1, "wrong-old", "secret")
    assert rc == -errno.ENXIO and cmd.return_code == RC_PASSPHRASE
    assert _set_pass(m, 1, "", "secret")[0] == 0
    assert sec_state(m) == USER_PASS_SET
    rc, cmd = _set_pass(m, 0, "", "master")                           # master only while no user pass
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    rc, cmd = _unlock(m, "secret")                                    # not locked
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    fs.write(lock, b"1")
    assert fs.read(lock) == b"1\n" and sec_state(m) == USER_PASS_SET | LOCKED
    assert_refused(fs, lock, "0", errno.EINVAL)
    for _ in range(2):             # the failed set above was the first of the 3 tries (mem.c keeps count)
        rc, cmd = _unlock(m, "guess")
        assert rc == -errno.ENXIO and cmd.return_code == RC_PASSPHRASE
    assert sec_state(m) == USER_PASS_SET | LOCKED | USER_PLIMIT
    rc, cmd = _unlock(m, "secret")                                    # attempts exceeded
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    fs.write(lock, b"1")                                              # the mock's lock also resets the limits
    assert sec_state(m) == USER_PASS_SET | LOCKED
    rc, cmd = _unlock(m, "guess")          # the lock clears the bit, not the count: no new limit at 4
    assert rc == -errno.ENXIO and cmd.return_code == RC_PASSPHRASE and sec_state(m) & USER_PLIMIT == 0
    assert _unlock(m, "secret")[0] == 0
    assert sec_state(m) == USER_PASS_SET
    rc, cmd = _disable(m, 1, "nope")
    assert rc == -errno.ENXIO and cmd.return_code == RC_PASSPHRASE
    assert _disable(m, 1, "secret")[0] == 0
    assert sec_state(m) == 0
    rc, cmd = _disable(m, 1, "secret")                                # nothing set any more
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY


def test_master_passphrase_and_secure_erase(mock):
    assert _set_pass(mock, 0, "", "master")[0] == 0
    assert sec_state(mock) == MASTER_PASS_SET
    assert _set_pass(mock, 1, "", "user")[0] == 0
    mock.security_state |= LOCKED
    rc, cmd = _erase(mock, 0, "bad")
    assert rc == -errno.ENXIO and cmd.return_code == RC_PASSPHRASE
    assert _erase(mock, 0, "master")[0] == 0                           # master erase: user pass gone, unlocked
    assert sec_state(mock) == MASTER_PASS_SET
    for _ in range(3):
        assert _set_pass(mock, 0, "bad", "x")[1].return_code == RC_PASSPHRASE
    assert sec_state(mock) & MASTER_PLIMIT
    rc, cmd = _erase(mock, 0, "master")
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    rc, cmd = _disable(mock, 0, "master")
    assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    # user erase with no user passphrase: proceeds like a plain secure erase
    assert _erase(mock, 1, "anything")[0] == 0


def test_passphrase_secure_erase_master_unset_is_einval(mock):
    rc, cmd = _erase(mock, 0, "")
    assert rc == -errno.EINVAL and cmd.return_code == RC_SUCCESS
    assert _set_pass(mock, 1, "", "u")[0] == 0
    mock.security_state |= LOCKED
    assert _erase(mock, 1, "u")[0] == 0                                # user erase clears the pass only
    assert sec_state(mock) == LOCKED


def test_frozen_refuses_everything(mock):
    assert _set_pass(mock, 1, "", "u")[0] == 0
    assert send(mock, FREEZE_SECURITY)[0] == 0
    assert send(mock, FREEZE_SECURITY)[0] == 0
    assert sec_state(mock) == USER_PASS_SET | FROZEN
    for rc, cmd in (_set_pass(mock, 1, "u", "v"), _disable(mock, 1, "u"), _unlock(mock, "u"), _erase(mock, 1, "u")):
        assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    assert mock.user_pass == pw("u") and sec_state(mock) == USER_PASS_SET | FROZEN


# ------------------------------------------------------------------ sanitize / secure erase

def test_sanitize_background_timing(sys_):
    done = []
    m = MockMem(info=info(), sys=sys_, on_background_done=lambda: done.append(sys_.timers.clock()))
    m.sanitize_timeout = 3000
    t0 = sys_.timers.clock()
    rc, cmd = send(m, SANITIZE)
    assert rc == 0 and cmd.return_code == RC_BACKGROUND
    assert not m.mbox_background_complete()
    rc, cmd = send(m, SANITIZE)                                        # already running
    assert rc == -errno.EBUSY
    assert send(m, GET_HEALTH_INFO, size_out=0x12)[0] == 0             # other commands still answer
    sys_.timers.clock.advance(1.5)
    sys_.timers.run_due()
    assert done == [] and m.bg_percent_complete() == 50
    sys_.timers.clock.advance(1.4999)
    sys_.timers.run_due()
    assert done == []
    sys_.timers.clock.advance(0.0002)
    sys_.timers.run_due()
    assert len(done) == 1 and t0 + 3 <= done[0] <= t0 + 3.0001
    assert m.mbox_background_complete() and m.bg_percent_complete() == 100
    assert send(m, SANITIZE)[1].return_code == RC_BACKGROUND             # can run again


def test_sanitize_refused_by_security_and_bad_sizes(mock):
    assert send(mock, SANITIZE, b"\0")[0] == -errno.EINVAL
    assert send(mock, SANITIZE, size_out=4)[0] == -errno.EINVAL
    assert _set_pass(mock, 1, "", "u")[0] == 0
    for op in (SANITIZE, SECURE_ERASE):
        rc, cmd = send(mock, op)
        assert rc == -errno.ENXIO and cmd.return_code == RC_SECURITY
    assert _disable(mock, 1, "u")[0] == 0
    mock.security_state |= LOCKED
    for op in (SANITIZE, SECURE_ERASE):
        assert send(mock, op)[1].return_code == RC_SECURITY
    assert mock.mbox_background_complete()


def test_secure_erase_completes_at_once(mock):
    rc, cmd = send(mock, SECURE_ERASE)
    assert rc == 0 and cmd.return_code == RC_SUCCESS and mock.mbox_background_complete()
    assert send(mock, SECURE_ERASE, size_out=1)[0] == -errno.EINVAL


# ------------------------------------------------------------------ the platform device

def test_mock_attributes_on_the_platform_device(sys_, monkeypatch):
    fs = Sysfs(sys_)
    base = "bus/platform/devices/cxl_mem.0"
    m = sys_.machine.devices["cxl_mem.0"].mock
    assert fs.read(f"{base}/fw_buf_checksum") == (hashlib.sha256(b"").hexdigest() + "\n").encode()
    assert _transfer(m, 0, 1, 0, b"abc" * 100) == 0
    assert fs.read(f"{base}/fw_buf_checksum") == (hashlib.sha256(b"abc" * 100).hexdigest() + "\n").encode()
    assert fs.read(f"{base}/sanitize_timeout") == b"0\n"
    fs.write(f"{base}/sanitize_timeout", b"3000\n")
    assert fs.read(f"{base}/sanitize_timeout") == b"3000\n" and m.sanitize_timeout == 3000
    assert_refused(fs, f"{base}/sanitize_timeout", "-1", errno.EINVAL)
    assert_refused(fs, f"{base}/sanitize_timeout", "soon", errno.EINVAL)
    calls = []
    monkeypatch.setattr(mbox_core, "cxl_mem_get_event_records", lambda mds, status: calls.append((mds, status)))
    fs.write(f"{base}/event_trigger", b"1")
    assert calls == [(m.mds, 0b1101)]


def test_mock_attributes_only_while_bound(sys_):
    fs = Sysfs(sys_)
    names = {"event_trigger", "fw_buf_checksum", "sanitize_timeout", "security_lock"}
    assert names <= set(fs.listdir("devices/platform/cxl_host_bridge.3/cxl_rcd.10"))
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_rcd.10")
    assert not names & set(fs.listdir("devices/platform/cxl_host_bridge.3/cxl_rcd.10"))
    fs.write("bus/platform/drivers/cxl_mock_mem/bind", b"cxl_rcd.10")
    assert names <= set(fs.listdir("devices/platform/cxl_host_bridge.3/cxl_rcd.10"))
    rc, cmd = send(sys_.machine.devices["cxl_rcd.10"].mock, IDENTIFY, size_out=0x43)
    assert cmd.payload_out == _identify("mock fw v1 ", 8, 8, 0, 0, 0, 0, 0)


def test_unbind_drops_the_devices_poison(sys_):
    fs = Sysfs(sys_)
    drv = sys_.buses["platform"].drivers["cxl_mock_mem"]
    assert isinstance(drv, CxlMockMemDriver)
    m = sys_.machine.devices["cxl_mem.3"].mock
    assert _inject(m, 0x1000) == 0 and not drv.poison.empty()
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_mem.3")
    assert drv.poison.empty()


# ------------------------------------------------------------------ probe

PROBE_ORDER = [(mbox_core, "cxl_memdev_state_create"), (mbox_core, "cxl_enumerate_cmds"),
               (mbox_core, "cxl_poison_state_init"), (mbox_core, "cxl_set_timestamp"),
               (mbox_core, "cxl_dev_state_identify"), (mbox_core, "cxl_mem_create_range_info"),
               (memdev_core, "devm_cxl_add_memdev"), (memdev_core, "devm_cxl_setup_fw_upload"),
               (memdev_core, "devm_cxl_sanitize_setup_notifier"), (mbox_core, "cxl_mem_get_event_records")]


def _record_probe(monkeypatch, calls: list, fail: str | None = None) -> None:
    """Wrap the kernel side's probe-time functions: record each call, optionally refuse one."""
    for mod, name in PROBE_ORDER:
        orig = getattr(mod, name)

        def wrapper(*args, _orig=orig, _name=name):
            calls.append(_name)
            if _name == fail:
                raise KernelError(errno.ENXIO, f"{_name}: injected failure")
            return _orig(*args)
        monkeypatch.setattr(mod, name, wrapper)


def test_probe_calls_the_kernel_side_in_mem_c_order(sys_, monkeypatch):
    fs = Sysfs(sys_)
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_mem.5")
    calls: list = []
    _record_probe(monkeypatch, calls)
    fs.write("bus/platform/drivers/cxl_mock_mem/bind", b"cxl_mem.5")
    assert calls == [name for _, name in PROBE_ORDER]
    pdev = sys_.machine.devices["cxl_mem.5"]
    mds = pdev.mock.mds
    assert mds.mbox.payload_size == pdev.mock.payload_size and mds.serial == pdev.mock.info.serial
    assert mds.media_ready and mds.rcd is False
    assert any(n.startswith("mem") for n in fs.listdir("devices/" + pdev.path.removeprefix("devices/")))


def test_probe_stops_at_the_first_failure(sys_, monkeypatch):
    fs = Sysfs(sys_)
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_mem.6")
    calls: list = []
    _record_probe(monkeypatch, calls, fail="cxl_set_timestamp")
    with pytest.raises(KernelError) as e:
        fs.write("bus/platform/drivers/cxl_mock_mem/bind", b"cxl_mem.6")
    assert e.value.errno == errno.ENXIO
    assert calls == ["cxl_memdev_state_create", "cxl_enumerate_cmds", "cxl_poison_state_init", "cxl_set_timestamp"]
    pdev = sys_.machine.devices["cxl_mem.6"]
    assert pdev.driver is None and not any(n.startswith("mem") for n in fs.listdir(pdev.path))


def test_cxl_pci_device_is_not_cxl_tests_canned_one():
    """Behind a cxl_pci host (a QEMU topology) the device model answers like the mock but is
    healthy and has no event records: nothing of cxl_test's fake faults shows up there."""
    s = System.boot("qemu-hdm-db")
    md = next(d for d in s.cxl_bus.devices if d.name.startswith("mem"))
    m = md.mds.mbox.mbox_send.__self__
    assert m.canned is False
    rc, cmd = send(m, GET_HEALTH_INFO, size_out=0x12)
    assert rc == 0 and cmd.payload_out == struct.pack("<BBBBhIII", 0, 0, 0, 0, 25, 0, 0, 0)
    assert all(not log.events for log in m.mes.mock_logs)
    assert "Clearing" not in "\n".join(s.klog.lines())        # no event records were read at probe
