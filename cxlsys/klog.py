"""The kernel log ring (printk): why each write failed, what each probe did."""

from __future__ import annotations

import collections
import threading
import time
import traceback
from typing import Callable

import attrs

LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7}


def dmesg_line(ts: float, text: str) -> str:
    """A record as dmesg prints it: ``[    1.234567] text``."""
    return f"[{ts:12.6f}] {text}"


@attrs.define
class Record:
    """One line of the log: sequence number, time since boot, wall time, level (0 emerg .. 7 debug)."""

    seq: int
    ts: float          # seconds since the model "booted"
    wall: float        # host wall-clock time, for journalctl --since
    level: int
    text: str
    tag: str = ""      # "store": a sysfs store the kernel refused (what ``cxlsys run --explain`` echoes)

    def line(self) -> str:
        """As dmesg prints it."""
        return dmesg_line(self.ts, self.text)

    def as_json(self) -> dict:
        """As util-linux ``dmesg --json`` has it (pri, time, msg), with the sequence number."""
        return {"pri": self.level, "time": round(self.ts, 6), "msg": self.text, "seq": self.seq}


@attrs.define
class KernelLog:
    """The model's printk ring (``system.klog``): ``cxlsys dmesg``, ``journalctl -k`` and ``dmesg``
    inside ``cxlsys run`` read it; every refused store leaves its reason here."""

    size: int = 4096
    boot: float = attrs.field(factory=time.monotonic)
    records: collections.deque = attrs.field(init=False)
    seq: int = 0
    # called with each new record, in order (``cxlsys run --dmesg FILE``, ``--explain``): a sink that
    # fails is dropped, with a line saying so, and the log goes on
    sinks: list[Callable[[Record], None]] = attrs.field(factory=list)
    _arrived: threading.Condition = attrs.field(init=False, factory=threading.Condition)

    def __attrs_post_init__(self):
        self.records = collections.deque(maxlen=self.size)

    def log(self, text: str, level: str = "info", tag: str = "") -> None:
        """printk at ``level`` (a name of :data:`LEVELS`); ``tag`` marks a kind of line for sinks."""
        with self._arrived:
            self.seq += 1
            rec = Record(self.seq, time.monotonic() - self.boot, time.time(), LEVELS[level], text, tag)
            self.records.append(rec)
            self._arrived.notify_all()
        for sink in list(self.sinks):
            try:
                sink(rec)
            except Exception as e:     # a full disk or a closed terminal must not fail the write that logged
                try:
                    self.sinks.remove(sink)
                except ValueError:             # another thread dropped it already
                    continue
                self.log(f"cxlsys: kernel log sink {getattr(sink, '__name__', sink)!r} dropped: "
                         f"{type(e).__name__}: {e}", "warn")

    def add_sink(self, sink: Callable[[Record], None], replay: bool = True) -> None:
        """Send every record from now on to ``sink`` (and, with ``replay``, those in the ring first:
        an exception of the sink there reaches the caller, and the sink is not added)."""
        if replay:
            for r in list(self.records):
                sink(r)
        self.sinks.append(sink)

    def wait_after(self, seq: int, timeout: float) -> tuple[list[Record], int]:
        """The records after ``seq`` and the newest sequence number, read together; if there are
        none yet, wait up to ``timeout`` s for one (``cxlsys dmesg --follow``).  Records the ring
        already dropped are gone."""
        with self._arrived:
            self._arrived.wait_for(lambda: self.seq > seq, timeout)
            return [r for r in self.records if r.seq > seq], self.seq

    def dev_err(self, dev, text: str) -> None:
        self.log(f"{dev.driver_name_for_log()} {dev.name}: {text}", "err")

    def dev_dbg(self, dev, text: str) -> None:
        self.log(f"{dev.driver_name_for_log()} {dev.name}: {text}", "debug")

    def dev_info(self, dev, text: str) -> None:
        self.log(f"{dev.driver_name_for_log()} {dev.name}: {text}", "info")

    def warn_exception(self, where: str, exc: BaseException) -> None:
        """An internal bug, logged as the kernel's WARN() would be: a WARNING line, then the trace."""
        self.log(f"WARNING: cxlsys internal error in {where}: {type(exc).__name__}: {exc}", "warn")
        self.log("Call Trace:", "warn")
        for line in traceback.format_exception(type(exc), exc, exc.__traceback__):
            for part in line.rstrip("\n").split("\n"):
                self.log(f" {part}", "warn")

    def clear(self) -> None:
        """dmesg -C: empty the ring (sequence numbers go on)."""
        self.records.clear()

    def lines(self, since_wall: float | None = None, max_level: int = 7) -> list[str]:
        """The ring as dmesg prints it, up to ``max_level`` (7: with debug lines), optionally only
        records since a wall-clock time."""
        return [
            r.line()
            for r in self.records
            if r.level <= max_level and (since_wall is None or r.wall >= since_wall)
        ]

    def since(self, seq: int) -> list[Record]:
        return [r for r in self.records if r.seq > seq]
