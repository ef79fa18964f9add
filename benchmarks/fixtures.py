"""Deterministic reports for the encoder benchmark (and the faults campaign)."""

from __future__ import annotations

import random
from typing import Dict, Tuple

from agent.catalog import MetricType
from agent.config.model import CustomMetricConfig
from agent.report.model import (
    Connection,
    Connections,
    CustomValue,
    ListeningPort,
    ListeningPorts,
    NetworkStats,
    Report,
)

CUSTOM_TYPES = (
    MetricType.NUMBER,
    MetricType.NUMBER,
    MetricType.NUMBER,
    MetricType.NUMBER,
    MetricType.NUMBER_LIST,
    MetricType.NUMBER_LIST,
    MetricType.STRING_LIST,
    MetricType.STRING_LIST,
    MetricType.IP_ADDRESS_LIST,
    MetricType.IP_ADDRESS_LIST,
)


def custom_catalog(count: int) -> Dict[str, CustomMetricConfig]:
    out = {}
    for index in range(count):
        name = f"metric_{index:03d}"
        out[name] = CustomMetricConfig(type=CUSTOM_TYPES[index % len(CUSTOM_TYPES)], name=name)
    return out


def custom_values(catalog: Dict[str, CustomMetricConfig], rng: random.Random) -> Dict[str, CustomValue]:
    values: Dict[str, CustomValue] = {}
    for name, definition in catalog.items():
        if definition.type is MetricType.NUMBER:
            values[name] = round(rng.uniform(0, 100), 2)
        elif definition.type is MetricType.NUMBER_LIST:
            values[name] = tuple(round(rng.uniform(0, 100), 1) for _ in range(4))
        elif definition.type is MetricType.STRING_LIST:
            values[name] = ("sshd", "mosquitto", "defender-agent", "systemd-journald")
        else:
            values[name] = ("10.0.0.2", "192.168.1.10", "fd00::1")
    return values


def _connection(index: int) -> Connection:
    if index % 5 == 4:
        remote = f"[fd00::{index % 65535:x}]:{1024 + index % 60000}"
    else:
        remote = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}:{443 if index % 2 else 8883}"
    return Connection(remote_addr=remote, local_port=30000 + index % 30000, local_interface="eth0")


def report(
    ports: int, connections: int, custom: int, report_id: int = 1_700_000_000
) -> Tuple[Report, Dict[str, CustomMetricConfig]]:
    """A report with ``ports`` listening ports (two of them UDP), ``connections`` established ones,
    ``custom`` custom metrics."""
    rng = random.Random(ports * 1_000_003 + connections * 7 + custom)
    catalog = custom_catalog(custom)
    standard = {
        "listening_tcp_ports": ListeningPorts(
            tuple(
                ListeningPort(port=1000 + i * 7, interface="eth0" if i % 3 == 0 else None)
                for i in range(max(ports - 2, 0))
            )
        ),
        "listening_udp_ports": ListeningPorts(
            (ListeningPort(port=53), ListeningPort(port=123, interface="eth0"))
        ),
        "tcp_connections": Connections(tuple(_connection(i) for i in range(connections))),
        "network_stats": NetworkStats(bytes_in=123456, bytes_out=654321, packets_in=1200, packets_out=1400),
    }
    return Report(report_id, standard, custom_values(catalog, rng)), catalog


TYPICAL = {"ports": 20, "connections": 50, "custom": 10}
