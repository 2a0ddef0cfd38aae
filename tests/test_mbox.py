"""The mailbox core (cxlsys/cxl/core/mbox.py) and the /dev/cxl/memN ioctl ABI (cxlsys/uapi/cxl_mem.py).

In-process, through ``CxlMemdev.ioctl`` with a :class:`BufferUserMemory`: the bytes user space puts
in and gets back, per command, against the uAPI and spec layouts, and the errno of every rule of
cxl_validate_cmd_from_user() (one table row each: the refused call leaves the caller's struct and
the device as they were).  The kernel-internal send rules, command enumeration from the CEL, and
identify / partition results are checked against a small fake device whose answers the test
chooses, and against cxl_test's mock (cxlsys/cxl_test/mem.py, the port of tools/testing/cxl/test/mem.c).
"""

from __future__ import annotations

import errno
import struct
import uuid

import attrs
import pytest

from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core import mbox as MB
from cxlsys.cxl.core.memdev import clear_exclusive_cxl_commands, set_exclusive_cxl_commands
from cxlsys.errors import KernelError
from cxlsys.kernel.uaccess import BufferUserMemory
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import memdev
from cxlsys.uapi import cxl_mem as U

SZ_256M, SZ_1G = 256 << 20, 1 << 30
CEL_UUID = uuid.UUID("0da9c0b5-bf41-4b78-8f79-96b1623b3f17").bytes
VENDOR_DEBUG_UUID = uuid.UUID("5e1819d9-11a9-400c-811f-d60719403d86").bytes


# ------------------------------------------------------------------------------ the uAPI itself

def test_ioctl_numbers_are_ior_iowr_of_the_struct_sizes():
    # _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr; read = 2, write = 1
    assert U.CXL_MEM_QUERY_COMMANDS == (2 << 30) | (8 << 16) | (0xCE << 8) | 1 == 0x8008CE01
    assert U.CXL_MEM_SEND_COMMAND == (3 << 30) | (48 << 16) | (0xCE << 8) | 2 == 0xC030CE02


def test_command_ids_and_names():
    assert [n for n, _, _ in U.CXL_CMDS][:4] == ["INVALID", "IDENTIFY", "RAW", "GET_SUPPORTED_LOGS"]
    assert U.CXL_MEM_COMMAND_ID_MAX == 25 == len(U.CXL_CMDS) - 1
    assert U.CXL_MEM_DEPRECATED_ID_GET_POISON == 15 and U.CXL_MEM_COMMAND_ID_GET_SCAN_MEDIA_CAPS == 18
    assert U.CXL_MEM_COMMAND_ID_GET_TIMESTAMP == 21 and U.CXL_MEM_COMMAND_ID_GET_SUP_LOG_SUBLIST == 24
    assert U.cxl_command_names[U.CXL_MEM_COMMAND_ID_IDENTIFY] == "Identify Command"
    assert U.cxl_command_names[U.CXL_MEM_DEPRECATED_ID_CLEAR_POISON] == "Deprecated Clear Poison"


def test_send_command_layout_round_trips():
    s = U.CxlSendCommand(id=1, flags=2, raw_opcode=0x4000, raw_rsvd=7, retval=3, in_size=4, in_rsvd=5,
                         in_payload=0x1122334455667788, out_size=9, out_rsvd=10, out_payload=0xAABB)
    b = s.pack()
    assert len(b) == 48
    # field offsets of struct cxl_send_command
    assert struct.unpack_from("<I", b, 0)[0] == 1 and struct.unpack_from("<I", b, 4)[0] == 2
    assert struct.unpack_from("<I", b, 8)[0] == 0x4000 | 7 << 16 and struct.unpack_from("<I", b, 12)[0] == 3
    assert struct.unpack_from("<IIQ", b, 16) == (4, 5, 0x1122334455667788)
    assert struct.unpack_from("<IIQ", b, 32) == (9, 10, 0xAABB)
    assert U.CxlSendCommand.unpack(b) == s


