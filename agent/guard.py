"""No error ends the loop: each stage of a turn runs guarded, and what failed is logged once, not every turn.

A storage error (state_dir full or failing) is logged once per burst, until a round is stored
again; any other error (a library's, or a bug) at most every :data:`UNEXPECTED_REPEAT` seconds
per stage and kind, with how often it recurred; ``log_level: debug`` shows the traceback.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from agent.outbox.store import STORAGE_ERRORS

UNEXPECTED_REPEAT = 600.0  # seconds: an unexpected error of one kind at one stage is logged at most this often


class Stage(enum.Enum):
    """What the loop was doing when something failed; the value is named in the log line."""

    SAMPLE = "starting a round"
    STORE = "storing a report"
    SEND = "sending reports"
    EVENT = "handling an event"
    SAVE_STATUS = "saving the status"
    CONNECT = "keeping the connection"
    HEARTBEAT = "telling systemd how it goes"
    CLOSE = "stopping"

    @property
    def writes_state(self) -> bool:
        """Whether an OSError here can only mean state_dir (the connection and the notify socket are not it)."""
        return self not in (Stage.CONNECT, Stage.HEARTBEAT, Stage.SAMPLE, Stage.CLOSE)


class Guard:
    def __init__(self, logger: logging.Logger, state_dir: Path, monotonic: Callable[[], float]) -> None:
        self.log = logger
        self.state_dir = state_dir
        self.monotonic = monotonic
        self.storage_failures = 0  # consecutive failed writes to state_dir (disk full), logged once per burst
        self.failing: Dict[Tuple[Stage, str], Tuple[float, float, int]] = {}  # first seen, last logged, unlogged

    def run(self, stage: Stage, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn``; True when it returned. Only a report stored again proves that writing works."""
        try:
            fn(*args)
        except STORAGE_ERRORS as exc:
            if not stage.writes_state:
                self.unexpected(stage, exc)
                return False
            self.storage_failures += 1
            if self.storage_failures == 1:
                self.log.error("Cannot write to %s while %s: %s; the report(s) concerned stay pending or are "
                               "skipped, and writing is retried every round", self.state_dir, stage.value, exc)
            return False
        except Exception as exc:  # awscrt, cbor2, json, SQLite's other errors, a bug: one line, then go on
            self.unexpected(stage, exc)
            return False
        if self.storage_failures and stage is Stage.STORE:
            self.log.warning("Writing to %s works again (after %d failed write(s))", self.state_dir,
                             self.storage_failures)
            self.storage_failures = 0
        return True

    def unexpected(self, stage: Stage, exc: Exception) -> None:
        """One journal line per stage and kind of error, at most every 10 minutes, with how often it recurred."""
        kind = f"{type(exc).__module__}.{type(exc).__name__}".replace("builtins.", "")
        now = self.monotonic()
        first, last, count = self.failing.get((stage, kind), (now, -UNEXPECTED_REPEAT, 0))
        if now - last >= UNEXPECTED_REPEAT:
            again = f" ({count} more time(s) since {now - first:.0f} s ago)" if count else ""
            self.log.error("Unexpected error while %s: %s: %s%s; the loop goes on (repeated at most every "
                           "%.0f min; log_level: debug shows the traceback)", stage.value, kind, exc, again,
                           UNEXPECTED_REPEAT / 60)
            self.failing[(stage, kind)] = (first, now, 0)
        else:
            self.failing[(stage, kind)] = (first, last, count + 1)
        self.log.debug("Traceback of the error while %s", stage.value, exc_info=True)
