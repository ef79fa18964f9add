"""The package installed in the container, with a broker, a responder and a config: what the checks drive.

Set-up, in order (each phase timed): debootstrap, boot, ``apt-get install ./the.deb mosquitto
openssl``, the device certificate and key (``make_pki``, made on the host), mosquitto's mutual-TLS
listener as a conf.d drop-in, the checkout's emulator (``python3 -m devkit emulator``: the package ships
no developer tools) as the transient unit ``dd-emulator``, ``/etc/defender-agent/agent.yaml`` and a
drop-in that shortens ``WatchdogSec``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import yaml

from devkit.broker import free_port, port_open
from devkit.certs import Pki
from tests.systemd.container import Container, ContainerError

T = TypeVar("T")

UNIT = "defender-agent.service"
BOOTSTRAP_UNIT = "defender-agent-bootstrap.service"
EMULATOR_UNIT = "dd-emulator.service"
THING = "gw-systemd-test"
CONFIG = "/etc/defender-agent/agent.yaml"
CERTS = "/etc/defender-agent/certs"
DEVICE_CERT = f"{CERTS}/device.pem.crt"
KEY = f"{CERTS}/private.pem.key"
CA = f"{CERTS}/AmazonRootCA1.pem"
STATE = "/var/lib/defender-agent"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-systemd-test.conf"
WATCHDOG_SEC = 5  # shipped: 2min; the loop pings every WatchdogSec/2 and wakes at least every second
DEBIAN_LIBS = ("python3-awscrt", "python3-psutil", "python3-cbor2", "python3-yaml")
INCLUDE = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
MOSQUITTO_DIR = "/etc/mosquitto"
EMULATOR_DIR = "/root/emulator"
# The checkout's ``agent`` and ``devkit`` packages, copied in: the responder runs from them on Debian's
# python3 and libraries (python3-boto3 from the package's Recommends), whatever version of the package is
# installed, or none (the upgrade test swaps it).
CHECKOUT = "/root/checkout"
REPO = Path(__file__).resolve().parents[2]

# Read-only look at the outbox (stdlib sqlite3 under /usr/bin/python3): every id and its outcome.
LEDGER_PY = """
import json, sqlite3
c = sqlite3.connect("file:%s/outbox.sqlite3?mode=ro" % STATE, uri=True, timeout=5)
print(json.dumps({
    "ledger": c.execute("SELECT report_id, outcome FROM ledger").fetchall(),
    "pending": [r[0] for r in c.execute("SELECT report_id FROM pending")],
    "counters": dict(c.execute("SELECT name, value FROM counters").fetchall()),
}))
""".replace("STATE", repr(STATE))


class Rig:
    """The container with the package installed and configured; helpers to drive and watch the unit."""

    def __init__(self, box: Container, deb: Path, pki: Pki) -> None:
        self.box = box
        self.deb = deb
        self.pki = pki
        self.port = free_port()  # the container shares the host's network
        self.timings: Dict[str, float] = {}
        self.install_output = ""
        self.after_install: Dict[str, str] = {}
        self.boot_state = ""
        self.failed_units = ""
        self.base_config: Dict[str, Any] = {}
        self.deb_inside = ""

    # -- set-up ------------------------------------------------------------------------------

    def phase(self, name: str, fn: Callable[[], T]) -> T:
        start = time.monotonic()
        try:
            return fn()
        finally:
            self.timings[name] = time.monotonic() - start

    def setup(self, mirror: str, sources: List[str]) -> None:
        self.phase("debootstrap", lambda: self.box.bootstrap(mirror, INCLUDE, timeout=420))
        (self.box.root / "etc/apt/sources.list").write_text("\n".join(sources) + "\n")
        self.deb_inside = self.box.copy_in(self.deb)
        self._copy_checkout()
        self._prepare_mosquitto()
        self.boot_state = self.phase("boot", lambda: self.box.boot(timeout=90))
        if self.boot_state != "running":
            self.failed_units = self.sh("systemctl --failed --no-legend --plain", check=False).stdout.strip()
        self.phase("apt-get install", self._install)
        self.phase("configure", self._configure)

    def _copy_checkout(self) -> None:
        target = self.box.root / CHECKOUT.lstrip("/")
        for package in ("agent", "devkit"):
            shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def _prepare_mosquitto(self) -> None:
        """The listener is in place before mosquitto is installed, so its first start already uses our port
        (not 1883, which the host may hold). Its key is group mosquitto's once that group exists."""
        root = self.box.root
        (root / MOSQUITTO_DIR.lstrip("/") / "conf.d").mkdir(parents=True)
        certs = root / MOSQUITTO_DIR.lstrip("/") / "certs"
        certs.mkdir(parents=True)
        for source, name in ((self.pki.ca, "systemd-test-ca.crt"), (self.pki.server.cert, "systemd-test.crt"),
                             (self.pki.server.key, "systemd-test.key")):
            (certs / name).write_bytes(source.read_bytes())
            (certs / name).chmod(0o644)
        (root / MOSQUITTO_DIR.lstrip("/") / "conf.d/systemd-test.conf").write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            f"cafile {MOSQUITTO_DIR}/certs/systemd-test-ca.crt",
            f"certfile {MOSQUITTO_DIR}/certs/systemd-test.crt",
            f"keyfile {MOSQUITTO_DIR}/certs/systemd-test.key",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "",
        ]))

    def _install(self) -> None:
        self.sh("apt-get update -q", timeout=180)
        result = self.sh(["apt-get", "install", "-y", "-q", self.deb_inside, "mosquitto", "openssl"], timeout=420,
                         check=False)
        self.install_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise ContainerError(f"apt-get install failed ({result.returncode}):\n{self.install_output[-4000:]}")
        self.after_install = {
            "is-enabled": self.sh(["systemctl", "is-enabled", UNIT], check=False).stdout.strip(),
            "is-active": self.sh(["systemctl", "is-active", UNIT], check=False).stdout.strip(),
        }

    def _configure(self) -> None:
        emulator = self.pki.client("defender-emulator")
        self.install_credentials()
        for source, name, mode in ((emulator.cert, "emulator.crt", "0644"), (emulator.key, "emulator.key", "0600"),
                                   (self.pki.ca, "ca.crt", "0644")):
            self.box.write(f"{EMULATOR_DIR}/{name}", source.read_text(), mode)
        self.sh(f"chgrp mosquitto {MOSQUITTO_DIR}/certs/systemd-test.key && "
                f"chmod 0640 {MOSQUITTO_DIR}/certs/systemd-test.key && systemctl restart mosquitto")
        self.wait_for(lambda: port_open(self.port), 20, f"mosquitto listening on 127.0.0.1:{self.port}")
        self.start_emulator()
        self.base_config = self.edited(self.shipped_config())
        self.write_config()
        self.box.write(DROPIN, "# systemd-test: a hung agent is found in seconds, not in 2 minutes\n"
                               f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\n")
        self.sh("systemctl daemon-reload")

    # -- config --------------------------------------------------------------------------------

    def install_credentials(self) -> None:
        """The device certificate, key and CA where the shipped config names them, with the modes INSTALL.md says."""
        device = self.pki.client(THING)
        self.box.write(DEVICE_CERT, device.cert.read_text(), "0644", "root:defender-agent")
        self.box.write(CA, self.pki.ca.read_text(), "0644", "root:defender-agent")
        self.box.write(KEY, device.key.read_text(), "0600", "root:root")

    def shipped_config(self) -> Dict[str, Any]:
        """The installed package's /etc/defender-agent/agent.yaml (its example config), parsed."""
        return dict(yaml.safe_load((self.box.root / CONFIG.lstrip("/")).read_text()))

    def edited(self, shipped: Dict[str, Any]) -> Dict[str, Any]:
        """The operator's edits of a shipped config: thing name, endpoint and port, the certificates."""
        config = copy.deepcopy(shipped)
        config["thing_name"] = THING
        config["mqtt"].update({"endpoint": "127.0.0.1", "port": self.port, "cert": DEVICE_CERT, "key": KEY, "ca": CA})
        # 1s: the least the schema allows (loopback only); no jitter, so the spacing of reports is the interval
        config["report"] = {**(config.get("report") or {}), "interval": "1s", "jitter": "0s"}
        return config

    def config_text(self, **report: str) -> str:
        config = copy.deepcopy(self.base_config)
        config["report"].update(report)
        return yaml.safe_dump(config, sort_keys=False)

    def write_config(self, text: Optional[str] = None, **report: str) -> None:
        self.box.write(CONFIG, text if text is not None else self.config_text(**report), "0640",
                       "root:defender-agent")

    # -- the responder ---------------------------------------------------------------------------

    def start_emulator(self) -> None:
        cursor = self.cursor()
        self.sh(["systemctl", "reset-failed", EMULATOR_UNIT], check=False)
        self.sh(["systemd-run", f"--unit={EMULATOR_UNIT}", "--description=Device Defender emulator (systemd-test)",
                 f"--setenv=PYTHONPATH={CHECKOUT}", "/usr/bin/python3", "-m", "devkit", "emulator", "--port", str(self.port),
                 "--cert", f"{EMULATOR_DIR}/emulator.crt", "--key", f"{EMULATOR_DIR}/emulator.key",
                 "--ca", f"{EMULATOR_DIR}/ca.crt"])

        def up() -> bool:
            if "Responder running against" in self.journal(cursor, EMULATOR_UNIT):
                return True
            state = self.sh(["systemctl", "is-active", EMULATOR_UNIT], check=False).stdout.strip()
            if state not in ("active", "activating"):
                raise AssertionError(f"{EMULATOR_UNIT} is {state}:\n{self.journal_tail(unit=EMULATOR_UNIT)}")
            return False

        # 45 s: a TLS mistake surfaces only after s2n's 10-30 s of blinding
        self.wait_for(up, 45, f"{EMULATOR_UNIT} subscribed", unit=EMULATOR_UNIT)

    def stop_emulator(self) -> None:
        self.sh(["systemctl", "stop", EMULATOR_UNIT], check=False)

    # -- inside ----------------------------------------------------------------------------------

    def sh(self, cmd: Any, timeout: float = 60.0, check: bool = True,
           input: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        return self.box.run(cmd, timeout=timeout, check=check, input=input)

    def show(self, *props: str, unit: str = UNIT) -> Dict[str, str]:
        args = ["systemctl", "show", unit]
        for prop in props:
            args += ["-p", prop]
        out = self.sh(args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def active(self) -> bool:
        s = self.show("ActiveState", "SubState")
        return (s["ActiveState"], s["SubState"]) == ("active", "running")

    def cursor(self) -> str:
        out = self.sh(["journalctl", "-n", "0", "--show-cursor", "-q"]).stdout
        match = re.search(r"-- cursor: (\S+)", out)
        if not match:
            raise ContainerError(f"no journal cursor in {out!r}")
        return match.group(1)

    def journal(self, after: Optional[str] = None, unit: Optional[str] = UNIT, fmt: str = "cat") -> str:
        args = ["journalctl", "--no-pager", "-q", "-o", fmt]
        args += [f"--after-cursor={after}"] if after else ["-b"]
        if unit:
            args += ["-u", unit]
        return self.sh(args, timeout=60).stdout

    def timed_lines(self, after: Optional[str], pattern: str, unit: str = UNIT) -> List[Tuple[float, str]]:
        """(epoch seconds, message) of the unit's journal lines matching ``pattern``."""
        out = []
        for line in self.journal(after, unit, fmt="short-unix").splitlines():
            stamp, _, rest = line.partition(" ")
            message = rest.split(": ", 1)[-1]
            if re.search(pattern, message):
                out.append((float(stamp), message))
        return out

    def wait_journal(self, after: Optional[str], pattern: str, timeout: float,
                     unit: Optional[str] = UNIT) -> re.Match[str]:
        found: List[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.journal(after, unit))
            if match:
                found.append(match)
            return match is not None

        self.wait_for(seen, timeout, f"journal line /{pattern}/ of {unit}", unit=unit or UNIT)
        return found[0]

    def wait_for(self, probe: Callable[[], Any], timeout: float, what: str, every: float = 0.3,
                 unit: str = UNIT) -> Any:
        """Poll ``probe`` until it returns something true; AssertionError with ``unit``'s journal tail after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:.0f} s: {what} (last: {value!r})\n"
                                     f"{self.journal_tail(unit=unit)}")
            time.sleep(every)

    def journal_tail(self, lines: int = 25, unit: str = UNIT) -> str:
        try:
            out = self.sh(["journalctl", "--no-pager", "-q", "-b", "-n", str(lines), "-u", unit], check=False)
        except ContainerError as exc:
            return f"(no journal: {exc})"
        return f"journal of {unit}:\n{out.stdout}"

    def status(self, config: bool = True) -> Dict[str, Any]:
        """``defender-agent status --json`` as root, as an operator runs it: with the config's path, or (the
        config being invalid, which status refuses) with ``--state-dir``."""
        where = ["--config", CONFIG] if config else ["--state-dir", STATE]
        out = self.sh(["defender-agent", "status", "--json", *where]).stdout
        return dict(json.loads(out))

    def outbox(self) -> Dict[str, Any]:
        return dict(json.loads(self.sh(["python3", "-c", LEDGER_PY]).stdout))

    # -- the service -----------------------------------------------------------------------------

    def start(self, verb: str = "start") -> subprocess.CompletedProcess[str]:
        """``systemctl VERB`` after ``reset-failed`` (which also resets the start rate limit: the checks start
        the unit more often than StartLimitBurst allows in 10 minutes)."""
        self.sh(["systemctl", "reset-failed", UNIT], check=False)
        return self.sh(["systemctl", verb, UNIT], timeout=150, check=False)

    def reload(self) -> None:
        """``systemctl reload``; a failed reload job fails the check with the unit's journal (ExecReload=)."""
        result = self.sh(["systemctl", "reload", UNIT], timeout=60, check=False)
        assert result.returncode == 0, f"systemctl reload: {result.stderr.strip()}\n{self.journal_tail(12)}"

    def restore(self) -> None:
        """Back to the base config with the responder up and the agent restarted on it (not reloaded: a check
        that broke something must not depend on reload to recover)."""
        self.write_config()
        if self.sh(["systemctl", "is-active", EMULATOR_UNIT], check=False).stdout.strip() != "active":
            self.start_emulator()
        self.start("restart")
        self.ensure_running()

    def ensure_running(self) -> None:
        """Active (running) on a valid config, with the key in place, and connected."""
        if not self.active():
            self.start()
        self.wait_for(self.active, 60, f"{UNIT} active (running)")
        self.wait_for(lambda: self.show("StatusText")["StatusText"].endswith("; connected"), 60,
                      "StatusText ending in '; connected'")

    def wait_accepted(self, more_than: int, timeout: float = 60, config: bool = True) -> Dict[str, Any]:
        def probe() -> Optional[Dict[str, Any]]:
            status = self.status(config)
            return status if status["outcomes"]["accepted"] > more_than else None

        return dict(self.wait_for(probe, timeout, f"more than {more_than} accepted report(s)"))


SPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def timespan(text: str) -> float:
    """Seconds of a systemd timespan as ``systemctl show`` prints it (``10s``, ``1min 30s``, ``500ms``)."""
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h)", text):
        total += float(number) * SPAN_UNITS[unit]
    return total
