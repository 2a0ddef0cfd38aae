"""libnvdimm for CXL pmem, in-process: /sys/bus/nd, ndbus0 and nmemN against the golden tree, the
ND_IOCTL_* path of /dev/nmemN and /dev/ndctl0 (sizes, errno, the read-only rule) down to the mock's
GET_LSA/SET_LSA, the nvdimm driver's label probe, and the ``security`` protocol with its keys."""

import errno
import functools
import hashlib
import os
import shutil
import struct
import subprocess
import uuid

import pytest

from cxlsys.cxl import cxlmem as M
from cxlsys.cxl.core.mbox import cxl_internal_send_cmd
from cxlsys.cxl.cxlmem import CXL_SET_PASS
from cxlsys.kernel.uaccess import BufferUserMemory
from cxlsys.nvdimm.core import nd_fletcher64
from cxlsys.nvdimm.keys import MemoryKeyring, ProcessKeyrings
from cxlsys.nvdimm.label import ND_NAMESPACE_INDEX, NSINDEX_ALIGN, NSINDEX_SIGNATURE, SIZEOF_ND_NAMESPACE_INDEX
from cxlsys.nvdimm.nd import NVDIMM_SECURITY_DISABLED, NVDIMM_SECURITY_UNLOCKED
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.uapi import cxl_mem as CU
from cxlsys.uapi import ndctl as U
from tools.golden_diff import GOLDEN, category, compare

ND = "bus/nd/devices"


def nvdimm(system, name="nmem0"):
    return system.buses["nd"].find_device(name)


def mds_of(system, name="nmem0"):
    return nvdimm(system, name).provider_data.cxlmd.mds


def host_of(system, name="nmem0"):
    """The cxl_mem.N platform device behind an nmem (nmem -> pmemN -> memN -> host)."""
    return nvdimm(system, name).provider_data.cxlmd.parent


def ioctl(fs, dev, cmd, payload, n_out=None):
    """One ioctl on /dev/<dev> with ``payload`` as the argument buffer; (rc, buffer after)."""
    um = BufferUserMemory()
    addr = um.alloc(payload)
    rc = fs.ioctl(dev, cmd, addr, um)
    return rc, um.read(addr, n_out if n_out is not None else len(payload))


def get_config_data(fs, dev, offset, length):
    rc, out = ioctl(fs, dev, U.ND_IOCTL_GET_CONFIG_DATA, struct.pack("<III", offset, length, 0xFFFF) + bytes(length))
    assert rc == 0
    assert struct.unpack_from("<I", out, 8)[0] == 0            # status
    return out[12:]


def set_config_data(fs, dev, offset, data):
    rc, out = ioctl(fs, dev, U.ND_IOCTL_SET_CONFIG_DATA, struct.pack("<II", offset, len(data)) + data + b"\xff" * 4)
    assert rc == 0
    assert out[8 + len(data):] == bytes(4)                       # the status after the data
    return out


def device_lsa(system, name, offset, length):
    """The label area as the device holds it (GET_LSA straight to the memdev's mailbox)."""
    cmd = M.CxlMboxCmd(opcode=M.CXL_MBOX_OP_GET_LSA, payload_in=struct.pack("<II", offset, length), size_out=length)
    cxl_internal_send_cmd(mds_of(system, name), cmd)
    return bytes(cmd.payload_out[:length])


def record_mailbox(system, name="nmem0"):
    """Wrap the memdev's transport: the list of commands it sees (opcode, payload_in)."""
    mbox = mds_of(system, name).mbox
    orig = mbox.mbox_send
    seen = []

    def send(cmd):
        seen.append((cmd.opcode, bytes(cmd.payload_in), cmd.size_out))
        return orig(cmd)

    mbox.mbox_send = send
    return seen


# ------------------------------------------------------------------------------------ the tree

@pytest.mark.golden(*(p for p, _ in GOLDEN.values()))
@pytest.mark.parametrize("variant", sorted(GOLDEN))
def test_ndbus_and_nmem_match_golden(variant):
    """Every golden entry below ndbus0 (bus files, nd/ndctl0, each nmem's files, modes, values,
    links, cxl/id and cxl/provider) is the same in the model, and the model has nothing more there."""
    rep = _golden_report(variant)
    nd = [m for m in rep.mismatches if category(m.path) == "nd/libnvdimm"]
    eq, total = rep.figures["nd/libnvdimm"]
    assert total >= 170 and not nd, "\n".join(f"{m.kind}: {m.path} golden={m.golden} ours={m.ours}" for m in nd)