# ------------------------------------------------------------------------------ a fake device

@attrs.define
class FakeDev:
    """A device whose answers the test sets: ``answers[opcode] = (rc, return_code, payload_out)``,
    a CEL, and a log of (opcode, payload_in, size_out) it was sent."""

    cel: list = attrs.field(factory=list)          # opcodes
    answers: dict = attrs.field(factory=dict)
    sent: list = attrs.field(factory=list)
    gsl_uuid: bytes = CEL_UUID
    short_log: int | None = None                    # answer GET_LOG with this many bytes only

    def cel_bytes(self) -> bytes:
        return b"".join(struct.pack("<HH", op, 0) for op in self.cel)

    def mbox_send(self, cmd: M.CxlMboxCmd) -> int:
        self.sent.append((cmd.opcode, cmd.payload_in, cmd.size_out))
        if cmd.opcode in self.answers:
            rc, ret, out = self.answers[cmd.opcode]
            cmd.return_code = ret
            if out is not None:
                cmd.payload_out, cmd.size_out = out, len(out)
            return rc
        if cmd.opcode == M.CXL_MBOX_OP_GET_SUPPORTED_LOGS:
            out = struct.pack("<H6x16sI", 1, self.gsl_uuid, len(self.cel_bytes()))
        elif cmd.opcode == M.CXL_MBOX_OP_GET_LOG:
            _, off, length = struct.unpack("<16sII", cmd.payload_in)
            out = self.cel_bytes()[off:off + length]
            if self.short_log is not None:
                out = out[: self.short_log]
        else:
            out = b""
        cmd.payload_out, cmd.size_out = out, len(out)
        return 0


def fake_mds(dev: FakeDev, payload: int = 4096) -> M.CxlMemdevState:
    mds = MB.cxl_memdev_state_create(None)
    mds.mbox.mbox_send = dev.mbox_send
    mds.mbox.payload_size = payload
    mds.media_ready = True           # what a driver sets once the device says its media is ready
    return mds


# ------------------------------------------------------------------------------ cxl_internal_send_cmd

def _rc_index(name: str) -> int:
    return [n for n, _, _ in M.CMD_RC_TABLE].index(name)


@pytest.mark.parametrize("answer, size_out, min_out, want", [
    pytest.param((0, 0, b"x" * 8), 8, 0, 0, id="success"),
    pytest.param((0, _rc_index("BACKGROUND"), b""), 0, 0, 0, id="background-started-is-success"),
    pytest.param((-errno.EBUSY, 0, None), 0, 0, errno.EBUSY, id="transport-errno-passes"),
    pytest.param((-errno.EIO, 0, None), 0, 0, errno.ENXIO, id="transport-eio-becomes-enxio"),
    pytest.param((0, _rc_index("PADDR"), b""), 0, 0, errno.EFAULT, id="rc-paddr-efault"),
    pytest.param((0, _rc_index("POISONLMT"), b""), 0, 0, errno.EBUSY, id="rc-poisonlmt-ebusy"),
    pytest.param((0, _rc_index("UNSUPPORTED"), b""), 0, 0, errno.ENXIO, id="rc-unsupported-enxio"),
    pytest.param((0, 99, b""), 0, 0, errno.ENXIO, id="rc-unknown-enxio"),
    pytest.param((0, 0, b"x" * 4), 8, 0, errno.EIO, id="short-output-eio"),
    pytest.param((0, 0, b"x" * 4), 8, 4, 0, id="short-output-within-min_out"),
    pytest.param((0, 0, b"x" * 3), 8, 4, errno.EIO, id="below-min_out-eio"),
])
def test_internal_send_rules(answer, size_out, min_out, want):
    dev = FakeDev(answers={M.CXL_MBOX_OP_GET_HEALTH_INFO: answer})
    mds = fake_mds(dev)
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_HEALTH_INFO, size_out=size_out, min_out=min_out)
    if want:
        with pytest.raises(KernelError) as e:
            MB.cxl_internal_send_cmd(mds.mbox, cmd)
        assert e.value.errno == want
    else:
        assert MB.cxl_internal_send_cmd(mds.mbox, cmd) == 0


