"""`defender-agent check` as a real process: bad files are refused with a clear message,
and neither key nor certificate bytes ever appear in its output.

Each case runs the CLI in a subprocess with canary strings inside the key and
certificate and searches everything it wrote (stdout and stderr) for them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from agent.errors import EX_CONFIG
from agent.security import ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ
from tests.security.gateway_files import GatewayFiles, encode_acl, make_gateway_files, pem

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown files and switch users")


# Runs agent.cli.main with only the subcommand modules that exist yet: on this
# branch cli.py already lists commands other engineers are still writing.
# Once they are merged, the console script works and is used instead.
_SHIM = """
import importlib.util, agent.cli as cli
cli.COMMAND_MODULES = tuple(n for n in cli.COMMAND_MODULES if importlib.util.find_spec("agent.commands." + n))
cli.main()
"""


@functools.cache
def agent_command() -> Tuple[str, ...]:
    script = Path(sys.executable).parent / "defender-agent"
    if script.exists():
        probe = subprocess.run([str(script), "--version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return (str(script),)
    return (sys.executable, "-c", _SHIM)


def run_check(
    gw: GatewayFiles, *extra: str, env: Optional[dict] = None, as_user: Optional[int] = None
) -> subprocess.CompletedProcess:
    argv = [*agent_command(), "check", "--config", str(gw.config), *extra]
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *argv]
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "DEFENDER_AGENT_CONFIG")
    }
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=60, check=False)


def assert_no_secrets(gw: GatewayFiles, result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    for secret in (gw.key_canary, gw.cert_canary, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "BEGIN PRIVATE KEY"):
        assert secret not in output, f"secret material {secret[:12]}... leaked into the output:\n{output}"


@pytest.fixture
def gw() -> Iterator[GatewayFiles]:
    # Under /tmp with mode 0755 so that the `nobody` cases can reach the files.
    root = Path(tempfile.mkdtemp(prefix="defender-agent-canary-"))
    os.chmod(root, 0o755)
    try:
        yield make_gateway_files(root / "gw")
    finally:
        shutil.rmtree(root)


def key_0644(gw: GatewayFiles) -> None:
    os.chmod(gw.key, 0o644)


def key_owned_by_nobody(gw: GatewayFiles) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(gw.key, NOBODY, NOBODY)


def config_0666(gw: GatewayFiles) -> None:
    os.chmod(gw.config, 0o666)


def cert_is_the_key(gw: GatewayFiles) -> None:
    os.chmod(gw.key, 0o644)
    gw.write_config(cert=str(gw.key), ca=str(gw.root / "missing-ca.pem"))


def key_is_a_directory(gw: GatewayFiles) -> None:
    gw.write_config(key=str(gw.root))


CASES: List[tuple] = [
    (key_0644, ["private key is readable or writable by its group and others (mode 0644)", "chmod 600"]),
    (key_owned_by_nobody, ["private key is owned by uid 65534", "chmod 600"]),
    (config_0666, ["config file is writable by its group and others (mode 0666)", "chmod go-w"]),
    (cert_is_the_key, ["mqtt.ca", "file not found", "mqtt.key"]),
    (key_is_a_directory, ["is a directory"]),
]


@pytest.mark.parametrize(("breakage", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_check_refuses_bad_files_without_leaking(
    gw: GatewayFiles, breakage: Callable[[GatewayFiles], None], expected: List[str]
) -> None:
    breakage(gw)
    result = run_check(gw)
    assert result.returncode == EX_CONFIG, result.stderr
    for text in expected:
        assert text in result.stderr
    assert_no_secrets(gw, result)


@pytest.mark.parametrize("headers", ["", "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n"])
def test_a_key_given_as_the_config_file_is_not_echoed(gw: GatewayFiles, headers: str) -> None:
    gw.key.write_text(pem("RSA PRIVATE KEY", gw.key_canary, headers), encoding="ascii")
    result = subprocess.run(
        [*agent_command(), "check", "--config", str(gw.key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EX_CONFIG, result.stderr
    assert_no_secrets(gw, result)


def test_good_files_pass(gw: GatewayFiles) -> None:
    result = run_check(gw)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert_no_secrets(gw, result)


@needs_root
def test_service_user_reads_the_key_through_a_credential_copy(gw: GatewayFiles) -> None:
    """The systemd layout, end to end: the key on disk is root-only, the agent runs as an unprivileged
    user and gets an ACL'd copy in $CREDENTIALS_DIRECTORY (what LoadCredential= does)."""
    creds = gw.root / "credentials"
    creds.mkdir(mode=0o500)
    os.chown(creds, NOBODY, NOBODY)
    copy = creds / gw.key.name
    copy.write_bytes(gw.key.read_bytes())
    os.chmod(copy, 0o400)
    try:
        os.setxattr(
            copy,
            "system.posix_acl_access",
            encode_acl(
                [
                    (ACL_USER_OBJ, 4, 0),
                    (ACL_USER, 4, NOBODY),
                    (ACL_GROUP_OBJ, 0, 0),
                    (ACL_MASK, 4, 0),
                    (ACL_OTHER, 0, 0),
                ]
            ),
        )
    except OSError:
        pytest.skip("no POSIX ACLs on /tmp")

    # Without the credential the unprivileged agent cannot read the root-only key.
    denied = run_check(gw, as_user=NOBODY)
    assert denied.returncode == EX_CONFIG
    assert f"{gw.key}: not readable by uid {NOBODY}" in denied.stderr
    assert_no_secrets(gw, denied)

    accepted = run_check(gw, as_user=NOBODY, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert accepted.returncode == 0, accepted.stderr
    assert_no_secrets(gw, accepted)

    # A copy that other users can read is refused, naming the copy, its mode and the fix.
    os.removexattr(copy, "system.posix_acl_access")
    os.chmod(copy, 0o444)
    leaky = run_check(gw, as_user=NOBODY, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert leaky.returncode == EX_CONFIG
    assert f"{copy}: private key is readable or writable by its group and others (mode 0444)" in leaky.stderr
    assert f"Fix: chmod 600 {copy}" in leaky.stderr
    assert_no_secrets(gw, leaky)
