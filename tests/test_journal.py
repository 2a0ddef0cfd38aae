"""Durable state (issue 11): the journal of ``--state FILE`` (cxlsys/journal.py), in-process.

A System journals every accepted change; a fresh System of the same topology opened on the same
file replays it and ends in the identical state — every attribute of the whole tree, memory block
states, root's chmods, LSA bytes written by an ioctl, a sanitize that completed in the background.
A torn last record is dropped with a message; damage elsewhere, another topology, kernel profile,
parameter set, format or cxlsys version is refused with one line.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from cxlsys import journal as J
from cxlsys.journal import FORMAT_VERSION, Journal, JournalError
from cxlsys.kernel.timer import FakeClock
from cxlsys.kernel.uaccess import BufferUserMemory
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import assert_refused, memdev, provision_ram_region
from cxlsys.treedump import dump_model
from cxlsys.uapi import cxl_mem as U

ROOTS = ["/sys/bus", "/sys/devices", "/sys/module", "/sys/class"]


def boot(path, topology="cxl_test", msgs=None, **kw):
    s = System.boot(topology, **kw)
    s.timers.clock = FakeClock()
    Journal.open(str(path), s, (msgs if msgs is not None else []).append)
    return s, Sysfs(s)


def state(s) -> list:
    """Every file of the tree with its value (as the golden dumps print them), modes included."""
    return dump_model(Sysfs(s), ROOTS, skip=None)


def blocks(fs) -> dict:
    base = "devices/system/memory"
    return {m: fs.read(f"{base}/{m}/state") for m in fs.listdir(base) if m.startswith("memory")}


def close(s) -> None:
    s.journal.close()


def online_region(fs, s) -> tuple:
    """A committed 2-way ram region, its dax device on kmem, every block online_movable."""
    region, dax = provision_ram_region(fs)             # daxN.0 comes up bound to kmem
    for m, st in blocks(fs).items():
        if st == b"offline\n":
            fs.write(f"devices/system/memory/{m}/state", b"online_movable")
    return region, dax


def test_replay_restores_the_identical_state(tmp_path):
    f = tmp_path / "state"
    s, fs = boot(f)
    region, dax = online_region(fs, s)
    assert any(v == b"online\n" for v in blocks(fs).values())
    before, before_blocks = state(s), blocks(fs)
    n = s.journal.count
    close(s)                       # (kill -9: nothing more is written; every record is already fsync'd)
    msgs: list = []
    s2, fs2 = boot(f, msgs=msgs)
    assert state(s2) == before and blocks(fs2) == before_blocks
    assert msgs == [f"{f}: state restored: {n} journaled operations replayed"]
    assert f"cxlsys: state restored from {f} ({n} operations)" in s2.klog.lines()[-1]
    # the restored system journals on: a third start sees both sessions' changes
    fs2.write("bus/cxl/devices/decoder0.1/create_ram_region", fs2.read("bus/cxl/devices/decoder0.1/create_ram_region"))
    after = state(s2)
    close(s2)
    s3, _ = boot(f)
    assert state(s3) == after and s3.journal.count == n + 1


def test_refused_and_pure_writes_are_not_journaled(tmp_path):
    f = tmp_path / "state"
    s, fs = boot(f)
    assert_refused(fs, "bus/cxl/flush", "2", errno.EINVAL, unchanged=fs.snapshot)
    fs.write("bus/cxl/flush", b"1")                           # pure: changes nothing
    with pytest.raises(OSError):
        fs.write("bus/cxl/devices/decoder0.0/create_ram_region", b"junk")
    assert s.journal.count == 0
    assert len(f.read_bytes().splitlines()) == 1              # the header only


def test_records_are_readable_lines_with_a_crc(tmp_path):
    f = tmp_path / "state"
    s, fs = boot(f)
    fs.write("bus/cxl/devices/decoder9.0/mode", b"ram\n")
    close(s)
    header, rec = f.read_text().splitlines()
    assert '"journal":"cxlsys"' in header and f'"version":{FORMAT_VERSION}' in header
    text, crc = rec.rsplit(" ", 1)
    assert text == '{"n":1,"op":"write","path":"bus/cxl/devices/decoder9.0/mode","text":"ram\\n"}' and len(crc) == 8


def test_a_torn_last_record_is_dropped_with_a_message(tmp_path):
    f = tmp_path / "state"
    s, fs = boot(f)
    fs.write("bus/cxl/devices/decoder9.0/mode", b"ram\n")
    want = state(s)
    fs.write("bus/cxl/devices/decoder9.0/dpa_size", b"0x10000000\n")
    close(s)
    data = f.read_bytes()
    whole = data[:data.rindex(b"\n", 0, len(data) - 1) + 1]
    for torn in (data[:-7], whole + b'{"n":2,"op":"wri', data[:-3] + b"00\n"):   # cut short, half, bad CRC
        f.write_bytes(torn)
        msgs: list = []
        s2, fs2 = boot(f, msgs=msgs)
        assert msgs[0] == f"{f}: the last record (#2) is torn (the daemon died while writing it): dropped; " \
                          "state restored up to record #1"
        assert state(s2) == want
        assert f.read_bytes() == whole                        # cut back: the next record appends cleanly
        fs2.write("bus/cxl/devices/decoder9.0/dpa_size", b"0x10000000\n")
        close(s2)
        s3, _ = boot(f)
        assert s3.journal.count == 2
        close(s3)


@pytest.mark.parametrize("damage", ["header", "middle", "sequence"])
def test_damage_before_the_end_is_refused(tmp_path, damage):
    f = tmp_path / "state"
    s, fs = boot(f)
    fs.write("bus/cxl/devices/decoder9.0/mode", b"ram\n")
    fs.write("bus/cxl/devices/decoder9.0/dpa_size", b"0x10000000\n")
    close(s)
    lines = f.read_bytes().splitlines(keepends=True)
    if damage == "header":
        lines[0] = lines[0].replace(b"cxlsys", b"cxlsyz", 1)
    elif damage == "middle":
        lines[1] = lines[1].replace(b"ram", b"rom")
    else:
        lines[2] = J._line({"n": 7, "op": "write", "path": "x", "text": "1"})
    f.write_bytes(b"".join(lines))
    with pytest.raises(JournalError) as e:
        boot(f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ")
    assert {"header": "line 1 (header) is damaged", "middle": "line 2 (record 1) is damaged",
            "sequence": "record 2 is out of sequence"}[damage] in msg


@pytest.mark.parametrize("other, why", [
    (dict(topology="qemu-hdm-db"), "written for topology cxl_test (kernel 6.12, params interleave_arithmetic=0); "
                                   "this start is topology qemu-hdm-db"),
    (dict(kernel="mainline"), "this start is topology cxl_test (kernel 7.3"),
    (dict(params={"interleave_arithmetic": 1}), "params interleave_arithmetic=1)"),
])
def test_another_topology_kernel_or_parameters_is_refused(tmp_path, other, why):
    f = tmp_path / "state"
    s, fs = boot(f)
    close(s)
    with pytest.raises(JournalError) as e:
        boot(f, **other)
    assert why in str(e.value) and "refused" in str(e.value)


@pytest.mark.parametrize("field, value, why", [
    ("version", FORMAT_VERSION + 1, f"journal format version {FORMAT_VERSION + 1}; this cxlsys reads version"),
    ("cxlsys", "0.0.1", "written by cxlsys 0.0.1, this is cxlsys"),
])
def test_another_format_or_cxlsys_version_is_refused(tmp_path, field, value, why):
    f = tmp_path / "state"
    s, _ = boot(f)
    close(s)
    header = J.header_for(System.boot("cxl_test"))
    header[field] = value
    f.write_bytes(J._line(header))
    with pytest.raises(JournalError) as e:
        boot(f)
    assert why in str(e.value)


def test_one_journal_one_daemon(tmp_path):
    f = tmp_path / "state"
    boot(f)
    with pytest.raises(JournalError) as e:
        boot(f)
    assert "in use by another cxlsys" in str(e.value)


def test_a_replayed_operation_the_model_refuses_is_refused(tmp_path):
    f = tmp_path / "state"
    s, _ = boot(f)
    close(s)
    with f.open("ab") as out:
        out.write(J._line({"n": 1, "op": "write", "path": "bus/cxl/flush", "text": "2\n"}))
    with pytest.raises(JournalError) as e:
        boot(f)
    assert "record 1 (write b'2\\n' to /sys/bus/cxl/flush) is refused on replay: Invalid argument" in str(e.value)


def test_delayed_work_fires_where_it_fired(tmp_path):
    """A sanitize that completed in the background before the crash completes at the same point of
    the replay (before the write that needed it done), though the replay's clock never moves."""
    f = tmp_path / "state"
    s, fs = boot(f)
    md = memdev(s, "cxl_mem.1")
    fs.write("bus/platform/devices/cxl_mem.1/sanitize_timeout", b"2000")
    fs.write(f"bus/cxl/devices/{md.name}/security/sanitize", b"1")
    s.timers.clock.advance(2)
    s.timers.run_due()
    fs.write(f"bus/cxl/devices/{md.name}/security/sanitize", b"1")     # EBUSY had it not finished
    assert fs.read(f"bus/cxl/devices/{md.name}/security/state") == b"sanitize\n"
    want = state(s)
    close(s)
    assert '"op":"timer"' in f.read_text()
    s2, fs2 = boot(f)
    assert state(s2) == want
    s2.timers.clock.advance(2)                 # the second sanitize is pending after the replay too
    s2.timers.run_due()
    assert fs2.read(f"bus/cxl/devices/{md.name}/security/state") == b"disabled\n"