@pytest.mark.parametrize("size_in, size_out", [(4097, 0), (0, 4097)])
def test_internal_send_e2big_never_reaches_the_device(size_in, size_out):
    dev = FakeDev()
    mds = fake_mds(dev)
    with pytest.raises(KernelError) as e:
        MB.cxl_internal_send_cmd(mds, M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_SET_LSA, payload_in=bytes(size_in),
                                                   size_out=size_out))
    assert e.value.errno == errno.E2BIG and dev.sent == []


# ------------------------------------------------------------------------------ enumerate / identify

def test_enumerate_reads_the_cel_in_payload_size_pieces():
    ops = [M.CXL_MBOX_OP_IDENTIFY, M.CXL_MBOX_OP_GET_FW_INFO, M.CXL_MBOX_OP_SANITIZE, M.CXL_MBOX_OP_GET_POISON,
           M.CXL_MBOX_OP_INJECT_POISON, M.CXL_MBOX_OP_SET_PASSPHRASE] + [0xC000 + i for i in range(100)]
    dev = FakeDev(cel=ops)
    mds = fake_mds(dev, payload=256)
    MB.cxl_enumerate_cmds(mds)
    logs = [struct.unpack("<16sII", p) for op, p, _ in dev.sent if op == M.CXL_MBOX_OP_GET_LOG]
    total = 4 * len(ops)                             # 424 bytes: 256 then 168
    assert [(u, off, n) for u, off, n in logs] == [(CEL_UUID, 0, 256), (CEL_UUID, 256, total - 256)]
    assert mds.enabled_cmds == {U.CXL_MEM_COMMAND_ID_IDENTIFY, U.CXL_MEM_COMMAND_ID_GET_FW_INFO,
                                U.CXL_MEM_COMMAND_ID_GET_SUPPORTED_LOGS, U.CXL_MEM_COMMAND_ID_GET_LOG}
    assert mds.poison.enabled_cmds == {M.CXL_POISON_ENABLED_LIST, M.CXL_POISON_ENABLED_INJECT}
    assert mds.security.enabled_cmds == {M.CXL_SEC_ENABLED_SANITIZE, M.CXL_SEC_ENABLED_SET_PASSPHRASE}


def test_enumerate_short_log_ends_the_transfer():
    dev = FakeDev(cel=[M.CXL_MBOX_OP_GET_FW_INFO, M.CXL_MBOX_OP_GET_LSA, M.CXL_MBOX_OP_SET_LSA], short_log=4)
    mds = fake_mds(dev)
    MB.cxl_enumerate_cmds(mds)
    # only the first CEL entry arrived
    assert U.CXL_MEM_COMMAND_ID_GET_FW_INFO in mds.enabled_cmds
    assert U.CXL_MEM_COMMAND_ID_GET_LSA not in mds.enabled_cmds


def test_enumerate_without_cel_is_enoent():
    dev = FakeDev(cel=[M.CXL_MBOX_OP_GET_FW_INFO], gsl_uuid=VENDOR_DEBUG_UUID)
    mds = fake_mds(dev)
    with pytest.raises(KernelError) as e:
        MB.cxl_enumerate_cmds(mds)
    assert e.value.errno == errno.ENOENT and mds.enabled_cmds == set()


def _identify(fw=b"fw 1.0", total=8, vol=0, pers=0, align=1, lsa=0x20000, mer=2000) -> bytes:
    return struct.pack("<16sQQQQHHHHI3sHBB", fw.ljust(16, b"\0"), total, vol, pers, align, 0, 0, 0, 0, lsa,
                       mer.to_bytes(3, "little"), 0, 0, 0)


