"""`sinks:` and `health_metrics:` in agent.yaml: the topic rules of AWS IoT, the textfile's, and when mqtt may go.

The topic vectors are AWS IoT Core's documented limits ("AWS IoT Core message broker and protocol
limits and quotas": a topic name is at most 256 bytes of UTF-8 and has at most 7 forward slashes;
"Reserved topics": names starting with `$` are reserved; "Basic Ingest": `$aws/rules/RULE_NAME/`
goes to a rule and does not count towards the slashes).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.catalog import HEALTH_METRICS, MetricType
from agent.config.load import parse_config
from agent.config.model import DEFAULT_SINKS, HealthMetrics, SinkType, TopicDocument
from agent.errors import ConfigError
from agent.sinks.topics import topic_problem
from tests.procs import plain_env

MQTT = """\
mqtt:
  endpoint: 127.0.0.1
  cert: /tmp/c.pem
  key: /tmp/k.pem
  ca: /tmp/ca.pem
"""
BASE = "thing_name: gw-1\n" + MQTT
REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.yaml")
    return [str(p) for p in info.value.problems]


def sinks_yaml(*entries: str) -> str:
    return "sinks:\n" + "".join(f"  - {e}\n" for e in entries)


def test_no_sinks_key_means_the_defender_sink_alone() -> None:
    config = parse_config(BASE)
    assert config.sinks == DEFAULT_SINKS and config.defender is not None and config.needs_broker


def test_three_sinks_from_one_config() -> None:
    config = parse_config(BASE + sinks_yaml(
        "type: defender", "{type: topic, topic: 'dt/gateways/{thing_name}/metrics'}",
        "{type: topic, name: ingest, topic: '$aws/rules/gw_metrics/{thing_name}', document: report}",
        "{type: textfile, path: /var/lib/node_exporter/textfile_collector/defender_agent.prom}"))
    kinds = [(s.type, s.name) for s in config.sinks]
    assert kinds == [(SinkType.DEFENDER, "defender"), (SinkType.TOPIC, "topic"), (SinkType.TOPIC, "ingest"),
                     (SinkType.TEXTFILE, "textfile")]
    assert config.sinks[1].document is TopicDocument.FLAT and config.sinks[2].document is TopicDocument.REPORT
    assert config.sinks[1].max_pending == 1000


@pytest.mark.parametrize("topic", [
    "dt/gateways/{thing_name}/metrics",
    "a/b/c/d/e/f/g/h",  # 7 slashes: the limit
    "$aws/rules/my_rule/a/b/c/d/e/f/g/h",  # Basic Ingest: the prefix does not count
    "$aws/rules/R/{thing_name}",
    "x" * 128,  # with the 128-character thing name nowhere, 128 bytes
])
def test_topics_aws_iot_accepts(topic: str) -> None:
    assert topic_problem(topic) is None
    parse_config(BASE + sinks_yaml(f"{{type: topic, topic: '{topic}'}}"))


@pytest.mark.parametrize(("topic", "why"), [
    ("a/b/c/d/e/f/g/h/i", "8 forward slashes; AWS IoT allows at most 7"),
    ("$aws/rules/my_rule/a/b/c/d/e/f/g/h/i", "8 forward slashes after the $aws/rules/RULE_NAME/ prefix"),
    ("dt/+/metrics", "wildcards"),
    ("dt/#", "wildcards"),
    ("$aws/things/{thing_name}/shadow/update", "reserved"),
    ("$SYS/broker", "reserved"),
    ("$aws/rules/bad-name/x", "reserved"),  # a rule name has no dash
    ("$aws/rules/r/", "needs a topic after"),
    ("t/{thing}/x", "only placeholder is {thing_name}"),
    ("/", "must name a topic"),
    ("y" * 129 + "/{thing_name}", "bytes of UTF-8 with a 128-character thing name; AWS IoT allows at most 256"),
    ("é" * 100, "bytes of UTF-8"),  # 200 bytes + 0 = fine? no: 100 characters of 2 bytes = 200 ... see below
])
def test_topics_aws_iot_refuses_name_the_key(topic: str, why: str) -> None:
    if topic == "é" * 100:  # 200 bytes: allowed; 129 of them (258 bytes): refused
        assert topic_problem(topic) is None
        topic = "é" * 129
    found = problems(BASE + sinks_yaml("type: defender", f"{{type: topic, topic: '{topic}'}}"))
    assert len(found) == 1 and found[0].startswith("agent.yaml:") and "sinks[1].topic" in found[0], found
    assert why in found[0]


def test_sink_problems_each_with_path() -> None:
    found = problems(BASE + sinks_yaml(
        "type: defender", "{type: defender, name: dd}", "{type: topic}", "{type: textfile, path: /tmp/metrics.txt}",
        "{type: topic, topic: t, name: textfile}", "{type: textfile, path: /tmp/a.prom}", "{type: kafka}",
        "{type: topic, topic: t2, documnet: flat}"))
    text = "\n".join(found)
    assert "sinks[1]: only one defender sink" in text
    assert "sinks[2].topic: required key is missing" in text
    assert "sinks[3].path: '/tmp/metrics.txt' must end in .prom" in text
    assert "sinks[4].name: duplicate sink name 'textfile' (also sinks[3])" in text
    assert re.search(r"sinks\[6\]\.type: expected one of defender, topic, textfile, got 'kafka'", text)
    assert 'sinks[7].documnet: unknown key (did you mean "document"?)' in text


def test_mqtt_may_go_only_when_every_sink_is_a_textfile() -> None:
    local = parse_config("thing_name: gw-1\nreport: {interval: 10s}\n" + sinks_yaml("{type: textfile, path: /t/a.prom}"))
    assert local.mqtt is None and not local.needs_broker and local.defender is None
    found = problems("thing_name: gw-1\n" + sinks_yaml("{type: textfile, path: /t/a.prom}", "{type: topic, topic: t}"))
    assert found == ["agent.yaml:1: mqtt: required key is missing: sink(s) topic publish over MQTT "
                     "(only a config whose sinks are all textfile may leave mqtt out)"]
    assert any("mqtt: required key" in p for p in problems("thing_name: gw-1\n"))


def test_the_five_minute_floor_is_device_defenders_only() -> None:
    remote = BASE.replace("127.0.0.1", "example-ats.iot.eu-west-1.amazonaws.com") + "report: {interval: 60s}\n"
    assert any("report.interval" in p for p in problems(remote))
    assert any("report.interval" in p for p in problems(remote + sinks_yaml("type: defender", "{type: topic, topic: t}")))
    parse_config(remote + sinks_yaml("{type: topic, topic: t}"))  # a topic of your own has no such throttle


def test_health_metrics_declares_the_agent_metrics_with_their_catalog_types() -> None:
    config = parse_config(BASE + "health_metrics: custom_metrics\n")
    assert config.health_metrics is HealthMetrics.CUSTOM_METRICS
    for name, builtin in HEALTH_METRICS.items():
        assert config.custom_metrics[name].type is builtin.type and config.custom_metrics[name].unit == builtin.unit
    assert parse_config(BASE).custom_metrics == {}
    found = problems(BASE + "health_metrics: custom_metrics\ncustom_metrics: {agent_outbox_pending: string-list}\n")
    assert found == ["agent.yaml:8: custom_metrics.agent_outbox_pending.type: is string-list, but health_metrics "
                     "sends it as a number"]
    assert MetricType.STRING_LIST is HEALTH_METRICS["agent_failing_collectors"].type


def test_textfile_refuses_two_metrics_with_one_prometheus_name() -> None:
    found = problems(BASE + "custom_metrics: {cpu-usage: number, cpu_usage: number}\n"
                     + sinks_yaml("type: defender", "{type: textfile, path: /t/a.prom}"))
    assert len(found) == 1 and "sinks[1].path" in found[0] and "'cpu-usage'" in found[0] and "'cpu_usage'" in found[0]
    parse_config(BASE + "custom_metrics: {cpu-usage: number, cpu_usage: number}\n")  # fine without a textfile


@pytest.mark.parametrize("path", ["out.prom", "./out.prom", "textfile/out.prom", "~/out.prom", "../out.prom"])
def test_a_relative_textfile_path_is_refused(path: str) -> None:
    """`run` would write it into whatever directory it was started from (systemd: /)."""
    found = problems(BASE + sinks_yaml("type: defender", f"{{type: textfile, path: '{path}'}}"))
    assert found == [f"agent.yaml:9: sinks[1].path: {path!r} must be an absolute path"]


def test_two_textfile_sinks_on_one_path_are_refused_naming_both() -> None:
    found = problems(BASE + sinks_yaml(
        "{type: textfile, path: /t/a.prom}", "{type: textfile, name: b, path: /t/b.prom}",
        "{type: textfile, name: c, path: /t/a.prom}", "{type: textfile, name: d, path: '/t//./b.prom'}"))
    assert found == [
        "agent.yaml:10: sinks[2].path: '/t/a.prom' is also the path of sinks[0].path; "
        "two textfile sinks would overwrite each other's file",
        "agent.yaml:11: sinks[3].path: '/t//./b.prom' is also the path of sinks[1].path; "
        "two textfile sinks would overwrite each other's file",
    ]
    config = parse_config(BASE + sinks_yaml("{type: textfile, path: /t/a.prom}",
                                            "{type: textfile, name: b, path: /u/a.prom}"))
    assert [str(s.path) for s in config.sinks] == ["/t/a.prom", "/u/a.prom"]  # one name in two directories


def commented_block(key: str) -> str:
    """The example config's commented-out ``key:`` block, uncommented (up to the next top-level comment)."""
    text = (REPO / "config" / "agent.example.yaml").read_text()
    _, _, rest = text.partition(f"# {key}:\n")
    assert rest, f"the example config shows {key}"
    lines = [f"{key}:"]
    for line in rest.splitlines():
        if not line.startswith("#   ") and not line.startswith("#    "):
            break
        lines.append(line[2:])
    return "\n".join(lines) + "\n"


