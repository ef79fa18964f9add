"""Plugins that are wrong on purpose: each entry point breaks one rule."""

from __future__ import annotations

from typing import Any, Mapping

from agent.plugin_api import BuildContext, CollectorSpec, Emits


def not_a_spec() -> object:
    return {"type": "not_a_spec"}


def _emits(options: Mapping[str, Any]) -> Emits:
    return {}


def _junk(ctx: BuildContext, options: Mapping[str, Any]) -> Any:
    return object()  # no name, no collect()


def wrong_type_name() -> CollectorSpec:
    return CollectorSpec(type="something_else", summary="", options={}, build=_junk, emits=_emits)


def builds_junk() -> CollectorSpec:
    return CollectorSpec(type="builds_junk", summary="", options={}, build=_junk, emits=_emits)
