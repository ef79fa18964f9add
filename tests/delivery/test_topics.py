"""agent/mqtt/topics.py: the Device Defender topics and their parser."""

from __future__ import annotations

from agent.mqtt.topics import parse_topic


def test_topics_allow_slashes_in_thing_names() -> None:
    assert parse_topic("$aws/things/a/b/defender/metrics/cbor/rejected") == ("a/b", "cbor", "rejected")
    assert parse_topic("$aws/things/x/defender/metrics/xml") is None
