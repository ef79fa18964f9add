"""The real parts of the fleet tests, usable from pytest fixtures and from ``python -m tests.fleet.session``.

- :class:`RecordingShadows`: the emulator's shadow store, recording every update it is asked for (who asked,
  by clientToken, and the answer's code), so a test counts the agent's updates without trusting the agent.
- :class:`ShadowService`: the emulator's responder on the broker (reports and the shadow topics) and its HTTP
  data plane (``aws iot-data --endpoint-url``), in this process, on one store.
- :class:`AgentProcess`: ``defender-agent run`` (the console script of this venv) as a real process, its
  journal (stderr) in a file.
- :func:`aws`: the real AWS CLI (``aws iot-data ...``) against the data plane; :func:`iot_data`: boto3's client.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import boto3

from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.dataplane import DataPlaneServer
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.emulator.shadow import ShadowError, ShadowStore, Update
from devkit.rig import wait_until
from tests.delivery.conftest import THING, config_text

SHADOW = "defender-agent"
BIN = Path(sys.executable).parent
DEFENDER_AGENT = BIN / "defender-agent"  # the console script: what systemd runs
AWS_CLI = BIN / "aws"
REGION = "eu-west-1"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Recorded:
    token: Optional[str]  # the request's clientToken (the agent's: "update-..."; the CLI sends none)
    code: int  # 200 accepted, else the rejection's code
    version: Optional[int]  # the version it made (accepted only)


class RecordingShadows(ShadowStore):
    """The emulator's store; every update (MQTT or HTTP) is recorded with its outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[Recorded] = []
        self._records_lock = threading.Lock()

    def update(self, thing: str, name: Optional[str], payload: bytes) -> Update:
        try:
            token = json.loads(payload).get("clientToken")
        except (ValueError, AttributeError):
            token = None
        try:
            result = super().update(thing, name, payload)
        except ShadowError as exc:
            self._record(Recorded(token if isinstance(token, str) else None, exc.code, None))
            raise
        self._record(Recorded(token if isinstance(token, str) else None, 200, result.accepted["version"]))
        return result

    def _record(self, record: Recorded) -> None:
        with self._records_lock:
            self.records.append(record)

    def agent_updates(self, code: Optional[int] = None) -> List[Recorded]:
        """The updates the agent sent (its clientTokens start with ``update-``), of one outcome if given."""
        with self._records_lock:
            return [r for r in self.records if (r.token or "").startswith("update-")
                    and (code is None or r.code == code)]

    def reported(self) -> Dict[str, Any]:
        doc = self.document(THING, SHADOW) or {}
        return dict(doc.get("state", {}).get("reported", {}))


class ShadowService:
    """The emulator's responder (reports + shadow topics) and data plane on ``shadows``, in this process."""

    def __init__(self, pki: Pki, broker: Broker, shadows: RecordingShadows, model: Optional[ServiceModel] = None):
        pair = pki.client("defender-emulator")
        self.shadows = shadows
        self.responder = Responder(ResponderOptions(
            "127.0.0.1", broker.port, str(pair.cert), str(pair.key), str(pki.ca),
            client_id=f"fleet-emulator-{os.getpid()}", shadows=shadows))
        self.data = DataPlaneServer(shadows, publish=self.responder.publish_json, model=model)

    @property
    def url(self) -> str:
        return self.data.url

    def start(self) -> ShadowService:
        self.responder.start()
        self.data.start()
        return self

    def stop(self) -> None:
        self.data.stop()
        self.responder.stop()

    def reports_accepted(self) -> int:
        return sum(1 for r in self.responder.snapshot() if r.accepted)


