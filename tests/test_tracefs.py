"""tracefs (/sys/kernel/tracing): the ftrace engine, the cxl trace events, the projection.

Records are built here from the CXL spec layouts (Common Event Record, General Media, DRAM,
Memory Module, Get Event Records header, poison record), raw ring-buffer pages are decoded here
following the kernel's documented layout (buffer_data_page + ring_buffer_event), and — where
Debian's libtraceevent/libtracefs are installed — the real libraries parse the format files and
iterate the raw pages the way ``cxl list --media-errors`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import struct
import uuid as uuidlib

import pytest

from cxlsys.cxl.core import trace as ct
from cxlsys.errors import KernelError
from cxlsys.kernel.timer import FakeClock
from cxlsys.sysfs import Sysfs
from cxlsys.system import System

T = "kernel/tracing"
GEN_MEDIA_UUID = uuidlib.UUID("fbcd0a77-c260-417f-85a9-088b1621eba6").bytes
DRAM_UUID = uuidlib.UUID("601dcbb3-9c06-4eab-b8af-4e9bfb5c9624").bytes
MEM_MODULE_UUID = uuidlib.UUID("fe927475-dd59-4339-a586-79bab113b774").bytes
ULLONG_MAX = (1 << 64) - 1


@pytest.fixture
def sysm():
    s = System.boot("cxl_test")
    s.timers.clock = FakeClock(now=1000.0)
    return s


@pytest.fixture
def fs(sysm):
    return Sysfs(sysm)


def memdev(s, name="mem0"):
    return next(d for d in s.cxl_bus.devices if d.name == name)


def region0(s):
    return next(d for d in s.cxl_bus.devices if d.name.startswith("region"))


def text(fs, path) -> str:
    return fs.read(path).decode()


def body_lines(fs, path=f"{T}/trace") -> list:
    return [ln for ln in text(fs, path).splitlines() if not ln.startswith("#")]


# ---------------------------------------------------------------- records from the spec layouts
def common_hdr(uid: bytes, flags: int, handle: int, related: int, ts: int, maint: int) -> bytes:
    """CXL 3.0 Table 8-42: the first 0x30 bytes of an event record."""
    return (uid + bytes([128]) + flags.to_bytes(3, "little") + struct.pack("<HHQ", handle, related, ts)
            + bytes([maint]) + bytes(15))


def gen_media_record(phys: int) -> bytes:
    body = (struct.pack("<Q", phys) + bytes([0x02, 0x01, 0x03]) + (0x000F).to_bytes(2, "little")
            + bytes([1, 2]) + (0x030201).to_bytes(3, "little") + bytes(range(16)))
    rec = common_hdr(GEN_MEDIA_UUID, 0x18, 0x1234, 0, 0x1122334455, 2) + body
    return rec.ljust(128, b"\0")


def dram_record(phys: int) -> bytes:
    body = (struct.pack("<Q", phys) + bytes([0x01, 0x01, 0x05]) + (0x00E1).to_bytes(2, "little")
            + bytes([3, 4]) + (0xABCDE).to_bytes(3, "little") + bytes([5, 6]) + (0x10203).to_bytes(3, "little")
            + (0x0708).to_bytes(2, "little") + bytes([0xAA] * 32))
    return (common_hdr(DRAM_UUID, 0x20, 7, 8, 99, 0) + body).ljust(128, b"\0")


def mem_module_record() -> bytes:
    # event type 3 (temperature change); health info: status 0x5, media 0x2, add_status 0x2d,
    # (life used: warning, device temp: 3 = no name, persistent errors: warning), life used 42,
    # device temp -5 (C), dirty shutdowns 9, corrected volatile 10, persistent 11
    body = (bytes([0x03, 0x05, 0x02, 0x2D, 42]) + struct.pack("<h", -5) + struct.pack("<III", 9, 10, 11))
    return (common_hdr(MEM_MODULE_UUID, 0x04, 3, 0, 5, 1) + body).ljust(128, b"\0")


def enable(fs, event=None, inst=None):
    base = f"{T}/instances/{inst}" if inst else T
    path = f"{base}/events/cxl/enable" if event is None else f"{base}/events/cxl/{event}/enable"
    fs.write(path, b"1\n")


# ---------------------------------------------------------------- the tree
def test_tree_and_modes(fs):
    top = fs.entries(T)
    for name in ("trace", "trace_pipe", "tracing_on", "events", "per_cpu", "instances", "buffer_size_kb",
                 "available_events", "set_event", "trace_clock", "saved_cmdlines"):
        assert name in top, name
    assert fs.lookup(T).mode == 0o700
    assert top["trace"].mode == 0o640 and top["trace_pipe"].mode == 0o440
    ev = fs.entries(f"{T}/events/cxl/cxl_poison")
    assert sorted(ev) == ["enable", "filter", "format", "id"]
    assert ev["format"].mode == 0o440 and ev["enable"].mode == 0o640
    assert set(fs.listdir(f"{T}/events/cxl")) >= {"enable", "filter", "cxl_overflow", "cxl_generic_event",
                                                   "cxl_general_media", "cxl_dram", "cxl_memory_module",
                                                   "cxl_poison"}
    cpus = sorted(int(n[3:]) for n in fs.listdir("devices/system/cpu") if re.fullmatch(r"cpu\d+", n))
    assert fs.listdir(f"{T}/per_cpu") == [f"cpu{c}" for c in cpus]
    assert sorted(fs.listdir(f"{T}/per_cpu/cpu0")) == ["buffer_size_kb", "stats", "trace", "trace_pipe",
                                                       "trace_pipe_raw"]
    # debugfs automounts the same tree at debug/tracing
    assert fs.listdir("kernel/debug/tracing") == fs.listdir(T)
    assert text(fs, "kernel/debug/tracing/events/cxl/cxl_dram/format") == text(fs, f"{T}/events/cxl/cxl_dram/format")
    avail = text(fs, f"{T}/available_events").split()
    assert "cxl:cxl_poison" in avail and "cxl:cxl_general_media" in avail


def parse_format(s: str) -> dict:
    fields = {}
    for m in re.finditer(r"\tfield:(.+?);\toffset:(\d+);\tsize:(\d+);\tsigned:(\d);\n", s):
        decl, off, size, signed = m.groups()
        name = re.sub(r"\[\d*\]$", "", decl.split()[-1])
        fields[name] = (decl, int(off), int(size), int(signed))
    return fields


def test_format_files_match_the_kernel_layout(fs):
    s = text(fs, f"{T}/events/cxl/cxl_poison/format")
    lines = s.splitlines()
    assert lines[0] == "name: cxl_poison"
    assert lines[1] == f"ID: {text(fs, f'{T}/events/cxl/cxl_poison/id').strip()}"
    assert lines[2] == "format:"
    assert lines[3] == "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;"
    assert lines[6] == "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;"
    assert lines[7] == ""
    f = parse_format(s)
    # struct trace_event_raw_cxl_poison as x86-64 gcc lays it out (6.12, -funsigned-char)
    assert f["memdev"] == ("__data_loc char[] memdev", 8, 4, 0)
    assert f["host"] == ("__data_loc char[] host", 12, 4, 0)
    assert f["serial"] == ("u64 serial", 16, 8, 0)
    assert f["trace_type"] == ("u8 trace_type", 24, 1, 0)
    assert f["region"] == ("__data_loc char[] region", 28, 4, 0)
    assert f["overflow_ts"][1:] == (32, 8, 0) and f["hpa"][1:] == (40, 8, 0) and f["dpa"][1:] == (48, 8, 0)
    assert f["dpa_length"] == ("u32 dpa_length", 56, 4, 0)
    assert f["uuid"] == ("char uuid[16]", 60, 16, 0)
    assert f["source"][1:] == (76, 1, 0) and f["flags"][1:] == (77, 1, 0)
    assert s.endswith("\n") and "\nprint fmt: \"memdev=%s host=%s serial=%lld trace_type=%s region=%s " in s
    assert '__print_flags(REC->flags, "|", { ((((1UL))) << (0)), "More" }' in s

    gm = parse_format(text(fs, f"{T}/events/cxl/cxl_general_media/format"))
    assert gm["log"] == ("int log", 16, 4, 1)
    assert gm["hdr_uuid"] == ("uuid_t hdr_uuid", 20, 16, 0)
    assert gm["serial"][1] == 40 and gm["hdr_timestamp"][1] == 56 and gm["dpa"][1] == 72
    assert gm["comp_id"] == ("u8 comp_id[16]", 88, 16, 0)
    assert gm["region_name"] == ("__data_loc char[] region_name", 132, 4, 0)
    mm = parse_format(text(fs, f"{T}/events/cxl/cxl_memory_module/format"))
    assert mm["device_temp"] == ("s16 device_temp", 84, 2, 1)
    # every event: natural alignment, declaration order, no overlap
    for call in ct.CXL_EVENTS:
        fl = parse_format(text(fs, f"{T}/events/cxl/{call.name}/format"))
        end = 8
        for name, (decl, off, size, _) in list(fl.items())[4:]:
            m = re.search(r"\[(\d+)\]$", decl)
            elem = size // int(m.group(1)) if m else size
            align = 4 if decl.startswith("__data_loc") else (1 if "uuid_t" in decl else min(elem, 8))
            assert off % align == 0 and off >= end, (call.name, name)
            end = off + size


def test_header_page_and_event(fs):
    assert text(fs, f"{T}/events/header_page") == (
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
    he = text(fs, f"{T}/events/header_event")
    assert "\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n" in he
    assert "\ttime_extend : type == 30\n" in he and "\tdata max type_len  == 28\n" in he


# ---------------------------------------------------------------- gating
def test_enable_and_tracing_on_gate_recording(sysm, fs):
    md = memdev(sysm)
    rec = struct.pack("<QII", 0x1000 | 3, 2, 0)
    ct.trace_cxl_poison(md, None, rec, 0, 0, ct.CXL_POISON_TRACE_LIST, ULLONG_MAX)
    assert body_lines(fs) == []                      # not enabled: nothing
    assert text(fs, f"{T}/events/cxl/enable") == "0\n"
    enable(fs, "cxl_poison")
    assert text(fs, f"{T}/events/cxl/cxl_poison/enable") == "1\n"
    assert text(fs, f"{T}/events/cxl/enable") == "X\n"
    assert text(fs, f"{T}/events/enable") == "X\n"
    assert text(fs, f"{T}/set_event") == "cxl:cxl_poison\n"
    ct.trace_cxl_poison(md, None, rec, 0, 0, ct.CXL_POISON_TRACE_LIST, ULLONG_MAX)
    assert len(body_lines(fs)) == 1
    fs.write(f"{T}/tracing_on", b"0\n")
    assert text(fs, f"{T}/tracing_on") == "0\n"
    ct.trace_cxl_poison(md, None, rec, 0, 0, ct.CXL_POISON_TRACE_LIST, ULLONG_MAX)
    assert len(body_lines(fs)) == 1
    fs.write(f"{T}/tracing_on", b"1\n")
    ct.trace_cxl_dram(md, 0, None, ULLONG_MAX, dram_record(0x8000))   # cxl_dram not enabled
    assert len(body_lines(fs)) == 1
    enable(fs)
    assert text(fs, f"{T}/events/cxl/enable") == "1\n"
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/events/cxl/cxl_dram/enable", b"2\n")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/tracing_on", b"yes\n")
    assert e.value.errno == errno.EINVAL
    assert text(fs, f"{T}/events/cxl/cxl_dram/enable") == "1\n"      # unchanged by the refusals


def test_clear_by_write_and_truncate(sysm, fs):
    enable(fs, "cxl_poison")
    md = memdev(sysm)
    for _ in range(3):
        ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x40, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert "# entries-in-buffer/entries-written: 3/3   #P:" in text(fs, f"{T}/trace")
    fs.write(f"{T}/trace", b"\n")                    # a write alone: the kernel's write stub ignores it
    assert len(body_lines(fs)) == 3
    fs.truncate(f"{T}/trace")                        # echo "" > trace: the O_TRUNC clears
    fs.write(f"{T}/trace", b"\n")
    assert body_lines(fs) == []
    ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x40, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert len(body_lines(fs)) == 1
    fs.truncate(f"{T}/trace")                        # : > trace (O_TRUNC)
    assert body_lines(fs) == []
    fs.truncate(f"{T}/set_event")                    # O_TRUNC of set_event disables everything
    assert text(fs, f"{T}/set_event") == ""
    fs.write(f"{T}/set_event", b"cxl:cxl_dram cxl_poison")
    assert text(fs, f"{T}/set_event") == "cxl:cxl_dram\ncxl:cxl_poison\n"
    fs.write(f"{T}/set_event", b"!cxl:cxl_dram")
    assert text(fs, f"{T}/set_event") == "cxl:cxl_poison\n"
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/set_event", b"nosuch:event")
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------- instances
def test_instances_mkdir_rmdir(sysm, fs):
    assert fs.listdir(f"{T}/instances") == []
    fs.mkdir(f"{T}/instances/cxl list")
    assert fs.listdir(f"{T}/instances") == ["cxl list"]
    assert fs.listdir("kernel/debug/tracing/instances") == ["cxl list"]
    inst = f"{T}/instances/cxl list"
    assert "instances" not in fs.listdir(inst) and "trace_pipe_raw" in fs.listdir(f"{inst}/per_cpu/cpu0")
    assert text(fs, f"{inst}/tracing_on") == "1\n" and text(fs, f"{inst}/events/cxl/enable") == "0\n"
    with pytest.raises(KernelError) as e:
        fs.mkdir(f"{T}/instances/cxl list")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(KernelError) as e:
        fs.mkdir(f"{T}/events/mine")
    assert e.value.errno == errno.EPERM
    with pytest.raises(KernelError) as e:
        fs.mkdir("bus/cxl/devices/foo")
    assert e.value.errno == errno.EPERM

    # an event lands only where it is enabled
    enable(fs, "cxl_poison", inst="cxl list")
    ct.trace_cxl_poison(memdev(sysm), None, struct.pack("<QII", 0x80, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert len(body_lines(fs, f"{inst}/trace")) == 1 and body_lines(fs) == []
    enable(fs, "cxl_poison")
    ct.trace_cxl_poison(memdev(sysm), None, struct.pack("<QII", 0xC0, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert len(body_lines(fs, f"{inst}/trace")) == 2 and len(body_lines(fs)) == 1

    fs.rmdir(inst)
    assert fs.listdir(f"{T}/instances") == [] and fs.lookup(inst) is None
    with pytest.raises(KernelError) as e:
        fs.rmdir(inst)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(KernelError) as e:
        fs.rmdir(f"{T}/events")
    assert e.value.errno == errno.EPERM
    fs.mkdir(inst)                                   # a new instance starts empty, all events off
    assert body_lines(fs, f"{inst}/trace") == [] and text(fs, f"{inst}/events/cxl/cxl_poison/enable") == "0\n"


# ---------------------------------------------------------------- text output of each event
def test_text_lines_of_each_event(sysm, fs):
    md, r = memdev(sysm), region0(sysm)
    enable(fs)
    head = f"memdev={md.name} host={md.parent.name} serial={md.info.serial}"
    ruuid = str(uuidlib.UUID(bytes=bytes(r.uuid)))
    with sysm.tracing.current(4321, "cxl"):
        ct.trace_cxl_general_media(md, ct.CXL_EVENT_TYPE_WARN, r, 0xF000002000, gen_media_record(0x2001))
        sysm.timers.clock.advance(0.5)
        ct.trace_cxl_dram(md, ct.CXL_EVENT_TYPE_FATAL, None, ULLONG_MAX, dram_record(0x8002))
        ct.trace_cxl_memory_module(md, ct.CXL_EVENT_TYPE_INFO, mem_module_record())
        gen = common_hdr(bytes(range(16)), 0, 9, 0, 1, 0) + bytes([0xDE, 0xAD]) + bytes(78)
        ct.trace_cxl_generic_event(md, ct.CXL_EVENT_TYPE_FAIL, bytes(range(16)), gen)
        payload = struct.pack("<BBHQQH10s", 1, 0, 2, 1000, 2000, 0, bytes(10))
        ct.trace_cxl_overflow(md, ct.CXL_EVENT_TYPE_FAIL, payload)
        ct.trace_cxl_poison(md, r, struct.pack("<QII", 0x40001000 | 3, 1, 0), 0x2, 77,
                            ct.CXL_POISON_TRACE_LIST, 0xF050001000)
    lines = body_lines(fs)
    prefix = "             cxl-4321    [000] ..... "
    assert all(ln.startswith(prefix) for ln in lines)
    assert lines[0].startswith(prefix + " 1000.000000: cxl_general_media: ")
    assert lines[1].startswith(prefix + " 1000.500000: cxl_dram: ")
    common = ("time=73588229205 uuid=fbcd0a77-c260-417f-85a9-088b1621eba6 len=128 "
              "flags='MAINTENANCE_NEEDED | PERFORMANCE_DEGRADED' handle=1234 related_handle=0 maint_op_class=2 : ")
    assert lines[0].split(": cxl_general_media: ", 1)[1] == (
        f"{head} log=Warning : {common}dpa=2000 dpa_flags='VOLATILE' descriptor='THRESHOLD_EVENT' "
        "type='Invalid Address' transaction_type='Host Scan Media' channel=1 rank=2 device=30201 "
        "comp_id=00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f validity_flags='CHANNEL|RANK|DEVICE|COMPONENT' "
        f"hpa=f000002000 region={r.name} region_uuid={ruuid}")
    assert lines[1].split(": cxl_dram: ", 1)[1] == (
        f"{head} log=Fatal : time=99 uuid=601dcbb3-9c06-4eab-b8af-4e9bfb5c9624 len=128 "
        "flags='HARDWARE_REPLACEMENT_NEEDED' handle=7 related_handle=8 maint_op_class=0 : "
        "dpa=8000 dpa_flags='NOT_REPAIRABLE' descriptor='UNCORRECTABLE_EVENT' type='Scrub Media ECC Error' "
        "transaction_type='Internal Media Scrub' channel=3 rank=4 nibble_mask=abcde bank_group=5 bank=6 "
        "row=66051 column=1800 cor_mask=" + " ".join(["aa"] * 32) + " "
        "validity_flags='CHANNEL|ROW|COLUMN|CORRECTION MASK' hpa=ffffffffffffffff region= "
        "region_uuid=00000000-0000-0000-0000-000000000000")
    assert lines[2].split(": cxl_memory_module: ", 1)[1] == (
        f"{head} log=Informational : time=5 uuid=fe927475-dd59-4339-a586-79bab113b774 len=128 "
        "flags='PERMANENT_CONDITION' handle=3 related_handle=0 maint_op_class=1 : "
        "event_type='Temperature Change' health_status='MAINTENANCE_NEEDED|REPLACEMENT_NEEDED' "
        "media_status='Write Persistency Lost' as_life_used=Warning as_dev_temp=0x3 "
        "as_cor_vol_err_cnt=Normal as_cor_per_err_cnt=Warning life_used=42 device_temp=-5 "
        "dirty_shutdown_cnt=9 cor_vol_err_cnt=10 cor_per_err_cnt=11")
    assert lines[3].split(": cxl_generic_event: ", 1)[1] == (
        f"{head} log=Failure : time=1 uuid=00010203-0405-0607-0809-0a0b0c0d0e0f len=128 flags='' handle=9 "
        "related_handle=0 maint_op_class=0 : de ad " + " ".join(["00"] * 78))
    assert lines[4].split(": cxl_overflow: ", 1)[1] == f"{head}: log=Failure : 2 records from 1000 to 2000"
    assert lines[5].split(": cxl_poison: ", 1)[1] == (
        f"{head} trace_type=List region={r.name} region_uuid={ruuid} hpa=0xf050001000 dpa=0x40001000 "
        "dpa_length=0x40 source=Injected flags=Overflow overflow_time=77")
    assert text(fs, f"{T}/saved_cmdlines") == "4321 cxl\n"


def test_flag_decoders_leftovers_and_unknowns():
    from cxlsys.kernel.trace import print_flags, print_symbolic
    assert print_flags(0x0, "|", [(1, "A")]) == ""
    assert print_flags(0x13, "|", [(1, "A"), (2, "B")]) == "A|B|0x10"
    assert print_symbolic(9, [(0, "x")]) == "0x9"
    assert ct.show_poison_source(5) == "Reserved" and ct.show_poison_source(7) == "Vendor"


# ---------------------------------------------------------------- trace_pipe
def test_trace_pipe_consumes(sysm, fs):
    enable(fs, "cxl_poison")
    md = memdev(sysm)
    for i in range(3):
        ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x40 * i, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert fs.read(f"{T}/trace_pipe") == b""          # a whole-file read (dump, fakefs) consumes nothing
    first = fs.read_at(f"{T}/trace_pipe", 0, 100)
    assert len(first) == 100
    rest = b""
    while chunk := fs.read_at(f"{T}/trace_pipe", 0, 4096):
        rest += chunk
    lines = (first + rest).decode().splitlines()
    assert len(lines) == 3 and [ln.count("cxl_poison:") for ln in lines] == [1, 1, 1]
    assert "dpa=0x0 " in lines[0] and "dpa=0x80 " in lines[2]
    assert fs.read_at(f"{T}/trace_pipe", 0, 4096) == b""       # drained: end of file, never blocks
    assert body_lines(fs) == []                                  # consumed from `trace` too


# ---------------------------------------------------------------- raw pages
def decode_pages(data: bytes) -> list:
    """The kernel's documented layout: buffer_data_page {u64 time_stamp; local_t commit; data[]},
    then ring_buffer_event {u32 type_len:5, time_delta:27; u32 array[]}."""
    out = []
    for p in range(0, len(data), 4096):
        page = data[p:p + 4096]
        ts, commit = struct.unpack_from("<QQ", page, 0)
        missed = bool(commit & (1 << 31))
        size = commit & 0xFFFFF
        pos, end = 16, 16 + size
        while pos < end:
            (w,) = struct.unpack_from("<I", page, pos)
            type_len, delta = w & 0x1F, w >> 5
            if type_len == 29:                                    # padding
                (n,) = struct.unpack_from("<I", page, pos + 4)
                pos += 4 + n
                continue
            if type_len == 30:                                    # time extend
                (hi,) = struct.unpack_from("<I", page, pos + 4)
                ts += (hi << 27) + delta
                pos += 8
                continue
            if type_len == 0:
                (n,) = struct.unpack_from("<I", page, pos + 4)
                length, start = n - 4, pos + 8
            else:
                length, start = type_len * 4, pos + 4
            ts += delta
            out.append((ts, page[start:start + length], missed))
            missed = False
            pos = start + length
    return out


def read_raw(fs, inst_path, cpu=0) -> bytes:
    data = b""
    while page := fs.read_at(f"{inst_path}/per_cpu/cpu{cpu}/trace_pipe_raw", 0, 4096):
        assert len(page) == 4096
        data += page
    return data


def test_raw_pages_round_trip_with_time_extend(sysm, fs):
    enable(fs, "cxl_poison")
    md = memdev(sysm)
    stamps = []
    with sysm.tracing.current(777, "cxl", cpu=1):
        for i in range(60):                  # more than one 4080-byte page of ~112-byte entries
            stamps.append(int(round(sysm.timers.clock() * 1e9)))
            ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x1000 * i | 2, i + 1, 0), 0, 0, 0, ULLONG_MAX)
            sysm.timers.clock.advance(0.2 if i % 7 == 0 else 0.000001)   # 200 ms does not fit 27 bits
    assert read_raw(fs, T, cpu=0) == b""
    data = read_raw(fs, T, cpu=1)
    assert len(data) >= 2 * 4096
    evs = decode_pages(data)
    call = ct.CXL_POISON
    assert [ts for ts, _, _ in evs] == stamps
    for i, (_, e, missed) in enumerate(evs):
        etype, _, _, pid = struct.unpack_from("<HBBi", e, 0)
        assert (etype, pid, missed) == (call.id, 777, False)
        f = parse_format(call.format())
        dpa = int.from_bytes(e[f["dpa"][1]:f["dpa"][1] + 8], "little")
        length = int.from_bytes(e[f["dpa_length"][1]:f["dpa_length"][1] + 4], "little")
        loc = int.from_bytes(e[f["memdev"][1]:f["memdev"][1] + 4], "little")
        name = e[loc & 0xFFFF:(loc & 0xFFFF) + (loc >> 16)]
        assert (dpa, length, e[f["source"][1]], name) == (0x1000 * i, 64 * (i + 1), 2, md.name.encode() + b"\0")
    assert read_raw(fs, T, cpu=1) == b""                 # consumed
    assert body_lines(fs) == []


def test_overwrite_drops_oldest_page_and_flags_missed(sysm, fs):
    enable(fs, "cxl_poison")
    fs.write(f"{T}/buffer_size_kb", b"8\n")             # 3 sub-buffers
    assert text(fs, f"{T}/buffer_size_kb") == "11\n"
    md = memdev(sysm)
    for i in range(200):
        ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x40 * i, 1, 0), 0, 0, 0, ULLONG_MAX)
        sysm.timers.clock.advance(0.000001)
    stats = text(fs, f"{T}/per_cpu/cpu0/stats")
    kept = int(re.search(r"entries: (\d+)", stats).group(1))
    overrun = int(re.search(r"overrun: (\d+)", stats).group(1))
    assert kept + overrun == 200 and overrun > 0
    assert f"entries-in-buffer/entries-written: {kept}/200 " in text(fs, f"{T}/trace")
    data = read_raw(fs, T)
    evs = decode_pages(data)
    assert len(evs) == kept and evs[0][2] is True      # the first page read says events were lost
    (commit,) = struct.unpack_from("<Q", data, 8)
    stored = struct.unpack_from("<Q", data, 16 + (commit & 0xFFFFF))[0]
    assert commit & (1 << 30) and stored == overrun
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/buffer_size_kb", b"0\n")
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------- filters, clocks
def test_filter(sysm, fs):
    enable(fs, "cxl_poison")
    fs.write(f"{T}/events/cxl/cxl_poison/filter", b'dpa >= 0x80 && memdev == "mem0"\n')
    assert text(fs, f"{T}/events/cxl/cxl_poison/filter") == 'dpa >= 0x80 && memdev == "mem0"\n'
    for name in ("mem0", "mem1"):
        for dpa in (0x40, 0x80):
            ct.trace_cxl_poison(memdev(sysm, name), None, struct.pack("<QII", dpa, 1, 0), 0, 0, 0, ULLONG_MAX)
    lines = body_lines(fs)
    assert len(lines) == 1 and "memdev=mem0 " in lines[0] and "dpa=0x80 " in lines[0]
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/events/cxl/cxl_poison/filter", b"nosuchfield == 1\n")
    assert e.value.errno == errno.EINVAL
    fs.write(f"{T}/events/cxl/cxl_poison/filter", b"0\n")
    assert text(fs, f"{T}/events/cxl/cxl_poison/filter") == "none\n"


def test_tracing_cpumask(sysm, fs):
    enable(fs, "cxl_poison")
    cpus = sysm.tracing.possible_cpus()
    assert int(text(fs, f"{T}/tracing_cpumask"), 16) == sum(1 << c for c in cpus)
    fs.write(f"{T}/tracing_cpumask", b"1\n")          # CPU 0 only
    for cpu in cpus:
        with sysm.tracing.current(5, "cxl", cpu=cpu):
            ct.trace_cxl_poison(memdev(sysm), None, struct.pack("<QII", 0x40, 1, 0), 0, 0, 0, ULLONG_MAX)
    assert [ln.split("[")[1][:3] for ln in body_lines(fs)] == ["000"]
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/tracing_cpumask", b"zz\n")
    assert e.value.errno == errno.EINVAL


def test_trace_clock_and_buffer_size(fs):
    assert text(fs, f"{T}/trace_clock").startswith("[local] global counter")
    fs.write(f"{T}/trace_clock", b"mono\n")
    assert "[mono]" in text(fs, f"{T}/trace_clock")
    with pytest.raises(KernelError) as e:
        fs.write(f"{T}/trace_clock", b"sundial\n")
    assert e.value.errno == errno.EINVAL
    assert text(fs, f"{T}/buffer_size_kb") == "7 (expanded: 1408)\n"
    enable(fs, "cxl_poison")                              # the first event enabled expands the buffer
    assert text(fs, f"{T}/buffer_size_kb") == "1410\n"


# ---------------------------------------------------------------- ndctl's cxl-events, in process
def test_cxl_events_counts_like_ndctl(sysm, fs):
    """ndctl test/cxl-events.sh: clear, enable cxl, trigger the first mock memdev's events."""
    host = next(p for p in fs.listdir("bus/platform/devices")
                if fs.lookup(f"bus/platform/devices/{p}/event_trigger") is not None)
    fs.write(f"{T}/trace", b"\n")
    fs.write(f"{T}/events/cxl/enable", b"1\n")
    fs.write(f"{T}/tracing_on", b"1\n")
    with sysm.tracing.current(100, "bash"):
        fs.write(f"bus/platform/devices/{host}/event_trigger", b"1\n")
    fs.write(f"{T}/tracing_on", b"0\n")
    out = text(fs, f"{T}/trace")
    counts = {k: len(re.findall(k, out)) for k in ("cxl_overflow", "log=Fatal", "log=Failure", "log=Informational")}
    assert counts == {"cxl_overflow": 1, "log=Fatal": 2, "log=Failure": 16, "log=Informational": 3}


