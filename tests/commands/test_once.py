"""`defender-agent once` on this machine: a valid report with every standard group and the system metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("placeholder\n")
    text = (ROOT / "config" / "agent.example.yaml").read_text()
    text = text.replace("/etc/defender-agent/certs/device.pem.crt", str(tmp_path / "cert.pem"))
    text = text.replace("/etc/defender-agent/certs/private.pem.key", str(tmp_path / "key.pem"))
    text = text.replace("/etc/defender-agent/certs/AmazonRootCA1.pem", str(tmp_path / "ca.pem"))
    text = text.replace("# state_dir: /var/lib/defender-agent", f"state_dir: {tmp_path / 'state'}")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def run_agent(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", *args],
        capture_output=True, timeout=120, check=False,
    )


def test_once_on_the_example_config_prints_a_valid_full_report(example_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_agent("once", "--config", str(example_config), "--output", str(out), "--baseline", "0.2")
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    document = json.loads(out.read_bytes())
    assert set(document["metrics"]) == {"listening_tcp_ports", "listening_udp_ports", "tcp_connections", "network_stats"}
    system = {"cpu_usage", "cpu_core_usage", "load_average", "memory_used_percent", "memory_available_bytes",
              "uptime_seconds", "process_count", "logged_in_users", "disk_root_used_percent", "agent_open_fds"}
    assert system <= set(document["custom_metrics"])
    assert document["custom_metrics"]["process_count"][0]["number"] > 1
    checked = run_agent("validate", str(out))
    assert checked.returncode == 0, checked.stdout.decode()
    # once reads counter state but never writes it (the service's next delta stays whole)
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_once_to_a_pipe_writes_the_raw_payload_in_the_configured_format(example_config: Path) -> None:
    text = example_config.read_text().replace("  # format: json", "  format: cbor").replace("  # key_names: long", "  key_names: short")
    example_config.write_text(text)
    result = run_agent("once", "--config", str(example_config), "--baseline", "0")
    assert result.returncode == 0, result.stderr.decode()
    import cbor2

    document = cbor2.loads(result.stdout)
    assert document["hed"]["v"] == "1.0" and "tp" in document["met"]


def test_once_with_a_failing_collector_still_reports_the_rest(example_config: Path, tmp_path: Path) -> None:
    script = tmp_path / "fails.sh"
    script.write_text("#!/bin/sh\necho 'sensor bus timeout' >&2\nexit 3\n")
    script.chmod(0o755)
    text = example_config.read_text().replace(
        "collectors:\n",
        f"collectors:\n  - type: exec\n    name: flaky\n    command: [{script}]\n    metric: flaky_value\n    metric_type: number\n",
        1,
    ).replace("custom_metrics:\n", "custom_metrics:\n  flaky_value: {type: number}\n", 1)
    example_config.write_text(text)
    out = tmp_path / "r.json"
    result = run_agent("once", "--config", str(example_config), "--output", str(out), "--baseline", "0")
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert stderr.count("flaky") == 1, stderr  # logged once, with its name
    assert "sensor bus timeout" in stderr
    document = json.loads(out.read_bytes())
    assert "flaky_value" not in document["custom_metrics"]
    assert "cpu_usage" in document["custom_metrics"]


def test_an_output_file_it_cannot_write_is_one_line_and_exit_74(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("thing_name: gw\nmqtt: {endpoint: 127.0.0.1, cert: /c, key: /k, ca: /a}\n"
                      f"state_dir: {tmp_path / 'state'}\n")
    target = tmp_path / "missing-dir" / "report.json"
    done = subprocess.run([sys.executable, "-m", "agent", "once", "--config", str(config), "-o", str(target),
                           "--baseline", "0"], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 74 and "Traceback" not in done.stderr
    assert f"defender-agent: No such file or directory: {target}" in done.stderr.splitlines()
