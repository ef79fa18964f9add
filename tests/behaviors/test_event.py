"""The ViolationEvent shape, pinned by golden files in tests/fixtures/behaviors/.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/behaviors/test_event.py`, and read the diff.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from agent.behaviors.event import LOCAL_PROFILE, violation_event
from agent.behaviors.tracker import BehaviorState, Transition, step
from tests.behaviors.helpers import from_raw

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "behaviors"
T0 = 1_700_000_000_000

PORTS = {
    "name": "OnlyKnownPorts",
    "metric": "aws:listening-tcp-ports",
    "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [22, 8883]}},
    "suppressAlerts": False,
}


def transitions() -> Dict[str, Transition]:
    """The first of each kind, from four rounds of `step` (the fourth without the behavior: removed while in
    alarm, it is invalidated)."""
    behaviors = [from_raw(PORTS)]
    states: Dict[str, BehaviorState] = {}
    out: Dict[str, Transition] = {}
    rounds: List[Dict[str, Any]] = [
        {"aws:listening-tcp-ports": {"ports": [22, 23, 8883]}},
        {"aws:listening-tcp-ports": {"ports": [22, 8883]}},
        {"aws:listening-tcp-ports": {"ports": [23]}},
        {},
    ]
    ids = iter(["2f0c5a1e-8a47-4b8e-9d4a-0c2f1e7b3a55", "9b1d4c2a-0e6f-4a3b-8c7d-5e4f3a2b1c0d"])
    for index, values in enumerate(rounds):
        configured = behaviors if values else []
        states, done = step(states, configured, values, T0 + index * 300_000, lambda: next(ids))
        for t in done:
            out.setdefault(t.kind, t)
    return out


@pytest.mark.parametrize("kind", ["in-alarm", "alarm-cleared", "alarm-invalidated"])
def test_violation_event_golden(kind: str) -> None:
    event = violation_event(transitions()[kind], "gateway-0042", "GatewayBaseline")
    text = json.dumps(event, indent=2) + "\n"
    golden = FIXTURES / f"violation_event_{kind.replace('-', '_')}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_the_event_has_the_members_of_botocores_violation_event() -> None:
    model = json.loads(gzip.decompress(_service_model().read_bytes()))
    members = list(model["shapes"]["ViolationEvent"]["members"])
    left_out = {"violationEventAdditionalInfo", "verificationState", "verificationStateDescription"}
    for kind, t in transitions().items():
        event = violation_event(t, "gateway-0042", LOCAL_PROFILE)
        expected = [m for m in members if m not in left_out and (m != "metricValue" or kind != "alarm-invalidated")]
        assert list(event) == expected
        assert event["violationEventType"] in model["shapes"]["ViolationEventType"]["enum"]
        assert isinstance(event["violationEventTime"], int)
        assert event["behavior"] == PORTS
        assert event["securityProfileName"] == "local"
        json.dumps(event)  # plain JSON: no enum or tuple left inside


def test_the_event_is_detached_from_the_behavior() -> None:
    t = transitions()["in-alarm"]
    event = violation_event(t, "gateway-0042", "p")
    event["behavior"]["criteria"]["value"]["ports"].append(1)
    event["metricValue"]["ports"].append(1)
    assert t.behavior.raw == PORTS
    assert t.value == {"ports": [22, 23, 8883]}


def _service_model() -> Path:
    import botocore

    found = sorted((Path(botocore.__file__).parent / "data" / "iot").glob("*/service-2.json.gz"))
    if not found:
        pytest.skip("botocore's iot model is not installed")
    return found[-1]
