"""The kernel a policy test talks to — what the ``cxl_kernel`` fixture (:mod:`cxlsys.pytest_plugin`)
yields: one booted cxlsys machine behind a small file API, in-process or through a real mount, with
the same answers either way.

Paths are absolute, as on a machine: ``/sys/...``, ``/proc/meminfo`` and ``/proc/iomem``::

    k.read("/sys/bus/cxl/devices/region0/size")            # "0x20000000\\n", as cat prints it
    k.write("/sys/bus/cxl/devices/region0/commit", "1")    # "1\\n" works as well: sysfs takes either
    k.exists(p), k.listdir(p), k.readlink(p), k.realpath(p)
    k.mm.alloc_candidates("GFP_HIGHUSER_MOVABLE")           # the allocation oracle: [0, ...]

Errors are the ones the real files give: a refused store raises ``OSError(errno, os.strerror(errno),
path)`` with the kernel's errno, a missing path ``FileNotFoundError``, a directory read
``IsADirectoryError``, a read of a write-only (or a write of a read-only) attribute ``EACCES``.

* :class:`InProcessKernel` — the projection (:class:`cxlsys.sysfs.Sysfs`) over a ``System`` in this
  process: no root, no FUSE, milliseconds; ``.system`` is the booted machine.
* :class:`MountedKernel` — ``python -m cxlsys mount`` at a temporary directory: every call is a real
  open/read/write/readdir/readlink under it (``/proc/X`` is ``DIR/.cxlsys/proc/X``), ``.mm`` goes over
  the daemon's control socket (``{"cmd": "mm", ...}``, :func:`mm_call` on the daemon's side).
  ``.system`` is None: the machine lives in the daemon.

The helpers (:meth:`CxlKernel.provision_ram_region`, :meth:`CxlKernel.online`, ...) are written once,
on the file API, so both backends run exactly the same reads and writes.
"""

from __future__ import annotations

import errno as _errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any, Optional

import attrs

from cxlsys.cli.main import control_path
from cxlsys.errors import KernelError
from cxlsys.procfs import iomem_dax_blocks
from cxlsys.sysfs import S_DIR, Sysfs
from cxlsys.system import System

__all__ = ["CxlKernel", "InProcessKernel", "MountedKernel", "MM_FUNCTIONS", "mm_call", "mm_raise"]

Data = bytes | str

#: The oracle's functions a client may call (:class:`cxlsys.mm.mempolicy.Mm`).
MM_FUNCTIONS = ("alloc_candidates", "set_mempolicy", "node_allows")

#: Exceptions of the oracle that reach the caller as they are (bad arguments): by name over the socket.
_PASSED = {"ValueError": ValueError, "TypeError": TypeError}

_DEVICES = "/sys/bus/cxl/devices"
_NO_DPA = (1 << 64) - 1                # dpa_resource of a decoder without DPA


def _oserror(err: int, path: str) -> OSError:
    """What the real file call raises: ``OSError`` (its errno's subclass) with the caller's path."""
    return OSError(err, os.strerror(err), path)


def _relabel(err: OSError, path: str) -> OSError:
    """A failed call on the mount, labelled with the caller's path instead of the mount's."""
    return _oserror(err.errno, path) if err.errno is not None else err


