"""tools/testing/cxl/test/mem.c: the mock memory device platform driver ``cxl_mock_mem``.

Its platform devices carry the mock-only knobs ndctl's tests reach through
``/sys/bus/platform/devices/<host>/``: ``event_trigger``, ``fw_buf_checksum``,
``sanitize_timeout``, ``security_lock``.
"""

from __future__ import annotations

import errno
import hashlib

import attrs

from cxlsys.base.device import RO, RW, WO, AttrGroup
from cxlsys.base.platform import PlatformDevice, PlatformDriver
from cxlsys.errors import KernelError
from cxlsys.kstrto import kstrtobool, kstrtoint


@attrs.define(eq=False, kw_only=True)
class MockMemDevice(PlatformDevice):
    fw_buf: bytes = b""
    sanitize_timeout: int = 0
    security_locked: bool = False

    groups = PlatformDevice.groups + (
        AttrGroup([WO("event_trigger"), RO("fw_buf_checksum"), RW("sanitize_timeout"), RW("security_lock")]),
    )

    def event_trigger_store(self, buf: str):
        if self.driver is None:
            raise KernelError(errno.ENODEV, f"{self.name}: event_trigger: not bound")

    def fw_buf_checksum_show(self):
        return hashlib.sha256(self.fw_buf).hexdigest() + "\n"

    def sanitize_timeout_show(self):
        return f"{self.sanitize_timeout}\n"

    def sanitize_timeout_store(self, buf: str):
        self.sanitize_timeout = kstrtoint(buf)

    def security_lock_show(self):
        return f"{int(self.security_locked)}\n"

    def security_lock_store(self, buf: str):
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: security_lock: write 1 to lock")
        raise KernelError(errno.EINVAL, f"{self.name}: security_lock: no user passphrase is set")


@attrs.define(eq=False, kw_only=True)
class CxlMockMemDriver(PlatformDriver):
    """Probes a memdev host device and registers ``memN`` (cxl_mock_mem / cxl_pci's role)."""

    name: str = "cxl_mock_mem"
    module: str = "cxl_mock_mem"

    def match(self, dev) -> bool:
        m = dev.sys.machine
        return m is not None and getattr(dev, "cfg", None) is not None and dev.name in m.memdev_hosts \
            and m.memdev_driver == self.name

    def probe(self, pdev) -> None:
        pdev.sys.machine.probe_memdev(pdev)
