"""What the kernel's dentry cache holds, learned from the FUSE wire (libfuse 3 custom I/O).

libfuse's high-level API names files by path and keeps the kernel's node ids to itself, so the
only invalidation it offers by path is ``fuse_invalidate_path`` (an inode's attributes and pages).
A *dentry* — and above all a negative one, "no such entry", which has no inode — can only be
dropped with ``fuse_lowlevel_notify_inval_entry(session, parent node id, name)``.  This module
passes the session's device reads and writes through (``fuse_session_custom_io``, installed once
the kernel's INIT arrived), in order, and touches two kinds of reply on the way:

* a LOOKUP's: which node id the kernel holds for a path, and which names it was told do not
  exist (the sysfs mount then lets the kernel cache those: ``negative_timeout``); a reply the
  model overtook since its handler looked goes out with zero timeouts;
* an OPENDIR's: FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, so the kernel keeps the listing.

Every other request and reply goes through unchanged.

:meth:`WireTap.entry_targets` turns what the projection reports (``Sync.appeared``, ``Sync.stale``)
into the (parent node id, name) pairs the kernel must forget: a negative entry whose name now
exists, and the topmost of the entries that vanished (dropping a directory's dentry drops what the
kernel cached below it, negative entries included).
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable, Optional, cast

FUSE_LOOKUP = 1
FUSE_OPENDIR = 27
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_CACHE_DIR = 1 << 3
IN_HEADER = 40           # struct fuse_in_header
FUSE_ROOT_ID = 1


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


WRITEV = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_int, ctypes.POINTER(iovec), ctypes.c_int, ctypes.c_void_p)
READ = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


class fuse_custom_io(ctypes.Structure):
    # libfuse 3.14's four members; later versions append more (clone_fd): left NULL, as it allows
    _fields_ = [("writev", WRITEV), ("read", READ), ("splice_receive", ctypes.c_void_p),
                ("splice_send", ctypes.c_void_p), ("spare", ctypes.c_void_p * 4)]


# use_errno: ctypes keeps a failed call's errno at once (a Python signal handler may run and make
# C calls before the callback returns); it is put back into errno for libfuse to see
_libc = ctypes.CDLL(None, use_errno=True)
_libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_libc.read.restype = ctypes.c_ssize_t
_libc.writev.argtypes = [ctypes.c_int, ctypes.POINTER(iovec), ctypes.c_int]
_libc.writev.restype = ctypes.c_ssize_t
_errno_location = getattr(_libc, "__errno_location")    # (a name a class body would mangle)
_errno_location.restype = ctypes.POINTER(ctypes.c_int)
_NONE = object()                   # a reply this tap does not read
_OPENDIR = object()                # an OPENDIR's reply
_u32 = ctypes.c_uint32.from_address
_u64 = ctypes.c_uint64.from_address
_i32 = ctypes.c_int32.from_address


def _uncacheable(entry: int) -> None:
    """Zero the timeouts of the struct fuse_entry_out at ``entry``: the kernel uses it once."""
    _u64(entry + 16).value = 0                # entry_valid
    _u64(entry + 24).value = 0                # attr_valid
    _u32(entry + 32).value = 0                # entry_valid_nsec
    _u32(entry + 36).value = 0                # attr_valid_nsec


class WireTap:
    """The kernel's dentries of one mount, by model path (see the module's docstring)."""

    def __init__(self, exists: Callable[[str], bool], model_lock, prefix: str = "",
                 on_bug: Optional[Callable[[Exception], None]] = None):
        self._exists = exists                    # does the model have this path now
        self._on_bug = on_bug                    # a bug here: logged, the reply still goes (uncached)
        self._model_lock = model_lock            # held while a LOOKUP reply is checked and sent
        self._prefix = prefix
        self._lock = threading.Lock()
        self._pending: dict = {}                 # unique -> (parent node id, name) of a LOOKUP, or _OPENDIR
        self.path_of: dict = {FUSE_ROOT_ID: ""}  # node id -> path (paths below the mount)
        self.node_of: dict = {"": FUSE_ROOT_ID}  # path -> node id the kernel holds for it
        self.negative: dict = {}                 # parent path -> {name: parent node id}: told "no such entry"
        self._io = fuse_custom_io(WRITEV(self._writev), READ(self._read))

    def install(self, lib, fuse_ptr: int) -> bool:
        """Route the session's device I/O through this tap (from the INIT handler: the loop has
        read INIT and sends its reply through the tap).  False: libfuse refused, nothing changed."""
        se = lib.fuse_get_session(fuse_ptr)
        if not se:
            return False
        return lib.fuse_session_custom_io(se, ctypes.byref(self._io), lib.fuse_session_fd(se)) == 0

    # ----------------------------------------------------------------- the wire
    def _read(self, fd: int, buf: int, size: int, _userdata) -> int:
        n = _libc.read(fd, buf, size)
        if n < 0:
            _errno_location()[0] = ctypes.get_errno()
            return n
        if n >= IN_HEADER:
            op = _u32(buf + 4).value
            if op == FUSE_LOOKUP:
                self._pending[_u64(buf + 8).value] = (_u64(buf + 16).value, ctypes.string_at(buf + IN_HEADER))
            elif op == FUSE_OPENDIR:
                self._pending[_u64(buf + 8).value] = _OPENDIR
        return n

    def _writev(self, fd: int, iov, count: int, _userdata) -> int:
        req = self._pending.pop(_u64(iov[0].iov_base + 8).value, _NONE) if self._pending and count else _NONE
        if req is _NONE or _i32(iov[0].iov_base + 4).value != 0 or count < 2:
            return self._send(fd, iov, count)
        if req is _OPENDIR:
            # an OPENDIR's reply (struct fuse_open_out: fh, open_flags): the kernel keeps the
            # listing (libfuse 3.14's high-level API cannot say so); a directory whose listing
            # changes is invalidated and stats with a new mtime (SysfsOps.sync, listing_stamp)
            _u32(iov[1].iov_base + 8).value |= FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR
            return self._send(fd, iov, count)
        # A LOOKUP's reply.  The model may have changed since its handler looked (a timer, the
        # control socket): checked again under the model's lock, which a sync holds while it
        # decides what the kernel must forget, and kept until the reply is sent — so a change
        # either comes before (the reply is made uncacheable) or finds the entry recorded.
        with self._model_lock:
            try:
                self._learn(cast(tuple, req), iov[1].iov_base)
            except Exception as e:                   # never a lost reply: the caller would hang
                _uncacheable(iov[1].iov_base)
                if self._on_bug is None:
                    raise
                self._on_bug(e)
            return self._send(fd, iov, count)

    @staticmethod
    def _send(fd: int, iov, count: int) -> int:
        n = _libc.writev(fd, iov, count)
        if n < 0:
            _errno_location()[0] = ctypes.get_errno()
        return n

    def _learn(self, req: tuple, entry: int) -> None:
        """Record what a LOOKUP reply (struct fuse_entry_out at ``entry``) tells the kernel."""
        parent, raw = req
        ppath = self.path_of.get(parent)
        if ppath is None:
            return                                   # a directory the kernel no longer holds
        name = os.fsdecode(raw)
        path = f"{ppath}/{name}" if ppath else name
        nodeid = _u64(entry).value
        full = f"{self._prefix}/{path}" if self._prefix else path
        if (nodeid != 0) != self._exists(full):       # changed since the handler looked: do not cache
            _uncacheable(entry)
            return
        with self._lock:
            if nodeid:
                self.path_of[nodeid] = path
                self.node_of[path] = nodeid
                neg = self.negative.get(ppath)
                if neg is not None:
                    neg.pop(name, None)
            else:                                     # nodeid 0: "no such entry", cached for negative_timeout
                self.negative.setdefault(ppath, {})[name] = parent

    # ----------------------------------------------------------------- what to forget
    def _mine(self, path: str) -> Optional[str]:
        if not self._prefix:
            return path
        if path.startswith(self._prefix + "/"):
            return path[len(self._prefix) + 1:]
        return None

    def entry_targets(self, appeared, stale) -> list:
        """(parent node id, name) pairs to ``notify_inval_entry`` for model paths that appeared
        (where the kernel was told there is no such entry) and that vanished (the topmost ones
        the kernel holds; their negative children are forgotten with them)."""
        out = []
        with self._lock:
            for p in appeared:
                m = self._mine(p)
                if m is None:
                    continue
                parent, _, name = m.rpartition("/")
                neg = self.negative.get(parent)
                if neg is not None and name in neg:
                    out.append((neg.pop(name), name))
            gone = {m for m in (self._mine(p) for p in stale) if m is not None}
            for m in gone:
                self.negative.pop(m, None)
                parent, _, name = m.rpartition("/")
                if parent in gone:
                    continue
                pid = self.node_of.get(parent)
                if pid is not None and m in self.node_of:
                    out.append((pid, name))
                    self.path_of.pop(self.node_of.pop(m), None)
        return out
