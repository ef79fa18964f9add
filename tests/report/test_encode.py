"""Encoder behaviour beyond the golden files: drops, limits, round trips."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.catalog import MAX_PAYLOAD_BYTES, MetricType
from agent.config.model import CustomMetricConfig
from agent.errors import ReportError
from agent.report.document import decode, to_long, validate_document
from agent.report.encode import Encoder
from agent.report.model import (
    Connection,
    Connections,
    ListeningPort,
    ListeningPorts,
    NetworkStats,
    Report,
)


def defs(**types: str) -> Dict[str, CustomMetricConfig]:
    return {name: CustomMetricConfig(type=MetricType(t), name=name) for name, t in types.items()}


def test_number_is_wrapped_in_a_one_element_array() -> None:
    encoded = Encoder(defs(cpu="number")).encode(Report(1, custom={"cpu": 42}))
    assert json.loads(encoded.payload)["custom_metrics"] == {"cpu": [{"number": 42}]}


def test_float_noise_is_rounded_to_15_significant_digits() -> None:
    encoded = Encoder(defs(x="number", xs="number-list")).encode(Report(1, custom={"x": 0.1 + 0.2, "xs": (1 / 3,)}))
    document = json.loads(encoded.payload)
    assert document["custom_metrics"]["x"] == [{"number": 0.3}]
    assert document["custom_metrics"]["xs"] == [{"number_list": [0.333333333333333]}]
    assert encoded.dropped == ()


def test_dropped_violation_names_metric_path_value_and_rule() -> None:
    encoded = Encoder(defs(peers="ip-address-list")).encode(Report(1, custom={"peers": ("10.0.0.1", "nope")}))
    (violation,) = encoded.dropped
    assert violation.metric == "peers"
    assert violation.path == "custom_metrics.peers[0].ip_list[1]"
    assert violation.value == "nope"
    assert violation.rule == "is not a valid IPv4 or IPv6 address"
    # Nothing else left, so the report carries an empty metrics block to stay valid.
    assert json.loads(encoded.payload) == {"header": {"report_id": 1, "version": "1.0"}, "metrics": {}}


def test_allow_any_characters_sends_and_flags_the_metric() -> None:
    metrics = {"svc": CustomMetricConfig(type=MetricType.STRING_LIST, name="svc", allow_any_characters=True)}
    encoded = Encoder(metrics).encode(Report(1, custom={"svc": ("two words",)}))
    assert encoded.dropped == ()
    assert encoded.unusual_strings == ("svc",)


def test_custom_list_over_the_cap_is_dropped_not_cut() -> None:
    encoded = Encoder(defs(xs="number-list"), max_list_items=3).encode(Report(1, custom={"xs": (1, 2, 3, 4)}))
    assert [v.rule for v in encoded.dropped] == ["list has 4 items; the cap is 3"]


@pytest.mark.parametrize("report_id", [0, -5, True, 1.5])
def test_report_id_must_be_a_positive_integer(report_id: Any) -> None:
    with pytest.raises(ReportError, match="report_id"):
        Encoder({}).encode(Report(report_id))


def test_negative_counter_is_an_error_of_our_own_code() -> None:
    with pytest.raises(ReportError, match=r"network_stats\.bytes_in: must not be negative"):
        Encoder({}).encode(Report(1, standard={"network_stats": NetworkStats(-1, 0, 0, 0)}))


def test_bad_remote_addr_is_refused() -> None:
    bad = Connections((Connection("fd00::1:22"),))
    with pytest.raises(ReportError, match="remote_addr"):
        Encoder({}).encode(Report(1, standard={"tcp_connections": bad}))


def test_report_is_kept_under_the_payload_limit_by_halving_lists() -> None:
    conns = tuple(Connection(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:{1000 + i % 5000}", 22, "eth0") for i in range(5000))
    ports = tuple(ListeningPort(p, "eth0") for p in range(1, 5001))
    report = Report(1, standard={"tcp_connections": Connections(conns), "listening_tcp_ports": ListeningPorts(ports)})
    for fmt in ("json", "cbor"):
        encoded = Encoder({}, fmt=fmt, max_list_items=5000).encode(report)
        assert len(encoded.payload) <= MAX_PAYLOAD_BYTES
        document = to_long(decode(encoded.payload)[0])
        assert document["metrics"]["tcp_connections"]["established_connections"]["total"] == 5000
        assert document["metrics"]["listening_tcp_ports"]["total"] == 5000
        assert 0 < len(document["metrics"]["listening_tcp_ports"]["ports"]) < 5000


def test_one_custom_metric_over_the_payload_limit_is_left_out_and_the_rest_goes() -> None:
    """AWS IoT Core's MQTT payload limit is 128 KiB (131072 bytes): 450 strings of 300 characters exceed it
    on their own, under the default max_list_items of 500. The report still goes, without that metric."""
    big = tuple(f"{i:03d}" + "x" * 297 for i in range(450))
    mid = tuple("y" * 100 for _ in range(200))
    ports = ListeningPorts(tuple(ListeningPort(p) for p in range(1, 21)))
    report = Report(7, {"listening_tcp_ports": ports, "network_stats": NetworkStats(1, 2, 3, 4)},
                    {"big": big, "mid": mid, "cpu": 12.5})
    for fmt in ("json", "cbor"):
        encoded = Encoder(defs(big="string-list", mid="string-list", cpu="number"), fmt=fmt).encode(report)
        assert len(encoded.payload) <= 131072
        document, _ = decode(encoded.payload)
        assert set(document["custom_metrics"]) == {"mid", "cpu"}  # only the largest went
        assert document["metrics"]["network_stats"] == {"bytes_in": 1, "bytes_out": 2, "packets_in": 3, "packets_out": 4}
        assert len(document["metrics"]["listening_tcp_ports"]["ports"]) == 20
        [violation] = encoded.dropped
        assert violation.metric == "big" and "over the 131072-byte limit" in violation.rule
        assert "largest custom metric (13" in violation.rule  # its own encoded size, about 135 KB


def test_custom_metrics_are_left_out_largest_first_until_the_report_fits() -> None:
    sizes = {"a": 300, "b": 250, "c": 200, "d": 10}
    custom = {name: tuple("z" * 200 for _ in range(n)) for name, n in sizes.items()}
    encoded = Encoder(defs(**{n: "string-list" for n in sizes}), max_list_items=5000, max_payload=60_000).encode(
        Report(1, custom=custom)
    )
    assert [v.metric for v in encoded.dropped] == ["a", "b"]
    assert set(json.loads(encoded.payload)["custom_metrics"]) == {"c", "d"}


def test_a_report_that_cannot_fit_even_without_custom_metrics_raises() -> None:
    conns = Connections(tuple(Connection(f"10.0.0.{i % 250}:{i}", 1, "eth0") for i in range(1, 200)))
    with pytest.raises(ReportError, match="the limit is 50"):
        Encoder({}, max_payload=50).encode(Report(1, {"tcp_connections": conns}))


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        Encoder({}, fmt="xml")


# -- round trip: encode, decode, validate, compare ------------------------------------------------

_finite = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
_plain = st.from_regex(r"[A-Za-z0-9:_\-/.]{1,20}", fullmatch=True)
_ip = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
_values: Mapping[str, Any] = {
    "number": _finite,
    "number-list": st.lists(_finite, max_size=20).map(tuple),
    "string-list": st.lists(_plain, max_size=20).map(tuple),
    "ip-address-list": st.lists(_ip, max_size=20).map(tuple),
}


@st.composite
def reports(draw: Any) -> Any:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True), min_size=1, max_size=6, unique=True))
    types = {name: draw(st.sampled_from(sorted(_values))) for name in names}
    values = {name: draw(_values[t]) for name, t in types.items()}
    return draw(st.integers(1, 2**53)), types, values


@settings(max_examples=150, deadline=None)
@given(reports(), st.sampled_from(["json", "cbor"]), st.sampled_from(["long", "short"]))
def test_round_trip_all_four_custom_types(case: Any, fmt: str, key_names: str) -> None:
    report_id, types, values = case
    encoded = Encoder(defs(**types), fmt=fmt, key_names=key_names).encode(Report(report_id, custom=values))
    assert encoded.dropped == ()
    document, detected = decode(encoded.payload)
    assert detected == fmt
    assert validate_document(document) == []
    long_doc = to_long(document)
    assert long_doc["header"]["report_id"] == report_id
    for name, mtype in types.items():
        (wrapped,) = long_doc["custom_metrics"][name]
        (key, got), = wrapped.items()
        assert key == MetricType(mtype).value_key
        sent = values[name]
        if mtype == "number":
            assert got == pytest.approx(sent, rel=1e-14)
        elif mtype == "number-list":
            assert got == pytest.approx(list(sent), rel=1e-14)
        else:
            assert got == list(sent)


def test_cbor_is_smaller_than_json_and_short_smaller_than_long() -> None:
    conns = tuple(Connection(f"10.0.0.{i}:5{i:04d}", 22, "eth0") for i in range(50))
    ports = tuple(ListeningPort(1000 + i, "eth0") for i in range(20))
    report = Report(1, standard={"tcp_connections": Connections(conns), "listening_tcp_ports": ListeningPorts(ports)})
    size = {(f, k): len(Encoder({}, f, k).encode(report).payload) for f in ("json", "cbor") for k in ("long", "short")}
    assert size["cbor", "short"] < size["cbor", "long"] < size["json", "long"]
    assert size["cbor", "short"] < size["json", "short"]
    assert cbor2.loads(Encoder({}, "cbor", "short").encode(report).payload)["hed"]["v"] == "1.0"
