"""Run this very agent package as a new process, wherever it is installed.

A venv finds ``agent`` on its own ``sys.path``; the Debian package keeps it in a private
directory (/usr/share/defender-agent) that only its launcher adds, and a checkout is found
only from its root. ``python -m agent`` with the package's parent on PYTHONPATH works in all three.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import agent

PACKAGE_PARENT = str(Path(agent.__file__).resolve().parents[1])  # the agent this devkit imported


def agent_argv(*args: str) -> List[str]:
    """``python -m agent ARGS`` with the interpreter running now."""
    return [sys.executable, "-m", "agent", *args]


def agent_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """This environment plus ``extra``, with this package's parent first on PYTHONPATH."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    return env
