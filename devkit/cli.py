"""`python -m devkit`: the developer commands (the demo, the local AWS emulator), run from a checkout.

They live outside the ``agent`` package so that neither the wheel nor the .deb carries them; errors
map to exit codes through :func:`agent.cli.run`'s handlers, as the agent's own commands do.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from agent import __version__
from agent.cli import Command, add_commands, dispatch, setup_logging

COMMANDS = (
    Command("demo", "demo",
            "demo with no AWS account: throwaway CA, private mosquitto (mTLS), local Device Defender, N reports "
            "(needs boto3)"),
    Command("emulator", "emulator",
            "run a local AWS IoT: reply to reports on a broker and serve the custom-metric API (needs boto3)"),
)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devkit",
        description="defender-agent's developer commands (source tree only; not installed on a gateway).")
    parser.add_argument("--version", action="version", version=f"defender-agent {__version__}")
    add_commands(parser, COMMANDS, "devkit.commands", argv)
    return parser


def run(argv: List[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    setup_logging("info")
    return dispatch(args)


def main(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run(list(argv) if argv is not None else sys.argv[1:]))
