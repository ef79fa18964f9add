"""Collector types by name: built-in specs plus third-party plugins from one entry-point group.

A :class:`CollectorSpec` says which options a type takes (schema nodes, checked
once at config load), which metrics it emits for given options, and how to
build a fresh instance. Plugins are imported only when a config names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.collectors.base import Collector
from agent.collectors.rounds import RoundCache
from agent.report.model import MetricType

if TYPE_CHECKING:  # a runtime import would be circular: agent.config.load imports this module
    from agent.config.schema import Node

ENTRY_POINT_GROUP = "defender_agent.collectors"

# name -> declared custom metric type, or None for a standard metric (`metrics` block)
Emits = Mapping[str, Optional[MetricType]]


@dataclass(frozen=True)
class BuildContext:
    """What a collector may know about the agent when it is built."""

    name: str
    state_dir: Path
    timeout: float
    report_interval: float
    max_list_items: int
    logger: logging.Logger
    custom_metric_types: Mapping[str, MetricType] = field(default_factory=dict)
    rounds: RoundCache = field(default_factory=RoundCache)  # reads shared within one sampling round
    persist_state: bool = True  # False: read state files but never write them (one-off runs)


@dataclass(frozen=True)
class CollectorSpec:
    type: str
    summary: str
    options: Mapping[str, Node]
    build: Callable[[BuildContext, Mapping[str, Any]], Collector]
    emits: Callable[[Mapping[str, Any]], Emits]
    example: Optional[Mapping[str, Any]] = None  # options shown in the example config
    # False: the example needs a program or file of the operator's, so it is shown commented out
    example_enabled: bool = True
    origin: str = "built-in"  # "entry point NAME from DIST VERSION" for plugins


class PluginError(Exception):
    """A plugin could not be loaded or does not fit the protocol; the message names it."""


EntryPointSource = Callable[[], Iterable[Any]]


def _installed_entry_points() -> Iterable[Any]:
    from importlib import metadata

    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python 3.9


class Registry:
    """Maps collector type names to specs; built-in first, then installed plugins."""

    def __init__(
        self,
        builtin: Iterable[CollectorSpec] = (),
        entry_points: EntryPointSource = _installed_entry_points,
    ) -> None:
        self._specs: Dict[str, CollectorSpec] = {}
        for spec in builtin:
            if spec.type in self._specs:
                raise ValueError(f"built-in collector type {spec.type!r} registered twice")
            self._specs[spec.type] = spec
        self._entry_points = entry_points
        self._plugins_loaded: Dict[str, CollectorSpec] = {}

    def builtin_types(self) -> List[str]:
        return sorted(self._specs)

    def builtin_specs(self) -> Tuple[CollectorSpec, ...]:
        return tuple(self._specs[name] for name in sorted(self._specs))

    def available(self) -> List[str]:
        """Built-in types and the names of installed plugins (not imported)."""
        names = set(self._specs)
        names.update(ep.name for ep in self._entry_points())
        return sorted(names)

    def get(self, type_name: str) -> Optional[CollectorSpec]:
        """The spec for ``type_name``; ``None`` when unknown. Raises PluginError for a bad plugin."""
        if type_name in self._specs:
            return self._specs[type_name]
        if type_name in self._plugins_loaded:
            return self._plugins_loaded[type_name]
        matches = [ep for ep in self._entry_points() if ep.name == type_name]
        if not matches:
            return None
        if len(matches) > 1:
            dists = ", ".join(_dist_of(ep) for ep in matches)
            raise PluginError(f"collector type {type_name!r} is provided by more than one plugin: {dists}")
        spec = _load_plugin(matches[0])
        self._plugins_loaded[type_name] = spec
        return spec


def _dist_of(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _load_plugin(ep: Any) -> CollectorSpec:
    origin = f"entry point {ep.name!r} ({ep.value}) from {_dist_of(ep)}"
    try:
        loaded = ep.load()
    except Exception as exc:
        raise PluginError(f"cannot load plugin {origin}: {type(exc).__name__}: {exc}") from exc
    spec = loaded() if callable(loaded) and not isinstance(loaded, CollectorSpec) else loaded
    if not isinstance(spec, CollectorSpec):
        raise PluginError(
            f"plugin {origin} must provide an agent.plugin_api.CollectorSpec "
            f"(or a function returning one), got {type(spec).__name__}"
        )
    if spec.type != ep.name:
        raise PluginError(f"plugin {origin} declares type {spec.type!r}; it must equal the entry point name")
    for attr in ("build", "emits"):
        if not callable(getattr(spec, attr)):
            raise PluginError(f"plugin {origin}: {attr} is not callable")
    return CollectorSpec(
        type=spec.type,
        summary=spec.summary,
        options=spec.options,
        build=spec.build,
        emits=spec.emits,
        example=spec.example,
        example_enabled=spec.example_enabled,
        origin=origin,
    )


def default_registry() -> Registry:
    """A registry of every built-in collector plus installed plugins."""
    from agent.collectors.builtin import builtin_specs

    return Registry(builtin_specs())