def test_the_example_configs_commented_sinks_load_when_uncommented() -> None:
    uncommented = commented_block("sinks")
    sinks = yaml.safe_load(uncommented)["sinks"]
    assert [s["type"] for s in sinks] == ["defender", "topic", "textfile"]
    config = parse_config(BASE + uncommented)
    assert [s.type.value for s in config.sinks] == ["defender", "topic", "textfile"]


def test_the_example_configs_commented_behaviors_load_when_uncommented() -> None:
    metrics = ("custom_metrics: {cpu_usage: number, auth_failures: number, files_changed: number, "
               "kernel_modules: string-list, uid0_accounts: string-list}\n")
    config = parse_config(BASE + metrics + commented_block("behaviors"))
    assert [b.name for b in config.behaviors] == ["OnlyKnownPorts", "CpuNotHot", "FewAuthFailures",
                                                  "SystemFilesUnchanged", "KnownKernelModules", "OnlyRootIsUid0"]
    assert config.behaviors[1].criteria.consecutive_to_clear == 2


def test_check_exits_78_naming_the_topic_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + sinks_yaml("{type: topic, topic: 'dt/+/x'}"))
    path.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(path)], capture_output=True,
                          text=True, env=plain_env(), cwd=REPO, check=False, timeout=60)
    assert done.returncode == 78, done.stderr
    assert f"{path}:8: sinks[0].topic: 'dt/+/x' must not contain the MQTT wildcards" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_violation_events_queue_name_is_not_a_sink_name() -> None:
    found = problems(BASE + sinks_yaml("type: defender", "{type: topic, name: violations, topic: t}"))
    assert found == ["agent.yaml:9: sinks[1].name: 'violations' is the outbox queue of the violation events; "
                     "give the sink another name"]


