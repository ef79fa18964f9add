"""Loading golden report cases from tests/fixtures/report/<case>/samples.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from agent.catalog import MetricType
from agent.config.model import CustomMetricConfig
from agent.report.encode import Encoder
from agent.report.model import (
    Connection,
    Connections,
    ListeningPort,
    ListeningPorts,
    NetworkStats,
    Report,
    StandardValue,
)

CASES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "report"


def case_names() -> List[str]:
    return sorted(p.name for p in CASES_DIR.iterdir() if (p / "samples.yaml").exists())


def _standard(name: str, body: Dict[str, Any]) -> StandardValue:
    if name == "tcp_connections":
        conns = tuple(Connection(**c) for c in body["connections"])
        return Connections(conns, body.get("total"))
    if name == "network_stats":
        return NetworkStats(**body)
    return ListeningPorts(tuple(ListeningPort(**p) for p in body["ports"]), body.get("total"))


def load_case(name: str) -> Tuple[Report, Encoder, Dict[str, Any]]:
    spec = yaml.safe_load((CASES_DIR / name / "samples.yaml").read_text())
    metrics = {
        metric: CustomMetricConfig(type=MetricType(mtype), name=metric)
        for metric, mtype in (spec.get("custom_metrics") or {}).items()
    }
    custom = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("custom") or {}).items()}
    standard = {k: _standard(k, v) for k, v in (spec.get("standard") or {}).items()}
    report = Report(spec["report_id"], standard, custom)
    encoders = {
        fmt: Encoder(metrics, fmt, spec["key_names"], spec.get("max_list_items", 500)) for fmt in ("json", "cbor")
    }
    return report, encoders["json"], {"spec": spec, "cbor": encoders["cbor"]}