def test_identify_and_partition_info_fill_the_state():
    dev = FakeDev(cel=[M.CXL_MBOX_OP_GET_POISON], answers={
        M.CXL_MBOX_OP_IDENTIFY: (0, 0, _identify()),
        M.CXL_MBOX_OP_GET_PARTITION_INFO: (0, 0, struct.pack("<QQQQ", 3, 5, 2, 6)),
    })
    mds = fake_mds(dev)
    MB.cxl_enumerate_cmds(mds)
    MB.cxl_dev_state_identify(mds)
    assert (mds.total_bytes, mds.partition_align_bytes, mds.lsa_size) == (8 * SZ_256M, SZ_256M, 0x20000)
    assert mds.firmware_version == b"fw 1.0".ljust(16, b"\0")
    assert mds.poison.max_errors == 1024                 # 2000 records clamped to CXL_POISON_LIST_MAX
    MB.cxl_mem_create_range_info(mds)
    assert (mds.ram_res.start, mds.ram_res.size) == (0, 3 * SZ_256M)
    assert (mds.pmem_res.start, mds.pmem_res.size) == (3 * SZ_256M, 5 * SZ_256M)
    assert mds.next_volatile_bytes == 2 * SZ_256M


def test_range_info_without_partition_alignment_uses_the_fixed_capacities():
    dev = FakeDev(answers={M.CXL_MBOX_OP_IDENTIFY: (0, 0, _identify(total=6, vol=2, pers=4, align=0))})
    mds = fake_mds(dev)
    MB.cxl_dev_state_identify(mds)
    MB.cxl_mem_create_range_info(mds)
    assert (mds.ram_res.size, mds.pmem_res.start, mds.pmem_res.size) == (2 * SZ_256M, 2 * SZ_256M, 4 * SZ_256M)
    assert not any(op == M.CXL_MBOX_OP_GET_PARTITION_INFO for op, _, _ in dev.sent)


def test_range_info_refuses_partitions_beyond_the_device():
    dev = FakeDev(answers={M.CXL_MBOX_OP_IDENTIFY: (0, 0, _identify(total=4)),
                           M.CXL_MBOX_OP_GET_PARTITION_INFO: (0, 0, struct.pack("<QQQQ", 3, 3, 0, 0))})
    mds = fake_mds(dev)
    MB.cxl_dev_state_identify(mds)
    with pytest.raises(KernelError) as e:
        MB.cxl_mem_create_range_info(mds)
    assert e.value.errno == errno.EBUSY


def test_media_not_ready_skips_identify():
    dev = FakeDev()
    mds = fake_mds(dev)
    mds.media_ready = False
    MB.cxl_dev_state_identify(mds)
    MB.cxl_mem_create_range_info(mds)
    assert dev.sent == [] and mds.dpa_res.size == 0


def test_set_timestamp_tolerates_unsupported_only():
    dev = FakeDev(answers={M.CXL_MBOX_OP_SET_TIMESTAMP: (-errno.ENXIO, _rc_index("UNSUPPORTED"), None)})
    MB.cxl_set_timestamp(fake_mds(dev))
    ((op, payload, _),) = dev.sent
    assert op == M.CXL_MBOX_OP_SET_TIMESTAMP and len(payload) == 8
    dev = FakeDev(answers={M.CXL_MBOX_OP_SET_TIMESTAMP: (-errno.ENXIO, _rc_index("INTERNAL"), None)})
    with pytest.raises(KernelError):
        MB.cxl_set_timestamp(fake_mds(dev))


# ------------------------------------------------------------------------------ cxl_test: what probe found

@pytest.fixture(scope="module")
def booted():
    s = System.boot("cxl_test")
    return s, Sysfs(s)


