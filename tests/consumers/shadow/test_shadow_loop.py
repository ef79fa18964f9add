"""The shadow consumer in the real loop, on the fake link and a fake clock, answered by the emulator's shadow store.

The store (devkit.emulator.shadow.ShadowStore) is the service's logic without a broker: every request
the agent publishes is answered as the service would answer it (accepted with the same clientToken, or
rejected with the code and message of device-shadow-error-messages), and accepted updates publish
/update/delta when desired and reported differ.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from agent import events as ev
from agent.consumers.shadow.rate import max_updates
from agent.remote.outcome import Outcome
from devkit.emulator.shadow import ShadowError, ShadowStore, notifications, parse_request_topic, topic_prefix
from devkit.fake_link import AutoReply, FakeLink
from tests.loop import THING, Loop, make_config

SHADOW = "fleet"
ALARM_BEHAVIOR = """behaviors:
  - name: TrafficOut
    metric: aws:all-bytes-out
    criteria: {comparisonOperator: less-than-equals, value: {count: 500}}
"""


class Service:
    """The shadow service behind a fake link: answers what the agent published, in order."""

    def __init__(self, store: Optional[ShadowStore] = None) -> None:
        self.store = store or ShadowStore(clock=lambda: 1_700_000_000)
        self.seen = 0
        self.reject_next: Optional[ShadowError] = None  # the next update is answered with this
        self.reject_all: Optional[ShadowError] = None  # every update is, while set
        self.requests: List[Tuple[str, Dict[str, Any]]] = []  # (operation, body)

    def answer(self, link: FakeLink) -> None:
        for published in link.published[self.seen:]:
            self.seen += 1
            if not isinstance(published.tag, ev.ShadowRef):
                continue
            parsed = parse_request_topic(published.topic)
            assert parsed is not None, published.topic
            thing, name, op = parsed
            body = json.loads(published.payload)
            self.requests.append((op, body))
            prefix = topic_prefix(thing, name)
            try:
                if op == "get":
                    link.deliver(f"{prefix}/get/accepted", json.dumps(self.store.get(thing, name, published.payload)).encode())
                    continue
                if self.reject_next is not None or self.reject_all is not None:
                    error = self.reject_next or self.reject_all
                    assert error is not None
                    self.reject_next = None
                    raise ShadowError(error.code, error.message, body.get("clientToken"))
                update = self.store.update(thing, name, published.payload)
                link.deliver(f"{prefix}/update/accepted", json.dumps(update.accepted).encode())
                for topic, doc in notifications(thing, name, update):
                    link.deliver(topic, json.dumps(doc).encode())
            except ShadowError as exc:
                link.deliver(f"{prefix}/{op}/rejected", json.dumps(exc.document(1_700_000_000)).encode())

    def reported(self) -> Dict[str, Any]:
        doc = self.store.document(THING, SHADOW)
        assert doc is not None
        reported: Dict[str, Any] = doc["state"].get("reported", {})
        return reported

    def updates(self) -> List[Dict[str, Any]]:
        return [body for op, body in self.requests if op == "update"]


def run(loop: Loop, service: Service, seconds: float) -> None:
    """Fake time passes; the service answers after every turn."""
    end = loop.clock.now + seconds
    loop.clock.horizon = end
    try:
        for _ in range(20000):
            if loop.clock.now >= end:
                break
            loop.turn()
            service.answer(loop.link)
        assert loop.clock.now >= end
    finally:
        loop.clock.horizon = None


def config(tmp_path: Path, interval: int = 300, remote: bool = False, extra: str = "") -> Any:
    return make_config(tmp_path / "state", interval=interval, jitter=0,
                       extra=f"shadow: {{name: {SHADOW}, remote_config: {str(remote).lower()}}}\n" + extra)


def test_connect_gets_then_reports_the_fleet_fields(tmp_path: Path) -> None:
    service = Service()
    with Loop(config(tmp_path), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 5)
        ops = [op for op, _ in service.requests]
        assert ops[0] == "get" and ops[1] == "update"  # /get first; its 404 means the update creates the shadow
        subscribed = [t for call in loop.link.subscribe_calls for t in call]
        prefix = topic_prefix(THING, SHADOW)
        assert {f"{prefix}/{s}" for s in ("get/accepted", "get/rejected", "update/accepted", "update/rejected",
                                            "update/delta")} <= set(subscribed)
        assert not any("#" in t or "+" in t for t in subscribed)
        r = service.reported()
        assert isinstance(r["agent"]["version"], str) and r["health"]["ok"] is True
        assert r["violations"] == {"active": 0, "behaviors": []} and isinstance(r["report"]["last_at"], int)
        assert r["config"] == {"remote": False} and "desired_version" not in r["config"]  # refused: {} kept empty
        assert all(len(b["clientToken"].encode()) <= 64 for _, b in service.requests)


def test_an_alarm_goes_out_at_once_and_its_clearing_too(tmp_path: Path) -> None:
    service = Service()
    with Loop(config(tmp_path, interval=1, extra=ALARM_BEHAVIOR), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 10)
        assert service.reported()["violations"] == {"active": 0, "behaviors": []}
        loop.source.per_round = 1000  # 2000 bytes out > 500: in alarm next round
        run(loop, service, 7)
        assert service.reported()["violations"] == {"active": 1, "behaviors": ["TrafficOut"]}
        loop.source.per_round = 100
        run(loop, service, 7)
        assert service.reported()["violations"] == {"active": 0, "behaviors": []}


def test_update_count_at_a_1s_interval_stays_at_the_pace(tmp_path: Path) -> None:
    service = Service()
    with Loop(config(tmp_path, interval=1, extra=ALARM_BEHAVIOR), auto_reply=AutoReply.ACCEPT) as loop:
        for minute in range(10):  # an alarm that flaps every 30 s, besides the routine fields every round
            loop.source.per_round = 1000 if minute % 2 else 100
            run(loop, service, 60)
        count = len(service.updates())
        assert loop.source.rounds >= 590
        # The documented rule (docs/FLEET.md, "Update rate"): 1 + a burst of 5 + one urgent a minute + one
        # routine a minute = 26 over 600 s, whatever the 601 rounds.
        assert count <= 26 == max_updates(600, 1.0), count
        print(f"shadow updates over 600 s at a 1 s interval: {count} (rounds {loop.source.rounds})")


def test_update_count_at_the_default_interval_over_10_minutes(tmp_path: Path) -> None:
    service = Service()
    with Loop(config(tmp_path), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 600)
        count = len(service.updates())
        assert 1 <= count <= max_updates(600, 300.0), count
        print(f"shadow updates over 600 s at the default 300 s interval: {count} (rounds {loop.source.rounds})")


def test_a_rejected_update_is_logged_once_and_reports_keep_flowing(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    service = Service()
    with Loop(config(tmp_path, interval=1, extra=ALARM_BEHAVIOR), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 5)
        before, reports = len(service.updates()), len(loop.link.published_ids)
        service.reject_all = ShadowError(413, "The payload exceeds the maximum size allowed")
        loop.source.per_round = 1000
        run(loop, service, 120)
        lines = [r.getMessage() for r in caplog.records if "rejected with 413" in r.getMessage()]
        assert len(lines) == 1, lines
        assert len(service.updates()) - before >= 3  # retried (with backoff), each rejected
        assert len(loop.link.published_ids) - reports >= 100  # the reports went on, one a second
        assert service.reported()["violations"]["active"] == 0
        service.reject_all = None
        run(loop, service, 70)
        assert service.reported()["violations"] == {"active": 1, "behaviors": ["TrafficOut"]}
        assert any("accepted" in r.getMessage() and "work again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("code, message", [(409, "Version conflict"),
                                           (413, "The payload exceeds the maximum size allowed")])
def test_a_409_or_413_reads_the_shadow_again(tmp_path: Path, code: int, message: str) -> None:
    service = Service()
    with Loop(config(tmp_path, interval=1, extra=ALARM_BEHAVIOR), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 5)
        service.reject_next = ShadowError(code, message)
        loop.source.per_round = 1000
        run(loop, service, 30)
        ops = [op for op, _ in service.requests]
        assert ops.count("get") == 2 and ops.index("get", 1) == ops.index("update", 2) + 1, ops
        assert service.reported()["violations"]["active"] == 1


def test_a_desired_larger_than_the_budget_shrinks_reported_not_the_service(tmp_path: Path) -> None:
    service = Service()
    desired = {"note": "d" * 7000}
    service.store.update(THING, SHADOW, json.dumps({"state": {"desired": desired}}).encode())
    names = "".join(f"""  - name: B{i:02d}{"x" * 100}
    metric: aws:all-bytes-out
    criteria: {{comparisonOperator: less-than-equals, value: {{count: 5}}}}
