"""The flat document of a topic sink, pinned by a golden file, and the same values the service would store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

from agent.catalog import KeyNames, MetricType, PayloadFormat
from agent.config.model import CustomMetricConfig
from agent.report.cloud import checked_round
from agent.report.encode import Encoder
from agent.report.model import (
    Connection,
    Connections,
    ListeningPort,
    ListeningPorts,
    NetworkStats,
    Report,
)
from agent.sinks.flat import encode_flat, flat_document
from devkit.emulator.store import Store

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "sinks" / "flat.json"
TYPES: Dict[str, MetricType] = {
    "cpu_usage": MetricType.NUMBER,
    "load_average": MetricType.NUMBER_LIST,
    "logged_in_users": MetricType.STRING_LIST,
    "mesh_peers": MetricType.IP_ADDRESS_LIST,
    "too_long": MetricType.STRING_LIST,
}
DEFS = {name: CustomMetricConfig(type=t, name=name) for name, t in TYPES.items()}


def report() -> Report:
    return Report(
        report_id=1764590400,
        standard={
            "listening_tcp_ports": ListeningPorts((ListeningPort(22, "eth0"), ListeningPort(8883))),
            "listening_udp_ports": ListeningPorts((ListeningPort(53),)),
            "tcp_connections": Connections((Connection("192.0.2.10:443", 50612, "eth0"),
                                            Connection("[2001:db8::1]:8883", 40000, "wlan0"),
                                            Connection("192.0.2.10:8443", 50613, "eth0")), total=3),
            "network_stats": NetworkStats(bytes_in=5120, bytes_out=1234, packets_in=40, packets_out=31),
        },
        custom={"cpu_usage": 12.5, "load_average": (0.1, 0.2, 0.3), "logged_in_users": ("pi",),
                "mesh_peers": ("10.0.0.2", "10.0.0.3"), "too_long": tuple(f"u{i}" for i in range(600))},
    )


def test_flat_document_matches_the_golden_file_whatever_the_report_encoding() -> None:
    for fmt in PayloadFormat:
        for names in KeyNames:
            encoded = Encoder(DEFS, fmt=fmt, key_names=names).encode(report())
            checked = checked_round("gw-1", encoded.document, encoded.report_id, 1764590400123, TYPES)
            document = flat_document(checked)
            if os.environ.get("UPDATE_GOLDEN"):
                GOLDEN.write_text(json.dumps(document, indent=2) + "\n")
            assert document == json.loads(GOLDEN.read_text()), (fmt, names)
            assert json.loads(encode_flat(checked)) == document


def test_flat_values_are_what_the_service_stores_for_the_same_report() -> None:
    """The emulator's store follows ListMetricValues; the flat document must say the same per metric."""
    encoded = Encoder(DEFS).encode(report())
    store = Store()
    for name, mtype in TYPES.items():
        store.create_metric(name, mtype.value, None, (), "t")
    store.record_report("gw-1", encoded.document, 1000)
    flat = flat_document(checked_round("gw-1", encoded.document, encoded.report_id, 1000, TYPES))["metrics"]
    for metric, value in flat.items():
        (stored,) = store.metric_values("gw-1", metric, 0, 2000)
        ((_, inner),) = stored.value.items()
        assert inner == value, metric
    assert "too_long" not in flat, "a value the encoder dropped (over max_list_items) reaches no sink"


def test_the_shape_the_readme_documents() -> None:
    doc = json.loads(GOLDEN.read_text())
    assert list(doc) == ["thing_name", "report_id", "timestamp", "metrics"]
    metrics = doc["metrics"]
    assert metrics["aws:listening-tcp-ports"] == [22, 8883] and metrics["aws:num-listening-tcp-ports"] == 2
    assert metrics["aws:num-established-tcp-connections"] == 3
    assert metrics["aws:destination-ip-addresses"] == ["192.0.2.10", "2001:db8::1"]
    assert metrics["aws:all-bytes-out"] == 1234 and metrics["cpu_usage"] == 12.5
    assert metrics["load_average"] == [0.1, 0.2, 0.3]
    page = (Path(__file__).resolve().parents[2] / "docs" / "SINKS.md").read_text()
    assert '"aws:all-bytes-out"' in page and "cloudwatchMetric" in page, "docs/SINKS.md shows the shape and a rule"
