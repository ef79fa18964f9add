"""The textfile sink: Prometheus text for node_exporter's textfile collector, and its atomic write.

The text is checked three ways: prometheus_client's own parser reads it back, a golden file
pins it byte for byte (regenerate after an intended change with
`UPDATE_GOLDEN=1 pytest tests/sinks/test_textfile.py`), and :func:`node_exporter_problems`
applies the rules node_exporter and the exposition format write down:

- node_exporter's README ("Textfile Collector"): only files matching ``*.prom`` are read, and
  "Timestamps are not supported" (its collector skips the whole file when a sample has one);
- the exposition format ("Text format details"): lines end with a line feed, the last one too;
  one HELP and one TYPE line per metric name, TYPE before the first sample; "All lines for a
  given metric must be provided as one single group"; "Each line must have a unique combination
  of a metric name and labels"; HELP escapes backslash and line feed, label values also the
  double quote; a value is a Go float, ``NaN``, ``+Inf`` or ``-Inf``;
- node_exporter's parser (prometheus/common expfmt) turns a second HELP or TYPE line, or a TYPE
  after samples, into an error that drops the file, and node_exporter drops a family whose HELP
  differs from another file's: every name here starts with ``defender_agent_``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.catalog import DEVICE_METRICS, MetricType
from agent.config.model import CustomMetricConfig
from agent.report.cloud import CheckedRound
from agent.sinks import textfile
from agent.sinks.health import CollectorHealth, Health, SinkHealth
from agent.sinks.textfile import (
    TextfileError,
    format_value,
    metric_name,
    name_clashes,
    render,
    write_atomic,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "sinks" / "round.prom"

USERS = ["pi", 'ad"min', "back\\slash", "new\nline", "pi"]  # the second "pi" is one series

ROUND = CheckedRound(
    thing_name="gw-1",
    report_id=1764590400123,
    timestamp_ms=1764590400123,
    values={
        "aws:listening-tcp-ports": {"ports": [22, 8883]},
        "aws:num-listening-tcp-ports": {"count": 2},
        "aws:listening-udp-ports": {"ports": []},
        "aws:num-listening-udp-ports": {"count": 0},
        "aws:num-established-tcp-connections": {"count": 3},
        "aws:destination-ip-addresses": {"cidrs": ["192.0.2.10", "2001:db8::1"]},
        "aws:all-bytes-in": {"count": 123456},
        "aws:all-bytes-out": {"count": 65432},
        "aws:all-packets-in": {"count": 987},
        "aws:all-packets-out": {"count": 654},
        "cpu_usage": {"number": 12.5},
        "load_average": {"numbers": [0.52, 0.48, 0.31]},
        "logged_in_users": {"strings": USERS},
        "modem:signal-dbm": {"number": -71},
        "peers": {"cidrs": ["10.0.0.0/8"]},
    },
    custom={
        "cpu_usage": MetricType.NUMBER,
        "load_average": MetricType.NUMBER_LIST,
        "logged_in_users": MetricType.STRING_LIST,
        "modem:signal-dbm": MetricType.NUMBER,
        "peers": MetricType.IP_ADDRESS_LIST,
    },
)

MODEM_HELP = "Signal strength\nfrom AT+CSQ \\ the modem"
CUSTOM = {
    "cpu_usage": CustomMetricConfig(MetricType.NUMBER, unit="percent", description="CPU busy time", name="cpu_usage"),
    "load_average": CustomMetricConfig(MetricType.NUMBER_LIST, unit="processes", description="Load averages",
                                       name="load_average"),
    "logged_in_users": CustomMetricConfig(MetricType.STRING_LIST, description="Logged-in users", name="logged_in_users"),
    "modem:signal-dbm": CustomMetricConfig(MetricType.NUMBER, unit="dBm", description=MODEM_HELP,
                                           name="modem:signal-dbm"),
    "peers": CustomMetricConfig(MetricType.IP_ADDRESS_LIST, name="peers"),
}

HEALTH = Health(
    collectors=(CollectorHealth("system", True, 0.012), CollectorHealth("modem", False, 10.0)),
    outbox_pending=4,
    seconds_since_accepted=42.5,
    sinks=(SinkHealth("defender", "defender", 120, 3, 1, 2), SinkHealth("rules", "topic", 118, 0, 5, 0)),
)


def families(text: str) -> Dict[str, Tuple[str, str, List[Tuple[str, Dict[str, str], float]]]]:
    """family name -> (type, help, [(sample name, labels, value)]) as prometheus_client reads it."""
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in out, f"family {fam.name} split"
        out[fam.name] = (fam.type, fam.documentation, [(s.name, s.labels, s.value) for s in fam.samples])
    return out


def values_of(text: str, family: str) -> Dict[Tuple[Tuple[str, str], ...], float]:
    return {tuple(sorted(labels.items())): value for _, labels, value in families(text)[family][2]}


# The rules node_exporter and the exposition format write down (module docstring), as a checker.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
SAMPLE = re.compile(rf"({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*)?\}})? ({_VALUE})")
HELP = re.compile(rf"# HELP ({_NAME}) ((?:[^\\\n]|\\[\\n])*)")
TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")


def node_exporter_problems(text: str) -> List[str]:
    problems: List[str] = []
    if not text.endswith("\n"):
        problems.append("the last line does not end with a line feed")
    helps: Set[str] = set()
    types: Set[str] = set()
    sampled: Set[str] = set()
    series: Set[Tuple[str, str]] = set()
    current = ""
    for number, line in enumerate(text.split("\n")[:-1], 1):
        help_line, type_line, sample = HELP.fullmatch(line), TYPE.fullmatch(line), SAMPLE.fullmatch(line)
        matched = help_line or type_line or sample
        if matched is None:
            problems.append(f"line {number}: not a HELP, TYPE or sample line without timestamp: {line!r}")
            continue
        name = matched.group(1)
        if not name.startswith(textfile.PREFIX) or ":" in name:
            problems.append(f"line {number}: {name} lacks the prefix or has a colon")
        if name != current and name in sampled | helps | types:
            problems.append(f"line {number}: {name} continues a group that has ended")
        current = name
        if help_line or type_line:
            seen = helps if help_line else types
            if name in seen:
                problems.append(f"line {number}: second {'HELP' if help_line else 'TYPE'} for {name}")
            if name in sampled:
                problems.append(f"line {number}: {'HELP' if help_line else 'TYPE'} for {name} after its samples")
            seen.add(name)
        else:
            assert sample is not None
            key = (name, sample.group(2) or "")
            if key in series:
                problems.append(f"line {number}: {name}{key[1]} again")
            series.add(key)
            sampled.add(name)
            if name not in types:
                problems.append(f"line {number}: {name} has no TYPE before its samples")
    return problems


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("# TYPE defender_agent_x gauge\ndefender_agent_x 1 1764590400000\n", "without timestamp"),
        ("# TYPE defender_agent_x gauge\ndefender_agent_x 1", "line feed"),
        ("# HELP defender_agent_x a\n# HELP defender_agent_x b\n# TYPE defender_agent_x gauge\n", "second HELP"),
        ("# TYPE defender_agent_x gauge\ndefender_agent_x{a=\"1\"} 1\n# TYPE defender_agent_y gauge\n"
         "defender_agent_y 1\ndefender_agent_x{a=\"2\"} 1\n", "group that has ended"),
        ("# TYPE defender_agent_x gauge\ndefender_agent_x{a=\"1\"} 1\ndefender_agent_x{a=\"1\"} 2\n", "again"),
        ("defender_agent_x 1\n# TYPE defender_agent_x gauge\n", "no TYPE"),
        ('# TYPE defender_agent_x gauge\ndefender_agent_x{a="x"y"} 1\n', "not a HELP"),
        ("# HELP defender_agent_x one\ntwo\n# TYPE defender_agent_x gauge\n", "not a HELP"),
        ("# TYPE defender_agent_x gauge\ndefender_agent_x 1_000\n", "not a HELP"),
        ("# TYPE x gauge\nx 1\n", "prefix"),
    ],
)
def test_the_rule_checker_catches_what_node_exporter_refuses(bad, problem):
    assert any(problem in p for p in node_exporter_problems(bad)), node_exporter_problems(bad)


def test_the_text_keeps_node_exporters_rules():
    assert node_exporter_problems(render(ROUND, HEALTH, CUSTOM)) == []


def test_the_text_is_the_golden_file():
    text = render(ROUND, HEALTH, CUSTOM)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
    assert GOLDEN.name.endswith(".prom")


def test_prometheus_client_reads_every_value_kind_back():
    text = render(ROUND, HEALTH, CUSTOM)
    fams = families(text)
    for name, (typ, _, _) in fams.items():
        assert typ == ("counter" if name.startswith("defender_agent_sink_") and name != textfile.SINK_PENDING else "gauge"), name

    tcp = fams["defender_agent_aws_listening_tcp_ports"]
    assert tcp[1] == "TCP ports listening for connections (unit: ports)"
    assert [(s[1], s[2]) for s in tcp[2]] == [({"port": "22"}, 1), ({"port": "8883"}, 1)]
    assert fams["defender_agent_aws_num_established_tcp_connections"][2] == [
        ("defender_agent_aws_num_established_tcp_connections", {}, 3)
    ]
    assert values_of(text, "defender_agent_aws_all_bytes_in") == {(): 123456}
    assert fams["defender_agent_aws_all_bytes_in"][1] == "Bytes received in the last report period (unit: bytes)"
    assert values_of(text, "defender_agent_aws_destination_ip_addresses") == {
        (("address", "192.0.2.10"),): 1, (("address", "2001:db8::1"),): 1
    }
    assert values_of(text, "defender_agent_cpu_usage") == {(): 12.5}
    assert fams["defender_agent_cpu_usage"][1] == "CPU busy time (unit: percent)"
    assert values_of(text, "defender_agent_load_average") == {
        (("index", "0"),): 0.52, (("index", "1"),): 0.48, (("index", "2"),): 0.31
    }
    users = fams["defender_agent_logged_in_users"]
    assert [s[1]["value"] for s in users[2]] == ["pi", 'ad"min', "back\\slash", "new\nline"]
    assert {s[2] for s in users[2]} == {1}
    assert users[1] == "Logged-in users"
    modem = fams["defender_agent_modem_signal_dbm"]
    assert modem[1] == MODEM_HELP + " (unit: dBm)"
    assert modem[2] == [("defender_agent_modem_signal_dbm", {}, -71)]
    assert fams["defender_agent_peers"][1] == "Custom metric peers"
    assert values_of(text, "defender_agent_peers") == {(("address", "10.0.0.0/8"),): 1}


def test_an_empty_list_keeps_help_and_type_without_samples():
    text = render(ROUND, HEALTH, CUSTOM)
    udp = families(text)["defender_agent_aws_listening_udp_ports"]
    assert udp[0] == "gauge" and udp[1].startswith("UDP ports") and udp[2] == []
    assert "# TYPE defender_agent_aws_listening_udp_ports gauge\n# HELP" in text
    assert values_of(text, "defender_agent_aws_num_listening_udp_ports") == {(): 0}


def test_the_agents_health_is_in_the_file():
    text = render(ROUND, HEALTH, CUSTOM)
    fams = families(text)
    assert values_of(text, "defender_agent_collector_success") == {
        (("collector", "system"),): 1, (("collector", "modem"),): 0
    }
    assert values_of(text, "defender_agent_collector_duration_seconds") == {
        (("collector", "system"),): 0.012, (("collector", "modem"),): 10.0
    }
    assert values_of(text, "defender_agent_outbox_pending") == {(): 4}
    assert values_of(text, "defender_agent_seconds_since_last_accepted_report") == {(): 42.5}
    assert values_of(text, "defender_agent_last_round_timestamp_seconds") == {(): 1764590400.123}
    assert values_of(text, "defender_agent_report_id") == {(): 1764590400123}
    # prometheus_client names a counter family without its `_total`; the samples keep it.
    delivered = fams["defender_agent_sink_delivered"]
    assert delivered[0] == "counter"
    assert {s[0] for s in delivered[2]} == {"defender_agent_sink_delivered_total"}
    assert values_of(text, "defender_agent_sink_delivered") == {
        (("sink", "defender"), ("type", "defender")): 120, (("sink", "rules"), ("type", "topic")): 118
    }
    assert values_of(text, "defender_agent_sink_failed") == {
        (("sink", "defender"), ("type", "defender")): 3, (("sink", "rules"), ("type", "topic")): 0
    }
    assert values_of(text, "defender_agent_sink_dropped") == {
        (("sink", "defender"), ("type", "defender")): 1, (("sink", "rules"), ("type", "topic")): 5
    }
    assert values_of(text, "defender_agent_sink_pending") == {
        (("sink", "defender"), ("type", "defender")): 2, (("sink", "rules"), ("type", "topic")): 0
    }


def test_what_is_not_known_yet_has_no_sample():
    health = Health(collectors=(CollectorHealth("system", True, None),))
    text = render(CheckedRound("gw-1", 1, 1000), health, {})
    fams = families(text)
    assert fams["defender_agent_seconds_since_last_accepted_report"][2] == []
    assert fams["defender_agent_collector_duration_seconds"][2] == []
    assert values_of(text, "defender_agent_collector_success") == {(("collector", "system"),): 1}
    assert values_of(text, "defender_agent_last_round_timestamp_seconds") == {(): 1}
    assert node_exporter_problems(text) == []


def test_families_come_in_one_order_whatever_the_rounds_order():
    reordered = CheckedRound(ROUND.thing_name, ROUND.report_id, ROUND.timestamp_ms,
                             dict(reversed(list(ROUND.values.items()))), ROUND.custom)
    assert render(reordered, HEALTH, CUSTOM) == render(ROUND, HEALTH, CUSTOM)
    names = [line.split()[2] for line in render(ROUND, HEALTH, {}).splitlines() if line.startswith("# TYPE")]
    metrics = names[: len(ROUND.values)]
    assert metrics == sorted(metrics)
    assert names[len(ROUND.values):] == list(textfile.HEALTH_FAMILIES)


def test_a_metric_whose_name_is_taken_is_left_out():
    clashing = CheckedRound("gw-1", 1, 1000, {
        "collector_success": {"number": 5},  # a health family's name
        "cpu-usage": {"number": 1},
        "cpu_usage": {"number": 2},
    })
    text = render(clashing, HEALTH, {})
    assert node_exporter_problems(text) == []
    assert values_of(text, "defender_agent_cpu_usage") == {(): 1}
    assert values_of(text, "defender_agent_collector_success") == {
        (("collector", "system"),): 1, (("collector", "modem"),): 0
    }


def test_a_value_that_does_not_fit_its_kind_is_an_error():
    for value in ({"ports": ["22"]}, {"strings": [1]}, {"numbers": 3}, {"bogus": 1}, {"count": "3"}, {}):
        with pytest.raises(ValueError, match="x"):
            render(CheckedRound("gw-1", 1, 1000, {"x": value}), Health(), {})


@pytest.mark.parametrize(
    ("cloud", "prom"),
    [
        ("cpu_usage", "defender_agent_cpu_usage"),
        ("aws:listening-tcp-ports", "defender_agent_aws_listening_tcp_ports"),
        ("aws:num-established-tcp-connections", "defender_agent_aws_num_established_tcp_connections"),
        ("modem:signal-dbm", "defender_agent_modem_signal_dbm"),
        ("9lives", "defender_agent_9lives"),
        ("CPU", "defender_agent_CPU"),
    ],
)
def test_metric_names(cloud, prom):
    assert metric_name(cloud) == prom
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", prom)


def test_every_device_metric_has_its_own_name():
    assert name_clashes(DEVICE_METRICS) == []
    assert len({metric_name(n) for n in DEVICE_METRICS}) == len(DEVICE_METRICS)


@pytest.mark.parametrize(
    ("names", "clashes"),
    [
        (["cpu-usage", "cpu_usage"], [("cpu-usage", "cpu_usage")]),
        (["a:b", "a-b", "a_b"], [("a:b", "a-b"), ("a:b", "a_b")]),
        (["cpu_usage", "CPU_usage", "cpu_usage"], []),
        (["collector_success"], [("defender_agent_collector_success", "collector_success")]),
        (["sink-delivered-total"], [("defender_agent_sink_delivered_total", "sink-delivered-total")]),
        (["sink_delivered"], [("defender_agent_sink_delivered", "sink_delivered")]),
        (["aws_listening-tcp-ports"], [("aws:listening-tcp-ports", "aws_listening-tcp-ports")]),
        (["aws:listening-tcp-ports", "listening_tcp_ports"], []),
    ],
)
def test_name_clashes(names, clashes):
    assert name_clashes(names) == clashes


def test_every_health_family_is_reserved():
    for name in textfile.HEALTH_FAMILIES:
        assert name_clashes([name[len(textfile.PREFIX):]]), name


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (0, "0"), (-71, "-71"), (12.5, "12.5"), (10.0, "10.0"), (1e-06, "1e-06"), (1e16, "1e+16"),
     (True, "1"), (False, "0"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)
def test_values_are_written_the_prometheus_way(value, text):
    assert format_value(value) == text
    parsed = next(iter(text_string_to_metric_families(f"x {text}\n"))).samples[0].value
    assert parsed == value or (math.isnan(parsed) and math.isnan(value))


def test_help_and_label_escaping():
    assert textfile.escape_help('a\\b\nc"d') == 'a\\\\b\\nc"d'
    assert textfile.escape_label('a\\b\nc"d') == 'a\\\\b\\nc\\"d'
    assert textfile.escape_label("bad\udcff") == "bad\\\\udcff"  # a lone surrogate cannot be UTF-8


# write_atomic


def hidden_leftovers(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_atomic_writes_the_whole_file_readable_by_node_exporter(tmp_path):
    target = tmp_path / "defender_agent.prom"
    old_umask = os.umask(0o077)
    try:
        write_atomic(target, "old\n")
        write_atomic(target, "# TYPE defender_agent_x gauge\ndefender_agent_x 1\n")
    finally:
        os.umask(old_umask)
    assert target.read_text(encoding="utf-8") == "# TYPE defender_agent_x gauge\ndefender_agent_x 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["defender_agent.prom"]


def test_the_temp_file_is_hidden_and_not_read_by_node_exporter(tmp_path, monkeypatch):
    seen: List[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        assert Path(src).parent == tmp_path
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_atomic(tmp_path / "defender_agent.prom", "x 1\n")
    (name,) = seen
    assert name.startswith(".defender_agent.prom.") and not name.endswith(".prom")


def test_the_file_is_synced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events: List[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "defender_agent.prom", "x 1\n")
    assert events == ["fsync file", "rename", "fsync directory"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "defender_agent.prom"
    write_atomic(target, "old\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(TextfileError) as caught:
        write_atomic(target, "new\n")
    assert str(caught.value) == f"Cannot write textfile '{target}': No space left on device"
    assert caught.value.errno == 28 and isinstance(caught.value.__cause__, OSError)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["defender_agent.prom"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 directory anyway")
def test_a_read_only_directory_is_a_typed_error(tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()
    directory.chmod(0o555)
    target = directory / "defender_agent.prom"
    try:
        with pytest.raises(TextfileError, match=re.escape(str(target))) as caught:
            write_atomic(target, "x 1\n")
        assert isinstance(caught.value, OSError) and "Permission denied" in str(caught.value)
        assert hidden_leftovers(directory) == [] and not target.exists()
    finally:
        directory.chmod(0o755)


def test_a_missing_directory_is_a_typed_error(tmp_path):
    target = tmp_path / "missing" / "defender_agent.prom"
    with pytest.raises(TextfileError, match=re.escape(str(target))) as caught:
        write_atomic(target, "x 1\n")
    assert "No such file or directory" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_path_that_is_a_directory_is_a_typed_error(tmp_path):
    target = tmp_path / "defender_agent.prom"
    target.mkdir()
    with pytest.raises(TextfileError, match=re.escape(str(target))) as caught:
        write_atomic(target, "x 1\n")
    assert caught.value.filename == str(target)
    assert target.is_dir() and hidden_leftovers(tmp_path) == []
