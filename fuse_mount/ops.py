"""mfusepy Operations over the sysfs projection (libfuse 3)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import queue
import select
import stat
import threading
import time
from typing import Callable, Optional

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402

from cxlsys.errors import KernelError  # noqa: E402
from cxlsys.sysfs import S_DIR, S_FILE, Sysfs  # noqa: E402
from fuse_mount.client import task_comm  # noqa: E402
from fuse_mount.wire import WireTap  # noqa: E402

FUSE_CAP_CACHE_SYMLINKS = 1 << 23
ATTR_FILE_SIZE = 4096

_lib = mfusepy._libfuse
_lib.fuse_get_context.restype = ctypes.POINTER(ctypes.c_void_p)
_lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.fuse_invalidate_path.restype = ctypes.c_int
_lib.fuse_notify_poll.argtypes = [ctypes.c_void_p]
_lib.fuse_notify_poll.restype = ctypes.c_int
_lib.fuse_pollhandle_destroy.argtypes = [ctypes.c_void_p]
_lib.fuse_get_session.argtypes = [ctypes.c_void_p]
_lib.fuse_get_session.restype = ctypes.c_void_p
_lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
_lib.fuse_session_custom_io.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
_lib.fuse_lowlevel_notify_inval_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
_lib.fuse_lowlevel_notify_inval_entry.restype = ctypes.c_int
POLL_DEFAULT = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM
POLL_NOTIFIED = select.POLLERR | select.POLLPRI     # kernfs: the attribute was sysfs_notify()'d


class _FuseContext(ctypes.Structure):
    _fields_ = [("fuse", ctypes.c_void_p), ("uid", ctypes.c_uint), ("gid", ctypes.c_uint), ("pid", ctypes.c_int)]


def caller_pid() -> int:
    """The pid of the task whose request this handler thread is serving (fuse_get_context)."""
    ctx = _lib.fuse_get_context()
    return ctypes.cast(ctx, ctypes.POINTER(_FuseContext)).contents.pid if ctx else 0


class Invalidator:
    """``fuse_invalidate_path()`` calls made by helper threads while the request loop waits.

    Dropping a file's cached pages waits for each page's lock.  A page is locked while a READ of
    it is on its way to this daemon, or while a write(2) that did not find it cached waits for our
    WRITE reply; the request loop is single threaded, so it must never wait for a lock only its
    own next reply releases.  It hands the paths to helpers and waits for them as long as they
    make progress: when none finished one for ``patience`` seconds, the ones still busy wait for
    such a lock, and a page locked for that reason holds nothing stale (it is not up to date: the
    next read asks the daemon).  A helper finishes on its own once the lock is released."""

    def __init__(self, fuse_ptr_of: Callable[[], Optional[int]], prefix: str = "", threads: int = 4,
                 patience: float = 0.1):
        self._fuse = fuse_ptr_of
        self._prefix = prefix               # model paths below this are paths of this mount
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.patience = patience
        self.count = 0
        self.late = 0                       # batches not done within patience (a lock held)
        for i in range(threads):
            threading.Thread(target=self._work, daemon=True, name=f"cxlsys-inval{i}").start()

    def _work(self) -> None:
        while True:
            what, done = self._q.get()
            ptr = self._fuse()
            if ptr:
                if isinstance(what, bytes):
                    _lib.fuse_invalidate_path(ptr, what)
                else:                       # (parent node id, name): a dentry, maybe a negative one
                    parent, name = what
                    _lib.fuse_lowlevel_notify_inval_entry(_lib.fuse_get_session(ptr), parent, name, len(name))
            done.release()

    def _mine(self, path: str) -> Optional[bytes]:
        if not self._prefix:
            return b"/" + path.encode()
        if path == self._prefix or path.startswith(self._prefix + "/"):
            return b"/" + path[len(self._prefix) + 1:].encode()
        return None

    def run(self, paths, entries=()) -> None:
        """Invalidate ``paths`` (model paths: an inode's attributes and pages) and ``entries``
        ((parent node id, name): dentries, negative ones too); return once every one is done, or
        once none finished for ``patience`` seconds (those wait for a lock the loop's next reply
        releases: a page's, or the parent directory's while a LOOKUP in it waits for us)."""
        todo: list = [m for m in (self._mine(p) for p in paths) if m is not None]
        todo += [(parent, os.fsencode(name)) for parent, name in entries]
        if not todo:
            return
        done = threading.Semaphore(0)
        for m in todo:
            self._q.put((m, done))
        self.count += len(todo)
        for _ in todo:           # patience is for progress: a big batch takes what it takes
            if not done.acquire(timeout=self.patience):
                self.late += 1
                break


class SysfsOps(mfusepy.Operations):
    use_ns = True

    def __init__(self, sysfs: Sysfs, cache: bool = True, on_change: Optional[Callable[[], None]] = None,
                 kernel_cache: bool = True, prefix: str = ""):
        self.fs = sysfs
        self.sys = sysfs.sys
        self.cache = cache
        # kernel_cache: OPEN answers ENOSYS, so the kernel stops sending OPEN/RELEASE and keeps
        # file contents in its page cache (FOPEN_KEEP_CACHE is the no-open default) until the
        # projection says they read differently (Sync.contents, per attribute scope).  Access
        # checks move from open to read/write (EACCES there).  Off: every open is answered here and
        # contents are direct_io (the daemon renders every read).
        self.kernel_cache = kernel_cache and cache
        self.prefix = prefix.strip("/")        # this mount serves the model below this path
        self.inval = Invalidator(lambda: self.fuse_ptr, self.prefix)
        self.peers: list = []                  # other mounts of the same model (synced together)
        self.on_change = on_change         # called when devices came or went (/dev node sync)
        self.on_init: Optional[Callable[[], None]] = None     # called once the kernel sent INIT
        self._pollers: dict = {}           # real path -> poll handles waiting for a sysfs_notify
        self._pollers_lock = threading.Lock()
        self._seen: dict = {}              # open handle -> the kernfs event count it has seen
        self._next_fh = 0
        self.fuse_ptr = None
        # kernel_cache: the FUSE wire is tapped for the kernel's node ids, so that negative lookups
        # can be cached and forgotten exactly (fuse_mount/wire.py); None until INIT installed it
        self.tap: Optional[WireTap] = None
        self.fs.sync()
        self.t0 = int(time.time() * 1e9)
        self.uid = 0
        self.gid = 0

    @property
    def invalidations(self) -> int:
        return self.inval.count

    def _m(self, path: str) -> str:
        """The model path of a path of this mount."""
        return f"{self.prefix}{path}" if self.prefix else path

    # ------------------------------------------------------------------ init
    def init_with_config(self, conn, config):
        ctx = _lib.fuse_get_context()
        self.fuse_ptr = ctx[0] if ctx else None
        if config is not None:
            t = 86400.0 if self.cache else 0.0
            config.entry_timeout = t
            config.attr_timeout = t
            config.negative_timeout = 0.0
            config.kernel_cache = 0
            if self.kernel_cache and self.fuse_ptr and not os.environ.get("CXLSYS_NO_NEGATIVE"):
                tap = WireTap(lambda p: self.fs.lookup(p) is not None, self.sys.lock, self.prefix,
                              on_bug=lambda e: self.sys.klog.warn_exception("FUSE wire tap", e))
                if tap.install(_lib, self.fuse_ptr):
                    self.tap = tap
                    config.negative_timeout = t
        if conn is not None and self.cache and conn.capable & FUSE_CAP_CACHE_SYMLINKS:
            conn.want |= FUSE_CAP_CACHE_SYMLINKS
        if self.on_init is not None:
            self.on_init()

    # ------------------------------------------------------------------ exactness
    def sync(self, written: Optional[str] = None) -> None:
        """Tell the kernel what changed in the model, for this mount and its peers: entries
        the projection reports stale (vanished, or another kind, mode or link target) and, with
        kernel_cache, the held contents that read differently; ``written`` (a model path) is the
        file this request just wrote — its cached page took the written bytes, so it goes too."""
        for ops in [self] + self.peers:
            ops._sync_one(written if ops is self else None)

    def _sync_one(self, written: Optional[str]) -> None:
        with self.sys.lock:
            ch = self.fs.sync()
            # decided under the model's lock, which the wire tap holds while it sends a LOOKUP reply
            entries: list = []
            listings: set = set()
            if self.tap is not None:
                entries = self.tap.entry_targets(ch.appeared, ch.stale)
                # directories the kernel lists from its cache (FOPEN_CACHE_DIR): those whose
                # listing changed drop it (their mtime, listing_stamp, moved too)
                listings = {p.rpartition("/")[0] for p in ch.appeared | ch.stale}
            contents = ch.contents
            if written is not None and self.kernel_cache:
                # The written file's cached page took the written bytes, but the kernel marked its
                # attributes stale as the write ended (fuse_write_update_attr): the next read asks
                # GETATTR first, whose size/mtime (held_stamp) then differ from what it cached, and
                # it drops the page itself.  Nothing to invalidate here — and nothing could be: its
                # page may be locked by this very write until the reply.
                self.fs.release_held(written)
                contents = contents - {written}
        if self.cache and self.fuse_ptr:
            self.inval.run(ch.stale | contents | listings, entries)
        if ch.notified:
            with self._pollers_lock:
                woken = [ph for p in ch.notified for ph in self._pollers.pop(p, ())]
            for ph in woken:
                _lib.fuse_notify_poll(ph)
                _lib.fuse_pollhandle_destroy(ph)
        if ch.devices and self.on_change is not None:
            self.on_change()

    # ------------------------------------------------------------------ metadata
    def _stat(self, e, path: str) -> dict:
        st = dict(st_uid=self.uid if e.uid is None else e.uid, st_gid=self.gid if e.gid is None else e.gid,
                  st_atime=self.t0, st_mtime=self.t0, st_ctime=self.t0, st_nlink=1)
        if e.kind == S_DIR:
            st.update(st_mode=stat.S_IFDIR | e.mode, st_nlink=2, st_size=0,
                      st_mtime=self.t0 + self.fs.listing_stamp(path) if self.tap is not None else self.t0)
        elif e.kind == S_FILE:
            size, gen = self.fs.held_stamp(path) if self.kernel_cache else (None, 0)
            st.update(st_mode=stat.S_IFREG | e.mode, st_size=ATTR_FILE_SIZE if size is None else size,
                      st_mtime=self.t0 + gen)
        else:
            st.update(st_mode=stat.S_IFLNK | 0o777, st_size=len(self.fs.readlink(path)))
        return st

    def getattr(self, path, fh=None):
        p = self._m(path)
        e = self.fs.lookup(p)
        if e is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return self._stat(e, p)

    def readdir(self, path, fh):
        try:
            return [".", ".."] + self.fs.listdir(self._m(path))
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)

    def readlink(self, path):
        try:
            return self.fs.readlink(self._m(path))
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)

    def statfs(self, path):
        return dict(f_bsize=4096, f_frsize=4096, f_blocks=0, f_bfree=0, f_bavail=0, f_namemax=255)

    # ------------------------------------------------------------------ files
    def open(self, path, fi):
        if self.kernel_cache:
            raise mfusepy.FuseOSError(errno.ENOSYS)      # kernel no_open: opens stop coming here
        p = self._m(path)
        e = self.fs.lookup(p)
        if e is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        if e.kind != S_FILE:
            raise mfusepy.FuseOSError(errno.EISDIR)
        acc = fi.flags & os.O_ACCMODE
        if acc in (os.O_RDONLY, os.O_RDWR) and not e.readable:
            raise mfusepy.FuseOSError(errno.EACCES)
        if acc == os.O_WRONLY and not e.writable or acc == os.O_RDWR and not (e.writable or e.rdwr_open):
            raise mfusepy.FuseOSError(errno.EACCES)
        if fi.flags & os.O_TRUNC and e.writable:     # libfuse 3 passes O_TRUNC here (atomic_o_trunc)
            self.truncate(path, 0)
        fi.direct_io = 1
        fi.fh = self._open_event(self.fs.poll_event(p))
        return 0

    def _open_event(self, event: int) -> int:
        """A handle for one open file: its slot keeps the kernfs event count the open has seen
        (kernfs_open_file.event), moved on every read.  Releases do not reach Python, so the slots
        are a bounded table; a handle whose slot was recycled polls as "seen nothing"."""
        with self._pollers_lock:
            self._next_fh += 1
            fh = self._next_fh
            self._seen[fh] = event
            if len(self._seen) > 8192:
                del self._seen[next(iter(self._seen))]
            return fh

    def poll(self, path, fh, ph, reventsp):
        """kernfs_fop_poll: ready for reading always; POLLERR|POLLPRI once the attribute was
        notified after this open's last read (or the open).  Otherwise the handle waits until
        :meth:`sync` sees the notify; it is registered before the count is checked again, so a
        notify in between is never missed."""
        p = self._m(path)
        key = fh.fh if fh is not None else 0
        real = self.fs.realpath(p) or p.strip("/")
        with self._pollers_lock:
            seen = self._seen.get(key, 0)
            if ph:
                self._pollers.setdefault(real, []).append(ph)
        mask = POLL_DEFAULT
        if self.fs.poll_event(p) != seen:
            mask |= POLL_NOTIFIED
            if ph:
                with self._pollers_lock:
                    waiting = self._pollers.get(real, [])
                    mine = ph in waiting
                    if mine:
                        waiting.remove(ph)
                if mine:
                    _lib.fuse_pollhandle_destroy(ph)
        reventsp[0] = mask
        return 0

    # Per-open state is only the kernfs event count (poll): each read renders the attribute (show)
    # and returns the slice asked for; flush and release are left to libfuse (no Python round trip
    # on close).  With kernel_cache a read is held (Sysfs.read_held): the kernel keeps the page.
    def read(self, path, size, offset, fh):
        p = self._m(path)
        key = getattr(fh, "fh", 0)
        if key in self._seen:
            self._seen[key] = self.fs.poll_event(p)     # kernfs: a read catches up with the events
        try:
            if self.kernel_cache:
                e = self.fs.lookup(p)
                if e is not None and e.kind == S_FILE and not e.readable:
                    raise mfusepy.FuseOSError(errno.EACCES)     # what open would have said
                return self.fs.read_held(p, offset, size)
            return self.fs.read_at(p, offset, size)
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)

    def write(self, path, data, offset, fh):
        p = self._m(path).strip("/")
        try:            # a file that takes no writes: EACCES (from open without kernel_cache)
            with self._as_caller():
                n = self.fs.write(p, data, offset)
        except KernelError as err:
            self.sync(written=p)
            raise mfusepy.FuseOSError(err.errno)
        self.sync(written=p)
        return n

    def truncate(self, path, length, fh=None):
        p = self._m(path)
        try:
            with self._as_caller():
                self.fs.truncate(p)
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)
        self.sync()
        return 0

    def mkdir(self, path, mode):
        try:
            with self._as_caller():
                self.fs.mkdir(self._m(path))
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)
        self.sync()
        return 0

    def rmdir(self, path):
        try:
            with self._as_caller():
                self.fs.rmdir(self._m(path))
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)
        self.sync()
        return 0

    def _as_caller(self):
        """Charge what this request does (trace events) to the calling task, as the kernel would."""
        pid = caller_pid()
        return self.fs.as_task(pid, functools.partial(task_comm, pid))     # read only if an event is

    # chmod/chown: the kernel has already checked the caller may (default_permissions: the owner or
    # CAP_FOWNER), as setattr_prepare does for sysfs; the model keeps the new mode/owner (kernfs iattrs)
    def chmod(self, path, mode):
        try:
            self.fs.setattr(self._m(path), mode=mode)
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)
        self.sync()
        return 0

    def chown(self, path, uid, gid):
        keep = (-1, (1 << 32) - 1)          # chown(2)'s "leave it" (mfusepy may pass either form)
        try:
            self.fs.setattr(self._m(path), uid=None if uid in keep else uid, gid=None if gid in keep else gid)
        except KernelError as err:
            raise mfusepy.FuseOSError(err.errno)
        self.sync()
        return 0

    def utimens(self, path, times=None):
        return 0

    # kernfs directories have no create, mknod, link, symlink, unlink or rename: the VFS answers
    # EACCES for a create (lookup_open) and EPERM for the others (vfs_mknod, vfs_unlink, ...)
    def create(self, path, mode, fi=None):
        raise mfusepy.FuseOSError(errno.EACCES)

    def mknod(self, path, mode, dev):
        raise mfusepy.FuseOSError(errno.EPERM)

    def unlink(self, path):
        raise mfusepy.FuseOSError(errno.EPERM)

    def symlink(self, target, source):
        raise mfusepy.FuseOSError(errno.EPERM)

    def rename(self, old, new):
        raise mfusepy.FuseOSError(errno.EPERM)

    def link(self, target, source):
        raise mfusepy.FuseOSError(errno.EPERM)


# ---------------------------------------------------------------------------------- loud bugs
# mfusepy answers an unexpected exception in a handler with EINVAL, which looks like a kernel
# refusal.  A bug in a handler is EIO for that caller and a WARN with its traceback in the model's
# kernel log, as the kernel's WARN_ON would; the mount keeps serving.
FUSE_OPERATIONS = ("getattr", "readdir", "readlink", "statfs", "open", "poll", "read", "write", "truncate",
                   "mkdir", "rmdir", "chmod", "chown", "utimens", "create", "mknod", "unlink", "symlink", "rename",
                   "link")


def _loud(name: str, fn):
    @functools.wraps(fn)
    def op(self, *args):
        try:
            return fn(self, *args)
        except (mfusepy.FuseOSError, KernelError):
            raise
        except Exception as e:
            path = args[0] if args and isinstance(args[0], str) else ""
            with self.sys.lock:
                self.sys.klog.warn_exception(f"FUSE {name} of /sys{path}", e)
            raise mfusepy.FuseOSError(errno.EIO) from e
    return op


for _name in FUSE_OPERATIONS:
    setattr(SysfsOps, _name, _loud(_name, SysfsOps.__dict__[_name]))
