"""`defender-agent status` reads only state_dir from the config, so it answers while the rest is broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.outbox.store import Outbox, Pending
from tests.procs import plain_env

ROOT = Path(__file__).resolve().parents[2]


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "status", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=str(ROOT), env=plain_env())


def test_status_answers_from_the_state_dir_of_a_config_that_check_refuses(tmp_path: Path) -> None:
    import logging

    state = tmp_path / "state"
    box = Outbox.open(state, logging.getLogger("t"))
    box.add(Pending.new(41, "json", b"{}", 1.0))
    box.close()
    config = tmp_path / "agent.yaml"
    config.write_text(f"thing_name: gw\nreport:\n  interval: banana\nstate_dir: {state}\n")  # no mqtt either
    result = status("--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert [p["report_id"] for p in json.loads(result.stdout)["pending"]] == [41]


def test_an_unusable_state_dir_or_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("thing_name: gw\nstate_dir: [1, 2]\n")
    bad = status("--config", str(config))
    assert bad.returncode == 78 and "Traceback" not in bad.stderr, bad.stderr
    assert f"{config}:2: state_dir:" in bad.stderr, bad.stderr
    missing = status("--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 78 and "file not found" in missing.stderr, missing.stderr
