"""The topic a `topic` sink (or `violations.topic`) publishes on: its template and the AWS IoT rules for it.

AWS IoT Core ("Topics" in the developer guide, and "Basic Ingest"): a topic name is at most
256 bytes of UTF-8 with at most 7 forward slashes, has no wildcards, and names starting
with ``$`` are reserved; ``$aws/rules/RULE_NAME/...`` (Basic Ingest) goes straight to a
rule's actions, and its prefix does not count towards the 7 slashes. The template's one
placeholder is ``{thing_name}``; the thing name rule (no ``/``, ``+``, ``#``) keeps a
rendered topic inside these rules when the template is.
"""

from __future__ import annotations

import re
from typing import Optional

MAX_TOPIC_BYTES = 256
MAX_SLASHES = 7
PLACEHOLDER = "{thing_name}"
BASIC_INGEST = re.compile(r"\$aws/rules/([a-zA-Z0-9_]{1,128})/")  # a rule name is 1..128 of a-z A-Z 0-9 _
LONGEST_THING = "x" * 128  # the longest thing name CreateThing allows: the template must fit with it too


def render_topic(template: str, thing_name: str) -> str:
    return template.replace(PLACEHOLDER, thing_name)


def topic_problem(template: str) -> Optional[str]:
    """Why ``template`` cannot be a topic for AWS IoT, or None. Checked with the longest thing name."""
    leftover = template.replace(PLACEHOLDER, "")
    if "{" in leftover or "}" in leftover:
        return f"the only placeholder is {PLACEHOLDER}; {template!r} has another brace"
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
    size = len(render_topic(template, LONGEST_THING).encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return (f"is {size} bytes of UTF-8 with a 128-character thing name; AWS IoT allows at most "
                f"{MAX_TOPIC_BYTES}")
    return None
