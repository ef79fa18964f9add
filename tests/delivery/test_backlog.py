"""agent/outbox/backlog.py: only the newest unsent report stays; ``newest`` leaves the older deltas out (and
says so), ``fold`` adds them; the outbox's bound (agent/outbox/admission.py: bytes, free disk) drops the oldest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Tuple

import pytest

from agent.config.model import BacklogMode, DeliveryConfig
from agent.outbox.admission import Admission
from agent.outbox.backlog import Backlog
from agent.outbox.ids import OutboxIds
from agent.outbox.store import Outbox, Pending
from agent.report.document import decode, validate_document
from agent.report.model import NetworkStats
from tests.delivery.test_outbox import pending

LOG = logging.getLogger("agent.test.backlog")


def delivery(**kw: object) -> DeliveryConfig:
    values = dict(backlog=BacklogMode.NEWEST, reply_timeout=2.0, retry_max_delay=4.0, max_attempts=5,
                  max_outbox_bytes=1000, min_free_disk=0)
    values.update(kw)
    return DeliveryConfig(**values)  # type: ignore[arg-type]


def awaiting(rid: int, size: int = 10, net: int = 0) -> Pending:
    """A report the broker acknowledged and the service has not answered yet: the backlog keeps it."""
    return pending(rid, size=size, net=net, attempts=1, delivered=True)


CAP = 256 * 1024


def bounded(tmp_path: Path, free: Callable[[Path], int] = lambda p: 1 << 40) -> Tuple[Outbox, Backlog, Admission]:
    box = Outbox.open(tmp_path, LOG)
    admission = Admission(box, tmp_path, LOG, disk_free=free)
    admission.configure(CAP, 1000, 1.0)
    return box, Backlog(box, OutboxIds(tmp_path, box), admission, LOG), admission


def test_the_outbox_bound_drops_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Acknowledged reports stay pending (awaiting their reply) until the bound in bytes drops the oldest."""
    box, backlog, admission = bounded(tmp_path)
    for rid in range(1, 21):
        backlog.store(awaiting(rid, size=30 * 1024), delivery(max_outbox_bytes=CAP))
        assert admission.in_use() <= CAP
    ids = [p.report_id for p in box.pending()]
    assert ids == list(range(21 - len(ids), 21)) and 5 <= len(ids) <= 8
    assert box.counters()["dropped"] == 20 - len(ids)
    assert {r for r in range(1, 21 - len(ids)) if box.outcome_of(r) == "dropped"} == set(range(1, 21 - len(ids)))
    # one warning for the whole burst of drops: the first one, with the cap that caused it
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOG.name]
    assert lines == [(logging.WARNING, f"Dropped 1 oldest pending report(s) (id 1): outbox full (cap {CAP} bytes); "
                                       "further drops in this burst are counted, not logged")]


def test_the_outbox_stops_growing_when_disk_is_low(tmp_path: Path) -> None:
    free = [10**9]
    box, backlog, _ = bounded(tmp_path, lambda p: free[0])
    for rid in (1, 2):
        backlog.store(awaiting(rid, size=10 * 1024), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
    free[0] = 10
    for rid in (3, 4, 5):
        backlog.store(awaiting(rid, size=10 * 1024), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
        assert box.pending_count() == 2
    assert [p.report_id for p in box.pending()] == [4, 5]
    assert box.ledger(outcome="dropped")[0].message == f"disk nearly full (under 1000 bytes free in {tmp_path})"


def test_newest_supersedes_unsent_reports_and_says_which_deltas_it_left_out(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, OutboxIds(tmp_path, box), Admission(box, tmp_path, LOG), LOG)
    d = delivery(backlog=BacklogMode.NEWEST)
    backlog.store(pending(1, net=100), d)
    backlog.store(pending(2, net=50), d)
    change = backlog.store(pending(3, net=7), d)
    assert [p.report_id for p in box.pending()] == [3]
    assert change.stored is not None and change.stored.network == NetworkStats(7, 7, 1, 1)  # its own interval only
    doc, _ = decode(box.pending()[0].payload)
    assert doc["header"]["report_id"] == 3 and validate_document(doc) == []
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"
    assert change.note == ("supersedes 1 report(s) that never reached the broker (id 2; their network deltas are "
                           "left out (50 bytes in, 50 bytes out, 1 packets in, 1 packets out))")


def test_fold_adds_the_unsent_reports_deltas(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, OutboxIds(tmp_path, box), Admission(box, tmp_path, LOG), LOG)
    d = delivery(backlog=BacklogMode.FOLD)
    backlog.store(pending(1, net=100), d)
    backlog.store(pending(2, net=100), d)
    change = backlog.store(pending(3, net=100), d)
    assert [p.report_id for p in box.pending()] == [3]
    assert change.stored is not None and change.stored.network == NetworkStats(300, 300, 3, 3)
    doc, _ = decode(box.pending()[0].payload)
    assert doc["metrics"]["network_stats"] == {"bytes_in": 300, "bytes_out": 300, "packets_in": 3, "packets_out": 3}
    assert doc["header"]["report_id"] == 3 and validate_document(doc) == []
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"


def test_fold_never_changes_bytes_under_a_published_id(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    ids = OutboxIds(tmp_path, box, clock=lambda: 0)
    box.add(pending(ids.next(), net=100))  # id 1, never sent
    box.add(pending(ids.next(), net=50, attempts=2))  # id 2, already published
    change = Backlog(box, ids, Admission(box, tmp_path, LOG), LOG).fold_pending(BacklogMode.FOLD)
    assert change.stored is not None and change.stored.report_id == 3
    assert change.stored.network == NetworkStats(150, 150, 2, 2)
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"
    # a delivered (PUBACKed) report stays pending (resent until a reply) and is not folded
    box.record_attempt(3, 1.0, 2.0)
    box.mark_delivered(3)
    backlog = Backlog(box, ids, Admission(box, tmp_path, LOG), LOG)
    backlog.store(pending(ids.next(), net=70), delivery(backlog=BacklogMode.FOLD))
    assert [(p.report_id, p.network) for p in box.pending()] == [
        (3, NetworkStats(150, 150, 2, 2)), (4, NetworkStats(70, 70, 1, 1))]
    assert box.outcome_of(3) is None


def test_newest_at_start_keeps_the_newest_unsent_report_and_leaves_the_rest_out(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    ids = OutboxIds(tmp_path, box, clock=lambda: 0)
    for net in (10, 20, 30):
        box.add(pending(ids.next(), net=net))
    change = Backlog(box, ids, Admission(box, tmp_path, LOG), LOG).fold_pending(BacklogMode.NEWEST)
    assert [p.report_id for p in box.pending()] == [3] and change.removed == [1, 2]
    assert box.pending()[0].network == NetworkStats(30, 30, 1, 1)  # unchanged: no new id, no rewrite
    assert "left out (30 bytes in, 30 bytes out, 2 packets in, 2 packets out)" in change.note
