"""kernel/trace/: the ftrace engine behind tracefs — trace events, trace arrays, the ring buffer.

The pieces, each named after its C twin:

* **Trace events** (``include/trace/trace_events.h``, ``kernel/trace/trace_events.c``): a
  :class:`TraceEventCall` is one ``TRACE_EVENT()``: its ``TP_STRUCT__entry`` as a list of
  :class:`EvField` items (``ev_field`` = ``__field``, ``ev_field_struct`` = ``__field_struct``,
  ``ev_array`` = ``__array``, ``ev_string`` = ``__string``, ``ev_dynamic_array`` =
  ``__dynamic_array``), laid out like the compiler lays out ``struct trace_event_raw_<call>``
  (``struct trace_entry`` first, natural alignment, x86-64, ``-funsigned-char`` as the kernel
  builds since 6.2), its ``print fmt:`` text and its ``TP_printk`` as a Python function of the
  decoded entry.  :meth:`TraceEventCall.format` is the ``format`` file, :meth:`~TraceEventCall.pack`
  and :meth:`~TraceEventCall.unpack` turn field values into the entry bytes and back.
  Providers (``cxlsys/cxl/core/trace.py``) register their calls with :func:`trace_add_event_call`
  at import; :data:`TRACE_EVENT_MODULES` lists the built-in providers (the kernel's
  ``__start_ftrace_events`` section): :class:`Tracing` imports them when it is built.
* **The ring buffer** (``kernel/trace/ring_buffer.c``): per CPU, pages of ``PAGE_SIZE`` bytes
  holding a ``buffer_data_page`` header (u64 ``time_stamp``, ``local_t commit``) and
  ``ring_buffer_event`` records (``type_len:5, time_delta:27``, 4-byte aligned, ``array[0]``
  holding the length of events over 112 bytes, ``TIME_EXTEND`` records for deltas that do not
  fit 27 bits).  Overwrite mode: a full buffer drops its
  oldest page (``overrun``), and the next page read says so (``RB_MISSED_EVENTS``, with the count
  stored after the data when it fits).  ``trace_pipe_raw`` hands out these pages byte for byte.
* **Trace arrays** (``kernel/trace/trace.c``): :class:`TraceArray` is the top-level buffer
  (``global_trace``) or one ``instances/<name>``: ``tracing_on``, ``trace_clock``,
  ``buffer_size_kb``, per-event enable and filter (``trace_event_file``), the readers' state.
* **Output** (``kernel/trace/trace_output.c``): the default text line
  ``<comm>-<pid> [cpu] flags timestamp: event: TP_printk`` and the ``# tracer: nop`` header.
* **Filters** (``kernel/trace/trace_events_filter.c``): ``field op value`` predicates joined by
  ``&&``/``||``/``!`` and parentheses, evaluated on the entry before it is committed.

:meth:`Tracing.emit` is the tracepoint: it records into every trace array with the event enabled
and ``tracing_on`` 1, stamped from ``sys.timers.clock()`` (seconds, taken as ns).  The task
(pid, comm, CPU) that events are charged to is :attr:`Tracing.task`; the adapter that knows who
is calling (FUSE: the request's pid) sets it with :meth:`Tracing.current` around the call.

Nothing here blocks: a consuming read with nothing buffered returns no bytes (end of file), where
the kernel would sleep until data arrives or answer ``EAGAIN`` under ``O_NONBLOCK``.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import importlib
import re
import struct
from collections import deque
from typing import Callable, Iterator, Optional, Union

import attrs

from cxlsys.errors import KernelError

# providers of built-in trace events, imported when a Tracing is built
TRACE_EVENT_MODULES = ("cxlsys.cxl.core.trace",)

# ---------------------------------------------------------------- include/linux/trace_events.h
TRACE_ENTRY = struct.Struct("<HBBi")        # struct trace_entry: type, flags, preempt_count, pid
TRACE_FLAG_IRQS_OFF = 0x01
TRACE_FLAG_IRQS_NOSUPPORT = 0x02
TRACE_FLAG_NEED_RESCHED = 0x04
TRACE_FLAG_HARDIRQ = 0x08
TRACE_FLAG_SOFTIRQ = 0x10
TRACE_FLAG_PREEMPT_RESCHED = 0x20
TRACE_FLAG_NMI = 0x40
TRACE_FLAG_BH_OFF = 0x80

# ---------------------------------------------------------------- kernel/trace/ring_buffer.c
PAGE_SIZE = 4096
BUF_PAGE_HDR_SIZE = 16                      # offsetof(struct buffer_data_page, data)
BUF_PAGE_SIZE = PAGE_SIZE - BUF_PAGE_HDR_SIZE
BUFFER_DATA_PAGE = struct.Struct("<Qq")     # u64 time_stamp; local_t commit
RINGBUF_TYPE_DATA_TYPE_LEN_MAX = 28
RINGBUF_TYPE_PADDING = 29
RINGBUF_TYPE_TIME_EXTEND = 30
RINGBUF_TYPE_TIME_STAMP = 31
RB_ALIGNMENT = 4
RB_EVNT_HDR_SIZE = 4
RB_EVNT_MIN_SIZE = 8
RB_MAX_SMALL_DATA = RB_ALIGNMENT * RINGBUF_TYPE_DATA_TYPE_LEN_MAX
TS_SHIFT = 27
TS_MASK = (1 << TS_SHIFT) - 1
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
TRACE_BUF_SIZE_DEFAULT = 1441792            # kernel/trace/trace.c: bytes per CPU once expanded
RB_MIN_PAGES = 2                            # what a buffer holds before it is expanded

# ---------------------------------------------------------------- kernel/trace/trace.c
TRACE_MODE_WRITE = 0o640
TRACE_MODE_READ = 0o440
TRACE_CLOCKS = ("local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot", "tai", "x86-tsc")
SAVED_CMDLINES_DEFAULT = 128
DYNAMIC_EVENT_BASE = 1024                   # ids of registered events start here (the kernel's depend
                                            # on what registered before; userspace reads the id file)

# C types of TP_STRUCT__entry fields: name -> (size, alignment, signed), x86-64 with -funsigned-char
C_TYPES = {
    "char": (1, 1, False), "unsigned char": (1, 1, False), "u8": (1, 1, False), "s8": (1, 1, True),
    "bool": (1, 1, False),
    "short": (2, 2, True), "unsigned short": (2, 2, False), "u16": (2, 2, False), "s16": (2, 2, True),
    "int": (4, 4, True), "unsigned int": (4, 4, False), "u32": (4, 4, False), "s32": (4, 4, True),
    "long": (8, 8, True), "unsigned long": (8, 8, False), "u64": (8, 8, False), "s64": (8, 8, True),
    "uuid_t": (16, 1, False),
}
_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I",
              (4, True): "i", (8, False): "Q", (8, True): "q"}


# ================================================================ trace event definitions
@attrs.frozen
class EvField:
    """One ``TP_STRUCT__entry`` item."""

    macro: str            # "__field" | "__field_struct" | "__array" | "__dynamic_array" | "__string"
    type: str             # C type (element type for arrays)
    name: str
    count: int = 0        # __array length


def ev_field(type: str, name: str) -> EvField:
    return EvField("__field", type, name)


def ev_field_struct(type: str, name: str) -> EvField:
    return EvField("__field_struct", type, name)


def ev_array(type: str, name: str, count: int) -> EvField:
    return EvField("__array", type, name, count)


def ev_dynamic_array(type: str, name: str) -> EvField:
    return EvField("__dynamic_array", type, name)


def ev_string(name: str) -> EvField:
    return EvField("__string", "char", name)


@attrs.frozen
class FtraceField:
    """struct ftrace_event_field: what the ``format`` file says of one field."""

    name: str
    type: str             # element type
    offset: int
    size: int
    is_signed: bool
    kind: str             # "field" | "array" | "dynamic"
    count: int = 0

    def decl(self) -> str:
        if self.kind == "array":
            return f"{self.type} {self.name}[{self.count}]"
        if self.kind == "dynamic":
            return f"__data_loc {self.type}[] {self.name}"
        return f"{self.type} {self.name}"

    def format_line(self) -> str:
        return (f"\tfield:{self.decl()};\toffset:{self.offset};\tsize:{self.size};"
                f"\tsigned:{int(self.is_signed)};\n")


COMMON_FIELDS = (
    FtraceField("common_type", "unsigned short", 0, 2, False, "field"),
    FtraceField("common_flags", "unsigned char", 2, 1, False, "field"),
    FtraceField("common_preempt_count", "unsigned char", 3, 1, False, "field"),
    FtraceField("common_pid", "int", 4, 4, True, "field"),
)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _ctype(t: str) -> tuple:
    try:
        return C_TYPES[t]
    except KeyError:
        raise ValueError(f"trace event field of unknown C type {t!r}") from None


_event_calls: list = []                      # every registered TraceEventCall (the ftrace_events list)
_event_by_id: dict = {}


@attrs.define(eq=False)
class TraceEventCall:
    """struct trace_event_call of one TRACE_EVENT(): layout, ``print fmt``, ``TP_printk``."""

    system: str
    name: str
    entries: tuple
    print_fmt: str                              # the text after "print fmt: "
    printk: Callable[[dict], str] = attrs.field(repr=False)   # TP_printk on the decoded entry
    id: int = 0
    fields: list = attrs.field(factory=list, repr=False)
    struct_size: int = 0                        # sizeof(struct trace_event_raw_<name>)
    data_offset: int = 0                        # offsetof(..., __data): where dynamic data starts

    def __attrs_post_init__(self) -> None:
        off, max_align = TRACE_ENTRY.size, 4
        for e in self.entries:
            if e.macro in ("__string", "__dynamic_array"):
                size, align, signed = 4, 4, _ctype(e.type)[2]
                kind, count = "dynamic", 0
            elif e.macro == "__array":
                esize, align, signed = _ctype(e.type)
                size, kind, count = esize * e.count, "array", e.count
            else:
                size, align, signed = _ctype(e.type)
                if e.macro == "__field_struct":
                    signed = False
                kind, count = "field", 0
            off = _align(off, align)
            max_align = max(max_align, align)
            self.fields.append(FtraceField(e.name, e.type, off, size, signed, kind, count))
            off += size
        self.data_offset = off
        self.struct_size = _align(off, max_align)

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"

    def field(self, name: str) -> Optional[FtraceField]:
        for f in (*COMMON_FIELDS, *self.fields):
            if f.name == name:
                return f
        return None

    # ------------------------------------------------------------------ format file
    def format(self) -> str:
        """event_format_show(): ``events/<system>/<name>/format``."""
        out = [f"name: {self.name}\n", f"ID: {self.id}\n", "format:\n"]
        out += [f.format_line() for f in COMMON_FIELDS]
        out.append("\n")
        out += [f.format_line() for f in self.fields]
        out.append(f"\nprint fmt: {self.print_fmt}\n")
        return "".join(out)

    # ------------------------------------------------------------------ entry bytes
    def pack(self, values: dict, pid: int = 0, flags: int = 0, preempt_count: int = 0) -> bytes:
        """TP_fast_assign's result: the entry as the ring buffer stores it (``struct trace_entry``,
        the fixed fields, then ``__string``/``__dynamic_array`` data, each field's ``__data_loc``
        word holding ``len << 16 | offset``)."""
        fixed = bytearray(self.struct_size)
        TRACE_ENTRY.pack_into(fixed, 0, self.id, flags, preempt_count, pid)
        dyn = bytearray()
        for f in self.fields:
            v = values.get(f.name)
            if f.kind == "dynamic":
                if f.type == "char":
                    raw = (v if isinstance(v, bytes) else str(v if v is not None else "(null)").encode()) + b"\0"
                else:
                    raw = bytes(v or b"")
                struct.pack_into("<I", fixed, f.offset, (len(raw) << 16) | (self.data_offset + len(dyn)))
                dyn += raw
            elif f.kind == "array" or f.type == "uuid_t":
                esize = f.size // max(f.count, 1)
                if isinstance(v, (bytes, bytearray)) or v is None or esize == 1:
                    raw = bytes(v or b"")[: f.size]
                else:
                    raw = b"".join(int(x).to_bytes(esize, "little", signed=f.is_signed) for x in v)[: f.size]
                fixed[f.offset:f.offset + len(raw)] = raw
            else:
                n = int(v or 0)
                mask = (1 << (8 * f.size)) - 1
                fixed[f.offset:f.offset + f.size] = (n & mask).to_bytes(f.size, "little")
        # sizeof(struct) + the dynamic data, which starts at offsetof(__data) (before tail padding)
        return bytes(fixed[: self.data_offset]) + bytes(dyn) + bytes(self.struct_size - self.data_offset)

    def unpack(self, entry: bytes) -> dict:
        """The entry's fields by name (common_* too): ints, bytes for u8/char arrays and uuid_t,
        tuples for other arrays, str for ``__string``."""
        etype, eflags, pc, pid = TRACE_ENTRY.unpack_from(entry, 0)
        out: dict = {"common_type": etype, "common_flags": eflags, "common_preempt_count": pc, "common_pid": pid}
        for f in self.fields:
            raw = entry[f.offset:f.offset + f.size]
            if f.kind == "dynamic":
                loc = int.from_bytes(raw, "little")
                data = entry[loc & 0xFFFF:(loc & 0xFFFF) + (loc >> 16)]
                out[f.name] = data.split(b"\0", 1)[0].decode("utf-8", "replace") if f.type == "char" else data
            elif f.kind == "array":
                esize = f.size // f.count
                if esize == 1:
                    out[f.name] = bytes(raw)
                else:
                    out[f.name] = tuple(int.from_bytes(raw[i:i + esize], "little", signed=f.is_signed)
                                        for i in range(0, f.size, esize))
            elif f.type == "uuid_t":
                out[f.name] = bytes(raw)
            else:
                out[f.name] = int.from_bytes(raw, "little", signed=f.is_signed)
        return out


def trace_add_event_call(call: TraceEventCall) -> TraceEventCall:
    """Register a trace event: it gets the next event type id (``ID:`` in its format file)."""
    for c in _event_calls:
        if (c.system, c.name) == (call.system, call.name):
            return c
    call.id = DYNAMIC_EVENT_BASE + len(_event_calls)
    _event_calls.append(call)
    _event_by_id[call.id] = call
    return call


def find_event_call(type_id: int) -> Optional[TraceEventCall]:
    return _event_by_id.get(type_id)


# ================================================================ TP_printk helpers
def print_flags(value: int, delim: str, table) -> str:
    """trace_print_flags_seq(): __print_flags()."""
    out: list = []
    for mask, name in table:
        if not value:
            break
        if value & mask != mask:
            continue
        value &= ~mask
        out.append(name)
    if value:
        out.append(f"0x{value:x}")
    return delim.join(out)


def print_symbolic(value: int, table) -> str:
    """trace_print_symbols_seq(): __print_symbolic()."""
    for v, name in table:
        if v == value:
            return name
    return f"0x{value:x}"


def print_hex(buf: bytes) -> str:
    """trace_print_hex_seq(..., concatenate=false): __print_hex()."""
    return " ".join(f"{b:02x}" for b in buf)


def print_uuid(b: bytes) -> str:
    """%pU / %pUb: the 16 bytes in order, big-endian lower case."""
    h = bytes(b[:16]).ljust(16, b"\0").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def s64(v: int) -> int:
    """A u64 printed with %lld."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


