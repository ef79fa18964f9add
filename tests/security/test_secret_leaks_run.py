"""`defender-agent run` as a real process never shows key or certificate bytes.

Complements test_secret_leaks.py (which covers `check`): the service is started
with an unsafe key, with keys awscrt refuses to load, and with a well-formed
identity the broker refuses during the TLS handshake. Everything it wrote
(stdout, stderr, every file in its state_dir, `status --json`) is searched for
the key's and certificate's bytes: the canary strings of a garbage PEM, or the
base64 lines and raw DER of a real key.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from agent.errors import EX_CONFIG
from devkit.broker import Broker, find_mosquitto, free_port
from devkit.certs import Pki, make_pki
from tests.delivery.conftest import config_text
from tests.security.gateway_files import GatewayFiles, make_gateway_files
from tests.security.test_secret_leaks import agent_command

pytestmark = pytest.mark.timeout(180)


def pem_secrets(path: Path) -> List[bytes]:
    """Byte strings that would show a PEM file leaked: each base64 line, and slices of the decoded DER."""
    lines = [ln.strip() for ln in path.read_text(encoding="ascii").splitlines() if ln and not ln.startswith("-")]
    out = [ln.encode() for ln in lines if len(ln) >= 16]
    try:
        der = base64.b64decode("".join(lines), validate=True)
    except ValueError:
        der = b""
    out += [der[i : i + 16] for i in range(8, max(8, len(der) - 16), 16)]
    return out


def canaries(gw: GatewayFiles) -> List[bytes]:
    return [gw.key_canary.encode(), gw.cert_canary.encode(), b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY"]


def state_bytes(state: Path) -> List[Tuple[str, bytes]]:
    if not state.exists():
        return []
    return [(str(p), p.read_bytes()) for p in sorted(state.rglob("*")) if p.is_file()]


def assert_nothing_leaked(secrets: List[bytes], output: bytes, state: Path, status: bytes = b"") -> None:
    places = [("stdout/stderr", output), ("status --json", status), *state_bytes(state)]
    for where, data in places:
        for secret in secrets:
            assert secret not in data, f"secret bytes {secret[:12]!r}... leaked into {where}"


def run_agent(config: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")}
    return subprocess.run([*agent_command(), "run", "--config", str(config), *extra], capture_output=True,
                          env=env, timeout=timeout, check=False)


def status_json(config: Path) -> bytes:
    result = subprocess.run([*agent_command(), "status", "--json", "--config", str(config)], capture_output=True,
                            timeout=60, check=False)
    return result.stdout + result.stderr


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="defender-agent-run-canary-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Pki, Pki]:
    """The broker's PKI and a foreign one (a valid identity the broker does not trust)."""
    return make_pki(tmp_path_factory.mktemp("pki")), make_pki(tmp_path_factory.mktemp("foreign"), "foreign CA")


def write_config(root: Path, pki: Pki, port: int, cert: Path, key: Path) -> Tuple[Path, Path]:
    state = root / "state"
    text = config_text(pki, port, state)
    device = pki.client("test-gw")
    text = text.replace(f"cert: {device.cert}", f"cert: {cert}").replace(f"key: {device.key}", f"key: {key}")
    config = root / "agent.yaml"
    config.write_text(text, encoding="utf-8")
    os.chmod(config, 0o644)
    return config, state


def test_unsafe_key_mode_exits_78_naming_path_mode_and_fix(root: Path, pkis: Tuple[Pki, Pki]) -> None:
    gw = make_gateway_files(root / "gw")
    os.chmod(gw.key, 0o644)
    config, state = write_config(root, pkis[0], free_port(), gw.cert, gw.key)
    result = run_agent(config)
    stderr = result.stderr.decode()
    assert result.returncode == EX_CONFIG, stderr
    assert f"{gw.key}: private key is readable or writable by its group and others (mode 0644)" in stderr
    assert f"Fix: chmod 600 {gw.key}" in stderr
    assert "Traceback" not in stderr
    assert_nothing_leaked(canaries(gw), result.stdout + result.stderr, state)


@pytest.mark.parametrize("which", ["garbage_pem_key", "key_of_another_certificate"])
def test_key_awscrt_refuses_exits_78_without_bytes(root: Path, pkis: Tuple[Pki, Pki], which: str) -> None:
    pki = pkis[0]
    gw = make_gateway_files(root / "gw")
    device = pki.client("test-gw")
    if which == "garbage_pem_key":  # well-formed PEM armour around bytes that are no key
        key = gw.key
        secrets = canaries(gw)
    else:  # a real key, but not the certificate's
        key = root / "other.key"
        shutil.copy(pki.client("someone-else").key, key)
        os.chmod(key, 0o600)
        secrets = pem_secrets(key)
    config, state = write_config(root, pki, free_port(), device.cert, key)
    result = run_agent(config)
    stderr = result.stderr.decode()
    assert result.returncode == EX_CONFIG, stderr
    assert "mqtt: cannot set up TLS from cert" in stderr and str(key) in stderr
    assert "Traceback" not in stderr
    assert_nothing_leaked(secrets + pem_secrets(device.cert), result.stdout + result.stderr, state,
                          status_json(config))


@pytest.mark.broker
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_identity_the_broker_refuses_leaks_nothing(root: Path, pkis: Tuple[Pki, Pki]) -> None:
    pki, foreign = pkis
    broker = Broker(root / "broker", pki)
    broker.start()
    stranger = foreign.client("test-gw")  # valid pair, signed by a CA the broker does not trust
    key = root / "device.key"
    shutil.copy(stranger.key, key)
    os.chmod(key, 0o600)
    config, state = write_config(root, pki, broker.port, stranger.cert, key)
    log_path = root / "agent.log"
    env = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")}
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*agent_command(), "run", "--config", str(config)], stdout=log, stderr=log,
                                    env=env)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and b"Cannot connect to" not in log_path.read_bytes():
                    assert proc.poll() is None, log_path.read_text()
                    time.sleep(0.2)
                time.sleep(2.0)  # let it retry a few times: repeats must not add lines or bytes
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    finally:
        broker.stop()
    output = log_path.read_bytes()
    assert b"Cannot connect to 127.0.0.1:%d" % broker.port in output, output.decode()
    assert proc.returncode == 0, output.decode()
    assert b"Traceback" not in output
    assert_nothing_leaked(pem_secrets(key) + pem_secrets(stranger.cert), output, state, status_json(config))
    assert (state / "outbox.sqlite3").exists(), "the state_dir files were searched too"
