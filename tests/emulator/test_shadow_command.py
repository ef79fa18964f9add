"""`python -m devkit emulator` as a process serves shadows: the data-plane URL it prints, MQTT and HTTP together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from devkit.broker import Broker
from devkit.certs import Pki
from tests.delivery.conftest import ROOT
from tests.emulator.conftest import iot_data_client
from tests.emulator.shadow_device import ShadowDevice

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]


def test_emulator_prints_the_data_plane_and_links_it_to_mqtt(pki: Pki, broker: Broker) -> None:
    client = pki.client("defender-emulator")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit", "emulator", "--port", str(broker.port), "--cert", str(client.cert),
         "--key", str(client.key), "--ca", str(pki.ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT), env=dict(os.environ),
    )
    device = ShadowDevice(pki, broker.port, "gw-cmd", "defender-agent")
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("Control plane: http://127.0.0.1:"), first
        assert second.startswith("Data plane: http://127.0.0.1:"), second
        url = second.split()[2]
        device.start()
        device.request("update", {"state": {"reported": {"interval": 300}}})
        assert device.next("update/accepted")["version"] == 1
        iot_data = iot_data_client(url)
        iot_data.update_thing_shadow(thingName="gw-cmd", shadowName="defender-agent",
                                     payload=b'{"state": {"desired": {"interval": 60}}}')
        assert device.next("update/delta")["state"] == {"interval": 60}
        got = json.loads(iot_data.get_thing_shadow(thingName="gw-cmd", shadowName="defender-agent")["payload"].read())
        assert got["state"]["delta"] == {"interval": 60} and got["version"] == 2
    finally:
        device.stop()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
