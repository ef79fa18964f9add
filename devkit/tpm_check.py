"""`make tpm-check`: a device key held by a simulated TPM 2.0, end to end (docs/HARDWARE-KEYS.md).

A manual check, not part of `make test` (it needs swtpm, tpm2-abrmd, libtpm2-pkcs11-1, tpm2-tools and
tpm2-openssl, and takes about half a minute). Everything lives in one temporary directory and every
process it starts is stopped by its own pid:

1. swtpm (a TPM 2.0 simulator on a loopback port), a private D-Bus session bus and tpm2-abrmd on it
   (the resource manager a Pi gets from the kernel as /dev/tpmrm0);
2. a tpm2-pkcs11 store with a token ``gw-token`` and an EC P-256 key ``device`` made inside the TPM
   (``tpm2_ptool init / addtoken / addkey``), the routes of docs/HARDWARE-KEYS.md;
3. a CSR signed by the TPM through Debian's tpm2-openssl provider, a certificate for it from a
   throwaway CA (the part AWS IoT's ``create-certificate-from-csr`` plays on a real gateway);
4. mosquitto with mutual TLS and the local Device Defender responder;
5. on PyPI's awscrt (``.venv``) and on Debian's python3-awscrt (``/usr/bin/python3``): awscrt alone
   (connect; RSS once connected, against the same connect with a key file), then the agent's ``check`` and
   ``run --reports 2`` with ``mqtt.key: "pkcs11:token=gw-token;object=device"``;
6. a wrong PIN: ``check`` and ``run`` exit 78 with one line, and the TPM's dictionary-attack counter
   rises by exactly one per command (one login, never a retry); the counter is cleared afterwards.

Run as root or as a user (the TPM is simulated; nothing touches the machine's TPM or its services).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from devkit.broker import Broker, free_port, port_open
from devkit.certs import make_pki
from devkit.emulator.responder import Responder, ResponderOptions

ROOT = Path(__file__).resolve().parents[1]
THING = "gw-tpm"
TOKEN = "gw-token"
OBJECT = "device"
PIN = "4711-user-pin"
SO_PIN = "4711-so-pin"
WRONG_PIN = "0000-wrong"
TOOLS = ("swtpm", "dbus-daemon", "tpm2-abrmd", "tpm2_ptool", "tpm2_getcap", "tpm2_dictionarylockout", "openssl")
MODULE_GLOB = "/usr/lib/*/pkcs11/libtpm2_pkcs11.so"
TABRMD = "tabrmd:bus_type=session"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

RAW_CONNECT = r"""
import sys, threading
from awscrt import io, mqtt5
host, port, ca, cert, key, module = sys.argv[1:7]
if key.startswith("pkcs11:"):
    lib = io.Pkcs11Lib(file=module, behavior=io.Pkcs11Lib.InitializeFinalizeBehavior.STRICT)
    opts = io.TlsContextOptions.create_client_with_mtls_pkcs11(
        pkcs11_lib=lib, user_pin=sys.stdin.readline().strip(), token_label=key.split("token=")[1].split(";")[0],
        private_key_label=key.split("object=")[1].split(";")[0], cert_file_path=cert)
else:
    opts = io.TlsContextOptions.create_client_with_mtls_from_path(cert, key)
opts.override_default_trust_store_from_path(None, ca)
done = threading.Event()
outcome = []
def success(data): outcome.append("connected"); done.set()
def failure(data): outcome.append("failed: %s" % data.exception); done.set()
client = mqtt5.Client(mqtt5.ClientOptions(
    host_name=host, port=int(port), tls_ctx=io.ClientTlsContext(opts),
    connect_options=mqtt5.ConnectPacket(client_id="raw-%s" % key[:6], keep_alive_interval_sec=60),
    on_lifecycle_event_connection_success_fn=success, on_lifecycle_event_connection_failure_fn=failure))