@functools.cache
def _golden_report(variant):
    return compare(*GOLDEN[variant], name=variant)


def test_nd_bus_drivers_and_devices(fs):
    assert sorted(fs.listdir("bus/nd/drivers")) == ["nd_bus", "nd_pmem", "nd_region", "nvdimm"]
    assert "bind" not in fs.listdir("bus/nd/drivers/nd_bus")             # suppress_bind_attrs
    assert {"bind", "unbind"} <= set(fs.listdir("bus/nd/drivers/nvdimm"))
    assert fs.readlink("bus/nd/drivers/nd_pmem/module").endswith("module/nd_pmem")
    assert fs.readlink("bus/nd/drivers/nvdimm/module").endswith("module/libnvdimm")
    devs = fs.listdir(ND)
    pmems = [d for d in fs.listdir("bus/cxl/devices") if d.startswith("pmem")]
    assert sorted(devs) == sorted(["ndbus0"] + [f"nmem{i}" for i in range(len(pmems))])   # kernfs lists by hash
    # each nmem names its pmemN provider, and the pmemN's memdev serial is the nmem's cxl/id
    nmems = [d for d in devs if d != "ndbus0"]
    providers = {fs.read(f"{ND}/{d}/cxl/provider").decode().strip() for d in nmems}
    assert providers == set(pmems)
    for d in nmems:
        p = fs.read(f"{ND}/{d}/cxl/provider").decode().strip()
        mem = fs.realpath(f"bus/cxl/devices/{p}").rsplit("/", 2)[-2]
        assert int(fs.read(f"bus/cxl/devices/{mem}/serial"), 16) == int(fs.read(f"{ND}/{d}/cxl/id"))
        assert fs.readlink(f"{ND}/{d}/driver").endswith("bus/nd/drivers/nvdimm")


def test_char_devices_and_dev_links(fs, system):
    chars = fs.char_devices()
    assert chars["ndctl0"] == (247, 0)
    for i in range(10):
        assert chars[f"nmem{i}"] == (246, i)
        assert fs.read(f"{ND}/nmem{i}/dev") == f"246:{i}\n".encode()
    # what libndctl does: /sys/class/nd/ndctlN/dev, then /sys/dev/char/<maj:min>/device is the bus
    ndctl = "bus/nd/devices/ndbus0/nd/ndctl0"
    assert fs.read(f"{ndctl}/dev") == b"247:0\n"
    assert fs.realpath("dev/char/247:0/device") == fs.realpath(f"{ND}/ndbus0")
    assert fs.readlink(f"{ndctl}/subsystem").endswith("class/nd")
    assert fs.read(f"{ND}/ndbus0/provider") == b"cxl_test\n"


def test_unload_removes_everything_and_reload_reuses_ids(system, fs):
    mds = mds_of(system)
    held = {CU.CXL_MEM_COMMAND_ID_SET_LSA, CU.CXL_MEM_COMMAND_ID_SET_SHUTDOWN_STATE}
    assert held <= mds.exclusive_cmds               # cxl_nvdimm takes them from /dev/cxl/memN
    system.modprobe(["-r", "cxl_test"])
    assert fs.listdir(ND) == []
    assert not [n for n in fs.char_devices() if n.startswith(("nmem", "ndctl"))]
    assert system.buses["nd"].nvdimm_bus_list == []
    assert not mds.exclusive_cmds
    system.modprobe(["cxl_test"])
    assert fs.listdir(ND)[:2] == ["ndbus0", "nmem0"]
    assert fs.char_devices()["ndctl0"] == (247, 0)


