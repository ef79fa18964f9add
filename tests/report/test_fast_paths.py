"""The encoder's batch fast paths agree with the per-item checks they stand in for."""

from __future__ import annotations

import math
from typing import Any, List

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.errors import ReportError
from agent.report import encode, rules

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
    expected = all(type(v) is str and v != "" and rules.string_is_plain(v) for v in values)
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
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 0.0, -0.0, 0.1 + 0.2]),
)


def _slow(value: Any) -> Any:
    try:
        return encode._number(value, "p")
    except ReportError:
        return ReportError


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=1000, deadline=None)
@given(NUMBER)
def test_plain_number_is_the_full_path_where_it_answers(value: Any) -> None:
    fast = encode._plain_number(value)
    if fast is not None:
        assert _same(fast, _slow(value))


@settings(max_examples=500, deadline=None)
@given(st.lists(NUMBER, max_size=6))
def test_plain_numbers_is_the_full_path_where_it_answers(values: List[Any]) -> None:
    fast = encode._plain_numbers(values)
    slow = [_slow(v) for v in values]
    if fast is None:
        assert ReportError in slow or any(encode._plain_number(v) is None for v in values)
    else:
        assert len(fast) == len(slow) and all(_same(a, b) for a, b in zip(fast, slow))


@pytest.mark.parametrize("value", [1.7976931348623157e308, float("nan"), float("inf"), True, 10**15, "1"])
def test_plain_number_leaves_the_hard_cases_to_the_full_path(value: Any) -> None:
    assert encode._plain_number(value) is None
