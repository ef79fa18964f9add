"""A device key on a PKCS#11 token under the shipped unit with the shipped drop-in (`make systemd-test`).

Runs after test_package_in_container.py, which ends by purging the package: the module installs it again
(and purges it at the end), as test_security_in_container.py does. Debian's softhsm2 holds the device key
in a token under the agent's state directory, as docs/HARDWARE-KEYS.md says; the key file is taken off
/etc/defender-agent/certs for the module (the point: the key is not on disk). Then the TPM drop-in: it
applies and keeps the score, and Debian's libtpm2-pkcs11-1 loads inside the sandbox (no TPM here, so
the agent must stop with 78 and one line, never a restart).
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, Callable, Dict, Iterator

import pytest
import yaml

from devkit.broker import free_port, port_open
from tests.systemd.rig import CONFIG, DEVICE_CERT, KEY, STATE, THING, UNIT, Rig, timespan
from tests.systemd.test_package_in_container import HOLD_MARGIN, ended, failed_for_good, holds

pytestmark = pytest.mark.skipif(not os.environ.get("DEFENDER_AGENT_SYSTEMD_DEB"),
                                reason="run by `make systemd-test` (needs root, debootstrap, systemd-nspawn)")

Figure = Callable[[str], None]

MAX_EXPOSURE = 2.0
SHARE = "/usr/share/defender-agent/systemd"
DROPIN = f"/etc/systemd/system/{UNIT}.d/10-pkcs11.conf"
PIN_FILE = "/etc/defender-agent/pkcs11-pin"
PIN = "systemd-test-pin-8d1f"  # looked for in the journal and status: it must never appear
WRONG_PIN = "systemd-test-wrong-4c2a"
SO_PIN = "systemd-test-so-pin"
SOFTHSM_CONF = "/etc/defender-agent/softhsm2.conf"
TOKENS = f"{STATE}/softhsm-tokens"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
URI = "pkcs11:token=gw-token;object=device"
SAVED_KEY = "/root/private.pem.key.saved-by-pkcs11-test"
TPM_STORE = f"{STATE}/tpm2-pkcs11"
TABRMD = "tabrmd:bus_type=system"
SIM_DROPIN = f"/etc/systemd/system/{UNIT}.d/zz-simulated-tpm.conf"  # after 10-pkcs11.conf: drop-ins apply in name order
DBUS_POLICY = "/etc/dbus-1/system.d/defender-agent-systemd-test.conf"
CREDENTIALS = f"/run/credentials/{UNIT}"


def token_config(rig: Rig, module: str) -> str:
    config: Dict[str, Any] = copy.deepcopy(rig.base_config)
    config["mqtt"].update({"key": URI, "pkcs11_library": module, "pkcs11_pin_file": PIN_FILE})
    return yaml.safe_dump(config, sort_keys=False)


def enable(rig: Rig, dropin: str) -> None:
    rig.sh(["install", "-D", "-m", "644", f"{SHARE}/{dropin}", DROPIN])
    rig.sh("systemctl daemon-reload")


def disable(rig: Rig) -> None:
    rig.sh(["rm", "-f", DROPIN])
    rig.sh("systemctl daemon-reload")


def exposure(rig: Rig) -> float:
    out = rig.sh(["systemd-analyze", "security", "--no-pager", UNIT], check=False).stdout
    match = re.search(rf"Overall exposure level for {re.escape(UNIT)}: (\d+\.\d+)", out)
    assert match, out
    gate = rig.sh(["systemd-analyze", "security", f"--threshold={int(MAX_EXPOSURE * 10)}", UNIT], check=False)
    assert gate.returncode == 0, out
    return float(match.group(1))


@pytest.fixture(scope="module")
def softhsm(rig: Rig) -> Iterator[None]:
    """softhsm2 installed, a token in the state directory holding the device key, the PIN file, the key file
    off the disk; everything undone at the end."""
    installed_here = not rig.sh(["dpkg-query", "-W", "-f=${Status}", "defender-agent"],
                                check=False).stdout.endswith(" installed")
    if installed_here:  # test_package_in_container.py ends by purging the package
        rig.sh(["apt-get", "install", "-y", "-q", rig.deb_inside], timeout=300)
        rig.install_credentials()
    result = rig.sh(["apt-get", "install", "-y", "-q", "softhsm2", "libtpm2-pkcs11-1"], timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rig.box.write(SOFTHSM_CONF, f"directories.tokendir = {TOKENS}\nobjectstore.backend = file\n", "0644")
    rig.box.write("/root/device.p8", rig.pki.client(THING).key.read_text(), "0600")
    env = f"SOFTHSM2_CONF={SOFTHSM_CONF}"
    rig.sh(f"install -d -m 700 {TOKENS} && {env} softhsm2-util --init-token --free --label gw-token "
           f"--pin {PIN} --so-pin {SO_PIN} >/dev/null && {env} softhsm2-util --import /root/device.p8 "
           f"--token gw-token --label device --id 01 --pin {PIN} >/dev/null && rm /root/device.p8 && "
           f"chown -R defender-agent:defender-agent {TOKENS}")
    rig.box.write(PIN_FILE, PIN + "\n", "0600", "root:root")
    rig.sh(["mv", KEY, SAVED_KEY])
    try:
        yield
    finally:
        disable(rig)
        rig.sh(["mv", SAVED_KEY, KEY], check=False)
        rig.sh(["rm", "-rf", TOKENS, PIN_FILE, SOFTHSM_CONF], check=False)
        if installed_here:  # leave the container as this module found it
            rig.sh(["apt-get", "purge", "-y", "-q", "defender-agent"], timeout=300)
        else:
            rig.restore()


def test_softhsm_key_under_the_unit_with_the_shipped_dropin(rig: Rig, softhsm: None, figure: Figure) -> None:
    """Reports accepted with the key on the token, the PIN handed over by LoadCredential=, the score kept."""
    enable(rig, "pkcs11-softhsm.conf")
    rig.write_config(token_config(rig, SOFTHSM_MODULE))
    cursor = rig.cursor()
    rig.start("restart")
    rig.ensure_running()
    accepted = rig.wait_accepted(rig.status()["outcomes"]["accepted"])["outcomes"]["accepted"]
    credentials = rig.sh(["ls", CREDENTIALS]).stdout.split()
    assert credentials == ["pkcs11-pin"], credentials  # the PIN, and no key file any more
    assert rig.sh(["test", "-e", KEY], check=False).returncode != 0, "the key file is back on disk"
    score = exposure(rig)
    check = rig.sh(f"SOFTHSM2_CONF={SOFTHSM_CONF} defender-agent check --config {CONFIG}", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    seen = (rig.journal(cursor) + rig.sh(["systemctl", "status", "--no-pager", "-l", UNIT], check=False).stdout
            + rig.sh(["defender-agent", "status", "--config", CONFIG]).stdout + check.stdout + check.stderr
            + rig.sh(["systemctl", "show", UNIT]).stdout)
    assert PIN not in seen, "the PIN is shown"
    assert "Traceback" not in seen
    figure(f"SoftHSM token key ({URI}), pkcs11-softhsm.conf enabled: {accepted} report(s) accepted; "
           f"$CREDENTIALS_DIRECTORY holds {credentials}; systemd-analyze security {score} (limit {MAX_EXPOSURE}); "
           "`check` as root OK; the PIN in none of journal, systemctl status/show, defender-agent status")


def test_a_wrong_pin_stops_the_unit_with_78_one_line_and_no_restart(rig: Rig, softhsm: None,
                                                                    figure: Figure) -> None:
    enable(rig, "pkcs11-softhsm.conf")
    rig.write_config(token_config(rig, SOFTHSM_MODULE))
    restart_sec = timespan(rig.show("RestartUSec")["RestartUSec"])
    try:
        rig.box.write(PIN_FILE, WRONG_PIN + "\n", "0600", "root:root")
        cursor = rig.cursor()
        assert rig.start("restart").returncode != 0, "restart reported success with a wrong PIN"
        state = ended(rig)
        assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "78"), state
        holds(rig, restart_sec + HOLD_MARGIN, lambda: failed_for_good(rig),
              {k: state[k] for k in ("ActiveState", "NRestarts", "ExecMainPID")})
        text = rig.journal(cursor)
        lines = [line for line in text.splitlines() if "CKR_PIN_INCORRECT" in line]
        assert len(lines) == 1, text
        assert "status=78/CONFIG" in text and "Traceback" not in text, text
        assert WRONG_PIN not in text and PIN not in text
        figure(f"wrong PIN: Result={state['Result']}, ExecMainStatus={state['ExecMainStatus']}, NRestarts stayed "
               f"{state['NRestarts']} for {restart_sec + HOLD_MARGIN:.0f} s; journal: {lines[0].strip()[:220]}")
    finally:
        rig.box.write(PIN_FILE, PIN + "\n", "0600", "root:root")
        rig.start()
        rig.ensure_running()


def test_the_tpm_dropin_applies_keeps_the_score_and_loads_tpm2_pkcs11(rig: Rig, softhsm: None,
                                                                     figure: Figure) -> None:
    """No TPM in the container: the drop-in's settings reach the unit, the score holds, and Debian's
    libtpm2-pkcs11 loads and initialises inside the sandbox (seccomp, W^X, read-only /usr) before the
    agent stops with 78 and one line, for good."""
    enable(rig, "pkcs11-tpm2.conf")
    module = rig.sh("ls /usr/lib/*/pkcs11/libtpm2_pkcs11.so").stdout.strip()
    try:
        shown = rig.show("PrivateDevices", "DevicePolicy", "DeviceAllow", "SupplementaryGroups", "Environment")
        assert shown["PrivateDevices"] == "no" and shown["DevicePolicy"] == "closed", shown
        assert shown["DeviceAllow"] == "/dev/tpmrm0 rw", shown
        assert shown["SupplementaryGroups"].split() == ["systemd-journal", "tss"], shown
        assert f"TPM2_PKCS11_STORE={STATE}/tpm2-pkcs11" in shown["Environment"], shown
        score = exposure(rig)
        rig.sh(f"install -d -m 700 -o defender-agent -g defender-agent {STATE}/tpm2-pkcs11")
        rig.write_config(token_config(rig, module))
        cursor = rig.cursor()
        assert rig.start("restart").returncode != 0, "started without a TPM"
        state = ended(rig)
        assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "78"), state
        text = rig.journal(cursor)
        problems = [line for line in text.splitlines() if "mqtt.key" in line]
        assert len(problems) == 1, text
        assert not re.search(r"SIGSYS|Bad system call|status=31/SYS|Traceback", text), text
        figure(f"pkcs11-tpm2.conf enabled: {', '.join(f'{k}={v}' for k, v in shown.items() if k != 'Environment')}; "
               f"systemd-analyze security {score} (limit {MAX_EXPOSURE}); {module} loaded in the sandbox, no TPM: "
               f"exit 78, NRestarts {state['NRestarts']}; journal: {problems[0].strip()[:200]}")
    finally:
        rig.sh(["rm", "-rf", TPM_STORE], check=False)
        disable(rig)
        rig.write_config(token_config(rig, SOFTHSM_MODULE))


def lockout_counter(rig: Rig) -> int:
    out = rig.sh(f"TPM2TOOLS_TCTI={TABRMD} tpm2_getcap properties-variable").stdout
    match = re.search(r"TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+)", out)
    assert match, out
    return int(match.group(1), 16)


@pytest.fixture(scope="module")
def simulated_tpm(rig: Rig, softhsm: None) -> Iterator[str]:
    """swtpm and tpm2-abrmd (on the system bus, as transient units) in the container, a token in the store
    the TPM drop-in names, holding the device key (``tpm2_ptool import``: the test's certificate stays valid).
    Yields the module's path. The agent reaches the TPM through tpm2-abrmd here (a test drop-in sets
    ``TPM2_PKCS11_TCTI`` and a D-Bus policy lets the service user talk to it): there is no /dev/tpmrm0."""
    packages = ["swtpm", "tpm2-abrmd", "libtss2-tcti-tabrmd0", "libtpm2-pkcs11-tools", "tpm2-tools"]
    result = rig.sh(["apt-get", "install", "-y", "-q", *packages], timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    port = free_port()
    while port_open(port + 1):  # bounded by the ports in use; the swtpm TCTI wants control on port + 1
        port = free_port()
    rig.sh(["mkdir", "-p", "/var/lib/swtpm-test"])
    rig.sh(["systemd-run", "--unit=swtpm-test", "swtpm", "socket", "--tpm2", "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1", "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate", "dir=/var/lib/swtpm-test", "--flags", "not-need-init,startup-clear"])
    rig.wait_for(lambda: port_open(port) and port_open(port + 1), 20, f"swtpm on 127.0.0.1:{port}")
    # Not Type=dbus: the package's own tpm2-abrmd.service (failed here, no /dev/tpm0) holds that bus name's alias.
    rig.sh(["systemd-run", "--unit=tabrmd-test", "-p", "User=tss", "/usr/sbin/tpm2-abrmd",
            f"--tcti=swtpm:host=127.0.0.1,port={port}"], timeout=60)
    rig.box.write(DBUS_POLICY, '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" '
                  '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n<busconfig><policy user="defender-agent">'
                  '<allow send_destination="com.intel.tss2.Tabrmd"/><allow receive_sender="com.intel.tss2.Tabrmd"/>'
                  '</policy></busconfig>\n', "0644")
    rig.sh("systemctl reload dbus")
    rig.wait_for(lambda: rig.sh(f"TPM2TOOLS_TCTI={TABRMD} tpm2_getcap properties-fixed", check=False).returncode == 0,
                 30, "tpm2-abrmd answering on the system bus", unit="tabrmd-test.service")
    module = rig.sh("ls /usr/lib/*/pkcs11/libtpm2_pkcs11.so").stdout.strip()
    env = f"TPM2_PKCS11_STORE={TPM_STORE} TPM2_PKCS11_TCTI={TABRMD} TPM2TOOLS_TCTI={TABRMD}"
    rig.box.write("/root/device.key", rig.pki.client(THING).key.read_text(), "0600")
    rig.sh(f"install -d -m 700 {TPM_STORE} && {env} tpm2_ptool init >/dev/null && {env} tpm2_ptool addtoken "
           f"--pid=1 --label=gw-token --userpin={PIN} --sopin={SO_PIN} >/dev/null && {env} tpm2_ptool import "
           f"--label=gw-token --key-label=device --userpin={PIN} --privkey=/root/device.key --algorithm=ecc "
           f">/dev/null && rm /root/device.key && chown -R defender-agent:defender-agent {TPM_STORE}", timeout=120)
    try:
        yield module
    finally:
        rig.sh(["rm", "-f", SIM_DROPIN, DBUS_POLICY], check=False)
        rig.sh(["systemctl", "stop", "tabrmd-test", "swtpm-test"], check=False)
        rig.sh(["rm", "-rf", TPM_STORE, "/var/lib/swtpm-test"], check=False)
        disable(rig)
        rig.write_config(token_config(rig, SOFTHSM_MODULE))


def test_a_tpm_key_under_the_unit_with_the_tpm_dropin(rig: Rig, simulated_tpm: str, figure: Figure) -> None:
    """The shipped TPM drop-in, with only the TCTI pointed at tpm2-abrmd: reports accepted with the key in a
    (simulated) TPM, under the whole sandbox; then a wrong PIN costs the TPM exactly one failed try, exit 78
    and no restart."""
    enable(rig, "pkcs11-tpm2.conf")
    rig.box.write(SIM_DROPIN, f"# systemd-test: no /dev/tpmrm0 here; the simulated TPM is behind tpm2-abrmd\n"
                              f"[Service]\nEnvironment=TPM2_PKCS11_TCTI={TABRMD}\n")
    rig.sh("systemctl daemon-reload")
    rig.write_config(token_config(rig, simulated_tpm))
    cursor = rig.cursor()
    rig.start("restart")
    rig.ensure_running()
    accepted = rig.wait_accepted(rig.status()["outcomes"]["accepted"])["outcomes"]["accepted"]
    text = rig.journal(cursor)
    assert not re.search(r"SIGSYS|Bad system call|status=31/SYS|Traceback", text), text
    assert PIN not in text + rig.sh(["defender-agent", "status", "--config", CONFIG]).stdout
    score = exposure(rig)
    restart_sec = timespan(rig.show("RestartUSec")["RestartUSec"])
    try:
        rig.box.write(PIN_FILE, WRONG_PIN + "\n", "0600", "root:root")
        before = lockout_counter(rig)
        cursor = rig.cursor()
        assert rig.start("restart").returncode != 0, "restart reported success with a wrong PIN"
        state = ended(rig)
        assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "78"), state
        holds(rig, restart_sec + HOLD_MARGIN, lambda: failed_for_good(rig),
              {k: state[k] for k in ("ActiveState", "NRestarts", "ExecMainPID")})
        after = lockout_counter(rig)
        assert after - before == 1, f"the TPM counted {after - before} failed tries"
        text = rig.journal(cursor)
        lines = [line for line in text.splitlines() if "CKR_PIN_INCORRECT" in line]
        assert len(lines) == 1 and "Traceback" not in text and WRONG_PIN not in text, text
    finally:
        rig.box.write(PIN_FILE, PIN + "\n", "0600", "root:root")
        rig.sh(f"TPM2TOOLS_TCTI={TABRMD} tpm2_dictionarylockout --clear-lockout", check=False)
    rig.start()
    rig.ensure_running()
    figure(f"TPM key (swtpm + tpm2-abrmd; the key of {DEVICE_CERT} imported with tpm2_ptool), pkcs11-tpm2.conf: "
           f"{accepted} report(s) accepted, no SIGSYS; systemd-analyze security {score}; wrong PIN: exit 78, "
           f"NRestarts {state['NRestarts']} for {restart_sec + HOLD_MARGIN:.0f} s, TPM lockout counter "
           f"{before} -> {after}")
