"""agent/outbox/admission.py: one bound in bytes over everything the outbox holds, kept on disk.

Issue 23, defect 4: ``max_outbox_bytes`` bounded only the reports; topic messages and violation
events were bounded by a count alone (31.6 MB on disk with a 256 KiB bound). These tests fill a real
SQLite outbox far past its bound and measure the files (database, WAL, shared memory) as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from agent.config.model import BacklogMode, DeliveryConfig
from agent.consumers.queue import MessageQueue
from agent.outbox.admission import LEDGER_FLOOR, Admission, wal_pages
from agent.outbox.backlog import Backlog
from agent.outbox.db import SCHEMA_VERSION, NewerSchema
from agent.outbox.ids import OutboxIds
from agent.outbox.messages import Messages
from agent.outbox.store import Outbox
from tests.delivery.test_outbox import pending

LOG = logging.getLogger("agent.test.admission")
CAP = 256 * 1024
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "outbox"


def on_disk(state: Path) -> int:
    return sum(p.stat().st_size for p in state.iterdir() if p.name.startswith("outbox.sqlite3"))


def opened(state: Path, cap: int = CAP, free: int = 1 << 40) -> tuple:
    box = Outbox.open(state, LOG)
    admission = Admission(box, state, LOG, disk_free=lambda p: free)
    admission.configure(cap, 0, 1.0)
    return box, admission


def slack(cap: int, largest_write: int, page_size: int = 4096) -> int:
    """What docs/OPERATIONS.md ("The outbox's bound") states may come on top of the bound: the WAL (an eighth of the bound, 64 KiB to
    4 MiB) plus the frames of one transaction past its checkpoint, the one transaction the database file holds
    before enforce runs, and the 32 KiB shared-memory index. A transaction's writes: its payload plus a page
    of SQLite's own per page written (frame headers, b-tree and index pages, counters): at most 2 x payload +
    16 KiB here."""
    one_transaction = 2 * largest_write + 16 * 1024
    return wal_pages(cap, page_size) * page_size + 2 * one_transaction + 32 * 1024


def test_topic_messages_of_report_size_stay_within_the_bound_on_disk(tmp_path: Path) -> None:
    box, admission = opened(tmp_path)
    queue = MessageQueue("bulk", Messages(box), admission, LOG)
    payload = os.urandom(20 * 1024)  # a `document: report` message with many ports: incompressible
    for n in range(400):  # 8 MB offered: 31x the bound
        with box.transaction():
            queue.add("dt/bulk", payload, float(n), 100000)
        assert admission.in_use() <= CAP
        assert on_disk(tmp_path) <= CAP + slack(CAP, len(payload)), f"round {n}: {on_disk(tmp_path)} bytes on disk"
    counters = box.counters()
    kept = queue.pending()
    assert kept >= 8 and counters["sink.bulk.dropped"] == 400 - kept
    oldest = Messages(box).oldest("bulk", 1)[0]
    assert oldest.created_at == 400 - kept, "the oldest went first"


def test_reports_and_messages_share_the_bound_and_the_oldest_of_any_tenant_goes_first(tmp_path: Path) -> None:
    box, admission = opened(tmp_path)
    backlog = Backlog(box, OutboxIds(tmp_path, box), admission, LOG, clock=lambda: 1.0)
    queue = MessageQueue("t", Messages(box), admission, LOG)
    delivery = DeliveryConfig(BacklogMode.NEWEST, 30, 600, 5, CAP, 0)
    for rid in range(1, 61):
        with box.transaction():
            report = pending(rid, size=8 * 1024, attempts=1, delivered=True)  # acknowledged: the backlog keeps them
            backlog.store(report.__class__(**{**report.__dict__, "created_at": float(2 * rid)}), delivery)
            queue.add("dt/t", os.urandom(8 * 1024), float(2 * rid + 1), 100000)
        assert admission.in_use() <= CAP
    pending_ids = [p.report_id for p in box.pending()]
    assert pending_ids[-1] == 60 and 60 - len(pending_ids) == box.counters()["dropped"]
    dropped_messages = box.counters()["sink.t.dropped"]
    assert abs(box.counters()["dropped"] - dropped_messages) <= 1, "both tenants gave up their oldest alike"
    assert box.ledger(outcome="dropped")[0].message == f"outbox full (cap {CAP} bytes)"


def test_the_ledger_is_history_and_gives_way_first_down_to_its_floor(tmp_path: Path) -> None:
    box, admission = opened(tmp_path)
    for rid in range(1, 3001):
        box.record_unsent(rid, "dropped", "x" * 200, 1.0)  # about 700 KB of ledger: far past the bound
    queue = MessageQueue("t", Messages(box), admission, LOG)
    with box.transaction():
        queue.add("dt/t", os.urandom(1024), 1.0, 100)
    assert admission.in_use() <= CAP
    assert LEDGER_FLOOR <= len(box.ledger(limit=100000)) < 3000 and queue.pending() == 1
    assert "sink.t.dropped" not in box.counters(), "history went, not the data"


def test_a_nearly_full_disk_stops_the_growth_the_oldest_make_room(tmp_path: Path) -> None:
    free = [1 << 40]
    box = Outbox.open(tmp_path, LOG)
    admission = Admission(box, tmp_path, LOG, disk_free=lambda p: free[0])
    admission.configure(16 * 1024 * 1024, 1000, 1.0)
    queue = MessageQueue("t", Messages(box), admission, LOG)
    for n in range(5):
        with box.transaction():
            queue.add("dt/t", os.urandom(10 * 1024), float(n), 1000)
    free[0] = 10
    used = admission.in_use()
    for n in range(5, 25):
        with box.transaction():
            queue.add("dt/t", os.urandom(10 * 1024), float(n), 1000)
        assert admission.in_use() <= used + 4096
    assert queue.pending() <= 6 and box.counters()["sink.t.dropped"] >= 19


def test_a_lowered_bound_shrinks_the_file_at_once(tmp_path: Path) -> None:
    box, admission = opened(tmp_path, cap=4 * 1024 * 1024)
    queue = MessageQueue("t", Messages(box), admission, LOG)
    for n in range(150):
        with box.transaction():
            queue.add("dt/t", os.urandom(20 * 1024), float(n), 100000)
    assert admission.file_bytes() > 2 * 1024 * 1024
    admission.configure(CAP, 0, 1.0)  # a reload with a smaller bound
    box.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert admission.in_use() <= CAP and on_disk(tmp_path) <= CAP + slack(CAP, 20 * 1024)


def test_an_outbox_of_0_1_0_opens_keeps_everything_and_can_shrink(tmp_path: Path) -> None:
    """The file today's main (0.1.0) wrote: schema version 0, no auto_vacuum (tests/fixtures/outbox/v0)."""
    shutil.copy(FIXTURES / "v0" / "outbox.sqlite3", tmp_path / "outbox.sqlite3")
    raw = sqlite3.connect(tmp_path / "outbox.sqlite3")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 0 and raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    raw.close()
    box = Outbox.open(tmp_path, LOG)
    assert box.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert box.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert [p.report_id for p in box.pending()] == [1700000300]
    assert box.outcome_of(1700000000) == "accepted" and box.counters()["accepted"] == 1
    assert Messages(box).sinks_pending() == {"topic": 1, "violations": 1}
    assert box.meta()["last_report_id"] == 1700000300
    box.close()


def test_an_outbox_of_a_newer_agent_is_refused_not_moved_aside(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    box.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    box.close()
    with pytest.raises(NewerSchema, match="newer than this agent"):
        Outbox.open(tmp_path, LOG)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
