"""The projection: the model as a sysfs tree of directories, files and symlinks.

Paths are relative to the mount point (``/sys``), e.g. ``bus/cxl/devices/mem0``.
``Sysfs`` is pure: adapters (FUSE, the pyfakefs fixture, tests) call

* :meth:`lookup` -> :class:`Entry` (kind, mode) or ``None``,
* :meth:`listdir`, :meth:`readlink`, :meth:`read`, :meth:`write`,

and get :class:`~cxlsys.errors.KernelError` with the kernel's errno on failure.  A
refused write is also recorded in the kernel log.  ``snapshot()`` lists every entry,
so an adapter can tell exactly which names appeared, vanished or changed after a write.
"""

from __future__ import annotations

import errno
import os
import posixpath
from typing import Iterator, Optional

import attrs

from cxlsys.base.bus import Bus, Driver
from cxlsys.base.device import Attr, AttrGroup, Device, call
from cxlsys.debugfs import VDir, debugfs_root
from cxlsys.errors import KernelError

S_DIR, S_FILE, S_LINK = "dir", "file", "link"


@attrs.define(frozen=True)
class Entry:
    kind: str
    mode: int                    # permission bits (0o755 dirs, 0o777 links, attribute modes)
    target: Optional[str] = None  # link: absolute path below /sys, e.g. 'devices/platform/cxl_acpi.0'
    src: object = None            # what serves it (see _Dir / _File)


@attrs.define(frozen=True)
class _File:
    owner: object
    show: object
    store: object


def _dir(src) -> Entry:
    return Entry(S_DIR, 0o755, src=src)


def _link(target: str) -> Entry:
    return Entry(S_LINK, 0o777, target=target)


def _file(mode: int, owner, show, store) -> Entry:
    return Entry(S_FILE, mode, src=_File(owner, show, store))


def _dev_path(target) -> str:
    return target.path if isinstance(target, Device) else target


