"""`defender-agent once`: sample every collector once, build one report, print it, exit.

Needs no network, no AWS and no root. State files (network counters) are
read but never written, so a running service's next delta stays whole.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List

from agent.collectors.build import build_collectors
from agent.collectors.sampler import Sampler
from agent.commands.common import load_from_args
from agent.commands.options import add_config_argument
from agent.config.model import Config
from agent.report.builder import ReportBuilder
from agent.report.document import decode
from agent.report.encode import EncodedReport
from agent.report.model import Sample

LOG = logging.getLogger("agent.once")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Sample every configured collector once, build one report and write it: pretty JSON "
        "on a terminal, the raw payload (JSON or CBOR, as configured) into a pipe or --output FILE. "
        "Collectors that need two samples (network_stats) get a baseline first."
    )
    add_config_argument(parser)
    parser.add_argument("--output", "-o", metavar="FILE", help="write the raw report payload to FILE")
    parser.add_argument(
        "--baseline",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="pause between the baseline and the real sample for collectors that report deltas (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    encoded = sample_once(config, args.baseline)
    if args.output:
        Path(args.output).write_bytes(encoded.payload)
        print(f"Wrote report {encoded.report_id} ({encoded.format}, {len(encoded.payload)} bytes) to {args.output}",
              file=sys.stderr)
    elif sys.stdout.isatty():
        document, _ = decode(encoded.payload)
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.buffer.write(encoded.payload)
        sys.stdout.buffer.flush()
    return 0


def sample_once(config: Config, baseline: float) -> EncodedReport:
    """Every collector sampled once (after a baseline where a delta needs one), built into a checked report.

    State files are read, never written: a running service's next delta stays whole."""
    jobs = build_collectors(config, persist_state=False)
    sampler = Sampler(jobs, config.report.interval, config.custom_metrics)
    try:
        samples = _sample(sampler, baseline)
    finally:
        sampler.close()
    return ReportBuilder(config, logging.getLogger("agent.report")).build(int(time.time()), samples)


def _sample(sampler: Sampler, baseline: float) -> List[Sample]:
    first = sampler.sample_all()
    if not first.no_data:
        return list(first.samples)
    LOG.info("Taking a %.1f s baseline for %s", baseline, ", ".join(sorted(first.no_data)))
    time.sleep(max(0.0, baseline))
    # The collectors that had data keep their first sample: a second one of a collector that counts since its
    # previous sample (logins, file_integrity, packages) would be empty.
    kept = {s.name for s in first.samples}
    return list(first.samples) + [s for s in sampler.sample_all().samples if s.name not in kept]
