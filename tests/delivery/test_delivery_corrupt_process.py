"""A damaged outbox file under a real `defender-agent run`: moved aside, counted, one clear line, and the
next report still gets through (the Outbox-level cases are in test_outbox.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

from agent.outbox.store import DB_NAME, Outbox, Pending
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from tests.delivery.conftest import AGENT_MAIN, ROOT, config_text, ledger, start_agent

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
COUNTER = "collectors:\n  - type: test_counter\n"


def _valid_outbox(state: Path) -> Path:
    box = Outbox.open(state, logging.getLogger("test"))
    box.add(Pending.new(7, "json", b"{}" * 2000, 1.0))
    box.close()
    return state / DB_NAME


def garbage(state: Path) -> None:
    (state / DB_NAME).write_bytes(os.urandom(3000) + b"not a database" * 100)


def truncated(state: Path) -> None:
    path = _valid_outbox(state)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 3)


def zeroed(state: Path) -> None:
    path = _valid_outbox(state)
    path.write_bytes(b"\0" * path.stat().st_size)


DAMAGE: Dict[str, Callable[[Path], None]] = {"garbage": garbage, "truncated": truncated, "zeroed": zeroed}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_run_moves_a_damaged_outbox_aside_and_delivers(pki: Pki, broker: Broker, responder: Responder,
                                                       tmp_path: Path, damage: str) -> None:
    state, cfg, log = tmp_path / "state", tmp_path / "agent.yaml", tmp_path / "agent.log"
    state.mkdir()
    DAMAGE[damage](state)
    damaged = (state / DB_NAME).read_bytes()
    cfg.write_text(config_text(pki, broker.port, state, extra=COUNTER))

    proc = start_agent(cfg, log, None, "--reports", "1")
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text

    moved = sorted(state.glob(f"{DB_NAME}.*.corrupt"))
    assert len(moved) == 1, sorted(p.name for p in state.iterdir())
    assert moved[0].read_bytes() == damaged, "the damaged file is kept as it was, for a post-mortem"
    lines = [ln for ln in text.splitlines() if "unreadable" in ln]
    assert len(lines) == 1, text
    assert f"Outbox {state / DB_NAME} is unreadable" in lines[0] and str(moved[0]) in lines[0], lines[0]
    assert list(ledger(state).values()) == ["accepted"], text

    result = subprocess.run([sys.executable, str(AGENT_MAIN), "status", "--json", "--config", str(cfg)],
                            capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=False)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["outbox_corrupt"] == 1
    assert status["outcomes"]["accepted"] == 1
