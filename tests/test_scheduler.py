"""The scheduler loop on a fake clock and a fake link (agent.clock, devkit.fake_link): no broker, no sleeps.

The harness (``Loop``) is tests/loop.py, shared with the other loop tests.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from agent import events as ev
from agent.commands.run import serve
from agent.mqtt.topics import reply_topic, report_topic
from agent.report.document import decode, to_long
from agent.scheduler import MAX_EVENTS_PER_TURN, Service
from devkit.clock import FakeClock
from devkit.fake_link import AutoReply, FakeLinks
from tests.delivery.conftest import THING, CountingSource
from tests.loop import Loop, RecordingNotifier, make_config


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def bytes_in(payload: bytes) -> int:
    doc, _ = decode(payload)
    return int(to_long(doc)["metrics"]["network_stats"]["bytes_in"])


def test_subscribes_then_publishes_and_an_accepted_reply_settles_the_report(state: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.link.published)
        link = loop.link
        assert link.subscribe_calls == [[reply_topic(THING, "json", "accepted"), reply_topic(THING, "json", "rejected")]]
        (first,) = link.published
        assert first.topic == report_topic(THING, "json") and first.report_id == loop.service.last_report_id
        link.accept(first.report_id)
        loop.until(lambda: loop.outcome(first.report_id) == "accepted")
        assert loop.service.state.outbox.pending() == [] and not loop.service.consumers.defender.resend
        assert f"Report {first.report_id} accepted" in caplog.text
        loop.run_for(60)
        assert link.published_ids == [first.report_id], "an accepted report is not sent again"


def test_no_reply_resends_the_same_bytes_with_backoff_until_a_late_reply(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=2, retry_max_delay=8)) as loop:
        loop.until(lambda: len(loop.link.published) >= 5, turns=100)
        sent = loop.link.published
        assert len({p.report_id for p in sent}) == 1 and len({p.payload for p in sent}) == 1
        gaps = [b - a for a, b in zip(loop.publish_times, loop.publish_times[1:])]
        assert gaps[0] == pytest.approx(2.0)  # reply_timeout
        assert 4.0 <= gaps[1] <= 4.8  # doubled, up to 20 % jitter
        assert gaps[2:] == [pytest.approx(8.0)] * 2  # capped at retry_max_delay
        rid = sent[0].report_id
        assert loop.service.state.outbox.get(rid).attempts == 5  # type: ignore[union-attr]
        loop.link.accept(rid)  # the reply to one of the resends arrives after the timeout
        loop.until(lambda: loop.outcome(rid) == "accepted")
        loop.run_for(60)
        assert len(loop.link.published) == 5


def test_a_reply_before_the_timeout_means_no_resend(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=5)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.run_for(4)
        loop.link.accept(rid)
        loop.run_for(60)
        assert loop.link.published_ids == [rid] and loop.outcome(rid) == "accepted"


def test_rejected_reply_in_cbor_is_kept_with_code_and_message_and_not_resent(state: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, fmt="cbor")) as loop:
        loop.until(lambda: loop.link.published)
        assert loop.link.subscribe_calls[0] == [reply_topic(THING, "cbor", o) for o in ("accepted", "rejected")]
        rid = loop.link.published_ids[0]
        loop.link.reject(rid, code="InvalidPayload", message="Malformed metrics report")
        loop.until(lambda: loop.outcome(rid) == "rejected")
        (entry,) = loop.service.state.outbox.ledger(outcome="rejected")
        assert (entry.code, entry.message) == ("InvalidPayload", "Malformed metrics report")
        loop.run_for(60)
        assert loop.link.published_ids == [rid]
    assert f"Report {rid} rejected by the service: 'InvalidPayload': 'Malformed metrics report'" in caplog.text


def test_reconnect_resends_pending_reports_once_connected_again(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=30, retry_max_delay=60)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.run_for(5)
        loop.link.drop()  # a short outage, well inside the 30 s reply timeout
        loop.run_for(5)
        loop.link.connect()
        reconnected_at = loop.clock.now
        loop.until(lambda: len(loop.link.published) == 2, turns=5)
        assert loop.publish_times[-1] == reconnected_at, "replies sent while away are lost: resend at once"
        assert len(loop.link.subscribe_calls) == 2, "a clean session needs the reply topics again"
        loop.link.drop()  # a long outage: the resend falls due while offline (FakeLink refuses such publishes)
        loop.run_for(100)
        assert loop.link.published_ids == [rid, rid] and loop.service.state.outbox.get(rid) is not None
        loop.link.connect()
        loop.until(lambda: len(loop.link.published) == 3, turns=5)


def test_a_failed_publish_is_resent_and_only_a_puback_marks_delivered(state: Path) -> None:
    with Loop(make_config(state, reply_timeout=2), puback=False) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.complete(rid, ok=False, error="AWS_ERROR_MQTT_TIMEOUT")
        loop.turn()
        assert loop.service.state.outbox.get(rid).delivered is False  # type: ignore[union-attr]
        loop.until(lambda: len(loop.link.published) == 2)
        loop.link.complete(rid, ok=True)
        loop.turn()
        assert loop.service.state.outbox.get(rid).delivered is True  # type: ignore[union-attr]


@pytest.mark.parametrize(("backlog", "sent_bytes"), [("newest", 100), ("fold", 400)])
def test_reports_wait_while_the_connection_hangs_and_only_the_newest_goes(state: Path, backlog: str,
                                                                          sent_bytes: int) -> None:
    with Loop(make_config(state, interval=10, backlog=backlog), connects=False) as loop:
        loop.run_for(35)  # four rounds at 0, 10, 20, 30 s, no connection
        assert loop.source.rounds == 4 and loop.link.published == []
        loop.link.connect()
        loop.until(lambda: loop.link.published, turns=5)
        (only,) = loop.link.published
        # newest: its own interval's delta (100 bytes); fold: the unsent reports' deltas added (4 x 100)
        assert bytes_in(only.payload) == sent_bytes
        assert loop.service.state.outbox.counters().get("superseded") == 3


@pytest.mark.timeout(20)
def test_stop_event_ends_run_and_closes_the_link(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.stop")
    links = FakeLinks()
    service = Service(make_config(state), lambda cfg: CountingSource(), logging.getLogger("agent.test.stop"),
                      link_factory=links, clock=FakeClock())
    service.events.put(ev.SignalEvent(ev.Signal.TERM))
    assert service.run() == 0
    assert links.last.stopped and "Received SIGTERM" in caplog.text and "Stopped (0 report(s)" in caplog.text
    with pytest.raises(Exception, match="closed"):
        service.state.outbox.pending()  # closed as well


@pytest.mark.timeout(20)
def test_serve_turns_a_real_sigterm_into_a_stop_event(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.serve")

    class SignallingSource(CountingSource):
        def sample(self) -> Any:
            if self.rounds == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while serve()'s handler is installed
            return super().sample()

    before = signal.getsignal(signal.SIGTERM)
    links = FakeLinks()
    service = Service(make_config(state), lambda cfg: SignallingSource(), logging.getLogger("agent.test.serve"),
                      link_factory=links, clock=FakeClock())
    assert serve(service) == 0
    assert "Received SIGTERM" in caplog.text and links.last.stopped
    assert signal.getsignal(signal.SIGTERM) is before, "serve() puts the previous handler back"


def test_a_flood_of_events_loses_none(state: Path) -> None:
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.service.session.ready and loop.service.events.empty())
        for _ in range(MAX_EVENTS_PER_TURN):
            loop.service.events.put(ev.Stopped())
        loop.service.events.put(ev.SignalEvent(ev.Signal.TERM))
        loop.until(lambda: loop.service.stopping, turns=3)


def test_reports_limit_stops_after_the_last_reply_without_spinning(state: Path) -> None:
    with Loop(make_config(state, interval=10, reply_timeout=2), max_reports=2) as loop:
        loop.until(lambda: len(set(loop.link.published_ids)) == 2, turns=100)
        first, second = dict.fromkeys(loop.link.published_ids)
        loop.link.accept(first)
        loop.run_for(15)  # past the third round's time, which never comes: the wait must not drop to zero
        assert loop.link.published_ids.count(second) >= 3, "the unanswered one is resent meanwhile"
        assert not loop.service.stopping
        loop.link.accept(second)
        loop.until(lambda: loop.service.stopping, turns=5)
        assert loop.source.rounds == 2


def test_running_line_and_status_name_the_plain_values(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, backlog="fold")) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
        loop.run_for(1)  # a turn more, not the next report's
        meta = loop.service.state.outbox.meta()
    assert "report every 300 s (+ up to 0 s jitter), backlog fold" in caplog.text
    assert meta["connection"] == "connected" and meta["last_outcome"] == "accepted"
    assert isinstance(loop.notifier, RecordingNotifier)
    assert f"STATUS=last report {rid}; 0 pending; connected" in loop.notifier.sent
    assert json.loads(json.dumps(meta))["last_report_id"] == rid


def test_unknown_and_garbage_replies_are_ignored_with_a_limited_warning(state: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state), auto_reply=AutoReply.NONE) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        topic = reply_topic(THING, "json", "accepted")
        loop.link.accept(rid + 1000)
        for payload in (b"", b"[]", b"{not json", json.dumps({"reportId": rid, "thingName": "other"}).encode()):
            loop.link.deliver(topic, payload)
        loop.turn()
        assert loop.outcome(rid) is None and loop.service.state.outbox.get(rid) is not None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"Ignored a reply for unknown report id {rid + 1000}"], "one warning per 10 s"
        loop.run_for(11)
        loop.link.deliver(topic, b"[]")
        loop.turn()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and warnings[1].endswith("(4 similar message(s) not logged)")
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")


# -- the service's contract: replies without ids, ids that only go up, every report ends -----------------

# Printed by the troubleshooting guide ("Malformed metrics report"): a rejected reply without reportId.
GUIDE_REJECTED = ('{"thingName": "%s", "status": "REJECTED", "statusDetails": {"ErrorCode": "InvalidPayload", '
                  '"ErrorMessage": "Malformed metrics report"}, "timestamp": 1581544633000}')


def test_the_guides_rejected_reply_without_report_id_settles_the_report_awaiting_a_reply(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.deliver(reply_topic(THING, "json", "rejected"), (GUIDE_REJECTED % THING).encode())
        loop.until(lambda: loop.outcome(rid) == "rejected", turns=5)
        loop.run_for(120)  # not resent: the outcome is final
        assert loop.link.published_ids == [rid]
        [entry] = loop.service.state.outbox.ledger(outcome="rejected")
        assert (entry.code, entry.message) == ("InvalidPayload", "Malformed metrics report")
        assert loop.service.state.outbox.counters()["rejected"] == 1
    assert (f"Report {rid} rejected by the service: 'InvalidPayload': 'Malformed metrics report' (the reply named "
            "no report id; it is the one report awaiting a reply)") in caplog.text


def test_a_reply_without_id_and_no_report_awaiting_is_ignored_with_a_warning(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Loop(make_config(state)) as loop:
        loop.until(lambda: loop.link.published)
        rid = loop.link.published_ids[0]
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted", turns=5)
        loop.link.deliver(reply_topic(THING, "json", "rejected"), (GUIDE_REJECTED % THING).encode())
        loop.turn()
        assert loop.service.state.outbox.counters().get("rejected", 0) == 0 and loop.outcome(rid) == "accepted"
    assert "Ignored a rejected reply that names no report id (0 report(s) await a reply" in caplog.text


def test_a_newer_report_ends_the_older_one_unanswered_and_ids_only_go_up(state: Path) -> None:
    with Loop(make_config(state, interval=10, reply_timeout=2, retry_max_delay=2)) as loop:
        loop.run_for(45)  # five reports, no replies: each resent until the next one is published
        ids = loop.link.published_ids
        assert len(set(ids)) == 5 and ids == sorted(ids), "an older id went out after a newer one"
        assert ids.count(ids[0]) > 1  # resent while it was the newest
        older = sorted(set(ids))[:-1]
        assert [loop.outcome(rid) for rid in older] == ["unanswered"] * 4
        entry = loop.service.state.outbox.ledger(outcome="unanswered")[-1]
        assert entry.message == f"no reply before the newer report {older[1]} was published"
        assert loop.service.state.outbox.counters()["unanswered"] == 4


def test_no_reply_to_max_attempts_publishes_ends_the_report_and_the_journal_says_what_to_check(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, interval=300, reply_timeout=2, retry_max_delay=2, max_attempts=3),
              max_reports=3) as loop:
        loop.run_for(1000)
        assert loop.service.stopping  # every report ended: --reports can stop
        rids = sorted(set(loop.link.published_ids))
        assert len(rids) == 3 and all(loop.link.published_ids.count(r) == 3 for r in rids)
        assert [loop.outcome(r) for r in rids] == ["unanswered"] * 3
        assert loop.service.state.outbox.ledger(outcome="unanswered")[0].message == \
            "no reply to 3 publish(es) (delivery.max_attempts)"
    hints = [r.getMessage() for r in caplog.records if "check that the device policy" in r.getMessage()]
    assert hints == [
        "No reply to the last 3 reports although they were published: check that the device policy allows "
        f"iot:Subscribe on the topic filters and iot:Receive on the topics {reply_topic(THING, 'json', 'accepted')} "
        f"and {reply_topic(THING, 'json', 'rejected')}, and iot:Publish on {report_topic(THING, 'json')} "
        '(docs/AWS-SETUP.md, "The device policy"), and that this AWS account has Device Defender Detect: AWS '
        "closed it to new customers on 2026-08-31 and a new account's reports get no reply (docs/WITHOUT-DETECT.md: "
        "the topic and textfile sinks need no Detect); logged once until a reply arrives"
    ]


@pytest.mark.parametrize("seed", range(12))
def test_random_weather_every_id_ends_once_and_the_wire_only_goes_up(state: Path, seed: int) -> None:
    """Connects, drops, PUBACKs, accepted, rejected, guide-shaped and late replies in a random order."""
    rng = random.Random(seed)
    with Loop(make_config(state, interval=10, reply_timeout=2, retry_max_delay=4, max_attempts=4),
              max_reports=12, puback=False) as loop:
        for _ in range(400):
            if loop.service.stopping:
                break
            link, roll = loop.link, rng.random()
            sent = link.published_ids
            if roll < 0.08 and link.connected:
                link.drop()
            elif roll < 0.16 and not link.connected:
                link.connect()
            elif roll < 0.4 and sent:
                rid = rng.choice(sent)
                pick = rng.random()
                if pick < 0.4:
                    link.accept(rid)
                elif pick < 0.6:
                    link.reject(rid)
                elif pick < 0.8:
                    link.deliver(reply_topic(THING, "json", "rejected"), (GUIDE_REJECTED % THING).encode())
                else:
                    link.complete(rid, ok=rng.random() < 0.7)
            loop.clock.advance(rng.uniform(0, 3))
            loop.turn()
        if not loop.link.connected:
            loop.link.connect()
        loop.run_for(400)
        assert loop.service.stopping, "every report must end so that --reports can stop"
        box = loop.service.state.outbox
        ledger = {e.report_id: e.outcome for e in box.ledger()}
        assert box.pending() == [] and len(ledger) == 12
        first_seen = list(dict.fromkeys(i for link in loop.links.links for i in link.published_ids))
        assert first_seen == sorted(first_seen)
        wire = [i for link in loop.links.links for i in link.published_ids]
        assert all(b >= a for a, b in zip(wire, wire[1:])), f"an older id went out after a newer one: {wire}"


class Fault:
    """Makes one method of one object raise ``error`` while ``on`` (set on the instance: our objects only)."""

    def __init__(self, target: Any, method: str, error: BaseException) -> None:
        self.on = True
        self.calls = 0
        original = getattr(target, method)

        def failing(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.on:
                raise error
            return original(*args, **kwargs)

        setattr(target, method, failing)


def _targets(loop: Loop) -> Dict[str, Callable[[], Any]]:
    import sqlite3

    return {
        "sampling": lambda: (loop.source, "sample", RuntimeError("sensor bus gone")),
        "collector stats": lambda: (loop.source, "stats", KeyError("counting")),
        "encoding": lambda: (loop.service.builder, "build", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates")),
        "storing": lambda: (loop.service.consumers.defender.backlog, "store", sqlite3.DatabaseError("database disk image is malformed")),
        "publishing": lambda: (loop.link, "publish", RuntimeError("AWS_ERROR_MQTT5_PUBLISH_OPTIONS_VALIDATION")),
        "settling a reply": lambda: (loop.service.state.outbox, "finish", sqlite3.IntegrityError("constraint failed")),
        "parsing a reply": lambda: (loop.service.consumers.defender.reports, "on_message", ValueError("cbor2 could not decode")),
        "the status line": lambda: (loop.service.heartbeat, "beat", OSError(111, "Connection refused")),
    }


@pytest.mark.parametrize("stage", ["sampling", "collector stats", "encoding", "storing", "publishing",
                                   "settling a reply", "parsing a reply", "the status line"])
def test_an_error_at_any_stage_is_one_line_and_the_loop_goes_on(state: Path, stage: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    with Loop(make_config(state, interval=10), auto_reply=AutoReply.ACCEPT) as loop:
        loop.until(lambda: loop.service.session.ready)
        target, method, error = _targets(loop)[stage]()
        fault = Fault(target, method, error)
        loop.run_for(35)  # three rounds with the fault: nothing escapes run_once()
        assert fault.calls >= 1, "the fault was never reached"
        fault.on = False
        loop.run_for(25)
        accepted = loop.service.state.outbox.counters().get("accepted", 0)
        assert accepted >= 1, "after the fault the loop goes on and reports are accepted again"
    said = [r.getMessage() for r in caplog.records
            if "Unexpected error" in r.getMessage() or "Sampling failed" in r.getMessage()]
    assert said, "the failure is said"
    repeated = [m for m in set(said) if said.count(m) > 1 and "Sampling failed" not in m]
    assert not repeated, "an unexpected error is said once per stage, not once per turn"
    assert not [r for r in caplog.records if "Cannot write to" in r.getMessage()] or stage == "storing"
    assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG], "no traceback in the journal"


def test_a_round_that_runs_late_is_not_followed_by_another_at_once(state: Path) -> None:
    """The service throttles more than one report per 5 minutes: a slow round must not cause a burst."""
    class SlowFirstRound(CountingSource):
        def sample(self) -> Any:
            if self.rounds == 0:
                loop.clock.advance(25)  # the first round takes 25 s: two and a half intervals
            return super().sample()

    loop = Loop(make_config(state, interval=10), source=SlowFirstRound(), auto_reply=AutoReply.ACCEPT)
    with loop:
        loop.run_for(60)
        times = loop.publish_times
        assert len(times) >= 3
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= 10, f"reports closer than one interval: {gaps}"


# -- no periodic wake-up: the loop sleeps until its next deadline, and every timer is one ----------------


def turns_over(loop: Loop, seconds: float, turns: int = 500) -> int:
    """How many turns the loop takes to let ``seconds`` of fake time pass (no horizon: it sleeps as it likes)."""
    end = loop.clock.now + seconds
    for done in range(1, turns + 1):
        loop.turn()
        if loop.clock.now >= end or loop.service.stopping:
            return done
    raise AssertionError(f"{seconds} s not passed within {turns} turns (clock at {loop.clock.now})")


def test_idle_the_loop_wakes_once_per_watchdog_ping_and_once_per_report(state: Path) -> None:
    notifier = RecordingNotifier({"WATCHDOG_USEC": "120000000"})  # a ping every 60 s
    with Loop(make_config(state, interval=300), notifier=notifier, auto_reply=AutoReply.ACCEPT) as loop:
        loop.until(lambda: loop.service.last_report_id and not loop.service.consumers.defender.resend)
        pings, rounds = notifier.sent.count("WATCHDOG=1"), loop.source.rounds
        turns = turns_over(loop, 1200)
        pings, rounds = notifier.sent.count("WATCHDOG=1") - pings, loop.source.rounds - rounds
        assert (pings, rounds) == (20, 4)
        # each report is one wake-up for the round and one for its reply (an event); pings share none
        assert turns <= pings + 2 * rounds, f"{turns} turns for {pings} pings and {rounds} reports"
        assert min(loop.clock.waits[-turns:]) > 0, "no busy turn"


@pytest.mark.parametrize("case", ["slow connect warning", "restart of a failed first connect",
                                  "resubscribe after a refused SUBACK"])
def test_the_session_timers_are_deadlines_of_the_loop(state: Path, case: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Each of the session's timers wakes the loop when due (the next report is 300 s away, no watchdog)."""
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    options: Dict[str, Any] = {
        "slow connect warning": dict(connects=False),
        "restart of a failed first connect": dict(connect_error="AWS_IO_SOCKET_TIMEOUT: socket operation timed out",
                                                  retry_by_caller=True),
        "resubscribe after a refused SUBACK": dict(suback_ok=False),
    }[case]
    with Loop(make_config(state, interval=300), **options) as loop:
        start = loop.clock.now
        done: Callable[[], bool] = {
            "slow connect warning": lambda: "Still connecting" in caplog.text,
            "restart of a failed first connect": lambda: len(loop.links.links) >= 2,
            "resubscribe after a refused SUBACK": lambda: len(loop.link.subscribe_calls) >= 2,
        }[case]
        loop.until(done, turns=10)
        due = {"slow connect warning": 5.0, "restart of a failed first connect": 2.0,
               "resubscribe after a refused SUBACK": 5.0}[case]
        assert loop.clock.now - start == pytest.approx(due), "woken when due, not at the next report"


