"""Remote config as the agent runs it: at start, on SIGHUP and on every desired state from the shadow.

The precedence, one rule: with ``shadow.remote_config: true``, a remote key in effect overrides agent.yaml's
value of that key; every other key comes from agent.yaml. With it off (or no ``shadow``), the stored keys are
ignored (the file is kept, and said so once). A desired key set to null gives the key back to agent.yaml.

The loop (:mod:`agent.scheduler`) hands each :class:`agent.events.DesiredState` to :meth:`Remote.desired` with
its all-or-nothing apply; ``run`` calls :meth:`Remote.rebase` before the service connects, and the SIGHUP
reload calls it again with the new agent.yaml.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from agent.config.model import Config
from agent.config.source import read_config_text
from agent.config.yamlsrc import read_yaml
from agent.events import DesiredState
from agent.remote.file import CorruptState, path_of
from agent.remote.merge import lookup, merge
from agent.remote.outcome import Outcome
from agent.remote.policy import Screened, display, screen
from agent.remote.resolve import Resolution, resolve
from agent.remote.store import RemoteState, read_checked, write_state

Step = Callable[[], None]
Make = Callable[[], Tuple[Config, Step]]  # the config to run, and what to do once it runs
Apply = Callable[[Make, Optional[str]], Optional[str]]  # the loop's all-or-nothing apply: None, or why refused


@dataclass(frozen=True)
class KeyView:
    key: str  # report.interval
    value: Any  # as the shadow set it
    local: Any  # agent.yaml's value (None: unset, its default)
    version: Optional[int]  # the shadow version that set it
    applied_at: Optional[float]


@dataclass(frozen=True)
class Effective:
    source: str  # agent.yaml's path
    mapping: Dict[str, Any]  # agent.yaml with the remote keys in effect
    keys: List[KeyView]
    refused: Dict[str, str]
    ignored: bool  # keys are stored but shadow.remote_config is off
    stored_in: Path


def enabled(config: Config) -> bool:
    return config.shadow is not None and config.shadow.remote_config


class Remote:
    def __init__(self, state_dir: Path, logger: logging.Logger, wall: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.log = logger
        self.wall = wall
        self.raw: Mapping[str, Any] = {}  # agent.yaml's mapping, as the running config was made from it
        self.file = ""
        self.enabled = False
        self.state = RemoteState()  # the remote keys in effect (while enabled)
        self.loaded = False  # the file was read (once: after that, memory is what is on disk)
        self.said_ignored = False
        self.dirty = False  # the file differs from memory (it held keys the allow-list dropped)

    @property
    def outcome(self) -> Outcome:
        """What the shadow reports: nothing while remote config is off."""
        return self.state.outcome if self.enabled else Outcome()

    # -- start and SIGHUP -------------------------------------------------------------------

    def rebase(self, base: Config, text: Optional[str] = None) -> Tuple[Config, Step]:
        """The config to run for agent.yaml's ``base`` (its remote keys applied) and the step that makes this
        the running state; nothing here changes until the step runs (a refused reload changes nothing)."""
        raw, on, stored, config, state = self._resolved(base, text)

        def adopt() -> None:
            self.raw, self.file, self.enabled = raw, base.source, on
            if not on:
                if stored.overrides and not self.said_ignored:
                    self.log.info("Remote config in %s is ignored: shadow.remote_config is off in %s (the file is "
                                  "kept)", path_of(self.state_dir), base.source)
                    self.said_ignored = True
                return
            self.said_ignored = False
            if state.overrides:
                self.log.info("Remote config from shadow version %s in effect: %s", state.version,
                              ", ".join(display(k) for k in sorted(state.overrides)))
            dropped = set(state.refused) - set(stored.refused)
            if dropped:
                self.log.warning("Remote config from shadow version %s no longer applies on %s: refused %s",
                                 state.version, base.source, _listed({k: state.refused[k] for k in sorted(dropped)}))
            self._save(state)

        return config, adopt

    def effective(self, base: Config, text: Optional[str] = None) -> Effective:
        """What ``config --effective`` and ``check`` show: agent.yaml with the remote keys in effect on it."""
        raw, on, _, _, state = self._resolved(base, text)
        keys = [KeyView(display(k), v, lookup(raw, k), *state.sources.get(display(k), (state.version, None)))
                for k, v in sorted(state.overrides.items())] if on else []
        ignored = bool(state.overrides) and not on
        return Effective(base.source, merge(raw, state.overrides) if on else dict(raw), keys,
                         dict(state.refused) if on else {}, ignored, path_of(self.state_dir))

    def _resolved(self, base: Config, text: Optional[str]
                  ) -> Tuple[Dict[str, Any], bool, RemoteState, Config, RemoteState]:
        """agent.yaml's mapping, whether remote config is on, what is stored, and the config and state with the
        stored keys laid onto this agent.yaml (a key it now refuses is dropped, and listed as refused)."""
        raw, _ = read_yaml(read_config_text(base.source) if text is None else text, base.source)
        raw = raw if isinstance(raw, dict) else {}
        stored = self._stored()
        on = enabled(base)
        config, state = base, stored
        if on and stored.overrides:
            res = resolve(raw, base.source, {}, Screened(changes=dict(stored.overrides)), complete=True)
            config = res.config or base
            kept = {display(k) for k in res.overrides}
            state = RemoteState(stored.version, res.overrides, {**stored.refused, **res.refused},
                                stored.applied_at, {k: v for k, v in stored.sources.items() if k in kept})
        return raw, on, stored, config, state

    def _stored(self) -> RemoteState:
        if self.loaded:
            return self.state
        self.loaded = True
        try:
            found = read_checked(self.state_dir)
        except CorruptState as exc:
            self.log.warning("Ignoring the stored remote config: %s; agent.yaml applies until the shadow's next "
                             "desired state", exc)
            return self.state
        if found is not None:
            self.state, dropped = found
            if dropped:  # not written by this agent: never applied, and the file is rewritten without them
                self.log.warning("The stored remote config in %s holds keys a shadow may not set; dropped %s",
                                 path_of(self.state_dir), _listed(dropped))
                self.dirty = True
        return self.state

    # -- a desired state ----------------------------------------------------------------------

    def desired(self, event: DesiredState, apply: Apply) -> Outcome:
        """Resolve one desired state (whole from a get, or a delta), apply it through ``apply``, persist."""
        desired, version, complete = event.desired, event.version, event.complete
        if not self.enabled:
            self.log.debug("Desired state of shadow version %s ignored: shadow.remote_config is off", version)
            return self.outcome
        label = f"Remote config from shadow version {version}"
        current = self.state.overrides
        res = resolve(self.raw, self.file, current, screen(desired), complete)
        if res.config is not None:
            config = res.config
            reason = apply(lambda: (config, lambda: None), None)
            if reason is not None:
                res = res.refuse_all(current, f"the config could not be built: {reason}")
        self._settle(res, version, complete, desired, label)
        return self.outcome

    def _settle(self, res: Resolution, version: int, complete: bool, desired: Any, label: str) -> None:
        now = self.wall()
        old = self.state
        refused = dict(res.refused)
        if not complete and isinstance(desired, Mapping):  # a delta re-judges only the keys it names
            named = {str(k) for k in desired}
            refused = {**{k: v for k, v in old.refused.items() if k.split(".", 1)[0] not in named}, **refused}
        kept = {display(k) for k in res.overrides}
        sources: Dict[str, Tuple[int, float]] = {k: v for k, v in old.sources.items() if k in kept}
        sources.update({display(k): (version, now) for k in res.changed if k in res.overrides})
        state = RemoteState(version, dict(res.overrides), refused, now if res.changed else old.applied_at, sources)
        if res.changed:
            self.log.info("%s applied: %s", label, ", ".join(
                display(k) if k in res.overrides else f"{display(k)} (agent.yaml's again)" for k in res.changed))
        if refused and refused != old.refused:
            self.log.warning("%s: refused %s", label, _listed(refused))
        elif refused:
            self.log.debug("%s: refused %s (as before)", label, _listed(refused))
        self._save(state)

    def _save(self, state: RemoteState) -> None:
        if state == self.state and not self.dirty:  # memory is what is on disk (or nothing was ever stored)
            return
        self.state, self.dirty = state, False
        try:
            write_state(self.state_dir, state)
        except OSError as exc:  # the running config is applied; only the next start would not have it
            self.log.error("Cannot save the remote config in %s: %s; it applies until the agent stops",
                           path_of(self.state_dir), exc.strerror or exc)


def _listed(refused: Mapping[str, str]) -> str:
    return ", ".join(f"{key} ({reason})" for key, reason in refused.items())
