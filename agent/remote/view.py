"""The remote keys in effect as lines for people (`check`, `config --effective`): value, source, agent.yaml's own."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:  # `config --help` imports this module: the engine (the loader) only when a command runs
    from agent.remote.engine import Effective


def remote_lines(view: Effective) -> List[str]:
    lines: List[str] = []
    if view.ignored:
        lines.append(f"remote keys stored in {view.stored_in} are ignored: shadow.remote_config is off")
    for key in view.keys:
        lines.append(f"  {key.key}: {_shown(key.value)} (from shadow version {key.version}, applied "
                     f"{_when(key.applied_at)}; agent.yaml: {_shown(key.local) if key.local is not None else 'unset'})")
    for name, reason in view.refused.items():
        lines.append(f"  refused {name}: {reason}")
    return lines


def _shown(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _when(stamp: Optional[float]) -> str:
    return "at an unknown time" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))
