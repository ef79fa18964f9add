"""The state directory as the loop uses it: the outbox opened, a round's id and transaction, the status meta.

The loop owns the timing and the transaction of a round; what goes into the outbox inside it
is each consumer's (:mod:`agent.consumers`). This is the one door through which the loop
reaches ``state_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from agent.config.model import DeliveryConfig
from agent.errors import StateDirError
from agent.outbox.admission import Admission
from agent.outbox.db import Transaction
from agent.outbox.ids import OutboxIds
from agent.outbox.store import STORAGE_ERRORS, Outbox, ReportOutcome

__all__ = ["STORAGE_ERRORS", "StateDir"]


class StateDir:
    def __init__(self, state_dir: Path, logger: logging.Logger, wall: Callable[[], float]) -> None:
        """Open (or create) the outbox in ``state_dir``; raises :class:`StateDirError` when it cannot."""
        try:
            self.outbox = Outbox.open(state_dir, logger)
        except STORAGE_ERRORS as exc:
            raise StateDirError(f"cannot open the outbox in {state_dir}: {exc}") from exc
        self.path = state_dir
        self.ids = OutboxIds(state_dir, self.outbox, clock=wall)
        self.admission = Admission(self.outbox, state_dir, logger.getChild("outbox"))

    def configure(self, delivery: DeliveryConfig, now: float) -> None:
        """The outbox's bound (at start and on reload)."""
        self.admission.configure(delivery.max_outbox_bytes, delivery.min_free_disk, now)

    def transaction(self) -> Transaction:
        return self.outbox.transaction()

    def next_id(self) -> int:
        return self.ids.next()

    def unbuilt(self, report_id: int, reason: str, wall: float) -> None:
        """The ledger's entry for a round whose report could not be built."""
        self.outbox.record_unsent(report_id, ReportOutcome.DROPPED, reason[:500], wall)

    def save_meta(self, values: Mapping[str, Any]) -> None:
        self.outbox.set_meta(values)

    def after_commit(self) -> None:
        """Give pages back when the file is over its bound (a lowered bound, an old file)."""
        self.admission.compact()

    def close(self) -> None:
        self.outbox.close()
