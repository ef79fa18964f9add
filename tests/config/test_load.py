"""Config loading: typed values, defaults, and every problem reported with file, line and YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.catalog import MetricType
from agent.config.load import is_loopback, load_config, parse_config
from agent.config.source import config_path
from agent.errors import ConfigError
from agent.schema import format_duration, parse_duration

MINIMAL = """\
thing_name: gw-1
mqtt:
  endpoint: 127.0.0.1
  cert: /tmp/c.pem
  key: /tmp/k.pem
  ca: /tmp/ca.pem
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.yaml")
    return [str(p) for p in info.value.problems]


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL, "agent.yaml")
    assert config.thing_name == "gw-1"
    assert config.client_id == "gw-1"
    assert config.mqtt.port == 8883
    assert config.mqtt.protocol == "mqtt5"
    assert config.report.format == "json"
    assert config.report.key_names == "long"
    assert config.report.interval == 300.0
    assert config.delivery.backlog == "newest"
    assert str(config.state_dir) == "/var/lib/defender-agent"
    assert config.collectors == ()
    assert config.custom_metrics == {}


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(AttributeError):
        config.thing_name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.mqtt.port = 1  # type: ignore[misc]


def test_unknown_key_names_line_path_and_suggestion() -> None:
    found = problems(MINIMAL + "reprot:\n  format: cbor\n")
    assert found == ['agent.yaml:7: reprot: unknown key (did you mean "report"?)']


def test_all_problems_reported_together() -> None:
    text = """\
thing_name: gw-1
mqtt:
  endpoint: iot.example.com
  port: 99999
  cert: c
  key: k
report:
  format: xml
  interval: 5x
custom_metrics:
  "aws:cpu": number
  temp: {type: numbr}
"""
    found = problems(text)
    assert "agent.yaml:2: mqtt.ca: required key is missing (CA bundle that signs the endpoint's certificate (AmazonRootCA1.pem))" in found
    assert "agent.yaml:4: mqtt.port: must be at most 65535, got 99999" in found
    assert any(p.startswith("agent.yaml:8: report.format: expected one of json, cbor, got 'xml'") for p in found)
    assert 'agent.yaml:9: report.interval: expected a duration like "10s", "5m" or "1h", got \'5x\'' in found
    assert any(p.startswith('agent.yaml:11: custom_metrics["aws:cpu"]: ') and "aws:" in p for p in found)
    assert any(p.startswith("agent.yaml:12: custom_metrics.temp.type:") and 'did you mean "number"' in p for p in found)
    assert len(found) == 6


@pytest.mark.parametrize("name", ["gw+1", "gw#", "gw/1", '"gw 1"', "é", "a" * 129, '"gw\\t1"', '""'])
def test_thing_names_outside_the_create_thing_rule_are_refused(name: str) -> None:
    """CreateThing (AWS IoT API reference): thingName is 1 to 128 of [a-zA-Z0-9:_-]."""
    [problem] = problems(MINIMAL.replace("gw-1", name))
    why = "must not be empty" if name == '""' else "must be 1 to 128 of A-Z a-z 0-9 : _ - (the AWS IoT thing name rule)"
    assert problem.startswith("agent.yaml:1: thing_name: ") and problem.endswith(why)


@pytest.mark.parametrize("name", ["a", "gw-1", "Gateway_01:edge", "a" * 128])
def test_thing_names_inside_the_rule_load(name: str) -> None:
    assert parse_config(MINIMAL.replace("gw-1", name)).thing_name == name


@pytest.mark.parametrize(("client_id", "why"), [("gw+1", "must not contain"), ("gw/1", "must not contain"),
                                                ("a#", "must not contain"), ("x" * 129, "at most 128")])
def test_client_ids_the_broker_cannot_take_are_refused(client_id: str, why: str) -> None:
    text = MINIMAL.replace("mqtt:\n", f"mqtt:\n  client_id: '{client_id}'\n", 1)
    [problem] = problems(text)
    assert "mqtt.client_id: " in problem and why in problem


def test_interval_under_five_minutes_needs_a_loopback_endpoint() -> None:
    remote = MINIMAL.replace("127.0.0.1", "abc-ats.iot.eu-west-1.amazonaws.com") + "report: {interval: 60s}\n"
    assert problems(remote) == [
        "agent.yaml:7: report.interval: 1m is under 5m; AWS IoT throttles faster reports "
        "(only a loopback endpoint may go lower, for local tests)"
    ]
    local = parse_config(MINIMAL + "report: {interval: 2s}\n")
    assert local.report.interval == 2.0
    assert parse_config(MINIMAL.replace("127.0.0.1", "localhost") + "report: {interval: 1s}\n").report.interval == 1.0


