"""The per-value rules shared by the sampler, the encoder and `validate`: ``check_value`` is the one definition."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.catalog import MetricType, PayloadFormat
from agent.collectors.sampler import CollectorJob, Sampler
from agent.config.model import CustomMetricConfig
from agent.report import rules
from agent.report.document import decode, validate_document
from agent.report.encode import Encoder
from agent.report.model import Report, Sample

N, NL, SL, IP = MetricType.NUMBER, MetricType.NUMBER_LIST, MetricType.STRING_LIST, MetricType.IP_ADDRESS_LIST


@pytest.mark.parametrize("value", [0, 1, -1, 37.5, -0.001, 10**14, 999999999999999, 1e300, 1.5e-300])
def test_numbers_accepted(value: float) -> None:
    assert rules.check_number(value) is None


@pytest.mark.parametrize(
    "value, reason",
    [
        (True, "a boolean is not a number"),
        (False, "a boolean is not a number"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (10**15 + 1, "more than 15 significant digits"),
        (0.1 + 0.2, "more than 15 significant digits"),
        ("1", "expected a number, got str"),
        (None, "expected a number, got NoneType"),
    ],
)
def test_numbers_refused(value: object, reason: str) -> None:
    problem = rules.check_number(value)
    assert problem is not None and reason in problem


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_round_significant_always_gives_an_acceptable_number(value: float) -> None:
    rounded = rules.round_significant(value)
    assert rules.check_number(rounded) is None
    if value != 0:
        assert abs(rounded - value) <= abs(value) * 1e-14


@pytest.mark.parametrize("text", ["sshd", "value_1", "a:b/c.d-e_f", "/usr/bin/x"])
def test_strings_in_the_documented_set(text: str) -> None:
    assert rules.check_string(text) is None


@pytest.mark.parametrize("text, char", [("a b", "' '"), ("café", "'é'"), ("x,y", "','"), ("tab\t", "'\\t'")])
def test_strings_outside_the_set_name_the_character(text: str, char: str) -> None:
    problem = rules.check_string(text)
    assert problem is not None and f"character {char}" in problem
    assert rules.check_string(text, allow_any=True) is None


def test_empty_and_non_strings() -> None:
    assert rules.check_string("") == "must not be empty"
    assert rules.check_string(5) == "expected a string, got int"


@pytest.mark.parametrize("ip", ["10.0.0.2", "fd00::1", "::", "255.255.255.255", "::ffff:1.2.3.4"])
def test_ip_addresses(ip: str) -> None:
    assert rules.check_ip(ip) is None


@pytest.mark.parametrize("ip", ["10.0.0.256", "10.0.0.0/8", "host", "", "1.2.3", 7])
def test_bad_ip_addresses(ip: object) -> None:
    assert rules.check_ip(ip) is not None


@pytest.mark.parametrize("addr", ["1.2.3.4:80", "[fd00::1]:443", "[::1]:0", "0.0.0.0:65535"])
def test_remote_addr_ok(addr: str) -> None:
    assert rules.check_remote_addr(addr) is None


@pytest.mark.parametrize("addr", ["1.2.3.4", "fd00::1:443", "[fd00::1]443", "1.2.3.4:70000", "[x]:1", 5, "a.b:1"])
def test_remote_addr_bad(addr: object) -> None:
    assert rules.check_remote_addr(addr) is not None


def test_ports_and_counts() -> None:
    assert rules.check_port(22) is None
    assert rules.check_port(0) is not None
    assert rules.check_port(0, low=0) is None
    assert rules.check_port(65536) is not None
    assert rules.check_port(True) is not None
    assert rules.check_count(0) is None
    assert rules.check_count(-1) == "must not be negative"
    assert rules.check_count(1.0) is not None


@given(st.one_of(st.ip_addresses().map(str), st.text(max_size=45)))
def test_fast_ip_check_agrees_with_ipaddress(text: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(text)
        expected = "%" not in text  # zone ids are refused: the service wants plain addresses
    except ValueError:
        expected = False
    assert rules.is_ip(text) is expected


@pytest.mark.parametrize(
    ("value", "mtype", "rule", "index"),
    [
        (True, N, "a boolean is not a number", None),
        ("1", N, "expected a number", None),
        (math.inf, N, "finite", None),
        (10**15 + 1, N, "more than 15 significant digits", None),
        (1.5, NL, "needs a list", None),
        ((1, "2"), NL, "expected a number", 1),
        ((1, 2), SL, "expected a string", 0),
        (("ok", ""), SL, "must not be empty", 1),
        (("a b",), SL, "outside the service's set", 0),
        (("10.0.0.1", "nope"), IP, "not a valid IPv4 or IPv6", 1),
        (("fe80::1%eth0",), IP, "not a valid IPv4 or IPv6", 0),
    ],
)
def test_check_value_names_the_rule_and_the_item(value: object, mtype: MetricType, rule: str, index: object) -> None:
    problem = rules.check_value(value, mtype)
    assert problem is not None and rule in problem.rule and problem.index == index


@pytest.mark.parametrize(
    ("value", "mtype"),
    [(3, N), (10**15, N), (-0.5, N), ((1, 2.0), NL), ([], NL), (["a", "b/c.d:e_f-1"], SL), (("::1", "10.0.0.1"), IP)],
)
def test_check_value_accepts(value: object, mtype: MetricType) -> None:
    assert rules.check_value(value, mtype) is None


def test_allow_any_characters_accepts_any_non_empty_string() -> None:
    assert rules.check_value(("a b", "é"), SL, allow_any_characters=True) is None
    problem = rules.check_value(("a b", ""), SL, allow_any_characters=True)
    assert problem is not None and problem.index == 1


def test_normalize_rounds_floats_to_15_digits_and_makes_tuples() -> None:
    assert rules.normalize_value(0.1 + 0.2, N) == 0.3
    assert rules.normalize_value([0.1 + 0.2, 7], NL) == (0.3, 7)
    assert rules.normalize_value(["a"], SL) == ("a",)
    assert rules.normalize_value(10**16, N) == 10**16  # integers are never rounded: check_value refuses them
    assert rules.check_value(rules.normalize_value(0.1 + 0.2, N), N) is None


# -- one verdict: the sampler, the encoder and `validate` agree on every value ------------------------

_NUMBERS = st.one_of(
    st.integers(-(10**16), 10**16),
    st.sampled_from([10**15, 10**15 + 1, -(10**15), 10**15 - 1, 2**63, True, False]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_STRINGS = st.one_of(
    st.text(alphabet=st.sampled_from("aZ09:_-/. é\n\ud800"), max_size=6),
    st.sampled_from(["\ud800", "", "sshd", "value_1"]),
)
_IPS = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["fe80::1%eth0", "10.0.0.0/8", "010.0.0.1", "::ffff:1.2.3.4", "not-an-ip", ""]),
)
_CASES = st.one_of(
    st.tuples(st.just(N), _NUMBERS),
    st.tuples(st.just(NL), st.lists(_NUMBERS, max_size=4)),
    st.tuples(st.just(SL), st.lists(_STRINGS, max_size=4)),
    st.tuples(st.just(IP), st.lists(_IPS, max_size=4)),
    st.tuples(st.sampled_from([NL, SL, IP]), _NUMBERS),  # not a list at all
)


def _sampler_keeps(value: object, mtype: MetricType, metric: CustomMetricConfig) -> bool:
    job = CollectorJob("c", "test", _OneSample(value), 5.0, emits={"m": mtype})
    sampler = Sampler([job], 300.0, {"m": metric})
    try:
        return [s.name for s in sampler.sample_all().samples] == ["m"]
    finally:
        sampler.close()


def _encoder_sends(value: object, metric: CustomMetricConfig) -> bool:
    encoded = Encoder({"m": metric}, fmt=PayloadFormat.CBOR).encode(Report(1, custom={"m": value}))
    return "m" in (decode(encoded.payload)[0].get("custom_metrics") or {})


def _validate_accepts(value: object, mtype: MetricType) -> bool:
    """What the service would receive: the normalized value under its key, as CBOR (which carries NaN and big ints)."""
    wire = rules.normalize_value(value, mtype)
    wire = list(wire) if isinstance(wire, tuple) else wire
    document = {"header": {"report_id": 1, "version": "1.0"}, "custom_metrics": {"m": [{mtype.value_key: wire}]}}
    try:
        payload = cbor2.dumps(document)
    except (UnicodeEncodeError, ValueError, OverflowError, cbor2.CBOREncodeError):
        return False  # no report can carry it
    return not validate_document(decode(payload)[0])


class _OneSample:
    name = "c"

    def __init__(self, value: object) -> None:
        self.value = value

    def collect(self) -> list:
        return [Sample("m", self.value)]


@settings(max_examples=300, deadline=None)
@given(_CASES, st.booleans())
def test_sampler_encoder_and_validate_give_one_verdict(case: tuple, allow_any: bool) -> None:
    mtype, value = case
    metric = CustomMetricConfig(type=mtype, allow_any_characters=allow_any and mtype is SL, name="m")
    verdicts = {
        "sampler": _sampler_keeps(value, mtype, metric),
        "encoder": _encoder_sends(value, metric),
        "validate": _validate_accepts(value, mtype) if not metric.allow_any_characters else None,
    }
    expected = rules.check_value(rules.normalize_value(value, mtype), mtype,
                                 allow_any_characters=metric.allow_any_characters) is None
    assert {k: v for k, v in verdicts.items() if v is not None} == {
        k: expected for k, v in verdicts.items() if v is not None
    }, (mtype, value)


@pytest.mark.parametrize(
    ("mtype", "value"),
    [(N, 10**15 + 1), (N, 2**63), (IP, ["fe80::1%eth0"]), (SL, ["\ud800"]), (SL, [""]), (NL, [math.nan])],
)
def test_the_reported_disagreements_are_refused_everywhere(mtype: MetricType, value: object) -> None:
    """Issue 13's cases: a 1 PB-sized integer, a zone id, a lone surrogate (under allow_any_characters too)."""
    for allow_any in (False, True):
        metric = CustomMetricConfig(type=mtype, allow_any_characters=allow_any and mtype is SL, name="m")
        assert not _sampler_keeps(value, mtype, metric)
        assert not _encoder_sends(value, metric)
    assert not _validate_accepts(value, mtype)
