"""The `per-metric` document: one message per numeric metric per round, lists as their item count, CloudWatch units."""

from __future__ import annotations

import json
from typing import Dict

import botocore.session

from agent.catalog import BUILTIN_METRICS, DEVICE_METRICS, HEALTH_METRICS, MetricType
from agent.config.model import CustomMetricConfig
from agent.report.cloud import CheckedRound, checked_round
from agent.report.encode import Encoder
from agent.report.model import Connection, Connections, ListeningPort, ListeningPorts, NetworkStats, Report
from agent.sinks.per_metric import (
    STANDARD_UNITS,
    encode_per_metric,
    metric_units,
    per_metric_documents,
    standard_unit,
)
from agent.sinks.topics import metric_level_problem

TYPES: Dict[str, MetricType] = {
    "cpu_usage": MetricType.NUMBER,
    "load_average": MetricType.NUMBER_LIST,
    "logged_in_users": MetricType.STRING_LIST,
    "mesh_peers": MetricType.IP_ADDRESS_LIST,
    "temperature": MetricType.NUMBER,
    "absent_today": MetricType.NUMBER,
}
UNITS = {"cpu_usage": "percent", "load_average": "processes", "logged_in_users": "names", "mesh_peers": None,
         "temperature": "celsius", "absent_today": "seconds"}
DEFS = {name: CustomMetricConfig(type=t, name=name, unit=UNITS[name]) for name, t in TYPES.items()}


def report(ports: int = 2) -> Report:
    return Report(
        report_id=1764590400,
        standard={
            "listening_tcp_ports": ListeningPorts(tuple(ListeningPort(p) for p in range(1000, 1000 + ports))),
            "listening_udp_ports": ListeningPorts((ListeningPort(53),)),
            "tcp_connections": Connections((Connection("192.0.2.10:443", 50612), Connection("192.0.2.10:8443", 50613),
                                            Connection("[2001:db8::1]:8883", 40000)), total=3),
            "network_stats": NetworkStats(bytes_in=5120, bytes_out=1234, packets_in=40, packets_out=31),
        },
        custom={"cpu_usage": 12.5, "load_average": (0.1, 0.2, 0.3), "logged_in_users": ("pi", "root"),
                "mesh_peers": ("10.0.0.2", "10.0.0.3", "10.0.0.4"), "temperature": 41.0},
    )


def checked(max_list_items: int = 500, ports: int = 2) -> CheckedRound:
    encoded = Encoder(DEFS, max_list_items=max_list_items).encode(report(ports))
    return checked_round("gw-1", encoded.document, encoded.report_id, 1764590400123, TYPES)


def by_metric(rnd: CheckedRound) -> Dict[str, Dict[str, object]]:
    units = metric_units({name: d.unit for name, d in DEFS.items()})
    return {str(doc["metric"]): doc for doc in per_metric_documents(rnd, units)}


def test_one_document_per_metric_with_numbers_as_they_are_and_lists_as_their_count() -> None:
    docs = by_metric(checked())
    assert {m: d["value"] for m, d in docs.items()} == {
        "aws:num-listening-tcp-ports": 2, "aws:num-listening-udp-ports": 1,  # the port lists go as these counts
        "aws:num-established-tcp-connections": 3,
        "aws:destination-ip-addresses": 2,  # distinct remote addresses of the three connections
        "aws:all-bytes-in": 5120, "aws:all-bytes-out": 1234, "aws:all-packets-in": 40, "aws:all-packets-out": 31,
        "cpu_usage": 12.5, "load_average": 3, "logged_in_users": 2, "mesh_peers": 3, "temperature": 41.0,
    }
    doc = docs["aws:all-bytes-out"]
    assert doc == {"thing_name": "gw-1", "report_id": 1764590400, "timestamp": 1764590400123,
                   "metric": "aws:all-bytes-out", "value": 1234, "unit": "Bytes"}
    assert list(doc) == ["thing_name", "report_id", "timestamp", "metric", "value", "unit"]


