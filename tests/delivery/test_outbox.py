"""agent/outbox/store.py: the ledger and its counters, a corrupt file moved aside, a failing disk raised."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from agent.outbox.store import DB_NAME, Outbox, Pending
from agent.report.model import NetworkStats

LOG = logging.getLogger("agent.test.outbox")


def pending(rid: int, size: int = 10, net: int = 0, attempts: int = 0, delivered: bool = False) -> Pending:
    """A pending report ``rid`` of about ``size`` bytes, with network deltas ``net`` (none when 0)."""
    doc = {"header": {"report_id": rid, "version": "1.0"}, "metrics": {}}
    payload = json.dumps(doc).encode() + b" " * max(0, size - 50)
    network = NetworkStats(net, net, 1, 1) if net else None
    return Pending(report_id=rid, format="json", payload=payload, created_at=1.0, attempts=attempts,
                   next_attempt_at=1.0, first_sent_at=None, delivered=delivered, network=network)


def test_outbox_ledger_and_counters_survive_reopen(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    box.add(pending(1))
    box.add(pending(2))
    box.record_attempt(1, 2.0, 3.0)
    assert box.finish(1, "accepted", None, None, 4.0)
    assert not box.finish(1, "accepted", None, None, 4.0)  # exactly one outcome
    assert box.finish(2, "rejected", "InvalidPayload", "Malformed metrics report", 5.0)
    box.close()
    box = Outbox.open(tmp_path, LOG)
    assert box.counters() == {"accepted": 1, "rejected": 1, "published": 1}
    assert box.outcome_of(2) == "rejected" and box.pending() == []
    assert box.ledger(outcome="rejected")[0].code == "InvalidPayload"
    assert box.max_known_id() == 2


def test_corrupt_outbox_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    box = Outbox.open(tmp_path, LOG)
    assert box.counters() == {"outbox_corrupt": 1}
    moved = list(tmp_path.glob(f"{DB_NAME}.*.corrupt"))
    assert len(moved) == 1
    box.add(pending(5))
    assert [p.report_id for p in box.pending()] == [5]
    # the operator is told once, as an error, which file was unreadable and where it went
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOG.name]
    assert lines == [(logging.ERROR, f"Outbox {tmp_path / DB_NAME} is unreadable (file is not a database); "
                                     f"moved it to {moved[0]} and started a fresh one")]


def test_a_failing_disk_leaves_the_outbox_in_place(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    box.add(pending(7))
    box.close()
    blocker = Path(f"{tmp_path / DB_NAME}-wal")
    blocker.mkdir()  # SQLite cannot open the WAL: "unable to open database file", as on a failing disk
    with pytest.raises(sqlite3.OperationalError):
        Outbox.open(tmp_path, LOG)
    assert not list(tmp_path.glob("*.corrupt")), "a healthy outbox must not be moved aside"
    blocker.rmdir()
    box = Outbox.open(tmp_path, LOG)
    assert [p.report_id for p in box.pending()] == [7] and box.counters() == {}
    box.close()
