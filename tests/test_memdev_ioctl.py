"""The memdev's mailbox-backed files (cxlsys/cxl/core/memdev.py, mbox.py): poison (debugfs
inject/clear, ``trigger_poison_list``), event records, sanitize, and the firmware upload class
device ``firmware/memN/`` — on cxl_test, with a FakeClock for what runs in the background.

Traces are observed by replacing the tracepoint functions of cxlsys.cxl.core.trace (what the core
calls); HPAs the core computes are checked by decoding them forward with the spec's device decode
(position and DPA from the HPA offset), not with the core's own inverse.
"""

from __future__ import annotations

import errno
import hashlib
import math
import struct

import pytest

from cxlsys.base import firmware_loader as FL
from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core import mbox as MB
from cxlsys.cxl.core import trace
from cxlsys.cxl_test.mem import MOCK_TRANSFER_FW_S
from cxlsys.errors import KernelError
from cxlsys.kernel.timer import FakeClock
from cxlsys.kernel.uaccess import BufferUserMemory
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import memdev
from cxlsys.uapi import cxl_mem as U

ULLONG_MAX = (1 << 64) - 1
SZ_1G = 1 << 30


@pytest.fixture
def sysfs():
    s = System.boot("cxl_test")
    s.timers.clock = FakeClock()
    return s, Sysfs(s)


@pytest.fixture
def traced(monkeypatch):
    """Every tracepoint call the core makes: (event, args...)."""
    calls: list = []
    for name in ("trace_cxl_poison", "trace_cxl_general_media", "trace_cxl_dram", "trace_cxl_memory_module",
                 "trace_cxl_generic_event", "trace_cxl_overflow"):
        monkeypatch.setattr(trace, name, lambda *a, _n=name: calls.append((_n, *a)))
    return calls


def dbg(md) -> str:
    return f"kernel/debug/cxl/{md.name}"


def write(fs, path: str, text: str) -> None:
    fs.write(path, text.encode())


def refused(fs, path: str, text: str) -> int:
    with pytest.raises(KernelError) as e:
        write(fs, path, text)
    return e.value.errno


