"""Every generated page: config/agent.example.yaml, docs/CONFIGURATION.md and docs/COLLECTORS.md.

``make docs`` writes them (:func:`main`); a test fails when a checked-in page differs from what
:func:`pages` renders now. The sources are the code: the config schema (agent/config/spec.py), each
collector's spec (its options, ``doc`` and ``sample`` beside the collector), the metric catalog and the
command table of agent/cli.py. Nothing at run time imports this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from agent.collectors.builtin import builtin_specs, default_registry
from agent.collectors.registry import Registry
from agent.config.sample import render_example
from agent.docs.collectors import collectors_page
from agent.docs.configuration import configuration_page

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = "config/agent.example.yaml"
CONFIGURATION = "docs/CONFIGURATION.md"
COLLECTORS = "docs/COLLECTORS.md"


def pages(registry: Optional[Registry] = None) -> Dict[str, str]:
    """Every generated page, by path relative to the source tree, as the code renders it now."""
    registry = registry or default_registry()
    return {
        EXAMPLE_CONFIG: render_example(registry),
        CONFIGURATION: configuration_page(),
        COLLECTORS: collectors_page(builtin_specs()),
    }


def stale_pages(root: Path = ROOT) -> List[str]:
    """The generated pages whose checked-in text differs from what the code renders (missing ones included)."""
    out = []
    for path, text in pages().items():
        file = root / path
        if not file.exists() or file.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write every generated page under the source tree (or the directory given); only changed files are touched."""
    args = list(argv or [])
    root = Path(args[0]) if args else ROOT
    for path, text in pages().items():
        file = root / path
        if not file.exists() or file.read_text(encoding="utf-8") != text:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
    return 0
