"""Helpers for tests written against cxlsys: cxlsys's own and a user's.

Two kinds of test use cxlsys:

**In-process** tests drive a booted :class:`~cxlsys.system.System` through its sysfs projection,
:class:`~cxlsys.sysfs.Sysfs`, whose paths are relative to ``/sys`` without the leading slash
(``"bus/cxl/devices/region0/size"``)::

    from cxlsys.system import System
    from cxlsys.sysfs import Sysfs
    from cxlsys.testing import assert_refused, cxl_read, cxl_write, read_text

    fs = Sysfs(System.boot("cxl_test"))
    assert read_text(fs, "bus/cxl/devices/region0/commit") == "1\\n"   # as cat(1) prints it
    assert cxl_read(fs, "region0/commit") == "1"                      # the value, no newline
    cxl_write(fs, "decoder5.1/mode", "pmem")                          # like echo pmem > ...
    assert_refused(fs, "bus/cxl/flush", "2", errno.EINVAL, unchanged=fs.snapshot)   # and no change

**Integration** tests run real programs (Debian's cxl/daxctl) against the model mounted at /sys
in a private mount namespace, with ``cxlsys run``; they need root, /dev/fuse, fuse3 and the cxl
tool (:func:`can_mount`)::

    from cxlsys.testing import MOUNT_SKIP_REASON, can_mount, cxlsys_run

    @pytest.mark.skipif(not can_mount(), reason=MOUNT_SKIP_REASON)
    def test_list():
        assert cxlsys_run("cxl list -M | jq length").stdout == "11\\n"

**Invariants**: inside ``with invariant_checks():`` the helpers that change the model
(:func:`write_text`, :func:`cxl_write`, :func:`assert_refused`, :func:`provision_ram_region`) run
:func:`cxlsys.invariants.assert_invariants` after each operation; ``invariant_checks("every_write")``
checks after every :meth:`Sysfs.write <cxlsys.sysfs.Sysfs.write>`, ioctl, timer run and module
load/unload from anywhere (cxlsys's own model tests run that way, ``tests/conftest.py``)::

    with invariant_checks():
        provision_ram_region(fs)           # AssertionError naming the rule if a step breaks one

Nothing here needs pytest: a failed check raises ``AssertionError``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from cxlsys.cxl.core.memdev import CxlMemdev
from cxlsys.cxl.core.port import CxlEndpointDecoder, CxlPort
from cxlsys.errors import KernelError
from cxlsys.hazards import unexplained
from cxlsys.invariants import check_invariants
from cxlsys.procfs import iomem_dax_blocks
from cxlsys.sysfs import Sysfs
from cxlsys.system import System
from cxlsys.treedump import dump_model

__all__ = [
    "CXL_DEVICES",
    "MOUNT_SKIP_REASON",
    "RAM_REGION_SETUP",
    "SYSFS_TREE",
    "assert_refused",
    "can_mount",
    "cxl_path",
    "cxl_read",
    "cxl_write",
    "cxlsys_run",
    "devices",
    "dax_blocks",
    "endpoint_decoders",
    "free_endpoint_decoders",
    "invariant_checks",
    "invariant_checks_enabled",
    "meminfo_kb",
    "memdev",
    "memdevs",
    "ports",
    "provision_ram_region",
    "read_text",
    "read_value",
    "sysfs_tree",
    "wait_for_line",
    "write_text",
]

# ------------------------------------------------------------------------------ in-process: files

#: Where :func:`cxl_path` puts a path that does not start with ``/`` (relative to /sys).
CXL_DEVICES = "bus/cxl/devices"

#: The trees :func:`sysfs_tree` walks: everything a CXL store can change.
SYSFS_TREE = ("/sys/bus", "/sys/devices", "/sys/module", "/sys/dev")

Data = bytes | str | int


def _buf(value: Data) -> bytes:
    """``bytes`` go as they are (a program's write(2)); anything else the way ``echo value >``
    writes it: ``str(value)`` and a newline."""
    return value if isinstance(value, bytes) else f"{value}\n".encode()


def read_text(fs: Sysfs, path: str) -> str:
    """The text of the file at ``path`` (relative to /sys), exactly as ``cat`` prints it: the
    trailing newline kept."""
    return fs.read(path).decode()


def read_value(fs: Sysfs, path: str) -> str:
    """The file's text without surrounding whitespace (the trailing newline): ``$(cat path)``."""
    return fs.read(path).decode().strip()


def write_text(fs: Sysfs, path: str, value: Data) -> int:
    """Store ``value`` into the file at ``path`` (relative to /sys); returns the count the write
    returned.  ``bytes`` are written as they are; anything else as ``echo value > path`` would
    (with a newline).  A refused store raises :class:`~cxlsys.errors.KernelError`.  Under
    :func:`invariant_checks` the model's invariants are checked after the write, refused or not."""
    try:
        return fs.write(path, _buf(value))
    finally:
        _after_operation(fs)


def cxl_path(path: str) -> str:
    """A short path made a projection path: ``"/x/y"`` is relative to /sys (``"x/y"``), anything
    else relative to /sys/bus/cxl/devices (``"region0/size"`` -> ``"bus/cxl/devices/region0/size"``)."""
    return path[1:] if path.startswith("/") else f"{CXL_DEVICES}/{path}"


def cxl_read(fs: Sysfs, path: str) -> str:
    """:func:`read_value` of :func:`cxl_path` ``(path)``: ``cxl_read(fs, "region0/commit") == "1"``."""
    return read_value(fs, cxl_path(path))


def cxl_write(fs: Sysfs, path: str, value: Data) -> int:
    """:func:`write_text` to :func:`cxl_path` ``(path)``: ``cxl_write(fs, "region1/size", "0x10000000")``."""
    return write_text(fs, cxl_path(path), value)


def assert_refused(fs: Sysfs, path: str, data: Data, err: int, *,
                   unchanged: Callable[[], Any] | None = None) -> KernelError:
    """Assert that storing ``data`` (as :func:`write_text` does) into ``path`` is refused with errno
    ``err``; returns the :class:`~cxlsys.errors.KernelError` (its ``.reason`` is what the kernel
    log got).  With ``unchanged`` — a function returning the state to compare, e.g.
    ``fs.snapshot`` or ``lambda: sysfs_tree(fs)`` — also assert the refused store changed nothing
    it sees."""
    buf = _buf(data)
    before = unchanged() if unchanged is not None else None
    try:
        try:
            fs.write(path, buf)
        finally:
            _after_operation(fs)
    except KernelError as e:
        if e.errno != err:
            raise AssertionError(f"{path} < {buf!r}: errno {_errno.errorcode.get(e.errno, e.errno)}, "
                                 f"want {_errno.errorcode.get(err, err)}: {e.reason}") from e
        if unchanged is not None and unchanged() != before:
            raise AssertionError(f"{path} < {buf!r}: the refused store changed the state") from e
        return e
    raise AssertionError(f"{path} < {buf!r}: the store succeeded, want {_errno.errorcode.get(err, err)}")


def sysfs_tree(fs: Sysfs) -> list:
    """Every entry below :data:`SYSFS_TREE` with its mode, link target or contents, one line each
    (:func:`cxlsys.treedump.dump_model`): compare it before and after a store."""
    return dump_model(fs, SYSFS_TREE)


# ------------------------------------------------------------------------------ in-process: invariants

# what invariant_checks() turned on, by scope: "helpers" (the helpers above check after each
# operation), "every_write" (the wrapped Sysfs/System methods check, so the helpers need not), "end"
# (the wrapped methods only note their system, checked when the block ends)
_CHECKS = {"helpers": 0, "every_write": 0, "end": 0}
_TOUCHED: list = []          # per "end" block: the systems its operations touched (by id)
SCOPES = ("helpers", "every_write", "end")
_HAZARDS_ALLOWED = [0]       # inside invariant_checks(..., allow_hazards=True) blocks


def _assert_model(system: Any) -> None:
    """:func:`~cxlsys.invariants.assert_invariants`.  Once a kernel hazard (:mod:`cxlsys.hazards`)
    is on ``system.hazards``: a failure naming it, or, where hazards are allowed, a check of only
    the rules no recorded hazard can break (:func:`cxlsys.hazards.unexplained`)."""
    if system.hazards and not _HAZARDS_ALLOWED[0]:
        raise AssertionError("kernel hazard(s) reproduced (cxlsys.hazards; allow them with "
                             "@pytest.mark.kernel_hazard or invariant_checks(allow_hazards=True)):\n"
                             + "\n".join(f"{t.hazard.name}: {t.detail}" for t in system.hazards))
    out = unexplained(system, check_invariants(system))
    if out:
        raise AssertionError(f"{len(out)} model invariant(s) broken:\n" + "\n".join(out))


def invariant_checks_enabled() -> bool:
    """Whether operations are followed by an invariant check (inside :func:`invariant_checks`)."""
    return any(_CHECKS.values())


def _after_operation(fs: Sysfs) -> None:
    if _CHECKS["helpers"] and not _CHECKS["every_write"]:
        _assert_model(fs.sys)


def _checked(method: Callable, system_of: Callable[[Any], Any], ran: Callable[[Any], bool]) -> Callable:
    """``method`` followed by :func:`~cxlsys.invariants.assert_invariants` of its system, whether it
    returned or raised (a refused operation must leave the model consistent too); a call that
    returned ``r`` with ``ran(r)`` false did nothing and is not checked."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        done = True
        try:
            r = method(self, *args, **kwargs)
            done = ran(r)
            return r
        finally:
            if done:
                system = system_of(self)
                for touched in _TOUCHED:
                    touched.setdefault(id(system), system)
                if _CHECKS["every_write"]:
                    _assert_model(system)
    return wrapper


def _always(r: Any) -> bool:
    return True


# the operations the wrapping scopes follow: class, method name, the System of an instance, whether a
# return value means it did something (System.run_timers returns how many timers ran: every read of
# the projection calls it, a check there only when some delayed work really ran)
_OPERATIONS = ((Sysfs, "write", lambda fs: fs.sys, _always), (Sysfs, "ioctl", lambda fs: fs.sys, _always),
               (System, "run_timers", lambda s: s, bool),
               (System, "load", lambda s: s, _always), (System, "unload", lambda s: s, _always))


@contextlib.contextmanager
def invariant_checks(scope: str = "helpers", *, allow_hazards: bool = False) -> Iterator[None]:
    """While the block runs, check the model's invariants (:func:`cxlsys.invariants.assert_invariants`:
    a broken one raises ``AssertionError`` naming the object and the rule).  ``scope``:

    * ``"helpers"``: after each write of :func:`write_text`, :func:`cxl_write` and
      :func:`assert_refused` (the refused write too) and each step of :func:`provision_ram_region`;
    * ``"every_write"``: after every ``Sysfs.write``, ``Sysfs.ioctl``, run of delayed work
      (``System.run_timers`` when a timer ran) and ``System.load``/``unload`` (``modprobe``, boot),
      whoever calls them: the methods are wrapped while the block runs;
    * ``"end"``: once, when the block ends, for every system those operations touched (for models
      too large to check after each write: ``large-2t`` takes ~50 ms a check).

    A system that went through a kernel hazard (:mod:`cxlsys.hazards`: a sequence Linux accepts and
    then holds inconsistent state after) fails the check naming it; with ``allow_hazards`` the rules
    that hazard can break are not checked from then on.  Blocks nest."""
    if scope not in SCOPES:
        raise ValueError(f"invariant_checks: scope {scope!r} is not one of {', '.join(SCOPES)}")
    saved = []
    if scope != "helpers" and not (_CHECKS["every_write"] or _CHECKS["end"]):
        for cls, name, system_of, ran in _OPERATIONS:
            orig = cls.__dict__[name]
            saved.append((cls, name, orig))
            setattr(cls, name, _checked(orig, system_of, ran))
    touched: dict = {}
    if scope == "end":
        _TOUCHED.append(touched)
    _CHECKS[scope] += 1
    _HAZARDS_ALLOWED[0] += allow_hazards
    ok = False
    try:
        yield
        ok = True
    finally:
        _CHECKS[scope] -= 1
        _HAZARDS_ALLOWED[0] -= allow_hazards
        if scope == "end":
            _TOUCHED.remove(touched)
        for cls, name, orig in reversed(saved):
            setattr(cls, name, orig)
    if ok:
        _HAZARDS_ALLOWED[0] += allow_hazards
        try:
            for system in touched.values():
                _assert_model(system)
        finally:
            _HAZARDS_ALLOWED[0] -= allow_hazards


# ------------------------------------------------------------------------------ in-process: model objects

def devices(system, cls: type = object, pred: Callable[[Any], bool] = lambda d: True) -> list:
    """The devices on the CXL bus that are ``cls`` instances and satisfy ``pred``, in bus order."""
    return [d for d in system.cxl_bus.devices if isinstance(d, cls) and pred(d)]


def ports(system, kind: str) -> list:
    """The CXL ports of one ``kind``: ``"root"``, ``"port"`` (host bridges and switches) or
    ``"endpoint"``."""
    return devices(system, CxlPort, lambda p: p.kind == kind)


def memdevs(system) -> list:
    """The memdevs (``memN``) on the CXL bus, in bus order."""
    return devices(system, CxlMemdev)


def memdev(system, key: str | int) -> CxlMemdev:
    """The one memdev ``key`` names: its name (``"mem3"``), its platform device's name
    (``"cxl_mem.1"``, ``"cxl_rcd.10"``) or its serial number (an ``int``)."""
    def match(m) -> bool:
        if isinstance(key, int):
            return m.info.serial == key
        return m.name == key or (m.parent is not None and m.parent.name == key)
    found = [m for m in memdevs(system) if match(m)]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} memdevs match {key!r}")
    return found[0]


def endpoint_decoders(obj) -> list:
    """Endpoint decoders: of a memdev (:class:`~cxlsys.cxl.core.memdev.CxlMemdev`), those of its
    endpoint port in id order (``[]`` while it has none); of a ``System``, every endpoint decoder
    on the CXL bus in bus order."""
    if isinstance(obj, CxlMemdev):
        ep = obj.endpoint
        if not isinstance(ep, CxlPort):
            return []
        return [ep.decoders[i] for i in sorted(ep.decoders)]
    return devices(obj, CxlEndpointDecoder)


# ------------------------------------------------------------------------------ integration

#: The skip reason for a test that needs :func:`can_mount`.
MOUNT_SKIP_REASON = "needs root, /dev/fuse, fuse3 and the cxl tool"


def free_endpoint_decoders(system, root: str = "decoder0.1") -> list:
    """For each host bridge the root decoder ``root`` interleaves over (in target order): a free
    endpoint decoder (no DPA) of the second memdev below it that has ram — what
    :data:`RAM_REGION_SETUP` picks with ``cxl list``."""
    rd = next(d for d in system.cxl_bus.devices if d.name == root)
    out = []
    for hb in rd.targets[: rd.interleave_ways]:
        below = []
        for md in memdevs(system):
            p = md.endpoint
            while p is not None and p.parent_port is not None and p.parent_port.kind != "root":
                p = p.parent_port
            if p is not None and p.parent_dport is hb and md.ram_size:
                below.append(md)
        md = below[1] if len(below) > 1 else below[0]
        out.append(next(e.name for e in endpoint_decoders(md) if e.dpa_start is None))
    return out


def provision_ram_region(fs: Sysfs, root: str = "decoder0.1", size: int = 1 << 30, granularity: int = 4096,
                         bind: bool = True) -> tuple:
    """The sysfs flow an admin scripts for a volatile region, in-process: DPA on one free endpoint
    decoder per host bridge of ``root``, ``create_ram_region``, geometry, size, targets, commit and
    (``bind``) the cxl_region driver, whose dax region gets ``daxN.0`` bound to kmem.
    Returns ``(region, dax device)`` names, e.g. ``("region1", "dax1.0")``."""
    decs = free_endpoint_decoders(fs.sys, root)
    for e in decs:
        cxl_write(fs, f"{e}/mode", "ram")
        cxl_write(fs, f"{e}/dpa_size", hex(size // len(decs)))
    r = cxl_read(fs, f"{root}/create_ram_region")
    cxl_write(fs, f"{root}/create_ram_region", r)
    cxl_write(fs, f"{r}/interleave_granularity", granularity)
    cxl_write(fs, f"{r}/interleave_ways", len(decs))
    cxl_write(fs, f"{r}/size", hex(size))
    for i, e in enumerate(decs):
        cxl_write(fs, f"{r}/target{i}", e)
    cxl_write(fs, f"{r}/commit", 1)
    if bind:
        write_text(fs, "bus/cxl/drivers/cxl_region/bind", r)
    return r, f"dax{r[len('region'):]}.0"


def meminfo_kb(fs: Sysfs, field: str = "MemTotal") -> int:
    """A /proc/meminfo field of the model, in kB."""
    for line in fs.read(".cxlsys/proc/meminfo").decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def dax_blocks(fs: Sysfs, dax: str) -> list:
    """The ``memoryN`` blocks backing ``dax`` by its ``daxX.Y`` ranges in /proc/iomem (the way the
    kernel's dax-kmem-hotplug selftest finds them)."""
    bs = int(read_value(fs, "devices/system/memory/block_size_bytes"), 16)
    return [f"memory{i}" for i in iomem_dax_blocks(fs.read(".cxlsys/proc/iomem").decode(), dax, bs)]


def can_mount() -> bool:
    """True when ``cxlsys run`` can mount the model here: root, /dev/fuse, fusermount3 and the
    cxl tool on PATH."""
    return os.geteuid() == 0 and os.path.exists("/dev/fuse") and shutil.which("cxl") is not None \
        and shutil.which("fusermount3") is not None


def cxlsys_run(script: str, topology: str = "cxl_test", params: Iterable[str] | Mapping[str, int] = (),
               timeout: float = 300, check: bool = True, cwd: str | os.PathLike | None = None,
               kernel: str | None = None, options: Iterable[str] = ()) -> subprocess.CompletedProcess:
    """Run ``script`` with bash (``set -e`` first) inside ``python -m cxlsys run --topology
    topology``: the model mounted at /sys in a private namespace, the real cxl/daxctl on it.

    ``topology`` is a preset name or a TOML file; ``params`` module parameters, ``"key=value"``
    strings or a mapping; ``kernel`` a profile spec (``"7.3+bi"``; default: the topology's); ``cwd``
    the script's working directory (default: this process's); ``options`` more of ``cxlsys run``'s
    (``["--explain", "--dmesg", path]``).
    Returns the ``CompletedProcess`` (text stdout and stderr).  With ``check`` (the default) a
    non-zero exit raises ``AssertionError`` showing both outputs."""
    cmd = [sys.executable, "-m", "cxlsys", "run", "--topology", str(topology)]
    items = [f"{k}={v}" for k, v in params.items()] if isinstance(params, Mapping) else list(params)
    for p in items:
        cmd += ["--param", p]
    if kernel is not None:
        cmd += ["--kernel", kernel]
    cmd += [*options, "--", "bash", "-c", "set -e\n" + script]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"cxlsys run failed ({r.returncode}):\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def wait_for_line(stream, line: str, timeout: float) -> list:
    """Read the pipe ``stream`` (e.g. a ``Popen``'s ``stdout``) until a line equal to ``line``
    arrives; returns the lines read, that one last.  Raises ``AssertionError`` if the pipe closes
    or ``timeout`` seconds pass first — a deadline to wait on instead of a sleep.  Reads the file
    descriptor directly, so use the stream for nothing else before this."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    lines: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {line!r} line within {timeout}s; read {lines + [buf.decode()]!r}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"pipe closed before a {line!r} line; read {lines + [buf.decode()]!r}")
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                lines.append(raw.decode(errors="replace"))
                if lines[-1] == line:
                    return lines


#: A bash snippet for :func:`cxlsys_run` on cxl_test: a 2-way ram region on decoder0.1 built with
#: plain sysfs writes (cxl 76.1 refuses ``create-region -t ram``): one free endpoint decoder on the
#: 2nd memdev of each of host bridges 0 and 1, 512M of DPA each, the region sized and targeted but
#: not committed.  Leaves ``$d`` (/sys/bus/cxl/devices), ``$r`` (the region), ``$e0`` and ``$e1``
#: (its endpoint decoders).
RAM_REGION_SETUP = r'''
hb() { cxl list -M -p cxl_host_bridge.$1 | jq -r ".[$2].memdev"; }
d=/sys/bus/cxl/devices
m0=$(hb 0 1); m1=$(hb 1 1)
e0=$(cxl list -Di -d endpoint -m $m0 | jq -r 'map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder')
e1=$(cxl list -Di -d endpoint -m $m1 | jq -r 'map(select(.dpa_size == 0 or .dpa_size == null)) | .[0].decoder')
for e in $e0 $e1; do echo ram > $d/$e/mode; echo 0x20000000 > $d/$e/dpa_size; done
r=$(cat $d/decoder0.1/create_ram_region); echo $r > $d/decoder0.1/create_ram_region
echo 4096 > $d/$r/interleave_granularity; echo 2 > $d/$r/interleave_ways
echo 0x40000000 > $d/$r/size
echo $e0 > $d/$r/target0; echo $e1 > $d/$r/target1
'''
