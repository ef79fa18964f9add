"""`defender-agent check`: identities the service or the broker would refuse stop at load, exit 78, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import plain_env

CONFIG = """\
thing_name: {thing}
mqtt:
  endpoint: 127.0.0.1
  client_id: {client}
  cert: /nonexistent/c.pem
  key: /nonexistent/k.pem
  ca: /nonexistent/ca.pem
state_dir: {state}
"""


@pytest.mark.parametrize(
    ("thing", "client", "line"),
    [
        ("gw+1", "ok-id", "agent.yaml:1: thing_name: 'gw+1' must be 1 to 128 of A-Z a-z 0-9 : _ -"),
        ("'gw 1'", "ok-id", "agent.yaml:1: thing_name: 'gw 1' must be 1 to 128"),
        ("gw-1", "'gw/1'", "agent.yaml:4: mqtt.client_id: 'gw/1' must not contain + # /"),
    ],
)
def test_identities_the_service_refuses_exit_78(tmp_path: Path, thing: str, client: str, line: str) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(thing=thing, client=client, state=tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(config)], check=False, capture_output=True,
                          text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 78
    assert line in done.stderr.replace(str(config), "agent.yaml")
    assert "Traceback" not in done.stderr
