"""tracefs, served at /sys/kernel/tracing (and /sys/kernel/debug/tracing, where the kernel
automounts it): the projection of :mod:`cxlsys.kernel.trace` as kernfs nodes, like
:mod:`cxlsys.debugfs`.

Per trace array (the top level, and ``instances/<name>``)::

    trace  trace_pipe  tracing_on  trace_clock  buffer_size_kb  buffer_total_size_kb
    buffer_subbuf_size_kb  set_event  available_events  available_tracers  current_tracer
    timestamp_mode  tracing_cpumask
    events/{enable, header_page, header_event, <system>/{enable, filter, <event>/{enable, filter, format, id}}}
    per_cpu/cpu<N>/{trace, trace_pipe, trace_pipe_raw, buffer_size_kb, stats}

and at the top level only ``instances/`` (mkdir/rmdir make and remove instances),
``saved_cmdlines``, ``saved_cmdlines_size``, ``printk_formats``.

Streams (``trace_pipe``, ``per_cpu/*/trace_pipe``, ``trace_pipe_raw``) are binary attributes of
size 0 that ignore the offset and consume what they return: :meth:`Sysfs.read` (the whole file,
for dumps and the pyfakefs tree) reads nothing and consumes nothing; ``read_at(path, off, n)``
(an adapter's read(2)) consumes up to ``n`` bytes.  With nothing buffered they return no bytes
(end of file) instead of blocking.

``trace`` (and ``per_cpu/*/trace``) clears on truncate (``open(O_TRUNC)``: :meth:`Sysfs.truncate`,
what ``echo > trace`` does); a write itself does nothing (the kernel's ``tracing_write_stub``);
``set_event`` is emptied by a truncate, as the kernel does on ``O_TRUNC``.

Every callable resolves its trace array by name when it runs, so a node an adapter still holds
for a removed and re-created instance reaches the new one, never the old.
"""

from __future__ import annotations

import errno
from typing import Callable, Optional

import attrs

from cxlsys.errors import KernelError
from cxlsys.kernel import trace as ktrace
from cxlsys.kernel.trace import TRACE_MODE_READ, TRACE_MODE_WRITE, Tracing
from cxlsys.kernfs import KBinFile, KDir, KFile
from cxlsys.kstrto import kstrtoul, strip_newline

TRACEFS_ROOT_MODE = 0o700        # TRACEFS_DEFAULT_MODE
TRACEFS_DIR_MODE = 0o750         # tracefs_create_dir()
EVENTFS_DIR_MODE = 0o755         # eventfs directories


# tracefs files whose reading is not state: the buffers and their readers (a read consumes or a
# refusal may append), per-CPU stats with timestamps
_VOLATILE_NAMES = frozenset({"trace", "trace_pipe", "trace_pipe_raw", "stats", "saved_cmdlines"})


def volatile(path: str) -> bool:
    """A file whose reading is not state (a path below /sys): the tracefs buffers and their
    readers, timestamps.  Snapshots and the fuzzer's comparisons leave their values out."""
    if not (path.startswith("kernel/tracing/") or path.startswith("kernel/debug/tracing/")):
        return False
    return path.rpartition("/")[2] in _VOLATILE_NAMES


def _write_stub(buf: str) -> None:
    """tracing_write_stub(): ``trace`` accepts writes and ignores them; the clear is the open's
    O_TRUNC (:class:`TraceFile` ``truncate``)."""


@attrs.frozen(eq=False)
class TFile(KFile):
    """A tracefs file: not kernfs, so a reader may open it O_RDWR (a write then fails if the mode
    has no write bit; ``cxl monitor`` opens ``trace_pipe`` that way, for epoll only)."""

    rdwr_open = True


@attrs.frozen(eq=False)
class TBinFile(KBinFile):
    """A tracefs stream (binary, offset ignored); O_RDWR opens allowed as for :class:`TFile`."""

    rdwr_open = True


@attrs.frozen(eq=False)
class TraceFile(TFile):
    """A tracefs file whose ``open(O_TRUNC)`` does something (``trace``, ``set_event``)."""

    truncate: Optional[Callable[[], None]] = None


@attrs.frozen(eq=False)
class InstancesDir(KDir):
    """``instances/``: the one tracefs directory that takes mkdir and rmdir."""

    mkdir: Optional[Callable[[str], object]] = None
    rmdir: Optional[Callable[[str], object]] = None


