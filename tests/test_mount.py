"""Integration: the real cxl tool (Debian's ndctl 76.1) against a real FUSE mount in `cxlsys run`."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cxlsys.testing import cxlsys_run, wait_for_line

ROOT = Path(__file__).resolve().parent.parent
MOUNTINFO = Path("/proc/self/mountinfo")

pytestmark = pytest.mark.mount


def jrun(script, **kw):
    return json.loads(cxlsys_run(script, **kw).stdout)


def test_cxl_list_cxl_test_topology():
    out = jrun("cxl list -b cxl_test -BPEMDTi")
    (bus,) = out
    assert bus["bus"] == "root0" and bus["provider"] == "cxl_test" and bus["nr_dports"] == 4
    hbs = bus["ports:root0"]
    assert len(hbs) == 3
    switches = [s for hb in hbs for s in hb.get(f"ports:{hb['port']}", [])]
    assert len(switches) == 5 and all(s["depth"] == 2 for s in switches)
    eps = [e for s in switches for e in s[f"endpoints:{s['port']}"]] + bus["endpoints:root0"]
    assert len(eps) == 11
    assert sorted(e["memdev"]["serial"] for e in eps) == list(range(11))
    rds = bus["decoders:root0"]
    assert [d["size"] >> 20 for d in rds] == [1024, 2048, 1024, 2048, 1024, 256]
    assert [d.get("volatile_capable", False) for d in rds] == [True, True, False, False, False, True]
    assert [d["nr_targets"] for d in rds] == [1, 2, 1, 2, 1, 1]


def test_cxl_list_memdevs_and_region():
    mems = jrun("cxl list -M")
    assert len(mems) == 11
    assert sum(1 for m in mems if m.get("pmem_size") == 1 << 30) == 10
    (r,) = jrun("cxl list -R")
    assert r["region"] == "region0" and r["size"] == 512 << 20 and r["interleave_ways"] == 2
    assert r["decode_state"] == "commit"


def test_qemu_hdm_db_memdevs():
    mems = jrun("cxl list -M", topology="qemu-hdm-db")
    assert sorted(m["serial"] for m in mems) == [1, 2, 3, 4]
    assert all(m["ram_size"] == 256 << 20 for m in mems)


def test_topology_lifecycle_through_cxl():
    script = r'''
    s=cxl_switch_uport.1
    mems=$(cxl list -M -p $s | jq -r '.[].memdev')
    set -- $mems; m0=$1; m1=$2
    cxl disable-memdev $m0 --force
    echo "A $(cxl list -p $s | jq length)"
    cxl disable-memdev $m1 --force
    echo "B $(cxl list -p $s | jq length)"
    cxl enable-memdev $m0; cxl enable-memdev $m1
    echo "C $(cxl list -p $s | jq length)"
    cxl disable-port $s --force
    echo "D $(cxl list -p $s | jq length)"
    cxl enable-memdev $m0 $m1
    echo "E $(cxl list -p $s | jq length)"
    hb=$(cxl list -b cxl_test -BP | jq -r '.[0]["ports:root0"] | sort_by(.port | .[4:] | tonumber) | .[0].port')
    cxl disable-port $hb -f
    echo "F $(cxl list -M -i -p $hb | jq 'map(select(.state == "disabled")) | length')"
    cxl enable-port $hb -m
    echo "G $(cxl list -M -p $hb | jq length)"
    cxl disable-bus root0 -f
    echo "H $(cxl list -b cxl_test | jq length)"
    '''
    out = cxlsys_run(script).stdout.split("\n")
    got = dict(line.split(" ", 1) for line in out if len(line) > 2 and line[1] == " ")
    assert got == {"A": "1", "B": "0", "C": "1", "D": "0", "E": "1", "F": "4", "G": "4", "H": "0"}


def test_changes_are_visible_immediately():
    """Kernel caching is on: entries that vanish or appear must be seen at once (no stale dentries)."""
    script = r'''
    d=/sys/bus/cxl/devices
    test -L $d/mem3/driver && echo bound
    echo mem3 > /sys/bus/cxl/drivers/cxl_mem/unbind
    test -L $d/mem3/driver || echo unbound
    stat $d/mem3/driver >/dev/null 2>&1 || echo nostat
    echo mem3 > /sys/bus/cxl/drivers/cxl_mem/bind
    test -L $d/mem3/driver && echo rebound
    n=$(cat $d/decoder0.3/create_pmem_region)
    test -e $d/$n || echo absent
    echo $n > $d/decoder0.3/create_pmem_region
    test -d $d/$n && echo present
    cat $d/$n/interleave_ways
    test -e $d/$n/target1 || echo notarget1
    echo 2 > $d/$n/interleave_ways
    cat $d/$n/interleave_ways
    test -e $d/$n/target1 && echo target1
    echo $n > $d/decoder0.3/delete_region
    test -e $d/$n || echo deleted
    cat $d/decoder0.3/create_pmem_region
    '''
    out = cxlsys_run(script).stdout.split()
    assert out[:6] == ["bound", "unbound", "nostat", "rebound", "absent", "present"]
    assert out[6:] == ["0", "notarget1", "2", "target1", "deleted", "region3"]


def test_cached_listings_and_negative_entries_follow_the_model():
    """The kernel keeps listings (FOPEN_CACHE_DIR) and "no such entry" answers (negative dentries,
    fuse_mount/wire.py): each is forgotten the moment the model changes it — also below a
    directory that vanished and came back under the same name."""
    script = r'''
    d=/sys/bus/cxl/devices
    n=$(cat $d/decoder0.3/create_pmem_region)
    ls $d | grep -qx $n || echo unlisted
    test -e $d/$n || echo absent
    echo $n > $d/decoder0.3/create_pmem_region
    ls $d | grep -qx $n && echo listed
    test -e $d/$n/target1 || echo notarget1
    ls $d/$n | grep -qx target1 || echo target1_unlisted
    cat $d/$n/interleave_ways
    echo $n > $d/decoder0.3/delete_region
    ls $d | grep -qx $n || echo unlisted
    cat $d/$n/interleave_ways 2>/dev/null || echo gone
    test -e $d/$n/target1 || echo notarget1
    echo $n > $d/decoder0.3/create_pmem_region
    test -e $d/$n/target1 || echo notarget1
    echo 2 > $d/$n/interleave_ways
    test -e $d/$n/target1 && echo target1
    ls $d/$n | grep -qx target1 && echo target1_listed
    ls $d | grep -qx $n && echo listed
    # a glob reads the directory and stats nothing: only the listing's own invalidation helps
    listed() { local f; for f in "$1"/*; do [ "${f##*/}" = "$2" ] && return 0; done; return 1; }
    listed $d/mem3 driver && echo driver_listed
    echo mem3 > /sys/bus/cxl/drivers/cxl_mem/unbind
    listed $d/mem3 driver || echo driver_unlisted
    echo mem3 > /sys/bus/cxl/drivers/cxl_mem/bind
    listed $d/mem3 driver && echo driver_listed
    '''
    out = cxlsys_run(script).stdout.split()
    assert out == ["unlisted", "absent", "listed", "notarget1", "target1_unlisted", "0", "unlisted", "gone",
                   "notarget1", "notarget1", "target1", "target1_listed", "listed",
                   "driver_listed", "driver_unlisted", "driver_listed"]


def test_shell_sees_kernel_errno():
    script = r'''
    err=$(mktemp)
    try() { if ( echo "$2" > "$1" ) 2>$err; then echo "ok"; else sed 's/.*: //' $err; fi; }
    try /sys/bus/cxl/flush 2
    try /sys/bus/cxl/devices/decoder0.0/size 0
    try /sys/bus/cxl/drivers/cxl_mem/bind mem0
    try /sys/bus/cxl/drivers/cxl_port/bind mem0
    try /sys/bus/cxl/devices/decoder19.0/mode pmem
    try /sys/bus/cxl/devices/decoder0.0/create_ram_region region9
    try /sys/bus/cxl/devices/decoder0.0/delete_region region9
    try /sys/bus/cxl/flush 1
    cat /sys/bus/cxl/devices/region0/size
    try /sys/bus/cxl/devices/mem0/nosuch 1                  # kernfs has no create: EACCES
    last() { "$@" 2>$err || sed 's/.*: //' $err; }
    last rm -f /sys/bus/cxl/devices/mem0/serial              # ... and no unlink, symlink, rename, mknod: EPERM
    last ln -s x /sys/devices/l
    last mv /sys/devices/system /sys/devices/sys2
    last mknod /sys/devices/n p
    '''
    out = cxlsys_run(script).stdout.strip().split("\n")
    assert out == ["Invalid argument", "Permission denied", "Device or resource busy", "No such device",
                   "No such device or address", "Device or resource busy", "No such device", "ok", "0x20000000",
                   "Permission denied"] + ["Operation not permitted"] * 4


def test_shims_modprobe_journalctl_dmesg_udevadm():
    script = r'''
    modprobe -r cxl_test
    echo "unloaded $(ls /sys/bus/cxl/devices | wc -l)"
    modprobe cxl_test interleave_arithmetic=1
    udevadm settle
    echo "xor $(cxl list -D -d root | jq length)"
    modprobe nfit_test
    echo 2 > /sys/bus/cxl/flush || true
    journalctl -r -k --since -60s | head -1 | grep -c 'write .2' || true
    dmesg | grep -c 'cxl_test: topology cxl_test loaded'
    '''
    out = cxlsys_run(script).stdout.split("\n")
    assert "unloaded 0" in out and "xor 3" in out
    assert out[-3:-1] == ["1", "2"]


def test_exit_status_and_host_untouched():
    before = MOUNTINFO.read_text()
    r = cxlsys_run("exit 7", check=False)
    assert r.returncode == 7
    assert MOUNTINFO.read_text() == before
    assert not os.path.exists("/dev/cxl")
    assert not os.path.exists("/sys/bus/cxl/devices/root0")


def test_sigint_tears_down():
    before = MOUNTINFO.read_text()
    p = subprocess.Popen([sys.executable, "-m", "cxlsys", "run", "--", "sh", "-c", "echo ready; exec sleep 60"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(p.stdout, "ready", timeout=60)      # the mount is up and the command runs
    finally:
        p.send_signal(signal.SIGINT)                      # (on a timeout too: tear it down)
    rc = p.wait(timeout=30)
    assert rc == 130
    assert MOUNTINFO.read_text() == before
    left = subprocess.run(["pgrep", "-f", "cxlsys-run"], capture_output=True, text=True, check=False).stdout
    assert left == ""


def test_umockdev_redirect_without_namespace():
    """--via umockdev: no mount namespace, LD_PRELOAD path redirect (the no-root path)."""
    before = MOUNTINFO.read_text()
    r = subprocess.run([sys.executable, "-m", "cxlsys", "run", "--via", "umockdev", "--", "bash", "-c",
                        ("set -e; cxl list -M | jq length; cxl list -R | jq -r '.[0].region';"
                         "echo mem3 > /sys/bus/cxl/drivers/cxl_mem/unbind; cxl list -M | jq length;"
                         "test -e /dev/cxl/mem3 && echo node; modprobe -r cxl_test; ls /sys/bus/cxl/devices | wc -l")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["11", "region0", "10", "node", "0"]
    assert MOUNTINFO.read_text() == before


def test_cxlsys_mount_umount_and_dmesg(tmp_path):
    mp = tmp_path / "sys"
    mp.mkdir()
    cli = [sys.executable, "-m", "cxlsys"]
    subprocess.run(cli + ["mount", "--topology", "qemu-hdm-db", str(mp)], cwd=ROOT, check=True, timeout=60)
    try:
        assert os.path.ismount(mp)
        assert (mp / "bus/cxl/devices/mem0/serial").read_text() == "0x1\n"
        assert os.readlink(mp / "bus/cxl/devices/root0") == "../../../devices/platform/ACPI0017:00/root0"
        with pytest.raises(OSError) as e:
            (mp / "bus/cxl/flush").write_text("2\n")
        assert e.value.errno == 22
        out = subprocess.run(cli + ["dmesg", str(mp)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=False).stdout
        assert "cxl bus flush: expected 1" in out
    finally:
        subprocess.run(cli + ["umount", str(mp)], cwd=ROOT, timeout=60, check=False)
    assert not os.path.ismount(mp)


def test_mount_refuses_a_busy_or_non_empty_directory(tmp_path):
    """`cxlsys mount` never hides files or another mount: a mount point (here /proc) and a
    non-empty directory are refused before any daemon starts."""
    cli = [sys.executable, "-m", "cxlsys"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    for target, why in (("/proc", "already a mount point"), (str(full), "not empty")):
        r = subprocess.run(cli + ["mount", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr
    assert (full / "keep").read_text() == "x" and not os.path.ismount(str(full))


def test_failed_run_leaves_no_work_dir(tmp_path):
    """A `cxlsys run` refused for a bad topology, parameter or profile leaves no work directory."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cli = [sys.executable, "-m", "cxlsys", "run"]
    for bad in (["--topology", "no-such-topology"], ["--kernel", "9.99"], ["--param", "x=y"]):
        r = subprocess.run(cli + bad + ["--", "true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)
    assert not list(tmp_path.glob("cxlsys-*"))


def test_dmesg_on_a_stale_socket(tmp_path):
    """`cxlsys dmesg DIR` whose daemon is gone (a stale control socket): a message, no traceback."""
    import socket as socket_mod

    from cxlsys.cli.main import control_path
    mp = tmp_path / "gone"
    mp.mkdir()
    ctl = control_path(str(mp))
    s = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
    s.bind(ctl)
    s.close()                       # the file stays; nobody listens
    try:
        r = subprocess.run([sys.executable, "-m", "cxlsys", "dmesg", str(mp)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr == f"cxlsys dmesg: removed a stale control socket {ctl} (its daemon is gone)\n"
        assert not os.path.exists(ctl)
    finally:
        if os.path.exists(ctl):
            os.unlink(ctl)