def test_probe_state_from_the_mock(booted):
    s, fs = booted
    md = memdev(s, "cxl_mem.1")
    mds = md.mds
    # mem.c's CEL, as the driver table knows it, plus the always-enabled commands
    ids = U.CXL_MEM_COMMAND_ID
    assert {ids[n] for n in ("IDENTIFY", "GET_SUPPORTED_LOGS", "GET_LOG", "GET_LSA", "SET_LSA",
                             "GET_PARTITION_INFO", "GET_HEALTH_INFO", "GET_FW_INFO")} <= mds.enabled_cmds
    assert mds.poison.enabled_cmds == {M.CXL_POISON_ENABLED_LIST, M.CXL_POISON_ENABLED_INJECT,
                                       M.CXL_POISON_ENABLED_CLEAR}
    assert mds.security.enabled_cmds == {M.CXL_SEC_ENABLED_SANITIZE}
    assert mds.poison.max_errors == 1024
    assert (mds.ram_res.size, mds.pmem_res.start, mds.pmem_res.size) == (SZ_1G, SZ_1G, SZ_1G)
    assert fs.read(f"bus/cxl/devices/{md.name}/label_storage_size") == b"131072\n"
    assert fs.read(f"bus/cxl/devices/{md.name}/firmware_version") == b"mock fw v1 \n"
    assert fs.read(f"bus/cxl/devices/{md.name}/serial") == b"0x1\n"
    rcd = memdev(s, "cxl_rcd.10")
    assert (rcd.mds.partition_align_bytes, rcd.ram_size, rcd.pmem_size, rcd.mds.lsa_size) == (0, 2 * SZ_1G, 0, 0)


def test_memdev_attribute_visibility_follows_the_cel(booted):
    s, fs = booted
    md = memdev(s, "cxl_mem.1")
    assert sorted(fs.listdir(f"bus/cxl/devices/{md.name}/security")) == ["sanitize", "state"]   # no Secure Erase
    assert "trigger_poison_list" in fs.listdir(f"bus/cxl/devices/{md.name}")


# ------------------------------------------------------------------------------ the ioctls

def query(md, um, n: int) -> tuple[int, list]:
    q = um.alloc(struct.pack("<II", n, 0) + bytes(16 * max(n, 0)))
    md.ioctl(U.CXL_MEM_QUERY_COMMANDS, q, um)
    count = struct.unpack("<I", um.read(q, 4))[0]
    infos = [U.CxlCommandInfo.unpack(um.read(q + 8 + 16 * i, 16)) for i in range(n)]
    return count, infos


