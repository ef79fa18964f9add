"""A device key on a PKCS#11 token (SoftHSM2): reports accepted by a real mosquitto over mutual TLS, in this
process (PyPI's awscrt) and as the installed program of each library set (PyPI's newest awscrt in the base
venv; Debian bookworm's python3-awscrt 0.16.8 under /usr/bin/python3); one Pkcs11Lib kept across reloads."""

from __future__ import annotations

import json
import logging
import queue
import socket
import subprocess
from pathlib import Path

import pytest

from agent.config.load import parse_config
from agent.config.model import Config, MqttConfig
from agent.mqtt.link import Link, Links
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.rig import ledger, wait_until
from tests.delivery.conftest import RunningService, config_text
from tests.pkcs11.conftest import PIN, Token
from tests.procs import plain_env

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = Path("/usr/bin/python3")


def token_key(token: Token, obj: str = "device-ec", pin_file: Path | None = None, library: Path | None = None,
              uri: str | None = None) -> str:
    """The config's `key:` value and the two keys after it (mqtt's last lines in the test template)."""
    return (f'"{uri or f"pkcs11:token={token.label};object={obj}"}"\n'
            f"  pkcs11_library: {library or token.library}\n"
            f"  pkcs11_pin_file: {pin_file or token.pin_file}")