# --- document: per-metric (one message per metric, on a topic with {metric}) ---

PER_METRIC_COLLECTORS = """\
collectors:
  - {type: network_stats}
  - {type: tcp_connections}
custom_metrics:
  cpu_usage: number
"""


def per_metric(topic: str, extra: str = PER_METRIC_COLLECTORS) -> str:
    return BASE + extra + sinks_yaml(f"{{type: topic, topic: '{topic}', document: per-metric}}")


def test_a_per_metric_sink_with_its_metric_placeholder_and_basic_ingest() -> None:
    config = parse_config(per_metric("dt/gateways/{thing_name}/metric/{metric}"))
    assert config.sinks[0].document is TopicDocument.PER_METRIC
    ingest = parse_config(per_metric("$aws/rules/gateway_metrics/dt/gateways/{thing_name}/metric/{metric}"))
    assert ingest.sinks[0].topic == "$aws/rules/gateway_metrics/dt/gateways/{thing_name}/metric/{metric}"


def test_a_per_metric_topic_without_the_metric_placeholder_is_refused() -> None:
    found = problems(per_metric("dt/gateways/{thing_name}/metrics"))
    assert len(found) == 1 and "sinks[0].topic" in found[0] and "needs the {metric} placeholder" in found[0], found


@pytest.mark.parametrize("document", ["flat", "report"])
def test_the_metric_placeholder_in_a_flat_or_report_sink_is_refused(document: str) -> None:
    found = problems(BASE + sinks_yaml("type: defender",
                                       f"{{type: topic, topic: 'dt/{{thing_name}}/{{metric}}', document: {document}}}"))
    assert len(found) == 1 and "sinks[1].topic" in found[0] and "only a topic sink with `document: per-metric`" \
        in found[0], found


