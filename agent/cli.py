"""Command-line entry point: parses arguments, runs one subcommand, maps errors to exit codes.

The command table below names every subcommand with its one-line summary.
Only the module of the command being run is imported: ``agent.commands.<module>``
exposes ``configure(parser)``, which adds its arguments, and ``run(args) -> int``.
So ``--help`` and ``check`` never load what ``bootstrap`` needs
(boto3, botocore), and a command whose optional dependency is missing fails
alone, with one line naming the extra to install. This is the only module that
exits the process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

from agent import __version__
from agent.errors import EX_CONFIG, EX_IOERR, EX_SOFTWARE, AgentError, ConfigError, StateDirError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    summary: str


# Order here is the order in --help.
COMMANDS = (
    Command("check", "check",
            "validate the config file and the certificate, key and CA it names (without connecting)"),
    Command("validate", "validate",
            "check report files (JSON or CBOR, long or short keys) against the service's rules"),
    Command("sample-config", "sample_config", "print an example config with every key documented"),
    Command("config", "config",
            "print the effective config: agent.yaml with the remote keys from the shadow, and where each came from"),
    Command("once", "once", "sample every collector once and print one report (no network, no AWS, no root)"),
    Command("run", "run",
            "run the agent: sample on schedule and deliver reports over MQTT mTLS (the systemd service)"),
    Command("status", "status",
            "show the reports' outcomes and pending ones, each sink's counts, the behaviors in alarm and "
            "collector health (reads state_dir; no broker needed)"),
    Command("bootstrap", "bootstrap",
            "create or update the custom metric definitions in AWS IoT (needs the bootstrap extra: boto3)"),
    Command("values", "values",
            "show the metric values AWS IoT stored for a thing (needs the bootstrap extra: boto3)"),
    Command("behaviors", "behaviors",
            "security-profile behaviors on the device: `pull` a profile's into the config (needs the bootstrap "
            "extra: boto3), `test` the config's on one fresh sample"),
)

EPILOG = """\
exit status: 0 success, 1 failure (e.g. invalid reports for `validate`),
2 usage error, 78 configuration error (EX_CONFIG; systemd does not restart on it).
config file: --config, else $DEFENDER_AGENT_CONFIG, else /etc/defender-agent/agent.yaml
"""


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` (if any) is imported and given its arguments."""
    parser = argparse.ArgumentParser(
        prog="defender-agent",
        description="AWS IoT Device Defender agent: samples device metrics and sends checked reports over MQTT mTLS.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"defender-agent {__version__}")
    add_commands(parser, COMMANDS, "agent.commands", argv)
    return parser


def add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], package: str,
                 argv: Sequence[str]) -> None:
    """One subparser per command; only the module of the command named in ``argv`` is imported."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for command in commands:
        child = sub.add_parser(command.name, help=command.summary, description=command.summary + ".")
        if command.name == chosen:
            module = importlib.import_module(f"{package}.{command.module}")
            module.configure(child)
            child.set_defaults(func=module.run)


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
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", None) or "info")
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; every error becomes one line on stderr and an exit status."""
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"defender-agent: configuration error ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EX_CONFIG
    except StateDirError as exc:
        print(f"defender-agent: {exc}", file=sys.stderr)
        return EX_IOERR
    except AgentError as exc:
        print(f"defender-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or directory the command needs (state_dir, an output file); sqlite3's are below
        print(f"defender-agent: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return EX_IOERR
    except Exception as exc:  # a library error no layer expected: one line for the journal, the traceback at debug
        logging.getLogger("agent").debug("Unexpected error", exc_info=True)
        kind = type(exc)
        where = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
        print(f"defender-agent: unexpected error: {where}{kind.__name__}: {exc} (log_level: debug shows the "
              f"traceback)", file=sys.stderr)
        return EX_SOFTWARE
