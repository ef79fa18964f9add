"""Start and drive sampling workers (benchmarks/worker.py) and the AWS sample agent's virtualenv."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.common import ROOT, log

AWS_VENV = ROOT / "benchmarks" / ".venv-aws"
AWS_PACKAGE = "AWSIoTDeviceDefenderAgentSDK==2.0.0"
WORKER = ROOT / "benchmarks" / "worker.py"


def _psutil_pin() -> str:
    import psutil

    return f"psutil=={psutil.__version__}"


def ensure_aws_venv() -> Path:
    """benchmarks/.venv-aws with the AWS sample agent and the same psutil as ours. Returns its python."""
    python = AWS_VENV / "bin" / "python"
    marker = AWS_VENV / ".installed"
    wanted = f"{AWS_PACKAGE} {_psutil_pin()}"
    if python.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return python
    log(f"Creating {AWS_VENV} with {wanted} (from the package index)")
    venv.EnvBuilder(with_pip=True, clear=True).create(str(AWS_VENV))
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            AWS_PACKAGE,
            _psutil_pin(),
        ],
        check=True,
    )
    marker.write_text(wanted, encoding="utf-8")
    return python


def aws_versions(python: Path) -> Dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    try:
        return {p["name"]: p["version"] for p in json.loads(out)}
    except ValueError:
        return {}


class Worker:
    """One worker process; ``sample(n, ...)`` runs n samples and returns the worker's reply."""

    def __init__(self, mode: str, python: Optional[str] = None) -> None:
        self.mode = mode
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [python or sys.executable, str(WORKER), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
        hello = self._readline()
        if not hello.get("ready"):
            raise RuntimeError(f"worker {mode} did not start: {hello}")
        self.pid = hello["pid"]

    def _readline(self) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.mode} exited (status {self.proc.poll()})")
        reply: Dict[str, Any] = json.loads(line)
        return reply

    def sample(
        self,
        n: int,
        fmt: str = "json",
        key_names: str = "long",
        fresh: bool = False,
        profile: str = "peer",
        custom: int = 0,
    ) -> Dict[str, Any]:
        assert self.proc.stdin is not None
        cmd = {"n": n, "format": fmt, "key_names": key_names, "fresh": fresh, "profile": profile, "custom": custom}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._readline()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rounds(
    workers: Dict[str, Worker],
    n: int,
    repeats: int,
    *,
    fmt: str = "json",
    key_names: str = "long",
    fresh: bool = False,
    profile: str = "peer",
    custom: int = 0,
) -> Dict[str, Dict[str, Any]]:
    """Interleave the workers ``repeats`` times; per worker: median CPU and wall per sample, bytes, errors."""
    got: Dict[str, List[Dict[str, Any]]] = {name: [] for name in workers}
    for _ in range(repeats):
        for name, worker in workers.items():
            got[name].append(worker.sample(n, fmt, key_names, fresh, profile, custom))
    out: Dict[str, Dict[str, Any]] = {}
    for name, replies in got.items():
        good = [r for r in replies if r.get("error") is None]
        errors = sorted({r["error"] for r in replies if r.get("error")})
        out[name] = {
            "cpu": statistics.median(r["cpu"] for r in good) if good else None,
            "cpu_min": min(r["cpu"] for r in good) if good else None,
            "wall": statistics.median(r["wall"] for r in good) if good else None,
            "bytes": statistics.median(r["bytes"] for r in good) if good else None,
            "ok_rounds": len(good),
            "rounds": len(replies),
            "errors": errors,
        }
    return out
