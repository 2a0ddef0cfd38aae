"""The projection: the model as a sysfs tree of directories, files and symlinks.

The tree is made of kernfs nodes (:mod:`cxlsys.kernfs`) built by the objects that own them; this
module only resolves paths and applies the rules every adapter shares.  Paths are relative to the
mount point (``/sys``), e.g. ``bus/cxl/devices/mem0``.  The public interface, used by every adapter
(FUSE, pyfakefs, the dump, benchmarks, tests) — none of them touches anything else:

* :meth:`Sysfs.lookup` (lstat) / :meth:`~Sysfs.stat` -> :class:`Entry` (kind, mode, link target,
  readable, writable) or ``None``;
  :meth:`~Sysfs.entries`, :meth:`~Sysfs.listdir`, :meth:`~Sysfs.readlink`, :meth:`~Sysfs.realpath`;
* :meth:`~Sysfs.read_held` — a read for an adapter whose cache keeps what it returned (the
  kernel's page cache): :meth:`~Sysfs.sync` then names it in ``contents`` once it reads differently;
* :meth:`~Sysfs.read`, :meth:`~Sysfs.read_at`, :meth:`~Sysfs.write` — a refused store raises
  :class:`~cxlsys.errors.KernelError` with the kernel's errno (and is logged with its reason);
* :meth:`~Sysfs.truncate` (``open(O_TRUNC)``), :meth:`~Sysfs.mkdir`, :meth:`~Sysfs.rmdir` — what
  tracefs needs (clearing ``trace``; ``instances/<name>``); a no-op / EPERM elsewhere;
* :meth:`~Sysfs.walk`, :meth:`~Sysfs.snapshot` — the whole tree;
* :meth:`~Sysfs.sync` — what changed since the last call: the paths an adapter that caches
  entries must forget (exact: computed from the model's change reports,
  :mod:`cxlsys.base.changes`, against the listings this projection served);
* :meth:`~Sysfs.char_devices` — the ``/dev`` nodes the model's char devices want;
  :meth:`~Sysfs.ioctl` — an ioctl on one of them (its ``unlocked_ioctl``), with the caller's memory
  reached through a :class:`~cxlsys.kernel.uaccess.UserMemory`.
"""

from __future__ import annotations

import errno
from typing import Callable, Iterator, Optional

import attrs

from cxlsys.base.device import CLASSES, DEV_CHAR, TOP_DEVICES, SysfsDir
from cxlsys.debugfs import debugfs_root
from cxlsys.errors import KernelError
from cxlsys.journal import RecordingUserMemory, payload
from cxlsys.kernfs import (
    ANY,
    OWN,
    S_DIR,
    S_FILE,
    S_LINK,
    KBinFile,
    KDir,
    KLink,
    kernfs_readdir_order,
    kernfs_target_path,
)
from cxlsys.procfs import procfs_dir
from cxlsys.tracefs import tracefs_root

__all__ = ["S_DIR", "S_FILE", "S_LINK", "Entry", "StoreBuf", "Sync", "Sysfs", "kernfs_target_path"]

MODULES = SysfsDir("module")
# not sysfs: the projection's own directory, found by lookup, never listed (``/proc`` files of the model)
CXLSYS_DIR = ".cxlsys"
# below /sys but not kernfs: tracefs and debugfs (libfs: their own readdir order), the model's /proc
NOT_KERNFS = ("kernel/tracing", "kernel/debug", CXLSYS_DIR)
BUSES = SysfsDir("bus")


@attrs.frozen
class Entry:
    """What an adapter may know about one path (never how it is served)."""

    kind: str                    # S_DIR | S_FILE | S_LINK
    mode: int                    # permission bits (0o755 dirs, 0o777 links, attribute modes)
    target: Optional[str] = None  # link: absolute path below /sys, e.g. 'devices/platform/cxl_acpi.0'
    readable: bool = False       # file: has a show (reads succeed or fail with the show's errno)
    writable: bool = False       # file: has a store and a write bit
    binary: bool = False         # file: a binary attribute (offset reads and writes)
    rdwr_open: bool = False      # file: open(O_RDWR) allowed for a reader (tracefs; kernfs refuses)
    uid: Optional[int] = None    # owner set by root's chown (None: the mount's owner)
    gid: Optional[int] = None


