"""`python -m devkit emulator` as a process: responder and control plane in one command, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import boto3
import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from tests.delivery.conftest import ROOT, config_text
from tests.procs import plain_env

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]


def test_emulator_serves_the_control_plane_and_stops_on_sigterm(pki: Pki, broker: Broker) -> None:
    client = pki.client("defender-emulator")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit", "emulator", "--port", str(broker.port), "--cert", str(client.cert),
         "--key", str(client.key), "--ca", str(pki.ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT), env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Control plane: http://127.0.0.1:"), line
        url = line.split()[2]
        iot = boto3.client("iot", endpoint_url=url, region_name="eu-west-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iot.create_custom_metric(metricName="temp_c", metricType="number", clientRequestToken="t1")
        assert iot.describe_custom_metric(metricName="temp_c")["metricType"] == "number"
        with pytest.raises(iot.exceptions.ResourceNotFoundException):
            iot.describe_custom_metric(metricName="missing")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_an_account_without_detect_end_to_end(pki: Pki, broker: Broker, tmp_path: Path) -> None:
    """`--no-detect`: bootstrap says what it means in one line, and `run` keeps publishing to a Detect that never
    answers, ends reports unanswered and names the Detect closure next to the device policy, once."""
    client = pki.client("defender-emulator")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "devkit", "emulator", "--no-detect", "--port", str(broker.port), "--cert",
         str(client.cert), "--key", str(client.key), "--ca", str(pki.ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT), env=dict(os.environ),
    )
    agent: Optional[subprocess.Popen[str]] = None
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().split()[2]
        config = tmp_path / "agent.yaml"
        config.write_text(config_text(pki, broker.port, tmp_path / "state", reply_timeout=1, retry_max_delay=1,
                                      extra="custom_metrics:\n  cpu_usage: number\n  temp_c: number\n"))
        env = {**plain_env(), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "eu-west-1",
               "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        done = subprocess.run([sys.executable, "-m", "agent", "bootstrap", "--config", str(config),
                               "--endpoint-url", url], capture_output=True, text=True, timeout=60, env=env,
                              check=False)
        assert done.returncode == 1 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert line.startswith("defender-agent: this AWS account cannot register Device Defender Detect custom "
                               "metrics: AWS closed Detect to new customers on 2026-08-31"), line
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert agent.stdout is not None
        hint = ""
        deadline = time.monotonic() + 40
        while not hint and time.monotonic() < deadline:  # bounded: the agent's output or the deadline ends it
            out = agent.stdout.readline()
            if "No reply to the last" in out:
                hint = out
        assert "check that the device policy allows iot:Subscribe" in hint, "no hint within 40 s"
        assert "this AWS account has Device Defender Detect: AWS closed it to new customers on 2026-08-31" in hint
        assert "docs/WITHOUT-DETECT.md" in hint
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            rest, _ = agent.communicate(timeout=20)
            assert agent.returncode == 0, rest
            assert "Traceback" not in rest
        emulator.send_signal(signal.SIGTERM)
        _, stderr = emulator.communicate(timeout=20)
    assert emulator.returncode == 0, stderr
    assert "mode silent, no Detect" in stderr
