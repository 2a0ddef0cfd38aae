"""The ``cxlsys run`` ioctl interposer: seccomp user notification.

CUSE is not available on the machines this runs on, and a char node whose major no host driver
owns cannot even be opened.  So the model's char devices that take ioctls (``/dev/cxl/memN``,
``/dev/nmemN``, ``/dev/ndctlN``) are plain empty files, and the command runs under a seccomp filter
(installed in the child between fork and exec, inherited by everything it starts) that sends a few
system calls to a supervisor thread in ``cxlsys run``:

* ``ioctl`` whose request's type byte is ``0xCE`` (``CXL_MEM_*``) or ``'N'`` (libnvdimm's
  ``ND_IOCTL_*``) — every other ioctl never leaves the kernel;
* ``fstat``/``newfstatat``/``statx`` with ``AT_EMPTY_PATH`` (what ``fstat(3)`` is), so that an fd
  open on one of those files reports a char device with the model's ``major:minor`` — libcxl and
  libndctl check exactly that before they issue an ioctl.

For each notification the supervisor resolves the fd through ``/proc/PID/fd``; an fd that is not one
of the model's nodes is answered ``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` (the kernel runs the call
as if nothing had happened).  For the model's nodes it writes the faked ``struct stat``/``statx``
into the caller with ``process_vm_writev``, or runs the ioctl in the daemon (a control-socket
conversation, :func:`fuse_mount.control.ioctl`) reading and writing the caller's memory on the
daemon's behalf, and answers with the ioctl's return value or ``-errno``.

Because it works on system calls, not on library calls, it holds for static binaries and raw
``syscall(2)`` users too, and it is the same in both run paths (namespace as root, umockdev
without root: there ``PR_SET_NO_NEW_PRIVS`` is set first, so set-uid programs do not gain
privileges inside, and opens of the nodes are trapped too).  ``stat(2)`` by path of a node is
faked as well (libcxl reads a memdev's devt that way); ``lstat(2)`` is not (``ls -l /dev/cxl``
shows plain files).  Seccomp filters are irrevocable: ``CXLSYS_NO_INTERPOSE=1`` runs without.
Costs (measured, docs/device-side.md): a trapped ``fstat`` 1.3 µs -> 19 µs, nothing for the system
calls the filter lets through.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import stat
import struct
import sys
import threading
import traceback
from typing import Callable, Optional

_libc = ctypes.CDLL(None, use_errno=True)

# per-architecture: (AUDIT_ARCH, __NR_seccomp, __NR_ioctl, __NR_fstat, __NR_newfstatat, __NR_statx, stat layout,
#                    __NR_stat or None, __NR_openat, __NR_open or None)
_ARCH = {
    "x86_64": (0xC000003E, 317, 16, 5, 262, 332, "x86_64", 4, 257, 2),
    "aarch64": (0xC00000B7, 277, 29, 80, 79, 291, "generic", None, 56, None),
}

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PR_SET_NO_NEW_PRIVS = 38
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_FDCWD = -100

# the ioctl "type" bytes we take: include/uapi/linux/cxl_mem.h (0xCE), include/uapi/linux/ndctl.h ('N')
IOCTL_TYPES = (0xCE, ord("N"))


def _ioc(d: int, t: int, nr: int, size: int) -> int:
    return (d << 30) | (size << 16) | (t << 8) | nr


SECCOMP_IOCTL_NOTIF_RECV = _ioc(3, ord("!"), 0, 80)
SECCOMP_IOCTL_NOTIF_SEND = _ioc(3, ord("!"), 1, 24)
SECCOMP_IOCTL_NOTIF_ID_VALID = _ioc(1, ord("!"), 2, 8)
SECCOMP_IOCTL_NOTIF_SET_FLAGS = _ioc(1, ord("!"), 4, 8)
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1          # Linux 6.6: wake the supervisor on the caller's CPU
SECCOMP_IOCTL_NOTIF_ADDFD = _ioc(1, ord("!"), 3, 24)
SECCOMP_ADDFD_FLAG_SEND = 1 << 1                # Linux 5.14: install the fd and answer with its number

# BPF (linux/filter.h)
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JSET_K = 0x45
BPF_AND_K = 0x54
BPF_RET_K = 0x06


def _arch():
    a = _ARCH.get(platform.machine())
    if a is None:
        raise OSError(errno.ENOSYS, f"no seccomp interposer for {platform.machine()}")
    return a


def _arg_lo(i: int) -> int:
    """Offset of args[i]'s low 32 bits in struct seccomp_data (little-endian)."""
    return 16 + 8 * i


