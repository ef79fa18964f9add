"""Scenario ``replies``: generated malformed reply payloads against the agent's reply parser.

Random bytes, cut and mangled JSON, replies with odd values in JSON and CBOR, JSON and CBOR nested
up to 100,000 deep: ``parse_reply`` must refuse or ignore each (return, never raise) within 5 s.

Overlaps tests/delivery/test_replies.py::test_reply_parser_never_raises (hypothesis payloads,
300 examples, run by `make test`) and tests/report/test_document.py::
test_deeply_nested_json_is_a_decode_error_not_a_recursion_error; what this adds is the scale
(10,000), nesting 100,000 deep in JSON and CBOR, CBOR payloads, and the 5 s hang guard.
"""

from __future__ import annotations

import json
import random
import traceback
from typing import Any, Dict, List, Tuple

import cbor2

from agent.mqtt.replies import parse_reply
from agent.mqtt.topics import reply_topic
from benchmarks.faults.harness import SEED, Scenario, feed, scenario

THING = "fault-gw"
TARGET = "agent.mqtt.replies.parse_reply"
GOAL = (  # the record's promise; {count} is the number of runs
    "{count:,} generated malformed reply payloads: each refused or ignored, 0 tracebacks, 0 hangs "
    f"(target: {TARGET})"
)


def generated_replies(count: int, seed: int = SEED + 1) -> List[bytes]:
    rng = random.Random(seed)
    good = {
        "thingName": "gateway-01",
        "reportId": 1_700_000_000,
        "status": "REJECTED",
        "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"},
        "timestamp": 1_700_000_000_123,
    }
    odd_values: List[Any] = [
        None,
        True,
        -1,
        0,
        2**70,
        1.5,
        float("inf"),
        "",
        "ACCEPTED",
        "x" * 10_000,
        [],
        {},
        [1],
        {"a": None},
        "\u0000",
        "1700000000",
    ]
    out: List[bytes] = []
    while len(out) < count:
        roll = rng.random()
        if roll < 0.15:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))
        elif roll < 0.3:
            raw = json.dumps(good).encode()
            out.append(raw[: rng.randrange(len(raw))])
        elif roll < 0.6:
            doc: Dict[str, Any] = json.loads(json.dumps(good))
            for _ in range(rng.randint(1, 3)):
                key = rng.choice([*doc, "statusDetails", "extra", "reportId"])
                if rng.random() < 0.3:
                    doc.pop(key, None)
                else:
                    doc[key] = rng.choice(odd_values)
            enc = rng.random()
            if enc < 0.6:
                out.append(json.dumps(doc, allow_nan=True).encode())
            else:
                try:
                    out.append(cbor2.dumps(doc))
                except Exception:
                    continue
        elif roll < 0.7:
            depth = rng.choice([10, 1000, 100_000])
            out.append((b"[" * depth) + (b"]" * depth if rng.random() < 0.5 else b""))
        elif roll < 0.8:
            depth = rng.choice([10, 1000, 100_000])
            out.append(b"\x81" * depth + b"\x01")  # CBOR arrays nested `depth` deep
        elif roll < 0.9:
            out.append(json.dumps(good).encode().replace(b'"', rng.choice([b"'", b"", b"\\"])))
        else:
            out.append(
                rng.choice(
                    [
                        b"",
                        b" ",
                        b"null",
                        b"[]",
                        b"{}",
                        b"\xff\xfe",
                        b'{"reportId": NaN}',
                        b'{"reportId": 1e999}',
                        '{"thingName": "\ud800"}'.encode("utf-8", "surrogatepass"),
                    ]
                )
            )
    return out


@scenario("generated malformed replies", (1000, 10_000), GOAL)
def run(sc: Scenario, count: int) -> None:
    topic = reply_topic(THING, "json", "accepted")

    def parse(_index: int, payload: bytes) -> str:
        parse_reply(topic, payload, THING)
        return "handled"

    def hang(index: int, payload: bytes) -> str:
        return f"reply #{index}: over 5 s: {payload[:120]!r}"

    def crash(index: int, payload: bytes, exc: Exception) -> Tuple[str, str]:
        example = (f"reply #{index} ({len(payload)} bytes, starts {payload[:40]!r}): {type(exc).__name__}: "
                   f"{str(exc)[:200]}\n{traceback.format_exc(limit=4)}")
        return example, f"traceback {type(exc).__name__}"

    feed(sc, generated_replies(count), parse, hang, crash)
