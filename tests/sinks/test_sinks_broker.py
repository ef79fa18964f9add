"""The three sinks from one config, in a real `run` process against mosquitto with mutual TLS and an ACL.

A subscriber of our own (devkit.subscriber) reads the topic sink's messages as a rule
would; the broker's ACL refuses one topic sink's topic (MQTT5 PUBACK 0x87); the textfile sits in
a directory the agent cannot write. Each sink's outcome is read back with `status --json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

from devkit.broker import Broker, find_mosquitto
from devkit.certs import Pki
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.subscriber import Subscriber
from tests.delivery.conftest import (
    AGENT_MAIN,
    ROOT,
    THING,
    config_text,
    pki,
    start_agent,
    stop_agent,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
__all__ = ["pki"]  # the session PKI fixture of the delivery tests
COUNTER = "collectors:\n  - type: test_counter\n"
ACL = f"""\
user {THING}
topic readwrite $aws/things/{THING}/defender/metrics/#
topic write allowed/#

user defender-emulator
topic readwrite $aws/things/#

user topic-reader
topic read allowed/#
topic read denied/#
"""


@pytest.fixture
def acl_broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(tmp_path / "broker", pki, acl=ACL)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def emulator(pki: Pki, acl_broker: Broker) -> Iterator[Responder]:
    pair = pki.client("defender-emulator")
    r = Responder(ResponderOptions("127.0.0.1", acl_broker.port, str(pair.cert), str(pair.key), str(pki.ca),
                                   client_id=f"emulator-{os.getpid()}"))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def reader(pki: Pki, acl_broker: Broker) -> Iterator[Subscriber]:
    pair = pki.client("topic-reader")
    s = Subscriber(acl_broker.port, str(pair.cert), str(pair.key), str(pki.ca), ["allowed/#", "denied/#"])
    s.start()
    yield s
    s.stop()


@contextlib.contextmanager
def unwritable_dir(path: Path) -> Iterator[Optional[str]]:
    """A directory the agent cannot write: read-only tmpfs as root (root ignores modes), mode 0555 otherwise."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield None
        path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        yield f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", str(path)], check=False)


def status_json(config: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "agent", "status", "--config", str(config), "--json"],
                          capture_output=True, text=True, check=True, cwd=ROOT, timeout=60)
    return json.loads(done.stdout)


def sinks_of(config: Path) -> dict:
    return {s["name"]: s for s in status_json(config).get("sinks", [])}


