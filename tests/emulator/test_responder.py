"""The local Device Defender responder over a real mTLS broker."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any, Dict, List, Tuple

import cbor2
import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder, ResponderOptions

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]
TOPIC = "$aws/things/gw-9/defender/metrics/"


class Client:
    def __init__(self, pki: Pki, port: int) -> None:
        from awscrt import mqtt5

        from agent.mqtt.link import mqtt5_client, tls_context

        pair = pki.client("gw-9")
        self.mqtt5 = mqtt5
        self.got: queue.Queue[Tuple[str, bytes]] = queue.Queue()
        up: queue.Queue[bool] = queue.Queue()
        self.client = mqtt5_client(
            endpoint="127.0.0.1", port=port, tls_ctx=tls_context(str(pair.cert), str(pair.key), str(pki.ca), port),
            client_id="gw-9", keep_alive_sec=60, min_reconnect_delay_ms=200, max_reconnect_delay_ms=2000,
            on_publish=lambda d: self.got.put((d.publish_packet.topic, bytes(d.publish_packet.payload))),
            on_success=lambda d: up.put(True))
        self.client.start()
        up.get(timeout=10)
        sub = mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=TOPIC + f + "/" + o, qos=mqtt5.QoS.AT_LEAST_ONCE)
            for f in ("json", "cbor") for o in ("accepted", "rejected")])
        self.client.subscribe(sub).result(10)

    def send(self, fmt: str, payload: bytes) -> Tuple[str, bytes]:
        m = self.mqtt5
        self.client.publish(m.PublishPacket(topic=TOPIC + fmt, payload=payload, qos=m.QoS.AT_LEAST_ONCE)).result(10)
        return self.got.get(timeout=10)

    def stop(self) -> None:
        self.client.stop()


def test_accepts_valid_rejects_malformed_and_records(pki: Pki, broker: Broker, tmp_path: Path) -> None:
    seen: List[Tuple[str, Dict[str, Any], int]] = []
    pair = pki.client("defender-emulator")
    responder = Responder(ResponderOptions("127.0.0.1", broker.port, str(pair.cert), str(pair.key), str(pki.ca),
                                           on_accepted=lambda t, d, ms: seen.append((t, d, ms))))
    responder.start()
    client = Client(pki, broker.port)
    try:
        topic, body = client.send("json", json.dumps({"header": {"report_id": 5, "version": "1.0"},
                                                      "metrics": {}}).encode())
        assert topic.endswith("/json/accepted")
        assert json.loads(body)["reportId"] == 5 and json.loads(body)["status"] == "ACCEPTED"
        bad = {"hed": {"rid": 6, "v": "1.0"}, "cmet": {"cpu_usage": {"number": 1}}}
        topic, body = client.send("cbor", cbor2.dumps(bad))
        reply = cbor2.loads(body)
        assert topic.endswith("/cbor/rejected") and reply["reportId"] == 6
        assert reply["statusDetails"] == {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"}
        topic, _ = client.send("json", b"\xff garbage")
        assert topic.endswith("/json/rejected")
        short = {"hed": {"rid": 7, "v": "1.0"}, "met": {"ns": {"bi": 1, "bo": 2, "pi": 3, "po": 4}}}
        topic, _ = client.send("cbor", cbor2.dumps(short))
        assert topic.endswith("/cbor/accepted")
    finally:
        client.stop()
        responder.stop()
    assert [s[0] for s in seen] == ["gw-9", "gw-9"]
    assert seen[1][1]["metrics"]["network_stats"]["bytes_in"] == 1  # long keys for the store
    assert [r.accepted for r in responder.snapshot()] == [True, False, False, True]


def test_reject_mode(pki: Pki, broker: Broker, responder: Responder) -> None:
    responder.mode = "reject"
    client = Client(pki, broker.port)
    try:
        topic, _ = client.send("json", json.dumps({"header": {"report_id": 5, "version": "1.0"},
                                                   "metrics": {}}).encode())
    finally:
        client.stop()
    assert topic.endswith("/rejected")


# The troubleshooting guide's "Malformed metrics report" reply, as AWS prints it (no reportId).
GUIDE_REJECTED = {"thingName": "myThing", "status": "REJECTED",
                  "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"},
                  "timestamp": 0}


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_guide_mode_answers_as_the_troubleshooting_guide_prints(pki: Pki, broker: Broker, responder: Responder,
                                                                 fmt: str) -> None:
    responder.mode = "guide"
    client = Client(pki, broker.port)
    report = {"header": {"report_id": 5, "version": "1.0"}, "metrics": {}}
    try:
        topic, body = client.send(fmt, json.dumps(report).encode() if fmt == "json" else cbor2.dumps(report))
    finally:
        client.stop()
    reply = json.loads(body) if fmt == "json" else cbor2.loads(body)
    assert topic == TOPIC + fmt + "/rejected"
    assert list(reply) == list(GUIDE_REJECTED)  # the same keys in the same order: no reportId
    assert {**reply, "thingName": "myThing", "timestamp": 0} == GUIDE_REJECTED
    assert reply["thingName"] == "gw-9" and isinstance(reply["timestamp"], int)
