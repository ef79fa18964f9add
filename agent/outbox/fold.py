"""Fold the network deltas of superseded reports into the newest one (``delivery.backlog: fold``).

Pure functions over encoded payloads: decode, change ``network_stats`` and
(when asked) the report id, encode again in the same format and key style.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

from agent.catalog import key_map
from agent.report.document import decode, key_style
from agent.report.encode import serialize
from agent.report.model import NetworkStats

_FIELDS = ("bytes_in", "bytes_out", "packets_in", "packets_out")


def sum_network(values: Iterable[Optional[NetworkStats]]) -> Optional[NetworkStats]:
    total: Optional[NetworkStats] = None
    for value in values:
        if value is not None:
            total = value if total is None else total + value
    return total


def rewrite(payload: bytes, report_id: int, network: Optional[NetworkStats]) -> bytes:
    """``payload`` with header report id ``report_id`` and ``network_stats`` set to ``network`` (if given)."""
    document, fmt = decode(payload)
    if not isinstance(document, dict):
        raise ValueError("payload is not a report object")
    style = key_style(document) or "long"
    k = key_map(style)
    out: Dict[str, Any] = dict(document)
    header = dict(out.get(k["header"]) or {})
    header[k["report_id"]] = report_id
    out[k["header"]] = header
    if network is not None:
        metrics = dict(out.get(k["metrics"]) or {})
        metrics[k["network_stats"]] = {k[name]: getattr(network, name) for name in _FIELDS}
        out[k["metrics"]] = metrics
    return serialize(out, fmt)
