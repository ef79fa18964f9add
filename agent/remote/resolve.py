"""A screened desired state checked through the real loader: the config it makes, or why each key is refused.

The remote keys are laid onto agent.yaml's raw mapping and the result is parsed by
:func:`agent.config.load.parse_config`, so a remote value obeys exactly the rules of agent.yaml.
A problem under a key of this change refuses that key (with the loader's message, naming the key
as the desired state does: ``shadow desired: report.interval: ...``) and the key keeps its running
value; the rest is parsed again. A problem under no key of the change (a cross-check with a key
applied earlier, agent.yaml itself) refuses every key of the change, and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from agent.collectors.registry import Registry
from agent.config.load import parse_config
from agent.config.model import Config
from agent.errors import ConfigError
from agent.remote.merge import blame, collector_names, merge, translate
from agent.remote.policy import Key, Screened, display

PREFIX = "shadow desired"


@dataclass(frozen=True)
class Resolution:
    config: Optional[Config]  # what to run; None when nothing changes
    overrides: Dict[Key, Any]  # the remote keys in effect once ``config`` runs
    changed: Tuple[Key, ...] = ()  # keys set, changed or given back to agent.yaml
    refused: Dict[str, str] = field(default_factory=dict)

    def refuse_all(self, current: Mapping[Key, Any], reason: str) -> Resolution:
        """The change as a whole refused (its config could not be built): every key of it, for ``reason``."""
        refused = {**self.refused, **{display(k): reason for k in self.changed}}
        return Resolution(None, dict(current), (), refused)


def proposed(current: Mapping[Key, Any], screened: Screened, complete: bool) -> Dict[Key, Any]:
    """The remote keys asked for: a whole desired state replaces them, a delta changes the ones it names."""
    out = {} if complete else dict(current)
    for prefix in screened.removals:
        for key in [k for k in out if k[:len(prefix)] == prefix]:
            del out[key]
    out.update(screened.changes)
    return out


def resolve(raw: Mapping[str, Any], file: str, current: Mapping[Key, Any], screened: Screened, complete: bool,
            registry: Optional[Registry] = None) -> Resolution:
    """Check the keys ``screened`` asks for on top of ``raw`` (agent.yaml's mapping) against ``current``
    (the remote keys running now)."""
    refused = dict(screened.refused)
    wanted = proposed(current, screened, complete)
    names = collector_names(raw)
    for key in [k for k in wanted if k[0] == "collectors" and k[1] not in names]:
        refused[display(key)] = f"{PREFIX}: {display(key)}: agent.yaml has no collector named {key[1]!r}"
        _revert(wanted, current, key)
    changed = [k for k in {*wanted, *current} if wanted.get(k, _ABSENT) != current.get(k, _ABSENT)]
    if not changed:
        return Resolution(None, dict(current), (), refused)
    for _ in range(len(changed) + 1):
        try:
            config = _parse(merge(raw, wanted), file, registry)
        except ConfigError as exc:
            culprits: Dict[Key, str] = {}
            for problem in exc.problems:
                culprit = blame(problem.path, changed, raw)
                where = translate(problem.path, raw) or "(top level)"
                if culprit is None:
                    whole = Resolution(None, dict(current), tuple(changed), refused)
                    return whole.refuse_all(current, f"{PREFIX}: {where}: {problem.message}")
                culprits.setdefault(culprit, f"{PREFIX}: {where}: {problem.message}")
            for key, reason in culprits.items():
                refused[display(key)] = reason
                _revert(wanted, current, key)
                changed.remove(key)
            if not changed:
                return Resolution(None, dict(current), (), refused)
            continue
        except Exception as exc:  # a plugin's checks, yaml's dumper: refuse, never raise into the loop
            whole = Resolution(None, dict(current), tuple(changed), refused)
            return whole.refuse_all(current, f"{PREFIX}: {type(exc).__name__}: {exc}")
        return Resolution(config, wanted, tuple(sorted(changed)), refused)
    whole = Resolution(None, dict(current), tuple(changed), refused)
    return whole.refuse_all(current, f"{PREFIX}: the loader kept refusing the change")


_ABSENT = object()


def _revert(wanted: Dict[Key, Any], current: Mapping[Key, Any], key: Key) -> None:
    """``key`` keeps its running value (the remote one, or none: agent.yaml's)."""
    if key in current:
        wanted[key] = current[key]
    else:
        wanted.pop(key, None)


def _parse(mapping: Dict[str, Any], file: str, registry: Optional[Registry]) -> Config:
    """The loader on ``mapping``; ``file`` stays agent.yaml's (``Config.source``), its lines do not apply."""
    text = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)
    return parse_config(text, file, registry)
