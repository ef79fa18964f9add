"""The list of built-in collector specs."""

from __future__ import annotations

from typing import List

from agent.collectors.registry import CollectorSpec


def builtin_specs() -> List[CollectorSpec]:
    return []
