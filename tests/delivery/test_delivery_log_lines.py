"""What an operator reads in the journal: a real run with rejected reports and a broker restart.

Every line is one event, starts with a capital letter after ``LEVEL logger:``,
no line repeats (retries and reconnect attempts are not logged one by one),
and there is no traceback.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from tests.delivery.conftest import config_text, ledger, start_agent, stop_agent, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
def accepted(state: Path) -> int:
    return sum(1 for o in ledger(state).values() if o == "accepted")


LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: [A-Z]")


def test_log_of_rejections_and_a_broker_restart_reads_one_line_per_event(
    pki: Pki, broker: Broker, responder: Responder, tmp_path: Path
) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    cfg.write_text(config_text(pki, broker.port, state, reply_timeout=1, retry_max_delay=2,
                               extra="collectors:\n  - type: test_counter\n"))
    proc = start_agent(cfg, log)
    try:
        assert wait_until(lambda: "accepted" in ledger(state).values(), 30), log.read_text()
        responder.mode = "reject"
        assert wait_until(lambda: "rejected" in ledger(state).values(), 15), log.read_text()
        responder.mode = "normal"
        broker.restart(down_for=3.0)
        assert wait_until(lambda: "Reconnected to" in log.read_text(), 30), log.read_text()
        before = accepted(state)
        assert wait_until(lambda: accepted(state) > before, 30), log.read_text()
    finally:
        stop_agent(proc)
    text = log.read_text()
    lines = text.splitlines()
    assert "Traceback" not in text, text
    for line in lines:
        assert LINE.match(line), f"not one event per line starting with a capital letter: {line!r}"
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, f"repeated lines: {repeated}"
    rejected = [ln for ln in lines if " rejected by the service: 'InvalidPayload': 'Malformed metrics report'" in ln]
    assert rejected and all(ln.startswith("WARNING ") for ln in rejected), text
    assert sum("Connection to" in ln and " lost (" in ln for ln in lines) == 1, text
    assert sum("Cannot connect to" in ln for ln in lines) <= 2, "connect retries must not be logged one by one"
