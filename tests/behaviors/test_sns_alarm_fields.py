"""An on-device violation event carries, field by field, what Detect's SNS alarm message carries.

The reference is tests/fixtures/behaviors/detect_sns_alarm.json: a Detect alarm as it reached an
SNS alert target, copied as published (its source is in detect_sns_alarm.README.md beside it).
The event is built by the agent's own code, the way ViolationsConsumer builds it: the tracker
judges a round (``step``), :func:`violation_event` shapes the transition, and the consumer's
``json.dumps`` puts it on ``violations.topic``. The behavior is the device-side one closest to the
example's (a cloud-side metric is refused on the device): ``aws:all-packets-out`` with the same
operator, value, ``durationSeconds`` and datapoint counts; the round's value is the example's 54.

The fields checked are the nine the issue names, after AWS's Security Hub integration sample:
``thingName``, ``securityProfileName``, ``behavior.name``, ``behavior.metric``, ``behavior.criteria``,
``violationId``, ``violationEventType``, ``violationEventTime`` and ``metricValue``. For each
field the test checks that it is present, has the same JSON type, and has the same shape: the
criteria's keys, and the MetricValue's one member and its kind. The events also have the same
top-level keys, neither more nor fewer.

Where the values mean something different (nothing a consumer parses breaks):

- ``violationId``: Detect's is 32 hex digits. The agent's is a UUID4 with hyphens. Both fit the
  API's pattern ``[a-zA-Z0-9\\-]+`` (1 to 128 characters).
- ``violationEventTime``: both are epoch milliseconds, as integers. Detect's example falls on a
  five-minute boundary (the window of its cloud-side metric). The agent's is the time the round
  sampled.
- ``securityProfileName``: in the agent's event this is ``violations.security_profile_name``
  (default ``local``). It names no profile in the cloud unless you give it one's name.
- ``behavior``: the behavior as configured. A criteria key that the config leaves out (for
  example ``consecutiveDatapointsToAlarm`` at its default of 1) is absent. Every Detect example
  prints both datapoint counts. Whether Detect fills them in when they are left out is not
  documented. A consumer should read them with a default of 1.
- ``metricValue`` with ``durationSeconds``: both carry the value judged over the window. The agent
  sums the deltas reported inside it (docs/BEHAVIORS.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from agent.behaviors.event import LOCAL_PROFILE, violation_event
from agent.behaviors.tracker import BehaviorState, EventType, step
from tests.behaviors.helpers import from_raw

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "behaviors" / "detect_sns_alarm.json"
VIOLATION_ID = re.compile(r"[a-zA-Z0-9\-]{1,128}")  # ViolationEvent.violationId in the API reference

# The nine fields, as paths into the message.
FIELDS: List[Tuple[str, ...]] = [
    ("thingName",), ("securityProfileName",), ("behavior", "name"), ("behavior", "metric"),
    ("behavior", "criteria"), ("violationId",), ("violationEventType",), ("violationEventTime",),
    ("metricValue",),
]


def detect_alarm() -> Dict[str, Any]:
    message: Dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return message


def agent_event(profile: str = "MySecProfile") -> Dict[str, Any]:
    """The event the agent publishes for the equivalent on-device violation: its bytes, read back."""
    aws = detect_alarm()["behavior"]
    behavior = from_raw({"name": aws["name"], "metric": "aws:all-packets-out", "criteria": dict(aws["criteria"])})
    states: Dict[str, BehaviorState] = {}
    states, transitions = step(states, [behavior], {"aws:all-packets-out": {"count": 54}}, 1796132812663,
                               lambda: "fb3502dd-668e-4b12-bb3d-3e407492e6b4")
    assert [t.kind for t in transitions] == [EventType.IN_ALARM]
    event = violation_event(transitions[0], "gw-doc-1", profile)
    loaded: Dict[str, Any] = json.loads(json.dumps(event, separators=(",", ":")))  # as the consumer publishes it
    return loaded


def at(message: Dict[str, Any], path: Tuple[str, ...]) -> Any:
    value: Any = message
    for key in path:
        assert isinstance(value, dict) and key in value, f"{'.'.join(path)} is missing"
        value = value[key]
    return value


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


@pytest.mark.parametrize("path", FIELDS, ids=[".".join(p) for p in FIELDS])
def test_each_of_the_nine_fields_is_there_with_detects_json_type(path: Tuple[str, ...]) -> None:
    aws, ours = at(detect_alarm(), path), at(agent_event(), path)
    assert json_type(ours) == json_type(aws), f"{'.'.join(path)}: {ours!r} is not a {json_type(aws)} like {aws!r}"


def test_the_top_level_keys_are_detects_neither_more_nor_fewer() -> None:
    assert set(agent_event()) == set(detect_alarm())


def test_the_criteria_have_detects_keys_and_value_shape() -> None:
    aws, ours = detect_alarm()["behavior"]["criteria"], agent_event()["behavior"]["criteria"]
    assert set(ours) == set(aws)
    assert set(ours["value"]) == set(aws["value"]) == {"count"}
    for key in aws:
        assert json_type(ours[key]) == json_type(aws[key]), key
    assert ours == aws, "the criteria as configured, untouched"


def test_metric_value_is_one_member_of_detects_kind() -> None:
    aws, ours = detect_alarm()["metricValue"], agent_event()["metricValue"]
    assert list(ours) == list(aws) == ["count"]
    assert json_type(ours["count"]) == json_type(aws["count"]) == "integer"
    assert ours == aws, "the example's 54 packets, judged over the 300 s window"


def test_the_values_a_consumer_parses_keep_detects_rules() -> None:
    aws, ours = detect_alarm(), agent_event()
    assert ours["violationEventType"] == aws["violationEventType"] == "in-alarm"
    assert VIOLATION_ID.fullmatch(aws["violationId"]) and VIOLATION_ID.fullmatch(ours["violationId"])
    # Epoch milliseconds, 13 digits until 2286: not seconds, not an ISO string.
    assert len(str(aws["violationEventTime"])) == len(str(ours["violationEventTime"])) == 13
    assert ours["thingName"] == "gw-doc-1" and ours["securityProfileName"] == "MySecProfile"
    assert ours["behavior"]["name"] == aws["behavior"]["name"]


def test_without_a_profile_name_the_event_says_local() -> None:
    assert agent_event(LOCAL_PROFILE)["securityProfileName"] == "local"
