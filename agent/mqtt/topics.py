"""The MQTT topics of AWS IoT the agent uses: Device Defender reports and named shadows.

Sources: AWS IoT Device Defender, "Sending metrics from devices", and AWS IoT Core,
"Reserved topics" (``$aws/things/thingName/defender/metrics/payload-format`` and its
``/accepted`` and ``/rejected`` replies, payload-format ``json`` or ``cbor``).
"""

from __future__ import annotations

from typing import Optional, Tuple

from agent.catalog import PayloadFormat

FORMATS = tuple(f.value for f in PayloadFormat)
OUTCOMES = ("accepted", "rejected")
PREFIX = "$aws/things/"
RESPONDER_FILTER = "$aws/things/+/defender/metrics/+"


def report_topic(thing: str, fmt: str) -> str:
    return f"{PREFIX}{thing}/defender/metrics/{fmt}"


def reply_topic(thing: str, fmt: str, outcome: str) -> str:
    return f"{report_topic(thing, fmt)}/{outcome}"


def parse_topic(topic: str) -> Optional[Tuple[str, str, Optional[str]]]:
    """``(thing, format, outcome-or-None)`` for a Device Defender topic, else ``None``.

    The thing name may itself contain ``/``, so the fixed suffix is matched from the end.
    """
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX):]
    parts = rest.split("/")
    outcome: Optional[str] = None
    if parts and parts[-1] in OUTCOMES:
        outcome = parts.pop()
    if len(parts) < 4 or parts[-3:-1] != ["defender", "metrics"] or parts[-1] not in FORMATS:
        return None
    thing = "/".join(parts[:-3])
    if not thing:
        return None
    return thing, parts[-1], outcome


# Named shadows (AWS IoT developer guide, device-shadow-mqtt): requests and the responses to subscribe to,
# each by its full name (AWS advises against wildcards on shadow topics).
SHADOW_REQUESTS = ("get", "update")
SHADOW_RESPONSES = ("get/accepted", "get/rejected", "update/accepted", "update/rejected", "update/delta")


def shadow_topic(thing: str, shadow: str, suffix: str) -> str:
    """``$aws/things/THING/shadow/name/SHADOW/SUFFIX`` (``suffix`` e.g. ``get`` or ``update/delta``)."""
    return f"{PREFIX}{thing}/shadow/name/{shadow}/{suffix}"