def test_ioctl_replays_the_bytes_it_read(tmp_path):
    """SET_LSA through /dev/cxl/memN: the replay feeds the ioctl the caller memory it read."""
    f = tmp_path / "state"
    s, fs = boot(f)
    md = memdev(s, "cxl_mem.1")
    fs.write("bus/cxl/drivers/cxl_mem/unbind", md.name.encode())      # cxl_pmem lets go of SET_LSA
    assert U.CXL_MEM_COMMAND_ID_SET_LSA not in md.mds.exclusive_cmds
    um = BufferUserMemory()
    data = bytes(range(32))
    payload = struct.pack("<II", 0x200, 0) + data
    cmd = U.CxlSendCommand(id=U.CXL_MEM_COMMAND_ID_SET_LSA, in_size=len(payload), in_payload=um.alloc(payload),
                           out_size=0, out_payload=um.alloc(1))
    assert fs.ioctl(md.devname, U.CXL_MEM_SEND_COMMAND, um.alloc(cmd.pack()), um) == 0
    lsa = bytes(md.parent.drvdata.lsa)
    close(s)
    s2, _ = boot(f)
    md2 = memdev(s2, "cxl_mem.1")
    assert bytes(md2.parent.drvdata.lsa) == lsa and lsa[0x200:0x220] == data


def test_root_chmod_and_chown_are_kept(tmp_path):
    f = tmp_path / "state"
    s, fs = boot(f)
    p = "bus/cxl/devices/decoder9.0/mode"
    fs.setattr(p, mode=0o600, uid=1000, gid=100)
    e = fs.stat(p)
    assert (e.mode, e.uid, e.gid) == (0o600, 1000, 100)
    close(s)
    s2, fs2 = boot(f)
    assert fs2.stat(p) == e


def test_an_append_that_fails_says_so(tmp_path):
    f = tmp_path / "state"
    msgs: list = []
    s, fs = boot(f, msgs=msgs)
    os.close(s.journal.fd)
    s.journal.fd = os.open(os.devnull, os.O_RDONLY)           # every write now fails (EBADF)
    fs.write("bus/cxl/devices/decoder9.0/mode", b"ram\n")      # the change itself is made
    assert fs.read("bus/cxl/devices/decoder9.0/mode") == b"ram\n"
    assert "cannot append to the state journal" in msgs[-1] and "not durable" in msgs[-1]
    assert "cannot append to the state journal" in s.klog.lines()[-1]
