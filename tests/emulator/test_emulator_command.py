"""`python -m devkit emulator` as a process: responder and control plane in one command, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import boto3
import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from tests.delivery.conftest import ROOT

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
