"""The reported document: fields and types the fleet queries, null deletions, AWS's size and depth limits.

Limits from SPEC.md "Named shadow" (AWS IoT developer guide): desired + reported at most 8 KB, nesting
depth kept at 5 (AWS pages say 5, 6 and 8). The emulator's store (devkit.emulator.shadow) is the
independent check that what is built is accepted.
"""

from __future__ import annotations

import json

from agent.consumers.shadow.document import (
    MAX_DEPTH,
    MAX_NAMES,
    MAX_STATE_BYTES,
    Facts,
    build,
    depth,
    diff,
    is_routine,
    size_of,
)
from devkit.emulator.shadow import ShadowStore


def test_the_fleet_fields_and_their_types() -> None:
    facts = Facts(version="0.2.0", failing_collectors=("exec",), alarms=("CpuNotHot",), last_report_at=1700000000,
                  outbox_pending=3, remote_config=True, desired_version=7, refused={"mqtt.endpoint": "never remote"})
    r = build(facts).reported
    assert r["agent"] == {"version": "0.2.0"}
    assert r["health"] == {"ok": False, "collectors_failing": 1, "failing_collectors": ["exec"], "sinks_failing": 0,
                           "failing_sinks": []}
    assert r["violations"] == {"active": 1, "behaviors": ["CpuNotHot"]}
    assert r["config"] == {"remote": True, "refused": {"mqtt.endpoint": "never remote"}, "desired_version": 7}
    assert r["report"] == {"last_at": 1700000000} and r["outbox"] == {"pending": 3}
    healthy = build(Facts(version="0.2.0")).reported
    assert healthy["health"]["ok"] is True and "desired_version" not in healthy["config"]
    assert healthy["config"]["refused"] == {} and "report" not in healthy


def test_the_echo_sits_beside_the_fleet_fields_without_clashing() -> None:
    echo = {"violations": {"security_profile_name": "edge", "active": 99}, "report": {"interval": "5m"},
            "log_level": "debug"}
    r = build(Facts(version="v", alarms=("A",), last_report_at=5, remote_config=True, echo=echo)).reported
    assert r["violations"] == {"active": 1, "behaviors": ["A"], "security_profile_name": "edge"}  # fleet wins
    assert r["report"] == {"last_at": 5, "interval": "5m"} and r["log_level"] == "debug"


def test_a_deep_echo_keeps_the_shape_the_service_accepted_so_no_delta_remains() -> None:
    """A behavior's ``value.ports`` is 6 levels below reported: left out of the echo, its delta would stand."""
    behaviors = [{"name": "NoDebugPort", "metric": "aws:listening-tcp-ports",
                  "criteria": {"comparisonOperator": "in-port-set", "value": {"ports": [22]}}}]
    store = ShadowStore(clock=lambda: 1700000000)
    store.update("gw", "fleet", json.dumps({"state": {"desired": {"behaviors": behaviors}}}).encode())
    built = build(Facts(version="v", remote_config=True, echo={"behaviors": behaviors, "log_level": "info"}))
    assert built.reported["behaviors"] == behaviors and built.omitted == ()
    assert depth({k: v for k, v in built.reported.items() if k != "behaviors"}) <= MAX_DEPTH  # the fleet fields
    store.update("gw", "fleet", json.dumps({"state": {"reported": built.reported}}).encode())
    assert "delta" not in store.get("gw", "fleet")


def test_within_8_kb_with_the_desired_state_counted() -> None:
    names = tuple(f"behavior-{i:03d}-" + "x" * 100 for i in range(60))
    echo = {"collectors": [{"type": "exec", "argv": ["/bin/x"] * 40}], "log_level": "info"}
    for desired in (0, 2000, 6000):
        built = build(Facts(version="v", alarms=names, failing_collectors=names, remote_config=True, echo=echo),
                      desired_bytes=desired)
        assert size_of(built.reported) + desired <= MAX_STATE_BYTES
        assert built.reported["violations"]["active"] == 60  # the count stays true when the list is cut
        assert len(built.reported["violations"]["behaviors"]) <= MAX_NAMES
    assert built.omitted and built.cut


def test_what_is_built_the_emulated_service_accepts_beside_a_large_desired() -> None:
    store = ShadowStore(clock=lambda: 1700000000)
    desired = {"note": "d" * 6000}
    store.update("gw", "fleet", json.dumps({"state": {"desired": desired}}).encode())
    names = tuple(f"b{i}-" + "y" * 120 for i in range(40))
    built = build(Facts(version="v", alarms=names, failing_sinks=names), desired_bytes=size_of(desired))
    store.update("gw", "fleet", json.dumps({"state": {"reported": built.reported}}).encode())  # no 413


def test_diff_sends_only_changes_and_null_for_what_went_away() -> None:
    held = {"violations": {"active": 1, "behaviors": ["A"]}, "config": {"refused": {"a.b": "x"}}, "old": 1}
    wanted = {"violations": {"active": 0, "behaviors": []}, "config": {"refused": {}}}
    assert diff(held, wanted) == {"violations": {"active": 0, "behaviors": []}, "config": {"refused": {"a.b": None}},
                                  "old": None}
    assert diff(wanted, wanted) == {}
    assert diff({"config": {}}, {"config": {"refused": {}}}) == {}  # the service keeps no empty object
    assert diff({"health": {"ok": 1}}, {"health": {"ok": True}}) == {"health": {"ok": True}}  # true is not 1


def test_routine_fields_alone_are_routine() -> None:
    assert is_routine({"report": {"last_at": 5}, "outbox": {"pending": 2}})
    assert not is_routine({"report": {"last_at": 5}, "violations": {"active": 1}})
    assert not is_routine({"report": {"interval": "5m"}})  # a config applied