@attrs.frozen
class Sync:
    """:meth:`Sysfs.sync`'s answer."""

    stale: frozenset             # paths that vanished or changed kind/mode/target (entries to forget)
    shape: bool                  # some directory lists differently
    devices: bool                # a device came or went
    values: bool                 # some attribute value may have changed
    notified: frozenset = frozenset()   # files sysfs_notify()'d: wake their poll(2)ers
    contents: frozenset = frozenset()   # files read with read_held() that read differently now
    appeared: frozenset = frozenset()   # names new in a listing served (a cache of "no such entry" forgets them)


def _entry(node, ia: Optional[dict] = None) -> Entry:
    """``ia``: root's chmod/chown of the node (kernfs iattrs).  As kernfs_fop_open, a file opens
    for reading/writing only if it has the operation *and* its mode (as changed) has a bit for it —
    for root too."""
    if node.kind == S_LINK:
        return Entry(S_LINK, 0o777, target=node.target)
    mode = node.mode if ia is None else ia.get("mode", node.mode)
    uid, gid = (None, None) if ia is None else (ia.get("uid"), ia.get("gid"))
    if node.kind == S_DIR:
        return Entry(S_DIR, mode, uid=uid, gid=gid)
    return Entry(S_FILE, mode, readable=node.readable and (ia is None or bool(mode & 0o444)),
                 writable=node.writable and (ia is None or bool(mode & 0o222)),
                 binary=isinstance(node, KBinFile), rdwr_open=getattr(node, "rdwr_open", False), uid=uid, gid=gid)


def sysfs_root(s) -> KDir:
    """``/sys``: the owners of its top directories are the system's buses, devices and modules."""
    return KDir(lambda: {
        "bus": KDir(lambda: {n: b.kernfs_dir() for n, b in sorted(s.buses.items())}, owner=BUSES),
        "class": KDir(lambda: _classes(s), owner=CLASSES),
        "dev": KDir(lambda: {"block": KDir(dict), "char": KDir(lambda: _dev_char(s), owner=DEV_CHAR)}),
        "devices": KDir(lambda: {n: d.kernfs_dir() for n, d in s.top_devices.items()}, owner=TOP_DEVICES),
        "kernel": KDir(lambda: {"debug": debugfs_root(s), "tracing": tracefs_root(s)}),
        "module": KDir(lambda: {n: m.kernfs_dir() for n, m in sorted(s.modules.items())}, owner=MODULES),
    }, hidden=lambda: {CXLSYS_DIR: KDir(lambda: {"proc": procfs_dir(s)})})


def _classes(s) -> dict:
    """``/sys/class/<class>/<name>`` -> the device, for devices of a class (``dev_class``)."""
    by: dict = {}
    for d in s.all_devices():
        cls = getattr(d, "dev_class", None)
        if cls:
            by.setdefault(cls, {})[d.name] = KLink(d.path)
    return {c: KDir(_const(kids), owner=SysfsDir(f"class/{c}")) for c, kids in sorted(by.items())}


def _const(d: dict) -> Callable[[], dict]:
    return lambda: d


def _dev_char(s) -> dict:
    return {f"{d.devt[0]}:{d.devt[1]}": KLink(d.path) for d in s.all_devices() if d.devt is not None}


PAGE_SIZE = 4096


