"""Time as the scheduler loop reads it, behind one small seam, so a test can run the loop on a fake clock.

Three readings and nothing else: ``monotonic()`` for every deadline, ``wall()`` for
what is stored or sent (epoch seconds: report ids, outbox times), and ``wait()``,
the loop's one blocking call (the next event, or ``None`` once ``timeout`` passed).

:class:`SystemClock` is the real one; tests use :class:`devkit.clock.FakeClock`
(in the source tree, not in the package a gateway installs).
"""

from __future__ import annotations

import queue
import time
from typing import Optional, Protocol


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