PCI_PMEM_TOPOLOGY = """
name = "pci-pmem"
[acpi]
device = "ACPI0017:00"
parent = "platform"
[[host_bridge]]
name = "pci0000:0c"
uid = 12
kind = "pci"
parent = ""
[[root_port]]
name = "0000:0c:00.0"
parent = "pci0000:0c"
port_id = 0
kind = "pci"
[[memdev]]
name = "0000:0d:00.0"
parent = "0000:0c:00.0"
kind = "pci"
pmem = "256M"
lsa = "128K"
serial = 0x2a
[[window]]
size = "1G"
targets = [12]
restrictions = ["type3", "pmem"]
"""


def test_provider_is_cxl_outside_the_mock(tmp_path):
    """Without cxl_test's __wrap_nvdimm_bus_register() the bus is the driver's "CXL"; the nmem's
    dimm id (its key is "nvdimm:<id>") is the serial in hex, cxl/id the serial in decimal."""
    topo = tmp_path / "pci-pmem.toml"
    topo.write_text(PCI_PMEM_TOPOLOGY)
    s = System.boot(str(topo))
    fs = Sysfs(s)
    assert sorted(fs.listdir(ND)) == ["ndbus0", "nmem0"]
    assert fs.read(f"{ND}/ndbus0/provider") == b"CXL\n"
    assert fs.read(f"{ND}/nmem0/cxl/id") == b"42\n"
    assert nvdimm(s).dimm_id == "2a"


# ------------------------------------------------------------------------------------ ioctls

def test_get_config_size(fs, system):
    rc, out = ioctl(fs, "nmem0", U.ND_IOCTL_GET_CONFIG_SIZE, b"\xee" * 12)
    mds = mds_of(system)
    assert rc == 0
    assert struct.unpack("<III", out) == (0, mds.lsa_size, mds.mbox.payload_size - 8)


def test_lsa_round_trip_through_nd_ioctls_into_the_mailbox(fs, system):
    seen = record_mailbox(system, "nmem3")
    data = os.urandom(300)
    set_config_data(fs, "nmem3", 0x1000, data)
    assert seen[-1][0] == M.CXL_MBOX_OP_SET_LSA
    assert seen[-1][1] == struct.pack("<II", 0x1000, 0) + data            # offset, reserved, data[]
    assert device_lsa(system, "nmem3", 0x1000, 300) == data
    assert get_config_data(fs, "nmem3", 0x1000, 300) == data
    assert seen[-2][:2] == (M.CXL_MBOX_OP_GET_LSA, struct.pack("<II", 0x1000, 300))
    # another dimm's label area is another device's
    assert device_lsa(system, "nmem4", 0x1000, 300) == bytes(300)


def test_config_data_envelope_errors(fs, system):
    mds = mds_of(system)
    with pytest.raises(OSError) as e:                    # beyond the mailbox: cxl_internal_send_cmd
        ioctl(fs, "nmem0", U.ND_IOCTL_GET_CONFIG_DATA, struct.pack("<III", 0, mds.mbox.payload_size + 1, 0)
              + bytes(mds.mbox.payload_size + 1))
    assert e.value.errno == errno.E2BIG
    with pytest.raises(OSError) as e:                    # the buffer is over 4 MiB (checked after the
        ioctl(fs, "nmem0", U.ND_IOCTL_GET_CONFIG_DATA,   # first 256 bytes of each envelope are copied)
              struct.pack("<III", 0, 4 << 20, 0) + bytes(512))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:                    # in_length UINT_MAX: "unknown input size"
        ioctl(fs, "nmem0", U.ND_IOCTL_SET_CONFIG_DATA, struct.pack("<II", 0, 0xFFFFFFFF))
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError) as e:                    # past the label area: the device refuses
        ioctl(fs, "nmem0", U.ND_IOCTL_GET_CONFIG_DATA, struct.pack("<III", mds.lsa_size - 4, 8, 0) + bytes(8))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:                    # the user buffer ends before the data does
        ioctl(fs, "nmem0", U.ND_IOCTL_GET_CONFIG_DATA, struct.pack("<III", 0, 64, 0))
    assert e.value.errno == errno.EFAULT