def test_a_report_waiting_for_its_reply_subscription_does_not_spin_the_loop(state: Path) -> None:
    """The broker refuses the SUBACK (a device policy without iot:Subscribe): the pending report waits for
    the resubscribe instead of coming due on every turn, and goes out once the subscription holds."""
    with Loop(make_config(state, interval=300), suback_ok=False) as loop:
        loop.until(lambda: loop.source.rounds == 1)
        turns_before = len(loop.clock.waits)
        loop.run_for(60.0, turns=200)
        turns = len(loop.clock.waits) - turns_before
        assert loop.link.published == [], "nothing is published before its replies are subscribed"
        busy = sum(1 for wait in loop.clock.waits[turns_before:] if wait == 0)
        assert busy <= 2, f"{busy} of {turns} turns did not wait"
        assert turns <= 30, f"{turns} turns in 60 s"
        loop.link.suback_ok = True
        loop.run_for(20.0)
        assert loop.link.published, "published once the resubscribe succeeded"


def test_a_report_in_a_new_format_waits_for_its_suback_without_spinning(state: Path) -> None:
    """After a reload to CBOR the newest report needs the cbor reply topics: it waits for their SUBACK
    (an event wakes the loop) instead of coming due on every turn, then goes out at once."""
    old = make_config(state / "a", interval=300)
    new = make_config(state / "a", interval=300, fmt="cbor")
    configs = [old]
    with Loop(old, reload_config=lambda: configs[-1], auto_reply=AutoReply.ACCEPT) as loop:
        loop.until(lambda: loop.outcome(loop.link.published[0].report_id) == "accepted" if loop.link.published
                   else False)
        asked: List[List[str]] = []
        loop.link.subscribe = asked.append  # the broker takes its time to answer: no SUBACK yet
        configs.append(new)
        loop.service.events.put(ev.SignalEvent(ev.Signal.HUP))
        rounds = loop.source.rounds
        loop.until(lambda: loop.source.rounds == rounds + 1)  # the next round builds a CBOR report
        assert asked and all("/cbor/" in t for t in asked[-1] if "cbor" in t), asked
        turns_before = len(loop.clock.waits)
        loop.run_for(60.0, turns=100)
        busy = sum(1 for wait in loop.clock.waits[turns_before:] if wait == 0)
        assert busy <= 2, f"{busy} turns without a wait while the SUBACK is outstanding"
        assert [p.topic for p in loop.link.published if p.topic.endswith("/cbor")] == []
        loop.link.subscribed.extend(asked[-1])
        loop.service.events.put(ev.Subscribed(True, f"{len(asked[-1])} topic(s)"))
        subacked = loop.clock.now
        loop.until(lambda: [p for p in loop.link.published if p.topic.endswith("/cbor")], turns=10)
        assert loop.clock.now == subacked, "sent on the SUBACK, not a reply timeout later"