def tracefs_root(sys) -> KDir:
    return KDir(lambda: _array_entries(sys.tracing, None), mode=TRACEFS_ROOT_MODE)


def _kstrtoul(buf: str, what: str) -> int:
    """kstrtoul_from_user(ubuf, cnt, 10, &val) of trace.c / trace_events.c: base 10, at most 66
    bytes of the write looked at; its errno (EINVAL, ERANGE) is the write's."""
    try:
        return kstrtoul(buf[:66], 10)
    except KernelError as e:
        raise KernelError(e.errno, f"{what}: expected a decimal number, got {strip_newline(buf)!r}") from None


def _array_entries(t: Tracing, name: Optional[str]) -> dict:
    def tr() -> ktrace.TraceArray:
        return t.array(name)

    def tracing_on_store(buf: str) -> None:
        tr().tracing_on = bool(_kstrtoul(buf, "tracing_on"))

    def buffer_size_store(buf: str) -> None:
        tr().set_size_kb(_kstrtoul(buf, "buffer_size_kb"))

    def current_tracer_store(buf: str) -> None:
        if strip_newline(buf).strip() != "nop":
            raise KernelError(errno.EINVAL, f"current_tracer: only nop is available, not {strip_newline(buf)!r}")

    out: dict = {
        "available_events": TFile(TRACE_MODE_READ, lambda: "".join(f"{c.full_name}\n" for c in t.calls())),
        "available_tracers": TFile(TRACE_MODE_READ, lambda: "nop\n"),
        "buffer_size_kb": TFile(TRACE_MODE_WRITE, lambda: tr().buffer_size_kb_text(), buffer_size_store),
        "buffer_subbuf_size_kb": TFile(TRACE_MODE_READ, lambda: f"{ktrace.PAGE_SIZE >> 10}\n"),
        "buffer_total_size_kb": TFile(TRACE_MODE_READ,
                                      lambda: tr().buffer_size_kb_text(len(t.possible_cpus()))),
        "current_tracer": TFile(TRACE_MODE_WRITE, lambda: "nop\n", current_tracer_store),
        "events": _events_dir(t, name),
        "per_cpu": KDir(lambda: {f"cpu{c}": _cpu_dir(t, name, c) for c in t.possible_cpus()},
                        mode=TRACEFS_DIR_MODE),
        "set_event": TraceFile(TRACE_MODE_WRITE, lambda: tr().set_event_show(),
                               lambda buf: tr().set_event_store(buf), truncate=lambda: tr().set_system(None, False)),
        "timestamp_mode": TFile(TRACE_MODE_READ, lambda: "[delta] absolute\n"),
        "trace": TraceFile(TRACE_MODE_WRITE, lambda: tr().trace_show(), _write_stub,
                           truncate=lambda: tr().clear()),
        "trace_clock": TFile(TRACE_MODE_WRITE, lambda: tr().trace_clock_show(),
                             lambda buf: tr().trace_clock_store(strip_newline(buf))),
        "trace_pipe": TBinFile(TRACE_MODE_READ, lambda off, n: tr().pipe_read(n), size=0),
        "tracing_cpumask": TFile(TRACE_MODE_WRITE, lambda: tr().cpumask_show(),
                                 lambda buf: tr().cpumask_store(strip_newline(buf))),
        "tracing_on": TFile(TRACE_MODE_WRITE, lambda: f"{int(tr().tracing_on)}\n", tracing_on_store),
    }
    if name is None:
        def cmdlines_size_store(buf: str) -> None:
            t.set_saved_cmdlines_size(_kstrtoul(buf, "saved_cmdlines_size"))

        out["instances"] = InstancesDir(
            lambda: {n: KDir(_instance_children(t, n), mode=TRACEFS_DIR_MODE) for n in t.instances},
            owner=t, mode=TRACEFS_DIR_MODE, shape=lambda: tuple(t.instances),
            mkdir=t.instance_mkdir, rmdir=t.instance_rmdir)
        out["printk_formats"] = TFile(TRACE_MODE_READ, lambda: "")
        out["saved_cmdlines"] = TFile(TRACE_MODE_READ, t.saved_cmdlines_show)
        out["saved_cmdlines_size"] = TFile(TRACE_MODE_WRITE, lambda: f"{t.saved_cmdlines_size}\n",
                                           cmdlines_size_store)
    return dict(sorted(out.items()))


