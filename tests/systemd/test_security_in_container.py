"""The security collectors under the shipped unit, in the container (`make systemd-test`; see conftest.py).

Runs after test_package_in_container.py, which ends by purging the package: the module installs it again
(and purges it at the end), as an operator would, with the certificates in place.

Debian's sshd (openssh-server, installed in the container, listening on a free loopback port) refuses real
login attempts; the agent, as the service user with the unit's ``SupplementaryGroups=systemd-journal``, reads
them from the real journal and an on-device behavior raises a violation for the burst. dpkg installs and
removes a small package built on the spot; the ``packages`` collector reports both. ``defender-agent once``
prints all five security collectors' metrics.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any, Callable, Dict, Iterator

import pytest
import yaml

from devkit.broker import free_port
from tests.systemd.rig import CONFIG, UNIT, Rig

pytestmark = pytest.mark.skipif(not os.environ.get("DEFENDER_AGENT_SYSTEMD_DEB"),
                                reason="run by `make systemd-test` (needs root, debootstrap, systemd-nspawn)")

Figure = Callable[[str], None]

SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-systemd-test.conf"
PROBE = "defender-probe"
BURST = 6  # parallel attempts; the behavior alarms above 2 in one 5 s period, even if a boundary splits them
SECURITY_COLLECTORS = [
    {"type": "logins"},
    {"type": "file_integrity"},
    {"type": "packages"},
    {"type": "kernel_modules"},
    {"type": "accounts"},
]
SECURITY_METRICS = {
    "auth_failures": "number", "auth_failure_sources": "ip-address-list", "logins": "number",
    "files_changed": "number", "files_changed_paths": "string-list",
    "packages_installed": "number", "packages_changed": {"type": "string-list", "allow_any_characters": True},
    "kernel_modules": "string-list", "uid0_accounts": "string-list", "login_accounts": "string-list",
}
BEHAVIORS = [
    {"name": "PasswordGuessing", "metric": "auth_failures",
     "criteria": {"comparisonOperator": "less-than-equals", "value": {"number": 2}}},
    {"name": "ProbeInstalled", "metric": "packages_changed",
     "criteria": {"comparisonOperator": "not-in-set", "value": {"strings": [f"{PROBE}=1.0"]}}},
    {"name": "ProbeRemoved", "metric": "packages_changed",
     "criteria": {"comparisonOperator": "not-in-set", "value": {"strings": [f"-{PROBE}=1.0"]}}},
]


def security_config(rig: Rig) -> str:
    config: Dict[str, Any] = copy.deepcopy(rig.base_config)
    config["report"].update({"interval": "5s"})
    config["collectors"] = list(config.get("collectors") or []) + SECURITY_COLLECTORS
    config["custom_metrics"] = {**(config.get("custom_metrics") or {}), **SECURITY_METRICS}
    config["behaviors"] = BEHAVIORS
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def sshd_port(rig: Rig) -> Iterator[int]:
    """openssh-server and sshpass in the container, sshd on a free loopback port (the container shares the
    host's network), its log in the journal as on any Debian."""
    port = free_port()
    rig.box.write(SSHD_DROPIN, f"Port {port}\nListenAddress 127.0.0.1\nPasswordAuthentication yes\n", "0644")
    result = rig.sh(["apt-get", "install", "-y", "-q", "openssh-server", "sshpass"], timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rig.sh("systemctl restart ssh")
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2).close()"
    rig.wait_for(lambda: rig.sh(["python3", "-c", probe], check=False).returncode == 0, 30,
                 f"sshd listening on 127.0.0.1:{port}")
    installed_here = not rig.sh(["dpkg-query", "-W", "-f=${Status}", "defender-agent"],
                                check=False).stdout.endswith(" installed")
    if installed_here:  # test_package_in_container.py ends by purging the package
        rig.sh(["apt-get", "install", "-y", "-q", rig.deb_inside], timeout=300)
        rig.install_credentials()
    rig.write_config(security_config(rig))
    rig.start("restart")
    rig.ensure_running()
    yield port
    if installed_here:  # leave the container as this module found it
        rig.sh(["apt-get", "purge", "-y", "-q", "defender-agent"], timeout=300)
    else:
        rig.restore()


def attempts(rig: Rig, port: int, count: int) -> None:
    users = " ".join("root" if i % 2 else f"nosuch{i}" for i in range(count))
    rig.sh(f"for u in {users}; do sshpass -p wrong ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
           "-o PubkeyAuthentication=no -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 "
           f"-o LogLevel=ERROR -p {port} $u@127.0.0.1 true & done; wait", timeout=60, check=False)


def test_failed_login_burst_read_from_the_journal_raises_a_violation(rig: Rig, sshd_port: int,
                                                                      figure: Figure) -> None:
    rig.ensure_running()
    rig.wait_accepted(rig.status()["outcomes"]["accepted"])  # the logins collector has its first-start cursor
    cursor = rig.cursor()
    attempts(rig, sshd_port, BURST)
    alarm = rig.wait_journal(cursor, r"Behavior 'PasswordGuessing' in alarm: auth_failures is[^\n]*", 60).group(0)
    refused = rig.sh(["journalctl", "--no-pager", "-q", "-o", "cat", f"--after-cursor={cursor}",
                      "SYSLOG_IDENTIFIER=sshd"], timeout=60).stdout
    failed = len(re.findall(r"^Failed password for", refused, re.MULTILINE))
    assert failed == BURST, refused[-3000:]
    collectors = rig.status()["collectors"]
    assert collectors["logins"].get("ok") and not collectors["logins"].get("last_error"), collectors["logins"]
    figure(f"{BURST} refused ssh logins (sshd in the journal: {failed} 'Failed password' lines) -> journal: "
           f"{alarm.strip()[:200]}")


def test_check_as_the_service_user_can_read_every_source(rig: Rig, sshd_port: int, figure: Figure) -> None:
    out = rig.sh(["systemd-run", "--pipe", "--wait", "-q", "-p", "User=defender-agent", "-p",
                  "SupplementaryGroups=systemd-journal", "-p",
                  "LoadCredential=private.pem.key:/etc/defender-agent/certs/private.pem.key",
                  "/usr/bin/defender-agent", "check", "--config", CONFIG], timeout=60, check=False)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "cannot read its source" in line]
    assert out.returncode == 0, out.stderr
    assert not [line for line in lines if "'logins'" in line], lines
    figure("check as defender-agent with the unit's groups: "
           + ("; ".join(lines) if lines else "every security collector can read its source"))


