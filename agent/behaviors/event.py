"""A transition as Detect reports it: a ``ViolationEvent`` of ListViolationEvents (botocore's ``iot`` model).

The members, in the model's order: ``violationId``, ``thingName``, ``securityProfileName``, ``behavior`` (the
behavior object as configured), ``metricValue`` (a MetricValue; left out of ``alarm-invalidated``, which no
measurement caused), ``violationEventType`` and ``violationEventTime`` (epoch milliseconds, an integer).

Left out on purpose:
- ``violationEventAdditionalInfo``: its only member is ``confidenceLevel``, an ML Detect setting, which the
  agent refuses;
- ``verificationState`` / ``verificationStateDescription``: a person sets them afterwards on a violation
  (PutVerificationStateOnViolation); a new event has none.
"""

from __future__ import annotations

from typing import Any, Dict

from agent.behaviors.model import plain_copy
from agent.behaviors.tracker import Transition

LOCAL_PROFILE = "local"  # the securityProfileName of behaviors not named after a profile of the config


def violation_event(t: Transition, thing_name: str, profile_name: str) -> Dict[str, Any]:
    """The ViolationEvent of one transition, camelCase as ListViolationEvents returns it."""
    event: Dict[str, Any] = {
        "violationId": t.violation_id,
        "thingName": thing_name,
        "securityProfileName": profile_name,
        "behavior": plain_copy(t.behavior.raw),
    }
    if t.value is not None:
        event["metricValue"] = plain_copy(t.value)
    event["violationEventType"] = str(t.kind)
    event["violationEventTime"] = int(t.time_ms)
    return event
