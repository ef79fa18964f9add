"""The key audit under the shipped unit's own LoadCredential= layout, as the service user.

The unit makes systemd copy the on-disk key into $CREDENTIALS_DIRECTORY; the agent reads
the copy. This lays the files out as the unit and install.sh do (under a scratch root),
with the copy in the shape systemd 252 gives it (ramfs: ``-r-------- <service user> root``,
no ACL), and runs the real `run` and `check` as an unprivileged user with setpriv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from devkit.certs import make_pki
from tests.procs import plain_env

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "defender-agent.service"
NOBODY, NOGROUP = 65534, 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="switching to the service user needs root and setpriv")


def load_credentials() -> List[Tuple[str, str]]:
    """(credential name, source path) of every LoadCredential= line of the shipped unit."""
    out = []
    for line in UNIT.read_text().splitlines():
        if line.startswith("LoadCredential="):
            name, source = line.split("=", 1)[1].split(":", 1)
            out.append((name, source))
    return out


class Layout:
    def __init__(self, root: Path) -> None:
        [(name, source)] = load_credentials()
        self.root = root
        self.key = root / source.lstrip("/")
        self.certs = self.key.parent
        self.credentials = root / "run/credentials/defender-agent.service"
        self.copy = self.credentials / name
        self.config = root / "etc/defender-agent/agent.yaml"
        self.state = root / "var/lib/defender-agent"


@pytest.fixture
def layout() -> Iterator[Layout]:
    root = Path(tempfile.mkdtemp(prefix="defender-agent-creds-"))
    os.chmod(root, 0o755)
    lay = Layout(root)
    pki = make_pki(root / "pki")
    device = pki.client("gw-1")
    lay.certs.mkdir(parents=True)
    for directory in (root / "etc", root / "etc/defender-agent"):
        os.chmod(directory, 0o755)
    # install.sh: certs 0750 root:<service group>; certificate and CA 0644; the key root-only 0600.
    os.chown(lay.certs, 0, NOGROUP)
    os.chmod(lay.certs, 0o750)
    shutil.copy(device.cert, lay.certs / "device.pem.crt")
    shutil.copy(pki.ca, lay.certs / "AmazonRootCA1.pem")
    shutil.copy(device.key, lay.key)
    for path, mode in ((lay.certs / "device.pem.crt", 0o644), (lay.certs / "AmazonRootCA1.pem", 0o644),
                       (lay.key, 0o600)):
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    # systemd 252's copy: owned by the service user, group root, 0400, no ACL.
    lay.credentials.mkdir(parents=True)
    for directory in (root / "run", root / "run/credentials"):
        os.chmod(directory, 0o755)
    os.chown(lay.credentials, NOBODY, 0)
    os.chmod(lay.credentials, 0o500)
    shutil.copy(device.key, lay.copy)
    os.chown(lay.copy, NOBODY, 0)
    os.chmod(lay.copy, 0o400)
    lay.state.mkdir(parents=True)
    os.chown(lay.state, NOBODY, NOGROUP)
    os.chmod(lay.state, 0o700)
    lay.config.write_text(
        "thing_name: gw-1\nmqtt:\n  endpoint: 127.0.0.1\n  port: 1\n"
        f"  cert: {lay.certs}/device.pem.crt\n  key: {lay.key}\n  ca: {lay.certs}/AmazonRootCA1.pem\n"
        f"state_dir: {lay.state}\n")
    os.chown(lay.config, 0, NOGROUP)
    os.chmod(lay.config, 0o640)
    try:
        yield lay
    finally:
        shutil.rmtree(root)


def as_service_user(lay: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
              "--inh-caps=-all", "--bounding-set=-all"]
    env = plain_env(CREDENTIALS_DIRECTORY=str(lay.credentials))
    return subprocess.run([*prefix, sys.executable, "-m", "agent", *args, "--config", str(lay.config)],
                          capture_output=True, text=True, timeout=60, check=False, cwd=str(REPO), env=env)


def test_the_unit_loads_the_key_the_config_names() -> None:
    [(name, source)] = load_credentials()
    assert Path(source).name == name, "the agent finds the copy by the file name of mqtt.key"
    assert "key: " + source in (REPO / "config" / "agent.example.yaml").read_text()


def test_a_root_only_key_and_systemd_252_copy_pass_check(layout: Layout) -> None:
    result = as_service_user(layout, "check")
    assert result.returncode == 0, result.stderr
    assert "OK (thing 'gw-1'" in result.stdout


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_readable_key_on_disk_stops_run_with_78(layout: Layout, mode: int) -> None:
    os.chmod(layout.key, mode)
    result = as_service_user(layout, "run")
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert f"mqtt.key: {layout.key}: private key on disk (the file systemd's LoadCredential= copies)" \
        in result.stderr
    assert f"(mode {mode:04o})" in result.stderr and f"chmod 600 {layout.key}" in result.stderr
    assert str(layout.copy) + ":" not in result.stderr, "the copy itself is fine and must not be blamed"
    assert not list(layout.state.iterdir()), "run must stop before it touches its state"
