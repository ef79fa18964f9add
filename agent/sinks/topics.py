"""The topic a `topic` sink (or `violations.topic`) publishes on: its template and the AWS IoT rules for it.

AWS IoT Core ("Topics" in the developer guide, and "Basic Ingest"): a topic name is at most
256 bytes of UTF-8 with at most 7 forward slashes, has no wildcards, and names starting
with ``$`` are reserved; ``$aws/rules/RULE_NAME/...`` (Basic Ingest) goes straight to a
rule's actions, and its prefix does not count towards the 7 slashes. The template's
placeholders are ``{thing_name}`` (every topic) and ``{metric}`` (only a `per-metric`
sink's, where it is required). The thing name rule (no ``/``, ``+``, ``#``) and the metric
name rule (:func:`metric_level_problem`) keep a rendered topic inside these rules when the
template is: a template is checked with a 128-character thing name and the longest metric
name its config can send.
"""

from __future__ import annotations

import re
from typing import Optional

MAX_TOPIC_BYTES = 256
MAX_SLASHES = 7
PLACEHOLDER = "{thing_name}"
METRIC_PLACEHOLDER = "{metric}"
BASIC_INGEST = re.compile(r"\$aws/rules/([a-zA-Z0-9_]{1,128})/")  # a rule name is 1..128 of a-z A-Z 0-9 _
LONGEST_THING = "x" * 128  # the longest thing name CreateThing allows: the template must fit with it too
EXAMPLE_PER_METRIC = "dt/gateways/{thing_name}/metric/{metric}"


def render_topic(template: str, thing_name: str, metric: Optional[str] = None) -> str:
    """The topic for one thing and, in a `per-metric` sink's template, one ``metric`` (None: ``{metric}`` stays,
    as ``status`` shows the sink's topic)."""
    topic = template.replace(PLACEHOLDER, thing_name)
    return topic if metric is None else topic.replace(METRIC_PLACEHOLDER, metric)


def metric_level_problem(name: str) -> Optional[str]:
    """Why the metric ``name`` cannot fill ``{metric}`` as it is, or None. Names are refused, never changed:
    a topic level must not hold ``/`` (a level separator), the wildcards ``+`` and ``#``, NUL or another
    control character. A custom metric name (``[a-zA-Z0-9:_-]``, the service's metricName pattern) and
    every device-side name (``aws:...``) pass."""
    if not name:
        return "is empty"
    if "/" in name:
        return "holds '/', which would split it over two topic levels"
    if "+" in name or "#" in name:
        return "holds an MQTT wildcard (+ or #), which a topic name must not contain"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "holds a control character"
    return None


def topic_problem(template: str, metric: Optional[str] = None) -> Optional[str]:
    """Why ``template`` cannot be a topic for AWS IoT, or None. Checked with the longest thing name.

    ``metric`` None: ``{metric}`` is refused (a `flat` or `report` sink, the violation events: one
    message per round). Otherwise the template is a `per-metric` sink's: it must hold ``{metric}``, and
    ``metric`` (the longest name its config can send; "" before that is known) fills it for the size."""
    if metric is None and METRIC_PLACEHOLDER in template:
        return (f"uses {METRIC_PLACEHOLDER}, which only a topic sink with `document: per-metric` fills in "
                "(one message per metric); this topic gets one message per round")
    if metric is not None and METRIC_PLACEHOLDER not in template:
        return (f"needs the {METRIC_PLACEHOLDER} placeholder: `document: per-metric` sends one message per metric, "
                f"each on its own topic (e.g. {EXAMPLE_PER_METRIC})")
    leftover = template.replace(PLACEHOLDER, "").replace(METRIC_PLACEHOLDER, "")
    if "{" in leftover or "}" in leftover:
        allowed = f"placeholder is {PLACEHOLDER}" if metric is None else \
            f"placeholders are {PLACEHOLDER} and {METRIC_PLACEHOLDER}"
        return f"the only {allowed}; {template!r} has another brace"
    if "+" in template or "#" in template:
        return "must not contain the MQTT wildcards + or # (a topic name is not a filter)"
    if "\x00" in template or any(ord(c) < 0x20 for c in template):
        return "must not contain control characters"
    counted = template
    if template.startswith("$"):
        ingest = BASIC_INGEST.match(template)
        if ingest is None:
            return ("topics starting with $ are reserved by AWS IoT; the one allowed is Basic Ingest, "
                    "$aws/rules/RULE_NAME/... (a rule name is 1 to 128 of a-z A-Z 0-9 _)")
        counted = template[ingest.end():]
        if not counted:
            return "a Basic Ingest topic needs a topic after $aws/rules/RULE_NAME/ (the rule sees it as topic())"
    if not counted.strip("/"):
        return "must name a topic"
    slashes = counted.count("/")
    if slashes > MAX_SLASHES:
        where = " after the $aws/rules/RULE_NAME/ prefix" if counted is not template else ""
        return f"has {slashes} forward slashes{where}; AWS IoT allows at most {MAX_SLASHES}"
    size = len(render_topic(template, LONGEST_THING, metric or "").encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        with_metric = f" and the metric {metric!r}, the longest name this config sends," if metric else ""
        return (f"is {size} bytes of UTF-8 with a 128-character thing name{with_metric}; AWS IoT allows at most "
                f"{MAX_TOPIC_BYTES}")
    return None
