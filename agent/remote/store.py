"""The remote keys in effect, kept in ``state_dir/remote-config.json`` so they apply at the next start, before
the agent connects (a gateway that reboots offline keeps its fleet's profile).

The file: ``{"version": 7, "applied": {"report": {"interval": "60s"}}, "refused": {"mqtt.endpoint": "..."},
"applied_at": 1700000000.0, "sources": {"report.interval": {"version": 7, "applied_at": 1700000000.0}}}``.
Written atomically (temporary file, fsync, rename, fsync of the directory), mode 0600. Read back through the
same allow-list as a desired state: a file edited by hand cannot set what a shadow may not.
``status`` reads it without the loader (:mod:`agent.remote.file`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from agent.durable import replace_file
from agent.remote.file import FILE_MODE, CorruptState, path_of, read_raw
from agent.remote.merge import nest
from agent.remote.outcome import Outcome
from agent.remote.policy import Key, display, screen


@dataclass(frozen=True)
class RemoteState:
    version: Optional[int] = None  # the shadow version last resolved
    overrides: Mapping[Key, Any] = field(default_factory=dict)  # the remote keys in effect
    refused: Mapping[str, str] = field(default_factory=dict)
    applied_at: Optional[float] = None  # epoch seconds of the last change applied
    sources: Mapping[str, Tuple[int, float]] = field(default_factory=dict)  # key -> (version, applied_at)

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.version, nest(self.overrides), dict(self.refused))

    def to_json(self) -> Dict[str, Any]:
        return {"version": self.version, "applied": nest(self.overrides), "refused": dict(self.refused),
                "applied_at": self.applied_at,
                "sources": {k: {"version": v, "applied_at": t} for k, (v, t) in sorted(self.sources.items())}}


def read_state(state_dir: Path) -> Optional[RemoteState]:
    """What the file holds (None: no file); its ``applied`` screened again by the allow-list."""
    found = read_checked(state_dir)
    return None if found is None else found[0]


def read_checked(state_dir: Path) -> Optional[Tuple[RemoteState, Dict[str, str]]]:
    """What the file holds, and the keys of its ``applied`` that the allow-list drops (key -> reason)."""
    raw = read_raw(state_dir)
    if raw is None:
        return None
    version = raw.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise CorruptState(f"{path_of(state_dir)}: version is not an integer")
    screened = screen(raw.get("applied") or {})
    refused = raw.get("refused")
    applied_at = raw.get("applied_at")
    sources: Dict[str, Tuple[int, float]] = {}
    for key, source in (raw.get("sources") or {}).items() if isinstance(raw.get("sources"), dict) else ():
        if isinstance(source, dict) and isinstance(source.get("version"), int) and \
                isinstance(source.get("applied_at"), (int, float)):
            sources[str(key)] = (source["version"], float(source["applied_at"]))
    state = RemoteState(
        version=version,
        overrides=screened.changes,
        refused={str(k): str(v) for k, v in refused.items()} if isinstance(refused, dict) else {},
        applied_at=float(applied_at) if isinstance(applied_at, (int, float)) else None,
        sources={k: s for k, s in sources.items() if k in {display(key) for key in screened.changes}},
    )
    return state, screened.refused


def write_state(state_dir: Path, state: RemoteState) -> None:
    """Replace the file atomically; raises OSError (the caller logs it: the running config is not affected)."""
    path = path_of(state_dir)
    body = json.dumps(state.to_json(), indent=1, sort_keys=True).encode("utf-8") + b"\n"
    replace_file(path, body, FILE_MODE)