# ---------------------------------------------------------------- the real libraries
def _lib(name):
    path = ctypes.util.find_library(name)
    return ctypes.CDLL(path) if path else None


class TepRecord(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_ulonglong), ("offset", ctypes.c_ulonglong), ("missed_events", ctypes.c_longlong),
                ("record_size", ctypes.c_int), ("size", ctypes.c_int), ("data", ctypes.c_void_p),
                ("cpu", ctypes.c_int), ("ref_count", ctypes.c_int), ("locked", ctypes.c_int),
                ("priv", ctypes.c_void_p)]


def materialize(fs, root: str, dest, cpus: int) -> None:
    """The tracing tree as plain files (streams drained page by page), for libtracefs."""
    for path, e in fs.walk(root):
        rel = path[len(root) + 1:]
        full = os.path.join(dest, rel)
        if e.kind == "dir":
            os.makedirs(full, exist_ok=True)
        elif e.readable:
            data = b""
            if path.endswith("trace_pipe_raw"):
                while chunk := fs.read_at(path, 0, 4096):
                    data += chunk
            elif not e.binary:
                data = fs.read(path)
            with open(full, "wb") as f:
                f.write(data)
    for base in [dest] + [os.path.join(dest, "instances", n) for n in os.listdir(os.path.join(dest, "instances"))]:
        for c in range(cpus):                              # libtracefs opens a buffer per host CPU
            d = os.path.join(base, "per_cpu", f"cpu{c}")
            if not os.path.exists(d):
                os.makedirs(d)
                open(os.path.join(d, "trace_pipe_raw"), "wb").close()