def test_a_metric_without_a_value_this_round_sends_nothing() -> None:
    docs = by_metric(checked())
    assert "absent_today" not in docs, "declared, but no collector gave it a value this round"
    rnd = checked()
    without_network = CheckedRound(rnd.thing_name, rnd.report_id, rnd.timestamp_ms,
                                   {k: v for k, v in rnd.values.items() if "bytes" not in k and "packets" not in k},
                                   rnd.custom)
    assert not any("bytes" in m or "packets" in m for m in by_metric(without_network))


def test_a_port_list_goes_once_as_its_true_count_even_when_capped() -> None:
    rnd = checked(max_list_items=4, ports=9)
    assert len(rnd.values["aws:listening-tcp-ports"]["ports"]) == 4, "the encoder capped the list"
    docs = by_metric(rnd)
    assert docs["aws:num-listening-tcp-ports"]["value"] == 9
    assert "aws:listening-tcp-ports" not in docs, "the same number twice would be two CloudWatch metrics"
    alone = CheckedRound(rnd.thing_name, rnd.report_id, rnd.timestamp_ms,
                         {k: v for k, v in rnd.values.items() if k != "aws:num-listening-tcp-ports"}, rnd.custom)
    assert by_metric(alone)["aws:listening-tcp-ports"]["value"] == 4, "without its twin, the list as its count"


def test_units_are_cloudwatch_standard_units() -> None:
    docs = by_metric(checked())
    units = {m: d["unit"] for m, d in docs.items()}
    assert units["aws:all-bytes-in"] == "Bytes" and units["aws:all-packets-out"] == "Count"
    assert units["aws:num-established-tcp-connections"] == "Count" and units["aws:num-listening-tcp-ports"] == "Count"
    assert units["aws:destination-ip-addresses"] == "Count"
    assert units["cpu_usage"] == "Percent" and units["temperature"] == "None", "celsius has no StandardUnit"
    assert units["load_average"] == "Count" and units["mesh_peers"] == "Count", "a list goes as its count"
    assert standard_unit("seconds") == "Seconds" and standard_unit("Milliseconds") == "Milliseconds"
    assert standard_unit("bytes/second") == "Bytes/Second" and standard_unit(None) == "None"
    assert standard_unit("furlongs") == "None"


def test_every_unit_the_agent_can_send_is_in_cloudwatchs_standard_unit_enum() -> None:
    model = botocore.session.get_session().get_service_model("cloudwatch")
    assert list(STANDARD_UNITS) == model.shape_for("StandardUnit").enum
    catalog = {name: m.unit for metrics in BUILTIN_METRICS.values() for name, m in metrics.items()}
    catalog.update({name: m.unit for name, m in HEALTH_METRICS.items()})
    sent = set(metric_units(catalog).values())
    assert sent <= set(STANDARD_UNITS)
    assert metric_units(catalog)["uptime_seconds"] == "Seconds"
    assert metric_units(catalog)["memory_available_bytes"] == "Bytes"
    assert metric_units(catalog)["agent_outbox_pending"] == "Count"


def test_every_name_the_catalog_knows_is_a_topic_level_as_it_is() -> None:
    names = set(DEVICE_METRICS) | set(HEALTH_METRICS)
    names |= {name for metrics in BUILTIN_METRICS.values() for name in metrics}
    assert len(names) > 25
    assert [n for n in names if metric_level_problem(n) is not None] == []
    assert metric_level_problem("a/b") is not None and metric_level_problem("a+b") is not None
    assert metric_level_problem("a#") is not None and metric_level_problem("a\x00") is not None
    assert metric_level_problem("") is not None


def test_the_messages_are_compact_json_keyed_by_metric() -> None:
    units = metric_units({name: d.unit for name, d in DEFS.items()})
    messages = encode_per_metric(checked(), units)
    assert [m for m, _ in messages][:2] == ["aws:num-listening-tcp-ports", "aws:num-listening-udp-ports"]
    for metric, body in messages:
        assert b" " not in body and json.loads(body)["metric"] == metric