def build_filter(trap_open: bool = False) -> list[tuple[int, int, int, int]]:
    """The classic-BPF program (code, jt, jf, k) described in the module docstring; with
    ``trap_open`` also every ``open``/``openat``."""
    audit, _, nr_ioctl, nr_fstat, nr_fstatat, nr_statx, _, nr_stat, nr_openat, nr_open = _arch()
    prog: list[tuple[int, int, int, int]] = []
    labels: dict[str, int] = {}
    fixups: list[tuple[int, str, str]] = []      # (index, true label, false label)

    def op(code, k=0):
        prog.append((code, 0, 0, k))

    def jeq(k, jt, jf):
        fixups.append((len(prog), jt, jf))
        prog.append((BPF_JEQ_K, 0, 0, k))

    def jset(k, jt, jf):
        fixups.append((len(prog), jt, jf))
        prog.append((BPF_JSET_K, 0, 0, k))

    def label(name):
        labels[name] = len(prog)

    op(BPF_LD_W_ABS, 4)                       # arch
    jeq(audit, "nr", "allow")
    label("nr")
    op(BPF_LD_W_ABS, 0)                       # syscall number
    jeq(nr_ioctl, "ioctl", "n1")
    label("n1")
    if trap_open:
        jeq(nr_openat, "notify", "n1a")
        label("n1a")
        if nr_open is not None:
            jeq(nr_open, "notify", "n1b")
        label("n1b")
    jeq(nr_fstat, "notify", "n2")
    label("n2")
    if nr_stat is not None:
        jeq(nr_stat, "notify", "n2b")
    label("n2b")
    jeq(nr_fstatat, "fstatat", "n3")
    label("n3")
    jeq(nr_statx, "statx", "allow")
    label("ioctl")
    op(BPF_LD_W_ABS, _arg_lo(1))
    op(BPF_AND_K, 0xFF00)
    jeq(IOCTL_TYPES[0] << 8, "notify", "i2")
    label("i2")
    jeq(IOCTL_TYPES[1] << 8, "notify", "allow")
    label("fstatat")                          # newfstatat(dirfd, path, buf, flags): fstat(3), stat(3)
    op(BPF_LD_W_ABS, _arg_lo(3))
    jset(AT_EMPTY_PATH, "notify", "f2")
    label("f2")
    jset(AT_SYMLINK_NOFOLLOW, "allow", "notify")   # lstat(3) never reaches one of our files' fakes
    label("statx")                            # statx(dirfd, path, flags, mask, buf)
    op(BPF_LD_W_ABS, _arg_lo(2))
    jset(AT_EMPTY_PATH, "notify", "s2")
    label("s2")
    jset(AT_SYMLINK_NOFOLLOW, "allow", "notify")
    label("allow")
    op(BPF_RET_K, SECCOMP_RET_ALLOW)
    label("notify")
    op(BPF_RET_K, SECCOMP_RET_USER_NOTIF)
    for i, jt, jf in fixups:
        code, _, _, k = prog[i]
        prog[i] = (code, labels[jt] - i - 1, labels[jf] - i - 1, k)
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def install_filter(no_new_privs: bool, trap_open: bool = False) -> int:
    """In the child, before exec: install the filter; the listener fd (ours to hand over)."""
    if no_new_privs and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")
    prog = build_filter(trap_open)
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), arr)
    nr_seccomp = _arch()[1]
    fd = _libc.syscall(ctypes.c_long(nr_seccomp), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_uint(SECCOMP_FILTER_FLAG_NEW_LISTENER), ctypes.byref(fprog))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER): {os.strerror(e)}")
    return fd


# ---------------------------------------------------------------- the traced process's memory
class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.restype = ctypes.c_ssize_t


