"""Helpers for tests that run the agent as a separate process."""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Set


def plain_env(**extra: str) -> Dict[str, str]:
    """This environment without coverage's subprocess hook (COVERAGE_PROCESS_CONFIG) or PYTHON* settings.

    For processes that must behave as an operator's would: one that runs as another user cannot
    write coverage data here, and one that reports what it imported must not import coverage.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "COVERAGE"))}
    env.update(extra)
    return env


def imported_modules(stderr: str) -> Set[str]:
    """Module names from a process run with PYTHONPROFILEIMPORTTIME=1 (CPython's own import log)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                names.add(name)
    return names


def under(modules: Iterable[str], *packages: str) -> List[str]:
    """The modules that are one of ``packages`` or inside one, sorted."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))
