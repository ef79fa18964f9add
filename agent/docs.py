"""Generated parts of README.md: the option table, the collector reference and the CLI reference.

Each lives between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers;
``make docs`` rewrites them, and a test fails when the
checked-in README differs from what the code generates.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Dict, List, Optional

from agent.catalog import BUILTIN_METRICS
from agent.cli import build_parser
from agent.collectors.builtin import default_registry
from agent.config.sample import collector_table, option_table


def cli_table() -> str:
    parser = build_parser()
    rows = ["| command | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                rows.append(f"| `defender-agent {choice.dest}` | {choice.help} |")
    return "\n".join(rows) + "\n"


def builtin_metric_table() -> str:
    """The metrics the built-in collectors compute (agent.catalog.BUILTIN_METRICS), one row each."""
    rows = ["| collector | built-in name | type | unit | meaning |", "|---|---|---|---|---|"]
    for collector, metrics in BUILTIN_METRICS.items():
        for name, metric in metrics.items():
            rows.append(f"| `{collector}` | `{name}` | {metric.type.value} | {metric.unit} | {metric.description} |")
    return "\n".join(rows) + "\n"


def sections() -> Dict[str, Callable[[], str]]:
    registry = default_registry()
    return {
        "options": option_table,
        "collectors": lambda: collector_table(registry),
        "builtin-metrics": builtin_metric_table,
        "cli": cli_table,
    }


def update(text: str) -> str:
    """``text`` with every generated section replaced by what the code generates now."""
    for name, render in sections().items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(.*?)(<!-- END {name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- BEGIN {name} --> ... <!-- END {name} --> section")
        body = render()

        def replace(match: re.Match[str], body: str = body) -> str:
            return match.group(1) + body + match.group(3)

        text = pattern.sub(replace, text)
    return text


def main(argv: Optional[List[str]] = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = args[0] if args else "README.md"
    with open(path, encoding="utf-8") as handle:
        old = handle.read()
    new = update(old)
    if new != old:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(new)
    return 0
