"""docs/AWS-SETUP.md's minimal device policy grants exactly the topics the agent uses, with the right resource kinds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.catalog import PayloadFormat
from agent.mqtt.topics import OUTCOMES, reply_topic, report_topic

INSTALL = Path(__file__).resolve().parents[2] / "docs" / "AWS-SETUP.md"
THING = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:REGION:ACCOUNT:"


def policy() -> dict:
    section = INSTALL.read_text(encoding="utf-8").split("## The device policy", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, "the device policy section has no json block"
    return json.loads(block.group(1))


def granted(action: str) -> set:
    out: set = set()
    for statement in policy()["Statement"]:
        assert statement["Effect"] == "Allow"
        if statement["Action"] == action:
            resources = statement["Resource"]
            out.update([resources] if isinstance(resources, str) else resources)
    return out


def test_the_policy_covers_every_topic_the_agent_uses_and_nothing_else() -> None:
    formats = [f.value for f in PayloadFormat]
    replies = [reply_topic(THING, f, o) for f in formats for o in OUTCOMES]
    assert granted("iot:Connect") == {f"{ARN}client/{THING}"}
    assert granted("iot:Publish") == {f"{ARN}topic/{report_topic(THING, f)}" for f in formats}
    assert granted("iot:Subscribe") == {f"{ARN}topicfilter/{t}" for t in replies}  # Subscribe takes topic filters
    assert granted("iot:Receive") == {f"{ARN}topic/{t}" for t in replies}
    assert {s["Action"] for s in policy()["Statement"]} == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}


def shadow_statements() -> list:
    section = INSTALL.read_text(encoding="utf-8").split("### Named shadow", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, "the named shadow section has no json block"
    return list(json.loads(block.group(1)))


def test_the_shadow_statements_cover_exactly_the_shadow_topics_the_agent_uses() -> None:
    from agent.config.model import ShadowConfig
    from agent.mqtt.topics import SHADOW_REQUESTS, SHADOW_RESPONSES, shadow_topic

    name = ShadowConfig.name  # the default shadow name, as the doc writes it
    by_action: dict = {}
    for statement in shadow_statements():
        assert statement["Effect"] == "Allow"
        by_action.setdefault(statement["Action"], set()).update(statement["Resource"])
    responses = [shadow_topic(THING, name, s) for s in SHADOW_RESPONSES]
    assert by_action == {
        "iot:Publish": {f"{ARN}topic/{shadow_topic(THING, name, s)}" for s in SHADOW_REQUESTS},
        "iot:Subscribe": {f"{ARN}topicfilter/{t}" for t in responses},  # full names: no wildcards
        "iot:Receive": {f"{ARN}topic/{t}" for t in responses},
    }
    assert not any("+" in r or "#" in r or "*" in r for resources in by_action.values() for r in resources)