def test_dpkg_install_and_remove_seen_by_packages(rig: Rig, sshd_port: int, figure: Figure) -> None:
    rig.ensure_running()
    build = (f"rm -rf /root/{PROBE} && mkdir -p /root/{PROBE}/DEBIAN && printf 'Package: {PROBE}\\nVersion: 1.0\\n"
             "Architecture: all\\nMaintainer: test <test@example.invalid>\\nDescription: systemd-test probe\\n' > "
             f"/root/{PROBE}/DEBIAN/control && dpkg-deb -b /root/{PROBE} /root/{PROBE}.deb >/dev/null")
    rig.sh(build)
    cursor = rig.cursor()
    rig.sh(f"dpkg -i /root/{PROBE}.deb")
    installed = rig.wait_journal(cursor, r"Behavior 'ProbeInstalled' in alarm: packages_changed[^\n]*", 60).group(0)
    cursor = rig.cursor()
    rig.sh(f"dpkg -r {PROBE}")
    removed = rig.wait_journal(cursor, r"Behavior 'ProbeRemoved' in alarm: packages_changed[^\n]*", 60).group(0)
    figure(f"dpkg -i {PROBE}: {installed.strip()[:160]}; dpkg -r: {removed.strip()[:160]}")


def test_once_shows_all_five(rig: Rig, sshd_port: int, figure: Figure) -> None:
    """With the service stopped, two refused logins; ``once`` (which reads the service's saved position and
    writes nothing) counts them, and the service counts them again when it starts: once is a look, not a
    report of the service's."""
    rig.sh(["systemctl", "stop", UNIT])
    cursor = rig.cursor()
    attempts(rig, sshd_port, 2)
    rig.wait_for(lambda: len(re.findall(r"^Failed password for", rig.sh(
        ["journalctl", "--no-pager", "-q", "-o", "cat", f"--after-cursor={cursor}", "SYSLOG_IDENTIFIER=sshd"],
        timeout=60).stdout, re.MULTILINE)) == 2, 30, "2 'Failed password' lines of sshd")
    out = rig.sh(["defender-agent", "once", "--config", CONFIG], timeout=60)
    report = json.loads(out.stdout)
    custom = report.get("custom_metrics") or report.get("cmet") or {}
    for name in ("auth_failures", "files_changed", "packages_installed", "kernel_modules", "uid0_accounts"):
        assert name in custom, sorted(custom)
    assert custom["auth_failures"] == [{"number": 2}], (custom, out.stderr[-2000:])
    assert custom["auth_failure_sources"] == [{"ip_list": ["127.0.0.1"]}], custom
    shown = {k: v for k, v in custom.items() if k in SECURITY_METRICS}
    figure("defender-agent once (security metrics, 2 refused logins while the service was stopped): "
           + json.dumps(shown, sort_keys=True)[:900])
    rig.start()
    rig.ensure_running()
