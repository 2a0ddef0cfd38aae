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
    seq: int = 0          # the n-th timer this system added: the same on a replay of the same operations

    def cancel(self) -> None:
        self.cancelled = True


@attrs.define(eq=False)
class Timers:
    clock: Callable[[], float] = time.monotonic
    on_add: Optional[Callable[[], None]] = attrs.field(default=None, repr=False)
    on_fire: Optional[Callable[[int], None]] = attrs.field(default=None, repr=False)   # a timer's seq, as it runs
    hold: bool = False    # a journal replay (cxlsys/journal.py): timers run only when a record says so
    _heap: list = attrs.field(factory=list, repr=False)
    _seq: itertools.count = attrs.field(factory=itertools.count, repr=False)

    def add(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        n = next(self._seq)
        h = TimerHandle(self.clock() + max(0.0, delay_s), fn, seq=n)
        heapq.heappush(self._heap, (h.deadline, n, h))
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
        while self._heap and not self.hold:
            deadline, _, h = self._heap[0]
            if h.cancelled:
                heapq.heappop(self._heap)
                continue
            if deadline > self.clock():
                break
            heapq.heappop(self._heap)
            self._run(h, on_error)
            n += 1
        return n

    def _run(self, h: TimerHandle, on_error: Optional[Callable[[Exception], None]]) -> None:
        h.cancelled = True
        if self.on_fire is not None:
            self.on_fire(h.seq)
        try:
            h.fn()
        except Exception as e:
            if on_error is None:
                raise
            on_error(e)

    def fire(self, seq: int, on_error: Optional[Callable[[Exception], None]] = None) -> bool:
        """Run the pending timer ``seq`` now, due or not (a journal replay repeats a firing where
        it happened); False if no such timer is pending."""
        for i, (_, n, h) in enumerate(self._heap):
            if n == seq and not h.cancelled:
                self._heap.pop(i)
                heapq.heapify(self._heap)
                self._run(h, on_error)
                return True
        return False