def aws_env(work: Path) -> Dict[str, str]:
    """Dummy credentials, no credentials file, raw payloads (``cli_binary_format``; the venv's CLI is v1)."""
    config = work / "aws-config"
    config.write_text("[default]\ncli_binary_format = raw-in-base64-out\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="AKIDFLEETTEST", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(work / "no-credentials"), AWS_PAGER="")
    return env


def aws(url: str, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``aws iot-data ARGS --endpoint-url URL``: the real CLI in a subprocess."""
    return subprocess.run([str(AWS_CLI), "iot-data", *args, "--endpoint-url", url], capture_output=True, text=True,
                          env=aws_env(work), timeout=60, check=False)


def aws_update(url: str, work: Path, desired: Any, transcript: Optional[Transcript] = None) -> Dict[str, Any]:
    """An operator's ``aws iot-data update-thing-shadow`` of ``desired``; the accepted document."""
    return _aws_json(url, work, transcript, "update-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
                     "--payload", json.dumps({"state": {"desired": desired}}))


def aws_get(url: str, work: Path, transcript: Optional[Transcript] = None) -> Dict[str, Any]:
    """``aws iot-data get-thing-shadow``: the shadow document."""
    return _aws_json(url, work, transcript, "get-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW)


def _aws_json(url: str, work: Path, transcript: Optional[Transcript], *args: str) -> Dict[str, Any]:
    done = aws(url, work, *args, "/dev/stdout")  # the CLI writes the payload to this file: here, its stdout
    assert done.returncode == 0, done.stderr
    document = dict(json.JSONDecoder().raw_decode(done.stdout)[0])  # the first JSON value: the payload
    if transcript is not None:
        kept = {k: v for k, v in document.items() if k != "metadata"}  # the timestamps of every leaf: trimmed
        transcript.command(["aws", "iot-data", *args, "/dev/stdout", "--endpoint-url", url],
                           shown(kept, 4) + ("\n(metadata trimmed)" if "metadata" in document else ""))
    return document


def iot_data(url: str) -> Any:
    """boto3's ``iot-data`` client of the data plane (dummy credentials; no retries, so each call is one)."""
    from botocore.config import Config as BotoConfig

    return boto3.client("iot-data", endpoint_url=url, region_name=REGION, aws_access_key_id="AKIDFLEETTEST",
                        aws_secret_access_key="secret", config=BotoConfig(retries={"max_attempts": 1}))


def agent_config(pki: Pki, port: int, state: Path, extra: str, remote: bool, interval: int = 1) -> str:
    """agent.yaml for the test broker: a 1 s report interval, the named shadow, and ``extra`` sections."""
    shadow = f"shadow:\n  name: {SHADOW}\n  remote_config: {'true' if remote else 'false'}\n"
    return config_text(pki, port, state, interval=interval, extra=extra + shadow)


class AgentProcess:
    """``defender-agent run --config CONFIG``; its stdout and stderr appended to ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> AgentProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(DEFENDER_AGENT), "run", "--config", str(self.config)],
                                         stdout=out, stderr=out, env=env, cwd=str(ROOT))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self, needle: str) -> List[str]:
        return [line for line in self.text().splitlines() if needle in line]

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another ``defender-agent`` command on the same config (``status --json``, ``config --effective``)."""
        return subprocess.run([str(DEFENDER_AGENT), *args, "--config", str(self.config)], capture_output=True,
                              text=True, timeout=60, check=False, cwd=str(ROOT))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, detail: Callable[[], str] = lambda: "",
             step: float = 0.1) -> Any:
    """``predicate()`` once truthy within ``timeout`` seconds (its value), else an AssertionError naming ``what``."""
    value = wait_until(predicate, timeout, step)
    if not value:
        raise AssertionError(f"not within {timeout:.0f} s: {what}\n{detail()}")
    return value


def nowait(seconds: float) -> None:
    """Let real time pass (for a test that counts what happens over a span; never asserted on)."""
    time.sleep(seconds)


class Transcript:
    """What an operator would see, step by step (printed by the test; ``pytest -s`` shows it)."""

    def __init__(self) -> None:
        self.parts: List[str] = []

    def step(self, title: str, text: str = "") -> None:
        self.parts.append(f"== {title}\n{text.rstrip()}\n" if text else f"== {title}\n")

    def command(self, argv: List[str], output: str) -> None:
        self.parts.append(f"$ {shlex.join(argv)}\n{output.rstrip()}\n")

    def text(self) -> str:
        return "\n".join(self.parts)


def shown(value: Any, levels: int = 3, indent: str = "") -> str:
    """JSON indented ``levels`` deep, each deeper value on one line (a transcript stays short)."""
    if not isinstance(value, dict) or not value or levels == 0:
        return json.dumps(value)
    inner = indent + "  "
    items = [f"{inner}{json.dumps(k)}: {shown(v, levels - 1, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + indent + "}"
