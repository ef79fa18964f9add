"""agent/mqtt/replies.py: accepted and rejected replies, and everything the parser must refuse."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.mqtt.replies import Reply, Unusable, parse_reply
from agent.mqtt.topics import reply_topic

T = "gw-1"


def acc(rid: object, **extra: object) -> bytes:
    return json.dumps({"thingName": T, "reportId": rid, "status": "ACCEPTED", "timestamp": 1, **extra}).encode()


def test_reply_accepted_and_rejected() -> None:
    r = parse_reply(reply_topic(T, "json", "accepted"), acc(7), T)
    assert r == Reply(T, 7, True, timestamp=1)
    body = {"thingName": T, "reportId": 8, "status": "REJECTED",
            "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"}}
    r = parse_reply(reply_topic(T, "cbor", "rejected"), cbor2.dumps(body), T)
    assert isinstance(r, Reply) and not r.accepted
    assert (r.error_code, r.error_message) == ("InvalidPayload", "Malformed metrics report")


# The troubleshooting guide ("Malformed metrics report"): a rejected reply without reportId.
GUIDE_REJECTED = {"thingName": T, "status": "REJECTED",
                  "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"},
                  "timestamp": 1581544633000}


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_the_guides_rejected_reply_without_report_id_is_a_reply_naming_no_report(fmt: str) -> None:
    payload = json.dumps(GUIDE_REJECTED).encode() if fmt == "json" else cbor2.dumps(GUIDE_REJECTED)
    r = parse_reply(reply_topic(T, fmt, "rejected"), payload, T)
    assert r == Reply(T, None, False, "InvalidPayload", "Malformed metrics report", 1581544633000)


@pytest.mark.parametrize("rid", [None, True, "12", -3, 0])
def test_an_unusable_report_id_names_no_report_and_only_a_rejection_may_do_that(rid: object) -> None:
    rejected = json.dumps({**GUIDE_REJECTED, "reportId": rid}).encode()
    r = parse_reply(reply_topic(T, "json", "rejected"), rejected, T)
    assert isinstance(r, Reply) and r.report_id is None and not r.accepted
    assert isinstance(parse_reply(reply_topic(T, "json", "accepted"), acc(rid), T), Unusable)


def test_reply_unusable_cases() -> None:
    topic = reply_topic(T, "json", "accepted")
    assert isinstance(parse_reply(topic, b"{}", T), Unusable)
    assert isinstance(parse_reply(topic, b"{not json", T), Unusable)
    assert isinstance(parse_reply(reply_topic("other", "json", "accepted"), acc(3), T), Unusable)
    assert isinstance(parse_reply(topic, acc(3, thingName="other"), T), Unusable)
    assert isinstance(parse_reply(topic, b"{" + b" " * 20000 + b"}", T), Unusable)
    assert isinstance(parse_reply(topic, acc(3, status="REJECTED"), T), Unusable)
    assert isinstance(parse_reply("$aws/things/gw-1/shadow/get/accepted", acc(3), T), Unusable)


@settings(max_examples=300, deadline=None)
@given(topic=st.one_of(st.text(max_size=80), st.sampled_from([reply_topic(T, "json", "accepted"),
                                                              reply_topic(T, "cbor", "rejected")])),
       payload=st.one_of(st.binary(max_size=300),
                         st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4),
                                      max_leaves=12).map(lambda v: json.dumps(v).encode()),
                         st.fixed_dictionaries({"reportId": st.integers(), "thingName": st.text(max_size=5),
                                                "status": st.text(max_size=9)}).map(
                                                    lambda v: json.dumps(v).encode())))
def test_reply_parser_never_raises(topic: str, payload: bytes) -> None:
    result = parse_reply(topic, payload, T)
    assert isinstance(result, (Reply, Unusable))
    if isinstance(result, Reply):
        assert ((result.report_id is None and not result.accepted) or result.report_id > 0) and result.thing == T