def forward_decode(cxlr, hpa: int) -> tuple[int, int]:
    """Modulo interleave, as a device decodes an HPA: (position, DPA offset in its decoder)."""
    off = hpa - cxlr.hpa_start
    g, w = cxlr.interleave_granularity, cxlr.interleave_ways
    return (off // g) % w, (off // (g * w)) * g + off % g


def region_member(s, host: str):
    md = memdev(s, host)
    assert md.endpoint is not None
    dec = next(d for d in md.endpoint.decoders.values() if d.region is not None)
    return md, dec


# ------------------------------------------------------------------------------ poison

def test_inject_list_clear_by_memdev(sysfs, traced):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")                       # no region: poison is listed by memdev
    dpas = [0x40000000, 0x40001000, 0x600, 0x0]       # what ndctl's cxl-poison.sh injects
    for d in dpas:
        write(fs, f"{dbg(md)}/inject_poison", hex(d))
    inject = [c for c in traced if c[0] == "trace_cxl_poison"]
    assert [(c[1], c[2], struct.unpack("<QII", c[3])[:2], c[6], c[7]) for c in inject] == \
        [(md, None, (d, 1), MB.CXL_POISON_TRACE_INJECT, ULLONG_MAX) for d in dpas]
    traced.clear()
    write(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    listed = [(struct.unpack("<QII", c[3])[0], c[6]) for c in traced if c[0] == "trace_cxl_poison"]
    # pmem is read first, then ram; the mock reports the source "injected" in the low bits
    assert listed == [(0x40000000 | 3, 0), (0x40001000 | 3, 0), (0x600 | 3, 0), (0x0 | 3, 0)]
    traced.clear()
    for d in dpas:
        write(fs, f"{dbg(md)}/clear_poison", hex(d))
    assert [struct.unpack("<QII", c[3])[0] for c in traced if c[6] == MB.CXL_POISON_TRACE_CLEAR] == dpas
    traced.clear()
    write(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    assert traced == []


@pytest.mark.parametrize("text, err", [
    ("0x41", errno.EINVAL),              # not 64-byte aligned
    (hex(2 * SZ_1G), errno.EINVAL),      # beyond the 2 GiB device
    ("zz", errno.EINVAL),                # kstrtoull
    ("-64", errno.EINVAL),
])
def test_inject_refusals(sysfs, traced, text, err):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    assert refused(fs, f"{dbg(md)}/inject_poison", text) == err
    assert traced == []
    write(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    assert traced == []                  # nothing was injected


def test_inject_limit_is_the_devices(sysfs, traced):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    for i in range(8):                   # mem.c: 8 per device by default (poison_inject_max)
        write(fs, f"{dbg(md)}/inject_poison", hex(i * 64))
    assert refused(fs, f"{dbg(md)}/inject_poison", hex(8 * 64)) == errno.EBUSY
    assert len(traced) == 8


def test_trigger_poison_list_refusals(sysfs):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    for text in ("0", "maybe"):
        assert refused(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", text) == errno.EINVAL
    write(fs, "bus/cxl/drivers/cxl_mem/unbind", md.name)
    assert "trigger_poison_list" not in fs.listdir(f"bus/cxl/devices/{md.name}")    # a cxl_mem attribute
    assert md.name not in fs.listdir("kernel/debug/cxl")


def test_poison_in_a_region_carries_region_and_hpa(sysfs, traced):
    s, fs = sysfs
    md, dec = region_member(s, "cxl_mem.4")           # region0 position 1
    cxlr = dec.region
    write(fs, f"{dbg(md)}/inject_poison", "0x1000")      # inside the region's DPA
    write(fs, f"{dbg(md)}/inject_poison", "0x40000000")  # pmem: mapped by no decoder
    (_, cxlmd, region, _, _, _, ttype, hpa) = traced[0]
    assert (cxlmd, region, ttype) == (md, cxlr, MB.CXL_POISON_TRACE_INJECT)
    assert cxlr.hpa_start <= hpa < cxlr.hpa_start + cxlr.hpa_size
    assert forward_decode(cxlr, hpa) == (dec.pos, 0x1000 - dec.dpa_start)
    assert traced[1][2] is None and traced[1][7] == ULLONG_MAX
    traced.clear()
    write(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    listed = {struct.unpack("<QII", c[3])[0] & ~7: (c[2], c[7]) for c in traced}
    assert listed == {0x1000: (cxlr, hpa), 0x40000000: (None, ULLONG_MAX)}


def test_core_works_without_the_trace_module(sysfs, monkeypatch):
    """While cxlsys.cxl.core.trace is absent (no tracepoints built), poison and events still run."""
    import sys as _sys

    import cxlsys.cxl.core as core_pkg

    monkeypatch.setitem(_sys.modules, "cxlsys.cxl.core.trace", None)     # import fails: ImportError
    monkeypatch.delattr(core_pkg, "trace")
    assert MB._trace() is None
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    write(fs, f"{dbg(md)}/inject_poison", "0x40")
    write(fs, f"bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    write(fs, "bus/platform/devices/cxl_mem.1/event_trigger", "1")
    write(fs, f"{dbg(md)}/clear_poison", "0x40")
    assert not any("Failed to" in line for line in s.klog.lines())


def test_dpamem_shows_partitions_and_decoders(sysfs):
    s, fs = sysfs
    md, dec = region_member(s, "cxl_mem.0")
    text = fs.read(f"{dbg(md)}/dpamem").decode()
    end = dec.dpa_start + dec.dpa_size - 1
    assert text == (f"00000000-3fffffff : ram\n  {dec.dpa_start:08x}-{end:08x} : {dec.name}\n"
                    "40000000-7fffffff : pmem\n")


def test_raw_allow_all_knob(sysfs):
    s, fs = sysfs
    p = "kernel/debug/cxl/mbox/raw_allow_all"
    assert fs.read(p) == b"N\n"
    write(fs, p, "Y")
    assert fs.read(p) == b"Y\n" and MB.cxl_raw_allow_all(s)


# ------------------------------------------------------------------------------ event records

def test_event_trigger_drains_every_log_once(sysfs, traced):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    write(fs, "bus/platform/devices/cxl_mem.1/event_trigger", "1")
    recs = [c for c in traced if c[0] != "trace_cxl_overflow"]
    logs = [c[2] for c in recs]
    # fatal first, then failure, then informational (warning is empty); mem.c's logs hold 2, 15 (of
    # 25: 10 overflowed) and 3 records
    assert logs == [M.CXL_EVENT_TYPE_FATAL] * 2 + [M.CXL_EVENT_TYPE_FAIL] * 15 + [M.CXL_EVENT_TYPE_INFO] * 3
    handles = [struct.unpack_from("<H", c[-1], 20)[0] for c in recs]
    assert handles[:2] == [1, 2] and handles[2:17] == list(range(1, 16)) and handles[17:] == [1, 2, 3]
    kinds = [c[0] for c in recs if c[2] == M.CXL_EVENT_TYPE_INFO]
    assert kinds == ["trace_cxl_generic_event", "trace_cxl_general_media", "trace_cxl_memory_module"]
    gm = next(c for c in recs if c[0] == "trace_cxl_general_media")
    assert (gm[1], gm[3], gm[4]) == (md, None, ULLONG_MAX)          # no region maps cxl_mem.1
    overflow = [c for c in traced if c[0] == "trace_cxl_overflow"]
    assert overflow and all(c[2] == M.CXL_EVENT_TYPE_FAIL for c in overflow)
    assert not any("Failed to clear" in line for line in s.klog.lines())
    traced.clear()
    MB.cxl_mem_get_event_records(md.mds, M.CXLDEV_EVENT_STATUS_ALL)     # all cleared: nothing again
    assert traced == []


def test_media_event_in_a_region_carries_region_and_hpa(sysfs, traced):
    s, fs = sysfs
    md, dec = region_member(s, "cxl_mem.0")
    write(fs, "bus/platform/devices/cxl_mem.0/event_trigger", "1")
    gm = next(c for c in traced if c[0] == "trace_cxl_general_media")
    (phys,) = struct.unpack_from("<Q", gm[-1], 48)
    assert gm[3] is dec.region
    assert forward_decode(dec.region, gm[4]) == (dec.pos, (phys & ~0x3F) - dec.dpa_start)


# ------------------------------------------------------------------------------ sanitize

def test_sanitize_refused_while_decoders_are_committed(sysfs):
    s, fs = sysfs
    md, _ = region_member(s, "cxl_mem.0")
    assert refused(fs, f"bus/cxl/devices/{md.name}/security/sanitize", "1") == errno.EBUSY
    assert fs.read(f"bus/cxl/devices/{md.name}/security/state") == b"disabled\n"
    assert md.parent.drvdata.bg_opcode is None           # the device never saw it


def test_sanitize_runs_in_the_background(sysfs):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    state = f"bus/cxl/devices/{md.name}/security/state"
    write(fs, "bus/platform/devices/cxl_mem.1/sanitize_timeout", "2000")
    node = f"{md.path}/security/state"
    events = s.changes.events.get(node, 0)
    write(fs, f"bus/cxl/devices/{md.name}/security/sanitize", "1")
    assert fs.read(state) == b"sanitize\n"
    assert refused(fs, f"bus/cxl/devices/{md.name}/security/sanitize", "1") == errno.EBUSY
    s.timers.clock.advance(1.99)
    s.timers.run_due()
    assert fs.read(state) == b"sanitize\n" and s.changes.events.get(node, 0) == events
    s.timers.clock.advance(0.01)
    s.timers.run_due()
    assert fs.read(state) == b"disabled\n"
    assert s.changes.events[node] == events + 1          # sysfs_notify: wait-sanitize wakes


@pytest.mark.parametrize("text", ["0", "n", "junk"])
def test_sanitize_needs_a_true_value(sysfs, text):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    assert refused(fs, f"bus/cxl/devices/{md.name}/security/sanitize", text) == errno.EINVAL
    assert fs.read(f"bus/cxl/devices/{md.name}/security/state") == b"disabled\n"


def test_sanitize_without_endpoint_is_ebusy(sysfs):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    write(fs, "bus/cxl/drivers/cxl_mem/unbind", md.name)
    assert refused(fs, f"bus/cxl/devices/{md.name}/security/sanitize", "1") == errno.EBUSY


def test_erase_hidden_without_secure_erase_in_the_cel(sysfs):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    assert "erase" not in fs.listdir(f"bus/cxl/devices/{md.name}/security")
    assert fs.lookup(f"bus/cxl/devices/{md.name}/security/erase") is None


@pytest.mark.parametrize("bits, shown", [
    (0, "disabled"),
    (M.CXL_PMEM_SEC_STATE_USER_PASS_SET, "unlocked"),
    (M.CXL_PMEM_SEC_STATE_USER_PASS_SET | M.CXL_PMEM_SEC_STATE_LOCKED, "locked"),
    (M.CXL_PMEM_SEC_STATE_USER_PASS_SET | M.CXL_PMEM_SEC_STATE_FROZEN, "frozen"),
    (M.CXL_PMEM_SEC_STATE_USER_PASS_SET | M.CXL_PMEM_SEC_STATE_LOCKED | M.CXL_PMEM_SEC_STATE_USER_PLIMIT, "frozen"),
    (M.CXL_PMEM_SEC_STATE_MASTER_PASS_SET | M.CXL_PMEM_SEC_STATE_FROZEN, "disabled"),
])
def test_security_state_show(sysfs, bits, shown):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    md.mds.security.state = bits          # what cxl/security.c learns from Get Security State
    assert fs.read(f"bus/cxl/devices/{md.name}/security/state") == f"{shown}\n".encode()


# ------------------------------------------------------------------------------ firmware upload

def image(n: int) -> bytes:
    return hashlib.shake_256(b"cxlsys fw").digest(n)


@pytest.fixture
def spy():
    """Wrap a memdev's transport: the (opcode, payload_in) of every command sent."""
    def attach(md):
        sent = []
        orig = md.mds.mbox.mbox_send

        def send(cmd):
            sent.append((cmd.opcode, cmd.payload_in))
            return orig(cmd)
        md.mds.mbox.mbox_send = send
        return sent
    return attach


def fwdir(md) -> str:
    return f"bus/cxl/devices/{md.name}/firmware/{md.name}"


def start_upload(fs, md, data: bytes, piece: int = 50000) -> None:
    d = fwdir(md)
    write(fs, f"{d}/loading", "1")
    for off in range(0, len(data), piece):
        assert fs.write(f"{d}/data", data[off:off + piece], off) == len(data[off:off + piece])
    write(fs, f"{d}/loading", "0")


def run_until_idle(s, fs, md, limit: int = 10000) -> int:
    ticks = 0
    while fs.read(f"{fwdir(md)}/status") != b"idle\n":
        s.timers.clock.advance(FL.FW_UPLOAD_TICK_S)
        s.timers.run_due()
        ticks += 1
        assert ticks < limit
    return ticks


def test_fw_upload_state_machine_and_transfer(sysfs, spy):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    d = fwdir(md)
    sent = spy(md)
    data = image(200_000)
    assert [fs.read(f"{d}/{f}") for f in ("loading", "status", "error", "remaining_size")] == \
        [b"0\n", b"idle\n", b"", b"0\n"]
    write(fs, f"{d}/loading", "1")
    assert fs.read(f"{d}/loading") == b"1\n"
    start_upload(fs, md, data)
    fw = md.children["firmware"].children[md.name]
    assert fw.progress == FL.FW_UPLOAD_PROG_RECEIVING       # queued; the next access runs it
    assert fs.read(f"{d}/loading") == b"0\n"                 # (the worker's first run)
    chunk = 4096 - 128
    # one run writes until the device has been busy a tick: mem.c's mock sleeps ~1.75 ms a slice
    per_run = min(FL.FW_UPLOAD_WRITES_PER_TICK, math.ceil(FL.FW_UPLOAD_TICK_S / MOCK_TRANSFER_FW_S))
    assert per_run == 2
    assert fs.read(f"{d}/status") == b"transferring\n"
    assert fs.read(f"{d}/remaining_size") == f"{len(data) - per_run * chunk}\n".encode()
    with pytest.raises(KernelError) as e:
        fs.read(f"{d}/error")
    assert e.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e:
        fs.write(f"{d}/data", b"x", 0)
    assert e.value.errno == errno.ENODEV
    write(fs, f"{d}/loading", "1")                          # ignored while the upload owns the buffer
    assert fs.read(f"{d}/loading") == b"0\n"
    assert run_until_idle(s, fs, md) >= 2
    assert [fs.read(f"{d}/{f}") for f in ("status", "error", "remaining_size")] == [b"idle\n", b"", b"0\n"]
    assert fs.read("bus/platform/devices/cxl_mem.1/fw_buf_checksum") == \
        (hashlib.sha256(data).hexdigest() + "\n").encode()
    # the transfers: INITIATE, CONTINUE..., END into slot 3 (the one after the active slot 2),
    # offsets in 128-byte units, then an offline ACTIVATE of slot 3
    xfers = [struct.unpack_from("<BBxxI", p) for op, p in sent if op == M.CXL_MBOX_OP_TRANSFER_FW]
    n = -(-len(data) // chunk)
    assert xfers == [(1, 0, 0)] + [(2, 0, i * chunk // 128) for i in range(1, n - 1)] + [(3, 3, (n - 1) * chunk // 128)]
    assert [p for op, p in sent if op == M.CXL_MBOX_OP_ACTIVATE_FW] == [bytes([M.CXL_FW_ACTIVATE_OFFLINE, 3])]
    # Get FW Info now says slot 3 is staged
    um = BufferUserMemory()
    out = um.alloc(0x50)
    addr = um.alloc(U.CxlSendCommand(id=U.CXL_MEM_COMMAND_ID_GET_FW_INFO, out_size=0x50, out_payload=out).pack())
    md.ioctl(U.CXL_MEM_SEND_COMMAND, addr, um)
    slot_info = um.read(out, 2)[1]
    assert (slot_info & 7, slot_info >> 3 & 7) == (2, 3)


def test_fw_upload_small_image_is_one_full_transfer(sysfs, spy):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    sent = spy(md)
    data = image(1000)
    start_upload(fs, md, data)
    run_until_idle(s, fs, md)
    xfers = [(struct.unpack_from("<BBxxI", p), p[128:]) for op, p in sent if op == M.CXL_MBOX_OP_TRANSFER_FW]
    assert xfers == [((M.CXL_FW_TRANSFER_ACTION_FULL, 3, 0), data)]
    assert fs.read(f"{fwdir(md)}/error") == b""


def test_fw_cancel_aborts_the_transfer(sysfs, spy):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    d = fwdir(md)
    sent = spy(md)
    start_upload(fs, md, image(300_000))
    s.timers.run_due()
    write(fs, f"{d}/cancel", "1")
    run_until_idle(s, fs, md)
    assert fs.read(f"{d}/error") == b"transferring:user-abort\n"
    assert int(fs.read(f"{d}/remaining_size")) > 0
    assert struct.unpack_from("<B", sent[-1][1])[0] == M.CXL_FW_TRANSFER_ACTION_ABORT
    assert not any(op == M.CXL_MBOX_OP_ACTIVATE_FW for op, _ in sent)
    assert refused(fs, f"{d}/cancel", "0") == errno.EINVAL


def test_fw_cancel_when_idle_is_enodev_and_sticks(sysfs):
    """sysfs_upload.c calls the driver's cancel even when idle; cxl's flag then cancels the next
    upload at its prepare step — the kernel's behaviour, kept."""
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    d = fwdir(md)
    assert refused(fs, f"{d}/cancel", "1") == errno.ENODEV
    start_upload(fs, md, image(1000))
    run_until_idle(s, fs, md)
    assert fs.read(f"{d}/error") == b"preparing:user-abort\n"
    start_upload(fs, md, image(1000))
    run_until_idle(s, fs, md)
    assert fs.read(f"{d}/error") == b""


def test_fw_loading_abort_and_empty_load(sysfs):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    d = fwdir(md)
    write(fs, f"{d}/loading", "1")
    fs.write(f"{d}/data", b"abc", 0)
    assert fs.read_at(f"{d}/data", 0, 16) == b"abc"
    write(fs, f"{d}/loading", "-1")                # abort: nothing starts
    assert (fs.read(f"{d}/loading"), fs.read(f"{d}/status")) == (b"0\n", b"idle\n")
    write(fs, f"{d}/loading", "1")                 # a new load drops what was written
    assert fs.read_at(f"{d}/data", 0, 16) == b""
    write(fs, f"{d}/loading", "0")                 # ends with nothing written: no upload
    s.timers.run_due()
    assert (fs.read(f"{d}/status"), fs.read(f"{d}/error"), fs.read(f"{d}/remaining_size")) == \
        (b"idle\n", b"", b"0\n")
    write(fs, f"{d}/loading", "0")                 # not loading: an unexpected value, logged
    assert any("unexpected value (0)" in line for line in s.klog.lines())


def test_fw_upload_device_goes_with_the_driver_mid_upload(sysfs, spy):
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    sent = spy(md)
    start_upload(fs, md, image(300_000))
    s.timers.run_due()
    write(fs, "bus/platform/drivers/cxl_mock_mem/unbind", "cxl_mem.1")
    assert not md.registered
    assert struct.unpack_from("<B", sent[-1][1])[0] == M.CXL_FW_TRANSFER_ACTION_ABORT
    n = len(sent)
    s.timers.clock.advance(1)
    s.timers.run_due()
    assert len(sent) == n                         # no worker left behind


@pytest.mark.parametrize("offset", [1 << 40, 1 << 31])
def test_fw_upload_data_far_past_the_buffer_is_enomem(sysfs, offset):
    """A pwrite far past the image (found by the fuzzer: it was a MemoryError, or 2 GiB of host
    memory): fw_realloc_pages() fails, ENOMEM, the buffer is unchanged."""
    s, fs = sysfs
    md = memdev(s, "cxl_mem.1")
    d = fwdir(md)
    write(fs, f"{d}/loading", "1")
    fs.write(f"{d}/data", b"abc", 0)
    with pytest.raises(KernelError) as e:
        fs.write(f"{d}/data", b"\n", offset)
    assert e.value.errno == errno.ENOMEM
    assert fs.read_at(f"{d}/data", 0, 16) == b"abc"
