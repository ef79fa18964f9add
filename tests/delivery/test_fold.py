"""agent/outbox/fold.py: rewriting a stored payload with a new id and summed network deltas."""

from __future__ import annotations

import cbor2

from agent.outbox.fold import rewrite
from agent.report.document import decode
from agent.report.model import NetworkStats


def test_rewrite_keeps_short_keys_and_cbor() -> None:
    payload = cbor2.dumps({"hed": {"rid": 1, "v": "1.0"}, "met": {"ns": {"bi": 1, "bo": 1, "pi": 1, "po": 1}}})
    doc, fmt = decode(rewrite(payload, 9, NetworkStats(5, 6, 7, 8)))
    assert fmt == "cbor" and doc == {"hed": {"rid": 9, "v": "1.0"}, "met": {"ns": {"bi": 5, "bo": 6, "pi": 7, "po": 8}}}
