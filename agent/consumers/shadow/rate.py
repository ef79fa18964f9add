"""How often the shadow is written: what a fleet of gateways can afford, whatever the report interval.

Pure: times are the loop's monotonic seconds, passed in. The rule (docs/FLEET.md, "Update rate"):

- a change of what the fleet queries (an alarm raised or cleared, health, a config applied, the
  agent's version) is *urgent*: it goes at once, but never sooner than :data:`URGENT_SPACING` after
  the last update, and urgent updates draw on a bucket of :data:`URGENT_BURST` that refills one
  every :data:`URGENT_REFILL` seconds (a behavior that flaps every round costs one update a minute,
  not one every 5 s);
- a change of routine fields alone (last report time, outbox pending) waits until
  ``max(ROUTINE_MIN, report interval)`` after the last update: a 1 s report interval means at most
  one routine update a minute;
- after a rejected update the next waits :data:`RETRY_FIRST`, doubling up to the routine pace.

So over ``T`` seconds at most ``1 + URGENT_BURST + T / URGENT_REFILL + T / routine`` updates go.
One update is in flight at a time (until its answer or :data:`REPLY_TIMEOUT`), and a ``/get`` is
never sent sooner than :data:`URGENT_SPACING` after the last one: far inside AWS's limits of 20
requests per second per thing and 10 unanswered requests in flight.
"""

from __future__ import annotations

from typing import Optional

ROUTINE_MIN = 60.0  # seconds between updates that only carry routine fields, at least
URGENT_SPACING = 5.0  # seconds between any two updates (and between two /get requests), at least
URGENT_BURST = 5  # urgent updates that may go back to back (URGENT_SPACING apart)
URGENT_REFILL = 60.0  # seconds per urgent update once the burst is spent
RETRY_FIRST = 5.0  # seconds after a rejected update; doubles up to the routine pace
REPLY_TIMEOUT = 30.0  # a request unanswered this long is given up (a fresh /get follows)


def routine_every(report_interval: float) -> float:
    return max(ROUTINE_MIN, report_interval)


def max_updates(seconds: float, report_interval: float) -> int:
    """The most updates the pace allows over ``seconds`` (what a test of a real run may assert)."""
    return int(1 + URGENT_BURST + seconds / URGENT_REFILL + seconds / routine_every(report_interval))


class Pace:
    """When the next update may go."""

    def __init__(self, report_interval: float) -> None:
        self.routine = routine_every(report_interval)
        self.last_update: Optional[float] = None
        self.not_before: Optional[float] = None  # after a rejection
        self.backoff = RETRY_FIRST
        self.tokens = float(URGENT_BURST)
        self.refilled: Optional[float] = None  # when the tokens were last counted

    def configure(self, report_interval: float) -> None:
        self.routine = routine_every(report_interval)

    def _refill(self, now: float) -> None:
        if self.refilled is not None:
            self.tokens = min(float(URGENT_BURST), self.tokens + (now - self.refilled) / URGENT_REFILL)
        self.refilled = now

    def due_at(self, routine: bool, now: float) -> float:
        """The earliest time an update of this kind may go (``-inf``: now)."""
        self._refill(now)
        at = float("-inf")
        if self.last_update is not None:
            at = self.last_update + (self.routine if routine else URGENT_SPACING)
        if not routine and self.tokens < 1:
            at = max(at, now + (1 - self.tokens) * URGENT_REFILL)
        if self.not_before is not None:
            at = max(at, self.not_before)
        return at

    def sent(self, now: float, routine: bool) -> None:
        self._refill(now)
        if not routine:
            self.tokens = max(0.0, self.tokens - 1)
        self.last_update = now

    def accepted(self) -> None:
        self.not_before = None
        self.backoff = RETRY_FIRST

    def rejected(self, now: float) -> None:
        self.not_before = now + self.backoff
        self.backoff = min(self.backoff * 2, self.routine)
