"""SIGHUP: work out what a newly loaded config changes.

Pure: the scheduler loads the config again (with the same checks as at start,
:func:`agent.commands.common.load_audited`), then, with what this says changed, makes
everything new before it swaps anything (:func:`agent.reconfigure.make_change`, then ``Service._apply``):
every consumer's checks of the new config, the report builder, new collectors (when
``collectors``, ``custom_metrics`` or ``report.interval`` changed) and a new connection
(when ``mqtt`` or ``thing_name`` changed). Anything that raises on the way (a schema or
file-audit error, an exec program a start would refuse, a collector or plugin that cannot
be built, TLS files awscrt refuses) refuses the whole reload: one error line, the running
configuration, collectors and connection stay as they were. ``state_dir`` is the one key a
reload never changes (a warning says it takes a restart); the rest of such a config applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from agent.config.model import Config
from agent.schema import TextEnum


class Section(TextEnum):
    """Parts of the config the scheduler reacts to (the value is the Config field), in log order."""

    THING_NAME = "thing_name"
    MQTT = "mqtt"
    REPORT = "report"
    DELIVERY = "delivery"
    COLLECTORS = "collectors"
    CUSTOM_METRICS = "custom_metrics"
    SINKS = "sinks"
    HEALTH_METRICS = "health_metrics"
    BEHAVIORS = "behaviors"
    VIOLATIONS = "violations"


@dataclass(frozen=True)
class Reload:
    config: Config  # what to run from now on
    changed: Tuple[Section, ...]
    refused_state_dir: Optional[Path] = None  # asked for, but state_dir only changes with a restart

    def touches(self, *sections: Section) -> bool:
        return any(section in self.changed for section in sections)

    def changed_names(self) -> str:
        """For the log: ``report, delivery`` (or ``nothing``)."""
        return ", ".join(self.changed) or "nothing"


def compare(old: Config, new: Config) -> Reload:
    """What a reload from ``old`` to ``new`` changes; ``state_dir`` keeps its old value."""
    refused = None
    if new.state_dir != old.state_dir:
        refused = new.state_dir
        new = dataclasses.replace(new, state_dir=old.state_dir)
    changed = tuple(s for s in Section if getattr(new, s.value) != getattr(old, s.value))
    return Reload(new, changed, refused)
