"""`defender-agent status`: what the agent has done, read from its state directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from agent.commands.options import add_config_argument
from agent.config.source import config_path, read_config_text, state_dir_of
from agent.config.yamlsrc import read_yaml
from agent.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Read the agent's state directory and print the last report id and time, counts by outcome, "
        "pending reports, the last rejection reasons and per-collector success, failure and duration."
    )
    add_config_argument(parser)
    parser.add_argument("--state-dir", metavar="DIR", help="read this state directory instead of the config's")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def run(args: argparse.Namespace) -> int:
    from agent.commands.status_view import format_status, read_status  # the outbox's SQLite, not for --help

    # Only state_dir is read from the config: status answers while a bad edit waits for `check`.
    state_dir = Path(args.state_dir) if args.state_dir else state_dir_of(config_path(args.config))
    status = read_status(state_dir)
    status["remote_config"] = remote_config_on(config_path(args.config))
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status))
    return 0


def remote_config_on(path: str) -> Optional[bool]:
    """agent.yaml's ``shadow.remote_config`` (whether the stored remote keys apply); None when unreadable."""
    try:
        raw, _ = read_yaml(read_config_text(path), path)
    except ConfigError:
        return None
    shadow = raw.get("shadow") if isinstance(raw, dict) else None
    return isinstance(shadow, dict) and shadow.get("remote_config") is True