class Sysfs:
    def __init__(self, system):
        self.sys = system
        self._cache: dict = {}
        self._kids_cache: dict = {}
        self._cache_gen = -1

    # ------------------------------------------------------------------ directory sources
    def _children(self, src) -> dict:
        """name -> Entry for one directory source."""
        s = self.sys
        kind = src[0]
        if kind == "root":
            return {"bus": _dir(("bus",)), "class": _dir(("empty",)), "dev": _dir(("dev",)),
                    "devices": _dir(("devices",)), "kernel": _dir(("kernel",)), "module": _dir(("modules",))}
        if kind == "kernel":
            return {"debug": _dir(("vdir", debugfs_root(s)))}
        if kind == "vdir":
            out = {}
            for name, node in src[1].entries().items():
                if isinstance(node, VDir):
                    out[name] = _dir(("vdir", node))
                else:
                    out[name] = _file(node.mode, node, (lambda f: f.show()) if node.show else None,
                                      (lambda f, buf: f.store(buf)) if node.store else None)
            return out
        if kind == "empty":
            return {}
        if kind == "bus":
            return {name: _dir(("abus", b)) for name, b in sorted(s.buses.items())}
        if kind == "abus":
            b: Bus = src[1]
            out = {"devices": _dir(("bus_devices", b)), "drivers": _dir(("bus_drivers", b)),
                   "drivers_autoprobe": _file(0o644, b, Bus.drivers_autoprobe_show, Bus.drivers_autoprobe_store),
                   "drivers_probe": _file(0o200, b, None, Bus.drivers_probe_store),
                   "uevent": _file(0o200, b, None, _accept)}
            for f in b.extra_files:
                out[f] = _file(0o200, b, None, getattr(type(b), f"{f}_store"))
            return out
        if kind == "bus_devices":
            return {d.name: _link(d.path) for d in src[1].devices}
        if kind == "bus_drivers":
            return {name: _dir(("driver", d)) for name, d in src[1].drivers.items()}
        if kind == "driver":
            drv: Driver = src[1]
            b = drv.bus
            out = {}
            if drv.bindable:
                out["bind"] = _file(0o200, drv, None, lambda d, buf: b.bind_store(d, buf))
                out["unbind"] = _file(0o200, drv, None, lambda d, buf: b.unbind_store(d, buf))
            for f in drv.extra_files:
                out[f] = _file(0o200, drv, None, getattr(type(drv), f"{f}_store"))
            out["uevent"] = _file(0o200, drv, None, _accept)
            if drv.module:
                out["module"] = _link(f"module/{drv.module}")
            for d in drv.bound_devices():
                out[d.name] = _link(d.path)
            return out
        if kind == "devices":
            return {name: _dir(("device", d)) for name, d in s.top_devices.items()}
        if kind == "device":
            return self._device_children(src[1])
        if kind == "group":
            dev, group = src[1], src[2]
            return self._group_files(dev, group)
        if kind == "modules":
            return {m: _dir(("module", m)) for m in sorted(s.modules)}
        if kind == "module":
            params = s.modules.get(src[1]) or {}
            # a built-in module (e.g. memory_hotplug) has parameters/ but no initstate
            out = {} if getattr(params, "builtin", False) else {"initstate": _file(0o444, src[1], lambda m: "live\n", None)}
            if params:
                out["parameters"] = _dir(("modparams", src[1]))
            return out
        if kind == "modparams":
            params = s.modules.get(src[1]) or {}
            if hasattr(params, "sysfs_params"):     # name -> (mode, show, store), e.g. writable parameters
                return {k: _file(mode, src[1], show, store) for k, (mode, show, store) in params.sysfs_params().items()}
            return {k: _file(0o444, src[1], (lambda v: lambda m: f"{v}\n")(v), None) for k, v in params.items()}
        if kind == "dev":
            return {"block": _dir(("empty",)), "char": _dir(("devchar",))}
        if kind == "devchar":
            out = {}
            for d in self._all_devices():
                if d.devt is not None:
                    out[f"{d.devt[0]}:{d.devt[1]}"] = _link(d.path)
            return out
        raise AssertionError(src)

    def _group_files(self, dev: Device, group: AttrGroup) -> dict:
        out = {}
        for a in group.attrs:
            mode = dev.attr_mode(group, a)
            if mode:
                out[a.name] = _file(mode, dev, a.show, a.store)
        return out

    def _device_children(self, dev: Device) -> dict:
        out: dict = {}
        for g in dev.all_groups():
            if g.name is None:
                out.update(self._group_files(dev, g))
            elif dev.group_visible(g):
                out[g.name] = _dir(("group", dev, g))
        for name, child in dev.children.items():
            out[name] = _dir(("device", child))
        if dev.driver is not None:
            out["driver"] = _link(f"bus/{dev.bus.name}/drivers/{dev.driver.name}")
        if dev.bus is not None:
            out["subsystem"] = _link(f"bus/{dev.bus.name}")
        for name, tgt in dev.links().items():
            out[name] = _link(_dev_path(tgt))
        return out

    def _all_devices(self) -> Iterator[Device]:
        stack = list(self.sys.top_devices.values())
        while stack:
            d = stack.pop()
            yield d
            stack.extend(d.children.values())

    # ------------------------------------------------------------------ resolution
    def _check_cache(self):
        if self._cache_gen != self.sys.generation:
            self._cache.clear()
            self._kids_cache.clear()
            self._cache_gen = self.sys.generation

    def _kids(self, src) -> dict:
        """``_children(src)`` memoized for the current generation: the tree's shape only changes
        with it (a directory of 16384 memory-block links is not rebuilt for every lookup below it)."""
        self._check_cache()
        try:
            return self._kids_cache[src]
        except KeyError:
            kids = self._kids_cache[src] = self._children(src)
            return kids
        except TypeError:        # an unhashable source: no memo
            return self._children(src)

    def lookup(self, path: str) -> Optional[Entry]:
        """The entry at ``path`` (relative to /sys), without following a final symlink."""
        path = path.strip("/")
        with self.sys.lock:
            self._check_cache()
            hit = self._cache.get(path)
            if hit is not None or path in self._cache:
                return hit
            e = self._resolve(path)
            self._cache[path] = e
            return e

    def _follow(self, path: str):
        """(entry, path) at ``path`` with symlinks followed (at most 40 hops, like the VFS)."""
        e = self.lookup(path)
        for _ in range(40):
            if e is None or e.kind != S_LINK:
                return e, path
            path = e.target
            e = self.lookup(path)
        return None, path

    def _resolve(self, path: str) -> Optional[Entry]:
        if path == "":
            return _dir(("root",))
        parent, _, name = path.rpartition("/")
        pe, _ = self._follow(parent)          # a symlink in the middle of a path
        if pe is None or pe.kind != S_DIR:
            return None
        return self._kids(pe.src).get(name)

    def _dir_entry(self, path: str) -> Entry:
        e, _ = self._follow(path)
        if e is None:
            raise KernelError(errno.ENOENT, f"{path}: no such file or directory")
        return e

    def listdir(self, path: str) -> list:
        with self.sys.lock:
            e = self._dir_entry(path)
            if e.kind != S_DIR:
                raise KernelError(errno.ENOTDIR, f"{path}: not a directory")
            return list(self._kids(e.src))

    def readlink(self, path: str) -> str:
        """The relative target, as sysfs shows it."""
        e = self.lookup(path)
        if e is None:
            raise KernelError(errno.ENOENT, f"{path}: no such file")
        if e.kind != S_LINK:
            raise KernelError(errno.EINVAL, f"{path}: not a symlink")
        return kernfs_target_path(self.realpath(posixpath.dirname(path.strip("/"))), e.target)

    def realpath(self, path: str) -> str:
        cur = ""
        for p in (p for p in path.strip("/").split("/") if p):
            _, cur = self._follow(f"{cur}/{p}".strip("/"))
        return cur

    def _file_entry(self, path: str) -> Entry:
        e = self._dir_entry(path)
        if e.kind == S_DIR:
            raise KernelError(errno.EISDIR, f"{path}: is a directory")
        return e

    def read(self, path: str) -> bytes:
        with self.sys.lock:
            e = self._file_entry(path)
            f: _File = e.src
            if f.show is None:
                raise KernelError(errno.EIO, f"{path}: write-only attribute")
            return call(f.owner, f.show).encode("utf-8", "surrogateescape")

    def write(self, path: str, data: bytes) -> int:
        """One write(2) of ``data``: the store sees the text up to the first NUL, like the kernel."""
        with self.sys.lock:
            e = self._file_entry(path)
            f: _File = e.src
            if f.store is None or not (e.mode & 0o222):
                raise KernelError(errno.EACCES, f"{path}: read-only attribute")
            text = StoreBuf(data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
            text.count_ = len(data)
            try:
                call(f.owner, f.store, text)
            except KernelError as err:
                self.sys.klog.log(f"{err.reason} [write {text.rstrip()!r} to /sys/{path.strip('/')}: "
                                  f"{errno.errorcode.get(err.errno, err.errno)}]", "err")
                raise
            finally:
                self.sys.flush_work()
            if not _is_pure(f.owner, f.store):
                self.sys.content_gen += 1
            return len(data)

    # ------------------------------------------------------------------ whole tree
    def walk(self, path: str = "") -> Iterator[tuple]:
        """(path, Entry) for every entry below ``path``, not following symlinks."""
        with self.sys.lock:
            e = self.lookup(path)
            if e is None:
                return
            stack = [(path.strip("/"), e)]
            while stack:
                p, e = stack.pop()
                if p:
                    yield p, e
                if e.kind == S_DIR:
                    kids = self._kids(e.src)
                    for name in sorted(kids, reverse=True):
                        stack.append((f"{p}/{name}".strip("/"), kids[name]))

    def snapshot(self) -> dict:
        """path -> (kind, mode, link target) for the whole tree."""
        return {p: (e.kind, e.mode, e.target) for p, e in self.walk("")}


class StoreBuf(str):
    """The text a store sees (up to the first NUL) plus ``count_``: the length of the write(2)."""

    count_: int = 0


def kernfs_target_path(link_dir: str, target: str) -> str:
    """kernfs_get_target_path(): climb from the link's directory until it is an ancestor of the
    target's parent, then spell the target out from there (so a link to an ancestor still names it)."""
    base = [p for p in link_dir.split("/") if p]
    t = [p for p in target.split("/") if p]
    tparent = t[:-1]
    ups = 0
    while base and base != tparent[: len(base)]:
        base = base[:-1]
        ups += 1
    return "../" * ups + "/".join(t[len(base):])


def _accept(owner, buf):
    return None


_accept.pure = True


def _is_pure(owner, store) -> bool:
    """Stores marked ``pure`` (bus flush, uevent) change no attribute value."""
    fn = getattr(type(owner), store, None) if isinstance(store, str) else store
    return bool(getattr(fn, "pure", False))
