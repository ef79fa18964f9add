"""The whole loop with real parts: bootstrap against the local control plane, the agent publishes through
mosquitto (mutual TLS) to the responder, and `values` prints exactly the custom values that were sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from agent.report.document import decode, to_long
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.controlplane import ControlPlaneServer
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.emulator.store import Store
from tests.delivery.conftest import ROOT, THING, broker, config_text, pki  # noqa: F401  (shared fixtures)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "eu-west-1"}


@pytest.fixture
def cloud(pki: Pki, broker: Broker) -> Iterator[Dict[str, Any]]:  # noqa: F811
    store = Store()
    control = ControlPlaneServer(store)
    control.start()
    emulator = pki.client("defender-emulator")
    responder = Responder(ResponderOptions("127.0.0.1", broker.port, str(emulator.cert), str(emulator.key),
                                           str(pki.ca), on_accepted=store.record_report))
    responder.start()
    try:
        yield {"store": store, "control": control, "responder": responder}
    finally:
        responder.stop()
        control.stop()


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env={**os.environ, **AWS_ENV}, check=False)


def test_bootstrap_report_and_read_back_exactly(pki: Pki, broker: Broker, cloud: Dict[str, Any],  # noqa: F811
                                                tmp_path: Path) -> None:
    reading = tmp_path / "reading.txt"
    reading.write_text("21.5\n")
    peers = tmp_path / "peers.sh"
    peers.write_text("#!/bin/sh\nprintf '10.0.0.2\\nfd00::1\\n'\n")
    peers.chmod(0o755)
    extra = f"""\
collectors:
  - type: system
    metrics: [cpu_usage, load_average, logged_in_users]
  - type: file
    path: {reading}
    metric: reading
    metric_type: number
  - type: exec
    command: [{peers}]
    metric: peers
    metric_type: ip-address-list
  - type: network_stats
    exclude_interfaces: []
custom_metrics:
  cpu_usage: {{type: number, display_name: CPU usage}}
  load_average: number-list
  logged_in_users: string-list
  reading: number
  peers: ip-address-list
"""
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(pki, broker.port, tmp_path / "state", extra=extra))
    url = cloud["control"].url

    first = agent("bootstrap", "--config", str(config), "--endpoint-url", url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Bootstrap done: 5 created" in first.stdout
    again = agent("bootstrap", "--config", str(config), "--endpoint-url", url)
    assert "Bootstrap done: 5 unchanged" in again.stdout

    run = agent("run", "--config", str(config), "--reports", "3")
    assert run.returncode == 0, run.stderr
    received = cloud["responder"].wait_for(3, 10.0)
    assert len(received) >= 3 and all(r.accepted for r in received)

    sent: Dict[str, List[Any]] = {}
    for item in received:
        document = to_long(decode(item.payload)[0])
        for name, (wrapped,) in document.get("custom_metrics", {}).items():
            (value,) = wrapped.values()
            sent.setdefault(name, []).append(value)
    assert sent["reading"] == [21.5] * len(received)
    assert sent["peers"] == [["10.0.0.2", "fd00::1"]] * len(received)

    for metric, key in (("cpu_usage", "number"), ("load_average", "numbers"), ("logged_in_users", "strings"),
                        ("reading", "number"), ("peers", "cidrs")):
        shown = agent("values", "--config", str(config), "--endpoint-url", url, "--metric", metric,
                      "--since", "10m", "--format", "json")
        assert shown.returncode == 0, shown.stderr
        values = json.loads(shown.stdout)["values"]
        assert [v["type"] for v in values] == [key] * len(sent[metric])
        assert [v["value"] for v in values] == sent[metric], metric

    table = agent("values", "--config", str(config), "--endpoint-url", url, "--metric", "reading", "--since", "10m")
    assert table.returncode == 0 and "21.5" in table.stdout and f"reading on {THING}" in table.stdout
