"""Every way a token key can be wrong, as `check` and as `run`, on PyPI's awscrt (this venv) and Debian's
0.16.8 (which says ``34 (AWS_ERROR_INVALID_ARGUMENT)`` for all of them): exit 78, one problem line that names
the failure and its fix, no traceback, no retry (one C_Login for a wrong PIN), and never the PIN."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

from agent.config.model import MqttConfig, MqttProtocol
from agent.mqtt.pkcs11 import Identity, read_pin
from devkit.broker import Broker
from devkit.certs import Pki
from tests.delivery.conftest import config_text
from tests.pkcs11.conftest import PIN, Token
from tests.pkcs11.test_token_keys import ROOT, debian_agent, needs_debian, token_key, write_config
from tests.procs import plain_env


def pypi_agent(*args: str, env: Dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=str(ROOT), env=plain_env(**env))


AGENTS: Dict[str, Callable[..., subprocess.CompletedProcess[str]]] = {"pypi": pypi_agent, "debian": debian_agent}
LIBRARY_SETS = ["pypi", pytest.param("debian", marks=needs_debian)]


def _garbage_module(tmp: Path) -> Path:
    path = tmp / "libbroken-pkcs11.so"
    path.write_bytes(b"not an ELF file\n")
    path.chmod(0o644)
    return path


def _not_pkcs11(tmp: Path) -> Path:
    import _sqlite3  # a shared object every Python has: loadable, but no C_GetFunctionList

    return Path(str(_sqlite3.__file__))


def _wrong_pin(tmp: Path) -> Path:
    path = tmp / "wrong-pin"
    path.write_text("0000\n")
    path.chmod(0o600)
    return path


# case -> (what to change, the YAML path named, words of the one line)
CASES = {
    "wrong_pin": ("pin", "mqtt.pkcs11_pin_file", ["refused the PIN", "Not tried again", "Fix:"]),
    "token_not_found": ("uri:pkcs11:token=no-such-token;object=device-ec", "mqtt.key",
                        ["no token labelled 'no-such-token'", "--list-token-slots", "Fix:"]),
    "slot_not_found": ("uri:pkcs11:slot-id=4242;object=device-ec", "mqtt.key", ["no token in slot 4242", "Fix:"]),
    "key_not_found": ("uri:pkcs11:token=gw-token;object=no-such-key", "mqtt.key",
                      ["no private key labelled 'no-such-key'", "--list-objects", "Fix:"]),
    "several_keys": ("uri:pkcs11:token=gw-token;object=twin", "mqtt.key",
                     ["several private keys on the token match object='twin'", "Fix:"]),
    "library_not_loadable": ("library:garbage", "mqtt.pkcs11_library", ["cannot load the PKCS#11 module", "Fix:"]),
    "not_pkcs11": ("library:sqlite", "mqtt.pkcs11_library", ["is not a PKCS#11 module", "C_GetFunctionList", "Fix:"]),
    "library_missing": ("library:missing", "mqtt.pkcs11_library", ["PKCS#11 module not found", "Fix:"]),
    "pin_file_readable_by_others": ("pin-mode", "mqtt.pkcs11_pin_file", ["PIN file is readable or writable by",
                                                                         "chmod 600"]),
}


def _config(case: str, pki: Pki, token: Token, port: int, tmp: Path) -> Path:
    change = CASES[case][0]
    uri = change[4:] if change.startswith("uri:") else None
    pin_file = _wrong_pin(tmp) if change == "pin" else None
    library = None
    if change == "library:garbage":
        library = _garbage_module(tmp)
    elif change == "library:sqlite":
        library = _not_pkcs11(tmp)
    elif change == "library:missing":
        library = tmp / "no-such-module.so"
    elif change == "pin-mode":
        pin_file = tmp / "loose-pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o644)
    key = token_key(token, uri=uri, pin_file=pin_file, library=library)
    return write_config(tmp / "agent.yaml", config_text(pki, port, tmp / "state", cert=token.ec_cert, key=key,
                                                        log_level="debug"))


def _one_problem(out: subprocess.CompletedProcess[str], path: str) -> str:
    assert out.returncode == 78, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert PIN not in out.stdout + out.stderr
    problems = [line for line in out.stderr.splitlines() if line.startswith("  ")]
    assert "configuration error (1 problem(s))" in out.stderr, out.stderr[-3000:]
    assert len(problems) == 1, problems
    line = problems[0]
    assert "agent.yaml:" in line and f": {path}: " in line, line
    return line


@pytest.mark.broker
@pytest.mark.parametrize("libraries", LIBRARY_SETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_failure_is_one_line_with_its_fix_at_check_and_at_run(
    case: str, libraries: str, pki: Pki, broker: Broker, token: Token, tmp_path: Path
) -> None:
    config = _config(case, pki, token, broker.port, tmp_path)
    agent = AGENTS[libraries]
    _, path, words = CASES[case]
    check = agent("check", "--config", str(config), env=token.env())
    line = _one_problem(check, path)
    for word in words:
        assert word in line, line
    run = agent("run", "--config", str(config), "--reports", "1", env=token.env(),
                timeout=60)
    assert _one_problem(run, path) == line
    # nothing was connected, nothing was retried: the run ended at its start
    assert "Connected to" not in run.stderr and "Connecting" not in run.stderr.replace("Not connecting", "")
    if case == "wrong_pin":  # awscrt's own log (forwarded at debug) shows the one C_Login that was refused
        assert run.stderr.count("C_Login() failed") == 1, run.stderr[-3000:]
        assert check.stderr.count("C_Login() failed") <= 1


def test_the_pin_file_is_read_as_a_credential_under_systemd(token: Token, tmp_path: Path) -> None:
    """With $CREDENTIALS_DIRECTORY (LoadCredential=pkcs11-pin:/etc/...) the copy of the same name is read."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pkcs11-pin").write_text(PIN)
    mqtt = MqttConfig("127.0.0.1", 8883, None, MqttProtocol.MQTT5, str(token.ec_cert), "pkcs11:token=gw-token",
                      "/ca.pem", 10.0, 60.0, str(token.library), "/etc/defender-agent/pkcs11-pin")
    os.environ["CREDENTIALS_DIRECTORY"] = str(creds)
    try:
        assert Identity.of(mqtt).pin_file == str(creds / "pkcs11-pin")
        assert read_pin(Identity.of(mqtt).pin_file) == PIN
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]
    assert Identity.of(mqtt).pin_file == "/etc/defender-agent/pkcs11-pin"
