"""Issue 11 through the real mount: durable state across kill -9, clean lifecycles, root's chmod.

* ``cxlsys run --state FILE``: provision with the real cxl/daxctl, kill -9 the daemon, start again
  with FILE: ``cxl list -BPEMDTR -i``, ``daxctl list -RDM`` and every memory block's state are
  byte-identical.
* SIGKILL of ``cxlsys run`` itself leaves no process (command, its children, daemon), no mount and
  no work directory: its watcher cleans up.
* ``cxlsys mount``: a dead cxlsys mount (kill -9 of its daemon) is detected and taken away before
  mounting (never stacked), its stale control socket removed and reported in one line; paths of the
  host's /proc, /sys and /dev are refused without ``--allow-system-dir``.
* root may chmod/chown attributes as on sysfs; the changed mode rules opens as kernfs does.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cxlsys.testing import RAM_REGION_SETUP, wait_for_line

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "cxlsys"]
MOUNTINFO = Path("/proc/self/mountinfo")

pytestmark = pytest.mark.mount

# a 2-way ram region made with sysfs writes, committed, enabled, its dax device onlined by daxctl,
# plus a pmem region from cxl create-region: what the restart must bring back
PROVISION = RAM_REGION_SETUP + r'''
echo 1 > $d/$r/commit
cxl enable-region $r 2>/dev/null
daxctl online-memory dax${r#region}.0 > /dev/null 2>&1
hb() { cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }
cxl create-region -d decoder0.3 -m $(hb 0 0) $(hb 1 0) > /dev/null 2>&1
'''

SNAPSHOT = r'''
cxl list -BPEMDTR -i > $OUT/cxl.json
daxctl list -RDM > $OUT/daxctl.json
for m in /sys/devices/system/memory/memory*; do echo "${m##*/} $(cat $m/state)"; done > $OUT/blocks
'''


def run(args, script, env=None, timeout=180):
    return subprocess.run(CLI + ["run"] + args + ["--", "sh", "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def wait_exit(pid: int, timeout: float = 30) -> bool:
    """True once ``pid`` has exited (poll(2) on a pidfd: no sleeping); False on a timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Running (an exited process its new parent has not reaped yet, a zombie, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_of_the_daemon_then_restart_restores_identical_state(tmp_path):
    state = tmp_path / "state"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    env = dict(os.environ)
    r = run(["--state", str(state)], PROVISION + SNAPSHOT.replace("$OUT", str(a)) + "kill -9 $CXLSYS_DAEMON_PID",
            env=env)
    assert r.returncode == 0, r.stderr
    blocks = (a / "blocks").read_text()
    assert "online" in blocks and '"decode_state":"commit"' in (a / "cxl.json").read_text().replace(" ", "")
    r = run(["--state", str(state)], SNAPSHOT.replace("$OUT", str(b)), env=env)
    assert r.returncode == 0, r.stderr
    assert "journaled operations replayed" in r.stderr
    for name in ("cxl.json", "daxctl.json", "blocks"):
        assert (b / name).read_text() == (a / name).read_text(), name
    # the same journal on another topology: one line, exit 2, nothing started
    r = run(["--state", str(state), "--topology", "qemu-hdm-db"], "echo started")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "refused" in r.stderr


def test_sigkill_of_cxlsys_run_leaves_nothing_behind(tmp_path):
    before = MOUNTINFO.read_text()
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.Popen(CLI + ["run", "--", "sh", "-c",
                                'echo "$CXLSYS_DAEMON_PID $$"; sleep 1000 & echo "$!"; echo ready; wait'],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        lines = wait_for_line(p.stdout, "ready", timeout=60)
    finally:
        p.kill()                                   # SIGKILL: cxlsys run cannot clean up itself
    p.wait(timeout=30)
    daemon, shell, child = (int(x) for x in " ".join(lines[:2]).split())
    watcher = [int(x) for x in subprocess.run(["pgrep", "-f", "cxlsys run -- sh -c"], capture_output=True,
                                              text=True, check=False).stdout.split()]
    for pid in [daemon, shell, child, *watcher]:
        assert wait_exit(pid), f"pid {pid} still runs"
    assert not any(alive(x) for x in (daemon, shell, child))
    assert not list(tmp_path.glob("cxlsys-*"))
    assert MOUNTINFO.read_text() == before


def test_dead_mount_is_cleaned_not_stacked_and_state_comes_back(tmp_path):
    mp = tmp_path / "sys"
    mp.mkdir()
    state = tmp_path / "state"
    subprocess.run(CLI + ["mount", "--state", str(state), str(mp)], cwd=ROOT, check=True, timeout=60)
    try:
        (mp / "bus/cxl/devices/decoder9.0/mode").write_text("ram\n")
        (mp / "bus/cxl/devices/decoder9.0/dpa_size").write_text("0x10000000\n")
        os.chmod(mp / "bus/cxl/devices/decoder9.0/dpa_size", 0o600)
        pid = int(subprocess.run(["pgrep", "-f", f"cxlsys mount --state {state}"], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid)
        with pytest.raises(OSError) as e:
            (mp / "bus/cxl/devices/decoder9.0/mode").read_text()
        assert e.value.errno == 107                        # ENOTCONN: the dead mount stays
        r = subprocess.run(CLI + ["mount", "--state", str(state), str(mp)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "a dead cxlsys mount was there (its daemon is gone): unmounted it" in r.stderr
        assert "removed a stale control socket" in r.stderr
        assert "state restored: 3 journaled operations replayed" in r.stderr
        mine = [line for line in MOUNTINFO.read_text().splitlines() if f" {mp} " in line]
        assert len(mine) == 1                              # one mount, not two stacked
        assert (mp / "bus/cxl/devices/decoder9.0/dpa_size").read_text() == "0x0000000010000000\n"
        assert os.stat(mp / "bus/cxl/devices/decoder9.0/dpa_size").st_mode & 0o777 == 0o600
    finally:
        subprocess.run(CLI + ["umount", str(mp)], cwd=ROOT, timeout=60, check=False)
    assert not os.path.ismount(mp)


@pytest.mark.parametrize("target", ["/proc/sys", "/sys/kernel", "/dev/shm", "/proc"])
def test_mount_refuses_host_system_directories(target):
    r = subprocess.run(CLI + ["mount", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "already a mount point" in r.stderr or "inside the host's" in r.stderr


def test_mount_refuses_a_mounted_directory(tmp_path):
    mp = tmp_path / "m"
    mp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mp)], check=True)
    try:
        r = subprocess.run(CLI + ["mount", str(mp)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "already a mount point (a tmpfs mount)" in r.stderr
    finally:
        subprocess.run(["umount", str(mp)], check=True)


def test_root_chmod_and_chown_through_the_mount():
    """As sysfs: root changes modes and owners; a file without write bits opens for writing for
    nobody, root included (kernfs_fop_open); a non-root user may not chmod root's files."""
    script = r'''
    f=/sys/bus/cxl/devices/decoder9.0/mode
    chmod 0600 $f && stat -c %a $f
    chown 1000:100 $f && stat -c %u:%g $f
    chmod 0444 $f; (echo ram > $f) 2>/dev/null || echo refused
    chmod 0644 $f; echo ram > $f && cat $f
    setpriv --reuid=65534 --regid=65534 --clear-groups chmod 0666 /sys/bus/cxl/devices/decoder9.1/mode 2>/dev/null \
        || echo not-owner
    stat -c %a /sys/bus/cxl/devices/decoder9.1/mode
    '''
    r = run([], script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["600", "1000:100", "refused", "ram", "not-owner", "644"]
