"""On-device behaviors in a real `run` process: a port the test opens and closes, events seen by our own subscriber.

mosquitto with mutual TLS, the local responder for the reports, and a subscriber of our own on the
violations topic. The behavior says port P must not listen (`not-in-port-set [P]`); the test makes P
listen with a real socket, restarts the agent while the alarm is active, then closes the socket.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Iterator, List

import pytest

from agent.consumers.violations.consumer import QUEUE as VIOLATIONS
from agent.outbox.messages import Messages
from agent.outbox.store import open_readonly
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.subscriber import Subscriber
from tests.delivery.conftest import THING, config_text, start_agent, stop_agent, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
TOPIC = f"dt/gateways/{THING}/violations"


@pytest.fixture
def subscriber(pki: Pki, broker: Broker) -> Iterator[Subscriber]:
    pair = pki.client("violations-reader")
    s = Subscriber(broker.port, str(pair.cert), str(pair.key), str(pki.ca), ["dt/gateways/+/violations"])
    s.start()
    yield s
    s.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def queued_events(state: Path) -> int:
    box = open_readonly(state)
    assert box is not None
    try:
        return Messages(box).pending_count(VIOLATIONS)
    finally:
        box.close()


def kinds(subscriber: Subscriber) -> List[str]:
    return [json.loads(m.payload)["violationEventType"] for m in subscriber.received(TOPIC)]


def test_one_in_alarm_and_one_alarm_cleared_across_a_restart(pki: Pki, broker: Broker, responder: Responder,
                                                              subscriber: Subscriber, tmp_path: Path) -> None:
    port = free_port()
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    behaviors = (f"collectors:\n  - type: listening_ports\nbehaviors:\n  - name: NoDebugPort\n"
                 f"    metric: aws:listening-tcp-ports\n"
                 f"    criteria: {{comparisonOperator: not-in-port-set, value: {{ports: [{port}]}}}}\n"
                 "violations:\n  topic: 'dt/gateways/{thing_name}/violations'\n  security_profile_name: gateways\n")
    cfg.write_text(config_text(pki, broker.port, state, extra=behaviors))
    cfg.chmod(0o600)
    listener = socket.socket()
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: sum(r.accepted for r in responder.snapshot()) >= 2, 30), log.read_text()
        assert kinds(subscriber) == []
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert wait_until(lambda: kinds(subscriber) == ["in-alarm"], 20), log.read_text()
        # Its PUBACK recorded (else the restarted agent sends it again: QoS 1 is at least once, and a consumer
        # deduplicates on violationId; the test is about the alarm not being raised a second time).
        assert wait_until(lambda: queued_events(state) == 0, 10)
        stop_agent(proc)
        proc = start_agent(cfg, log)  # the alarm is still active: the new process must not raise it again
        before = len(responder.snapshot())
        assert wait_until(lambda: len(responder.snapshot()) >= before + 3, 30), log.read_text()
        assert kinds(subscriber) == ["in-alarm"], [m.payload[:90] for m in subscriber.received(TOPIC)]
        listener.close()
        assert wait_until(lambda: kinds(subscriber) == ["in-alarm", "alarm-cleared"], 20), log.read_text()
        before = len(responder.snapshot())
        assert wait_until(lambda: len(responder.snapshot()) >= before + 2, 20)
    finally:
        listener.close()
        stop_agent(proc)
    raised, cleared = (json.loads(m.payload) for m in subscriber.received(TOPIC))
    assert kinds(subscriber) == ["in-alarm", "alarm-cleared"], "exactly one of each"
    assert raised["violationId"] == cleared["violationId"]
    assert port in raised["metricValue"]["ports"] and port not in cleared["metricValue"]["ports"]
    assert raised["securityProfileName"] == "gateways" and raised["thingName"] == THING
    text = log.read_text()
    assert text.count("Behavior 'NoDebugPort' in alarm") == 1 and text.count("alarm cleared") == 1
    assert "Behaviors still in alarm from before: NoDebugPort" in text
    assert "Traceback" not in text