@pytest.mark.skipif(_lib("tracefs") is None or _lib("traceevent") is None,
                    reason="libtracefs/libtraceevent not installed (Debian libtracefs1, libtraceevent1)")
def test_libtracefs_reads_poison_like_cxl_list(sysm, fs, tmp_path):
    """What ``cxl list --media-errors`` (ndctl v81 cxl/json.c) does, through the real libraries:
    an instance ``cxl list`` with cxl_poison enabled, a tep from the top-level format files,
    tracefs_iterate_raw_events() over the instance's trace_pipe_raw, fields read by name."""
    tfs, tev = _lib("tracefs"), _lib("traceevent")
    assert tfs is not None and tev is not None
    fs.mkdir(f"{T}/instances/cxl list")
    enable(fs, "cxl_poison", inst="cxl list")
    md, r = memdev(sysm), region0(sysm)
    with sysm.tracing.current(os.getpid(), "cxl", cpu=1):
        ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x40000000 | 3, 1, 0), 0, 0, ct.CXL_POISON_TRACE_LIST,
                            ULLONG_MAX)
        ct.trace_cxl_poison(md, r, struct.pack("<QII", 0x600 | 1, 4, 0), 0x2, 123, ct.CXL_POISON_TRACE_LIST,
                            0xF000000600)
    with sysm.tracing.current(1, "other", cpu=0):
        ct.trace_cxl_poison(md, None, struct.pack("<QII", 0x0, 1, 0), 0, 0, 0, ULLONG_MAX)
    materialize(fs, T, str(tmp_path), max(os.cpu_count() or 1, len(sysm.tracing.possible_cpus())))

    vp = ctypes.c_void_p
    tfs.tracefs_set_tracing_dir.argtypes = [ctypes.c_char_p]
    tfs.tracefs_local_events.restype = vp
    tfs.tracefs_local_events.argtypes = [ctypes.c_char_p]
    tfs.tracefs_instance_alloc.restype = vp
    tfs.tracefs_instance_alloc.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    tfs.tracefs_instance_free.argtypes = [vp]
    cb_t = ctypes.CFUNCTYPE(ctypes.c_int, vp, ctypes.POINTER(TepRecord), ctypes.c_int, vp)
    tfs.tracefs_iterate_raw_events.argtypes = [vp, vp, vp, ctypes.c_int, cb_t, vp]
    tev.tep_find_event_by_name.restype = vp
    tev.tep_find_event_by_name.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p]
    tev.tep_get_field_val.argtypes = [vp, vp, ctypes.c_char_p, ctypes.POINTER(TepRecord),
                                      ctypes.POINTER(ctypes.c_ulonglong), ctypes.c_int]
    tev.tep_get_field_raw.restype = ctypes.c_char_p
    tev.tep_get_field_raw.argtypes = [vp, vp, ctypes.c_char_p, ctypes.POINTER(TepRecord),
                                      ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    tev.tep_data_pid.argtypes = [vp, ctypes.POINTER(TepRecord)]
    tev.tep_free.argtypes = [vp]

    d = str(tmp_path).encode()
    tfs.tracefs_set_tracing_dir(d)
    try:
        tep = tfs.tracefs_local_events(d)
        assert tep
        poison = tev.tep_find_event_by_name(tep, b"cxl", b"cxl_poison")
        assert poison and tev.tep_find_event_by_name(tep, b"cxl", b"cxl_general_media")
        inst = tfs.tracefs_instance_alloc(d, b"cxl list")
        got = []

        def cb(event, rec, cpu, ctx):
            if event != poison:
                return 0
            vals = {}
            for name in (b"dpa", b"hpa", b"dpa_length", b"source", b"flags", b"overflow_ts"):
                v = ctypes.c_ulonglong()
                assert tev.tep_get_field_val(None, event, name, rec, ctypes.byref(v), 0) == 0
                vals[name.decode()] = v.value
            n = ctypes.c_int()
            vals["region"] = tev.tep_get_field_raw(None, event, b"region", rec, ctypes.byref(n), 0).decode()
            vals["pid"] = tev.tep_data_pid(tep, rec)
            vals["cpu"] = cpu
            got.append(vals)
            return 0

        keep = cb_t(cb)
        assert tfs.tracefs_iterate_raw_events(tep, inst, None, 0, keep, None) == 0
        tfs.tracefs_instance_free(inst)
        tev.tep_free(tep)
    finally:
        tfs.tracefs_set_tracing_dir(None)
    mine = [g for g in got if g["pid"] == os.getpid()]
    assert len(got) == 3 and len(mine) == 2
    assert mine[0] == {"dpa": 0x40000000, "hpa": ULLONG_MAX, "dpa_length": 64, "source": 3, "flags": 0,
                       "overflow_ts": 0, "region": "", "pid": os.getpid(), "cpu": 1}
    assert mine[1] == {"dpa": 0x600, "hpa": 0xF000000600, "dpa_length": 256, "source": 1, "flags": 2,
                       "overflow_ts": 123, "region": r.name, "pid": os.getpid(), "cpu": 1}
