"""Command-line entry point: parses arguments, runs one subcommand, maps errors to exit codes.

Each subcommand lives in ``agent.commands.<module>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
``run(args) -> int``. This is the only module that exits the process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional, Sequence

from agent import __version__
from agent.errors import EX_CONFIG, AgentError, ConfigError

# Order here is the order in --help.
COMMAND_MODULES = (
    "check",
    "validate",
    "sample_config",
    "once",
    "run",
    "status",
    "bootstrap",
    "values",
    "emulator",
    "demo",
)

EPILOG = """\
exit status: 0 success, 1 failure (e.g. invalid reports for `validate`),
2 usage error, 78 configuration error (EX_CONFIG; systemd does not restart on it).
config file: --config, else $DEFENDER_AGENT_CONFIG, else /etc/defender-agent/agent.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defender-agent",
        description="AWS IoT Device Defender agent: samples device metrics and sends checked reports over MQTT mTLS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"defender-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"agent.commands.{name}")
        module.register(sub)
    return parser


def setup_logging(level: str = "info") -> None:
    """Log to stderr, one line per event; journald adds time and unit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def main(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run(list(argv) if argv is not None else sys.argv[1:]))


def run(argv: List[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", None) or "info")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"defender-agent: configuration error ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
    except AgentError as exc:
        print(f"defender-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