def test_unsupported_commands_and_bus_ioctls(fs):
    for cmd in (U.ND_IOCTL_DIMM_FLAGS, U.ND_IOCTL_VENDOR, U._IOWR(ord("N"), 0, 0), U._IOWR(ord("N"), 11, 0)):
        with pytest.raises(OSError) as e:
            ioctl(fs, "nmem0", cmd, bytes(64))
        assert e.value.errno == errno.ENOTTY
    with pytest.raises(OSError) as e:                    # ND_CMD_CALL: no command family is supported
        ioctl(fs, "nmem0", U.ND_IOCTL_CALL, bytes(U.SIZEOF_ND_CMD_PKG))
    assert e.value.errno == errno.EINVAL
    for cmd in (U.ND_IOCTL_ARS_CAP, U.ND_IOCTL_CLEAR_ERROR):
        with pytest.raises(OSError) as e:                # the CXL bus has no bus commands
            ioctl(fs, "ndctl0", cmd, bytes(64))
        assert e.value.errno == errno.ENOTTY
    # only _IOC_NR counts: a GET_CONFIG_SIZE number with another size and direction still works
    rc, out = ioctl(fs, "nmem0", U.ND_CMD_GET_CONFIG_SIZE | (ord("N") << 8), bytes(12))
    assert rc == 0 and struct.unpack("<III", out)[1] > 0


def test_read_only_file_refuses_write_commands(fs, system):
    dimm = nvdimm(system)
    um = BufferUserMemory()
    before = device_lsa(system, "nmem0", 0, 16)
    addr = um.alloc(struct.pack("<II", 0, 16) + b"x" * 16 + bytes(4))
    with pytest.raises(OSError) as e:
        dimm.ioctl(U.ND_IOCTL_SET_CONFIG_DATA, addr, um, f_flags=os.O_RDONLY)
    assert e.value.errno == errno.EPERM
    assert device_lsa(system, "nmem0", 0, 16) == before
    # GET_CONFIG_SIZE shares its number (4) with the bus's CLEAR_ERROR: refused read-only too
    with pytest.raises(OSError) as e:
        dimm.ioctl(U.ND_IOCTL_GET_CONFIG_SIZE, um.alloc(12), um, f_flags=os.O_RDONLY)
    assert e.value.errno == errno.EPERM
    addr = um.alloc(struct.pack("<III", 0, 16, 0) + bytes(16))
    assert dimm.ioctl(U.ND_IOCTL_GET_CONFIG_DATA, addr, um, f_flags=os.O_RDONLY) == 0


def test_set_config_data_refused_while_dimm_busy(fs, system):
    dimm = nvdimm(system)
    dimm.busy = 1
    with pytest.raises(OSError) as e:
        set_config_data(fs, "nmem0", 0, b"busy")
    assert e.value.errno == errno.EBUSY
    assert device_lsa(system, "nmem0", 0, 4) == bytes(4)
    assert get_config_data(fs, "nmem0", 0, 4) == bytes(4)      # reads still go through
    assert fs.read(f"{ND}/nmem0/state") == b"active\n"


def test_ioctls_work_unbound_and_fail_once_the_dimm_is_gone(fs, system):
    fs.write("bus/nd/drivers/nvdimm/unbind", b"nmem1")
    assert ioctl(fs, "nmem1", U.ND_IOCTL_GET_CONFIG_SIZE, bytes(12))[0] == 0
    dimm = nvdimm(system, "nmem1")
    system.modprobe(["-r", "cxl_test"])
    with pytest.raises(OSError) as e:
        dimm.ioctl(U.ND_IOCTL_GET_CONFIG_SIZE, 0, BufferUserMemory())
    assert e.value.errno == errno.ENXIO


# ------------------------------------------------------------------------------------ labels

