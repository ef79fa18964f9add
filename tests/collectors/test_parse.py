"""The shared value parser (exec and file) and the sampler's shape checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.catalog import MetricType
from agent.collectors.parse import ValueParseError, parse_value
from agent.report.rules import check_value, normalize_value

N, NL, SL, IP = MetricType.NUMBER, MetricType.NUMBER_LIST, MetricType.STRING_LIST, MetricType.IP_ADDRESS_LIST


@pytest.mark.parametrize(
    ("text", "mtype", "expected"),
    [
        ("42\n", N, 42),
        ("  -1.5e3 ", N, -1500.0),
        ("# comment\n\n37.5\n", N, 37.5),
        ("1\n2.5\n\n3\n", NL, (1, 2.5, 3)),
        ("", NL, ()),
        ("sshd\nmosquitto\n", SL, ("sshd", "mosquitto")),
        ("10.0.0.2\nFD00:0::1\n", IP, ("10.0.0.2", "fd00::1")),
        ("[1, 2.5]", NL, (1, 2.5)),
        ('["a", "b"]', SL, ("a", "b")),
        ('["::1"]', IP, ("::1",)),
        ("7", N, 7),
    ],
)
def test_parse_value(text, mtype, expected):
    assert parse_value(text, mtype) == expected


@pytest.mark.parametrize(
    ("text", "mtype", "fmt", "message"),
    [
        ("", N, "auto", "exactly one number, found 0"),
        ("1\n2\n", N, "auto", "exactly one number, found 2"),
        ("abc", N, "auto", "'abc' is not a number"),
        ("nan", N, "auto", "not a number"),
        ("1e999", N, "auto", "finite"),
        ("1\nx\n", NL, "auto", "line 2: 'x' is not a number"),
        ("10.0.0.300", IP, "auto", "not an IPv4 or IPv6 address"),
        ("true", N, "json", "got a boolean"),
        ("[1, true]", NL, "json", "item 1: expected a number, got a boolean"),
        ('{"a": 1}', NL, "auto", "expected a JSON array, got an object"),
        ("[1,", NL, "auto", "not valid JSON"),
        ('["a", 1]', SL, "auto", "item 1: expected a string"),
        ("0x10", N, "auto", "not a number"),
    ],
)
def test_parse_errors(text, mtype, fmt, message):
    with pytest.raises(ValueParseError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_value(text, mtype, fmt)


def test_lines_format_keeps_brackets_as_text():
    assert parse_value("[x]\n", SL, "lines") == ("[x]",)


def test_scale():
    assert parse_value("48312\n", N, scale=0.001) == 48.312
    assert parse_value("1\n2\n", NL, scale=2) == (2, 4)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.one_of(st.integers(-(10**15), 10**15), finite), max_size=30))
def test_number_lists_roundtrip_through_lines_and_json(values):
    as_lines = "\n".join(repr(v) for v in values) + "\n"
    assert parse_value(as_lines, NL, "lines") == tuple(values)
    assert parse_value(json.dumps(values), NL, "auto") == tuple(values)


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Zs")), min_size=1), max_size=20
    )
)
def test_string_lists_roundtrip_through_json(values):
    values = [v for v in values if v.strip() == v]
    assert parse_value(json.dumps(values), SL, "json") == tuple(values)


@given(st.text(max_size=200), st.sampled_from(list(MetricType)), st.sampled_from(["auto", "lines", "json"]))
def test_parser_only_raises_value_parse_error(text, mtype, fmt):
    try:
        value = parse_value(text, mtype, fmt)
    except ValueParseError:
        return
    # What parses is a value of the declared type; only the service's finer rules may still refuse it.
    problem = check_value(normalize_value(value, mtype), mtype, allow_any_characters=True)
    assert problem is None or problem.rule in ("has more than 15 significant digits", "must not be empty"), problem


@given(st.ip_addresses())
def test_ip_addresses_are_canonical(address):
    assert parse_value(f" {address.exploded} \n", IP) == (str(address),)


def test_zone_ids_are_refused_with_a_reason():
    with pytest.raises(ValueParseError, match="zone id"):
        parse_value("fe80::1%eth0\n", IP)
