"""Generated YAML documents against the loader: every failure is a ConfigError, never a traceback."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.load import parse_config
from agent.config.spec import COLLECTOR_COMMON, CUSTOM_METRIC, DELIVERY, MQTT, REPORT, TOP_LEVEL
from agent.errors import ConfigError

KEYS = sorted(
    set(TOP_LEVEL) | set(MQTT.fields) | set(REPORT.fields) | set(DELIVERY.fields) | set(CUSTOM_METRIC.fields)
    | set(COLLECTOR_COMMON) | {"collectors", "custom_metrics", "system", "exec", "file", "standard", "number"}
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
    st.sampled_from(["10s", "5x", "-1s", "json", "cbor", "short", "number", "number-list", "127.0.0.1", "aws:x", "1e400"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)

BASE = {"thing_name": "gw", "mqtt": {"endpoint": "127.0.0.1", "cert": "c", "key": "k", "ca": "a"}}


def _load(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_documents_never_raise_anything_but_config_error(document: Any) -> None:
    _load(yaml.safe_dump(document))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), documents, max_size=6))
def test_generated_changes_to_a_valid_config(changes: Any) -> None:
    merged = {**BASE, **changes}
    _load(yaml.safe_dump(merged))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _load(text)
