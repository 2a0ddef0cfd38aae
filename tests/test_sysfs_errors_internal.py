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
