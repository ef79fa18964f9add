"""The allow-list: what a desired state may set, and the reason for everything else (untrusted input)."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from agent.remote.policy import (
    CONNECTION,
    FILE,
    LOCAL,
    MAX_REFUSED,
    MORE,
    PROGRAM,
    UNKNOWN,
    screen,
)

EXEC = ["/bin/sh", "-c", "touch /tmp/remote-config-pwned"]


@pytest.mark.parametrize(("desired", "key", "reason"), [
    ({"mqtt": {"endpoint": "evil.example.com"}}, "mqtt.endpoint", CONNECTION),
    ({"mqtt": {"cert": "/tmp/cert.pem"}}, "mqtt.cert", CONNECTION),
    ({"thing_name": "other-thing"}, "thing_name", CONNECTION),
    ({"state_dir": "/tmp"}, "state_dir", FILE),
    ({"collectors": {"cmd": {"command": EXEC}}}, "collectors.cmd.command", PROGRAM),
    ({"collectors": {"cmd": {"env": {"LD_PRELOAD": "/tmp/x.so"}}}}, "collectors.cmd.env.LD_PRELOAD", PROGRAM),
    ({"collectors": {"new": {"type": "exec"}}}, "collectors.new.type", PROGRAM),
    ({"collectors": [{"type": "exec", "command": EXEC}]}, "collectors", PROGRAM),
    ({"collectors": {"door": {"path": "/etc/shadow"}}}, "collectors.door.path", FILE),
    ({"collectors": {"net": {"proc_root": "/tmp"}}}, "collectors.net.proc_root", FILE),
    ({"violations": {"exec": EXEC}}, "violations.exec", PROGRAM),
    ({"violations": {"topic": "x/y"}}, "violations.topic", CONNECTION),
    ({"sinks": [{"type": "textfile", "path": "/etc/cron.d/x"}]}, "sinks[0].path", FILE),
    ({"sinks": [{"type": "topic", "topic": "attacker/t"}]}, "sinks[0].topic", CONNECTION),
    ({"sinks": {"metrics": {"topic": "attacker/t"}}}, "sinks.metrics.topic", CONNECTION),
    ({"plugins": ["evil"]}, "plugins", PROGRAM),
    ({"shadow": {"remote_config": False}}, "shadow.remote_config", CONNECTION),
    ({"delivery": {"max_attempts": 1}}, "delivery.max_attempts", LOCAL),
    ({"report": {"format": "cbor"}}, "report.format", LOCAL),
    ({"collectors": {"cmd": {"timeout": "1s"}}}, "collectors.cmd.timeout", LOCAL),
    ({"reprot": {"interval": "60s"}}, "reprot", UNKNOWN),
    ({"report": {"intervall": "60s"}}, "report.intervall", UNKNOWN),
])
def test_a_key_not_on_the_allow_list_is_refused_with_why(desired: Dict[str, Any], key: str, reason: str) -> None:
    screened = screen(desired)
    assert screened.changes == {}, "nothing of it is applied"
    assert screened.refused.get(key, "").startswith(reason), screened.refused


def test_the_allowed_keys_pass_with_their_values_and_the_rest_of_the_document_is_refused() -> None:
    behaviors = [{"name": "b", "metric": "aws:num-listening-tcp-ports",
                  "criteria": {"comparisonOperator": "less-than", "value": {"count": 5}}}]
    screened = screen({"report": {"interval": "60s", "jitter": 5}, "log_level": "debug", "behaviors": behaviors,
                       "health_metrics": "custom_metrics", "violations": {"security_profile_name": "fleet"},
                       "collectors": {"cpu": {"interval": "10m", "command": EXEC}}, "mqtt": {"port": 1}})
    assert screened.changes == {("report", "interval"): "60s", ("report", "jitter"): 5, ("log_level",): "debug",
                                ("behaviors",): behaviors, ("health_metrics",): "custom_metrics",
                                ("violations", "security_profile_name"): "fleet",
                                ("collectors", "cpu", "interval"): "10m"}
    assert screened.refused == {"collectors.cpu.command": PROGRAM, "mqtt.port": CONNECTION}


def test_null_gives_a_key_or_a_section_back_and_asks_nothing_of_a_refused_key() -> None:
    screened = screen({"report": {"interval": None}, "collectors": None, "behaviors": None, "mqtt": None,
                       "nonsense": None})
    assert screened.removals == [("report", "interval"), ("collectors",), ("behaviors",)]
    assert screened.changes == {} and screened.refused == {}


@pytest.mark.parametrize("desired", [
    {"behaviors": json.loads("[" * 500 + "]" * 500)},
    {"behaviors": list(range(100_000))},
    {"behaviors": [{"a" * 10: "x" * 100_000}]},
    {"behaviors": [{1: "non-string key"}]},
    {"behaviors": [object()]},
    {1: 2, None: 3, ("t",): 4},
    {"report": "60s"},
    {"report": ["60s"]},
    {"collectors": {"cpu": "60s"}},
    {"collectors": {7: {"interval": "1s"}}},
    "not a mapping",
    [1, 2],
    {"mqtt": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
])
def test_hostile_documents_are_refused_and_never_raise(desired: Any) -> None:
    screened = screen(desired)
    assert screened.changes == {}
    assert screened.refused
    assert all(len(key) <= 200 for key in screened.refused)


def test_refusals_are_bounded_for_the_shadow_document() -> None:
    screened = screen({f"key{i}": i for i in range(10_000)})
    assert len(screened.refused) == MAX_REFUSED + 1
    assert screened.refused[MORE] == f"{10_000 - MAX_REFUSED} more key(s) refused"
