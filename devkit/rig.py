"""A loopback rig for benchmarks and the fault campaign: PKI, mosquitto, responder, `defender-agent run`.

Everything binds to 127.0.0.1, every wait is bounded, and ``Rig.close()`` stops
what the rig started (agent processes, responder, broker). The ledger and the
pending table are read through a read-only SQLite connection, as `status` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from devkit.broker import Broker
from devkit.certs import Pki, make_pki
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.selfrun import agent_argv, agent_env

THING = "rig-gw"
DB = "outbox.sqlite3"

COLLECTORS = """\
collectors:
  - type: listening_ports
  - type: tcp_connections
  - type: network_stats
  - type: system
    metrics: [cpu_usage, memory_used_percent, load_average]
custom_metrics:
  cpu_usage: {type: number}
  memory_used_percent: {type: number}
  load_average: {type: number-list}
"""

CONFIG = """\
thing_name: {thing}
mqtt:
  endpoint: 127.0.0.1
  port: {port}
  cert: {cert}
  key: {key}
  ca: {ca}
  connect_timeout: 5s
  keep_alive: {keep_alive}s
report:
  interval: {interval}s
  jitter: {jitter}s
  format: {fmt}
  key_names: short
delivery:
  backlog: {backlog}
  reply_timeout: {reply_timeout}s
  retry_max_delay: {retry_max_delay}s
  max_attempts: {max_attempts}
  min_free_disk: {min_free_disk}
state_dir: {state}
log_level: info
{collectors}"""


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def _ro(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{state / DB}?mode=ro", uri=True, timeout=5)


def _query(state: Path, sql: str) -> List[Tuple[Any, ...]]:
    """Rows of a read-only query on the agent's outbox; none when it does not exist (yet) or is unreadable."""
    if not (state / DB).exists():
        return []
    try:
        conn = _ro(state)
    except sqlite3.Error:
        return []
    try:
        return list(conn.execute(sql))
    except sqlite3.Error:  # created a moment ago (no schema yet), or damaged on purpose
        return []
    finally:
        conn.close()


def ledger(state: Path) -> Dict[int, str]:
    """report id -> outcome, from the agent's outbox (empty when there is none yet)."""
    return {int(r): str(o) for r, o in _query(state, "SELECT report_id, outcome FROM ledger")}


def pending_ids(state: Path) -> List[int]:
    return [int(r) for (r,) in _query(state, "SELECT report_id FROM pending ORDER BY report_id")]


def counters(state: Path) -> Dict[str, int]:
    return {str(k): int(v) for k, v in _query(state, "SELECT name, value FROM counters")}


_BUILT = re.compile(r"Built report (\d+)")
_FIRST_PUBLISH = re.compile(r"Published report (\d+) \(")


def published_ids(log_text: str) -> List[int]:
    """Ids in the order the agent first published them ("Published report N (..."), across restarts."""
    return list(dict.fromkeys(int(m) for m in _FIRST_PUBLISH.findall(log_text)))


def built_ids(log_text: str) -> List[int]:
    """Ids the agent logged as stored in the outbox ("Built report N"), in log order."""
    return [int(m) for m in _BUILT.findall(log_text)]


