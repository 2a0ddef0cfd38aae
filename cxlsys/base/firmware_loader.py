"""drivers/base/firmware_loader/sysfs_upload.c: the firmware upload class device
(``<parent>/firmware/<name>/``: ``loading``, ``data``, ``status``, ``error``, ``remaining_size``,
``cancel``) and its state machine (idle -> receiving -> preparing -> transferring -> programming
-> idle; errors read ``<progress>:<error>``).  A driver registers a :class:`FwUploadOps`
(``struct fw_upload_ops``: prepare/write/poll_complete/cancel/cleanup) with
:func:`firmware_upload_register`; the upload worker (``fw_upload_main`` on a workqueue) runs as
delayed work on the system's timers, a few ``write`` calls per tick, so an upload takes visible
time as on a kernel.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import attrs

from cxlsys.base.device import RO, RW, WO, AttrGroup, Device, device_add, device_del
from cxlsys.errors import KernelError
from cxlsys.kernfs import KBinFile
from cxlsys.kstrto import kstrtobool_true, simple_strtol, to_int

if TYPE_CHECKING:  # pragma: no cover
    from cxlsys.kernel.timer import TimerHandle

FW_BUF_MAX = 256 << 20      # the largest firmware image the model buffers (fw_realloc_pages fails beyond)


FW_STATUS_UNKNOWN, FW_STATUS_LOADING, FW_STATUS_DONE, FW_STATUS_ABORTED = range(4)

(FW_UPLOAD_PROG_IDLE, FW_UPLOAD_PROG_RECEIVING, FW_UPLOAD_PROG_PREPARING, FW_UPLOAD_PROG_TRANSFERRING,
 FW_UPLOAD_PROG_PROGRAMMING, FW_UPLOAD_PROG_MAX) = range(6)
fw_upload_prog_str = ("idle", "receiving", "preparing", "transferring", "programming")

(FW_UPLOAD_ERR_NONE, FW_UPLOAD_ERR_HW_ERROR, FW_UPLOAD_ERR_TIMEOUT, FW_UPLOAD_ERR_CANCELED, FW_UPLOAD_ERR_BUSY,
 FW_UPLOAD_ERR_INVALID_SIZE, FW_UPLOAD_ERR_RW_ERROR, FW_UPLOAD_ERR_WEAROUT, FW_UPLOAD_ERR_FW_INVALID,
 FW_UPLOAD_ERR_MAX) = range(10)
fw_upload_err_str = ("none", "hw-error", "timeout", "user-abort", "device-busy", "invalid-file-size",
                     "read-write-error", "flash-wearout", "firmware-invalid")

# The upload worker (fw_upload_main on system_long_wq) runs as delayed work: this many ->write()
# calls per run, then it yields for FW_UPLOAD_TICK_S, so an upload takes visible time.
FW_UPLOAD_WRITES_PER_TICK = 16
FW_UPLOAD_TICK_S = 0.002


class FwUploadOps:
    """struct fw_upload_ops: prepare, write, poll_complete, cancel, cleanup."""

    def prepare(self, data: bytes, size: int) -> int:
        raise NotImplementedError

    def write(self, data: bytes, offset: int, size: int) -> tuple[int, int]:
        """(FW_UPLOAD_ERR_*, bytes written)."""
        raise NotImplementedError

    def poll_complete(self) -> int:
        raise NotImplementedError

    def device_time(self) -> float:
        """Seconds the device spent on the ->write() calls since the last ask (a mock that sleeps
        per transfer): the worker yields for that long, as the kernel's would be blocked."""
        return 0.0

    def cancel(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


@attrs.define(eq=False, kw_only=True)
class GlueDir(Device):
    """A class glue directory such as ``memN/firmware/`` (no files of its own)."""

    has_uevent = False


@attrs.define(eq=False, kw_only=True)
class FwUpload(Device):
    """A firmware upload class device (``firmware/memN/``): struct fw_sysfs with its fw_priv (the
    buffer ``data`` fills and its loading state) and fw_upload_priv (the upload's progress)."""

    target: Device = attrs.field(repr=False)
    ops: FwUploadOps = attrs.field(repr=False)
    # fw_priv
    fw_state: int = FW_STATUS_UNKNOWN
    buf: bytearray = attrs.field(factory=bytearray, repr=False)
    fw_size: int = 0
    # fw_upload_priv
    progress: int = FW_UPLOAD_PROG_IDLE
    err_progress: int = FW_UPLOAD_PROG_IDLE
    err_code: int = FW_UPLOAD_ERR_NONE
    remaining_size: int = 0
    data: Optional[bytes] = attrs.field(default=None, repr=False)
    offset: int = 0
    work: Optional[TimerHandle] = attrs.field(default=None, repr=False)

    groups = (AttrGroup([RW("loading"), WO("cancel"), RO("status"), RO("error"), RO("remaining_size")]),)

    def links(self):
        return {"device": self.target}

    def _kernfs_children(self) -> dict:
        out = super()._kernfs_children()
        out["data"] = KBinFile(0o644, self.firmware_data_read, self.firmware_data_write, size=0, owner=self)
        return out

    # ----- sysfs.c
    def loading_show(self) -> str:
        return f"{int(self.fw_state == FW_STATUS_LOADING)}\n"

    def loading_store(self, buf: str) -> None:
        """1 starts a load (dropping what was written), 0 ends it and starts the upload, -1 (or
        anything else) aborts; ignored while an upload owns the buffer."""
        if self.fw_state in (FW_STATUS_ABORTED, FW_STATUS_DONE):
            return
        loading = to_int(simple_strtol(buf, 10))      # int loading = simple_strtol(buf, NULL, 10)
        if loading == 1:
            self.buf, self.fw_size = bytearray(), 0
            self.fw_state = FW_STATUS_LOADING
            return
        if loading == 0 and self.fw_state == FW_STATUS_LOADING:
            self.fw_state = FW_STATUS_DONE
            fw_upload_start(self)
            return
        if loading != -1:
            self.sys.klog.dev_err(self, f"firmware_loading_store: unexpected value ({loading})")
        self.fw_state = FW_STATUS_UNKNOWN      # fw_load_abort(), and an upload device starts over

    def firmware_data_read(self, offset: int, size: int) -> bytes:
        if self.fw_state == FW_STATUS_DONE:
            raise KernelError(errno.ENODEV, f"{self.name}: data: an upload is using the buffer")
        if offset > self.fw_size:
            return b""
        count = min(max(size, 0), self.fw_size - offset)
        return bytes(self.buf[offset:offset + count])

    def firmware_data_write(self, data: bytes, offset: int) -> int:
        if self.fw_state == FW_STATUS_DONE:
            raise KernelError(errno.ENODEV, f"{self.name}: data: an upload is using the buffer")
        end = offset + len(data)
        if end > FW_BUF_MAX:
            # fw_realloc_pages(): growing the paged buffer that far fails (-ENOMEM); the model stops at
            # FW_BUF_MAX rather than allocate host memory for a hole the caller seeked over
            raise KernelError(errno.ENOMEM, f"{self.name}: data: no buffer for {end} bytes (at most {FW_BUF_MAX})")
        if end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[offset:end] = data
        self.fw_size = max(end, self.fw_size)
        return len(data)

    # ----- sysfs_upload.c
    def status_show(self) -> str:
        prog = self.progress
        return f"{fw_upload_prog_str[prog] if prog < FW_UPLOAD_PROG_MAX else 'unknown-status'}\n"

    def error_show(self) -> str:
        if self.progress != FW_UPLOAD_PROG_IDLE:
            raise KernelError(errno.EBUSY, f"{self.name}: error: upload in progress")
        if not self.err_code:
            return ""
        err = fw_upload_err_str[self.err_code] if self.err_code < FW_UPLOAD_ERR_MAX else "unknown-error"
        return f"{fw_upload_prog_str[self.err_progress]}:{err}\n"

    def cancel_store(self, buf: str) -> None:
        if not kstrtobool_true(buf):
            raise KernelError(errno.EINVAL, f"{self.name}: cancel: expected a true value")
        idle = self.progress == FW_UPLOAD_PROG_IDLE
        self.ops.cancel()              # called even when idle: the driver's cancel flag stays set
        if idle:
            raise KernelError(errno.ENODEV, f"{self.name}: cancel: no upload in progress")

    def remaining_size_show(self) -> str:
        return f"{self.remaining_size}\n"

    # ----- the worker (fw_upload_main), one run per timer tick
    def _set_error(self, err: int) -> None:
        self.err_progress = self.progress
        self.err_code = err

    def _queue(self, delay: float) -> None:
        self.work = self.sys.timers.add(delay, self.fw_upload_main)

    def fw_upload_main(self) -> None:
        self.work = None
        if self.progress == FW_UPLOAD_PROG_RECEIVING:
            self.progress = FW_UPLOAD_PROG_PREPARING
            ret = self.ops.prepare(self.data or b"", self.remaining_size)
            if ret != FW_UPLOAD_ERR_NONE:
                self._set_error(ret)
                self._finish(cleanup=False)
                return
            self.progress = FW_UPLOAD_PROG_TRANSFERRING
            self.offset = 0
        if self.progress == FW_UPLOAD_PROG_TRANSFERRING:
            busy = 0.0
            for _ in range(FW_UPLOAD_WRITES_PER_TICK):
                if not self.remaining_size or busy >= FW_UPLOAD_TICK_S:
                    break
                ret, written = self.ops.write(self.data or b"", self.offset, self.remaining_size)
                if ret != FW_UPLOAD_ERR_NONE or not written:
                    if ret == FW_UPLOAD_ERR_NONE:
                        self.sys.klog.log(f"firmware {self.name}: write-op wrote zero data", "warn")
                        ret = FW_UPLOAD_ERR_RW_ERROR
                    self._set_error(ret)
                    self._finish(cleanup=True)
                    return
                self.remaining_size -= written
                self.offset += written
                busy += self.ops.device_time()
            if self.remaining_size:
                self._queue(max(FW_UPLOAD_TICK_S, busy))
                return
            self.progress = FW_UPLOAD_PROG_PROGRAMMING
            ret = self.ops.poll_complete()
            if ret != FW_UPLOAD_ERR_NONE:
                self._set_error(ret)
            self._finish(cleanup=True)

    def _finish(self, cleanup: bool) -> None:
        if cleanup:
            self.ops.cleanup()
        # remaining_size is kept: it tells how far a failed upload got
        self.buf, self.fw_size = bytearray(), 0
        self.fw_state = FW_STATUS_UNKNOWN
        self.data = None
        self.progress = FW_UPLOAD_PROG_IDLE
        self.sys.changes.values()

    def flush_work(self) -> None:
        """flush_work(): run the worker until the upload is over."""
        while self.progress != FW_UPLOAD_PROG_IDLE:
            if self.work is not None:
                self.work.cancel()
                self.work = None
            self.fw_upload_main()


def fw_upload_start(fw: FwUpload) -> None:
    """loading 0: hand the buffer to the worker (nothing written: just reset; EBUSY while another
    upload runs)."""
    if not fw.fw_size:
        fw.buf, fw.fw_size = bytearray(), 0
        fw.fw_state = FW_STATUS_UNKNOWN
        return
    if fw.progress != FW_UPLOAD_PROG_IDLE:
        raise KernelError(errno.EBUSY, f"{fw.name}: an upload is in progress")
    fw.progress = FW_UPLOAD_PROG_RECEIVING
    fw.err_code = FW_UPLOAD_ERR_NONE
    fw.remaining_size = fw.fw_size
    fw.data = bytes(fw.buf[:fw.fw_size])
    fw._queue(0.0)


def firmware_upload_register(parent: Device, name: str, ops: FwUploadOps) -> FwUpload:
    """The class device ``<parent>/firmware/<name>`` (the class glue directory comes with it)."""
    sys = parent.sys
    glue = parent.children.get("firmware")
    if glue is None:
        glue = device_add(GlueDir(name="firmware", parent=parent, sys=sys))
    fw = FwUpload(name=name, parent=glue, sys=sys, target=parent, ops=ops)
    device_add(fw)
    return fw


def firmware_upload_unregister(fw: FwUpload) -> None:
    """Cancel a running upload and let it end, then remove the device (and an empty glue dir)."""
    if fw.progress != FW_UPLOAD_PROG_IDLE:
        fw.ops.cancel()
        fw.flush_work()
    glue = fw.parent
    device_del(fw)
    if isinstance(glue, GlueDir) and glue.registered and not glue.children:
        device_del(glue)
