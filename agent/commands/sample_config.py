"""`defender-agent sample-config`: print the example config generated from the schema."""

from __future__ import annotations

import argparse
import sys

from agent.collectors.builtin import default_registry
from agent.config.sample import render_example


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the example configuration generated from the schema "
        "(the same text as config/agent.example.yaml)."
    )


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render_example(default_registry()))
    return 0
