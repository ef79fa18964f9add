"""The document validator behind `validate`: documented examples pass, documented mistakes fail."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.report.document import DecodeError, decode, key_style, to_long, validate_document

# The developer guide's long-name example (report id repaired: the docs' own is garbled).
DOCS_LONG = {
    "header": {"report_id": 1530304554, "version": "1.0"},
    "metrics": {
        "listening_tcp_ports": {"ports": [{"interface": "eth0", "port": 24800}, {"interface": "eth0", "port": 22}], "total": 2},
        "listening_udp_ports": {"ports": [{"interface": "eth0", "port": 5353}, {"interface": "eth0", "port": 67}], "total": 2},
        "network_stats": {"bytes_in": 29358693495, "bytes_out": 26485035, "packets_in": 10013573555, "packets_out": 11382615},
        "tcp_connections": {
            "established_connections": {
                "connections": [
                    {"local_interface": "eth0", "local_port": 80, "remote_addr": "192.168.0.1:8000"},
                    {"local_interface": "eth0", "local_port": 80, "remote_addr": "192.168.0.1:8000"},
                ],
                "total": 2,
            }
        },
    },
    "custom_metrics": {
        "MyMetricOfType_Number": [{"number": 1}],
        "MyMetricOfType_NumberList": [{"number_list": [1, 2, 3]}],
        "MyMetricOfType_StringList": [{"string_list": ["value_1", "value_2"]}],
        "MyMetricOfType_IpList": [{"ip_list": ["172.0.0.0", "172.0.0.10"]}],
    },
}

DOCS_SHORT = {
    "hed": {"rid": 1530305228, "v": "1.0"},
    "met": {
        "tp": {"pts": [{"if": "eth0", "pt": 24800}, {"if": "eth0", "pt": 22}], "t": 2},
        "up": {"pts": [{"if": "eth0", "pt": 5353}, {"if": "eth0", "pt": 67}], "t": 2},
        "ns": {"bi": 29359307173, "bo": 26490711, "pi": 10014664133, "po": 11387615},
        "tc": {"ec": {"cs": [{"li": "eth0", "lp": 80, "rad": "192.168.0.1:8000"}], "t": 1}},
    },
    "cmet": {"MyMetricOfType_Number": [{"number": 1}]},
}


def test_documented_examples_are_valid() -> None:
    assert validate_document(DOCS_LONG) == []
    assert validate_document(DOCS_SHORT) == []
    assert key_style(DOCS_LONG) == "long" and key_style(DOCS_SHORT) == "short"


def test_to_long_maps_short_keys_but_not_metric_names() -> None:
    long_doc = to_long(DOCS_SHORT)
    assert long_doc["header"] == {"report_id": 1530305228, "version": "1.0"}
    assert long_doc["metrics"]["tcp_connections"]["established_connections"]["connections"][0]["remote_addr"] == "192.168.0.1:8000"
    assert long_doc["custom_metrics"] == {"MyMetricOfType_Number": [{"number": 1}]}
    assert validate_document(long_doc) == []


def _paths(document: Any) -> list[str]:
    return [f"{v.path}: {v.rule}" for v in validate_document(document)]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["custom_metrics"].__setitem__("m", {"number": 1}), "custom_metrics.m: a custom value must be an array"),
        (lambda d: d["custom_metrics"].__setitem__("m", [{"number": True}]), "custom_metrics.m[0].number: a boolean is not a number"),
        (lambda d: d["custom_metrics"].__setitem__("m", [{"number": 1}, {"number": 2}]), "custom_metrics.m: a custom value must be an array"),
        (lambda d: d["custom_metrics"].__setitem__("m", [{"numbers": [1]}]), "custom_metrics.m[0].numbers: unknown value key"),
        (lambda d: d["custom_metrics"].__setitem__("m", [{"string_list": ["a b"]}]), "custom_metrics.m[0].string_list[0]: character ' '"),
        (lambda d: d["custom_metrics"].__setitem__("m", [{"ip_list": ["1.2.3.4/8"]}]), "custom_metrics.m[0].ip_list[0]: is not a valid"),
        (lambda d: d["custom_metrics"].__setitem__("aws:x", [{"number": 1}]), "custom_metrics.aws:x: not a valid custom metric name"),
        (lambda d: d["header"].__setitem__("version", 1.0), 'header.version: must be the string "1.0"'),
        (lambda d: d["header"].pop("report_id"), "header.report_id: required key is missing"),
        (lambda d: d["header"].__setitem__("report_id", "17"), "header.report_id: must be a positive integer"),
        (lambda d: d["metrics"]["listening_tcp_ports"]["ports"][0].__setitem__("port", 70000), "metrics.listening_tcp_ports.ports[0].port: port must be in 1..65535"),
        (lambda d: d["metrics"]["network_stats"].__setitem__("bytes_in", -1), "metrics.network_stats.bytes_in: must not be negative"),
        (lambda d: d["metrics"]["tcp_connections"]["established_connections"]["connections"][0].__setitem__("remote_addr", "fd00::1:80"), "remote_addr: is not IPv4:port"),
        (lambda d: d["metrics"].__setitem__("tp", {}), "metrics.tp: unknown key (a short key name: long and short names must not be mixed)"),
        (lambda d: (d.pop("metrics"), d.pop("custom_metrics")), ": a report needs metrics or custom_metrics"),
    ],
)
def test_documented_mistakes_are_caught(mutate: Any, expected: str) -> None:
    document = json.loads(json.dumps(DOCS_LONG))
    mutate(document)
    found = _paths(document)
    assert any(expected in line for line in found), found


def test_mixed_root_keys_are_refused() -> None:
    assert _paths({"header": {"report_id": 1, "version": "1.0"}, "met": {}})[0].startswith(": cannot tell long from short")


def test_payload_size_and_list_cap() -> None:
    assert any("payload is" in p for p in [str(v) for v in validate_document(DOCS_LONG, payload_size=200_000)])
    found = _paths({**DOCS_LONG, "custom_metrics": {"m": [{"number_list": [1, 2, 3]}]}})
    assert found == []
    capped = [str(v) for v in validate_document({**DOCS_LONG, "custom_metrics": {"m": [{"number_list": [1, 2, 3]}]}}, max_list_items=2)]
    assert any("the cap is 2" in line for line in capped)


def test_decode_detects_json_and_cbor() -> None:
    assert decode(json.dumps(DOCS_SHORT).encode()) == (DOCS_SHORT, "json")
    assert decode(cbor2.dumps(DOCS_SHORT)) == (DOCS_SHORT, "cbor")
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode(b"{oops")
    with pytest.raises(DecodeError):
        decode(b"\xff\xff\xff")


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=30))
def test_validator_never_crashes_on_arbitrary_documents(document: Any) -> None:
    for violation in validate_document(document):
        assert isinstance(violation.path, str) and violation.rule


def test_deeply_nested_json_is_a_decode_error_not_a_recursion_error() -> None:
    # Found by the fault campaign (benchmarks/faults/replies.py, generated malformed replies).
    with pytest.raises(DecodeError):
        decode(b"[" * 100_000)


def test_cbor_with_bytes_after_the_report_is_refused_like_json() -> None:
    payload = cbor2.dumps(DOCS_LONG)
    assert decode(payload)[0] == DOCS_LONG
    for trailer in (b"\x00", cbor2.dumps(DOCS_LONG)):
        with pytest.raises(DecodeError, match="after the report"):
            decode(payload + trailer)
    with pytest.raises(DecodeError):
        decode(json.dumps(DOCS_LONG).encode() + b"{}")


@pytest.mark.parametrize(("report_id", "ok"), [(2**63 - 1, True), (2**63, False), (10**30, False), (0, False)])
def test_report_ids_must_fit_a_signed_64_bit_integer(report_id: int, ok: bool) -> None:
    document = {**DOCS_LONG, "header": {"report_id": report_id, "version": "1.0"}}
    for payload in (cbor2.dumps(document), json.dumps(document).encode()):
        problems = validate_document(decode(payload)[0])
        assert (problems == []) is ok, problems
