"""The remote keys laid onto agent.yaml's raw mapping (for the loader), and nested back out (for the echo).

Pure. ``collectors`` is a list in agent.yaml and a mapping by collector name in a desired state
(``collectors: {cpu: {interval: 60s}}``): the name is the collector's ``name``, else its ``type``.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Dict, List, Mapping, Optional

from agent.remote.policy import Key


def collector_names(raw: Mapping[str, Any]) -> List[Optional[str]]:
    """The name of each entry of agent.yaml's ``collectors`` list, by index (None: not a collector)."""
    entries = raw.get("collectors")
    names: List[Optional[str]] = []
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") or entry.get("type") if isinstance(entry, dict) else None
        names.append(name if isinstance(name, str) else None)
    return names


def merge(raw: Mapping[str, Any], overrides: Mapping[Key, Any]) -> Dict[str, Any]:
    """A copy of ``raw`` with every override set; a collector key whose collector is not in ``raw`` is
    skipped (:func:`agent.remote.resolve.resolve` refuses it first)."""
    out: Dict[str, Any] = copy.deepcopy(dict(raw))
    names = collector_names(raw)
    for key, value in overrides.items():
        if key[0] == "collectors":
            if key[1] in names:
                out["collectors"][names.index(key[1])][key[2]] = copy.deepcopy(value)
            continue
        node = out
        for part in key[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[key[-1]] = copy.deepcopy(value)
    return out


def lookup(raw: Mapping[str, Any], key: Key) -> Any:
    """agent.yaml's own value at ``key`` (None when unset: the default applies)."""
    if key[0] == "collectors":
        names = collector_names(raw)
        return raw["collectors"][names.index(key[1])].get(key[2]) if key[1] in names else None
    node: Any = raw
    for part in key:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def nest(overrides: Mapping[Key, Any]) -> Dict[str, Any]:
    """``{("report", "interval"): "60s"}`` -> ``{"report": {"interval": "60s"}}``: as agent.yaml nests them."""
    out: Dict[str, Any] = {}
    for key, value in sorted(overrides.items()):
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return out


_COLLECTOR_INDEX = re.compile(r"collectors\[(\d+)\]")


def translate(path: str, raw: Mapping[str, Any]) -> str:
    """A loader path as a desired state names it: ``collectors[2].interval`` -> ``collectors.cpu.interval``."""
    match = _COLLECTOR_INDEX.match(path)
    if match is None:
        return path
    names = collector_names(raw)
    index = int(match.group(1))
    name = names[index] if index < len(names) else None
    return f"collectors.{name}{path[match.end():]}" if name else path


def blame(path: str, keys: Any, raw: Mapping[str, Any]) -> Optional[Key]:
    """The remote key among ``keys`` that a loader problem at ``path`` is under, else None."""
    named = translate(path, raw)
    best: Optional[Key] = None
    for key in keys:
        dotted = ".".join(key)
        under = named == dotted or named.startswith((dotted + ".", dotted + "["))
        if under and (best is None or len(key) > len(best)):
            best = key
    return best
