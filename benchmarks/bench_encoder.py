"""Encoder: validate + encode one report versus bare json.dumps / cbor2.dumps of the same final dict.

Two reports: a typical one (20 listening ports, 50 connections, 10 custom
metrics) and one at the size limit (as many connections as fit in 128 KiB for
that format and key style). Goal: the encoder costs at most 2x the bare dump.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import cbor2

from agent.catalog import MAX_PAYLOAD_BYTES
from agent.report.encode import Encoder
from agent.report.model import Connections, Report
from benchmarks import fixtures
from benchmarks.common import Figure, interleaved, log

GOAL = "validate + encode at most 2x the bare dump of the same dict"


def bare_dump(fmt: str) -> Any:
    if fmt == "cbor":
        return cbor2.dumps
    return lambda doc: json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _largest_fitting(fmt: str, key_names: str) -> Report:
    """The report with the most connections whose payload still fits under 128 KiB (no capping)."""
    low, high = 50, 6000
    best = None
    while low <= high:
        mid = (low + high) // 2
        report, catalog = fixtures.report(20, mid, 10)
        enc = Encoder(catalog, fmt=fmt, key_names=key_names, max_list_items=10_000, max_payload=10**9)
        size = len(enc.encode(report).payload)
        if size <= MAX_PAYLOAD_BYTES:
            best, low = report, mid + 1
        else:
            high = mid - 1
    assert best is not None
    return best


def run(quick: bool = False) -> Dict[str, Any]:
    figures: List[Figure] = []
    rows = []
    for case in ("typical", "size_limit"):
        for fmt in ("json", "cbor"):
            for key_names in ("long", "short"):
                if case == "typical":
                    report, catalog = fixtures.report(**fixtures.TYPICAL)
                    number, repeats = (50, 5) if quick else (300, 11)
                else:
                    report = _largest_fitting(fmt, key_names)
                    _, catalog = fixtures.report(20, 1, 10)
                    number, repeats = (2, 3) if quick else (10, 9)
                encoder = Encoder(catalog, fmt=fmt, key_names=key_names, max_list_items=10_000)
                encoded = encoder.encode(report)
                assert not encoded.capped and not encoded.dropped, (encoded.capped, encoded.dropped)
                document = encoded.document
                dump = bare_dump(fmt)
                dump_name = "cbor2.dumps" if fmt == "cbor" else "json.dumps"
                assert dump(document) == encoded.payload, "the baseline must produce the same bytes"
                timing = interleaved(
                    {
                        "encoder": lambda e=encoder, r=report: e.encode(r),
                        "bare": lambda d=document, f=dump: f(d),
                    },
                    number=number,
                    repeats=repeats,
                )
                conns = report.standard["tcp_connections"]
                assert isinstance(conns, Connections)
                label = f"{case} {fmt} {key_names}"
                log(
                    f"  encoder {label}: {timing['encoder']['median'] * 1e6:.0f} us"
                    f" vs bare {timing['bare']['median'] * 1e6:.0f} us"
                )
                figures.append(
                    Figure(
                        name=f"encode {label}",
                        unit="s",
                        value=timing["encoder"]["median"],
                        baseline=timing["bare"]["median"],
                        baseline_name=f"bare {dump_name} of the same dict",
                        goal=GOAL,
                        limit=2.0,
                        extra={
                            "payload_bytes": len(encoded.payload),
                            "connections": len(conns.connections),
                            "min_encoder": timing["encoder"]["min"],
                            "min_bare": timing["bare"]["min"],
                            "calls_per_round": number,
                            "rounds": repeats,
                        },
                    )
                )
                rows.append(
                    {"case": case, "format": fmt, "key_names": key_names, "bytes": len(encoded.payload)}
                )
    return {"figures": figures, "extra": {"payload_sizes": rows}}
