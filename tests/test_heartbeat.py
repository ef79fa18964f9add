"""The watchdog, STATUS= and the status meta: the pure parts, then the loop pinging systemd on the fake clock."""

from __future__ import annotations

import json
from pathlib import Path

from agent.heartbeat import NO_WATCHDOG_RECHECK, Heartbeat, meta_values, status_line
from agent.mqtt.link_state import LinkPhase
from tests.loop import Loop, RecordingNotifier, make_config


def test_status_line_reads_as_plain_text() -> None:
    assert status_line(None, 0, LinkPhase.CONNECTING) == "no report yet; 0 pending; connecting"
    assert status_line(17, 1, LinkPhase.CONNECTED) == "last report 17; 1 pending; connected"
    assert status_line(18, 2, LinkPhase.DISCONNECTED) == "last report 18; 2 pending; disconnected"


def test_meta_values_store_the_phase_as_its_status_text() -> None:
    stats = {"cpu": {"ok": 3, "failed": 0}}
    values = meta_values(stats, LinkPhase.DISCONNECTED, 123.5, last_report_id=9)
    assert json.loads(json.dumps(values)) == {"collectors": {"cpu": {"ok": 3, "failed": 0}},
                                              "connection": "disconnected", "updated_at": 123.5,
                                              "last_report_id": 9}
    assert type(values["connection"]) is str  # what `status` shows, whatever JSON does with enums
    values["collectors"]["cpu"]["ok"] = 4  # type: ignore[index]
    assert stats["cpu"]["ok"] == 3, "a copy, not the source's own dict"


def test_watchdog_every_half_interval_and_status_only_when_it_changes() -> None:
    notifier = RecordingNotifier({"WATCHDOG_USEC": "10000000"})  # 10 s: ping every 5 s
    beat = Heartbeat(notifier)
    beat.start(100.0)
    for now in (100.0, 101.0, 104.9, 105.0, 106.0, 110.0):
        beat.beat(now, "no report yet; 0 pending; connecting")
    assert notifier.sent.count("WATCHDOG=1") == 3  # at 100, 105 and 110
    assert notifier.sent.count("STATUS=no report yet; 0 pending; connecting") == 1
    assert beat.next_at == 115.0


def test_without_a_watchdog_the_deadline_is_only_a_wake_up_bound() -> None:
    notifier = RecordingNotifier()
    beat = Heartbeat(notifier)
    beat.start(50.0)
    beat.beat(50.0, "s")
    assert "WATCHDOG=1" not in notifier.sent and beat.next_at == 50.0 + NO_WATCHDOG_RECHECK


def test_the_loop_pings_the_watchdog_while_nothing_else_happens(tmp_path: Path) -> None:
    notifier = RecordingNotifier({"WATCHDOG_USEC": "4000000"})  # ping every 2 s
    with Loop(make_config(tmp_path / "state"), notifier=notifier, connects=False) as loop:
        assert notifier.sent[0].startswith("READY=1\nSTATUS=no report yet; 0 pending; connecting")
        loop.run_for(60)
        pings = notifier.sent.count("WATCHDOG=1")
        assert 30 <= pings <= 31, pings
        assert f"STATUS=last report {loop.service.last_report_id}; 1 pending; connecting" in notifier.sent