def accepted_count(state: Path) -> int:
    return sum(1 for o in ledger(state).values() if o == "accepted")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Rig:
    """PKI + mosquitto (+ the responder, in this process) on loopback, and agent subprocesses."""

    def __init__(self, work: Path, responder: bool = True) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.pki: Pki = make_pki(work / "pki")
        self.broker = Broker(work / "broker", self.pki)
        self.want_responder = responder
        self.responder: Any = None
        self.agents: List[subprocess.Popen[bytes]] = []

    def start(self) -> Rig:
        self.broker.start()
        if self.want_responder:
            self.start_responder()
        return self

    def start_responder(self) -> None:
        pair = self.pki.client("defender-emulator")
        self.responder = Responder(ResponderOptions("127.0.0.1", self.broker.port, str(pair.cert), str(pair.key),
                                                    str(self.pki.ca), client_id=f"emulator-{os.getpid()}"))
        self.responder.start()

    def config_text(self, state: Path, port: Optional[int] = None, **overrides: Any) -> str:
        thing = str(overrides.pop("thing", THING))  # one thing (and client id) per concurrent agent
        device = self.pki.client(thing)
        values: Dict[str, Any] = dict(
            thing=thing, port=port or self.broker.port, cert=device.cert, key=device.key, ca=self.pki.ca,
            keep_alive=60, interval=1, jitter=0, fmt="cbor", backlog="newest", reply_timeout=2,
            retry_max_delay=2, max_attempts=5, min_free_disk=0, state=state, collectors=COLLECTORS,
        )
        values.update(overrides)
        return CONFIG.format(**values)

    def write_config(self, path: Path, state: Path, port: Optional[int] = None, **overrides: Any) -> Path:
        path.write_text(self.config_text(state, port, **overrides), encoding="utf-8")
        return path

    def start_agent(self, config: Path, log: Path, *args: str, prefix: Optional[List[str]] = None,
                    env: Optional[Dict[str, str]] = None) -> subprocess.Popen[bytes]:
        full_env = agent_env({"PYTHONUNBUFFERED": "1", **(env or {})})
        full_env.pop("NOTIFY_SOCKET", None)
        with open(log, "ab") as out:
            proc = subprocess.Popen([*(prefix or []), *agent_argv("run", "--config", str(config), *args)],
                                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=full_env)
        self.agents.append(proc)
        return proc

    def stop_agent(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        started = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(ValueError):
            self.agents.remove(proc)
        return time.monotonic() - started

    def close(self) -> None:
        for proc in list(self.agents):
            self.stop_agent(proc, signal.SIGKILL, 5)
        if self.responder is not None:
            with contextlib.suppress(Exception):
                self.responder.stop()
            self.responder = None
        self.broker.stop()

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def account(state: Path, log_text: str, responder: Any = None, since: int = 0) -> Dict[str, Any]:
    """Check the delivery invariants once the agent has drained and stopped.

    ``lost``: ids the agent logged as stored, or the responder received, that are in neither the
    ledger nor the pending table. ``conflicts``: an id the responder saw with two payloads (reuse).
    ``published_order``: ids in the order the agent first published them are increasing (the agent's
    guarantee); ``inversions``: ids the responder first saw after a higher one. With a local broker
    that acknowledges a message while the responder is not (yet) subscribed and then drops it, the
    agent's later resend of that id arrives after newer reports: an artifact of the rig, counted and
    reported, not a failure. ``built_order``: the ids in the log are strictly increasing (none handed
    out twice, also across restarts).
    """
    outcomes = {rid: o for rid, o in ledger(state).items() if rid >= since}
    pending = set(pending_ids(state))
    built = [rid for rid in built_ids(log_text) if rid >= since]
    received: List[int] = []
    conflicts: List[Any] = []
    if responder is not None:
        received = [r.report_id for r in responder.snapshot() if r.report_id is not None and r.report_id >= since]
        conflicts = list(responder.conflicts)
    known = set(outcomes) | pending
    lost = sorted((set(built) | set(received)) - known)
    firsts = list(dict.fromkeys(received))
    published = [rid for rid in published_ids(log_text) if rid >= since]
    highest = 0
    inversions = 0
    for rid in firsts:
        inversions += rid < highest
        highest = max(highest, rid)
    by_outcome: Dict[str, int] = {}
    for o in outcomes.values():
        by_outcome[o] = by_outcome.get(o, 0) + 1
    return {
        "built": len(built),
        "ledger": by_outcome,
        "pending": len(pending),
        "lost": lost,
        "conflicts": conflicts,
        "published_order_ok": all(a < b for a, b in zip(published, published[1:])),
        "inversions": inversions,
        "built_order_ok": all(a < b for a, b in zip(built, built[1:])),
        "tracebacks": log_text.count("Traceback"),
    }