def _instance_children(t: Tracing, name: str) -> Callable[[], dict]:
    return lambda: _array_entries(t, name) if name in t.instances else {}


def _cpu_dir(t: Tracing, name: Optional[str], cpu: int) -> KDir:
    def tr() -> ktrace.TraceArray:
        return t.array(name)

    def size_store(buf: str) -> None:
        tr().set_size_kb(_kstrtoul(buf, "buffer_size_kb"))

    return KDir(lambda: {
        "buffer_size_kb": TFile(TRACE_MODE_WRITE, lambda: tr().buffer_size_kb_text(), size_store),
        "stats": TFile(TRACE_MODE_READ, lambda: tr().stats_show(cpu)),
        "trace": TraceFile(TRACE_MODE_WRITE, lambda: tr().trace_show(cpu), _write_stub,
                           truncate=lambda: tr().clear(cpu)),
        "trace_pipe": TBinFile(TRACE_MODE_READ, lambda off, n: tr().pipe_read(n, cpu), size=0),
        "trace_pipe_raw": TBinFile(TRACE_MODE_READ, lambda off, n: tr().raw_read(cpu, n), size=0),
    }, mode=TRACEFS_DIR_MODE)


def _enable_store(what: str, setter: Callable[[bool], None]) -> Callable[[str], None]:
    """event_enable_write() / system_enable_write(): kstrtoul_from_user(, 10), then 0 or 1 (EINVAL)."""
    def store(buf: str) -> None:
        v = _kstrtoul(buf, f"{what}/enable")
        if v not in (0, 1):
            raise KernelError(errno.EINVAL, f"{what}/enable: write 0 or 1, not {v}")
        setter(v == 1)
    return store


def _events_dir(t: Tracing, name: Optional[str]) -> KDir:
    def tr() -> ktrace.TraceArray:
        return t.array(name)

    def entries() -> dict:
        out: dict = {
            "enable": TFile(TRACE_MODE_WRITE, lambda: f"{tr().system_enable_state(None)}\n",
                            _enable_store("events", lambda on: tr().set_system(None, on))),
            "header_event": TFile(TRACE_MODE_READ, lambda: ktrace.HEADER_EVENT),
            "header_page": TFile(TRACE_MODE_READ, lambda: ktrace.HEADER_PAGE),
        }
        for system in sorted({c.system for c in t.calls()}):
            out[system] = _system_dir(t, name, system)
        return out

    return KDir(entries, mode=EVENTFS_DIR_MODE)


def _system_dir(t: Tracing, name: Optional[str], system: str) -> KDir:
    def tr() -> ktrace.TraceArray:
        return t.array(name)

    def entries() -> dict:
        out: dict = {
            "enable": TFile(TRACE_MODE_WRITE, lambda: f"{tr().system_enable_state(system)}\n",
                            _enable_store(system, lambda on: tr().set_system(system, on))),
            "filter": TFile(TRACE_MODE_WRITE, lambda: f"{tr().system_filters.get(system, 'none')}\n",
                            lambda buf: tr().set_system_filter(system, strip_newline(buf))),
        }
        for call in t.calls():
            if call.system == system:
                out[call.name] = _event_dir(t, name, call)
        return out

    return KDir(entries, mode=EVENTFS_DIR_MODE)


def _event_dir(t: Tracing, name: Optional[str], call: ktrace.TraceEventCall) -> KDir:
    def tr() -> ktrace.TraceArray:
        return t.array(name)

    def filter_show() -> str:
        f = tr().filters.get(call)
        return f"{f.text}\n" if f is not None else "none\n"

    return KDir(lambda: {
        "enable": TFile(TRACE_MODE_WRITE, lambda: f"{int(tr().event_enabled(call))}\n",
                        _enable_store(call.name, lambda on: tr().set_event(call, on))),
        "filter": TFile(TRACE_MODE_WRITE, filter_show, lambda buf: tr().set_filter(call, strip_newline(buf))),
        "format": TFile(TRACE_MODE_READ, call.format),
        "id": TFile(TRACE_MODE_READ, lambda: f"{call.id}\n"),
    }, mode=EVENTFS_DIR_MODE)