class ProcessMemory:
    """copy_from_user/copy_to_user against another process (process_vm_readv/writev)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self, addr: int, n: int) -> Optional[bytes]:
        if n == 0:
            return b""
        buf = ctypes.create_string_buffer(n)
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), n)
        remote = _Iovec(ctypes.c_void_p(addr), n)
        got = _libc.process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        return buf.raw[:n] if got == n else None

    def cstring(self, addr: int, limit: int = 4096) -> Optional[bytes]:
        """The NUL-terminated string at ``addr`` (read a page at a time), or None if unreadable."""
        out = b""
        while len(out) < limit:
            n = min(256, 4096 - (addr + len(out)) % 4096)
            chunk = self.read(addr + len(out), n)
            if chunk is None:
                return None
            i = chunk.find(b"\0")
            if i >= 0:
                return out + chunk[:i]
            out += chunk
        return None

    def write(self, addr: int, data: bytes) -> bool:
        if not data:
            return True
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(data))
        remote = _Iovec(ctypes.c_void_p(addr), len(data))
        return _libc.process_vm_writev(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) == len(data)


# ---------------------------------------------------------------- faked stat structures
def pack_stat(st: os.stat_result, mode: int, rdev: int, layout: str) -> bytes:
    """struct stat as the architecture's newfstatat/fstat fill it."""
    t = [(int(x), int(x * 1e9) % 1_000_000_000) for x in (st.st_atime, st.st_mtime, st.st_ctime)]
    if layout == "x86_64":
        return struct.pack("<QQQIIIiQqqq6q3q", st.st_dev, st.st_ino, st.st_nlink, mode, st.st_uid, st.st_gid, 0,
                           rdev, 0, 4096, 0, t[0][0], t[0][1], t[1][0], t[1][1], t[2][0], t[2][1], 0, 0, 0)
    return struct.pack("<QQIIIIQQqiiq6q2i", st.st_dev, st.st_ino, mode, st.st_nlink, st.st_uid, st.st_gid, rdev, 0,
                       0, 4096, 0, 0, t[0][0], t[0][1], t[1][0], t[1][1], t[2][0], t[2][1], 0, 0)


STATX_BASIC_STATS = 0x7FF


def pack_statx(st: os.stat_result, mode: int, rdev: int) -> bytes:
    """struct statx (include/uapi/linux/stat.h), 256 bytes."""
    def ts(x):
        return struct.pack("<qIi", int(x), int(x * 1e9) % 1_000_000_000, 0)
    head = struct.pack("<IIQIIIHH", STATX_BASIC_STATS, 4096, 0, st.st_nlink, st.st_uid, st.st_gid, mode, 0)
    head += struct.pack("<QQQQ", st.st_ino, 0, 0, 0)
    times = ts(st.st_atime) + ts(st.st_ctime) + ts(st.st_ctime) + ts(st.st_mtime)   # atime, btime, ctime, mtime
    devs = struct.pack("<IIII", os.major(rdev), os.minor(rdev), os.major(st.st_dev), os.minor(st.st_dev))
    out = head + times + devs
    return out + bytes(256 - len(out))


