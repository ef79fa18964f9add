"""``state_dir/remote-config.json`` as a file: where it is and its JSON, for ``status`` too (no loader, no
collectors); what it means is :mod:`agent.remote.store`'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

FILE_NAME = "remote-config.json"
FILE_MODE = 0o600
MAX_BYTES = 1024 * 1024  # a larger file is not one this agent wrote


class CorruptState(Exception):
    """The file exists but is not a remote config this agent wrote (logged once, then ignored)."""


def path_of(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read_raw(state_dir: Path) -> Optional[Dict[str, Any]]:
    """The file's JSON object, None when there is none; :class:`CorruptState` when it is not one."""
    path = path_of(state_dir)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptState(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise CorruptState(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptState(f"{path} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptState(f"{path} is not a JSON object")
    return value
