"""Long and short key names of the report document (SPEC.md, "Report document")."""

from __future__ import annotations

from typing import Dict, Mapping

LONG_TO_SHORT: Mapping[str, str] = {
    "header": "hed",
    "report_id": "rid",
    "version": "v",
    "metrics": "met",
    "custom_metrics": "cmet",
    "listening_tcp_ports": "tp",
    "listening_udp_ports": "up",
    "ports": "pts",
    "port": "pt",
    "interface": "if",
    "total": "t",
    "tcp_connections": "tc",
    "established_connections": "ec",
    "connections": "cs",
    "remote_addr": "rad",
    "local_port": "lp",
    "local_interface": "li",
    "network_stats": "ns",
    "bytes_in": "bi",
    "bytes_out": "bo",
    "packets_in": "pi",
    "packets_out": "po",
}
SHORT_TO_LONG: Mapping[str, str] = {short: long for long, short in LONG_TO_SHORT.items()}

REPORT_VERSION = "1.0"
MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT Core's MQTT payload limit


def key_map(key_names: str) -> Mapping[str, str]:
    """long name -> name used in the document, for ``key_names`` ``long`` or ``short``."""
    if key_names == "short":
        return LONG_TO_SHORT
    return _IDENTITY


_IDENTITY: Dict[str, str] = {k: k for k in LONG_TO_SHORT}
