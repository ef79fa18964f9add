"""Checks on the files the agent trusts: certificate, private key, CA bundle, config.

Every finding is a :class:`ConfigProblem` naming the path and the fix; key
material is never read into a message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Mapping, Optional

from agent.config.model import Config
from agent.errors import ConfigProblem

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def resolve_credential(path: str, env: Mapping[str, str] = os.environ) -> str:
    """A relative key path is looked up in $CREDENTIALS_DIRECTORY (systemd LoadCredential=) first."""
    creds = env.get(CREDENTIALS_ENV)
    if creds and not os.path.isabs(path):
        candidate = Path(creds) / path
        if candidate.exists():
            return str(candidate)
    return path


def audit_files(config: Config, env: Mapping[str, str] = os.environ) -> List[ConfigProblem]:
    """Every certificate/key/CA file must exist and be readable by this process."""
    problems: List[ConfigProblem] = []
    for key in ("cert", "key", "ca"):
        raw = getattr(config.mqtt, key)
        path = resolve_credential(raw, env) if key == "key" else raw
        problem = _readable(path)
        if problem:
            problems.append(ConfigProblem(config.source, f"mqtt.{key}", f"{path}: {problem}"))
    return problems


def _readable(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory, expected a PEM file"
    except PermissionError:
        return f"not readable by uid {os.getuid()} (check owner and mode)"
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    return None
