"""SIGHUP: load the config file again, check it as at start, and work out what changed.

Pure apart from the load itself: the scheduler applies the result (new sample
source, new connection, ...) and logs it. A config that fails to load or fails
the file audit raises, so the running configuration stays in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from agent.config.model import Config
from agent.errors import ConfigError
from agent.security import audit_files

# Parts of the config the scheduler reacts to, in the order they are named in the log.
SECTIONS = ("thing_name", "mqtt", "report", "delivery", "collectors", "custom_metrics")


@dataclass(frozen=True)
class Reload:
    config: Config  # what to run from now on
    changed: Tuple[str, ...]  # names from SECTIONS
    refused_state_dir: Optional[Path] = None  # asked for, but state_dir only changes with a restart

    def touches(self, *names: str) -> bool:
        return any(name in self.changed for name in names)


def load_checked(load: Callable[[], Config]) -> Config:
    """The new config, with the same file audit as at start. Raises :class:`agent.errors.AgentError`."""
    new = load()
    problems = audit_files(new)
    if problems:
        raise ConfigError(problems)
    return new


def compare(old: Config, new: Config) -> Reload:
    """What a reload from ``old`` to ``new`` changes; ``state_dir`` keeps its old value."""
    refused = None
    if new.state_dir != old.state_dir:
        refused = new.state_dir
        new = dataclasses.replace(new, state_dir=old.state_dir)
    changed = tuple(name for name in SECTIONS if getattr(new, name) != getattr(old, name))
    return Reload(new, changed, refused)
