"""The agent.yaml the remote-config tests lay desired states onto (loopback broker: short intervals allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from agent.config.yamlsrc import read_yaml

BASE = """\
thing_name: gw-remote
mqtt:
  endpoint: 127.0.0.1
  port: 8883
  cert: /etc/defender-agent/device.pem
  key: /etc/defender-agent/device.key
  ca: /etc/defender-agent/ca.pem
report:
  interval: 300s
  jitter: 0s
state_dir: {state}
{collectors}{extra}"""

COLLECTORS = """\
collectors:
  - type: listening_ports
  - type: exec
    name: cmd
    command: [/bin/true]
    metric: cmd_value
    metric_type: number
custom_metrics:
  cmd_value: number
"""
SHADOW = "shadow:\n  name: fleet\n  remote_config: true\n"


def base_text(state: Path, extra: str = SHADOW) -> str:
    return BASE.format(state=state, collectors=COLLECTORS, extra=extra)


def base_raw(state: Path, extra: str = SHADOW) -> Tuple[Dict[str, Any], str]:
    """agent.yaml's raw mapping, and the file name the configs say they came from."""
    raw, _ = read_yaml(base_text(state, extra), str(state.parent / "agent.yaml"))
    return raw, str(state.parent / "agent.yaml")
