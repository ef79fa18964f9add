"""agent/outbox/ids.py: ids that only go up, held by the outbox (the lost-outbox cases are in
test_delivery_fsync.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from agent.outbox.ids import ID_FILE, RESERVE_AHEAD, RESERVE_FILE, OutboxIds, read_last_id
from agent.outbox.store import Outbox
from tests.delivery.test_outbox import pending

LOG = logging.getLogger("agent.test.ids")


def test_ids_increase_across_restart_and_clock_steps(tmp_path: Path) -> None:
    now = [1_000_000.0]
    box = Outbox.open(tmp_path, LOG)
    ids = OutboxIds(tmp_path, box, clock=lambda: now[0])
    a = ids.next()
    box.add(pending(a))
    now[0] -= 3600  # the clock steps back an hour
    b = ids.next()
    box.add(pending(b))
    box.close()
    box = Outbox.open(tmp_path, LOG)
    c = OutboxIds(tmp_path, box, clock=lambda: now[0]).next()
    assert a == 1_000_000 and b == a + 1 and c == b + 1
    box.add(pending(c))
    assert read_last_id(tmp_path) == c
    (tmp_path / ID_FILE).write_text("garbage")  # a damaged id file of an older agent: the outbox rules
    assert OutboxIds(tmp_path, box, clock=lambda: 5).next() == c + 1
    box.close()


def test_an_unwritable_reserve_hands_out_no_id(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    ids = OutboxIds(tmp_path, box, clock=lambda: 1000.0)
    blocker = tmp_path / f".{RESERVE_FILE}.{os.getpid()}.tmp"  # agent.durable.replace_file's temporary file
    blocker.mkdir()  # the reserve's temporary file cannot be written, as on a full disk
    with pytest.raises(OSError):
        ids.next()
    assert not (tmp_path / RESERVE_FILE).exists()
    blocker.rmdir()
    assert ids.next() == 1000, "the failed call used no id"
    assert (tmp_path / RESERVE_FILE).read_text() == f"{1000 + RESERVE_AHEAD}\n"
    box.close()
