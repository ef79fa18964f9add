"""The sinks in the scheduler loop (fake clock, fake link): each delivered and counted on its own."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.commands.status_view import read_status
from agent.config.model import Config
from agent.mqtt.topics import report_topic
from agent.outbox.messages import sink_counts
from agent.report.document import decode
from tests.delivery.conftest import THING
from tests.loop import Loop, make_config

TOPIC = f"dt/gateways/{THING}/metrics"


def with_sinks(state: Path, sinks: str, **overrides: Any) -> Config:
    return make_config(state, extra="sinks:\n" + sinks, **overrides)


def counts(loop: Loop, sink: str) -> dict:
    return sink_counts(loop.service.state.outbox.counters(), sink)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_a_topic_sink_sends_one_flat_message_per_round_beside_the_report(state: Path) -> None:
    config = with_sinks(state, "  - type: defender\n  - type: topic\n    topic: dt/gateways/{thing_name}/metrics\n",
                        interval=300)
    with Loop(config) as loop:
        loop.until(lambda: loop.link.messages() and loop.link.published_ids)
        (message,) = loop.link.messages()
        assert message.topic == TOPIC
        body = json.loads(message.payload)
        assert body["thing_name"] == THING and body["report_id"] == loop.link.published_ids[0]
        assert body["metrics"]["aws:all-bytes-in"] == 100 and body["metrics"]["aws:all-packets-out"] == 2
        loop.until(lambda: counts(loop, "topic")["delivered"] == 1)
        loop.link.accept(loop.link.published_ids[0])
        loop.run_for(301)
        assert counts(loop, "topic")["delivered"] == 2 and len(loop.link.messages()) == 2
        assert loop.service.state.outbox.counters().get("accepted") == 1
        assert loop.service.consumers.messages.pending_count() == 0


def test_a_report_document_topic_sink_carries_the_report_bytes(state: Path) -> None:
    config = with_sinks(state, "  - type: defender\n  - type: topic\n    topic: t/{thing_name}\n    document: report\n")
    with Loop(config) as loop:
        loop.until(lambda: loop.link.messages() and loop.link.published)
        report = next(p for p in loop.link.published if p.topic == report_topic(THING, "json"))
        assert loop.link.messages()[0].payload == report.payload
        doc, _ = decode(report.payload)
        assert doc["header"]["report_id"] == report.report_id


def test_a_refused_topic_is_counted_failed_logged_once_and_the_report_goes_on(
        state: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    prom = tmp_path / "out.prom"
    config = with_sinks(state, "  - type: defender\n  - {type: topic, name: denied, topic: 'no/{thing_name}'}\n"
                               "  - {type: topic, name: allowed, topic: 'yes/{thing_name}'}\n"
                               f"  - {{type: textfile, path: '{prom}'}}\n", interval=10)
    with Loop(config, refuses=[f"no/{THING}"]) as loop:
        loop.run_for(35)
        rounds = loop.source.rounds
        assert rounds >= 3
        assert counts(loop, "denied") == {"delivered": 0, "failed": rounds, "dropped": 0}
        assert counts(loop, "allowed")["delivered"] == rounds
        assert counts(loop, "textfile")["delivered"] == rounds and prom.exists()
        assert loop.link.published_ids, "the report went out all the same"
        assert len(loop.link.messages(f"no/{THING}")) == rounds, "a refused message is not sent again"
    refused = [r for r in caplog.records if "refused a message" in r.getMessage()]
    assert len(refused) == 1 and "'denied'" in refused[0].getMessage() and "iot:Publish" in refused[0].getMessage()


def test_messages_wait_in_the_outbox_while_the_broker_is_away_and_the_oldest_go_past_max_pending(
        state: Path) -> None:
    config = with_sinks(state, "  - {type: topic, topic: 't/{thing_name}', max_pending: 3}\n", interval=10)
    with Loop(config, connects=False) as loop:
        loop.run_for(55)  # 6 rounds, no connection
        assert loop.link.messages() == []
        assert loop.service.consumers.messages.pending_count("topic") == 3
        assert counts(loop, "topic")["dropped"] == 3
        loop.link.connect()
        loop.until(lambda: counts(loop, "topic")["delivered"] == 3)
        ids = [json.loads(m.payload)["report_id"] for m in loop.link.messages()]
        assert ids == sorted(ids) and len(ids) == 3, "oldest first, the three newest kept"


def test_pending_messages_survive_a_restart(state: Path) -> None:
    config = with_sinks(state, "  - {type: topic, topic: 't/{thing_name}'}\n", interval=10)
    with Loop(config, connects=False) as loop:
        loop.run_for(25)
        waiting = loop.service.consumers.messages.pending_count()
        assert waiting == 3
    with Loop(config) as loop:
        loop.until(lambda: counts(loop, "topic")["delivered"] >= waiting)
        assert len({json.loads(m.payload)["report_id"] for m in loop.link.messages()}) >= waiting


def test_a_textfile_only_config_runs_without_a_broker(state: Path, tmp_path: Path) -> None:
    prom = tmp_path / "agent.prom"
    text = (f"thing_name: {THING}\nreport: {{interval: 10s, jitter: 0s}}\nstate_dir: {state}\n"
            f"sinks:\n  - {{type: textfile, path: '{prom}'}}\n")
    from agent.config.load import parse_config

    config = parse_config(text, str(tmp_path / "agent.yaml"))
    assert config.mqtt is None
    with Loop(config) as loop:
        loop.run_for(25)
        assert loop.links.links == [], "no MQTT client is made"
        assert counts(loop, "textfile")["delivered"] == 3
        samples = prom.read_text().splitlines()
        assert "defender_agent_aws_all_bytes_in 100" in samples, "a device-side metric keeps its aws_ prefix"
        assert not any(line.startswith("defender_agent_all_bytes_in") for line in samples)
        assert loop.notifier.sent[-1].endswith("; no broker (textfile sinks only)")
        assert loop.service.state.outbox.pending() == [], "no Device Defender report is kept"
        ids = [loop.service.last_report_id]
    with Loop(config) as loop:
        loop.run_for(11)
        assert loop.service.last_report_id is not None and loop.service.last_report_id > ids[0]


def test_a_textfile_that_cannot_be_written_is_counted_and_logged_once_and_the_topic_goes_on(
        state: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    prom = tmp_path / "missing-dir" / "agent.prom"
    config = with_sinks(state, f"  - {{type: textfile, path: '{prom}'}}\n  - {{type: topic, topic: 't/x'}}\n",
                        interval=10)
    with Loop(config) as loop:
        loop.run_for(35)
        rounds = loop.source.rounds
        assert counts(loop, "textfile") == {"delivered": 0, "failed": rounds, "dropped": 0}
        assert counts(loop, "topic")["delivered"] == rounds
        failures = [r for r in caplog.records if "Sink 'textfile'" in r.getMessage()]
        assert len(failures) == 1 and str(prom) in failures[0].getMessage()
        prom.parent.mkdir()
        loop.run_for(10)
        assert prom.exists() and counts(loop, "textfile")["delivered"] == 1
    assert any("wrote" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)


def test_without_a_defender_sink_pending_reports_end_dropped_and_no_reply_topic_is_subscribed(state: Path) -> None:
    with Loop(make_config(state), connects=False) as loop:
        loop.until(loop.service.state.outbox.pending)
        (rid,) = loop.service.state.outbox.pending_ids()
    config = with_sinks(state, "  - {type: topic, topic: 't/x'}\n")
    with Loop(config) as loop:
        assert loop.outcome(rid) == "dropped"
        (entry,) = loop.service.state.outbox.ledger(outcome="dropped")
        assert "no defender sink" in (entry.message or "")
        loop.until(loop.link.messages)
        assert loop.link.subscribe_calls == [] and loop.link.published_ids == []


def test_status_shows_each_sinks_counts(state: Path, tmp_path: Path) -> None:
    prom = tmp_path / "a.prom"
    config = with_sinks(state, f"  - type: defender\n  - {{type: topic, topic: 't/x'}}\n"
                               f"  - {{type: textfile, path: '{prom}'}}\n", interval=10)
    with Loop(config) as loop:
        loop.run_for(25)
    status = read_status(state)
    sinks = {s["name"]: s for s in status["sinks"]}
    assert set(sinks) == {"defender", "topic", "textfile"}
    assert sinks["topic"]["delivered"] == 3 and sinks["topic"]["target"] == "t/x"
    assert sinks["textfile"]["delivered"] == 3 and sinks["textfile"]["type"] == "textfile"
    assert sinks["defender"]["pending"] >= 1


class FailingCollectorSource:
    """Network deltas, and the stats of two collectors of which one keeps failing."""

    def __init__(self) -> None:
        self.rounds = 0

    def sample(self) -> list:
        from agent.report.model import NetworkStats, Sample, SampleKind

        self.rounds += 1
        return [Sample("network_stats", NetworkStats(1, 2, 3, 4), SampleKind.STANDARD)]

    def stats(self) -> dict:
        return {"net": {"ok": self.rounds, "failed": 0, "no_data": 0, "last_duration": 0.002, "last_error": None,
                        "consecutive_failures": 0},
                "sensor": {"ok": 0, "failed": self.rounds, "no_data": 0, "last_duration": 1.5,
                           "last_error": "timeout", "consecutive_failures": self.rounds}}

    def close(self) -> None:
        pass


def test_health_metrics_carry_a_dead_collector_to_the_topic_and_the_report(state: Path) -> None:
    config = make_config(state, extra="health_metrics: custom_metrics\nsinks:\n  - type: defender\n"
                                      "  - {type: topic, topic: 't/x'}\n")
    with Loop(config, source=FailingCollectorSource()) as loop:
        loop.until(lambda: loop.link.messages() and loop.link.published_ids)
        metrics = json.loads(loop.link.messages()[0].payload)["metrics"]
        assert metrics["agent_collectors_failing"] == 1 and metrics["agent_failing_collectors"] == ["sensor"]
        assert metrics["agent_outbox_pending"] == 0 and "agent_seconds_since_accepted" not in metrics
        report = next(p for p in loop.link.published if p.report_id)
        doc, _ = decode(report.payload)
        assert doc["custom_metrics"]["agent_failing_collectors"] == [{"string_list": ["sensor"]}]
        loop.link.accept(report.report_id)
        loop.run_for(301)
        later = json.loads(loop.link.messages()[-1].payload)["metrics"]
        assert 295 <= later["agent_seconds_since_accepted"] <= 305
    without = make_config(state.parent / "other", extra="sinks:\n  - {type: topic, topic: 't/x'}\n")
    with Loop(without, source=FailingCollectorSource()) as loop:
        loop.until(loop.link.messages)
        assert not any(k.startswith("agent_") for k in json.loads(loop.link.messages()[0].payload)["metrics"])


@pytest.mark.parametrize("denied_first", [True, False])
def test_a_sink_on_which_the_connection_keeps_dropping_is_held_back_and_the_others_go_on(
        state: Path, caplog: pytest.LogCaptureFixture, denied_first: bool) -> None:
    """AWS IoT over MQTT 3.1.1 closes the connection on a publish the policy denies: no reason code to read."""
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    denied, allowed = "  - {type: topic, name: denied, topic: 'no/x'}\n", "  - {type: topic, name: allowed, topic: 'yes/x'}\n"
    config = with_sinks(state, "  - type: defender\n" + (denied + allowed if denied_first else allowed + denied),
                        interval=10, retry_max_delay=600)
    with Loop(config, drops_on=["no/x"]) as loop:
        drops, start = 0, loop.clock.now
        for _ in range(400):
            loop.turn()
            if not loop.link.connected:
                drops += 1
                loop.link.connect()
            if loop.clock.now - start > 100:
                break
        held = [r.getMessage() for r in caplog.records if "Holding this sink's messages" in r.getMessage()]
        assert drops == 4 and len(held) == 1 and "'denied'" in held[0], (drops, held)  # 1 to start probing, 3 named
        assert counts(loop, "allowed")["delivered"] >= 9, "the other sink goes on"
        assert loop.service.state.outbox.counters().get("published", 0) >= 9, "and the reports"
        assert loop.service.consumers.messages.pending_count("denied") >= 9, "held, not lost"


def test_topic_messages_have_their_own_ack_timeout_and_a_reload_applies_a_new_one(state: Path) -> None:
    """Issue 23, defect 3: a message's PUBACK wait was delivery.reply_timeout (Device Defender's reply wait, 2 s
    here) and its backoff cap delivery.retry_max_delay, and a reload never passed new values on. A PUBACK wait
    under awscrt's own (30 s) republished what awscrt still awaited."""
    import dataclasses

    from agent import events as ev
    from agent.config.model import LINK_ACK_TIMEOUT

    config = with_sinks(state, "  - type: defender\n  - type: topic\n    topic: t/{thing_name}\n",
                        interval=3600, reply_timeout=2)
    assert config.delivery.message_ack_timeout == 60.0 > LINK_ACK_TIMEOUT
    configs = [config]
    with Loop(config, reload_config=lambda: configs[-1], puback=False) as loop:
        loop.until(loop.link.messages)
        loop.run_for(59)
        assert len(loop.link.messages()) == 1, "no second publish while the link may still await its PUBACK"
        loop.run_for(2)
        assert len(loop.link.messages()) == 2, "published again once message_ack_timeout passed"
        shorter = dataclasses.replace(config.delivery, message_ack_timeout=LINK_ACK_TIMEOUT + 1.0)
        configs.append(dataclasses.replace(config, delivery=shorter))
        loop.service.events.put(ev.SignalEvent(ev.Signal.HUP))
        loop.turn()
        assert loop.service.consumers.lane.ack_timeout == LINK_ACK_TIMEOUT + 1.0
        loop.until(lambda: len(loop.link.messages()) == 3, turns=100)  # the wait of the publish before the reload
        loop.run_for(LINK_ACK_TIMEOUT)
        assert len(loop.link.messages()) == 3
        loop.run_for(2)
        assert len(loop.link.messages()) == 4, "the reloaded wait applies to the publishes after the reload"


