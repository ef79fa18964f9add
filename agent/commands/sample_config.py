"""`defender-agent sample-config`: print the example config generated from the schema."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.collectors.registry import default_registry
from agent.config.sample import render_example


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "sample-config",
        help="print an example config with every key documented",
        description="Print the example configuration generated from the schema "
        "(the same text as config/agent.example.yaml).",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render_example(default_registry()))
    return 0
