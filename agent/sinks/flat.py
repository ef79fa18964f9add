"""The `flat` document of a topic sink: one JSON object per round, made for AWS IoT rules.

Rules' SQL reads fields by path (``SELECT metrics.cpu_usage FROM ...``), so every
value is plain, without the report document's one-element arrays::

    {"thing_name": "gw-1", "report_id": 17, "timestamp": 1764590400000,
     "metrics": {"aws:listening-tcp-ports": [22, 8883], "aws:num-established-tcp-connections": 3,
                 "aws:all-bytes-out": 1234, "cpu_usage": 12.5, "load_average": [0.1, 0.2, 0.3]}}

Device-side metrics go under their cloud names (``aws:...``, as ``values`` and
ListMetricValues name them), custom metrics under their own names, in the order of
:class:`agent.report.cloud.CheckedRound`. A rule reads a name with a colon or dash
in quotes: ``SELECT metrics."aws:all-bytes-out" ...``.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from agent.report.cloud import CheckedRound, plain


def flat_document(checked: CheckedRound) -> Dict[str, Any]:
    return {
        "thing_name": checked.thing_name,
        "report_id": checked.report_id,
        "timestamp": checked.timestamp_ms,
        "metrics": {name: plain(value) for name, value in checked.values.items()},
    }


def encode_flat(checked: CheckedRound) -> bytes:
    return json.dumps(flat_document(checked), separators=(",", ":"), allow_nan=False).encode("utf-8")
