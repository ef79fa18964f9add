"""Collector types by name: given specs (the built-in ones, see :mod:`agent.collectors.builtin`) plus
third-party plugins from one entry-point group.

A :class:`~agent.collectors.contract.CollectorSpec` says which options a type takes (schema
nodes, checked once at config load), which metrics it emits for given options, and how to
build a fresh instance. Plugins are imported only when a config names them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from agent.collectors.contract import CollectorSpec
from agent.errors import PluginError

ENTRY_POINT_GROUP = "defender_agent.collectors"

EntryPointSource = Callable[[], Iterable[Any]]


def _installed_entry_points() -> Iterable[Any]:
    # Imported here, not at the top: 2 MB and 20 ms that a config of built-in types never needs.
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
        describes=spec.describes,
        doc=spec.doc,
        sample=spec.sample,
    )