def namespace_index(config_size, label_size, i, seq, used=()):
    """One index block as UEFI 2.7 / label.c lay it out (what ``ndctl init-labels`` writes)."""
    tmp = config_size // label_size
    idx = -(-(SIZEOF_ND_NAMESPACE_INDEX + -(-tmp // 8)) // NSINDEX_ALIGN) * NSINDEX_ALIGN
    nslot = (config_size - 2 * idx) // label_size
    size = -(-(SIZEOF_ND_NAMESPACE_INDEX + -(-nslot // 8)) // NSINDEX_ALIGN) * NSINDEX_ALIGN
    free = bytearray(size - SIZEOF_ND_NAMESPACE_INDEX)
    for s in range(nslot):
        if s not in used:
            free[s // 8] |= 1 << (s % 8)
    minor, lsz = (1, 0) if label_size == 128 else (2, label_size >> 8)
    hdr = ND_NAMESPACE_INDEX.pack(NSINDEX_SIGNATURE, bytes(3), lsz, seq, i * size, size, (1 - i) * size, 2 * size,
                                  nslot, 1, minor, 0)
    block = bytearray(hdr + free)
    struct.pack_into("<Q", block, 64, nd_fletcher64(bytes(block)))
    return bytes(block), nslot


def rebind(fs, name):
    fs.write("bus/nd/drivers/nvdimm/unbind", name.encode())
    fs.write("bus/nd/drivers/nvdimm/bind", name.encode())


def slots(fs, name):
    return int(fs.read(f"{ND}/{name}/available_slots"))


def test_available_slots_follow_the_label_index(fs, system):
    size = mds_of(system, "nmem2").lsa_size
    tmp = size // 256
    zero_slots = (size - 2 * (-(-(SIZEOF_ND_NAMESPACE_INDEX + -(-tmp // 8)) // NSINDEX_ALIGN) * NSINDEX_ALIGN)) // 256
    assert slots(fs, "nmem2") == zero_slots - 1                  # no valid index: every 256-byte slot free
    # a v1.1 index pair (128-byte labels): index 1 (seq 2) follows index 0 (seq 1) and is current
    b0, nslot = namespace_index(size, 128, 0, 1, used={0, 1})
    b1, _ = namespace_index(size, 128, 1, 2, used={0, 1, 2, 3, 4})
    set_config_data(fs, "nmem2", 0, b0)
    set_config_data(fs, "nmem2", len(b0), b1)
    assert slots(fs, "nmem2") == zero_slots - 1                  # the driver holds the old copy until rebound
    rebind(fs, "nmem2")
    assert slots(fs, "nmem2") == nslot - 5 - 1
    # a corrupt checksum on index 1 leaves index 0 current
    bad = bytearray(b1)
    bad[70] ^= 0xFF
    set_config_data(fs, "nmem2", len(b0), bytes(bad))
    rebind(fs, "nmem2")
    assert slots(fs, "nmem2") == nslot - 2 - 1
    # zeroed again: no index
    set_config_data(fs, "nmem2", 0, bytes(2 * len(b0)))
    rebind(fs, "nmem2")
    assert slots(fs, "nmem2") == zero_slots - 1


def test_disable_and_enable_dimm(fs, system):
    fs.write("bus/nd/drivers/nvdimm/unbind", b"nmem0")
    assert "driver" not in fs.listdir(f"{ND}/nmem0")
    with pytest.raises(OSError) as e:
        fs.read(f"{ND}/nmem0/available_slots")
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError) as e:                  # util_bind() tries every driver: only nvdimm takes it
        fs.write("bus/nd/drivers/nd_region/bind", b"nmem0")
    assert e.value.errno == errno.ENODEV
    fs.write("bus/nd/drivers/nvdimm/bind", b"nmem0")
    assert fs.readlink(f"{ND}/nmem0/driver").endswith("drivers/nvdimm")
    assert slots(fs, "nmem0") > 0


# ------------------------------------------------------------------------------------ security

@pytest.fixture
def keys(system):
    kr = MemoryKeyring()
    system.buses["nd"].keys = kr
    return kr


def sec(fs, name="nmem0"):
    return fs.read(f"{ND}/{name}/security").decode().strip(), fs.read(f"{ND}/{name}/frozen").decode().strip()


def store(fs, text, name="nmem0"):
    fs.write(f"{ND}/{name}/security", text.encode())


def refused(fs, text, err, name="nmem0"):
    before = sec(fs, name)
    with pytest.raises(OSError) as e:
        store(fs, text, name)
    assert e.value.errno == err, f"{text!r}: {e.value}"
    assert sec(fs, name) == before


def dimm_key(keys, system, name="nmem0", secret=None):
    return keys.add_encrypted(f"nvdimm:{nvdimm(system, name).dimm_id}", secret or os.urandom(32))


def passphrase(keys, serial):
    return hashlib.sha256(keys.keys[serial].payload).digest()


def test_security_file_mode_and_initial_state(fs):
    assert fs.stat(f"{ND}/nmem0/security").mode == 0o644
    assert fs.stat(f"{ND}/nmem0/frozen").mode == 0o444
    assert sec(fs) == ("disabled", "0")


def test_setup_update_remove_passphrase(fs, system, keys):
    seen = record_mailbox(system)
    k1 = dimm_key(keys, system)
    store(fs, f"update 0 {k1}\n")
    assert sec(fs) == ("unlocked", "0")
    op, payload, _ = next(s for s in seen if s[0] == M.CXL_MBOX_OP_SET_PASSPHRASE)
    assert CXL_SET_PASS.unpack(payload) == (1, bytes(32), passphrase(keys, k1))     # user, old zero, new
    assert host_of(system).mock.user_pass == passphrase(keys, k1)
    k2 = keys.add_encrypted("nvdimm-new", os.urandom(32))
    store(fs, f"update {k1} {k2}")
    assert host_of(system).mock.user_pass == passphrase(keys, k2)
    refused(fs, f"disable {k1}", errno.ENXIO)              # the old key: the device says PASSPHRASE
    store(fs, f"disable {k2:#x}")                           # kstrtouint base 0
    assert sec(fs) == ("disabled", "0")


def test_security_store_parsing(fs, system, keys):
    k = dimm_key(keys, system)
    user = keys.add("user", "nvdimm-master", os.urandom(32))
    short = keys.add_encrypted("nvdimm:short", os.urandom(16), datalen=16)
    before = sec(fs)
    assert fs.write("bus/nd/devices/nmem0/security", b"") == 0     # sysfs_kf_write: no store for 0 bytes
    assert sec(fs) == before
    refused(fs, "   \n", errno.EINVAL)
    refused(fs, "unlock 1", errno.EINVAL)                  # not a command of the file
    refused(fs, "update", errno.EINVAL)                    # missing key ids
    refused(fs, "update 0", errno.EINVAL)
    refused(fs, "update 0 x1", errno.EINVAL)
    refused(fs, "update 0 4294967296", errno.ERANGE)
    refused(fs, f"update 0 {user}", errno.ENOKEY)          # not an encrypted key
    refused(fs, f"update 0 {short}", errno.ENOKEY)         # not 32 bytes of passphrase
    refused(fs, "update 0 0", errno.ENOKEY)                # a new key of 0 is no key
    refused(fs, "update 0 123", errno.ENOKEY)              # no such serial
    # %10s: an 11-digit id is cut after 10 digits (1234567890: no such key), the rest ignored
    refused(fs, "update 0 12345678901", errno.ENOKEY)
    refused(fs, "overwrite 0", errno.EOPNOTSUPP)           # CXL has no overwrite op
    refused(fs, "master_erase 0", errno.EOPNOTSUPP)        # no master passphrase is set
    store(fs, f"  update\t0   {k}  ")                       # whitespace is whitespace
    assert sec(fs)[0] == "unlocked"


def test_freeze_blocks_every_change(fs, system, keys):
    k = dimm_key(keys, system)
    store(fs, f"update 0 {k}")
    store(fs, "freeze")
    assert sec(fs) == ("unlocked", "1")
    refused(fs, f"disable {k}", errno.EIO)
    refused(fs, f"update {k} {k}", errno.EIO)
    refused(fs, f"erase {k}", errno.EIO)
    assert host_of(system).mock.user_pass == passphrase(keys, k)


def test_erase(fs, system, keys):
    k = dimm_key(keys, system)
    store(fs, f"update 0 {k}")
    nvdimm(system).busy = 1
    refused(fs, f"erase {k}", errno.EBUSY)
    nvdimm(system).busy = 0
    set_config_data(fs, "nmem0", 0, b"labels")
    store(fs, f"erase {k}")
    assert sec(fs) == ("disabled", "0")
    assert host_of(system).mock.user_pass == bytes(32)


def test_master_passphrase(fs, system, keys):
    m = keys.add_encrypted("nvdimm-master:x", os.urandom(32))
    store(fs, f"master_update 0 {m}")
    assert nvdimm(system).sec_ext_flags == 1 << NVDIMM_SECURITY_UNLOCKED     # the master passphrase's state
    assert sec(fs) == ("disabled", "0")                    # the file shows the user passphrase's state
    store(fs, f"disable_master {m}")
    assert nvdimm(system).sec_ext_flags == 1 << NVDIMM_SECURITY_DISABLED


def test_lock_then_unlock_at_probe_with_the_dimm_key(fs, system, keys):
    k = dimm_key(keys, system)
    store(fs, f"update 0 {k}")
    host = host_of(system).name
    fs.write("bus/nd/drivers/nvdimm/unbind", b"nmem0")
    fs.write(f"bus/platform/devices/{host}/security_lock", b"1")
    assert sec(fs)[0] == "locked"                          # the test build re-reads the device
    fs.write("bus/nd/drivers/nvdimm/bind", b"nmem0")       # probe: request_key("nvdimm:<id>"), unlock
    assert sec(fs)[0] == "unlocked"
    assert fs.read(f"{ND}/nmem0/flags") == b"label \n"


def test_unlock_without_a_key_leaves_it_locked(fs, system, keys):
    k = dimm_key(keys, system)
    store(fs, f"update 0 {k}")
    fs.write("bus/nd/drivers/nvdimm/unbind", b"nmem0")
    fs.write(f"bus/platform/devices/{host_of(system).name}/security_lock", b"1")
    keys.unlink(k)
    fs.write("bus/nd/drivers/nvdimm/bind", b"nmem0")       # the probe still succeeds (dev_dbg only)
    assert fs.readlink(f"{ND}/nmem0/driver").endswith("drivers/nvdimm")
    assert sec(fs)[0] == "locked"


def test_unlocked_dimm_revalidates_its_key_at_probe(fs, system, keys):
    k = dimm_key(keys, system)
    store(fs, f"update 0 {k}")
    seen = record_mailbox(system)
    rebind(fs, "nmem0")
    op, payload, _ = next(s for s in seen if s[0] == M.CXL_MBOX_OP_SET_PASSPHRASE)
    assert CXL_SET_PASS.unpack(payload) == (1, passphrase(keys, k), passphrase(keys, k))
    assert sec(fs)[0] == "unlocked"


# ------------------------------------------------------------------------------------ the real keyring

def _keyctl(*args, stdin=None):
    return subprocess.run(["keyctl", *args], input=stdin, capture_output=True, check=True).stdout.decode().strip()


@functools.cache
def _keyring_skip_reason():
    if shutil.which("keyctl") is None:
        return "keyctl (keyutils) is not installed"
    try:
        master = _keyctl("padd", "user", f"cxlsys-probe-{uuid.uuid4()}", "@u", stdin=os.urandom(32))
        try:
            k = _keyctl("add", "encrypted", f"cxlsys-probe-{uuid.uuid4()}", "new enc32 user:x 32", "@u")
            _keyctl("unlink", k, "@u")
        finally:
            _keyctl("unlink", master, "@u")
    except subprocess.CalledProcessError as e:
        return f"this kernel's keyring cannot make encrypted keys: {e.stderr.decode().strip()}"
    return None


def test_real_keyring_passphrase_is_the_blob_digest(fs, system):
    reason = _keyring_skip_reason()
    if reason:
        pytest.skip(reason)
    master_desc = f"cxlsys-test-master-{uuid.uuid4()}"
    master = _keyctl("padd", "user", master_desc, "@u", stdin=os.urandom(32))
    key = None
    try:
        key = _keyctl("add", "encrypted", f"cxlsys-test-{uuid.uuid4()}", f"new enc32 user:{master_desc} 32", "@u")
        system.buses["nd"].keys = ProcessKeyrings()
        store(fs, f"update 0 {key}")
        assert sec(fs)[0] == "unlocked"
        blob = subprocess.run(["keyctl", "pipe", key], capture_output=True, check=True).stdout
        assert host_of(system).mock.user_pass == hashlib.sha256(blob).digest()
        store(fs, f"disable {key}")
        assert sec(fs)[0] == "disabled"
        refused(fs, f"update 0 {master}", errno.ENOKEY)    # a user key is not a passphrase key
    finally:
        if key:
            _keyctl("unlink", key, "@u")
        _keyctl("unlink", master, "@u")
