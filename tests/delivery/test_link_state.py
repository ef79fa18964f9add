"""The link's state as the loop keeps it: phases with their status text, and each change logged once."""

from __future__ import annotations

import logging

import pytest

from agent.mqtt.link_state import LinkPhase, LinkState

ADDRESS = "broker.test:8883"


def state() -> LinkState:
    return LinkState(ADDRESS, logging.getLogger("agent.test.link"))


def lines(caplog: pytest.LogCaptureFixture) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "agent.test.link"]


def test_phases_keep_the_status_words() -> None:
    assert [p.value for p in LinkPhase] == ["connecting", "connected", "disconnected",
                                           "no broker (textfile sinks only)"]
    assert LinkPhase.CONNECTED == "connected"  # a str enum: old status readers still compare equal


def test_connect_lose_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.test.link")
    s = state()
    s.starting(10.0)
    s.connected(10.5, session_present=False)
    assert s.phase is LinkPhase.CONNECTED and not s.ready, "ready only once subscribed"
    s.subscribed(10.6, True, "2 topic(s)")
    assert s.ready
    s.lost(20.0, "hangup")
    s.lost(20.5, "hangup")
    assert s.phase is LinkPhase.DISCONNECTED and not s.ready
    s.connected(23.0, session_present=False)
    assert lines(caplog) == [
        f"Connected to {ADDRESS} over mutual TLS in 0.50 s",
        "Subscribed to the reply topics (2 topic(s))",
        f"Connection to {ADDRESS} lost (hangup); reports stay in the outbox until it is back",
        f"Reconnected to {ADDRESS} after 3.0 s",
    ]


def test_connect_failures_are_logged_once_per_error_and_restart_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    s = state()
    s.starting(0.0)
    restarts = []
    for now in (1.0, 2.0, 3.0):
        s.failed(now, "connection refused", retry_by_caller=True)
        restarts.append(s.restart_at - now)  # type: ignore[operator]
    s.failed(4.0, "host unreachable", retry_by_caller=False)
    assert restarts == [2.0, 4.0, 8.0]
    assert len([m for m in lines(caplog) if m.startswith("Cannot connect")]) == 2
    assert not s.restart_due(10.99) and s.restart_due(11.0) and not s.restart_due(12.0), "once"
    for now in range(10):
        s.failed(100.0 + now, "connection refused", True)
    assert s.restart_at == 109.0 + 60.0, "capped at a minute"


def test_failed_subscribe_retries_after_5_s_while_connected(caplog: pytest.LogCaptureFixture) -> None:
    s = state()
    s.connected(0.0, False)
    s.subscribed(1.0, False, "reason codes [135]")
    assert not s.ready and not s.resubscribe_due(5.9) and s.resubscribe_due(6.0) and not s.resubscribe_due(7.0)
    assert "Subscribing to the reply topics failed (reason codes [135]); retrying in 5 s" in lines(caplog)[-1]


def test_slow_connect_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    s = state()
    s.starting(0.0)
    for now in (5.0, 10.5, 20.0, 40.0):
        s.check_slow(now, limit=10.0)
    assert [m for m in lines(caplog) if m.startswith("Still connecting")] == [
        f"Still connecting to {ADDRESS} after 10 s (TLS errors such as a wrong CA or host name take 10-30 s to "
        "surface)"]


def test_limited_warning_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    s = state()
    for now in (0.0, 1.0, 2.0, 9.9):
        s.limited_warning("Ignored a message", now)
    s.limited_warning("Ignored a message", 10.0)
    assert lines(caplog) == ["Ignored a message", "Ignored a message (3 similar message(s) not logged)"]
