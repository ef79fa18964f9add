"""Where the config file is, its text, and its ``state_dir`` alone.

`status` needs only the state directory: reading it through the whole loader would import
every collector (and refuse to answer while a bad edit waits to be reloaded, which is when
an operator asks). Everything else goes through :mod:`agent.config.load`, which reads the
file with :func:`read_config_text` too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Tuple

from agent.config.spec import TOP_LEVEL
from agent.config.yamlsrc import read_yaml
from agent.errors import AgentError, ConfigError, ConfigProblem
from agent.schema import Checker, Invalid

DEFAULT_CONFIG_PATH = "/etc/defender-agent/agent.yaml"
CONFIG_ENV = "DEFENDER_AGENT_CONFIG"


def config_path(explicit: Optional[str], env: Mapping[str, str] = os.environ) -> str:
    """``--config`` wins, then $DEFENDER_AGENT_CONFIG, then the default path."""
    return explicit or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def read_config_text(path: str) -> str:
    """The file's text; a ConfigError that says why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(path, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError.single(path, "", "is a directory, expected a YAML file") from None
    except PermissionError:
        raise ConfigError.single(path, "", f"permission denied reading it (running as uid {os.getuid()})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError.single(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def state_dir_of(path: str) -> Path:
    """The config's ``state_dir`` (or its default), whatever else in the file is wrong."""
    raw, lines = read_yaml(read_config_text(path), path)
    node = TOP_LEVEL["state_dir"]
    value = raw.get("state_dir") if isinstance(raw, dict) else None
    if value is None:
        return Path(str(node.default))
    try:
        return Path(node.convert(value))
    except Invalid as exc:
        raise ConfigError.single(path, "state_dir", str(exc), lines.get("state_dir")) from None


def located_problems(path: str, found: Iterable[Tuple[str, str]]) -> List[ConfigProblem]:
    """Problems found after loading, (YAML path, message) each, with the line of that path in the config file
    ``path`` (no line when the file can no longer be read)."""
    try:
        _, lines = read_yaml(read_config_text(path), path)
    except (AgentError, OSError):
        lines = {}
    checker = Checker(path, lines)
    for where, message in found:
        checker.problem(where, message)
    return checker.problems