def test_query_count_then_every_command(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    count, _ = query(md, um, 0)
    assert count == U.CXL_MEM_COMMAND_ID_MAX
    _, infos = query(md, um, count)
    by_id = {i.id: i for i in infos if i.id}
    var = 0xFFFFFFFF
    assert (by_id[1].size_in, by_id[1].size_out) == (0, 0x43)                 # IDENTIFY
    assert (by_id[6].size_in, by_id[6].size_out) == (8, var)                  # GET_LSA
    assert (by_id[10].size_in, by_id[10].size_out) == (var, 0)                # SET_LSA
    assert (by_id[9].size_in, by_id[9].size_out) == (0x0A, 0)                 # SET_PARTITION_INFO
    # no RAW slot without CONFIG_CXL_MEM_RAW_COMMANDS, no deprecated poison / scan media slots
    assert infos[2].id == 0 and all(infos[i].id == 0 for i in (15, 16, 17, 19, 20))
    enabled = {i.id for i in infos if i.flags & U.CXL_MEM_COMMAND_FLAG_ENABLED}
    assert enabled == md.mds.enabled_cmds
    assert U.CXL_MEM_COMMAND_ID_GET_SCAN_MEDIA_CAPS not in enabled           # not in mem.c's CEL
    # cxl_pmem holds SET_LSA and SET_SHUTDOWN_STATE while the memdev's nvdimm is bound
    exclusive = {i.id for i in infos if i.flags & U.CXL_MEM_COMMAND_FLAG_EXCLUSIVE}
    assert exclusive == md.mds.exclusive_cmds == {IDS["SET_LSA"], IDS["SET_SHUTDOWN_STATE"]}


def test_query_stops_at_n_commands(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    q = um.alloc(struct.pack("<II", 3, 0) + bytes(16 * 3))     # room for exactly 3: more would fault
    md.ioctl(U.CXL_MEM_QUERY_COMMANDS, q, um)
    assert [U.CxlCommandInfo.unpack(um.read(q + 8 + 16 * i, 16)).id for i in range(3)] == [0, 1, 0]


def send(md, um, cid: int, payload: bytes = b"", out_size: int = 0, **kw):
    """CXL_MEM_SEND_COMMAND; returns (struct address, output buffer address)."""
    inp = um.alloc(payload) if payload else 0
    out = um.alloc(max(out_size, 1))
    s = U.CxlSendCommand(id=cid, in_size=len(payload), in_payload=inp, out_size=out_size, out_payload=out)
    s = attrs.evolve(s, **kw)
    addr = um.alloc(s.pack())
    assert md.ioctl(U.CXL_MEM_SEND_COMMAND, addr, um) == 0
    return addr, out


def test_send_identify_bytes(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    addr, out = send(md, um, U.CXL_MEM_COMMAND_ID_IDENTIFY, out_size=0x43)
    back = U.CxlSendCommand.unpack(um.read(addr, 48))
    assert (back.retval, back.out_size) == (0, 0x43)
    fw, total, vol, pers, align, *_logs, lsa, mer, inject, _caps, _qos = struct.unpack(
        "<16sQQQQHHHHI3sHBB", um.read(out, 0x43))
    assert fw == b"mock fw v1 ".ljust(16, b"\0") and lsa == 128 << 10
    assert (total, vol, pers, align) == (8, 0, 0, 1)                      # 2 GiB, all partitionable
    assert int.from_bytes(mer, "little") == 1024 and inject == 128


def test_send_partition_fw_health_and_lsa(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    _, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_PARTITION_INFO, out_size=0x20)
    assert struct.unpack("<QQQQ", um.read(out, 0x20)) == (4, 4, 0, 0)
    _, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_FW_INFO, out_size=0x50)
    fw = um.read(out, 0x50)
    assert (fw[0], fw[1] & 7, fw[16:32].rstrip(b"\0")) == (3, 2, b"cxl_test_fw_001")
    _, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_HEALTH_INFO, out_size=0x12)
    assert struct.unpack("<BBBBHIII", um.read(out, 0x12)) == (7, 3, 0x18, 15, 25, 10, 20, 30)
    # LSA: write 16 bytes at 0x100 (while cxl_pmem does not hold SET_LSA), read them back
    data = bytes(range(16))
    held = md.mds.exclusive_cmds & {IDS["SET_LSA"]}
    clear_exclusive_cxl_commands(md.mds, held)
    try:
        send(md, um, U.CXL_MEM_COMMAND_ID_SET_LSA, struct.pack("<II", 0x100, 0) + data)
    finally:
        set_exclusive_cxl_commands(md.mds, held)
    addr, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_LSA, struct.pack("<II", 0x100, 16), out_size=16)
    assert um.read(out, 16) == data and U.CxlSendCommand.unpack(um.read(addr, 48)).out_size == 16
    with pytest.raises(KernelError) as e:        # held again: EBUSY, the LSA keeps its contents
        send(md, um, U.CXL_MEM_COMMAND_ID_SET_LSA, struct.pack("<II", 0x100, 0) + bytes(16))
    assert e.value.errno == errno.EBUSY
    _, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_LSA, struct.pack("<II", 0x100, 16), out_size=16)
    assert um.read(out, 16) == data


def test_send_variable_output_uses_the_payload_size(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    addr, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_SUPPORTED_LOGS, out_size=4096)
    back = U.CxlSendCommand.unpack(um.read(addr, 48))
    entries, log_uuid, size = struct.unpack("<H6x16sI", um.read(out, 28))
    assert (back.out_size, entries, log_uuid) == (28, 1, CEL_UUID)
    addr, out = send(md, um, U.CXL_MEM_COMMAND_ID_GET_LOG, struct.pack("<16sII", CEL_UUID, 0, size),
                     out_size=size)
    cel = um.read(out, size)
    assert struct.unpack_from("<H", cel, 0)[0] == M.CXL_MBOX_OP_GET_SUPPORTED_LOGS


