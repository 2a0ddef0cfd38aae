"""The kernel log ring (printk): why each write failed, what each probe did."""

from __future__ import annotations

import collections
import time
import traceback

import attrs

LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7}


@attrs.define
class Record:
    seq: int
    ts: float          # seconds since the model "booted"
    wall: float        # host wall-clock time, for journalctl --since
    level: int
    text: str


@attrs.define
class KernelLog:
    size: int = 4096
    boot: float = attrs.field(factory=time.monotonic)
    records: collections.deque = attrs.field(init=False)
    seq: int = 0

    def __attrs_post_init__(self):
        self.records = collections.deque(maxlen=self.size)

    def log(self, text: str, level: str = "info") -> None:
        self.seq += 1
        self.records.append(Record(self.seq, time.monotonic() - self.boot, time.time(), LEVELS[level], text))

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
        return [
            f"[{r.ts:12.6f}] {r.text}"
            for r in self.records
            if r.level <= max_level and (since_wall is None or r.wall >= since_wall)
        ]

    def since(self, seq: int) -> list[Record]:
        return [r for r in self.records if r.seq > seq]
