"""The ``Link`` seam: which real link a config gets, how awscrt's refusals read, and the shipped fake's promises."""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
from pathlib import Path

import cbor2
import pytest

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.config.model import MqttProtocol
from agent.errors import ConfigError
from agent.mqtt.link import Mqtt5Link, Mqtt311Link, _err, make_link
from agent.mqtt.replies import Reply, parse_reply
from agent.mqtt.topics import reply_topic, report_topic
from devkit.certs import Pki
from devkit.fake_link import FakeLink, LinkMisuse
from tests.delivery.conftest import THING, make_config

LOG = logging.getLogger("agent.test.mqtt")


@pytest.mark.parametrize(("protocol", "kind"), [("mqtt5", Mqtt5Link), ("mqtt311", Mqtt311Link)])
def test_make_link_builds_the_configured_protocol_without_connecting(pki: Pki, tmp_path: Path, protocol: str,
                                                                     kind: type) -> None:
    config = make_config(pki, 1, tmp_path / "state", protocol=protocol)
    assert config.mqtt.protocol is MqttProtocol(protocol)
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    link = make_link(config.mqtt, config.client_id, events, LOG)
    assert type(link) is kind and events.empty()


def test_tls_files_awscrt_refuses_are_a_config_error_naming_the_files(pki: Pki, tmp_path: Path) -> None:
    config = make_config(pki, 1, tmp_path / "state")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnotakey\n-----END PRIVATE KEY-----\n")
    mqtt = dataclasses.replace(config.mqtt, key=str(garbage))
    with pytest.raises(ConfigError) as caught:
        make_link(mqtt, config.client_id, queue.SimpleQueue(), LOG, source="agent.yaml")
    text = str(caught.value)
    assert "mqtt: cannot set up TLS from cert" in text and str(garbage) in text and "notakey" not in text


def test_err_names_awscrt_errors_without_a_trailing_period() -> None:
    class CrtError(Exception):
        name = "AWS_IO_SOCKET_TIMEOUT"

    assert _err(CrtError("socket operation timed out.")) == "AWS_IO_SOCKET_TIMEOUT: socket operation timed out"
    assert _err(None) == "no error given"


def fake(**options: object) -> tuple:
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    return FakeLink(events, THING, **options), events  # type: ignore[arg-type]


def drain(events: queue.SimpleQueue[object]) -> list:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def test_fake_link_refuses_what_the_scheduler_promises_not_to_do() -> None:
    link, events = fake()
    topic = report_topic(THING, "json")
    with pytest.raises(LinkMisuse, match="while disconnected"):
        link.publish(topic, b"{}", 1)
    link.start()
    with pytest.raises(LinkMisuse, match="before subscribing"):
        link.publish(topic, b"{}", 1)
    link.subscribe([reply_topic(THING, "json", "accepted")])
    with pytest.raises(LinkMisuse, match="before subscribing"):  # both reply topics, as "Sending metrics from devices" asks
        link.publish(topic, b"{}", 1)
    link.subscribe([reply_topic(THING, "json", "accepted"), reply_topic(THING, "json", "rejected")])
    with pytest.raises(LinkMisuse, match="not a report topic"):
        link.publish(reply_topic(THING, "json", "accepted"), b"{}", 1)
    link.publish(topic, b"{}", 1)
    assert drain(events) == [ev.Connected(False), ev.Subscribed(True, "1 topic(s)"), ev.Subscribed(True, "2 topic(s)"),
                             ev.PublishDone(1, True)]
    link.drop()
    with pytest.raises(LinkMisuse, match="while disconnected"):
        link.publish(topic, b"{}", 2)


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_fake_replies_are_what_the_reply_parser_reads(fmt: str) -> None:
    link, events = fake()
    link.start()
    link.subscribe([reply_topic(THING, fmt, "accepted"), reply_topic(THING, fmt, "rejected")])
    link.publish(report_topic(THING, fmt), b"x", 41)
    drain(events)
    link.accept(41)
    link.reject(41, code="InvalidPayload", message="Malformed metrics report")
    link.reject(42, with_id=False, encoding=PayloadFormat.JSON)
    accepted, rejected, anonymous = drain(events)
    assert accepted.topic == reply_topic(THING, fmt, "accepted")
    assert parse_reply(accepted.topic, accepted.payload, THING) == Reply(THING, 41, True, timestamp=1_700_000_000_000)
    decoded = cbor2.loads(rejected.payload) if fmt == "cbor" else json.loads(rejected.payload)
    assert decoded["statusDetails"] == {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"}
    reply = parse_reply(rejected.topic, rejected.payload, THING)
    assert isinstance(reply, Reply) and not reply.accepted and reply.error_code == "InvalidPayload"
    assert "reportId" not in json.loads(anonymous.payload)  # the troubleshooting guide's shape


def test_fake_link_stop_reports_like_awscrt() -> None:
    link, events = fake()
    link.start()
    drain(events)
    assert link.stop() is True
    got = drain(events)
    assert isinstance(got[0], ev.Disconnected) and got[1:] == [ev.Stopped()] and link.stopped
    hanging, events = fake(confirms_stop=False, connects=False)
    hanging.start()
    assert hanging.stop() is False and drain(events) == []