def test_the_metric_placeholder_in_the_violations_topic_is_refused() -> None:
    assert "document: per-metric" in (topic_problem("events/{thing_name}/{metric}") or "")


def test_a_per_metric_topic_too_long_with_the_longest_metric_names_it() -> None:
    # 128 (thing) + 35 ("aws:num-established-tcp-connections") + 93 = 256: the limit, accepted
    prefix = "p" * 91
    parse_config(per_metric(prefix + "/{thing_name}/{metric}"))
    found = problems(per_metric(prefix + "x/{thing_name}/{metric}"))
    assert len(found) == 1 and "sinks[0].topic" in found[0], found
    assert "257 bytes" in found[0] and "'aws:num-established-tcp-connections'" in found[0], found
    # the same topic fits when the config sends only shorter names
    parse_config(per_metric(prefix + "x/{thing_name}/{metric}", "custom_metrics:\n  cpu_usage: number\n"))


def test_a_long_custom_metric_name_is_the_longest() -> None:
    long_name = "m" * 120
    found = problems(per_metric("p" * 8 + "/{thing_name}/{metric}", f"custom_metrics:\n  {long_name}: number\n"))
    assert len(found) == 1 and f"'{long_name}'" in found[0] and "258 bytes" in found[0], found


def test_the_health_metrics_count_among_the_names_a_per_metric_sink_sends() -> None:
    longest = max(HEALTH_METRICS, key=len)
    size = 256 - 128 - len(longest) - 2 + 1  # one byte over with that name
    text = per_metric("q" * size + "/{thing_name}/{metric}", "")  # no collectors, no custom metrics: fits
    parse_config(text)
    found = problems(text.replace("thing_name: gw-1\n", "thing_name: gw-1\nhealth_metrics: custom_metrics\n"))
    assert len(found) == 1 and f"'{longest}'" in found[0], found