# One row per rule: (id, setup of the command fields, errno).  Rules of cxl_validate_cmd_from_user(),
# cxl_to_mem_cmd[_raw](), cxl_mbox_cmd_ctor() and cxl_payload_from_user_allowed(), in that order.
IDS = U.CXL_MEM_COMMAND_ID
SEND_RULES = [
    ("id-0", dict(id=0), errno.ENOTTY),
    ("id-max", dict(id=U.CXL_MEM_COMMAND_ID_MAX), errno.ENOTTY),
    ("id-huge", dict(id=1 << 31), errno.ENOTTY),
    ("in-size-beyond-mailbox", dict(id=IDS["SET_LSA"], payload=bytes(4097)), errno.EINVAL),
    ("raw-rsvd", dict(id=IDS["RAW"], raw_opcode=0x4000, raw_rsvd=1), errno.EINVAL),
    ("raw-out-beyond-mailbox", dict(id=IDS["RAW"], raw_opcode=0x4000, out_size=4097), errno.EINVAL),
    ("raw-not-configured", dict(id=IDS["RAW"], raw_opcode=0x4000, out_size=0x43), errno.EPERM),
    ("unknown-flag", dict(id=IDS["IDENTIFY"], out_size=0x43, flags=4), errno.EINVAL),
    ("union-rsvd-on-a-command", dict(id=IDS["IDENTIFY"], out_size=0x43, raw_opcode=0x4000), errno.EINVAL),
    ("in-rsvd", dict(id=IDS["IDENTIFY"], out_size=0x43, in_rsvd=1), errno.EINVAL),
    ("out-rsvd", dict(id=IDS["IDENTIFY"], out_size=0x43, out_rsvd=1), errno.EINVAL),
    ("deprecated-id", dict(id=U.CXL_MEM_DEPRECATED_ID_GET_POISON, payload=bytes(16)), errno.ENOTTY),
    ("not-in-cel", dict(id=IDS["GET_SCAN_MEDIA_CAPS"], payload=bytes(16), out_size=4), errno.ENOTTY),
    ("in-size-mismatch", dict(id=IDS["IDENTIFY"], payload=b"\0", out_size=0x43), errno.ENOMEM),
    ("out-too-small", dict(id=IDS["IDENTIFY"], out_size=0x42), errno.ENOMEM),
    ("get-lsa-in-short", dict(id=IDS["GET_LSA"], payload=bytes(4), out_size=16), errno.ENOMEM),
    ("set-partition-immediate", dict(id=IDS["SET_PARTITION_INFO"], payload=struct.pack("<QBx", 2, 1)),
     errno.EBUSY),
    ("bad-in-pointer", dict(id=IDS["GET_LSA"], in_size=8, in_payload=0xDEAD0000, out_size=16), errno.EFAULT),
    ("device-refuses-lsa-beyond", dict(id=IDS["GET_LSA"], payload=struct.pack("<II", 128 << 10, 16),
                                       out_size=16), errno.EINVAL),
    ("bad-out-pointer", dict(id=IDS["GET_LSA"], payload=struct.pack("<II", 0, 16), out_size=16,
                             out_payload=0xBEEF0000), errno.EFAULT),
]


@pytest.mark.parametrize("fields, err", [pytest.param(f, e, id=n) for n, f, e in SEND_RULES])
def test_send_refusals(booted, fields, err):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    mock = md.parent.drvdata
    lsa_before = bytes(mock.lsa)
    um = BufferUserMemory()
    f = dict(fields)
    payload = f.pop("payload", b"")
    out_size = f.get("out_size", 0)
    sc = U.CxlSendCommand(in_size=len(payload), in_payload=um.alloc(payload) if payload else 0,
                          out_payload=um.alloc(max(out_size, 1)), retval=0x5A5A)
    sc = attrs.evolve(sc, **f)
    addr = um.alloc(sc.pack())
    with pytest.raises(KernelError) as e:
        md.ioctl(U.CXL_MEM_SEND_COMMAND, addr, um)
    assert e.value.errno == err
    assert U.CxlSendCommand.unpack(um.read(addr, 48)) == sc        # nothing copied back
    assert bytes(mock.lsa) == lsa_before


