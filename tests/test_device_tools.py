"""The device side as a user drives it: the real cxl/ndctl (Debian 76.1) and raw ioctls on
/dev/cxl/memN inside `cxlsys run`, through the mount and the seccomp interposer — what ndctl's
cxl-labels, cxl-events, cxl-poison, cxl-sanitize, cxl-update-firmware and cxl-security scripts
check, expressed as this project's own tests.  In-process twins: tests/test_mbox.py,
tests/test_memdev_ioctl.py, tests/test_mock_mailbox.py, tests/test_nvdimm.py, tests/test_tracefs.py."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

from cxlsys.errors import KernelError
from cxlsys.kernel.uaccess import BufferUserMemory
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.testing import cxlsys_run
from cxlsys.uapi import cxl_mem as U

pytestmark = pytest.mark.mount

# cxl_test's mock device values (tools/testing/cxl/test/mem.c: mock_health_info, mock_partition_info)
CXL_TEST_HEALTH = {"life_used_percent": 15, "temperature": 25, "dirty_shutdowns": 10,
                   "volatile_errors": 20, "pmem_errors": 30}


def memdev_json(out: str, memdev: str) -> dict:
    """The memdev object wherever ``cxl list`` nested it (``-vvv`` prints the whole topology)."""
    stack = [json.loads(out)]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if o.get("memdev") == memdev and "ram_size" in o:
                return o
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    raise AssertionError(f"{memdev} not in cxl list output")


def test_list_vvv_health_and_partition():
    r = cxlsys_run("cxl list -m mem0 -vvv")
    m = memdev_json(r.stdout, "mem0")
    for k, v in CXL_TEST_HEALTH.items():
        assert m["health"][k] == v, k
    pi = m["partition_info"]
    assert pi["active_volatile_size"] == m["ram_size"] and pi["active_persistent_size"] == m["pmem_size"]
    assert pi["total_size"] == m["ram_size"] + m["pmem_size"]
    assert pi["partition_alignment_size"] == 256 << 20
    assert "libcxl" not in r.stderr          # no failed ioctl


# a client of the uAPI written from include/uapi/linux/cxl_mem.h, run inside `cxlsys run`
IOCTL_CLIENT = textwrap.dedent(r"""
    import ctypes, errno, fcntl, json, os, struct, sys
    QUERY = (2 << 30) | (8 << 16) | (0xCE << 8) | 1
    SEND = (3 << 30) | (48 << 16) | (0xCE << 8) | 2
    fd = os.open(sys.argv[1], os.O_RDWR)
    out = {}
    hdr = bytearray(struct.pack("<II", 0, 0))
    fcntl.ioctl(fd, QUERY, hdr, True)
    n = struct.unpack("<II", hdr)[0]
    buf = ctypes.create_string_buffer(struct.pack("<II", n, 0) + bytes(16 * n))
    fcntl.ioctl(fd, QUERY, buf, True)
    out["query"] = buf.raw[:8 + 16 * n].hex()
    for name, cid, payload_in, size_out in json.loads(sys.argv[2]):
        pin = ctypes.create_string_buffer(bytes.fromhex(payload_in), max(1, len(payload_in) // 2))
        pout = ctypes.create_string_buffer(size_out or 1)
        cmd = bytearray(struct.pack("<IIHHIIIQIIQ", cid, 0, 0, 0, 0, len(payload_in) // 2, 0,
                                    ctypes.addressof(pin), size_out, 0, ctypes.addressof(pout)))
        try:
            fcntl.ioctl(fd, SEND, cmd, True)
            f = struct.unpack("<IIHHIIIQIIQ", cmd)
            out[name] = {"retval": f[4], "size": f[8], "out": pout.raw[:f[8]].hex()}
        except OSError as e:
            out[name] = {"errno": errno.errorcode[e.errno]}
    print(json.dumps(out))
""")

COMMANDS = [
    ("identify", U.CXL_MEM_COMMAND_ID_IDENTIFY, "", 0x43),
    ("health", U.CXL_MEM_COMMAND_ID_GET_HEALTH_INFO, "", 0x12),
    ("partition", U.CXL_MEM_COMMAND_ID_GET_PARTITION_INFO, "", 0x20),
    ("fw_info", U.CXL_MEM_COMMAND_ID_GET_FW_INFO, "", 0x50),
    ("lsa", U.CXL_MEM_COMMAND_ID_GET_LSA, (0).to_bytes(4, "little").hex() + (64).to_bytes(4, "little").hex(), 64),
    ("supported_logs", U.CXL_MEM_COMMAND_ID_GET_SUPPORTED_LOGS, "", 0x1C),
    # the whole CEL (56 bytes, as GET_SUPPORTED_LOGS says): struct cxl_mbox_get_log {uuid, offset, length}
    ("cel", U.CXL_MEM_COMMAND_ID_GET_LOG,
     (bytes.fromhex("0da9c0b5bf414b788f7996b1623b3f17") + (0).to_bytes(4, "little") + (56).to_bytes(4, "little")).hex(),
     56),
    ("cel_past_end", U.CXL_MEM_COMMAND_ID_GET_LOG,          # the mock refuses a read past the log's end
     (bytes.fromhex("0da9c0b5bf414b788f7996b1623b3f17") + (8).to_bytes(4, "little") + (56).to_bytes(4, "little")).hex(),
     56),
    # SET_LSA is the kernel's own while the nvdimm is bound (exclusive: EBUSY)
    ("set_lsa", U.CXL_MEM_COMMAND_ID_SET_LSA, "00" * 8 + "ab" * 16, 0),
    # SET_PARTITION_INFO with the Immediate flag: refused from user space
    ("set_partition_now", U.CXL_MEM_COMMAND_ID_SET_PARTITION_INFO, "00" * 8 + "01" + "00", 0),
    ("short_out", U.CXL_MEM_COMMAND_ID_IDENTIFY, "", 8),          # out.size too small for the command
    ("raw", U.CXL_MEM_COMMAND_ID_RAW, "", 0),                      # raw commands are off in 6.12's config
    ("bad_id", U.CXL_MEM_COMMAND_ID_MAX, "", 0),
]


def in_process(commands) -> dict:
    """The same calls, in-process: the memdev's ioctl with a BufferUserMemory."""
    s = System.boot("cxl_test")
    md = next(d for d in s.cxl_bus.devices if d.name == "mem0")
    um = BufferUserMemory()
    out: dict = {}
    hdr = um.alloc(U.CXL_MEM_QUERY_COMMANDS_HDR.pack(0, 0))
    n = U.CXL_MEM_QUERY_COMMANDS_HDR.unpack(um.read(hdr, 8))[0] if md.ioctl(U.CXL_MEM_QUERY_COMMANDS, hdr, um) == 0 \
        else 0
    q = um.alloc(U.CXL_MEM_QUERY_COMMANDS_HDR.pack(n, 0) + bytes(16 * n))
    md.ioctl(U.CXL_MEM_QUERY_COMMANDS, q, um)
    out["query"] = um.read(q, 8 + 16 * n).hex()
    for name, cid, payload_in, size_out in commands:
        pin = um.alloc(bytes.fromhex(payload_in) or b"\0")
        pout = um.alloc(size_out or 1)
        c = um.alloc(U.CxlSendCommand(id=cid, in_size=len(payload_in) // 2, in_payload=pin, out_size=size_out,
                                      out_payload=pout).pack())
        try:
            md.ioctl(U.CXL_MEM_SEND_COMMAND, c, um)
        except KernelError as e:
            out[name] = {"errno": errno.errorcode[e.errno]}
            continue
        f = U.CxlSendCommand.unpack(um.read(c, U.CXL_SEND_COMMAND.size))
        data = um.read(pout, f.out_size).hex() if f.out_size else ""
        out[name] = {"retval": f.retval, "size": f.out_size, "out": data}
    return out


def test_ioctl_path_equals_in_process(tmp_path):
    """Every byte a raw client gets through /dev/cxl/mem0 (interposer -> daemon -> model) equals
    what the model's ioctl gives in-process, refusals (errno) included."""
    client = tmp_path / "client.py"
    client.write_text(IOCTL_CLIENT)
    r = cxlsys_run(f"{sys.executable} {client} /dev/cxl/mem0 '{json.dumps(COMMANDS)}'")
    served = json.loads(r.stdout)
    assert served == in_process(COMMANDS)
    assert served["short_out"] == {"errno": "ENOMEM"} and served["raw"] == {"errno": "EPERM"}
    assert served["bad_id"] == {"errno": "ENOTTY"}
    assert served["identify"]["retval"] == 0 and served["lsa"]["out"] == "00" * 64
    assert served["set_lsa"] == {"errno": "EBUSY"} and "errno" in served["set_partition_now"]
    assert served["cel"]["size"] == 56 and served["supported_logs"]["out"].endswith("38000000")
    assert "errno" in served["cel_past_end"]


def test_node_checks_as_libcxl_does():
    """/dev/cxl/memN reads as the memdev's char device by fstat and by stat (libcxl takes the
    devt from stat(2) and checks it again on the opened fd)."""
    r = cxlsys_run("stat -L -c '%F %t:%T' /dev/cxl/mem0; cat /sys/bus/cxl/devices/mem0/dev; "
                   "python3 -c \"import os; st=os.fstat(os.open('/dev/cxl/mem0', os.O_RDWR)); "
                   "print(os.major(st.st_rdev), os.minor(st.st_rdev))\"")
    kind, dev, fst = r.stdout.splitlines()
    major, minor = (int(x) for x in dev.split(":"))
    assert kind == f"character special file {major:x}:{minor:x}"
    assert fst == f"{major} {minor}"


def test_cxl_labels_round_trip(tmp_path):
    """ndctl write-labels/read-labels/zero-labels on an nmem round-trip through the memdev's LSA
    (SET_LSA/GET_LSA), and cxl read-labels of that memdev sees the same bytes; cxl write-labels is
    refused while the nvdimm bridge is active (as cxl 76.1 does)."""
    blob = tmp_path / "lsa.bin"
    r = cxlsys_run(f"""
        cd {tmp_path}
        nmem=$(ndctl list -b cxl_test -Di | jq -r '.[0].dev')
        pmem=$(cat /sys/bus/nd/devices/$nmem/cxl/provider)
        mem=$(basename $(dirname $(readlink -f /sys/bus/cxl/devices/$pmem)))
        ndctl read-labels -o before.bin $nmem
        size=$(stat -c %s before.bin)
        head -c $size /dev/urandom > {blob}
        ndctl write-labels -i {blob} $nmem
        ndctl read-labels -o after.bin $nmem
        cmp {blob} after.bin && echo nd-roundtrip-ok
        cxl read-labels -o cxl.bin $mem
        cmp {blob} cxl.bin && echo cxl-sees-it
        cxl write-labels -i {blob} $mem 2>&1 | grep -q "abort label write" && echo cxl-write-refused
        ndctl zero-labels $nmem
        ndctl read-labels -o zero.bin $nmem
        head -c $size /dev/zero | cmp - zero.bin && echo nd-zero-ok
        echo size=$size
    """)
    for what in ("nd-roundtrip-ok", "cxl-sees-it", "cxl-write-refused", "nd-zero-ok"):
        assert what in r.stdout, (what, r.stdout, r.stderr)
    assert "size=131072" in r.stdout           # cxl_test's LSA_SIZE (128 KiB)


def test_set_partition_applies_at_reset():
    """cxl set-partition stages the split (GET_PARTITION_INFO's next_*); the memdev keeps its sizes
    until the device is reset — here, a re-probe of the mock device."""
    r = cxlsys_run("""
        sel='..|objects|select(.memdev? == "mem0" and .ram_size?)'
        host=$(cxl list -m mem0 | jq -r '.[0].host')
        cxl set-partition mem0 -t pmem -s 512M >/dev/null 2>&1
        cxl list -m mem0 -vvv | jq -c "$sel | {ram_size, pmem_size, next: .partition_info.next_persistent_size}"
        echo $host > /sys/bus/platform/drivers/cxl_mock_mem/unbind
        echo $host > /sys/bus/platform/drivers/cxl_mock_mem/bind
        udevadm settle
        cxl list -m mem0 -vvv | jq -c "$sel | {ram_size, pmem_size}"
    """)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines[0] == {"ram_size": 1 << 30, "pmem_size": 1 << 30, "next": 512 << 20}
    assert lines[1] == {"ram_size": (2 << 30) - (512 << 20), "pmem_size": 512 << 20}


def test_events_fill_trace():
    """event_trigger drains the mock's logs into the cxl trace events (cxl-events.sh's counts); the
    general media and DRAM records of a memdev in the auto region name that region."""
    r = cxlsys_run("""
        echo > /sys/kernel/tracing/trace
        echo 1 > /sys/kernel/tracing/events/cxl/enable
        echo 1 > /sys/kernel/tracing/tracing_on
        echo 1 > /sys/bus/platform/devices/cxl_mem.0/event_trigger
        echo 0 > /sys/kernel/tracing/tracing_on
        t=$(cat /sys/kernel/tracing/trace)
        for k in cxl_overflow log=Fatal log=Failure log=Informational; do echo "$k $(grep -c $k <<< "$t")"; done
        region=$(cxl list -R | jq -r '.[0].region')
        memdev=$(cxl list -r $region --targets | jq -r '.[0].mappings[0].memdev')
        host=$(cxl list -m $memdev | jq -r '.[0].host')
        echo > /sys/kernel/tracing/trace
        echo 1 > /sys/kernel/tracing/tracing_on
        echo 1 > /sys/bus/platform/devices/$host/event_trigger
        echo 0 > /sys/kernel/tracing/tracing_on
        echo "gm_region $(grep -c "cxl_general_media.*$region" /sys/kernel/tracing/trace)"
        echo "dram_region $(grep -c "cxl_dram.*$region" /sys/kernel/tracing/trace)"
    """)
    counts = dict(line.split() for line in r.stdout.splitlines())
    assert {k: counts[k] for k in ("cxl_overflow", "log=Fatal", "log=Failure", "log=Informational")} == \
        {"cxl_overflow": "1", "log=Fatal": "2", "log=Failure": "16", "log=Informational": "3"}
    assert int(counts["gm_region"]) > 0 and int(counts["dram_region"]) > 0


def test_poison_inject_list_clear():
    """debugfs inject_poison/clear_poison and trigger_poison_list -> cxl_poison trace records."""
    r = cxlsys_run("""
        m=$(cxl list -b cxl_test -M | jq -r '[.[] | select(.pmem_size != null and .ram_size != null)][0].memdev')
        echo 1 > /sys/kernel/tracing/events/cxl/cxl_poison/enable
        for a in 0x40000000 0x40001000 0x600 0x0; do echo $a > /sys/kernel/debug/cxl/$m/inject_poison; done
        echo > /sys/kernel/tracing/trace
        echo 1 > /sys/bus/cxl/devices/$m/trigger_poison_list
        echo "listed $(grep -c 'cxl_poison:.*trace_type=List' /sys/kernel/tracing/trace)"
        for a in 0x40000000 0x40001000 0x600 0x0; do echo $a > /sys/kernel/debug/cxl/$m/clear_poison; done
        echo > /sys/kernel/tracing/trace
        echo 1 > /sys/bus/cxl/devices/$m/trigger_poison_list
        echo "after $(grep -c 'cxl_poison:.*trace_type=List' /sys/kernel/tracing/trace)"
        echo 0x1 > /sys/kernel/debug/cxl/$m/inject_poison 2>/dev/null || echo "unaligned refused"
        region=$(cxl list -R | jq -r '.[0].region')
        rm=$(cxl list -r $region --targets | jq -r '.[0].mappings[0].memdev')
        echo 0x0 > /sys/kernel/debug/cxl/$rm/inject_poison
        echo > /sys/kernel/tracing/trace
        echo 1 > /sys/bus/cxl/devices/$rm/trigger_poison_list
        echo "in_region $(grep -c "cxl_poison:.*region=$region " /sys/kernel/tracing/trace)"
        echo 0x0 > /sys/kernel/debug/cxl/$rm/clear_poison
    """)
    assert "listed 4" in r.stdout and "after 0" in r.stdout and "unaligned refused" in r.stdout
    assert "in_region 1" in r.stdout


def test_sanitize_and_wait():
    """security/sanitize on a memdev outside any region runs in the background for
    sanitize_timeout ms; cxl wait-sanitize poll(2)s security/state and returns once it is done;
    a region member is refused (EBUSY)."""
    r = cxlsys_run("""
        active=$(cxl list -b cxl_test -RT | jq -r '.[].mappings[].memdev' | head -1)
        echo 1 > /sys/bus/cxl/devices/$active/security/sanitize 2>/dev/null || echo "member refused"
        members=$(cxl list -b cxl_test -RT | jq -r '.[].mappings[].memdev')
        read m host < <(cxl list -b cxl_test -M | jq -r '.[] | select(.host | startswith("cxl_mem.")) |
                        "\\(.memdev) \\(.host)"' | grep -v -w -F "$members" | head -1)
        echo 3000 > /sys/bus/platform/devices/$host/sanitize_timeout
        echo 1 > /sys/bus/cxl/devices/$m/security/sanitize
        echo "during $(cat /sys/bus/cxl/devices/$m/security/state)"
        python3 - /sys/bus/cxl/devices/$m/security/state <<'PY'
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)     # what cxl wait-sanitize (v81 libcxl) does: read, poll, read
before = os.pread(fd, 16, 0).decode().strip()
po = select.poll()
po.register(fd, select.POLLPRI | select.POLLERR)
ev = po.poll(30000)
print("woken", bool(ev and ev[0][1] & select.POLLPRI), before, "->", os.pread(fd, 16, 0).decode().strip())
PY
        echo "after $(cat /sys/bus/cxl/devices/$m/security/state)"
    """, timeout=120)
    assert "woken True sanitize -> disabled" in r.stdout
    assert "member refused" in r.stdout
    assert "during sanitize" in r.stdout and "after disabled" in r.stdout


def test_firmware_upload_keeps_the_image(tmp_path):
    """The firmware upload class device (what cxl update-firmware writes): the image reaches the
    device through TRANSFER_FW; fw_buf_checksum is its SHA-256; GET_FW_INFO shows it staged in the
    next slot (cxl-update-firmware.sh's checks)."""
    img = tmp_path / "fw.bin"
    img.write_bytes(hashlib.sha256(b"seed").digest() * (1 << 15))       # 1 MiB
    client = tmp_path / "client.py"
    client.write_text(IOCTL_CLIENT)
    r = cxlsys_run(f"""
        fw=/sys/bus/cxl/devices/mem0/firmware/mem0
        echo 1 > $fw/loading
        cat {img} > $fw/data
        echo 0 > $fw/loading
        while [ "$(cat $fw/status)" != idle ]; do :; done     # a background transfer: read until done
        echo "error=[$(cat $fw/error)]"
        host=$(cxl list -m mem0 | jq -r '.[0].host')
        cat /sys/bus/platform/devices/$host/fw_buf_checksum
        {sys.executable} {client} /dev/cxl/mem0 '{json.dumps([c for c in COMMANDS if c[0] == "fw_info"])}'
    """, timeout=120)
    assert "error=[]" in r.stdout
    assert hashlib.sha256(img.read_bytes()).hexdigest() in r.stdout
    info = bytes.fromhex(json.loads(r.stdout.splitlines()[-1])["fw_info"]["out"])
    assert info[1] & 0x7 == 2 and (info[1] >> 3) & 0x7 == 3     # cxl_test starts at slot 2; staged in 3


def _encrypted_keys_work() -> bool:
    try:
        r = subprocess.run(["bash", "-c", "keyctl new_session >/dev/null && "
                            "keyctl add user t-m 0123456789abcdef0123456789abcdef @s >/dev/null && "
                            "keyctl add encrypted t-e 'new enc32 user:t-m 32' @s"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _encrypted_keys_work(), reason="keyctl or encrypted keys unavailable here")
def test_nvdimm_security_with_keyring():
    """ndctl setup-passphrase / update / remove / sanitize-dimm (erase) / lock + enable-dimm (unlock
    with the key from the keyring) / freeze on a CXL nmem (what ndctl's security.sh does for cxl)."""
    r = cxlsys_run("""
        keyctl new_session >/dev/null; keyctl link @u @s
        mkdir -p /etc/ndctl/keys
        master=cxlsys-test-master
        dd if=/dev/urandom bs=1 count=32 2>/dev/null | keyctl padd user $master @u >/dev/null
        keyctl pipe "$(keyctl search @u user $master)" > /etc/ndctl/keys/$master.blob
        dev=$(ndctl list -b cxl_test -D | jq -r '.[0].dev')
        id=$(ndctl list -b cxl_test -D | jq -r '.[0].id')
        st() { ndctl list -i -b cxl_test -d $dev | jq -r ".[].dimms[0].$1"; }
        ndctl setup-passphrase $dev -k user:$master >/dev/null; echo "setup $(st security)"
        ndctl update-passphrase $dev >/dev/null; echo "update $(st security)"
        ndctl remove-passphrase $dev >/dev/null; echo "remove $(st security)"
        ndctl setup-passphrase $dev -k user:$master >/dev/null
        ndctl sanitize-dimm -c $dev >/dev/null; echo "erase $(st security)"
        ndctl setup-passphrase $dev -k user:$master >/dev/null
        ndctl disable-dimm $dev >/dev/null
        pmem=$(cat /sys/bus/nd/devices/$dev/cxl/provider)
        echo 1 > $(dirname $(dirname $(readlink -f /sys/bus/cxl/devices/$pmem)))/security_lock
        echo "lock $(st security)"
        ndctl enable-dimm $dev >/dev/null; echo "unlock $(st security)"
        ndctl remove-passphrase $dev >/dev/null
        ndctl setup-passphrase $dev -k user:$master >/dev/null
        ndctl freeze-security $dev >/dev/null; echo "frozen $(st security_frozen)"
        ndctl remove-passphrase $dev >/dev/null 2>&1 || echo "remove refused when frozen"
        keyctl unlink "$(keyctl search @u encrypted nvdimm:$id)" >/dev/null 2>&1 || true
        keyctl unlink "$(keyctl search @u user $master)" >/dev/null 2>&1 || true
        rm -f /etc/ndctl/keys/$master.blob /etc/ndctl/keys/nvdimm_${id}_$(hostname).blob
    """, timeout=120)
    assert "setup unlocked" in r.stdout and "update unlocked" in r.stdout and "remove disabled" in r.stdout
    assert "erase disabled" in r.stdout and "lock locked" in r.stdout and "unlock unlocked" in r.stdout
    assert "frozen true" in r.stdout and "remove refused when frozen" in r.stdout


def test_in_process_projection_has_the_device_side():
    """The same tree in-process: nodes that take ioctls, tracefs, cxl debugfs, the nd bus."""
    fs = Sysfs(System.boot("cxl_test"))
    nodes = fs.ioctl_nodes()
    assert {"cxl/mem0", "ndctl0", "nmem0"} <= nodes and not any(n.startswith("dax") for n in nodes)
    assert "cxl" in fs.listdir("kernel/tracing/events") and "inject_poison" in fs.listdir("kernel/debug/cxl/mem0")
    assert fs.listdir("class/nd") == ["ndctl0"]


def test_umockdev_path_serves_ioctls_too(tmp_path):
    """`cxlsys run --via umockdev` (the no-root path): umockdev's preload redirects /sys, the
    interposer opens, stats and serves the nodes that take ioctls (umockdev would claim them)."""
    client = tmp_path / "client.py"
    client.write_text(IOCTL_CLIENT)
    cmds = [c for c in COMMANDS if c[0] in ("identify", "health", "lsa", "bad_id")]
    script = (f"cxl list -m mem0 -vvv | grep -c life_used_percent; "
              f"{sys.executable} {client} /dev/cxl/mem0 '{json.dumps(cmds)}'; "
              f"ndctl read-labels -o {tmp_path}/nd.bin nmem0 && stat -c %s {tmp_path}/nd.bin")
    r = subprocess.run([sys.executable, "-m", "cxlsys", "run", "--via", "umockdev", "--", "bash", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    count, served, size = r.stdout.split("\n")[:3]
    assert count == "1" and size == "131072"
    expect = in_process(cmds)
    expect.pop("query")
    got = json.loads(served)
    got.pop("query")
    assert got == expect
