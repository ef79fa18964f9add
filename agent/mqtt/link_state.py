"""The MQTT link's state as the scheduler sees it, with state changes logged once (not once per retry).

Not to be confused with :class:`agent.report.model.Connection`, a TCP connection in a report.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

from agent.schema import TextEnum


class LinkPhase(TextEnum):
    """Where the link is; the value (how it prints) is what ``STATUS=`` and ``defender-agent status`` show."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    NO_BROKER = "no broker (textfile sinks only)"


class LinkState:
    def __init__(self, address: str, logger: logging.Logger) -> None:
        self.address = address
        self.log = logger
        self.phase = LinkPhase.CONNECTING
        self.ready = False  # connected and subscribed to the reply topics
        self.subscribing = False
        self.since = 0.0
        self.down_since: Optional[float] = None
        self.failures = 0
        self.last_error: Optional[str] = None
        self.restart_at: Optional[float] = None
        self.resubscribe_at: Optional[float] = None
        self._warned_slow = False
        self._last_limited = -1e9
        self._suppressed = 0

    def starting(self, now: float) -> None:
        self.phase = LinkPhase.CONNECTING
        self.ready = False
        self.subscribing = False
        self.since = now
        self._warned_slow = False

    def connected(self, now: float, session_present: bool) -> None:
        if self.down_since is not None:
            self.log.info("Reconnected to %s after %.1f s", self.address, now - self.down_since)
        else:
            self.log.info("Connected to %s over mutual TLS in %.2f s", self.address, now - self.since)
        self.phase = LinkPhase.CONNECTED
        self.down_since = None
        self.failures = 0
        self.last_error = None
        self.subscribing = False
        self.ready = False

    def subscribed(self, now: float, ok: bool, detail: str) -> None:
        self.subscribing = False
        if ok:
            self.ready = self.phase is LinkPhase.CONNECTED
            self.resubscribe_at = None
            self.log.debug("Subscribed to the reply topics (%s)", detail)
        else:
            self.resubscribe_at = now + 5.0
            self.log.error("Subscribing to the reply topics failed (%s); retrying in 5 s, reports wait in "
                           "the outbox", detail)

    def lost(self, now: float, error: str) -> None:
        if self.phase is LinkPhase.CONNECTED:
            self.log.warning("Connection to %s lost (%s); reports stay in the outbox until it is back",
                             self.address, error)
            self.down_since = now
        self.phase = LinkPhase.DISCONNECTED
        self.ready = False
        self.subscribing = False

    def failed(self, now: float, error: str, retry_by_caller: bool) -> None:
        if self.down_since is None:
            self.down_since = now
        if error != self.last_error:
            self.log.warning("Cannot connect to %s: %s (retrying with backoff; repeats are not logged)",
                             self.address, error)
            self.last_error = error
        self.failures += 1
        self.phase = LinkPhase.DISCONNECTED
        self.ready = False
        if retry_by_caller:
            self.restart_at = now + min(60.0, 2.0 ** min(self.failures, 6))

    def restart_due(self, now: float) -> bool:
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            return True
        return False

    def resubscribe_due(self, now: float) -> bool:
        due = (self.phase is LinkPhase.CONNECTED and not self.ready and not self.subscribing
               and self.resubscribe_at is not None and now >= self.resubscribe_at)
        if due:
            self.resubscribe_at = None
        return due

    def next_deadline(self, connect_limit: float) -> Optional[float]:
        """The next time :meth:`restart_due`, :meth:`resubscribe_due` or :meth:`check_slow` has work to do.

        The loop sleeps until its nearest deadline and nothing else wakes it: a timer of this
        state that is not named here would never fire. ``None`` when none is set.
        """
        times = [self.restart_at]
        if self.phase is LinkPhase.CONNECTED and not self.ready and not self.subscribing:
            times.append(self.resubscribe_at)
        if self.phase is LinkPhase.CONNECTING and not self._warned_slow:  # strictly after the limit, as checked
            times.append(math.nextafter(self.since + connect_limit, math.inf))
        return min((t for t in times if t is not None), default=None)

    def check_slow(self, now: float, limit: float) -> None:
        if self.phase is LinkPhase.CONNECTING and not self._warned_slow and now - self.since > limit:
            self._warned_slow = True
            self.log.warning("Still connecting to %s after %.0f s (TLS errors such as a wrong CA or host name "
                             "take 10-30 s to surface)", self.address, now - self.since)

    def limited_warning(self, message: str, now: float, every: float = 10.0) -> None:
        """Log ``message`` unless another limited warning went out in the last ``every`` seconds."""
        if now - self._last_limited >= every:
            more = f" ({self._suppressed} similar message(s) not logged)" if self._suppressed else ""
            self.log.warning("%s%s", message, more)
            self._last_limited = now
            self._suppressed = 0
        else:
            self._suppressed += 1