def _plain(value: Any) -> Any:
    """A JSON value for an oracle result: attrs instances as dicts, tuples and sets as lists."""
    if attrs.has(type(value)):
        return {k: _plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def mm_call(system, fn: str, args: list | tuple = (), kwargs: Optional[Mapping] = None) -> Any:
    """Call ``system.mm.<fn>(*args, **kwargs)`` under the model's lock and return the result as the
    JSON value both backends hand out (a round trip through ``json``, so the in-process result is
    exactly what the socket carries).  ``KernelError``/``ValueError``/``TypeError`` propagate."""
    if fn not in MM_FUNCTIONS:
        raise ValueError(f"mm: no oracle function {fn!r} (one of {', '.join(MM_FUNCTIONS)})")
    with system.lock:
        out = getattr(system.mm, fn)(*args, **dict(kwargs or {}))
        if fn == "set_mempolicy":          # the one oracle call that changes state: the task policy
            system.journal_record("mm", fn=fn, args=list(args), kwargs=dict(kwargs or {}))
    return json.loads(json.dumps(_plain(out)))


def mm_raise(rep: Mapping) -> Any:
    """The client side of the control socket's ``mm`` reply: the result, or the exception the
    in-process oracle wrapper raises (``OSError`` with the kernel's errno, ``ValueError``, ``TypeError``;
    anything else the daemon reports as ``RuntimeError``)."""
    if rep.get("rc") == 0:
        return rep.get("out")
    if rep.get("errno") is not None:
        raise OSError(rep["errno"], os.strerror(rep["errno"]))
    exc = _PASSED.get(rep.get("exception") or "")
    if exc is not None:
        raise exc(rep.get("message", ""))
    raise RuntimeError((rep.get("err") or f"cxlsys: mm: failed: {rep!r}").strip())


class _Mm:
    """The allocation oracle as a test sees it (``cxl_kernel.mm``): :class:`cxlsys.mm.mempolicy.Mm`'s
    two functions, its refusals as ``OSError(errno, strerror)``, bad arguments as ``ValueError``."""

    def _call(self, fn: str, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError

    def alloc_candidates(self, gfp: str, *, nid: Optional[int] = None, policy: Optional[str] = None,
                         interrupt: bool = False, **kwargs) -> list[int]:
        """The nodes an allocation of ``gfp`` (``"GFP_KERNEL"``, ``"GFP_HIGHUSER_MOVABLE|__GFP_THISNODE"``)
        may come from, in the order the allocator tries them; ``[]``: it cannot be served.  ``nid``
        the preferred node, ``policy`` a numactl-like policy for this call instead of the task's
        (``"bind:1"``), ``interrupt`` for interrupt context; further keywords go to the oracle."""
        return self._call("alloc_candidates", (gfp,),
                          {"nid": nid, "policy": policy, "interrupt": interrupt, **kwargs})

    def set_mempolicy(self, policy: Optional[str], **kwargs) -> Any:
        """set_mempolicy(2) for the (one) task: ``"default"``, ``"local"``, ``"bind:0,2"``,
        ``"interleave:0-1"``, ``"preferred:1"``; ``OSError(EINVAL)`` where the kernel refuses.  Returns the
        effective policy as a dict (``{"mode": "bind", "nodes": [1], ...}``)."""
        return self._call("set_mempolicy", (policy,), kwargs)

    def node_allows(self, nid: int, service: str) -> bool:
        """Whether ``service`` (reclaim, mempolicy, user_migrate, hotunplug, tiering, ltpin) may act on
        node ``nid``: always for an ordinary node, per its opt-in for a private one."""
        return self._call("node_allows", (nid, service), {})


class _InProcessMm(_Mm):
    def __init__(self, system):
        self._system = system

    def _call(self, fn: str, args: tuple, kwargs: dict) -> Any:
        try:
            return mm_call(self._system, fn, args, kwargs)
        except KernelError as e:
            raise OSError(e.errno, os.strerror(e.errno)) from None


class _MountedMm(_Mm):
    def __init__(self, control: str):
        self._control = control

    def _call(self, fn: str, args: tuple, kwargs: dict) -> Any:
        from fuse_mount.client import request
        return mm_raise(request(self._control, {"cmd": "mm", "fn": fn, "args": list(args), "kwargs": kwargs}))


class CxlKernel:
    """One booted machine behind the file API (see the module's documentation).  The backends
    implement the five path calls; everything else is written on them."""

    backend = ""

    def __init__(self, topology: str, kernel: Optional[str], params: Optional[Mapping] = None):
        self.topology = topology
        self.kernel = kernel
        self.params = dict(params or {})
        self.system: Optional[System] = None          # the booted System: in-process only
        self.mm: _Mm

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.topology} kernel={self.kernel}>"

    # ------------------------------------------------------------------ the file API
    def read(self, path: str) -> str:
        """The file's contents as ``cat`` prints them (trailing newline kept)."""
        raise NotImplementedError

    def write(self, path: str, data: Data) -> int:
        """One ``write(2)`` of ``data`` to ``path``: ``bytes`` as they are, a ``str`` as given (UTF-8),
        nothing appended — ``write(p, "1")`` and ``write(p, "1\\n")`` both work, as sysfs stores accept
        either, like ``echo -n 1 >`` and ``echo 1 >``.  Returns the count written; a refused store
        raises ``OSError`` with the kernel's errno."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """``os.path.exists``: True for a directory, file, or a symlink that resolves."""
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:
        """``os.listdir``: the names in the directory, in the order sysfs lists them."""
        raise NotImplementedError

    def readlink(self, path: str) -> str:
        """``os.readlink``: a symlink's relative target, as sysfs shows it."""
        raise NotImplementedError

    def realpath(self, path: str) -> str:
        """The absolute ``/sys/...`` path with every symlink followed (``FileNotFoundError`` if none)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the machine (unmount, for the mount backend)."""

    # ------------------------------------------------------------------ small helpers
    def value(self, path: str) -> str:
        """The file's text without surrounding whitespace: ``$(cat path)``."""
        return self.read(path).strip()

    def meminfo_kb(self, field: str = "MemTotal") -> int:
        """A ``/proc/meminfo`` field, in kB."""
        for line in self.read("/proc/meminfo").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def dax_blocks(self, dax: str) -> list[str]:
        """The ``memoryN`` blocks backing ``dax`` by its ``daxX.Y`` ranges in /proc/iomem (as the
        kernel's dax-kmem-hotplug selftest finds them)."""
        bs = int(self.value("/sys/devices/system/memory/block_size_bytes"), 16)
        return [f"memory{i}" for i in iomem_dax_blocks(self.read("/proc/iomem"), dax, bs)]

    # ------------------------------------------------------------------ flows
    def _ram_root(self) -> str:
        """The ram-capable root decoder with the most interleave ways, the first of those in bus
        order (cxl_test: ``decoder0.1``, qemu-hdm-db: ``decoder0.0``)."""
        best: tuple = (0, "")
        for name in self.listdir(_DEVICES):
            d = f"{_DEVICES}/{name}"
            if re.fullmatch(r"decoder\d+\.\d+", name) and self.exists(f"{d}/create_ram_region") \
                    and self.value(f"{d}/cap_ram") == "1":
                ways = int(self.value(f"{d}/interleave_ways"))
                if ways > best[0]:
                    best = (ways, name)
        if not best[1]:
            raise AssertionError("no root decoder with create_ram_region and cap_ram")
        return best[1]

    def free_endpoint_decoders(self, root: str = "decoder0.1") -> list[str]:
        """For each host bridge the root decoder ``root`` interleaves over (in target order): the
        first free (DPA-less) endpoint decoder of the second memdev with ram below it (the only one,
        if it has one) — the choice :func:`cxlsys.testing.free_endpoint_decoders` makes on the model,
        made here from the files."""
        rdir = self.realpath(f"{_DEVICES}/{root}").rpartition("/")[0]      # the root port's directory
        ways = int(self.value(f"{_DEVICES}/{root}/interleave_ways"))
        ids = self.value(f"{_DEVICES}/{root}/target_list").split(",")[:ways]
        hbs = [self.realpath(f"{rdir}/dport{i}") for i in ids]
        below: dict[str, list[tuple[str, str]]] = {hb: [] for hb in hbs}   # host bridge -> (memdev, endpoint)
        eps = {}
        for name in self.listdir(_DEVICES):
            if re.fullmatch(r"endpoint\d+", name) and self.exists(f"{_DEVICES}/{name}/uport"):
                eps[self.realpath(f"{_DEVICES}/{name}/uport").rpartition("/")[2]] = name
        # memdevs in id (= probe, = bus) order: a listing's order is kernfs's name-hash order
        for md in sorted((n for n in self.listdir(_DEVICES) if re.fullmatch(r"mem\d+", n)), key=lambda n: int(n[3:])):
            if md not in eps:
                continue
            ep = eps[md]
            real = self.realpath(f"{_DEVICES}/{ep}")
            if not real.startswith(rdir + "/"):
                continue
            top = f"{rdir}/{real[len(rdir) + 1:].split('/')[0]}"             # the port just below root
            size = f"{_DEVICES}/{md}/ram/size"
            if not self.exists(f"{top}/parent_dport") or not self.exists(size) or not int(self.value(size), 0):
                continue
            hb = self.realpath(f"{top}/parent_dport")
            if hb in below:
                below[hb].append((md, ep))
        out = []
        for hb in hbs:
            mds = below[hb]
            if not mds:
                raise AssertionError(f"{root}: no memdev with ram below {hb}")
            md, ep = mds[1] if len(mds) > 1 else mds[0]
            decs = sorted((n for n in self.listdir(f"{_DEVICES}/{ep}") if re.fullmatch(r"decoder\d+\.\d+", n)),
                          key=lambda n: int(n.rpartition(".")[2]))
            free = [n for n in decs if int(self.value(f"{_DEVICES}/{n}/dpa_resource"), 16) == _NO_DPA]
            if not free:
                raise AssertionError(f"{md}: no free endpoint decoder")
            out.append(free[0])
        return out

    def provision_ram_region(self, root: Optional[str] = None, size: Optional[int] = None,
                             granularity: int = 4096, bind: bool = True) -> tuple[str, str]:
        """The sysfs flow an admin scripts for a volatile region (that of
        :func:`cxlsys.testing.provision_ram_region`, as writes to the files): DPA on one free endpoint
        decoder per host bridge of ``root`` (default: the ram-capable window with the most ways),
        ``create_ram_region``, geometry, ``size`` (default 256 MiB per target), targets, commit and
        (``bind``) the cxl_region driver, whose dax region gets ``daxN.0`` bound to kmem (its memory
        added, offline unless ``auto_online_blocks`` says otherwise; see :meth:`online`).
        Returns ``(region, dax device)`` names, e.g. ``("region1", "dax1.0")``."""
        root = root or self._ram_root()
        decs = self.free_endpoint_decoders(root)
        size = size if size is not None else len(decs) << 28
        for e in decs:
            self.write(f"{_DEVICES}/{e}/mode", "ram\n")
            self.write(f"{_DEVICES}/{e}/dpa_size", f"{size // len(decs):#x}\n")
        r = self.value(f"{_DEVICES}/{root}/create_ram_region")
        self.write(f"{_DEVICES}/{root}/create_ram_region", f"{r}\n")
        self.write(f"{_DEVICES}/{r}/interleave_granularity", f"{granularity}\n")
        self.write(f"{_DEVICES}/{r}/interleave_ways", f"{len(decs)}\n")
        self.write(f"{_DEVICES}/{r}/size", f"{size:#x}\n")
        for i, e in enumerate(decs):
            self.write(f"{_DEVICES}/{r}/target{i}", f"{e}\n")
        self.write(f"{_DEVICES}/{r}/commit", "1\n")
        if bind:
            self.write("/sys/bus/cxl/drivers/cxl_region/bind", f"{r}\n")
        return r, f"dax{r[len('region'):]}.0"

    def online(self, dax: str, zone: str = "online_movable") -> None:
        """Online the memory kmem added for ``dax`` in ``zone`` (``online_movable``, ``online_kernel``,
        ``online``).  v7.3: through ``daxX.Y/state`` (unplugging first unless already unplugged, as
        its rules require); before: every offline block's ``memoryN/state``."""
        state = f"/sys/bus/dax/devices/{dax}/state"
        if self.exists(state):
            now = self.value(state)
            if now != zone:
                if now != "unplugged":
                    self.write(state, "unplugged\n")
                self.write(state, f"{zone}\n")
            return
        for b in self.dax_blocks(dax):
            p = f"/sys/devices/system/memory/{b}/state"
            if self.exists(p) and self.value(p) == "offline":
                self.write(p, f"{zone}\n")


def _data(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"write: data must be str or bytes, not {type(data).__name__}")


class InProcessKernel(CxlKernel):
    """The machine in this process: :class:`cxlsys.system.System` booted from ``topology``
    (``System.boot``), its projection :attr:`sysfs` serving the paths."""

    backend = "inprocess"

    def __init__(self, topology: str = "cxl_test", kernel: Optional[str] = "6.12",
                 params: Optional[Mapping] = None):
        super().__init__(topology, kernel, params)
        self.system = System.boot(topology, self.params or None, kernel=kernel)
        self.sysfs = Sysfs(self.system)
        self.mm = _InProcessMm(self.system)

    @staticmethod
    def _rel(path: str) -> str:
        """The projection path of an absolute one: ``/sys/x`` -> ``x``, ``/proc/x`` -> ``.cxlsys/proc/x``."""
        p = path.rstrip("/") or "/"
        if p == "/sys" or p.startswith("/sys/"):
            return p[len("/sys/"):]
        if p == "/proc" or p.startswith("/proc/"):
            return ".cxlsys" + p
        raise ValueError(f"{path!r}: cxl_kernel paths are absolute, below /sys or /proc")

    def read(self, path: str) -> str:
        rel = self._rel(path)
        e = self.sysfs.stat(rel)
        if e is None:
            raise _oserror(_errno.ENOENT, path)
        if e.kind == S_DIR:
            raise _oserror(_errno.EISDIR, path)
        if not e.readable:                          # refused at open(2), as by the mount
            raise _oserror(_errno.EACCES, path)
        try:
            return self.sysfs.read(rel).decode("utf-8", "surrogateescape")
        except KernelError as err:
            raise _oserror(err.errno, path) from None

    def write(self, path: str, data: Data) -> int:
        rel = self._rel(path)
        buf = _data(data)
        e = self.sysfs.stat(rel)
        if e is None:
            raise _oserror(_errno.ENOENT, path)
        if e.kind == S_DIR:
            raise _oserror(_errno.EISDIR, path)
        if not e.writable:
            raise _oserror(_errno.EACCES, path)
        if not buf:                                 # sysfs_kf_write(): a zero-length write is a no-op
            return 0
        try:
            return self.sysfs.write(rel, buf)
        except KernelError as err:
            raise _oserror(err.errno, path) from None

    def exists(self, path: str) -> bool:
        return self.sysfs.stat(self._rel(path)) is not None

    def listdir(self, path: str) -> list[str]:
        try:
            return list(self.sysfs.listdir(self._rel(path)))
        except KernelError as err:
            raise _oserror(err.errno, path) from None

    def readlink(self, path: str) -> str:
        try:
            return self.sysfs.readlink(self._rel(path))
        except KernelError as err:
            raise _oserror(err.errno, path) from None

    def realpath(self, path: str) -> str:
        rel = self._rel(path)
        if self.sysfs.stat(rel) is None:
            raise _oserror(_errno.ENOENT, path)
        real = self.sysfs.realpath(rel)
        if real == ".cxlsys/proc" or real.startswith(".cxlsys/proc/"):
            return real[len(".cxlsys"):]
        return f"/sys/{real}".rstrip("/")


class MountedKernel(CxlKernel):
    """The machine in a ``python -m cxlsys mount`` daemon at a fresh temporary directory
    (:attr:`mountpoint`); needs root (or a usable /dev/fuse), fusermount3.  :meth:`close` unmounts."""

    backend = "mount"

    def __init__(self, topology: str = "cxl_test", kernel: Optional[str] = "6.12",
                 params: Optional[Mapping] = None, timeout: float = 60):
        super().__init__(topology, kernel, params)
        self.mountpoint = tempfile.mkdtemp(prefix="cxlsys-kernel-")
        cmd = [sys.executable, "-m", "cxlsys", "mount", "--topology", str(topology)]
        if kernel is not None:
            cmd += ["--kernel", kernel]
        for k, v in self.params.items():
            cmd += ["--param", f"{k}={int(v)}"]
        r = subprocess.run(cmd + [self.mountpoint], capture_output=True, text=True, timeout=timeout, check=False)
        if r.returncode != 0 or not os.path.ismount(self.mountpoint):
            os.rmdir(self.mountpoint)
            raise RuntimeError(f"cxlsys mount failed ({r.returncode}): {r.stderr.strip()}")
        self._real = os.path.realpath(self.mountpoint)
        self.control = control_path(self.mountpoint)
        self.mm = _MountedMm(self.control)

    def close(self) -> None:
        mp = self.mountpoint
        if os.path.ismount(mp):
            subprocess.run([sys.executable, "-m", "cxlsys", "umount", mp], capture_output=True, timeout=60,
                           check=False)
            if os.path.ismount(mp):                 # something still holds it open
                subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True, timeout=60, check=False)
        if not os.path.ismount(mp):
            shutil.rmtree(mp, ignore_errors=True)
            if os.path.exists(self.control):        # the daemon leaves its socket behind
                os.unlink(self.control)

    def _host(self, path: str) -> str:
        p = path.rstrip("/") or "/"
        if p == "/sys" or p.startswith("/sys/"):
            return self.mountpoint + p[len("/sys"):]
        if p == "/proc" or p.startswith("/proc/"):
            return f"{self.mountpoint}/.cxlsys{p}"
        raise ValueError(f"{path!r}: cxl_kernel paths are absolute, below /sys or /proc")

    def read(self, path: str) -> str:
        try:
            with open(self._host(path), "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")
        except OSError as err:
            raise _relabel(err, path) from None

    def write(self, path: str, data: Data) -> int:
        buf = _data(data)
        host = self._host(path)
        try:
            fd = os.open(host, os.O_WRONLY)
            try:
                return os.write(fd, buf) if buf else 0
            finally:
                os.close(fd)
        except OSError as err:
            raise _relabel(err, path) from None

    def exists(self, path: str) -> bool:
        return os.path.exists(self._host(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(self._host(path))
        except OSError as err:
            raise _relabel(err, path) from None

    def readlink(self, path: str) -> str:
        try:
            return os.readlink(self._host(path))
        except OSError as err:
            raise _relabel(err, path) from None

    def realpath(self, path: str) -> str:
        host = self._host(path)
        if not os.path.exists(host):
            raise _oserror(_errno.ENOENT, path)
        real = os.path.realpath(host)
        rel = real[len(self._real):]
        if rel == "/.cxlsys/proc" or rel.startswith("/.cxlsys/proc/"):
            return rel[len("/.cxlsys"):]
        return "/sys" + rel
