"""A fake :class:`agent.clock.Clock` for tests: it only moves when told to, or when the loop waits on
an empty queue, in which case it jumps ahead by the whole wait. A loop on a fake clock therefore runs
through minutes of deadlines in milliseconds, without a single real sleep."""

from __future__ import annotations

import queue
from typing import List, Optional


class FakeClock:
    """A clock for tests. ``wait`` never blocks: an event already queued comes back at once, and an
    empty queue moves the clock forward by ``timeout`` (the time the real loop would have slept)."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall_start - start
        self.waits: List[float] = []  # every timeout the loop waited for (a busy loop shows as zeros)

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, events: queue.SimpleQueue[object], timeout: float) -> Optional[object]:
        self.waits.append(timeout)
        try:
            return events.get_nowait()
        except queue.Empty:
            self.now += max(0.0, timeout)
            return None
