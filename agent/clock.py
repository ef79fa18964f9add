"""Time as the scheduler loop reads it, behind one small seam, so a test can run the loop on a fake clock.

Three readings and nothing else: ``monotonic()`` for every deadline, ``wall()`` for
what is stored or sent (epoch seconds: report ids, outbox times), and ``wait()``,
the loop's one blocking call (the next event, or ``None`` once ``timeout`` passed).

:class:`SystemClock` is the real one. :class:`FakeClock` is for tests, shipped
beside it (as :mod:`agent.mqtt.fake` ships beside the MQTT link): it only
moves when told to, or when the loop waits on an empty queue, in which case it
jumps ahead by the whole wait. A loop on a fake clock therefore runs through
minutes of deadlines in milliseconds, without a single real sleep.
"""

from __future__ import annotations

import queue
import time
from typing import List, Optional, Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def wait(self, events: queue.SimpleQueue[object], timeout: float) -> Optional[object]:
        """The next event on ``events``, or ``None`` when ``timeout`` seconds pass without one."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait(self, events: queue.SimpleQueue[object], timeout: float) -> Optional[object]:
        try:
            return events.get(timeout=timeout)
        except queue.Empty:
            return None


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
