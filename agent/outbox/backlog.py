"""Backlog policy: how a new report enters the outbox and what it replaces.

The service takes every report as current and wants report ids to only go up, so
after an outage only the newest report is worth sending. In both modes the new
report supersedes every pending report that never reached the broker (no PUBACK).

``newest`` (the default): their network deltas are left out, and the note says how
many bytes and packets that was: each delta belongs to its own interval, and a sum
over an outage would land in one Detect window as a false spike.

``fold``: their network deltas are added to the new report's own, so the sums over
time stay whole (at the price of that spike). A report that was already published,
or stored in an earlier round, is never changed under its id: if it must absorb
deltas, the sum goes out under a new id and the old one ends ``superseded`` too.

Reports the broker acknowledged but the service did not answer stay pending; the
defender consumer ends them ``unanswered`` once a newer report is published. The
bound in bytes (``delivery.max_outbox_bytes``, ``delivery.min_free_disk``) is the one
admission policy of the whole outbox (:mod:`agent.outbox.admission`), enforced in the
same transaction as the store.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, List, Optional, Sequence, Tuple

from agent.config.model import BacklogMode, DeliveryConfig
from agent.outbox.admission import Admission
from agent.outbox.fold import rewrite, sum_network
from agent.outbox.ids import OutboxIds
from agent.outbox.store import Outbox, Pending


@dataclasses.dataclass
class Change:
    """What a store or fold did: the report now pending (if any) and the ids that left the outbox."""

    stored: Optional[Pending]
    removed: List[int]
    note: str = ""  # for the log: what the stored report superseded ("" when nothing)


class Backlog:
    """Stores new reports under the ``delivery.backlog`` policy.

    Raises what the outbox raises (see :mod:`agent.outbox.store`), and :class:`OSError` when a fold
    needs a new id and :meth:`OutboxIds.next` cannot raise the id reserve; nothing is changed then.
    """

    def __init__(
        self,
        outbox: Outbox,
        ids: OutboxIds,
        admission: Admission,
        logger: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.ids = ids
        self.admission = admission
        self.log = logger
        self.clock = clock

    def store(self, new: Pending, delivery: DeliveryConfig) -> Change:
        """Store ``new`` under the backlog policy, then the outbox's bound (in the caller's transaction)."""
        before = self.admission.in_use()
        olds = [p for p in self.outbox.pending() if not p.delivered]
        change = self._replace(delivery.backlog, olds, new, stored_before=False)
        kept = change.stored.report_id if change.stored is not None else new.report_id
        dropped = self.admission.enforce(("report", kept), self.clock(), before)
        return Change(change.stored, change.removed + dropped.reports, change.note)

    def fold_pending(self, mode: BacklogMode) -> Change:
        """Apply ``mode`` to what is already pending (start-up, reload): one unacknowledged report stays."""
        waiting = [p for p in self.outbox.pending() if not p.delivered]
        if len(waiting) <= 1:
            return Change(None, [])
        change = self._replace(mode, waiting[:-1], waiting[-1], stored_before=True)
        if change.note:
            self.log.info("Pending report %d %s", change.stored.report_id if change.stored else waiting[-1].report_id,
                          change.note)
        return change

    def _replace(self, mode: BacklogMode, olds: Sequence[Pending], target: Pending, stored_before: bool) -> Change:
        """``target`` replaces ``olds`` under ``mode``; it is stored unless it was ``stored_before``."""
        if mode is BacklogMode.FOLD:
            return self._fold(olds, target, stored_before)
        return self._supersede(olds, target.report_id, None if stored_before else target)

    def _supersede(self, olds: Sequence[Pending], winner: int, new: Optional[Pending]) -> Change:
        """Report ``winner`` supersedes ``olds``, whose deltas are left out (and said); ``new`` is stored, if given."""
        if not olds:
            if new is not None:
                self.outbox.add(new)
            return Change(new, [])
        reasons = [(o.report_id, f"superseded by report {winner} ({_why_unsent(o)})") for o in olds]
        self.outbox.supersede_into(reasons, new, self.clock())
        ids = [r for r, _ in reasons]
        left = sum_network(o.network for o in olds)
        deltas = (f"; their network deltas are left out ({left.bytes_in} bytes in, {left.bytes_out} bytes out, "
                  f"{left.packets_in} packets in, {left.packets_out} packets out)" if left is not None else "")
        return Change(new, ids, f"supersedes {len(ids)} report(s) that never reached the broker ({_span(ids)}{deltas})")

    def _fold(self, olds: Sequence[Pending], target: Pending, stored_before: bool) -> Change:
        """Supersede ``olds`` by ``target`` (folding their deltas in); the caller logs ``Change.note``.

        A ``target`` that was ``stored_before`` (in an earlier run or round) gets a new id when its bytes
        change, even with ``attempts == 0``: attempts are recorded without an fsync of their own (see
        agent.outbox.db), so after a power loss 0 may hide a publish.
        """
        now = self.clock()
        fold_from = [o for o in olds if o.network is not None and not o.delivered]
        replaced: List[Pending] = list(olds)
        stored: Optional[Pending] = target if target.attempts == 0 else None
        if fold_from:
            folded = sum_network([target.network, *(o.network for o in fold_from)])
            rid = target.report_id
            if target.attempts > 0 or stored_before:  # (maybe) published under its id: the sum needs a new id
                rid = self.ids.next()
                replaced.append(target)
                if target.network is not None:
                    fold_from.append(target)  # its deltas are in the sum too
            target = dataclasses.replace(
                target, report_id=rid, payload=rewrite(target.payload, rid, folded), network=folded,
                attempts=0, first_sent_at=None, delivered=False, next_attempt_at=now, created_at=now,
            )
            stored = target
        if not replaced:
            if stored is not None:
                self.outbox.add(stored)
            return Change(stored, [])
        folded_ids = {o.report_id for o in fold_from}
        reasons: List[Tuple[int, str]] = []
        for old in replaced:
            how = ("network deltas folded in" if old.report_id in folded_ids
                   else "reached the broker, no reply" if old.delivered else "nothing to fold")
            reasons.append((old.report_id, f"superseded by report {target.report_id} ({how})"))
        self.outbox.supersede_into(reasons, stored, now)
        ids = [r for r, _ in reasons]
        deltas = "; their network deltas are folded in" if folded_ids else ""
        note = f"supersedes {len(ids)} report(s) that never reached the broker ({_span(ids)}{deltas})"
        return Change(stored, ids, note)


def _why_unsent(report: Pending) -> str:
    return "published, but the broker never acknowledged it" if report.attempts else "never published"


def _span(ids: Sequence[int]) -> str:
    if not ids:
        return "none"
    if len(ids) == 1:
        return f"id {ids[0]}"
    return f"ids {min(ids)}..{max(ids)}"