""" for i in range(20))
    with Loop(config(tmp_path, interval=1, extra="behaviors:\n" + names), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 10)
        r = service.reported()
        assert r["violations"]["active"] == 20 and len(r["violations"]["behaviors"]) < 20


def test_remote_config_forwards_desired_and_echoes_the_outcome(tmp_path: Path) -> None:
    service = Service()
    service.store.update(THING, SHADOW, json.dumps({"state": {"desired": {"log_level": "debug"}}}).encode())
    desired: List[ev.DesiredState] = []
    applied: Dict[str, Any] = {}
    with Loop(config(tmp_path, remote=True), auto_reply=AutoReply.ACCEPT) as loop:
        shadow = loop.service.consumers.shadow
        assert shadow is not None
        original = loop.service._handle

        def handle(event: object) -> None:  # stands in for the remote config's resolution (agent.remote)
            if isinstance(event, ev.DesiredState):
                desired.append(event)
                state = dict(event.desired)
                applied.update({k: v for k, v in state.items() if k == "log_level"})
                refused = {k: "not remotely settable" for k in state if k != "log_level"}
                loop.service.consumers.remote_outcome(Outcome(event.version, dict(applied), refused))
                return
            original(event)

        loop.service._handle = handle  # type: ignore[method-assign]
        run(loop, service, 5)
        assert desired[0].complete and desired[0].desired == {"log_level": "debug"} and desired[0].version == 1
        r = service.reported()
        assert r["log_level"] == "debug" and r["config"]["desired_version"] == 1
        assert service.store.get(THING, SHADOW)["state"].get("delta") is None  # no delta left
        service.store.update(THING, SHADOW, json.dumps({"state": {"desired": {"mqtt": {"endpoint": "x"}}}}).encode())
        loop.link.deliver(f"{topic_prefix(THING, SHADOW)}/update/delta",
                          json.dumps({"state": {"mqtt": {"endpoint": "x"}}, "version": 3}).encode())
        run(loop, service, 10)
        assert not desired[-1].complete and desired[-1].desired == {"mqtt": {"endpoint": "x"}}
        r = service.reported()
        assert r["config"]["refused"] == {"mqtt": "not remotely settable"} and r["config"]["desired_version"] == 3, desired
        assert len(desired) == 2  # the same difference after each update is not handed on again


def test_without_remote_config_no_desired_state_reaches_the_loop(tmp_path: Path) -> None:
    service = Service()
    service.store.update(THING, SHADOW, json.dumps({"state": {"desired": {"log_level": "debug"}}}).encode())
    with Loop(config(tmp_path), auto_reply=AutoReply.ACCEPT) as loop:
        seen: List[object] = []
        original = loop.service._handle
        loop.service._handle = lambda e: (seen.append(e), original(e))[1]  # type: ignore[method-assign]
        run(loop, service, 5)
        assert not any(isinstance(e, ev.DesiredState) for e in seen)
        assert service.reported()["config"] == {"remote": False}


def test_a_reconnect_reads_the_shadow_again_and_deletes_stale_keys(tmp_path: Path) -> None:
    service = Service()
    with Loop(config(tmp_path), auto_reply=AutoReply.ACCEPT) as loop:
        run(loop, service, 5)
        loop.link.drop()
        service.store.update(THING, SHADOW, json.dumps({"state": {"reported": {"stale": 1}}}).encode())
        loop.link.connect()
        run(loop, service, 10)
        assert [op for op, _ in service.requests].count("get") == 2
        assert "stale" not in service.reported()