def test_three_sinks_one_refused_one_unwritable_each_counted_and_the_others_go_on(
        pki: Pki, acl_broker: Broker, emulator: Responder, reader: Subscriber, tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    with unwritable_dir(tmp_path / "ro") as why_not:
        if why_not:
            pytest.skip(why_not)
        sinks = ("sinks:\n  - type: defender\n"
                 "  - {type: topic, name: allowed, topic: 'allowed/{thing_name}'}\n"
                 "  - {type: topic, name: denied, topic: 'denied/{thing_name}'}\n"
                 f"  - {{type: textfile, path: '{tmp_path / 'ro' / 'agent.prom'}'}}\n")
        cfg.write_text(config_text(pki, acl_broker.port, state, extra=COUNTER + sinks))
        cfg.chmod(0o600)
        proc = start_agent(cfg, log)
        try:
            assert wait_until(lambda: len(reader.received(f"allowed/{THING}")) >= 3, 30), log.read_text()
            assert wait_until(lambda: sinks_of(cfg).get("denied", {}).get("failed", 0) >= 3, 20), log.read_text()
        finally:
            stop_agent(proc)
    text = log.read_text()
    assert "Traceback" not in text
    sinks = sinks_of(cfg)
    assert sinks["allowed"]["delivered"] >= 3 and sinks["allowed"]["failed"] == 0
    assert sinks["denied"]["delivered"] == 0 and sinks["denied"]["failed"] >= 3
    assert sinks["textfile"]["delivered"] == 0 and sinks["textfile"]["failed"] >= 3
    assert sinks["defender"]["delivered"] >= 3, "the reports went on"
    assert reader.received(f"denied/{THING}") == [], "the broker dropped what it refused"
    accepted_ids = {r.report_id for r in emulator.snapshot() if r.accepted}
    flat_ids = [json.loads(m.payload)["report_id"] for m in reader.received(f"allowed/{THING}")]
    assert flat_ids == sorted(flat_ids) and set(flat_ids) & accepted_ids, "the same round under the same id"
    assert text.count("refused a message") == 1 and "0x87" in text, text
    assert text.count("Sink 'textfile':") == 1, text
    assert f"ReadWritePaths={tmp_path / 'ro'}" in text, "the journal says what to do under systemd"


def test_a_textfile_only_config_runs_with_no_broker_at_all(tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    prom = tmp_path / "textfile" / "agent.prom"
    prom.parent.mkdir()
    cfg.write_text(f"thing_name: {THING}\nreport: {{interval: 1s, jitter: 0s}}\nstate_dir: {state}\n"
                   f"{COUNTER}sinks:\n  - {{type: textfile, path: '{prom}'}}\n")
    cfg.chmod(0o600)
    proc = start_agent(cfg, log, None, "--reports", "2")
    proc.wait(60)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "defender_agent_aws_all_bytes_in 100" in prom.read_text()
    assert "Traceback" not in text and "Connect" not in text
    status = status_json(cfg)
    assert status["connection"] == "no broker (textfile sinks only)"
    assert [(s["name"], s["delivered"]) for s in status["sinks"]] == [("textfile", 2)]
    check = subprocess.run([sys.executable, str(AGENT_MAIN), "check", "--config", str(cfg)], capture_output=True,
                           text=True, cwd=ROOT, timeout=60, check=False)
    assert check.returncode == 0 and "no broker: only textfile sinks" in check.stdout, check.stderr


PER_METRIC_COLLECTORS = """\
collectors:
  - type: test_counter
  - {type: system, metrics: [load_average, memory_used_percent, uptime_seconds]}
custom_metrics:
  load_average: number-list
  memory_used_percent: number
  uptime_seconds: number
"""
PER_METRIC_UNITS = {"aws:all-bytes-in": "Bytes", "aws:all-bytes-out": "Bytes", "aws:all-packets-in": "Count",
                    "aws:all-packets-out": "Count", "load_average": "Count", "memory_used_percent": "Percent",
                    "uptime_seconds": "Seconds"}


def test_a_per_metric_sink_sends_one_message_per_metric_per_round_on_its_own_topic(
        pki: Pki, acl_broker: Broker, reader: Subscriber, tmp_path: Path) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    sinks = "sinks:\n  - {type: topic, name: cw, topic: 'allowed/gateways/{thing_name}/metric/{metric}', " \
            "document: per-metric}\n"
    cfg.write_text(config_text(pki, acl_broker.port, state, extra=PER_METRIC_COLLECTORS + sinks))
    cfg.chmod(0o600)
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: len(reader.received()) >= 3 * len(PER_METRIC_UNITS), 30), log.read_text()
    finally:
        stop_agent(proc)
    delivered = sinks_of(cfg)["cw"]["delivered"]
    assert wait_until(lambda: len(reader.received()) >= delivered, 10), "every delivered message reached the reader"
    text = log.read_text()
    assert "Traceback" not in text
    messages = reader.received()
    rounds: dict = {}
    for m in messages:
        body = json.loads(m.payload)
        assert m.topic == f"allowed/gateways/{THING}/metric/{body['metric']}", "the metric's own topic"
        assert list(body) == ["thing_name", "report_id", "timestamp", "metric", "value", "unit"]
        assert body["thing_name"] == THING and body["unit"] == PER_METRIC_UNITS[body["metric"]], body
        assert m.payload == json.dumps(body, separators=(",", ":")).encode(), "compact JSON"
        rounds.setdefault(body["report_id"], {})[body["metric"]] = body
    complete = [r for r in rounds.values() if len(r) == len(PER_METRIC_UNITS)]
    assert len(complete) >= 3 and all(set(r) == set(PER_METRIC_UNITS) for r in complete), rounds
    for r in complete:
        assert r["aws:all-bytes-in"]["value"] == 100 and r["aws:all-packets-out"]["value"] == 2
        assert r["load_average"]["value"] == 3, "a list goes as its item count"
        assert len({m["timestamp"] for m in r.values()}) == 1, "one round, one time"
    counts = sinks_of(cfg)["cw"]
    assert counts["failed"] == 0 and counts["dropped"] == 0, counts
    assert counts.get("target") == f"allowed/gateways/{THING}/metric/{{metric}}", "status shows the template"
    # Counted per message, not per round. A message can reach the reader before its PUBACK reaches the agent:
    # one the stop caught in between is still pending in the outbox (sent again at the next start), never lost.
    received = {(body["report_id"], body["metric"]) for r in rounds.values() for body in r.values()}
    assert counts["delivered"] <= len(received) <= counts["delivered"] + counts["pending"], counts