def test_exclusive_commands_are_ebusy_and_flagged(booted):
    s, _ = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    set_exclusive_cxl_commands(md.mds, {IDS["GET_HEALTH_INFO"]})
    try:
        _, infos = query(md, um, U.CXL_MEM_COMMAND_ID_MAX)
        assert infos[IDS["GET_HEALTH_INFO"]].flags == U.CXL_MEM_COMMAND_FLAG_ENABLED | U.CXL_MEM_COMMAND_FLAG_EXCLUSIVE
        with pytest.raises(KernelError) as e:
            send(md, um, IDS["GET_HEALTH_INFO"], out_size=0x12)
        assert e.value.errno == errno.EBUSY
    finally:
        clear_exclusive_cxl_commands(md.mds, {IDS["GET_HEALTH_INFO"]})
    send(md, um, IDS["GET_HEALTH_INFO"], out_size=0x12)


def test_clear_log_only_for_the_vendor_debug_log():
    dev = FakeDev(cel=[M.CXL_MBOX_OP_CLEAR_LOG])
    mds = fake_mds(dev)
    MB.cxl_enumerate_cmds(mds)
    s = System.boot("cxl_test")
    md = memdev(s, "cxl_mem.1")
    md.cxlds = mds            # the fake device behind a real memdev's char device
    um = BufferUserMemory()
    with pytest.raises(KernelError) as e:
        send(md, um, IDS["CLEAR_LOG"], CEL_UUID)
    assert e.value.errno == errno.EBUSY
    send(md, um, IDS["CLEAR_LOG"], VENDOR_DEBUG_UUID)
    assert dev.sent[-1] == (M.CXL_MBOX_OP_CLEAR_LOG, VENDOR_DEBUG_UUID, 0)


def test_device_return_code_goes_to_retval_not_errno():
    dev = FakeDev(cel=[M.CXL_MBOX_OP_GET_HEALTH_INFO],
                  answers={M.CXL_MBOX_OP_GET_HEALTH_INFO: (0, _rc_index("INTERNAL"), b"")})
    mds = fake_mds(dev)
    MB.cxl_enumerate_cmds(mds)
    s = System.boot("cxl_test")
    md = memdev(s, "cxl_mem.1")
    md.cxlds = mds
    um = BufferUserMemory()
    addr, _ = send(md, um, IDS["GET_HEALTH_INFO"], out_size=0x12)
    back = U.CxlSendCommand.unpack(um.read(addr, 48))
    assert (back.retval, back.out_size) == (_rc_index("INTERNAL"), 0)


def test_unknown_ioctl_and_dead_memdev():
    s = System.boot("cxl_test")
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    with pytest.raises(KernelError) as e:
        md.ioctl(0xC030CE03, um.alloc(48), um)
    assert e.value.errno == errno.ENOTTY
    fs = Sysfs(s)
    fs.write("bus/platform/drivers/cxl_mock_mem/unbind", b"cxl_mem.1\n")
    assert md.cxlds is None and not md.registered
    with pytest.raises(KernelError) as e:
        md.ioctl(U.CXL_MEM_QUERY_COMMANDS, um.alloc(8), um)
    assert e.value.errno == errno.ENXIO


def test_ioctl_through_the_projection(booted):
    s, fs = booted
    md = memdev(s, "cxl_mem.1")
    um = BufferUserMemory()
    q = um.alloc(8)
    assert f"cxl/{md.name}" in fs.ioctl_nodes()
    assert fs.ioctl(f"cxl/{md.name}", U.CXL_MEM_QUERY_COMMANDS, q, um) == 0
    assert struct.unpack("<I", um.read(q, 4))[0] == U.CXL_MEM_COMMAND_ID_MAX
