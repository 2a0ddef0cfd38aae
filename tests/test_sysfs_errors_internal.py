"""An unexpected exception in the model is an internal bug: the caller gets EIO (never a made-up
kernel refusal), the kernel log gets a WARN with the traceback, and the projection keeps serving."""

import errno

import pytest

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.errors import KernelError
from cxlsys.sysfs import Sysfs
from cxlsys.system import System


def test_show_and_store_bugs_are_eio_with_a_warn(monkeypatch):
    s = System.boot("cxl_test")
    fs = Sysfs(s)

    def broken(self):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(CxlMemdev, "serial_show", broken)
    with pytest.raises(KernelError) as e:
        fs.read("bus/cxl/devices/mem0/serial")
    assert e.value.errno == errno.EIO
    log = "\n".join(s.klog.lines())
    assert "WARNING: cxlsys internal error in read of /sys/bus/cxl/devices/mem0/serial" in log
    assert "ZeroDivisionError: injected" in log and "Call Trace:" in log

    def broken_store(self, buf):
        raise KeyError("injected")

    monkeypatch.setattr(CxlMemdev, "security_sanitize_store", broken_store)
    with pytest.raises(KernelError) as e:
        fs.write("bus/cxl/devices/mem0/security/sanitize", b"1")
    assert e.value.errno == errno.EIO
    assert fs.read("bus/cxl/devices/mem0/numa_node") == b"0\n"      # still serving


def test_a_bug_in_a_fuse_handler_is_eio_with_a_warn(monkeypatch):
    """mfusepy would answer EINVAL; the adapter's handlers answer EIO and WARN in the kernel log."""
    mfusepy = pytest.importorskip("mfusepy")
    from fuse_mount.ops import SysfsOps

    s = System.boot("cxl_test")
    ops = SysfsOps(Sysfs(s))
    real = SysfsOps._stat

    def broken(self, e, path):
        if path.endswith("/serial"):
            raise AttributeError("injected")
        return real(self, e, path)

    monkeypatch.setattr(SysfsOps, "_stat", broken)
    with pytest.raises(mfusepy.FuseOSError) as e:
        ops.getattr("/bus/cxl/devices/mem0/serial")
    assert e.value.errno == errno.EIO
    log = "\n".join(s.klog.lines())
    assert "WARNING: cxlsys internal error in FUSE getattr of /sys/bus/cxl/devices/mem0/serial" in log
    assert "AttributeError: injected" in log
    assert ops.getattr("/bus/cxl/devices/mem0/numa_node")["st_mode"] & 0o777 == 0o444     # still serving
    with pytest.raises(mfusepy.FuseOSError) as e:                                        # refusals stay
        ops.getattr("/bus/cxl/devices/mem0/nothing")
    assert e.value.errno == errno.ENOENT


INJECT = """
import sys
from cxlsys.cxl.core.memdev import CxlMemdev
CxlMemdev.serial_show = lambda self: 1 // 0          # the injected bug
from cxlsys.cli.main import main
sys.exit(main(["mount", sys.argv[1]]))
"""


@pytest.mark.mount
def test_a_bug_through_the_mount_is_eio_and_the_daemon_keeps_serving(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    mp = tmp_path / "sys"
    mp.mkdir()
    subprocess.run([sys.executable, "-c", INJECT, str(mp)], cwd=root, check=True, timeout=60)
    try:
        with pytest.raises(OSError) as e:
            (mp / "bus/cxl/devices/mem0/serial").read_text()
        assert e.value.errno == errno.EIO
        assert (mp / "bus/cxl/devices/mem0/numa_node").read_text() == "0\n"
        out = subprocess.run([sys.executable, "-m", "cxlsys", "dmesg", str(mp)], cwd=root, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        warn = [line for line in out.splitlines() if "WARNING: cxlsys internal error in read of /sys/" in line]
        # one read(2); the page cache may ask twice (readahead, then the read proper retries it)
        assert 1 <= len(warn) <= 2 and all("/mem0/serial: ZeroDivisionError" in w for w in warn), warn
    finally:
        subprocess.run([sys.executable, "-m", "cxlsys", "umount", str(mp)], cwd=root, timeout=60, check=False)
