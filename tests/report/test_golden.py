"""Golden files: the encoder's exact bytes for each case under tests/fixtures/report/.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/report/test_golden.py`
and review the diff.
"""

from __future__ import annotations

import json
import os

import cbor2
import pytest

from agent.report.document import decode, validate_document

from .goldens import CASES_DIR, case_names, load_case


@pytest.mark.parametrize("case", case_names())
def test_golden_bytes(case: str) -> None:
    report, json_encoder, extra = load_case(case)
    cbor_encoder = extra["cbor"]
    produced = {"json": json_encoder.encode(report), "cbor": cbor_encoder.encode(report)}
    for fmt, encoded in produced.items():
        path = CASES_DIR / case / f"expected.{fmt}"
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_bytes(encoded.payload)
        assert encoded.payload == path.read_bytes(), f"{case}: {fmt} bytes differ from {path}"
        assert sorted(v.metric for v in encoded.dropped) == sorted(extra["spec"]["dropped"])
        document, detected = decode(encoded.payload)
        assert detected == fmt
        assert validate_document(document) == []
    # JSON and CBOR carry the same document.
    assert json.loads(produced["json"].payload) == cbor2.loads(produced["cbor"].payload)


def test_spec_example_custom_block_is_exactly_as_documented() -> None:
    report, encoder, _ = load_case("spec-example-long")
    document = json.loads(encoder.encode(report).payload)
    assert document["custom_metrics"] == {
        "cpu_usage": [{"number": 37.5}],
        "core_load": [{"number_list": [12.0, 40.5]}],
        "services": [{"string_list": ["sshd", "mosquitto"]}],
        "peers": [{"ip_list": ["10.0.0.2", "fd00::1"]}],
    }
    assert document["header"] == {"report_id": 1700000000, "version": "1.0"}


def test_capped_lists_keep_a_sorted_subset_and_the_true_total() -> None:
    report, encoder, _ = load_case("capped-lists")
    encoded = encoder.encode(report)
    document = json.loads(encoded.payload)
    assert document["met"]["tp"] == {"pts": [{"pt": 22}, {"pt": 80}, {"pt": 443}], "t": 5}
    assert [c["rad"] for c in document["met"]["tc"]["ec"]["cs"]] == ["10.0.0.1:1", "10.0.0.3:1", "10.0.0.5:1"]
    assert document["met"]["tc"]["ec"]["t"] == 4
    assert set(encoded.capped) == {
        "metrics.listening_tcp_ports.ports",
        "metrics.tcp_connections.established_connections.connections",
    }
