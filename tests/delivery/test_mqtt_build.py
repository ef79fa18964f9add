"""Building the awscrt clients without awsiotsdk, no broker: TLS context, keep-alive range, ALPN, Debian's awscrt.

One code path must work from Debian bookworm's python3-awscrt 0.16.8 to the newest awscrt
(docs/INSTALL.md, "Why it works this way"); the last test runs the same
construction under /usr/bin/python3 with Debian's packages when they are installed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import queue
import subprocess
from pathlib import Path

import pytest

from agent.config.model import MqttConfig
from agent.errors import ConfigError
from agent.mqtt import link as link_mod
from agent.mqtt.link import Mqtt5Link, Mqtt311Link, check_tls_files, make_link, tls_context
from devkit.certs import Pki
from tests.delivery.conftest import make_config
from tests.procs import plain_env

LOG = logging.getLogger("agent.test.mqtt_build")
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def mqtt_config(pki: Pki, tmp_path: Path, **changes: object) -> MqttConfig:
    return dataclasses.replace(make_config(pki, 8883, tmp_path / "state").mqtt, **changes)  # type: ignore[arg-type]


def test_the_tls_context_builds_from_the_test_pki(pki: Pki, tmp_path: Path) -> None:
    mqtt = mqtt_config(pki, tmp_path)
    assert tls_context(mqtt.cert, mqtt.key, mqtt.ca, mqtt.port) is not None
    check_tls_files(mqtt, "agent.yaml")  # no ConfigError


@pytest.mark.parametrize("broken", ["cert", "key", "ca"])
def test_unusable_files_are_the_tls_setup_config_error(pki: Pki, tmp_path: Path, broken: str) -> None:
    garbage = tmp_path / f"garbage.{broken}"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnotpem\n-----END CERTIFICATE-----\n")
    mqtt = mqtt_config(pki, tmp_path, **{broken: str(garbage)})
    with pytest.raises(ConfigError, match="mqtt: cannot set up TLS from cert"):
        check_tls_files(mqtt, "agent.yaml")
    for protocol in ("mqtt5", "mqtt311"):
        config = dataclasses.replace(mqtt, protocol=type(mqtt.protocol)(protocol))
        with pytest.raises(ConfigError, match="cannot set up TLS") as caught:
            make_link(config, "gw", queue.SimpleQueue(), LOG, source="agent.yaml")
        assert "notpem" not in str(caught.value)


@pytest.mark.parametrize("keep_alive", [5, 30, 1200])
def test_every_keep_alive_in_range_constructs_both_links(pki: Pki, tmp_path: Path, keep_alive: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """awscrt 0.16.8 raises RuntimeError 0 (AWS_ERROR_SUCCESS) for keep-alive <= 30 s with its 30 s ping timeout,
    so the ping timeout is always set, below the keep-alive (checked here on any awscrt)."""
    from awscrt import mqtt5

    options = []
    made = mqtt5.Client

    def spy(client_options: object) -> object:
        options.append(client_options)
        return made(client_options)

    monkeypatch.setattr(mqtt5, "Client", spy)
    mqtt = mqtt_config(pki, tmp_path, keep_alive=float(keep_alive))
    assert isinstance(Mqtt5Link(mqtt, "gw", queue.SimpleQueue(), LOG), Mqtt5Link)
    (built,) = options
    assert built.connect_options.keep_alive_interval_sec == keep_alive
    assert built.ping_timeout_ms is not None and built.ping_timeout_ms < keep_alive * 1000
    assert built.ping_timeout_ms == link_mod.mqtt5_ping_timeout_ms(keep_alive) == min(30_000, keep_alive * 500)
    assert built.connect_options.username is None  # no SDK metrics from us in the username
    assert isinstance(Mqtt311Link(mqtt, "gw", queue.SimpleQueue(), LOG), Mqtt311Link)


def test_port_443_asks_for_the_aws_iot_mqtt_alpn(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from awscrt import io as crt_io

    seen = []
    made = crt_io.ClientTlsContext

    def spy(options: object) -> object:
        seen.append(getattr(options, "alpn_list", None))
        return made(options)

    monkeypatch.setattr(crt_io, "ClientTlsContext", spy)
    mqtt = mqtt_config(pki, tmp_path)
    for port in (443, 8883):
        tls_context(mqtt.cert, mqtt.key, mqtt.ca, port)
    assert seen == [["x-amzn-mqtt-ca"] if crt_io.is_alpn_available() else None, None]


# The same construction under Debian's /usr/bin/python3 and python3-awscrt (bookworm: 0.16.8).
DEBIAN_PROBE = """
import json, queue, logging, sys
import awscrt
from agent.config.model import MqttConfig, MqttProtocol
from agent.mqtt.link import Mqtt5Link, Mqtt311Link, check_tls_files, tls_context
cert, key, ca = sys.argv[1:4]
out = {"awscrt": awscrt.__file__, "python": sys.executable}
for keep_alive in (5, 30, 1200):
    for protocol, kind in ((MqttProtocol.MQTT5, Mqtt5Link), (MqttProtocol.MQTT311, Mqtt311Link)):
        mqtt = MqttConfig("127.0.0.1", 8883, None, protocol, cert, key, ca, 10.0, float(keep_alive))
        try:
            kind(mqtt, "gw", queue.SimpleQueue(), logging.getLogger("probe"))
            out[f"{protocol.value}/{keep_alive}"] = "ok"
        except Exception as exc:
            out[f"{protocol.value}/{keep_alive}"] = f"{type(exc).__name__}: {exc}"
check_tls_files(mqtt, "probe")
tls_context(cert, key, ca, 443)
print(json.dumps(out))
"""


@functools.lru_cache(maxsize=1)
def debian_libraries() -> str:
    """Why the Debian probe cannot run here, or '' when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} does not exist"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import awscrt, psutil, cbor2, yaml"], capture_output=True,
                           text=True, timeout=60, check=False, cwd="/", env=plain_env())
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} lacks Debian's python3-awscrt/psutil/cbor2/yaml ({last})"
    return ""


@pytest.mark.skipif(bool(debian_libraries()), reason=debian_libraries() or "runs")
def test_the_same_construction_runs_on_debians_awscrt(pki: Pki) -> None:
    device = pki.client("debian-probe")
    done = subprocess.run([SYSTEM_PYTHON, "-c", DEBIAN_PROBE, str(device.cert), str(device.key), str(pki.ca)],
                          capture_output=True, text=True, timeout=120, check=False, cwd="/",
                          env=plain_env(PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out.pop("awscrt").startswith("/usr/lib/python3/"), "not Debian's awscrt"
    assert out.pop("python") == SYSTEM_PYTHON
    assert out == {f"{p}/{k}": "ok" for k in (5, 30, 1200) for p in ("mqtt5", "mqtt311")}