def test_the_outbox_stays_within_its_bound_on_disk_with_the_broker_away(state: Path) -> None:
    """Issue 23, defect 4: a topic sink of ``document: report`` and the broker away grew the outbox without a
    bound in bytes (31.6 MB on disk with a 256 KiB max_outbox_bytes). Now reports and messages share the bound."""
    from tests.delivery.test_disk_full import PortsSource
    from tests.outbox.test_admission import on_disk, slack

    cap = 256 * 1024
    config = with_sinks(state, "  - type: defender\n  - type: topic\n    topic: t/{thing_name}\n    document: report\n"
                        "    max_pending: 100000\n", interval=5, extra_delivery=f"  max_outbox_bytes: {cap}\n")
    assert config.delivery.max_outbox_bytes == cap
    with Loop(config, source=PortsSource(), connects=False) as loop:
        largest = 0
        for _ in range(30):
            loop.run_for(50)
            largest = max(largest, on_disk(state))
        assert loop.service.reports_built >= 290
        counters = loop.service.state.outbox.counters()
        assert counters["sink.topic.dropped"] > 200, "the topic's oldest messages made room"
        report = len(loop.service.state.outbox.pending()[-1].payload)
    print(f"largest on disk: {largest} bytes (bound {cap}, stated slack {slack(cap, 2 * report)}, report {report})")
    assert largest <= cap + slack(cap, 2 * report), f"{largest} bytes on disk"


def test_a_per_metric_sink_queues_a_rounds_messages_together_and_warns_once_per_round_when_it_drops(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    config = with_sinks(state, "  - {type: topic, topic: 'm/{thing_name}/{metric}', document: per-metric, "
                               "max_pending: 6}\n", interval=10)
    with Loop(config, connects=False) as loop:
        loop.run_for(35)  # 4 rounds of 4 network metrics, no connection
        rounds = loop.source.rounds
        assert rounds == 4
        assert loop.service.consumers.messages.pending_count("topic") == 6
        assert counts(loop, "topic")["dropped"] == 4 * rounds - 6, "max_pending counts messages"
        loop.link.connect()
        loop.until(lambda: counts(loop, "topic")["delivered"] == 6)
        bodies = [json.loads(m.payload) for m in loop.link.messages()]
        assert [m.topic for m in loop.link.messages()] == [f"m/{THING}/{b['metric']}" for b in bodies]
        assert {b["metric"] for b in bodies} <= {"aws:all-bytes-in", "aws:all-bytes-out", "aws:all-packets-in",
                                                 "aws:all-packets-out"}
    warned = [r for r in caplog.records if "max_pending" in r.getMessage()]
    assert len(warned) == rounds - 1, "one warning per round that dropped, not one per message"