def token_config(pki: Pki, token: Token, port: int, state: Path, obj: str = "device-ec", cert: Path | None = None,
                 **overrides: object) -> str:
    cert = cert or (token.rsa_cert if obj == "device-rsa" else token.ec_cert)
    return config_text(pki, port, state, cert=cert, key=token_key(token, obj), **overrides)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def debian_agent(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """This checkout's code on Debian's python3 and python3-awscrt 0.16.8 (the .deb's libraries)."""
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from agent.cli import main; main()"
    return subprocess.run([str(DEBIAN_PYTHON), "-c", code, str(ROOT), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/", env=plain_env(**env))


def has_debian_awscrt() -> bool:
    probe = subprocess.run([str(DEBIAN_PYTHON), "-c", "import awscrt.io, yaml, psutil, cbor2"], capture_output=True,
                           timeout=60, check=False, cwd="/", env=plain_env())
    return probe.returncode == 0


needs_debian = pytest.mark.skipif(not DEBIAN_PYTHON.is_file() or not has_debian_awscrt(),
                                  reason="Debian's python3-awscrt (and python3-yaml, -psutil, -cbor2) not installed")


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
@pytest.mark.parametrize("obj", ["device-ec", "device-rsa"])
def test_reports_from_a_token_key_are_accepted_in_process(
    pki: Pki, broker: Broker, responder: Responder, token: Token, tmp_path: Path, protocol: str, obj: str
) -> None:
    state = tmp_path / "state"
    config = parse_config(token_config(pki, token, broker.port, state, obj=obj, protocol=protocol), "test.yaml")
    links = Links()
    running = RunningService(config, link_factory=links)
    try:
        assert wait_until(lambda: sorted(ledger(state).values()).count("accepted") >= 2, 60), ledger(state)
    finally:
        running.stop()
    assert links.tokens.builds == 1  # one login for the whole run, whatever awscrt reconnected


@pytest.mark.broker
def test_a_reload_keeps_the_module_and_a_new_module_path_rebuilds_it(
    pki: Pki, broker: Broker, responder: Responder, token: Token, tmp_path: Path
) -> None:
    """One Pkcs11Lib across reloads: a reload that reconnects (another key on the same module) logs in again on
    the same module; a reload that names the module by another path builds a new one; reports go on."""
    state = tmp_path / "state"
    first = parse_config(token_config(pki, token, broker.port, state), "test.yaml")
    other_key = parse_config(token_config(pki, token, broker.port, state, obj="device-rsa"), "test.yaml")
    link = tmp_path / "libsofthsm2-link.so"
    link.symlink_to(token.library)
    other_module = parse_config(config_text(pki, broker.port, state, cert=token.ec_cert,
                                            key=token_key(token, library=link)), "test.yaml")
    configs = [other_key, other_module]
    links = Links()
    running = RunningService(first, link_factory=links, reload_config=lambda: configs.pop(0))
    try:
        assert wait_until(lambda: list(ledger(state).values()).count("accepted") >= 1, 60), ledger(state)
        lib = links.tokens.lib(str(token.library))
        running.service.events.put(_hup())
        assert wait_until(lambda: _mqtt(running).key.endswith("device-rsa"), 30)
        assert links.tokens.lib(str(token.library)) is lib  # kept
        settled = len(ledger(state))
        assert wait_until(lambda: list(ledger(state).values()).count("accepted") > settled, 60), ledger(state)
        running.service.events.put(_hup())
        assert wait_until(lambda: _mqtt(running).pkcs11_library == str(link), 30)
        assert links.tokens._library == str(link)  # rebuilt for the new path
        settled = len(ledger(state))
        assert wait_until(lambda: list(ledger(state).values()).count("accepted") > settled, 60), ledger(state)
    finally:
        running.stop()
    assert links.tokens.builds == 3


def _mqtt(running: RunningService) -> MqttConfig:
    mqtt = running.service.config.mqtt
    assert mqtt is not None
    return mqtt


def _hup() -> object:
    from agent.events import Signal, SignalEvent

    return SignalEvent(Signal.HUP)


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
@pytest.mark.parametrize("obj", ["device-ec", "device-rsa"])
@pytest.mark.parametrize("libraries", ["pypi", pytest.param("debian", marks=needs_debian)])
def test_check_and_run_with_a_token_key_on_each_library_set(
    pki: Pki, broker: Broker, responder: Responder, token: Token, tmp_path: Path, protocol: str, obj: str,
    libraries: str, request: pytest.FixtureRequest
) -> None:
    """`check` finds the key, `run --reports 2` has both accepted, `status` and the output never show the PIN:
    on PyPI's newest awscrt (the base venv) and on Debian's 0.16.8 (this checkout under /usr/bin/python3)."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "agent.yaml", token_config(pki, token, broker.port, state, obj=obj,
                                                                protocol=protocol, reply_timeout=5, log_level="debug"))
    if libraries == "pypi":
        program = request.getfixturevalue("base_venv") / "bin" / "defender-agent"

        def agent(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120, check=False,
                                  cwd="/", env=plain_env(**token.env()))
    else:
        def agent(*args: str) -> subprocess.CompletedProcess[str]:
            return debian_agent(*args, env=token.env())

    check = agent("check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert f"key on the PKCS#11 token 'gw-token', key '{obj}': found" in check.stdout
    run = agent("run", "--config", str(config), "--reports", "2")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert sorted(ledger(state).values()) == ["accepted", "accepted"], ledger(state)
    status = agent("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["outcomes"]["accepted"] == 2
    for out in (check, run, status):
        assert PIN not in out.stdout + out.stderr


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_the_installed_programs_send_from_a_token(
    installed: Path, pki: Pki, broker: Broker, responder: Responder, token: Token, tmp_path: Path, protocol: str
) -> None:
    """The installed program of each set (`make test`: the .deb's /usr/bin/defender-agent, the base venv)."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "agent.yaml", token_config(pki, token, broker.port, state, protocol=protocol,
                                                                reply_timeout=5))
    run = subprocess.run([str(installed), "run", "--config", str(config), "--reports", "2"], capture_output=True,
                         text=True, timeout=120, check=False, cwd="/", env=plain_env(**token.env()))
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert sorted(ledger(state).values()) == ["accepted", "accepted"]
    assert PIN not in run.stdout + run.stderr


class CountingLinks(Links):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, config: Config, events: queue.SimpleQueue[object], logger: logging.Logger) -> Link:
        self.calls += 1
        return super().__call__(config, events, logger)


def test_restarting_a_failed_first_connect_never_logs_in_again(token: Token, pki: Pki, tmp_path: Path) -> None:
    """MQTT 3.1.1 builds its link anew to retry a failed first connect; the token context is reused (one login:
    with a PIN changed on the token meanwhile, every retry would count towards a TPM's lockout)."""
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = tmp_path / "state"
    config = parse_config(token_config(pki, token, port, state, protocol="mqtt311"), "test.yaml")
    links = CountingLinks()
    running = RunningService(config, link_factory=links)
    try:
        assert wait_until(lambda: links.calls >= 3, 60), links.calls
    finally:
        running.stop()
    assert links.tokens.builds == 1


@pytest.mark.broker
def test_a_certificate_that_is_not_the_token_keys_is_named_when_the_handshake_fails(
    pki: Pki, broker: Broker, token: Token, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    config = parse_config(token_config(pki, token, broker.port, state, cert=token.stranger_cert), "test.yaml")
    caplog.set_level(logging.WARNING)
    running = RunningService(config)
    try:
        assert wait_until(lambda: "Cannot connect to" in caplog.text, 60), caplog.text
    finally:
        running.stop()
    line = next(r.getMessage() for r in caplog.records if "Cannot connect to" in r.getMessage())
    assert f"the key is on a token: check that {token.stranger_cert} is its certificate" in line, line
    assert "pkcs11-tool --module" in line and "--read-object --type pubkey --label 'device-ec'" in line


@pytest.mark.broker
def test_a_reload_naming_a_missing_key_is_refused_once_and_the_running_link_goes_on(
    pki: Pki, broker: Broker, responder: Responder, token: Token, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload builds the new link before it swaps anything: a key the token lacks refuses the reload (one
    line, one attempt, never again until the next SIGHUP) and the running link and its Pkcs11Lib stay.

    (A wrong PIN in a reload is not refused: the process is logged in to the token already, and PKCS#11's
    login state is the application's, so C_Login answers CKR_USER_ALREADY_LOGGED_IN without checking it.)"""
    state = tmp_path / "state"
    first = parse_config(token_config(pki, token, broker.port, state), "test.yaml")
    bad = parse_config(config_text(pki, broker.port, state, cert=token.rsa_cert,
                                   key=token_key(token, "no-such-key")), "test.yaml")
    links = Links()
    caplog.set_level(logging.DEBUG)
    running = RunningService(first, link_factory=links, reload_config=lambda: bad)
    try:
        assert wait_until(lambda: list(ledger(state).values()).count("accepted") >= 1, 60), ledger(state)
        lib = links.tokens.lib(str(token.library))
        running.service.events.put(_hup())
        assert wait_until(lambda: "refused, keeping the running configuration" in caplog.text, 30), caplog.text
        settled = len(ledger(state))
        assert wait_until(lambda: list(ledger(state).values()).count("accepted") > settled, 60), ledger(state)
    finally:
        running.stop()
    assert _mqtt(running).key.endswith("device-ec")
    refused = [r.getMessage() for r in caplog.records if "refused, keeping" in r.getMessage()]
    assert len(refused) == 1 and "no private key labelled 'no-such-key'" in refused[0], refused
    assert caplog.text.count("Failed to find private key on PKCS#11 token") == 1  # awscrt's log, at debug
    assert links.tokens.lib(str(token.library)) is lib
    assert links.tokens.builds == 1 and PIN not in caplog.text