def test_duplicate_keys_are_refused() -> None:
    assert problems(MINIMAL + "thing_name: other\n") == ["agent.yaml:7: thing_name: duplicate key (first at line 1)"]


def test_bad_yaml_names_the_line() -> None:
    found = problems(MINIMAL + "report: [unclosed\n")
    assert len(found) == 1 and found[0].startswith("agent.yaml:") and "not valid YAML" in found[0]


@pytest.mark.parametrize("text, expected", [("", "empty"), ("- a\n", "a list"), ("42\n", "a int")])
def test_document_must_be_a_mapping(text: str, expected: str) -> None:
    assert expected in problems(text)[0]


def test_custom_metric_shorthand_and_full_form() -> None:
    config = parse_config(
        MINIMAL
        + "custom_metrics:\n  cpu_usage: number\n  peers:\n    type: ip-address-list\n    display_name: Peers\n"
        + "    tags: {team: edge}\n"
    )
    assert config.custom_metrics["cpu_usage"].type is MetricType.NUMBER
    peers = config.custom_metrics["peers"]
    assert (peers.type, peers.display_name, dict(peers.tags), peers.name) == (
        MetricType.IP_ADDRESS_LIST,
        "Peers",
        {"team": "edge"},
        "peers",
    )


def test_allow_any_characters_only_for_string_lists() -> None:
    found = problems(MINIMAL + "custom_metrics:\n  cpu: {type: number, allow_any_characters: true}\n")
    assert found == ["agent.yaml:8: custom_metrics.cpu.allow_any_characters: only applies to string-list metrics"]


def test_unknown_collector_type_lists_known_types() -> None:
    found = problems(MINIMAL + "collectors:\n  - type: nosuch\n")
    assert len(found) == 1 and found[0].startswith("agent.yaml:8: collectors[0].type: unknown collector type 'nosuch'")


def test_collector_entry_must_be_a_mapping() -> None:
    assert problems(MINIMAL + "collectors:\n  - system\n") == [
        "agent.yaml:8: collectors[0]: expected a mapping like {type: system, ...}"
    ]


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(bad))
    good = tmp_path / "agent.yaml"
    good.write_text(MINIMAL)
    assert load_config(str(good)).source == str(good)


def test_config_path_precedence() -> None:
    assert config_path("/a.yaml", {"DEFENDER_AGENT_CONFIG": "/b.yaml"}) == "/a.yaml"
    assert config_path(None, {"DEFENDER_AGENT_CONFIG": "/b.yaml"}) == "/b.yaml"
    assert config_path(None, {}) == "/etc/defender-agent/agent.yaml"


@pytest.mark.parametrize(
    "text, seconds",
    [("10s", 10.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5s", 1.5), ("2d", 172800.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "s", "10", "1h 5", "-1s", "1s1"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.25, 1, 90, 300, 3600, 86400)] == ["250ms", "1s", "90s", "5m", "1h", "1d"]


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("10.0.0.1", False), ("a-ats.iot.eu-west-1.amazonaws.com", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_alias_bomb_is_a_config_error() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    found = problems("\n".join(lines) + "\n")
    # named where the limit is passed: under the key of line 5 (i), whose aliases repeat h, g, ... down to a
    assert found == ["agent.yaml:5: e[7][8][8][8][9]: the document passes 100000 values here (a list or mapping "
                     "this long, or aliases that repeat a node, each use counted again); no config needs that many"]


def test_a_list_too_long_is_named_by_its_path_and_line() -> None:
    text = MINIMAL + "custom_metrics:\n  cpu_usage: number\nbehaviors:\n" + "  - x\n" * 100_000
    found = problems(text)
    assert len(found) == 1, found[:3]
    # ten values before the list (the top mapping, thing_name, mqtt and its 4 keys, custom_metrics and its key,
    # behaviors): item 99990 is the 100001st; nine lines come before item 0
    assert found[0].startswith("agent.yaml:100000: behaviors[99990]: the document passes 100000 values here"), found


def test_deep_nesting_is_a_config_error() -> None:
    assert problems("x: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "agent.yaml:1: (top level): brackets nested more than 64 levels deep"
    ]
    assert problems("a: 1\nx:\n" + "- " * 3000 + "x\n") == [
        "agent.yaml: (top level): the document is nested too deeply"
    ]
    parse_config(MINIMAL + "custom_metrics: {" + "a: {type: number}" + "}\n")  # a few levels are fine