# ---------------------------------------------------------------- the supervisor
class _Notif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int32), ("arch", ctypes.c_uint32), ("ip", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class _Resp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


class _AddFd(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("srcfd", ctypes.c_uint32),
                ("newfd", ctypes.c_uint32), ("newfd_flags", ctypes.c_uint32)]


class Supervisor:
    """Answers the filter's notifications; ``ioctl_fn(dev, request, arg, mem)`` runs a model ioctl
    (returns ``(ret, errno)``), ``devt_fn(dev)`` gives a node's ``(major, minor)`` or None.
    ``roots``: ``(path CMD uses, directory holding the node files)`` pairs — ``("/dev", "/dev")``
    in the namespace; ``("/dev", "$T/nodes")`` on the umockdev path, where ``trap_open`` makes the
    supervisor open a node for CMD (it installs the fd with ``SECCOMP_IOCTL_NOTIF_ADDFD``)."""

    def __init__(self, listener: int, roots: list, ioctl_fn: Callable, devt_fn: Callable,
                 trap_open: bool = False) -> None:
        self.fd = listener
        self.roots = [(os.path.normpath(v), os.path.realpath(r)) for v, r in roots]
        self.dev_roots = [r for _, r in self.roots]
        self.ioctl_fn = ioctl_fn
        self.devt_fn = devt_fn
        self.trap_open = trap_open
        self.layout = _arch()[6]
        self.nrs = _arch()[2:6]
        self.nr_stat = _arch()[7]
        self.nr_openat, self.nr_open = _arch()[8:10]
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cxlsys-interposer")
        self.handled = 0

    def start(self) -> None:
        self.thread.start()

    def _alive(self, notif_id: int) -> bool:
        """SECCOMP_IOCTL_NOTIF_ID_VALID: the caller is still the one that trapped (its pid was not
        recycled while /proc was read) — checked before writing into it or installing an fd."""
        nid = ctypes.c_uint64(notif_id)
        return _libc.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.byref(nid)) == 0

    def _node_at(self, target: str) -> Optional[tuple[str, tuple, os.stat_result]]:
        """(/dev name, devt, stat) if ``target`` (a path in this mount namespace) is one of the
        model's node files: a regular file below a node root the model has a char device for (the
        host's own nodes there are real char devices and are never asked about)."""
        for root in self.dev_roots:
            if target.startswith(root + "/"):
                try:
                    st = os.stat(target)
                except OSError:
                    return None
                if not stat.S_ISREG(st.st_mode):
                    return None
                name = target[len(root) + 1:]
                devt = self.devt_fn(name)
                return (name, devt, st) if devt is not None else None
        return None

    def _node(self, pid: int, fd: int) -> Optional[tuple[str, tuple, os.stat_result]]:
        """The model node the caller's ``fd`` is open on, if it is one."""
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None
        if not any(target.startswith(r + "/") for r in self.dev_roots):
            return None
        node = self._node_at(target)
        if node is None:
            return None
        try:       # the open file itself (the name may have been replaced since)
            return node[0], node[1], os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None

    def _node_by_path(self, pid: int, dirfd: int, path: bytes) -> Optional[tuple[str, tuple, os.stat_result]]:
        """The model node a stat(2) of ``path`` relative to ``dirfd`` names, if it is one."""
        p = os.fsdecode(path)
        if not p.startswith("/"):
            try:
                base = os.readlink(f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}")
            except OSError:
                return None
            p = base + "/" + p
        real = self._real(os.path.normpath(p))
        return self._node_at(real) if real is not None else None

    def _real(self, p: str) -> Optional[str]:
        """Where the node file for CMD's path ``p`` is, if ``p`` is below a root."""
        for visible, real in self.roots:
            if p.startswith(visible + "/"):
                return os.path.realpath(real + p[len(visible):])
            if p.startswith(real + "/"):
                return os.path.realpath(p)
        return None

    def _loop(self) -> None:
        # best effort: without it (before 6.6) every notification costs two cross-CPU wake-ups
        _libc.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, ctypes.c_void_p(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP))
        notif = _Notif()
        while True:
            ctypes.memset(ctypes.byref(notif), 0, ctypes.sizeof(notif))
            if _libc.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_RECV, ctypes.byref(notif)) != 0:
                e = ctypes.get_errno()
                if e in (errno.EINTR, errno.ENOENT):     # interrupted, or the caller died meanwhile
                    continue
                return                                    # listener closed: every traced process is gone
            try:
                answer = self._handle(notif)
            except Exception:                             # a bug here: the caller gets EIO, never a fake answer
                sys.stderr.write("cxlsys interposer: internal error (the call gets EIO):\n" + traceback.format_exc())
                answer = (0, errno.EIO, False)
            if answer is None:                            # answered already (an fd installed with SEND)
                continue
            val, err, cont = answer
            resp = _Resp(notif.id, val, -err if err else 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE if cont else 0)
            _libc.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SEND, ctypes.byref(resp))

    def _handle(self, n: _Notif) -> Optional[tuple[int, int, bool]]:
        nr_ioctl, nr_fstat, nr_fstatat, nr_statx = self.nrs
        pid, a = n.pid, n.args
        mem = ProcessMemory(pid)
        if self.trap_open and n.nr in (self.nr_openat, self.nr_open):
            return self._open(n, mem)
        if n.nr == nr_ioctl:
            fd = ctypes.c_int32(a[0] & 0xFFFFFFFF).value
            node = self._node(pid, fd)
            if node is None:
                return 0, 0, True
            if not self._alive(n.id):
                return None
            self.handled += 1
            ret, err = self.ioctl_fn(node[0], a[1] & 0xFFFFFFFF, a[2], mem, _fd_flags(pid, fd))
            return ret, err, False
        # (dirfd, path pointer or 0, buffer, flags, kind)
        if n.nr == nr_fstat:
            dirfd, path, buf, flags, kind = a[0], 0, a[1], AT_EMPTY_PATH, "stat"
        elif n.nr == self.nr_stat:
            dirfd, path, buf, flags, kind = AT_FDCWD, a[0], a[1], 0, "stat"
        elif n.nr == nr_fstatat:
            dirfd, path, buf, flags, kind = a[0], a[1], a[2], a[3], "stat"
        elif n.nr == nr_statx:
            dirfd, path, buf, flags, kind = a[0], a[1], a[4], a[2], "statx"
        else:
            return 0, 0, True
        dirfd = ctypes.c_int32(dirfd & 0xFFFFFFFF).value
        name = mem.cstring(path) if path else b""
        if name is None:
            return 0, 0, True
        if name == b"" and flags & AT_EMPTY_PATH:
            node = self._node(pid, dirfd)
        elif name:
            node = self._node_by_path(pid, dirfd, name)
        else:
            node = None
        if node is None:
            return 0, 0, True
        _, devt, st = node
        mode = stat.S_IFCHR | stat.S_IMODE(st.st_mode)
        rdev = os.makedev(*devt)
        data = pack_statx(st, mode, rdev) if kind == "statx" else pack_stat(st, mode, rdev, self.layout)
        if not self._alive(n.id):
            return None
        self.handled += 1
        return (0, 0, False) if mem.write(buf, data) else (0, errno.EFAULT, False)


    def _open(self, n: _Notif, mem: ProcessMemory) -> Optional[tuple[int, int, bool]]:
        """open/openat of a model node by CMD: open the node file here and install it in CMD."""
        a = n.args
        if n.nr == self.nr_open:
            dirfd, path, flags = AT_FDCWD, a[0], a[1]
        else:
            dirfd, path, flags = ctypes.c_int32(a[0] & 0xFFFFFFFF).value, a[1], a[2]
        head = mem.read(path, 5)
        if head is None:                  # the string ends before a page boundary it would cross
            head = (mem.cstring(path) or b"")[:5]
        if head.startswith(b"/") and head != b"/dev/" or not head:
            return 0, 0, True             # the common case, answered after a 5-byte read
        name = mem.cstring(path)
        if not name:
            return 0, 0, True
        if not name.startswith(b"/"):     # relative to the cwd or dirfd: only below a node root
            try:
                base = os.readlink(f"/proc/{n.pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{n.pid}/fd/{dirfd}")
            except OSError:
                return 0, 0, True
            name = os.fsencode(base) + b"/" + name
        real = self._real(os.path.normpath(os.fsdecode(name)))
        if real is None or self._node_at(real) is None:
            return 0, 0, True
        try:
            local = os.open(real, (flags & (os.O_ACCMODE | os.O_NONBLOCK)) | os.O_CLOEXEC)
        except OSError as err:
            return 0, err.errno or errno.EIO, False
        try:
            if not self._alive(n.id):
                return None
            add = _AddFd(n.id, SECCOMP_ADDFD_FLAG_SEND, local, 0, flags & os.O_CLOEXEC)
            if _libc.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ADDFD, ctypes.byref(add)) < 0:
                code = ctypes.get_errno()
                return None if code == errno.ENOENT else (0, code, False)   # ENOENT: the caller is gone
        finally:
            os.close(local)
        self.handled += 1
        return None


