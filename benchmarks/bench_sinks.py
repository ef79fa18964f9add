"""Sinks: what a round costs beyond the report, against encoding that report in the same run.

For the typical report (20 listening ports, 50 connections, 10 custom metrics): the checked round
(cloud values from the encoded document), the flat document's bytes and the textfile's text, all
three as the loop makes them each round. Goal: together at most the cost of the report's own
validate + encode (ratio <= 1), so a gateway with every sink pays at most twice a defender-only round.
"""

from __future__ import annotations

from typing import Any, Dict, List

from agent.report.cloud import checked_round
from agent.report.encode import Encoder
from agent.sinks.flat import encode_flat
from agent.sinks.health import CollectorHealth, Health, SinkHealth
from agent.sinks.textfile import render
from benchmarks import fixtures
from benchmarks.common import Figure, interleaved, log

GOAL = "checked round + flat document + textfile at most the report's own encode (ratio <= 1)"
HEALTH = Health(
    collectors=tuple(CollectorHealth(f"c{i}", i != 3, 0.01 * i) for i in range(6)),
    outbox_pending=2,
    seconds_since_accepted=300.0,
    sinks=(SinkHealth("defender", "defender", 10, 0, 0, 1), SinkHealth("topic", "topic", 10, 0, 0, 0),
           SinkHealth("textfile", "textfile", 10, 1, 0, 0)),
)


def run(quick: bool = False) -> Dict[str, Any]:
    report, catalog = fixtures.report(**fixtures.TYPICAL)
    types = {name: metric.type for name, metric in catalog.items()}
    encoder = Encoder(catalog)
    encoded = encoder.encode(report)
    assert not encoded.dropped, encoded.dropped

    def sinks() -> None:
        checked = checked_round("gw-1", encoded.document, encoded.report_id, 1_700_000_000_000, types)
        encode_flat(checked)
        render(checked, HEALTH, catalog)

    checked = checked_round("gw-1", encoded.document, encoded.report_id, 1_700_000_000_000, types)
    assert len(checked.values) >= 10 + 10, "every standard and custom value reaches the sinks"
    number, repeats = (50, 5) if quick else (300, 11)
    timing = interleaved({"sinks": sinks, "encode": lambda: encoder.encode(report)}, number=number,
                         repeats=repeats)
    log(f"  sinks {timing['sinks']['median'] * 1e6:.0f} us vs encode {timing['encode']['median'] * 1e6:.0f} us")
    figures: List[Figure] = [
        Figure(
            name="sinks per round (typical report)",
            unit="s",
            value=timing["sinks"]["median"],
            baseline=timing["encode"]["median"],
            baseline_name="validate + encode of the same report (json, long keys)",
            goal=GOAL,
            limit=1.0,
            extra={"flat_bytes": len(encode_flat(checked)), "textfile_bytes": len(render(checked, HEALTH, catalog)),
                   "values": len(checked.values), "calls_per_round": number, "rounds": repeats},
        )
    ]
    return {"figures": figures}
