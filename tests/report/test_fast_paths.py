"""The fast paths of :mod:`agent.report.rules` (one regex or one float round-trip for a whole check) agree
with the definitions they stand in for."""

from __future__ import annotations

import math
from typing import Any, List

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.catalog import MetricType
from agent.report import rules

TEXT = st.text(alphabet=st.sampled_from("aZ09:_-/.\n é["), max_size=12)
REMOTE = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 70000)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 70000)).map(lambda t: f"[{t[0]}]:{t[1]}"),
    st.sampled_from(["1.2.3.4:0443", "[::1]:00022", "1.2.3.4:80\n5.6.7.8:90", "[fd00::1]:1\n[::1]:2"]),
    TEXT,
    st.integers(),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(TEXT, st.integers()), max_size=6))
@example(["a\nb"])
@example(["", "a"])
@example([])
def test_all_plain_strings_agrees_with_the_single_check(values: List[Any]) -> None:
    expected = all(type(v) is str and rules.check_string(v) is None for v in values)
    assert rules.all_plain_strings(values) is expected


@settings(max_examples=500, deadline=None)
@given(st.lists(REMOTE, max_size=6))
@example(["1.2.3.4:80\n5.6.7.8:90"])
@example(["[fd00::1]:1\n[::1]:2"])
def test_all_valid_remote_addrs_agrees_with_the_single_check(values: List[Any]) -> None:
    assert rules.all_valid_remote_addrs(values) == all(rules.check_remote_addr(v) is None for v in values)


NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**16), 10**16),
    st.booleans(),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 0.0, -0.0, 0.1 + 0.2, 10**15, -(10**15)]),
)


def _number_by_definition(value: Any) -> bool:
    """The documented rule, spelled out slowly: a finite non-boolean number of at most 15 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return value == 0 or rules.significant_digits(value) <= rules.MAX_SIGNIFICANT_DIGITS


@settings(max_examples=2000, deadline=None)
@given(NUMBER)
@example(0.1 + 0.2)
@example(123456789012345.6)
@example(1e-320)
def test_check_number_fast_path_is_the_definition(value: Any) -> None:
    assert (rules.check_number(value) is None) is _number_by_definition(value)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(TEXT, st.integers()), max_size=6), st.booleans())
def test_check_value_on_string_lists_is_the_per_item_check(values: List[Any], allow_any: bool) -> None:
    expected = all(rules.check_string(v, allow_any) is None for v in values)
    problem = rules.check_value(values, MetricType.STRING_LIST, allow_any_characters=allow_any)
    assert (problem is None) is expected
