"""`defender-agent config --effective`: agent.yaml with the remote keys in effect, and where each came from."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any, Dict, List

from agent.commands.options import add_config_argument
from agent.remote.view import remote_lines

if TYPE_CHECKING:  # the loader and the collectors are imported when the command runs, not for --help
    from agent.remote.engine import Effective


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the config the agent runs: agent.yaml with the remote keys of the shadow's desired state laid "
        "over it (with shadow.remote_config: true; the keys last applied, as stored in state_dir). Each remote "
        "key is listed in the header with the shadow version that set it and agent.yaml's own value."
    )
    add_config_argument(parser)
    parser.add_argument("--effective", action="store_true", required=True,
                        help="print the merged config (the only mode so far)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines (config, remote keys, refused)")


def run(args: argparse.Namespace) -> int:
    import yaml

    from agent.commands.common import load_audited
    from agent.remote.engine import Remote

    base = load_audited(args)
    view = Remote(base.state_dir, logging.getLogger("agent.remote")).effective(base)
    if args.json:
        print(json.dumps(as_json(view), indent=2, sort_keys=True, default=str))
        return 0
    print("\n".join(f"# {line}" if line else "#" for line in header(view)))
    print(yaml.safe_dump(view.mapping, sort_keys=False, allow_unicode=True, default_flow_style=False), end="")
    return 0


def as_json(view: Effective) -> Dict[str, Any]:
    return {
        "source": view.source,
        "config": view.mapping,
        "remote": {k.key: {"value": k.value, "agent_yaml": k.local, "version": k.version, "applied_at": k.applied_at}
                   for k in view.keys},
        "refused": view.refused,
        "ignored": view.ignored,
    }


def header(view: Effective) -> List[str]:
    """Where the config came from: the file, then each remote key with its source (``check`` prints these too)."""
    lines = [f"Effective config: {view.source}" + (" with the remote keys below" if view.keys else "")]
    lines.extend(remote_lines(view))
    return lines
