"""Parse accepted/rejected replies. Pure: bytes in, a Reply or a reason out.

The reply document (``thingName``, ``reportId``, ``status``, ``statusDetails`` with
``ErrorCode`` and ``ErrorMessage``) is described in AWS IoT Device Defender,
"Sending metrics from devices".

A reply may name no report: the troubleshooting guide ("Malformed metrics report")
prints a rejected reply without ``reportId`` (a service that cannot parse a report
cannot name its id). Such a rejected reply, or one whose id is not a positive integer,
has ``report_id`` None; the scheduler gives it to the one report awaiting a reply. An
*accepted* reply without an id is not documented and is refused as unusable: taking it
for the awaiting report's would hide a failure behind stray bytes on the topic.
Anything else unusable becomes :class:`Unusable` with a one-line reason; the caller
logs it and carries on. Nothing here raises on bad input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Union

import cbor2

from agent.mqtt.topics import parse_topic

MAX_REPLY_BYTES = 16 * 1024
MAX_TEXT = 300


@dataclass(frozen=True)
class Reply:
    thing: str
    report_id: Optional[int]  # None: the reply names no (usable) report id
    accepted: bool
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    timestamp: Optional[int] = None


@dataclass(frozen=True)
class Unusable:
    reason: str


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _decode(payload: bytes) -> Any:
    head = payload.lstrip()[:1]
    if head == b"{":
        return json.loads(payload.decode("utf-8"))
    return cbor2.loads(payload)


def parse_reply(topic: str, payload: bytes, thing: str) -> Union[Reply, Unusable]:
    """Interpret one message received on a reply topic for ``thing``."""
    parsed = parse_topic(topic)
    if parsed is None or parsed[2] is None:
        return Unusable(f"not a reply topic: {_text(topic)}")
    topic_thing, _fmt, outcome = parsed
    if topic_thing != thing:
        return Unusable(f"reply for another thing {_text(topic_thing)}")
    if len(payload) > MAX_REPLY_BYTES:
        return Unusable(f"reply of {len(payload)} bytes is larger than {MAX_REPLY_BYTES}")
    try:
        body = _decode(payload)
    except Exception as exc:  # json, unicode and the many cbor2 errors
        return Unusable(f"reply is neither JSON nor CBOR ({type(exc).__name__})")
    if not isinstance(body, dict):
        return Unusable(f"reply is a {type(body).__name__}, not an object")
    rid = body.get("reportId")
    if isinstance(rid, bool) or not isinstance(rid, int) or rid <= 0:
        rid = None
    body_thing = body.get("thingName")
    if body_thing is not None and body_thing != thing:
        return Unusable(f"reply names another thing {_text(body_thing)}")
    status = body.get("status")
    accepted = outcome == "accepted"
    if rid is None and accepted:
        return Unusable(f"accepted reply has no usable reportId (got {_text(body.get('reportId'))})")
    if isinstance(status, str) and status.upper() != ("ACCEPTED" if accepted else "REJECTED"):
        return Unusable(f"reply status {_text(status)} contradicts its topic /{outcome}")
    code: Optional[str] = None
    message: Optional[str] = None
    if not accepted:
        details = body.get("statusDetails")
        if isinstance(details, dict):
            code = _text(details.get("ErrorCode"))
            message = _text(details.get("ErrorMessage"))
        code = code or "Unknown"
    stamp = body.get("timestamp")
    return Reply(
        thing=thing,
        report_id=rid,
        accepted=accepted,
        error_code=code,
        error_message=message,
        timestamp=stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None,
    )