# ================================================================ the ring buffer
def rb_event_size(data_len: int) -> int:
    """rb_calculate_event_length(): bytes a data event of ``data_len`` takes in a page."""
    n = max(data_len, 1)
    if n > RB_MAX_SMALL_DATA:
        n += 4
    return _align(n + RB_EVNT_HDR_SIZE, RB_ALIGNMENT)


def rb_event_bytes(delta: int, entry: bytes) -> bytes:
    """One data event (rb_update_event()): header word, ``array[0]`` length when large, data."""
    size = rb_event_size(len(entry))
    if size - RB_EVNT_HDR_SIZE > RB_MAX_SMALL_DATA:
        head = struct.pack("<II", delta << 5, size - RB_EVNT_HDR_SIZE)
    else:
        head = struct.pack("<I", (delta << 5) | ((size - RB_EVNT_HDR_SIZE) // RB_ALIGNMENT))
    return (head + entry).ljust(size, b"\0")


def rb_time_extend(delta: int) -> bytes:
    return struct.pack("<II", ((delta & TS_MASK) << 5) | RINGBUF_TYPE_TIME_EXTEND, delta >> TS_SHIFT)


@attrs.define(eq=False)
class BufferPage:
    """One sub-buffer being filled: its events (ts, entry, bytes they take)."""

    events: deque = attrs.field(factory=deque)
    used: int = 0

    def _cost(self, ts: int, entry: bytes) -> int:
        extend = 8 if self.events and ts - self.events[-1][0] > TS_MASK else 0
        return extend + rb_event_size(len(entry))

    def add(self, ts: int, entry: bytes) -> bool:
        if self.events and ts < self.events[-1][0]:
            ts = self.events[-1][0]               # a clock that went back: the kernel never records it so
        cost = self._cost(ts, entry)
        if self.used + cost > BUF_PAGE_SIZE:
            return False
        self.events.append((ts, entry))
        self.used += cost
        return True

    def recompute(self) -> None:
        self.used, evs = 0, list(self.events)
        self.events.clear()
        for ts, e in evs:
            self.used += self._cost(ts, e)
            self.events.append((ts, e))

    def encode(self, missed: int = 0) -> bytes:
        """The buffer_data_page as trace_pipe_raw hands it out (ring_buffer_read_page()): ``commit``
        is the bytes of events; a missed-events count follows them when it fits; the rest is zero."""
        data = bytearray()
        prev = self.events[0][0] if self.events else 0
        for ts, e in self.events:
            delta = max(0, ts - prev)
            if delta > TS_MASK:
                data += rb_time_extend(delta)
                delta = 0
            data += rb_event_bytes(delta, e)
            prev = ts
        commit = len(data)
        if missed:
            if BUF_PAGE_SIZE - commit >= 8:
                data += struct.pack("<Q", missed)
                commit |= RB_MISSED_STORED
            commit |= RB_MISSED_EVENTS
        page = BUFFER_DATA_PAGE.pack(self.events[0][0] if self.events else 0, commit) + bytes(data)
        return page.ljust(PAGE_SIZE, b"\0")


@attrs.define(eq=False)
class RingBufferPerCpu:
    """struct ring_buffer_per_cpu, overwrite mode."""

    nr_pages: int = RB_MIN_PAGES
    pages: deque = attrs.field(factory=deque)
    overrun: int = 0             # entries dropped by overwriting
    lost: int = 0                # dropped since the last consuming read
    read: int = 0                # entries consumed
    written: int = 0
    bytes_: int = 0              # entry bytes in the buffer

    def write(self, ts: int, entry: bytes) -> bool:
        if rb_event_size(len(entry)) + 8 > BUF_PAGE_SIZE:
            return False                          # bigger than a sub-buffer: the kernel drops it too
        if not self.pages or not self.pages[-1].add(ts, entry):
            page = BufferPage()
            page.add(ts, entry)
            self.pages.append(page)
            while len(self.pages) > self.nr_pages:
                old = self.pages.popleft()
                self.overrun += len(old.events)
                self.lost += len(old.events)
                self.bytes_ -= sum(len(e) for _, e in old.events)
        self.written += 1
        self.bytes_ += len(entry)
        return True

    def entries(self) -> int:
        return sum(len(p.events) for p in self.pages)

    def events(self) -> Iterator[tuple]:
        for p in self.pages:
            yield from p.events

    def peek(self) -> Optional[tuple]:
        for p in self.pages:
            if p.events:
                return p.events[0]
        return None

    def consume(self) -> Optional[tuple]:
        """ring_buffer_consume(): the oldest event, removed; (ts, entry, lost before it)."""
        while self.pages and not self.pages[0].events:
            self.pages.popleft()
        if not self.pages:
            return None
        page = self.pages[0]
        ts, e = page.events.popleft()
        page.recompute()
        if not page.events:
            self.pages.popleft()
        lost, self.lost = self.lost, 0
        self.read += 1
        self.bytes_ -= len(e)
        return ts, e, lost

    def read_page(self) -> Optional[bytes]:
        """ring_buffer_read_page(): the oldest sub-buffer, removed, with the missed-events count."""
        while self.pages and not self.pages[0].events:
            self.pages.popleft()
        if not self.pages:
            return None
        page = self.pages.popleft()
        lost, self.lost = self.lost, 0
        self.read += len(page.events)
        self.bytes_ -= sum(len(e) for _, e in page.events)
        return page.encode(missed=lost)

    def reset(self) -> None:
        self.pages.clear()
        self.overrun = self.lost = self.read = self.written = self.bytes_ = 0


# ================================================================ filters
_FILTER_TOKEN = re.compile(r"\s*(?:(\|\||&&|==|!=|<=|>=|[()<>!&~])|\"([^\"]*)\"|'([^']*)'|([^\s()<>=!&|~\"']+))")


class EventFilter:
    """trace_events_filter.c: a parsed ``filter`` expression of one event."""

    def __init__(self, call: TraceEventCall, text: str):
        self.call = call
        self.text = text.strip()
        self._toks = self._lex(self.text)
        self._i = 0
        self.tree = self._or()
        if self._i != len(self._toks):
            raise KernelError(errno.EINVAL, f"filter: unexpected {self._toks[self._i][1]!r}")

    @staticmethod
    def _lex(text: str) -> list:
        out, pos = [], 0
        while pos < len(text):
            m = _FILTER_TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise KernelError(errno.EINVAL, f"filter: cannot parse {text[pos:]!r}")
            pos = m.end()
            if m.group(1):
                out.append(("op", m.group(1)))
            elif m.group(2) is not None or m.group(3) is not None:
                out.append(("str", m.group(2) if m.group(2) is not None else m.group(3)))
            elif m.group(4):
                out.append(("word", m.group(4)))
        return out

    def _peek(self):
        return self._toks[self._i] if self._i < len(self._toks) else (None, None)

    def _take(self):
        t = self._peek()
        self._i += 1
        return t

    def _or(self):
        left = self._and()
        while self._peek() == ("op", "||"):
            self._take()
            left = ("or", left, self._and())
        return left

    def _and(self):
        left = self._not()
        while self._peek() == ("op", "&&"):
            self._take()
            left = ("and", left, self._not())
        return left

    def _not(self):
        if self._peek() == ("op", "!"):
            self._take()
            return ("not", self._not())
        if self._peek() == ("op", "("):
            self._take()
            inner = self._or()
            if self._take() != ("op", ")"):
                raise KernelError(errno.EINVAL, "filter: missing ')'")
            return inner
        return self._pred()

    def _pred(self):
        kind, name = self._take()
        if kind != "word":
            raise KernelError(errno.EINVAL, f"filter: expected a field name, got {name!r}")
        f = self.call.field(name)
        if f is None:
            raise KernelError(errno.EINVAL, f"filter: {self.call.name} has no field {name!r}")
        kind, op = self._take()
        if kind != "op" or op not in ("==", "!=", "<", "<=", ">", ">=", "&", "~"):
            raise KernelError(errno.EINVAL, f"filter: expected an operator after {name}")
        kind, val = self._take()
        if kind not in ("word", "str"):
            raise KernelError(errno.EINVAL, f"filter: expected a value after {name} {op}")
        is_str = f.kind == "dynamic" or (f.kind == "array" and f.type == "char")
        if is_str:
            if op not in ("==", "!=", "~"):
                raise KernelError(errno.EINVAL, f"filter: {op} does not apply to string field {name}")
            return ("str", name, op, val)
        if op == "~":
            raise KernelError(errno.EINVAL, f"filter: ~ applies to string fields only, not {name}")
        try:
            num = int(val, 0)
        except ValueError:
            raise KernelError(errno.EINVAL, f"filter: {val!r} is not a number") from None
        return ("num", name, op, num)

    def match(self, rec: dict) -> bool:
        return self._eval(self.tree, rec)

    def _eval(self, node, rec: dict) -> bool:
        tag = node[0]
        if tag == "or":
            return self._eval(node[1], rec) or self._eval(node[2], rec)
        if tag == "and":
            return self._eval(node[1], rec) and self._eval(node[2], rec)
        if tag == "not":
            return not self._eval(node[1], rec)
        _, name, op, val = node
        v = rec.get(name)
        if tag == "str":
            s = v.split(b"\0", 1)[0].decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            if op == "~":
                return fnmatch.fnmatchcase(s, val)
            return (s == val) if op == "==" else (s != val)
        n = int(v or 0)
        return {"==": n == val, "!=": n != val, "<": n < val, "<=": n <= val, ">": n > val,
                ">=": n >= val, "&": bool(n & val)}[op]


# ================================================================ output (trace_output.c)
def trace_print_lat_fmt(flags: int, preempt_count: int) -> str:
    bh_off = flags & TRACE_FLAG_BH_OFF
    irqs_off = flags & TRACE_FLAG_IRQS_OFF
    c1 = "D" if irqs_off and bh_off else "d" if irqs_off else "b" if bh_off else \
        "X" if flags & TRACE_FLAG_IRQS_NOSUPPORT else "."
    nr = flags & (TRACE_FLAG_NEED_RESCHED | TRACE_FLAG_PREEMPT_RESCHED)
    c2 = {TRACE_FLAG_NEED_RESCHED | TRACE_FLAG_PREEMPT_RESCHED: "N", TRACE_FLAG_NEED_RESCHED: "n",
          TRACE_FLAG_PREEMPT_RESCHED: "p"}.get(nr, ".")
    nmi, hard, soft = flags & TRACE_FLAG_NMI, flags & TRACE_FLAG_HARDIRQ, flags & TRACE_FLAG_SOFTIRQ
    c3 = "Z" if nmi and hard else "z" if nmi else "H" if hard and soft else "h" if hard else "s" if soft else "."
    c4 = f"{preempt_count & 0xf:x}" if preempt_count & 0xf else "."
    c5 = f"{preempt_count >> 4:x}" if preempt_count & 0xf0 else "."
    return c1 + c2 + c3 + c4 + c5


def ns2usecs_str(ts: int) -> str:
    usecs = (ts + 500) // 1000
    return f"{usecs // 1_000_000:5d}.{usecs % 1_000_000:06d}"


TRACE_HEADER_IRQ = (
    "#                                _-----=> irqs-off/BH-disabled\n"
    "#                               / _----=> need-resched\n"
    "#                              | / _---=> hardirq/softirq\n"
    "#                              || / _--=> preempt-depth\n"
    "#                              ||| / _-=> migrate-disable\n"
    "#                              |||| /     delay\n"
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
    "#              | |         |   |||||     |         |\n"
)

HEADER_PAGE = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    f"\tfield: char data;\toffset:{BUF_PAGE_HDR_SIZE};\tsize:{BUF_PAGE_SIZE};\tsigned:0;\n"
)

HEADER_EVENT = (
    "# compressed entry header\n"
    "\ttype_len    :    5 bits\n"
    "\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n"
    "\n"
    f"\tpadding     : type == {RINGBUF_TYPE_PADDING}\n"
    f"\ttime_extend : type == {RINGBUF_TYPE_TIME_EXTEND}\n"
    f"\ttime_stamp : type == {RINGBUF_TYPE_TIME_STAMP}\n"
    f"\tdata max type_len  == {RINGBUF_TYPE_DATA_TYPE_LEN_MAX}\n"
)


# ================================================================ tasks
@attrs.define
class Task:
    """What an event is charged to: ``current``'s pid and comm, and the CPU it runs on.  ``comm``
    may be given as a function, asked (once) only when an event is charged: most requests emit
    none, and finding a task's name costs a read of /proc."""

    pid: int = 0
    comm_: Union[str, Callable[[], str]] = attrs.field(default="<idle>", alias="comm")
    cpu: int = 0

    @property
    def comm(self) -> str:
        if callable(self.comm_):
            self.comm_ = self.comm_()
        return self.comm_[:15]          # TASK_COMM_LEN - 1


# ================================================================ trace arrays
@attrs.define(eq=False)
class TraceArray:
    """struct trace_array: the top-level buffer (``name`` None) or ``instances/<name>``."""

    tracing: "Tracing" = attrs.field(repr=False)
    name: Optional[str] = None
    tracing_on: bool = True
    clock: str = "local"
    counter: int = 0
    expanded: bool = False                     # ring_buffer_expanded: full size after first use
    cpumask: Optional[int] = None              # tracing_cpumask (None: every CPU)
    size_kb: int = TRACE_BUF_SIZE_DEFAULT >> 10
    buffers: dict = attrs.field(factory=dict, repr=False)     # cpu -> RingBufferPerCpu
    enabled: dict = attrs.field(factory=dict, repr=False)     # TraceEventCall -> bool
    filters: dict = attrs.field(factory=dict, repr=False)     # TraceEventCall -> EventFilter
    system_filters: dict = attrs.field(factory=dict, repr=False)  # system -> text
    pipe_pending: dict = attrs.field(factory=dict, repr=False)    # cpu or None -> text not yet read
    raw_pending: dict = attrs.field(factory=dict, repr=False)     # cpu -> bytes of a page not yet read

    # ------------------------------------------------------------------ buffers
    def nr_pages(self) -> int:
        if not self.expanded:
            return RB_MIN_PAGES
        return max(RB_MIN_PAGES, -(-(self.size_kb << 10) // BUF_PAGE_SIZE))

    def buffer(self, cpu: int) -> RingBufferPerCpu:
        rb = self.buffers.get(cpu)
        if rb is None:
            rb = self.buffers[cpu] = RingBufferPerCpu(nr_pages=self.nr_pages())
        return rb

    def expand(self) -> None:
        """tracing_update_buffers(): the first event enabled makes the buffers full size."""
        if not self.expanded:
            self.expanded = True
            self._resize()

    def _resize(self) -> None:
        n = self.nr_pages()
        for rb in self.buffers.values():
            rb.nr_pages = n
            while len(rb.pages) > n:
                old = rb.pages.popleft()
                rb.overrun += len(old.events)
                rb.lost += len(old.events)

    def set_size_kb(self, kb: int) -> None:
        if kb <= 0:
            raise KernelError(errno.EINVAL, "buffer_size_kb: must be at least 1")
        self.size_kb = kb
        self.expanded = True
        self._resize()

    def buffer_size_kb_text(self, cpus: int = 1) -> str:
        pages = max(RB_MIN_PAGES, -(-(self.size_kb << 10) // BUF_PAGE_SIZE))
        full = (pages * BUF_PAGE_SIZE >> 10) * cpus
        if self.expanded:
            return f"{full}\n"
        return f"{(RB_MIN_PAGES * BUF_PAGE_SIZE >> 10) * cpus} (expanded: {(self.size_kb) * cpus})\n"

    def clear(self, cpu: Optional[int] = None) -> None:
        """tracing_reset_online_cpus() (``trace`` opened with O_TRUNC) or one CPU's."""
        for c, rb in self.buffers.items():
            if cpu is None or c == cpu:
                rb.reset()
                self.raw_pending.pop(c, None)
                self.pipe_pending.pop(c, None)
        if cpu is None:
            self.pipe_pending.clear()

    def timestamp(self, now_ns: int) -> int:
        if self.clock == "counter":
            self.counter += 1
            return self.counter
        return now_ns

    # ------------------------------------------------------------------ events
    def event_enabled(self, call: TraceEventCall) -> bool:
        return self.enabled.get(call, False)

    def set_event(self, call: TraceEventCall, on: bool) -> None:
        self.enabled[call] = on
        if on:
            self.expand()

    def system_enable_state(self, system: Optional[str]) -> str:
        """The ``enable`` file of a system (or of ``events/``): 0, 1 or X (mixed)."""
        vals = {self.event_enabled(c) for c in self.tracing.calls() if system is None or c.system == system}
        if vals == {True}:
            return "1"
        if vals == {True, False}:
            return "X"
        return "0"

    def set_system(self, system: Optional[str], on: bool) -> None:
        for c in self.tracing.calls():
            if system is None or c.system == system:
                self.set_event(c, on)

    def set_filter(self, call: TraceEventCall, text: str) -> None:
        t = text.strip()
        if t in ("", "0"):
            self.filters.pop(call, None)
            return
        self.filters[call] = EventFilter(call, t)

    def set_system_filter(self, system: str, text: str) -> None:
        t = text.strip()
        calls = [c for c in self.tracing.calls() if c.system == system]
        if t in ("", "0"):
            self.system_filters.pop(system, None)
            for c in calls:
                self.filters.pop(c, None)
            return
        parsed = {}
        for c in calls:
            try:
                parsed[c] = EventFilter(c, t)
            except KernelError:
                continue
        if not parsed:
            raise KernelError(errno.EINVAL, f"filter: no {system} event has the fields of {t!r}")
        self.filters.update(parsed)
        self.system_filters[system] = t

    # ------------------------------------------------------------------ set_event
    def set_event_store(self, text: str) -> None:
        """ftrace_set_clr_event() for each word: ``[!]system:event``, ``system:*``, ``event``."""
        for tok in text.split():
            on = not tok.startswith("!")
            tok = tok.lstrip("!")
            if ":" in tok:
                sysname, _, ev = tok.partition(":")
                sysname = sysname or "*"
                ev = ev or "*"
                hits = [c for c in self.tracing.calls()
                        if fnmatch.fnmatchcase(c.system, sysname) and fnmatch.fnmatchcase(c.name, ev)]
            else:
                hits = [c for c in self.tracing.calls()
                        if fnmatch.fnmatchcase(c.name, tok) or fnmatch.fnmatchcase(c.system, tok)]
            if not hits:
                raise KernelError(errno.EINVAL, f"set_event: no event matches {tok!r}")
            for c in hits:
                self.set_event(c, on)

    def set_event_show(self) -> str:
        return "".join(f"{c.full_name}\n" for c in self.tracing.calls() if self.event_enabled(c))

    # ------------------------------------------------------------------ recording
    def record(self, call: TraceEventCall, entry: bytes, rec: dict, task: Task, now_ns: int) -> bool:
        if not self.tracing_on or not self.event_enabled(call):
            return False
        if self.cpumask is not None and not self.cpumask >> task.cpu & 1:
            return False
        flt = self.filters.get(call)
        if flt is not None and not flt.match(rec):
            return False
        return self.buffer(task.cpu).write(self.timestamp(now_ns), entry)

    # ------------------------------------------------------------------ text output
    def _line(self, cpu: int, ts: int, entry: bytes) -> str:
        etype, eflags, pc, pid = TRACE_ENTRY.unpack_from(entry, 0)
        call = find_event_call(etype)
        comm = self.tracing.find_cmdline(pid)
        head = (f"{comm:>16}-{pid:<7d} [{cpu:03d}] {trace_print_lat_fmt(eflags, pc)} "
                f"{ns2usecs_str(ts)}: ")
        if call is None:
            return head + f"Unknown type {etype}\n"
        return head + f"{call.name}: {call.printk(call.unpack(entry))}\n"

    def _merged(self, cpu: Optional[int]) -> list:
        out: list = []
        for c in sorted(self.buffers):
            if cpu is not None and c != cpu:
                continue
            out.extend((ts, c, i, e) for i, (ts, e) in enumerate(self.buffers[c].events()))
        out.sort(key=lambda t: (t[0], t[1], t[2]))
        return out

    def trace_show(self, cpu: Optional[int] = None) -> str:
        """The ``trace`` file: header, then every buffered event oldest first (not consumed)."""
        rbs = [rb for c, rb in self.buffers.items() if cpu is None or c == cpu]
        entries = sum(rb.entries() for rb in rbs)
        total = entries + sum(rb.overrun for rb in rbs)
        out = ["# tracer: nop\n", "#\n",
               f"# entries-in-buffer/entries-written: {entries}/{total}   #P:{len(self.tracing.possible_cpus())}\n",
               "#\n", TRACE_HEADER_IRQ]
        out += [self._line(c, ts, e) for ts, c, _, e in self._merged(cpu)]
        return "".join(out)

    def pipe_read(self, size: int, cpu: Optional[int] = None) -> bytes:
        """``trace_pipe``: consume events into text; at most ``size`` bytes, the rest kept for the
        next read.  Nothing buffered: b"" (see the module doc on blocking)."""
        pending = self.pipe_pending.get(cpu, "")
        while len(pending.encode()) < size:
            cands = [(rb.peek(), c) for c, rb in self.buffers.items() if cpu is None or c == cpu]
            cands = [(p[0], c) for p, c in cands if p is not None]
            if not cands:
                break
            _, c = min(cands)
            got = self.buffers[c].consume()
            assert got is not None
            ts, e, lost = got
            if lost:
                pending += f"CPU:{c} [LOST {lost} EVENTS]\n"
            pending += self._line(c, ts, e)
        data = pending.encode()
        out, rest = data[:size], data[size:]
        self.pipe_pending[cpu] = rest.decode("utf-8", "replace")
        return out

    def raw_read(self, cpu: int, size: int) -> bytes:
        """``per_cpu/cpuN/trace_pipe_raw``: one sub-buffer page per read (the rest of a page a short
        read left comes first)."""
        if size <= 0:
            return b""
        pending = self.raw_pending.get(cpu, b"")
        if not pending:
            rb = self.buffers.get(cpu)
            page = rb.read_page() if rb is not None else None
            if page is None:
                return b""
            pending = page
        out, self.raw_pending[cpu] = pending[:size], pending[size:]
        return out

    def stats_show(self, cpu: int) -> str:
        rb = self.buffer(cpu)
        ev = rb.peek()
        oldest = ns2usecs_str(ev[0]) if ev is not None else ns2usecs_str(0)
        return (f"entries: {rb.entries()}\n"
                f"overrun: {rb.overrun}\n"
                "commit overrun: 0\n"
                f"bytes: {rb.bytes_}\n"
                f"oldest event ts: {oldest}\n"
                f"now ts: {ns2usecs_str(self.tracing.clock_ns())}\n"
                "dropped events: 0\n"
                f"read events: {rb.read}\n")

    def cpumask_show(self) -> str:
        mask = 0
        for c in self.tracing.possible_cpus():
            mask |= 1 << c
        return f"{mask if self.cpumask is None else self.cpumask & mask:x}\n"

    def cpumask_store(self, text: str) -> None:
        """A hex mask (comma-separated 32-bit groups, as cpumask_parse() takes it)."""
        t = text.strip().replace(",", "")
        try:
            self.cpumask = int(t, 16)
        except ValueError:
            raise KernelError(errno.EINVAL, f"tracing_cpumask: {text.strip()!r} is not a hex mask") from None

    def trace_clock_show(self) -> str:
        return " ".join(f"[{c}]" if c == self.clock else c for c in TRACE_CLOCKS) + "\n"

    def trace_clock_store(self, text: str) -> None:
        name = text.strip()
        if name not in TRACE_CLOCKS:
            raise KernelError(errno.EINVAL, f"trace_clock: no clock {name!r}")
        if name != self.clock:
            self.clock = name
            self.clear()                          # the kernel resets the buffers on a clock change


# ================================================================ the tracing subsystem of one System
class Tracing:
    """``sys.tracing``: global_trace, ``instances/``, the saved cmdlines, the current task."""

    def __init__(self, sys):
        self.sys = sys
        for mod in TRACE_EVENT_MODULES:
            importlib.import_module(mod)
        self.global_trace = TraceArray(tracing=self)
        self.instances: dict = {}
        self.task = Task()
        self.saved_cmdlines: dict = {}
        self.saved_cmdlines_size = SAVED_CMDLINES_DEFAULT

    # the projection reads these paths below /sys: kernfs_paths() for change reports
    def kernfs_paths(self) -> list:
        return ["kernel/tracing/instances", "kernel/debug/tracing/instances"]

    def calls(self) -> list:
        return list(_event_calls)

    def find_event(self, name: str) -> Optional[TraceEventCall]:
        """By ``name`` or ``system:name``."""
        for c in _event_calls:
            if name in (c.name, c.full_name):
                return c
        return None

    def clock_ns(self) -> int:
        return int(round(self.sys.timers.clock() * 1e9))

    def possible_cpus(self) -> list:
        """The CPU ids of the model (/sys/devices/system/cpu/cpuN); CPU 0 if it has none."""
        root = self.sys.top_devices.get("system")
        cpu_root = root.children.get("cpu") if root is not None else None
        ids = sorted(getattr(d, "id", 0) for d in cpu_root.children.values()) if cpu_root is not None else []
        return ids or [0]

    def arrays(self) -> list:
        return [self.global_trace, *self.instances.values()]

    def array(self, name: Optional[str]) -> TraceArray:
        if name is None:
            return self.global_trace
        tr = self.instances.get(name)
        if tr is None:
            raise KernelError(errno.ENODEV, f"tracing instance {name!r} was removed")
        return tr

    # ------------------------------------------------------------------ instances/
    def instance_mkdir(self, name: str) -> TraceArray:
        """instance_mkdir(): a new trace array, all events off, tracing_on 1, full-size buffers."""
        if not name or "/" in name:
            raise KernelError(errno.EINVAL, f"instances: bad name {name!r}")
        if name in self.instances:
            raise KernelError(errno.EEXIST, f"instances/{name}: exists")
        tr = self.instances[name] = TraceArray(tracing=self, name=name, expanded=True)
        self.sys.changes.touch(self)
        return tr

    def instance_rmdir(self, name: str) -> None:
        if name not in self.instances:
            raise KernelError(errno.ENOENT, f"instances/{name}: no such instance")
        del self.instances[name]
        self.sys.changes.touch(self)

    # ------------------------------------------------------------------ current task
    @contextlib.contextmanager
    def current(self, pid: int, comm: Union[str, Callable[[], str]], cpu: int = 0):
        """Charge the events emitted inside to this task (the FUSE request's caller).  Holds the
        system lock throughout: requests served on other threads (the control socket's ioctls)
        wait, as their state changes would anyway, so each event is charged to its own caller."""
        with self.sys.lock:
            old, self.task = self.task, Task(pid=pid, comm=comm, cpu=cpu)
            try:
                yield self.task
            finally:
                self.task = old

    def record_cmdline(self, task: Task) -> None:
        """tracing_record_cmdline(): remember pid -> comm for the output (``saved_cmdlines``)."""
        if task.pid == 0:
            return
        self.saved_cmdlines.pop(task.pid, None)
        self.saved_cmdlines[task.pid] = task.comm
        while len(self.saved_cmdlines) > self.saved_cmdlines_size:
            self.saved_cmdlines.pop(next(iter(self.saved_cmdlines)))

    def find_cmdline(self, pid: int) -> str:
        if pid == 0:
            return "<idle>"
        return self.saved_cmdlines.get(pid, "<...>")

    def saved_cmdlines_show(self) -> str:
        return "".join(f"{pid} {comm}\n" for pid, comm in self.saved_cmdlines.items())

    def set_saved_cmdlines_size(self, n: int) -> None:
        if n <= 0 or n > 32768:
            raise KernelError(errno.EINVAL, "saved_cmdlines_size: 1..32768")
        self.saved_cmdlines_size = n
        while len(self.saved_cmdlines) > n:
            self.saved_cmdlines.pop(next(iter(self.saved_cmdlines)))

    # ------------------------------------------------------------------ the tracepoint
    def enabled(self, call: TraceEventCall) -> bool:
        """trace_<event>_enabled(): some trace array would record it (lets callers skip work)."""
        return any(tr.tracing_on and tr.event_enabled(call) for tr in self.arrays())

    def emit(self, event, fields: dict) -> int:
        """Record ``event`` (a TraceEventCall or its name) with ``fields`` (name -> value) into
        every trace array that has it enabled and ``tracing_on`` 1; how many recorded it."""
        call = event if isinstance(event, TraceEventCall) else self.find_event(event)
        if call is None:
            raise ValueError(f"no trace event {event!r}")
        if not self.enabled(call):
            return 0
        task = self.task
        entry = call.pack(fields, pid=task.pid)
        rec = call.unpack(entry)
        now = self.clock_ns()
        n = sum(tr.record(call, entry, rec, task, now) for tr in self.arrays())
        if n:
            self.record_cmdline(task)
        return n
