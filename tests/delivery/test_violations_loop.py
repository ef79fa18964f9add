"""On-device behaviors in the scheduler loop (fake clock, fake link): one event per transition, state kept."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import List, Optional

import pytest

from agent.commands.status_view import format_status, read_status
from agent.config.model import Config
from agent.report.model import ListeningPort, ListeningPorts, NetworkStats, Sample, SampleKind
from tests.delivery.conftest import THING
from tests.loop import Loop, make_config

EVENTS = f"dt/gateways/{THING}/violations"
BEHAVIORS = """\
behaviors:
  - name: OnlyKnownPorts
    metric: aws:listening-tcp-ports
    criteria: {comparisonOperator: in-port-set, value: {ports: [22, 8883]}}
  - name: QuietCpu
    metric: cpu_usage
    suppressAlerts: true
    criteria: {comparisonOperator: less-than-equals, value: {number: 90}, consecutiveDatapointsToAlarm: 2}
custom_metrics: {cpu_usage: number}
violations:
  topic: "dt/gateways/{thing_name}/violations"
"""


class PortSource:
    """Listening ports and a CPU value set by the test; ``ports=None`` leaves the metric out (collector down)."""

    def __init__(self) -> None:
        self.ports: Optional[List[int]] = [22]
        self.cpu = 10.0
        self.rounds = 0

    def sample(self) -> List[Sample]:
        self.rounds += 1
        out = [Sample("network_stats", NetworkStats(1, 1, 1, 1), SampleKind.STANDARD), Sample("cpu_usage", self.cpu)]
        if self.ports is not None:
            out.append(Sample("listening_tcp_ports", ListeningPorts(tuple(ListeningPort(p) for p in self.ports)),
                              SampleKind.STANDARD))
        return out

    def stats(self) -> dict:
        return {"ports": {"ok": self.rounds, "failed": 0, "no_data": 0, "last_duration": 0.01, "last_error": None}}

    def close(self) -> None:
        pass


def config(state: Path, extra: str = "") -> Config:
    return make_config(state, interval=10, extra=BEHAVIORS + extra)


def events(loop: Loop) -> List[dict]:
    return [json.loads(m.payload) for m in loop.link.messages(EVENTS)]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_a_port_that_opens_and_closes_gives_one_in_alarm_and_one_alarm_cleared(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    source = PortSource()
    with Loop(config(state), source=source) as loop:
        loop.run_for(25)
        assert events(loop) == []
        source.ports = [22, 631]
        loop.run_for(40)  # four rounds with the port open: one event
        (raised,) = events(loop)
        assert raised["violationEventType"] == "in-alarm" and raised["metricValue"] == {"ports": [22, 631]}
        assert raised["thingName"] == THING and raised["securityProfileName"] == "local"
        assert raised["behavior"]["name"] == "OnlyKnownPorts"
        status = read_status(state)
        (active,) = status["violations"]["active"]
        assert active["behavior"] == "OnlyKnownPorts" and active["violation_id"] == raised["violationId"]
        assert "OnlyKnownPorts" in format_status(status)
        source.ports = [22]
        loop.run_for(40)
        kinds = [e["violationEventType"] for e in events(loop)]
        assert kinds == ["in-alarm", "alarm-cleared"]
        assert events(loop)[1]["violationId"] == raised["violationId"]
        assert events(loop)[1]["metricValue"] == {"ports": [22]}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Behavior 'OnlyKnownPorts'")]
    assert len(lines) == 2, lines
    assert "in alarm" in lines[0] and "[22,631]" in lines[0] and "alarm cleared" in lines[1]
    counts = read_status(state)["violations"]["counts"]["OnlyKnownPorts"]
    assert counts == {"in-alarm": 1, "alarm-cleared": 1, "alarm-invalidated": 0}
    assert read_status(state)["violations"]["events"] == {"delivered": 2, "failed": 0, "dropped": 0, "pending": 0}
    assert "events: delivered 2, failed 0, dropped 0, pending 0" in format_status(read_status(state))


def test_a_restart_keeps_the_alarm_without_a_second_in_alarm(state: Path) -> None:
    source = PortSource()
    source.ports = [22, 631]
    with Loop(config(state), source=source) as loop:
        loop.run_for(15)
        (raised,) = events(loop)
    with Loop(config(state), source=source) as loop:
        loop.run_for(30)
        assert events(loop) == [], "still in alarm: nothing new to say"
        source.ports = [22]
        loop.run_for(20)
        (cleared,) = events(loop)
        assert cleared["violationEventType"] == "alarm-cleared" and cleared["violationId"] == raised["violationId"]


def test_a_metric_that_stops_arriving_keeps_the_alarm_for_two_days_then_invalidates_it(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    source = PortSource()
    source.ports = [22, 631]
    with Loop(make_config(state, interval=3600, extra=BEHAVIORS), source=source) as loop:
        loop.run_for(3600)
        source.ports = None  # the ports collector fails
        loop.run_for(5 * 3600)
        assert [e["violationEventType"] for e in events(loop)] == ["in-alarm"], "a hiccup is not an event"
        loop.run_for(2 * 24 * 3600, turns=4000)
        kinds = [e["violationEventType"] for e in events(loop)]
        assert kinds == ["in-alarm", "alarm-invalidated"]
        assert events(loop)[1]["violationId"] == events(loop)[0]["violationId"]
        assert "metricValue" not in events(loop)[1]
    (line,) = [r.getMessage() for r in caplog.records if "invalidated" in r.getMessage()]
    assert "has not arrived for more than 2 days" in line


def test_suppress_alerts_records_and_counts_but_publishes_nothing(state: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    source = PortSource()
    source.cpu = 95.0  # QuietCpu: normal is <= 90, two datapoints in a row to alarm
    with Loop(config(state), source=source) as loop:
        loop.run_for(25)
        assert events(loop) == []
        (active,) = read_status(state)["violations"]["active"]
        assert active["behavior"] == "QuietCpu"
    assert any("Behavior 'QuietCpu' in alarm" in r.getMessage() and "suppressAlerts" in r.getMessage()
               for r in caplog.records)


def test_events_wait_in_the_outbox_while_the_broker_is_away(state: Path) -> None:
    source = PortSource()
    with Loop(config(state), source=source, connects=False) as loop:
        loop.run_for(5)
        source.ports = [22, 631]
        loop.run_for(20)
        source.ports = [22]
        loop.run_for(20)
        assert loop.service.consumers.messages.pending_count("violations") == 2
        loop.link.connect()
        loop.until(lambda: len(events(loop)) == 2)
        assert [e["violationEventType"] for e in events(loop)] == ["in-alarm", "alarm-cleared"]


def write_hook(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(stat.S_IRWXU)
    return path


def test_exec_gets_each_event_on_stdin_once(state: Path, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = write_hook(tmp_path / "on-violation", f"cat >> {log}\n")
    source = PortSource()
    with Loop(config(state, f"  exec: [{hook}]\n"), source=source) as loop:
        loop.run_for(5)
        source.ports = [22, 631]
        loop.run_for(30)
        source.ports = [22]
        loop.run_for(20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
            time.sleep(0.05)
        published = events(loop)
    got = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["violationEventType"] for e in got] == ["in-alarm", "alarm-cleared"]
    assert got == published, "the program gets the very event the topic carries"


def exec_failures(loop: Loop, caplog: pytest.LogCaptureFixture) -> List[str]:
    """The journal's "violations.exec failed" lines, once the hook's thread reported one (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("violations.exec failed" in r.getMessage() for r in caplog.records):
        loop.turn()
        time.sleep(0.05)
    return [r.getMessage() for r in caplog.records if "violations.exec failed" in r.getMessage()]


def test_a_hanging_exec_is_killed_and_never_blocks_the_loop(state: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    hook = write_hook(tmp_path / "hang", "sleep 30\n")
    source = PortSource()
    with Loop(config(state, f"  exec: [{hook}]\n  exec_timeout: 500ms\n"), source=source) as loop:
        source.ports = [22, 631]
        started = time.monotonic()
        loop.run_for(35)  # rounds go on while the program hangs
        assert time.monotonic() - started < 5
        assert loop.source.rounds >= 3 and len(events(loop)) == 1
        failed = exec_failures(loop, caplog)
    assert len(failed) == 1 and "timed out after 0.5s; its process group was killed" in failed[0]


def test_an_exec_that_floods_stdout_is_reported_as_killed_for_it(state: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """It was reported as "exited with status 0" although it was killed at the 64 KiB cap."""
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    hook = write_hook(tmp_path / "flood", "cat >/dev/null; exec yes\n")
    source = PortSource()
    with Loop(config(state, f"  exec: [{hook}]\n  exec_timeout: 5s\n"), source=source) as loop:
        source.ports = [22, 631]
        loop.run_for(15)
        (failed,) = exec_failures(loop, caplog)
    assert "was killed: wrote more than 64KiB to stdout" in failed and "status 0" not in failed


def test_an_unsafe_exec_program_refuses_to_start(state: Path, tmp_path: Path) -> None:
    from agent.errors import ConfigError

    hook = write_hook(tmp_path / "open-hook", "true\n")
    os.chmod(hook, 0o777)
    with pytest.raises(ConfigError) as info:
        Loop(config(state, f"  exec: [{hook}]\n"), source=PortSource())
    assert "violations.exec[0]" in str(info.value) and "world-writable" in str(info.value)




class EverySecondRound(PortSource):
    """Ports from a collector with twice the report interval: absent by schedule every other round."""

    def sample(self) -> List[Sample]:
        out = super().sample()
        if self.rounds % 2 == 0:
            return [s for s in out if s.name != "listening_tcp_ports"]
        return out

    def not_due_metrics(self) -> frozenset:
        return frozenset({"listening_tcp_ports"}) if self.rounds % 2 == 0 else frozenset()


def test_a_collector_with_a_longer_interval_is_waited_for_not_invalidated(state: Path) -> None:
    two = BEHAVIORS.replace("criteria: {comparisonOperator: in-port-set, value: {ports: [22, 8883]}}",
                            "criteria: {comparisonOperator: in-port-set, value: {ports: [22, 8883]}, "
                            "consecutiveDatapointsToAlarm: 2}")
    source = EverySecondRound()
    source.ports = [22, 631]
    with Loop(make_config(state, interval=10, extra=two), source=source) as loop:
        loop.run_for(55)  # rounds 1..6: the ports arrive in rounds 1, 3, 5
        assert [e["violationEventType"] for e in events(loop)] == ["in-alarm"], "two datapoints in a row: rounds 1, 3"
        source.ports = [22]
        loop.run_for(30)
        assert [e["violationEventType"] for e in events(loop)] == ["in-alarm", "alarm-cleared"]


def test_an_alarm_whose_round_fails_to_commit_is_raised_once_the_disk_has_room(
        state: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 23, defect 2: the new alarm state is adopted only after the round's commit. Before, a commit that
    failed (disk full) left memory "in alarm" while the event, its counter and the saved state rolled back: the
    event was never published, and a restart raised it again under a new violationId.

    The round's last write (the status meta, after every consumer's) fails as a full disk fails it."""
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    source = PortSource()
    with Loop(config(state), source=source) as loop:
        loop.run_for(15)
        state_dir = loop.service.state
        full = [True]
        save = state_dir.save_meta

        def save_unless_full(values: dict) -> None:
            if full[0] and "last_report_id" in values:
                raise sqlite3.OperationalError("database or disk is full")
            save(values)

        state_dir.save_meta = save_unless_full  # type: ignore[method-assign]
        source.ports = [22, 631]
        loop.run_for(25)  # rounds that cannot be stored
        assert "Cannot write to" in caplog.text
        assert not [r for r in caplog.records if "in alarm" in r.getMessage()], "no journal line for a rollback"
        assert events(loop) == []
        full[0] = False
        loop.run_for(25)
        (raised,) = events(loop)
        assert raised["violationEventType"] == "in-alarm"
    counts = read_status(state)["violations"]["counts"]["OnlyKnownPorts"]
    assert counts["in-alarm"] == 1
    (active,) = read_status(state)["violations"]["active"]
    assert active["violation_id"] == raised["violationId"], "the saved state names the published event"