class Sysfs:
    """The /sys of a :class:`~cxlsys.system.System`, in-process: paths relative to ``/sys``, without
    the leading slash (``"bus/cxl/devices/mem0/serial"``).  Reads give bytes, as read(2) does; a
    refused store raises ``OSError`` with the kernel's errno (a :class:`~cxlsys.errors.KernelError`,
    whose ``reason`` is the kernel log's line).  Every adapter (the mount, pyfakefs, the dump) uses
    this interface and nothing else; any number of them may share one system."""

    def __init__(self, system):
        self.sys = system
        self.root = sysfs_root(system)
        self._listings: dict = {}      # real dir path -> {name: node}: every listing served
        self._below: dict = {}         # real dir path -> real paths of the listings served right below it
        self._shapes: dict = {}        # real dir path -> its KDir.shape() when the listing was built
        self._paths: dict = {}         # path -> (node, real path): resolution cache
        self._entries: dict = {}       # (path, follow) -> Entry: what lookup()/stat() answered
        self._seen = system.changes.gen
        self._stale: set = set()
        self._appeared: set = set()
        self._flags = [False, False, False]   # shape, devices, values since the last sync()
        self._notified: set = set()           # paths sysfs_notify()'d since the last sync()
        # read_held(): path -> (node, contents served; None for a binary attribute); indexed by
        # the owner (CONST and OWN files) or kept apart (ANY files: compared after every report)
        self._held: dict = {}
        self._held_by_owner: dict = {}        # id(owner) -> set of paths
        self._held_any: set = set()
        self._contents: set = set()           # held files that read differently since the last sync()
        self._released: dict = {}             # path -> how many times its held contents were let go
        self._relisted: dict = {}             # dir path -> how many times a listing served of it changed

    # ------------------------------------------------------------------ change tracking
    def _refresh(self) -> None:
        """Run due delayed work (cxlsys/kernel/timer.py), then apply the model's change reports to
        what this projection served."""
        self.sys.run_timers()
        ch = self.sys.changes
        if ch.gen == self._seen:
            return
        cs = ch.since(self._seen)
        self._seen = ch.gen
        self._flags[1] |= cs.devices
        self._flags[2] |= cs.values
        self._notified.update(cs.notified)
        if self._held:
            self._check_held(cs)
        if not cs.shape:
            return
        for path in cs.removed + cs.iattrs:
            self._forget(path)
        dirty: set[str]
        if cs.everything:
            dirty = set(self._listings)
        else:
            dirty = {p for o in cs.owners for p in o.kernfs_paths()}
        for path in sorted(dirty, key=lambda p: (p.count("/"), p)):
            old = self._listings.get(path)
            if old is None:
                continue                        # never served: nothing can be cached below it
            node, real = self._follow(path)
            if node is None or node.kind != S_DIR or real != path:
                self._forget(path)
                continue
            shape = node.shape() if node.shape is not None else None
            if shape is not None and self._shapes.get(path) == shape:
                continue                        # lists as before: the nodes built then are live
            self._shapes[path] = shape
            new = self._listings[path] = node.children()
            self._resolved_stale()
            changed = False
            for name, n in old.items():
                m = new.get(name)
                if m is None or m.sig() != n.sig():
                    self._forget(f"{path}/{name}" if path else name)
                    changed = True
            if new.keys() != old.keys():
                self._flags[0] = changed = True
                self._appeared.update(f"{path}/{name}" if path else name for name in new.keys() - old.keys())
            if changed:
                self._relisted[path] = self._relisted.get(path, 0) + 1

    def _check_held(self, cs) -> None:
        """Which held contents may read differently after the reports ``cs``: every file when the
        whole tree may have changed; the files of an owner that was deleted; OWN files of an owner
        that was touched, and every ANY file, if they render differently (binary ones always)."""
        if cs.everything:
            for p in list(self._held):
                self._unhold(p)
            return
        for o in cs.owners:
            paths = self._held_by_owner.get(id(o))
            if not paths:
                continue
            gone = getattr(o, "registered", True) is False
            for p in list(paths):
                node, data = self._held[p]
                if gone or node.scope == OWN and self._render(node) != data:
                    self._unhold(p)
        if cs.values:
            for p in list(self._held_any):
                node, data = self._held[p]
                if data is None or self._render(node) != data:
                    self._unhold(p)

    def _render(self, node) -> Optional[bytes]:
        """A held text attribute's contents now (None: its show fails now)."""
        try:
            return node.show().encode("utf-8", "surrogateescape")
        except Exception:
            return None

    def _unhold(self, path: str) -> None:
        node, _ = self._held.pop(path)
        self._contents.add(path)
        self._released[path] = self._released.get(path, 0) + 1
        if isinstance(node, KBinFile) or node.scope == ANY:
            self._held_any.discard(path)
        else:
            paths = self._held_by_owner.get(id(node.owner))
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._held_by_owner[id(node.owner)]

    def _resolved_stale(self) -> None:
        """A listing was replaced or dropped: resolutions through it may name old nodes."""
        self._paths.clear()
        self._entries.clear()

    def _forget(self, path: str) -> None:
        """``path`` vanished or changed: it and every entry served below it are stale."""
        self._resolved_stale()
        self._stale.add(path)
        self._flags[0] = True
        parent = path.rpartition("/")[0]
        below = self._below.get(parent)
        if below is not None:
            below.discard(path)
        self._drop(path)

    def _drop(self, path: str) -> None:
        self._shapes.pop(path, None)
        kids = self._listings.pop(path, None)
        if kids is not None:
            self._relisted[path] = self._relisted.get(path, 0) + 1
            self._stale.update(f"{path}/{name}" if path else name for name in kids)
        for sub in self._below.pop(path, ()):
            self._drop(sub)

    def sync(self) -> Sync:
        """Everything that changed since the last ``sync()``: the stale paths (vanished, or a
        different kind, mode or link target) of what this projection served, exactly."""
        with self.sys.lock:
            self._refresh()
            shape, devices, values = self._flags
            for p in self._stale & self._held.keys():
                self._unhold(p)             # an entry to forget: the adapter drops its contents too
            out = Sync(frozenset(self._stale), shape, devices, values, frozenset(self._notified),
                       frozenset(self._contents - self._stale), frozenset(self._appeared))
            self._stale = set()
            self._appeared = set()
            self._notified = set()
            self._contents = set()
            self._flags = [False, False, False]
            return out

    def run_timers(self) -> Optional[float]:
        """Run the model's delayed work that is due; the seconds until the next is due (None: no
        timer pending).  What an adapter's timer thread calls (then :meth:`sync`)."""
        with self.sys.lock:
            self.sys.run_timers()
            deadline = self.sys.timers.next_deadline()
            return None if deadline is None else max(0.0, deadline - self.sys.timers.clock())

    def on_timer_added(self, fn: Optional[Callable[[], None]]) -> None:
        """Call ``fn`` whenever the model schedules delayed work (an adapter's timer thread wakes)."""
        self.sys.timers.on_add = fn

    def as_task(self, pid: int, comm):
        """A context: what the model does inside is done on behalf of task ``pid`` (trace events
        are charged to it), as the kernel runs a system call in its caller's context.  ``comm``:
        its name, or a function giving it (asked only if an event is charged)."""
        return self.sys.tracing.current(pid, comm)

    def poll_event(self, path: str) -> int:
        """The kernfs event count of the file at ``path`` (symlinks followed): it moves each time
        the model ``sysfs_notify()``s the attribute; a poll(2)er waits for it to change."""
        if not self.sys.changes.events:       # nothing was ever notified: every count is 0
            return 0
        with self.sys.lock:
            self._refresh()
            real = self.realpath(path)
            return self.sys.changes.events.get(real, 0) if real is not None else 0

    # ------------------------------------------------------------------ resolution
    def _listing(self, real: str, node: KDir) -> dict:
        kids = self._listings.get(real)
        if kids is None:
            if node.shape is not None:
                self._shapes[real] = node.shape()
            kids = node.children()
            if not any(real == d or real.startswith(d + "/") for d in NOT_KERNFS):
                kids = kernfs_readdir_order(kids)     # sysfs lists in kernfs's order (tracefs/debugfs do not)
            self._listings[real] = kids
            if real:
                self._below.setdefault(real.rpartition("/")[0], set()).add(real)
        return kids

    def _locate(self, path: str):
        """(node, real path) at ``path``, symlinks in the middle followed, not a final one."""
        hit = self._paths.get(path)
        if hit is not None:
            return hit
        if not path:
            return self.root, ""
        parent, _, name = path.rpartition("/")
        pnode, preal = self._follow(parent)
        if pnode is None or pnode.kind != S_DIR:
            return None, path
        node = self._listing(preal, pnode).get(name)
        if node is None and pnode.hidden is not None:
            node = pnode.hidden().get(name)
        hit = (node, f"{preal}/{name}" if preal else name)
        if node is not None:
            self._paths[path] = hit
        return hit

    def _follow(self, path: str):
        """(node, real path) at ``path`` with symlinks followed (at most 40 hops, like the VFS)."""
        node, real = self._locate(path)
        for _ in range(40):
            if node is None or node.kind != S_LINK:
                return node, real
            node, real = self._locate(node.target)
        return None, real

    def _cached_entry(self, path: str, follow: bool) -> Optional[Entry]:
        with self.sys.lock:
            self._refresh()
            key = (path, follow)
            hit = self._entries.get(key)
            if hit is None:
                p = path.strip("/")
                node, real = self._follow(p) if follow else self._locate(p)
                if node is None:
                    return None
                hit = self._entries[key] = _entry(node, self.sys.changes.iattrs.get(real))
            return hit

    def lookup(self, path: str) -> Optional[Entry]:
        """The entry at ``path`` (relative to /sys), without following a final symlink."""
        return self._cached_entry(path, False)

    def stat(self, path: str) -> Optional[Entry]:
        """The entry at ``path`` with symlinks followed (``lookup`` is lstat, this is stat)."""
        return self._cached_entry(path, True)

    def _dir(self, path: str):
        node, real = self._follow(path.strip("/"))
        if node is None:
            raise KernelError(errno.ENOENT, f"{path}: no such file or directory")
        if node.kind != S_DIR:
            raise KernelError(errno.ENOTDIR, f"{path}: not a directory")
        return node, real

    def entries(self, path: str) -> dict:
        """name -> Entry of the directory at ``path`` (symlinks to it followed)."""
        with self.sys.lock:
            self._refresh()
            node, real = self._dir(path)
            ia = self.sys.changes.iattrs
            return {n: _entry(c, ia.get(f"{real}/{n}" if real else n)) for n, c in self._listing(real, node).items()}

    def listdir(self, path: str) -> list:
        """The names in directory ``path`` (a link to a directory is followed), as os.listdir."""
        with self.sys.lock:
            self._refresh()
            node, real = self._dir(path)
            return list(self._listing(real, node))

    def readlink(self, path: str) -> str:
        """The relative target, as sysfs shows it."""
        with self.sys.lock:
            self._refresh()
            p = path.strip("/")
            node, real = self._locate(p)
            if node is None:
                raise KernelError(errno.ENOENT, f"{path}: no such file")
            if node.kind != S_LINK:
                raise KernelError(errno.EINVAL, f"{path}: not a symlink")
            return kernfs_target_path(real.rpartition("/")[0], node.target)

    def realpath(self, path: str) -> str:
        """``path`` with every link resolved (relative to /sys), as realpath(1) prints it."""
        with self.sys.lock:
            self._refresh()
            return self._follow(path.strip("/"))[1]

    def _file(self, path: str):
        node, _ = self._follow(path.strip("/"))
        if node is None:
            raise KernelError(errno.ENOENT, f"{path}: no such file or directory")
        if node.kind == S_DIR:
            raise KernelError(errno.EISDIR, f"{path}: is a directory")
        return node

    # ------------------------------------------------------------------ contents
    def read(self, path: str) -> bytes:
        """The whole contents (a show's text, or a binary attribute from offset 0)."""
        return self.read_at(path, 0, None)

    def read_at(self, path: str, offset: int, size: Optional[int]) -> bytes:
        """``size`` bytes (None: all) from ``offset``, as pread(2) on the file gives them."""
        with self.sys.lock:
            self._refresh()
            return self._read_node(path, self._file(path), offset, size)

    def _read_node(self, path: str, node, offset: int, size: Optional[int]) -> bytes:
        if not node.readable:
            raise KernelError(errno.EIO, f"{path}: write-only attribute")
        if not self._mode_allows(path, 0o444):
            raise KernelError(errno.EACCES, f"{path}: no read permission (mode changed)")
        if isinstance(node, KBinFile):
            assert node.read is not None
            return self._call(f"read of /sys/{path.strip('/')}", node.read, offset,
                              node.size - offset if size is None else size)
        assert node.show is not None
        data = self._call(f"read of /sys/{path.strip('/')}", node.show).encode("utf-8", "surrogateescape")
        return data[offset:] if size is None else data[offset:offset + size]

    def read_held(self, path: str, offset: int, size: int) -> bytes:
        """:meth:`read_at` for an adapter whose cache keeps what this returns (the kernel's page
        cache behind a FUSE mount that lets the kernel keep contents): the projection remembers
        the file and names it in :attr:`Sync.contents` once it may read differently, per the
        attribute's declared scope (:data:`cxlsys.kernfs.CONST`, ``OWN``, ``ANY``)."""
        with self.sys.lock:
            self._refresh()
            node = self._file(path)
            binary = isinstance(node, KBinFile)
            # a text attribute is rendered whole (what is held), a binary one read as asked
            data = self._read_node(path, node, offset, size) if binary else self._read_node(path, node, 0, None)
            p = path.strip("/")
            self._release(p)
            self._held[p] = (node, None if binary else data)
            if binary or node.scope == ANY:
                self._held_any.add(p)
            else:
                self._held_by_owner.setdefault(id(node.owner), set()).add(p)
            return data if binary else data[offset:offset + size]

    def release_held(self, path: str) -> bool:
        """The adapter's cache no longer holds ``path`` (it was written through that cache, which
        took the written bytes); whether it held it."""
        with self.sys.lock:
            return self._release(path.strip("/"))

    def held_stamp(self, path: str) -> tuple:
        """(length, generation) of the file at ``path`` for an adapter's cache: the length of the
        text contents it holds (None: it holds none, or binary ones) and how many times held
        contents of it were let go (changed, written, or vanished with their owner).  A FUSE mount
        answers GETATTR with them as size and mtime: the kernel keeps its cached pages while both
        are what it saw and drops them itself when either moved."""
        p = path.strip("/")
        with self.sys.lock:
            held = self._held.get(p)
            return (None if held is None or held[1] is None else len(held[1]), self._released.get(p, 0))

    def listing_stamp(self, path: str) -> int:
        """How many times a listing this projection served of the directory at ``path`` changed
        (names, kinds, modes, link targets) or was dropped: a FUSE mount answers it as the
        directory's mtime, which the kernel compares before it lists from its cache."""
        with self.sys.lock:
            return self._relisted.get(path.strip("/"), 0)

    def _release(self, p: str) -> bool:
        """Forget that ``p`` is held, without reporting it changed (the adapter knows)."""
        if p not in self._held:
            return False
        self._unhold(p)
        self._contents.discard(p)
        return True

    def value_scope(self, path: str) -> tuple:
        """(scope, owner) the text attribute at ``path`` declares (:data:`cxlsys.kernfs.CONST`,
        ``OWN``, ``ANY``): what tests check against the change reports (tests/test_scopes.py)."""
        with self.sys.lock:
            self._refresh()
            node = self._file(path)
            return (ANY, None) if isinstance(node, KBinFile) else (node.scope, node.owner)

    def write(self, path: str, data: bytes, offset: int = 0) -> int:
        """One write(2) of ``data``: an attribute's store sees the text up to the first NUL, like
        the kernel; a binary attribute gets the bytes at ``offset``."""
        with self.sys.lock:
            self._refresh()
            node = self._file(path)
            if not node.writable or not self._mode_allows(path, 0o222):
                raise KernelError(errno.EACCES, f"{path}: read-only attribute")
            text = None
            if not data:
                return 0                    # sysfs_kf_write: an empty write never reaches the store
            if not isinstance(node, KBinFile) and len(data) > PAGE_SIZE and not path.strip("/").startswith(
                    ("kernel/tracing", "kernel/debug")):
                # kernfs_fop_write_iter: a sysfs attribute's store sees at most a page; the write(2) is
                # short, and the caller writes the rest as another store
                data = data[:PAGE_SIZE]
            try:
                if isinstance(node, KBinFile):
                    assert node.write is not None
                    n = node.write(bytes(data), offset)
                    self.sys.journal_record("write", path=path.strip("/"), offset=offset, **payload(bytes(data)))
                    return n
                text = StoreBuf(data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
                text.count_ = len(data)
                assert node.store is not None
                node.store(text)
                if not getattr(node, "pure", False):
                    self.sys.journal_record("write", path=path.strip("/"), **payload(bytes(data)))
            except KernelError as err:
                shown = repr(text.rstrip()) if text is not None else f"{len(data)} bytes"
                self.sys.klog.log(f"{err.reason} [write {shown} to /sys/{path.strip('/')}: "
                                  f"{errno.errorcode.get(err.errno, err.errno)}]", "err", tag="store")
                raise
            except Exception as e:
                raise self._internal(f"write to /sys/{path.strip('/')}", e) from e
            finally:
                self.sys.flush_work()
                if not getattr(node, "pure", False):
                    self.sys.changes.values()
            return len(data)

    def truncate(self, path: str) -> None:
        """truncate(2) / open(O_TRUNC): a no-op on attributes, except files whose truncate does
        something (tracefs ``trace`` clears its buffer, ``set_event`` disables every event)."""
        with self.sys.lock:
            self._refresh()
            node = self._file(path)
            fn = getattr(node, "truncate", None)
            if fn is not None:
                if not node.writable:
                    raise KernelError(errno.EACCES, f"{path}: read-only file")
                self._call(f"truncate /sys/{path.strip('/')}", fn)
                self.sys.journal_record("truncate", path=path.strip("/"))
                self.sys.changes.values()

    def mkdir(self, path: str) -> None:
        """mkdir(2): only directories that take new children accept it (tracefs ``instances/``);
        EPERM elsewhere, like kernfs directories without a mkdir operation."""
        with self.sys.lock:
            self._refresh()
            p = path.strip("/")
            parent, _, name = p.rpartition("/")
            pnode, _ = self._dir(parent)
            if self._follow(p)[0] is not None:
                raise KernelError(errno.EEXIST, f"{path}: exists")
            fn = getattr(pnode, "mkdir", None)
            if fn is None:
                raise KernelError(errno.EPERM, f"{path}: mkdir not supported here")
            self._call(f"mkdir /sys/{p}", fn, name)
            self.sys.journal_record("mkdir", path=p)
            self._refresh()

    def rmdir(self, path: str) -> None:
        """rmdir(2): only children of a directory that takes rmdir (tracefs ``instances/<name>``)."""
        with self.sys.lock:
            self._refresh()
            p = path.strip("/")
            parent, _, name = p.rpartition("/")
            pnode, _ = self._dir(parent)
            node, _ = self._locate(p)
            if node is None:
                raise KernelError(errno.ENOENT, f"{path}: no such directory")
            if node.kind != S_DIR:
                raise KernelError(errno.ENOTDIR, f"{path}: not a directory")
            fn = getattr(pnode, "rmdir", None)
            if fn is None:
                raise KernelError(errno.EPERM, f"{path}: rmdir not supported here")
            self._call(f"rmdir /sys/{p}", fn, name)
            self.sys.journal_record("rmdir", path=p)
            self._refresh()

    def _mode_allows(self, path: str, bits: int) -> bool:
        """False only if root's chmod took away every ``bits`` of the file (kernfs_fop_open)."""
        ia = self.sys.changes.iattrs
        if not ia:
            return True
        got = ia.get(self._follow(path.strip("/"))[1])
        return got is None or "mode" not in got or bool(got["mode"] & bits)

    def setattr(self, path: str, mode: Optional[int] = None, uid: Optional[int] = None,
                gid: Optional[int] = None) -> None:
        """chmod(2)/chown(2) by root (kernfs_iop_setattr): the node keeps the new permission bits
        (``mode & 0o7777``) and owner until it is removed.  Symlinks are followed, like chmod;
        a symlink itself cannot change (sysfs links are always 0777).  Who may do this is the
        adapter's check (the FUSE mount lets the kernel's setattr_prepare decide: root, or the
        owner)."""
        with self.sys.lock:
            self._refresh()
            p = path.strip("/")
            node, real = self._follow(p)
            if node is None:
                raise KernelError(errno.ENOENT, f"{path}: no such file or directory")
            if mode is not None:
                mode &= 0o7777
            if uid is not None and not 0 <= uid < (1 << 32) - 1 or gid is not None and not 0 <= gid < (1 << 32) - 1:
                raise KernelError(errno.EINVAL, f"{path}: invalid owner {uid}:{gid}")
            if mode is None and uid is None and gid is None:
                return
            self.sys.changes.setattr(real, mode=mode, uid=uid, gid=gid)
            self.sys.journal_record("setattr", path=real, mode=mode, uid=uid, gid=gid)
            self._refresh()

    # ------------------------------------------------------------------ whole tree
    def walk(self, path: str = "") -> Iterator[tuple]:
        """(path, Entry) for every entry below ``path``, not following symlinks."""
        with self.sys.lock:
            self._refresh()
            start = path.strip("/")
            node, real = self._locate(start)
            if node is None:
                return
            stack = [(start, real, node)]
            while stack:
                p, r, n = stack.pop()
                if p:
                    yield p, _entry(n, self.sys.changes.iattrs.get(r))
                if n.kind == S_DIR:
                    kids = self._listing(r, n)
                    for name in sorted(kids, reverse=True):
                        stack.append((f"{p}/{name}".strip("/"), f"{r}/{name}".strip("/"), kids[name]))

    def snapshot(self) -> dict:
        """path -> (kind, mode, link target) for the whole tree."""
        return {p: (e.kind, e.mode, e.target) for p, e in self.walk("")}

    def char_devices(self) -> dict:
        """/dev name -> (major, minor) of every char device the model has (``cxl/mem0``, ``dax0.0``)."""
        with self.sys.lock:
            return {d.devname: d.devt for d in self.sys.all_devices() if d.devt is not None and d.devname}


    def _internal(self, where: str, e: Exception) -> KernelError:
        """An unexpected exception in the model is a bug: WARN with its traceback in the kernel log,
        and EIO for the caller — never a made-up kernel refusal."""
        self.sys.klog.warn_exception(where, e)
        return KernelError(errno.EIO, f"internal error in {where}: {e!r}")

    def _call(self, where: str, fn, *args):
        try:
            return fn(*args)
        except KernelError:
            raise
        except Exception as e:
            raise self._internal(where, e) from e

    def ioctl_nodes(self) -> set:
        """The /dev names of the char devices that take ioctls (a device class with ``ioctl``)."""
        with self.sys.lock:
            return {d.devname for d in self.sys.all_devices()
                    if d.devt is not None and d.devname and callable(getattr(d, "ioctl", None))}

    def ioctl(self, devname: str, cmd: int, arg: int, uaccess, f_flags: int = 0o2) -> int:
        """ioctl(2) on ``/dev/<devname>`` opened with ``f_flags`` (O_RDWR by default): the device's
        ``ioctl(cmd, arg, uaccess, f_flags)`` return value.
        KernelError: ENXIO when no device has that node any more (the kernel's dead-cdev answer),
        ENOTTY when the device takes no ioctls, the device's errno otherwise; an unexpected
        exception is an internal bug: EIO, with its traceback in the kernel log."""
        with self.sys.lock:
            self._refresh()
            dev = next((d for d in self.sys.all_devices() if d.devt is not None and d.devname == devname), None)
            if dev is None:
                raise KernelError(errno.ENXIO, f"/dev/{devname}: no such device")
            fn = getattr(dev, "ioctl", None)
            if fn is None:
                raise KernelError(errno.ENOTTY, f"/dev/{devname}: no ioctls")
            rec = RecordingUserMemory(uaccess) if self.sys.journal is not None else None
            try:
                ret = int(self._call(f"ioctl {cmd:#x} on /dev/{devname}", fn, cmd, arg, rec or uaccess, f_flags))
                if rec is not None:
                    self.sys.journal_record("ioctl", dev=devname, cmd=cmd, arg=arg, f_flags=f_flags, reads=rec.reads)
                return ret
            finally:
                self.sys.flush_work()
                self.sys.changes.values()


class StoreBuf(str):
    """The text a store sees (up to the first NUL) plus ``count_``: the length of the write(2)."""

    count_: int = 0
