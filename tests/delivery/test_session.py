"""The MQTT session on a fake link: subscribe before publishing, after every clean reconnect, and retry what failed."""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import List, Set

import pytest

from agent import events as ev
from agent.mqtt.link_state import LinkPhase
from agent.mqtt.session import LINK_EVENTS, Session
from agent.mqtt.topics import reply_topic
from devkit.clock import FakeClock
from devkit.fake_link import FakeLinks
from tests.loop import THING, make_config


class Harness:
    """A Session whose link events are fed back to it, as the loop does."""

    def __init__(self, tmp_path: Path, **link_options: object) -> None:
        self.config = make_config(tmp_path / "state")  # connect_timeout: 5s
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.clock = FakeClock()
        self.links = FakeLinks(**link_options)
        self.wanted: Set[str] = {"json"}
        self.session = Session(self.config, self.events, logging.getLogger("agent.test.session"), self.links,
                               self.clock)

    def pump(self) -> List[object]:
        seen = []
        while not self.events.empty():
            event = self.events.get_nowait()
            seen.append(event)
            if isinstance(event, LINK_EVENTS):
                self.session.handle(event, self.clock.now, THING, lambda: set(self.wanted))
        return seen

    def tick(self) -> None:
        self.session.tick(self.clock.now, self.config, lambda: set(self.wanted))
        self.pump()


def topics(*formats: str) -> List[str]:
    return [reply_topic(THING, f, o) for f in formats for o in ("accepted", "rejected")]


def test_connected_clean_session_subscribes_to_the_wanted_formats(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.wanted = {"json", "cbor"}
    h.session.start(h.config)
    h.pump()
    assert h.links.last.subscribe_calls == [topics("cbor", "json")]
    assert h.session.ready and h.session.subscribed_formats == {"json", "cbor"}


def test_a_format_wanted_while_subscribing_is_not_taken_as_subscribed(tmp_path: Path) -> None:
    h = Harness(tmp_path, connects=False)
    h.session.start(h.config)
    link = h.links.last
    link.connect()
    h.events.get_nowait()  # handle Connected by hand, so a cbor report can appear before the SUBACK
    h.session.handle(ev.Connected(False), h.clock.now, THING, lambda: set(h.wanted))
    h.wanted = {"json", "cbor"}
    h.pump()  # the SUBACK for json only
    assert h.session.subscribed_formats == {"json"}, "cbor's reply topics were never asked for"


def test_session_present_keeps_subscriptions_and_a_drop_forgets_them(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.session.start(h.config)
    h.pump()
    link = h.links.last
    link.connect(session_present=True)
    h.pump()
    assert len(link.subscribe_calls) == 1, "the broker kept them"
    link.drop()
    h.pump()
    assert not h.session.ready and h.session.subscribed_formats == set()
    assert h.session.link_state.phase is LinkPhase.DISCONNECTED
    link.connect()
    h.pump()
    assert len(link.subscribe_calls) == 2 and h.session.ready


def test_failed_subscribe_is_retried_after_5_s(tmp_path: Path) -> None:
    h = Harness(tmp_path, suback_ok=False)
    h.session.start(h.config)
    h.pump()
    link = h.links.last
    assert not h.session.ready and len(link.subscribe_calls) == 1
    link.suback_ok = True
    h.clock.advance(4.9)
    h.tick()
    assert len(link.subscribe_calls) == 1
    h.clock.advance(0.1)
    h.tick()
    assert len(link.subscribe_calls) == 2 and h.session.ready


def test_mqtt311_first_connect_failure_is_restarted_by_the_session(tmp_path: Path) -> None:
    h = Harness(tmp_path, connect_error="AWS_IO_SOCKET_CONNECTION_REFUSED", retry_by_caller=True)
    h.session.start(h.config)
    h.pump()
    started = [h.clock.now]
    for _ in range(200):
        h.clock.advance(0.5)
        before = len(h.links.links)
        h.tick()
        if len(h.links.links) > before:
            started.append(h.clock.now)
        if len(started) == 4:
            break
    assert [b - a for a, b in zip(started, started[1:])] == [2.0, 4.0, 8.0]
    assert h.session.link_state.phase is LinkPhase.DISCONNECTED


def test_slow_connect_warning_uses_the_configured_timeout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path, connects=False)
    h.session.start(h.config)
    for _ in range(2):
        h.clock.advance(2.5)
        h.tick()
        assert "Still connecting" not in caplog.text
    h.clock.advance(0.5)
    h.tick()
    assert "Still connecting to 127.0.0.1:8883 after 6 s" in caplog.text


def test_a_new_link_is_built_before_the_old_one_stops(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.session.start(h.config)
    h.pump()
    old = h.links.last
    h.links.refuse = RuntimeError("TLS refused")
    with pytest.raises(RuntimeError):
        h.session.prepare(h.config)
    assert not old.stopped and h.session.link is old and h.session.ready
    h.session.switch(h.config, h.session.prepare(h.config))
    assert old.stopped and h.session.link is h.links.last and h.links.last is not old
    assert h.session.link_state.phase is LinkPhase.CONNECTING