def _fd_flags(pid: int, fd: int) -> int:
    """The open file's f_flags (``/proc/PID/fdinfo/FD``), for the read-only ioctl checks."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return os.O_RDWR


class ControlIoctl:
    """The supervisor's link to the daemon: ioctls as control-socket conversations, node devts."""

    def __init__(self, ctl: str) -> None:
        self.ctl = ctl

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(self.ctl)
        return s

    def devt(self, name: str) -> Optional[tuple]:
        import json

        from fuse_mount.client import recv_line
        with self._connect() as s:
            s.sendall(json.dumps({"cmd": "chardev", "dev": name}).encode() + b"\n")
            rep = json.loads(recv_line(s) or b"{}")
        return tuple(rep["devt"]) if rep.get("devt") else None

    def ioctl(self, dev: str, request: int, arg: int, mem: ProcessMemory, f_flags: int = os.O_RDWR) -> tuple[int, int]:
        import json

        from fuse_mount.client import recv_line
        with self._connect() as s:
            s.sendall(json.dumps({"cmd": "ioctl", "dev": dev, "request": request, "arg": arg,
                                  "pid": mem.pid, "f_flags": f_flags}).encode() + b"\n")
            while True:
                msg = json.loads(recv_line(s) or b"{}")
                op = msg.get("op")
                if op == "read":
                    data = mem.read(int(msg["addr"]), int(msg["len"]))
                    rep: dict = {"data": data.hex()} if data is not None else {"errno": errno.EFAULT}
                elif op == "write":
                    rep = {"ok": True} if mem.write(int(msg["addr"]), bytes.fromhex(msg["data"])) \
                        else {"errno": errno.EFAULT}
                elif "rc" in msg:
                    return (int(msg.get("ret", 0)), 0) if msg["rc"] == 0 else (0, int(msg.get("errno", errno.EIO)))
                else:
                    return 0, errno.EIO
                s.sendall(json.dumps(rep).encode() + b"\n")
