"""A security collector's memory between rounds and restarts: one JSON file in ``state_dir``.

Written atomically (a temporary file beside it, then a rename), without fsync: a crash or kill -9 of the
agent leaves the old file or the new one. After a power cut an empty or half-written file is reported as
damaged and the collector starts over from a fresh baseline (as on a first start), which loses at most the
changes of the round that was being written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from agent.durable import replace_file


def state_path(state_dir: Path, kind: str, collector_name: str) -> Path:
    return state_dir / f"{kind}.{collector_name}.json"


def load_state(path: Path, version: int) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(the saved mapping, or None when there is none or it is unusable; why it is unusable, or None)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        data = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        return None, f"{path} is damaged ({exc})"
    if not isinstance(data, dict) or data.get("version") != version:
        found = data.get("version") if isinstance(data, dict) else None
        return None, f"{path} has unknown version {found!r}"
    return data, None


def save_state(path: Path, data: Dict[str, Any]) -> None:
    """Write ``data`` (with its ``version``) atomically. Raises OSError."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    try:
        replace_file(path, payload, 0o640, sync=False)  # a lost position after a power cut starts from now
    except (FileNotFoundError, NotADirectoryError):  # no state directory (yet)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        replace_file(path, payload, 0o640, sync=False)


class StateKeeper:
    """One collector's state file: loaded once when it is built, saved after a round that changed it.

    ``persist=False`` (one-off runs such as ``once``, beside a running daemon) reads the file but never writes
    it. A failure to save is logged once, and once when saving works again; the collector keeps its state in
    memory meanwhile, so its counts stay right until the agent restarts.
    """

    def __init__(self, path: Path, version: int, logger: logging.Logger, persist: bool = True) -> None:
        self.path = path
        self._version = version
        self._logger = logger
        self._persist = persist
        self._failing = False

    def load(self) -> Optional[Dict[str, Any]]:
        data, problem = load_state(self.path, self._version)
        if problem:
            self._logger.warning("%s; starting from a new baseline (this round reports no changes)", problem)
        return data

    def save(self, data: Dict[str, Any]) -> None:
        if not self._persist:
            return
        try:
            save_state(self.path, {**data, "version": self._version})
        except OSError as exc:
            if not self._failing:
                self._logger.warning("Cannot save state to %s: %s; changes are counted from memory until the "
                                     "agent restarts", self.path, exc.strerror or exc)
            self._failing = True
            return
        if self._failing:
            self._logger.info("State saved again to %s", self.path)
        self._failing = False
