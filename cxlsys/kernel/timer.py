"""Delayed work against a clock: what the kernel's ``schedule_delayed_work`` / ``mod_timer`` give a
driver whose device finishes something later (a sanitize that takes ``sanitize_timeout`` ms, a
firmware transfer, a background command).

``Timers.clock`` is the time source (``time.monotonic`` by default; tests pass a
:class:`FakeClock` and ``advance()`` it).  ``add(delay_s, fn)`` schedules ``fn`` (called under the
system lock, with its changes tracked like any other); ``run_due()`` runs what is due, in deadline
order, and is called by every projection entry point and by the daemon's timer thread, which
sleeps until ``next_deadline()`` and is woken by ``add`` (``on_add``).  Nothing here sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable, Optional

import attrs


@attrs.define
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.define(eq=False)
class TimerHandle:
    deadline: float
    fn: Callable[[], None] = attrs.field(repr=False)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@attrs.define(eq=False)
class Timers:
    clock: Callable[[], float] = time.monotonic
    on_add: Optional[Callable[[], None]] = attrs.field(default=None, repr=False)
    _heap: list = attrs.field(factory=list, repr=False)
    _seq: itertools.count = attrs.field(factory=itertools.count, repr=False)

    def add(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        h = TimerHandle(self.clock() + max(0.0, delay_s), fn)
        heapq.heappush(self._heap, (h.deadline, next(self._seq), h))
        if self.on_add is not None:
            self.on_add()
        return h

    def next_deadline(self) -> Optional[float]:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_due(self, on_error: Optional[Callable[[Exception], None]] = None) -> int:
        """Run every timer whose deadline has passed; how many ran.  A callback that raises is an
        internal bug: ``on_error(exc)`` reports it (the kernel log's WARN) and the rest still run."""
        n = 0
        while self._heap:
            deadline, _, h = self._heap[0]
            if h.cancelled:
                heapq.heappop(self._heap)
                continue
            if deadline > self.clock():
                break
            heapq.heappop(self._heap)
            h.cancelled = True
            try:
                h.fn()
            except Exception as e:
                if on_error is None:
                    raise
                on_error(e)
            n += 1
        return n
