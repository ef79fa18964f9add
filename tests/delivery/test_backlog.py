"""agent/delivery/backlog.py: only the newest unsent report stays; ``newest`` leaves the older deltas out (and
says so), ``fold`` adds them; the outbox bound (bytes, free disk) drops the oldest."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.config.model import BacklogMode, DeliveryConfig
from agent.delivery.backlog import Backlog
from agent.delivery.ids import OutboxIds
from agent.delivery.outbox import Outbox, Pending
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


def test_the_outbox_bound_drops_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, OutboxIds(tmp_path, box), tmp_path, LOG)
    for rid in range(1, 21):
        backlog.store(awaiting(rid, size=300), delivery())
        assert box.pending_bytes() <= 1000
    ids = [p.report_id for p in box.pending()]
    assert ids == [18, 19, 20]
    assert box.counters()["dropped"] == 17
    assert set(range(1, 18)) == {r for r in range(1, 18) if box.outcome_of(r) == "dropped"}
    # one warning for the whole burst of 17 drops: the first one, with the cap that caused it
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOG.name]
    assert lines == [(logging.WARNING, "Dropped 1 oldest pending report(s) (id 1): outbox full (cap 1000 bytes); "
                                       "further drops in this burst are counted, not logged")]


def test_the_outbox_stops_growing_when_disk_is_low(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    free = [10**9]
    backlog = Backlog(box, OutboxIds(tmp_path, box), tmp_path, LOG, disk_free=lambda p: free[0])
    for rid in (1, 2):
        backlog.store(awaiting(rid, size=100), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
    free[0] = 10
    for rid in (3, 4, 5):
        backlog.store(awaiting(rid, size=100), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
        assert box.pending_count() == 2
    assert [p.report_id for p in box.pending()] == [4, 5]
    assert box.ledger(outcome="dropped")[0].message == f"disk nearly full (under 1000 bytes free in {tmp_path})"


def test_newest_supersedes_unsent_reports_and_says_which_deltas_it_left_out(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, OutboxIds(tmp_path, box), tmp_path, LOG)
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
    backlog = Backlog(box, OutboxIds(tmp_path, box), tmp_path, LOG)
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
    change = Backlog(box, ids, tmp_path, LOG).fold_pending(BacklogMode.FOLD)
    assert change.stored is not None and change.stored.report_id == 3
    assert change.stored.network == NetworkStats(150, 150, 2, 2)
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"
    # a delivered (PUBACKed) report stays pending (resent until a reply) and is not folded
    box.record_attempt(3, 1.0, 2.0)
    box.mark_delivered(3)
    backlog = Backlog(box, ids, tmp_path, LOG)
    backlog.store(pending(ids.next(), net=70), delivery(backlog=BacklogMode.FOLD))
    assert [(p.report_id, p.network) for p in box.pending()] == [
        (3, NetworkStats(150, 150, 2, 2)), (4, NetworkStats(70, 70, 1, 1))]
    assert box.outcome_of(3) is None


def test_newest_at_start_keeps_the_newest_unsent_report_and_leaves_the_rest_out(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    ids = OutboxIds(tmp_path, box, clock=lambda: 0)
    for net in (10, 20, 30):
        box.add(pending(ids.next(), net=net))
    change = Backlog(box, ids, tmp_path, LOG).fold_pending(BacklogMode.NEWEST)
    assert [p.report_id for p in box.pending()] == [3] and change.removed == [1, 2]
    assert box.pending()[0].network == NetworkStats(30, 30, 1, 1)  # unchanged: no new id, no rewrite
    assert "left out (30 bytes in, 30 bytes out, 2 packets in, 2 packets out)" in change.note