client.start()
done.wait(60)
rss = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS:")][0]
client.stop()
print(outcome[0] if outcome else "timeout", rss)
"""


class Failed(RuntimeError):
    """A step of the check failed; the message names it and carries the tool's output."""


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(args: Sequence[str], env: Dict[str, str], stdin: Optional[str] = None, timeout: float = 120,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if ok and result.returncode != 0:
        raise Failed(f"{' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def module_path() -> str:
    found = sorted(Path("/").glob(MODULE_GLOB.lstrip("/")))
    if not found:
        raise Failed(f"no {MODULE_GLOB}: apt-get install libtpm2-pkcs11-1")
    return str(found[0])


class Simulator:
    """swtpm + a private session bus + tpm2-abrmd, stopped by pid in ``stop``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pids: List[int] = []
        self.env = dict(os.environ)

    def start(self) -> Dict[str, str]:
        state = self.directory / "tpm-state"
        state.mkdir()
        port = free_port()
        ctrl = port + 1  # the swtpm TCTI finds the control channel there; a clash fails loudly below
        swtpm = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1", "--tpmstate", f"dir={state}",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pids.append(swtpm.pid)
        for _ in range(100):  # bounded: 10 s for swtpm to listen
            if port_open(port) and port_open(ctrl):
                break
            time.sleep(0.1)
        bus = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.split()
        self.pids.append(int(bus[1]))
        self.env.update(DBUS_SESSION_BUS_ADDRESS=bus[0], TPM2_PKCS11_TCTI=TABRMD, TPM2TOOLS_TCTI=TABRMD,
                        TPM2OPENSSL_TCTI=TABRMD, TPM2_PKCS11_STORE=str(self.directory / "store"))
        (self.directory / "store").mkdir(mode=0o700)
        abrmd = subprocess.Popen(["tpm2-abrmd", "--session", "--allow-root", f"--tcti=swtpm:host=127.0.0.1,port={port}"],
                                 env=self.env, stdout=subprocess.DEVNULL, stderr=(self.directory / "abrmd.log").open("w"))
        self.pids.append(abrmd.pid)
        for _ in range(100):  # bounded: 10 s for the resource manager to register its bus name
            if run(["tpm2_getcap", "properties-fixed"], self.env, ok=False).returncode == 0:
                return self.env
            time.sleep(0.1)
        raise Failed("tpm2-abrmd did not answer within 10 s: " + (self.directory / "abrmd.log").read_text())

    def lockout_counter(self) -> int:
        text = run(["tpm2_getcap", "properties-variable"], self.env).stdout
        match = re.search(r"TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9a-fA-F]+)", text)
        if not match:
            raise Failed(f"no TPM2_PT_LOCKOUT_COUNTER in tpm2_getcap's output:\n{text}")
        return int(match.group(1), 16)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):  # the forked bus daemon is not our child
                os.waitpid(pid, 0)


def provision(env: Dict[str, str], directory: Path) -> Path:
    """The token and a key made inside the TPM; returns a CSR signed by that key."""
    run(["tpm2_ptool", "init"], env)
    run(["tpm2_ptool", "addtoken", "--pid=1", f"--label={TOKEN}", f"--userpin={PIN}", f"--sopin={SO_PIN}"], env)
    run(["tpm2_ptool", "addkey", f"--label={TOKEN}", f"--key-label={OBJECT}", f"--userpin={PIN}",
         "--algorithm=ecc256"], env)
    exported = subprocess.run(["tpm2_ptool", "export", f"--label={TOKEN}", f"--key-label={OBJECT}",
                               f"--userpin={PIN}"], env=env, cwd=directory, capture_output=True, text=True,
                              timeout=60, check=True).stdout
    auth = re.search(r"object-auth:\s*(\S+)", exported)
    if not auth:
        raise Failed(f"tpm2_ptool export printed no object-auth:\n{exported}")
    csr = directory / "device.csr"
    run(["openssl", "req", "-new", "-provider", "tpm2", "-provider", "default", "-key",
         str(directory / f"{OBJECT}.pem"), "-passin", f"pass:{auth.group(1)}", "-subj", f"/CN={THING}",
         "-out", str(csr)], env)
    (directory / f"{OBJECT}.pem").unlink()  # the TPM-wrapped blob: useless off this TPM, but not needed
    run(["openssl", "req", "-in", str(csr), "-noout", "-verify"], env)
    return csr


def softhsm_token(directory: Path, key: Path, env: Dict[str, str]) -> Dict[str, str]:
    """A SoftHSM token holding a copy of ``key`` (for the memory comparison); returns its environment."""
    tokens = directory / "softhsm-tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    soft = dict(env, SOFTHSM2_CONF=str(conf))
    run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN], soft)
    run(["softhsm2-util", "--import", str(key), "--token", TOKEN, "--label", OBJECT, "--id", "01", "--pin", PIN],
        soft)
    return soft


def config_text(port: int, ca: Path, cert: Path, key: str, module: str, pin_file: Path, state: Path) -> str:
    return (f"thing_name: {THING}\nmqtt:\n  endpoint: 127.0.0.1\n  port: {port}\n  cert: {cert}\n"
            f"  key: \"{key}\"\n  ca: {ca}\n  pkcs11_library: {module}\n  pkcs11_pin_file: {pin_file}\n"
            f"  connect_timeout: 10s\nreport:\n  interval: 1s\n  jitter: 0s\ndelivery:\n  reply_timeout: 5s\n"
            f"state_dir: {state}\ncollectors:\n  - type: listening_ports\n  - type: network_stats\n")


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return f"exit {result.returncode}, {len(lines)} line(s), the last: {lines[-1].strip() if lines else ''}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.tpm_check", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        say(f"missing: {' '.join(missing)} (make tpm-check installs swtpm swtpm-tools tpm2-abrmd "
            "libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools tpm2-openssl)")
        return 2
    module = module_path()
    directory = Path(tempfile.mkdtemp(prefix="defender-agent-tpm-"))
    simulator = Simulator(directory)
    broker: Optional[Broker] = None
    responder: Optional[Responder] = None
    try:
        env = simulator.start()
        say(f"TPM 2.0 simulated: swtpm + tpm2-abrmd (session bus), module {module}")
        pki = make_pki(directory / "pki")
        csr = provision(env, directory)
        cert = directory / "device.pem.crt"
        ext = directory / "client.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki.ca), "-CAkey", str(pki.ca_key),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert)], env)
        say(f"token '{TOKEN}', EC P-256 key '{OBJECT}' made in the TPM; CSR signed by the TPM (tpm2-openssl), "
            "certificate issued by the test CA")
        broker = Broker(directory / "broker", pki)
        broker.start()
        emulator = pki.client("defender-emulator")
        responder = Responder(ResponderOptions("127.0.0.1", broker.port, str(emulator.cert), str(emulator.key),
                                               str(pki.ca), client_id=f"emulator-{os.getpid()}"))
        responder.start()
        uri = f"pkcs11:token={TOKEN};object={OBJECT}"
        pin_file = directory / "pkcs11-pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o600)
        file_key = pki.client(THING)
        softhsm = (softhsm_token(directory, file_key.key, env) if os.path.exists(SOFTHSM_MODULE)
                   and shutil.which("softhsm2-util") else None)
        interpreters = {"PyPI awscrt (.venv)": [str(ROOT / ".venv/bin/python")],
                        "Debian python3-awscrt (/usr/bin/python3)": ["/usr/bin/python3"]}
        agent_env = dict(env, PYTHONPATH=str(ROOT))
        failures = 0
        for name, python in interpreters.items():
            version = run([*python, "-c", "import awscrt; print(awscrt.__version__)"], agent_env).stdout.strip()
            say(f"\n== {name}, awscrt.__version__ {version}")
            common = ["127.0.0.1", str(broker.port), str(pki.ca)]
            raw_file = run([*python, "-c", RAW_CONNECT, *common, str(file_key.cert), str(file_key.key), module],
                           agent_env).stdout.split()
            raw_tpm = run([*python, "-c", RAW_CONNECT, *common, str(cert), uri, module], agent_env,
                          stdin=PIN + "\n").stdout.split()
            if softhsm is not None:
                raw_soft = run([*python, "-c", RAW_CONNECT, *common, str(file_key.cert), uri, SOFTHSM_MODULE],
                               dict(softhsm, PYTHONPATH=str(ROOT)), stdin=PIN + "\n").stdout.split()
                say(f"awscrt alone, MQTT5 mTLS connect: SoftHSM key {raw_soft[0]}, RSS once connected "
                    f"{int(raw_soft[1]) / 1024:.1f} MB (+{(int(raw_soft[1]) - int(raw_file[1])) / 1024:.1f} MB)")
            say(f"awscrt alone, MQTT5 mTLS connect: key file {raw_file[0]}, RSS once connected {int(raw_file[1]) / 1024:.1f} MB; "
                f"TPM key {raw_tpm[0]}, RSS once connected {int(raw_tpm[1]) / 1024:.1f} MB "
                f"(+{(int(raw_tpm[1]) - int(raw_file[1])) / 1024:.1f} MB)")
            for protocol in ("mqtt5", "mqtt311"):
                state = directory / f"state-{len(version)}-{protocol}"
                config = directory / f"agent-{len(version)}-{protocol}.yaml"
                config.write_text(config_text(broker.port, pki.ca, cert, uri, module, pin_file, state)
                                  .replace("  port:", f"  protocol: {protocol}\n  port:"))
                config.chmod(0o600)
                check = run([*python, "-m", "agent", "check", "--config", str(config)], agent_env, ok=False)
                say(f"{protocol}: check: {last_line(check) if check.returncode else check.stdout.strip()}")
                started = run([*python, "-m", "agent", "run", "--config", str(config), "--reports", "2"],
                              agent_env, ok=False, timeout=180)
                accepted = len(re.findall(r"Report \d+ accepted", started.stderr))
                say(f"{protocol}: run --reports 2: exit {started.returncode}, {accepted} report(s) accepted")
                if PIN in started.stderr + started.stdout + check.stdout + check.stderr:
                    say("FAILED: the PIN appears in the agent's output")
                    failures += 1
                if started.returncode != 0 or accepted != 2:
                    failures += 1
                    say(started.stderr[-2000:])
            wrong = directory / "wrong-pin"
            wrong.write_text(WRONG_PIN + "\n")
            wrong.chmod(0o600)
            config = directory / "agent-wrong.yaml"
            config.write_text(config_text(broker.port, pki.ca, cert, uri, module, wrong, directory / "state-wrong"))
            config.chmod(0o600)
            for command in (["check"], ["run", "--reports", "1"]):
                before = simulator.lockout_counter()
                result = run([*python, "-m", "agent", *command, "--config", str(config)], agent_env, ok=False,
                             timeout=60)
                after = simulator.lockout_counter()
                say(f"wrong PIN: {command[0]}: {last_line(result)}")
                for line in result.stderr.strip().splitlines()[:-1]:
                    say(f"    {line.strip()}")
                say(f"wrong PIN: {command[0]}: TPM lockout counter {before} -> {after} (max 3 on swtpm)")
                if (result.returncode != 78 or after - before != 1 or "Traceback" in result.stderr
                        or WRONG_PIN in result.stdout + result.stderr):
                    failures += 1
                run(["tpm2_dictionarylockout", "--clear-lockout"], env)
        say("\nOK" if failures == 0 else f"\n{failures} FAILURE(S)")
        return 0 if failures == 0 else 1
    except Failed as error:
        say(f"FAILED: {error}")
        return 1
    finally:
        if responder is not None:
            responder.stop()
        if broker is not None:
            broker.stop()
        simulator.stop()
        if args.keep:
            say(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
