"""A desired state through the real loader: allowed keys apply, a bad value refuses its key with the loader's
message, the running keys stay whole; null gives a key back; a delta changes only what it names."""

from __future__ import annotations

from pathlib import Path

from agent.remote.merge import merge
from agent.remote.policy import screen
from agent.remote.resolve import resolve
from tests.remote.base import base_raw


def test_a_mixed_document_applies_the_allowed_keys_and_refuses_the_rest(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    res = resolve(raw, file, {}, screen({
        "report": {"interval": "60s", "jitter": "soon"},
        "collectors": {"cmd": {"interval": "10m"}, "ghost": {"interval": "1m"}},
        "log_level": "debug",
        "mqtt": {"endpoint": "evil.example.com"},
    }), complete=True)
    assert res.config is not None
    assert res.config.report.interval == 60.0 and res.config.report.jitter == 0.0
    assert {c.name: c.interval for c in res.config.collectors} == {"listening_ports": None, "cmd": 600.0}
    assert res.config.log_level.value == "debug"
    assert res.config.mqtt is not None and res.config.mqtt.endpoint == "127.0.0.1"
    assert res.config.source == file
    assert res.changed == (("collectors", "cmd", "interval"), ("log_level",), ("report", "interval"))
    assert res.refused == {
        "mqtt.endpoint": "moves the connection",
        "collectors.ghost.interval": "shadow desired: collectors.ghost.interval: agent.yaml has no collector "
                                     "named 'ghost'",
        "report.jitter": 'shadow desired: report.jitter: expected a duration like "10s", "5m" or "1h", got \'soon\'',
    }


def test_a_refused_value_keeps_the_running_remote_value(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    current = {("report", "interval"): "60s"}
    res = resolve(raw, file, current, screen({"report": {"interval": "0s"}}), complete=False)
    assert res.config is None, "nothing changes"
    assert res.overrides == current
    assert res.refused["report.interval"].startswith("shadow desired: report.interval: ")


def test_the_loaders_cross_checks_apply_to_remote_values(tmp_path: Path) -> None:
    """A remote endpoint (not loopback) refuses an interval under 5 minutes, exactly as agent.yaml would."""
    raw, file = base_raw(tmp_path / "state")
    raw["mqtt"]["endpoint"] = "example-ats.iot.eu-west-1.amazonaws.com"
    res = resolve(raw, file, {}, screen({"report": {"interval": "60s"}, "log_level": "warning"}), complete=True)
    assert res.config is not None and res.config.report.interval == 300.0 and res.config.log_level.value == "warning"
    assert "under 5m" in res.refused["report.interval"]


def test_yaml_looking_strings_stay_strings(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    hostile = {"log_level": "!!python/object/apply:os.system ['touch x']",
               "violations": {"security_profile_name": "a\nmqtt: {endpoint: evil}"},
               "report": {"interval": "60s\nstate_dir: /tmp"}}
    res = resolve(raw, file, {}, screen(hostile), complete=True)
    assert res.config is None
    assert set(res.refused) == {"log_level", "violations.security_profile_name", "report.interval"}
    assert merge(raw, {("log_level",): hostile["log_level"]})["log_level"] == hostile["log_level"]


def test_a_delta_changes_only_its_keys_and_a_whole_state_replaces_them(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    current = {("report", "interval"): "60s", ("log_level",): "debug"}
    delta = resolve(raw, file, current, screen({"report": {"jitter": "5s"}}), complete=False)
    assert delta.overrides == {**current, ("report", "jitter"): "5s"}
    whole = resolve(raw, file, current, screen({"report": {"jitter": "5s"}}), complete=True)
    assert whole.overrides == {("report", "jitter"): "5s"}
    assert whole.config is not None and whole.config.report.interval == 300.0, "agent.yaml's value returns"
    assert set(whole.changed) == {("report", "interval"), ("log_level",), ("report", "jitter")}


def test_null_gives_the_key_back_to_agent_yaml(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    current = {("report", "interval"): "60s", ("collectors", "cmd", "interval"): "10m"}
    res = resolve(raw, file, current, screen({"report": {"interval": None}, "collectors": None}), complete=False)
    assert res.overrides == {}
    assert res.config is not None and res.config.report.interval == 300.0
    assert {c.name: c.interval for c in res.config.collectors}["cmd"] is None


def test_nothing_to_change_builds_nothing(tmp_path: Path) -> None:
    raw, file = base_raw(tmp_path / "state")
    current = {("report", "interval"): "60s"}
    res = resolve(raw, file, current, screen({"report": {"interval": "60s"}}), complete=True)
    assert res.config is None and res.changed == () and res.refused == {}


def test_a_problem_under_no_key_of_the_change_refuses_the_whole_change(tmp_path: Path) -> None:
    """behaviors applied earlier need a health metric; turning health_metrics off breaks them: refused whole."""
    raw, file = base_raw(tmp_path / "state")
    behaviors = [{"name": "Backlog", "metric": "agent_outbox_pending",
                  "criteria": {"comparisonOperator": "less-than", "value": {"number": 10}}}]
    first = resolve(raw, file, {}, screen({"health_metrics": "custom_metrics", "behaviors": behaviors}), True)
    assert first.config is not None, first.refused
    second = resolve(raw, file, first.overrides, screen({"health_metrics": "off", "log_level": "debug"}), False)
    assert second.config is None and second.overrides == first.overrides
    assert set(second.refused) == {"health_metrics", "log_level"}
    assert all(reason.startswith("shadow desired: behaviors[0].metric: ") for reason in second.refused.values())
