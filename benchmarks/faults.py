"""The fault campaign: ``python -m benchmarks.faults [--short] [--only NAME ...]``.

Each scenario runs a bounded number of times on loopback only and records how
many runs it made, what was lost (the goal: nothing), any traceback, and how
long recovery took. Results go to benchmarks/results/faults.json (or
faults-short.json) and docs/RELIABILITY.md is rendered from the full run.
A scenario that cannot run here (no mosquitto, no permission to mount a
tmpfs) is recorded as "not run" with the reason, never with invented numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import signal
import string
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import cbor2
import yaml

from benchmarks.common import RESULTS_DIR, log, machine_info

SEED = 20260808


@dataclass
class Scenario:
    name: str
    goal: str
    runs: int = 0
    lost: int = 0  # reports or ids lost, processes orphaned: whatever "lost" means for the scenario
    failures: int = 0  # tracebacks, crashes, hangs
    status: str = ""  # "passed", "failed", "not run"
    reason: str = ""
    recovery_seconds: Optional[float] = None
    outcomes: Dict[str, int] = field(default_factory=dict)
    examples: List[str] = field(default_factory=list)  # first few failures, for the record
    seconds: float = 0.0

    def fail(self, example: str) -> None:
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append(example[-2000:])

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def finish(self) -> Scenario:
        if self.status != "not run":
            self.status = "passed" if self.failures == 0 and self.lost == 0 else "failed"
        return self


class _Timeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout()


def _guarded(fn: Callable[[], Any], seconds: int = 5) -> Any:
    """Run ``fn`` with a wall-clock limit (SIGALRM); a hang is a failure, not a stuck campaign."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- generated configs -----------------------------------------------------------------------

VALID_CONFIG: Dict[str, Any] = {
    "thing_name": "gateway-01",
    "mqtt": {
        "endpoint": "127.0.0.1",
        "port": 8883,
        "cert": "/etc/defender-agent/certs/device.pem.crt",
        "key": "/etc/defender-agent/certs/private.pem.key",
        "ca": "/etc/defender-agent/certs/AmazonRootCA1.pem",
        "keep_alive": "60s",
    },
    "report": {
        "format": "cbor",
        "key_names": "short",
        "interval": "5m",
        "jitter": "15s",
        "max_list_items": 500,
    },
    "delivery": {"backlog": "all", "reply_timeout": "30s", "max_outbox_bytes": "16MiB"},
    "state_dir": "/var/lib/defender-agent",
    "log_level": "info",
    "custom_metrics": {
        "cpu_usage": {"type": "number", "display_name": "CPU usage"},
        "services": {"type": "string-list"},
        "peers": "ip-address-list",
        "load_average": "number-list",
    },
    "collectors": [
        {"type": "listening_ports"},
        {"type": "tcp_connections"},
        {"type": "network_stats", "exclude_interfaces": ["lo"]},
        {"type": "system", "interval": "5m", "metrics": ["cpu_usage", "load_average"]},
    ],
}

ODD_SCALARS: List[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    1e400,
    float("nan"),
    "",
    " ",
    "10s",
    "5x",
    "-1s",
    "0s",
    "1e9d",
    "json",
    "cbor",
    "short",
    "long",
    "newest",
    "all",
    "number",
    "number-list",
    "aws:cpu",
    "a" * 300,
    "127.0.0.1",
    "::1",
    "\u00e9\u4e2d",
    "\x00",
    "${HOME}",
    "~/x",
    "../../etc/passwd",
    "16MiB",
    "-5MiB",
    [],
    {},
    [1, 2],
    {"a": 1},
]

YAML_NASTIES = [
    "a: &a [*a, *a]\n",
    "x: !!python/object/apply:os.system ['true']\n",
    "x: !!binary AAAA\n",
    "? [a, b]\n: c\n",
    "thing_name: gw\nthing_name: gw2\n",
    "a: &x [" + ", ".join(["*x"] * 0) + "1]\nb: *x\n",
    "laughs: &l0 [x, x]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 20)),
    "\ufeffthing_name: gw\n",
    "%YAML 1.1\n---\nthing_name: gw\n...\n---\nthing_name: x\n",
    "[" * 1000 + "]" * 1000,
    "{" * 1000,
    "thing_name: '\\x00'\n",
    "\t\tthing_name: gw\n",
    "thing_name: !!int 12\n",
    "mqtt: {endpoint: <<: *missing}\n",
]


def _mutate_structure(doc: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(doc, dict) and doc:
        doc = dict(doc)
        key = rng.choice(list(doc))
        roll = rng.random()
        if roll < 0.2:
            del doc[key]
        elif roll < 0.35:
            doc[rng.choice([key + "s", key[:-1], key.upper(), "".join(rng.sample(key, len(key)))])] = doc.pop(
                key
            )
        elif roll < 0.6 and depth < 4:
            doc[key] = _mutate_structure(doc[key], rng, depth + 1)
        else:
            doc[key] = rng.choice(ODD_SCALARS)
        return doc
    if isinstance(doc, list) and doc:
        doc = list(doc)
        index = rng.randrange(len(doc))
        roll = rng.random()
        if roll < 0.3:
            doc.append(doc[index])  # duplicates (e.g. two collectors with one name)
        elif roll < 0.6 and depth < 4:
            doc[index] = _mutate_structure(doc[index], rng, depth + 1)
        else:
            doc[index] = rng.choice(ODD_SCALARS)
        return doc
    return rng.choice(ODD_SCALARS)


def _mutate_text(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return text[: rng.randrange(len(text) + 1)]
    if roll < 0.4:
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            chars[rng.randrange(len(chars))] = rng.choice(string.printable + "\u00e9\x00\x7f\ufffd")
        return "".join(chars)
    if roll < 0.55:
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[i])
        return "\n".join(lines)
    if roll < 0.7:
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.randint(0, 7) + lines[i].lstrip()
        return "\n".join(lines)
    if roll < 0.85:
        return text + rng.choice(YAML_NASTIES)
    return rng.choice(YAML_NASTIES)


def generated_configs(count: int, valid: Dict[str, Any] = VALID_CONFIG, seed: int = SEED) -> List[str]:
    rng = random.Random(seed)
    base = yaml.safe_dump(valid, sort_keys=False)
    out = [base]
    while len(out) < count:
        if rng.random() < 0.55:
            doc = valid
            for _ in range(rng.randint(1, 4)):
                doc = _mutate_structure(doc, rng)
            try:
                out.append(yaml.safe_dump(doc, sort_keys=False, allow_unicode=rng.random() < 0.5))
            except (yaml.YAMLError, ValueError):
                continue
        else:
            out.append(_mutate_text(base, rng))
    return out


def scenario_configs(short: bool) -> Scenario:
    from agent.config import parse_config
    from agent.errors import ConfigError

    count = 1000 if short else 10_000
    base = dict(VALID_CONFIG)
    note = ""
    try:
        parse_config(yaml.safe_dump(base), "base.yaml")
    except ConfigError as exc:  # collector types not on this branch yet: mutate a config without them
        base.pop("collectors")
        note = f" (base config without collectors: {exc.problems[0].message})"
    sc = Scenario(
        "generated configs",
        f"{count:,} generated configs: every one accepted or refused "
        "with a ConfigError naming file and path; 0 tracebacks, 0 hangs" + note,
    )
    for index, text in enumerate(generated_configs(count, base)):
        sc.runs += 1
        try:
            _guarded(lambda t=text: parse_config(t, "gen.yaml"))
            sc.count("accepted")
        except ConfigError as exc:
            if not exc.problems or any(p.file != "gen.yaml" or not p.message for p in exc.problems):
                sc.fail(f"config #{index}: ConfigError without a usable problem: {exc!r}")
            sc.count("refused (ConfigError)")
        except _Timeout:
            sc.fail(f"config #{index}: parse took over 5 s:\n{text[:500]}")
            sc.count("hang")
        except Exception:
            sc.fail(f"config #{index}:\n{text[:500]}\n{traceback.format_exc(limit=6)}")
            sc.count("traceback")
    return sc


# -- generated malformed replies -------------------------------------------------------------


def _reply_target() -> Any:
    """The agent's reply parser when delivery has landed, else the report document decoder + validator."""
    try:
        from agent.delivery.replies import parse_reply
        from agent.delivery.topics import reply_topic

        topic = reply_topic("fault-gw", "json", "accepted")
        return (lambda payload: parse_reply(topic, payload, "fault-gw")), "agent.delivery.replies.parse_reply"
    except ImportError:
        pass
    for module, attr in (
        ("agent.delivery.replies", "parse_reply"),
        ("agent.delivery.reply", "parse_reply"),
        ("agent.delivery.ledger", "parse_reply"),
        ("agent.delivery.mqtt", "parse_reply"),
    ):
        try:
            return getattr(importlib.import_module(module), attr), f"{module}.{attr}"
        except (ImportError, AttributeError):
            continue
    from agent.report.document import DecodeError, decode, validate_document

    def check(payload: bytes) -> Any:
        try:
            document, _fmt = decode(payload)
        except DecodeError:
            return "refused"
        return validate_document(document, payload_size=len(payload))

    return check, "agent.report.document.decode + validate_document (no reply parser on this branch yet)"


def generated_replies(count: int, seed: int = SEED + 1) -> List[bytes]:
    rng = random.Random(seed)
    good = {
        "thingName": "gateway-01",
        "reportId": 1_700_000_000,
        "status": "REJECTED",
        "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"},
        "timestamp": 1_700_000_000_123,
    }
    odd_values: List[Any] = [
        None,
        True,
        -1,
        0,
        2**70,
        1.5,
        float("inf"),
        "",
        "ACCEPTED",
        "x" * 10_000,
        [],
        {},
        [1],
        {"a": None},
        "\u0000",
        "1700000000",
    ]
    out: List[bytes] = []
    while len(out) < count:
        roll = rng.random()
        if roll < 0.15:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))
        elif roll < 0.3:
            raw = json.dumps(good).encode()
            out.append(raw[: rng.randrange(len(raw))])
        elif roll < 0.6:
            doc: Dict[str, Any] = json.loads(json.dumps(good))
            for _ in range(rng.randint(1, 3)):
                key = rng.choice([*doc, "statusDetails", "extra", "reportId"])
                if rng.random() < 0.3:
                    doc.pop(key, None)
                else:
                    doc[key] = rng.choice(odd_values)
            enc = rng.random()
            if enc < 0.6:
                out.append(json.dumps(doc, allow_nan=True).encode())
            else:
                try:
                    out.append(cbor2.dumps(doc))
                except Exception:
                    continue
        elif roll < 0.7:
            depth = rng.choice([10, 1000, 100_000])
            out.append((b"[" * depth) + (b"]" * depth if rng.random() < 0.5 else b""))
        elif roll < 0.8:
            depth = rng.choice([10, 1000, 100_000])
            out.append(b"\x81" * depth + b"\x01")  # CBOR arrays nested `depth` deep
        elif roll < 0.9:
            out.append(json.dumps(good).encode().replace(b'"', rng.choice([b"'", b"", b"\\"])))
        else:
            out.append(
                rng.choice(
                    [
                        b"",
                        b" ",
                        b"null",
                        b"[]",
                        b"{}",
                        b"\xff\xfe",
                        b'{"reportId": NaN}',
                        b'{"reportId": 1e999}',
                        '{"thingName": "\ud800"}'.encode("utf-8", "surrogatepass"),
                    ]
                )
            )
    return out


def scenario_replies(short: bool) -> Scenario:
    count = 1000 if short else 10_000
    target, target_name = _reply_target()
    sc = Scenario(
        "generated malformed replies",
        f"{count:,} generated malformed reply payloads: each refused "
        f"or ignored, 0 tracebacks, 0 hangs (target: {target_name})",
    )
    for index, payload in enumerate(generated_replies(count)):
        sc.runs += 1
        try:
            _guarded(lambda p=payload: target(p))
            sc.count("handled")
        except _Timeout:
            sc.fail(f"reply #{index}: over 5 s: {payload[:120]!r}")
            sc.count("hang")
        except Exception as exc:
            sc.fail(
                f"reply #{index} ({len(payload)} bytes, starts {payload[:40]!r}): {type(exc).__name__}: "
                f"{str(exc)[:200]}\n{traceback.format_exc(limit=4)}"
            )
            sc.count(f"traceback {type(exc).__name__}")
    return sc


# -- exec collectors: timeouts and floods ------------------------------------------------------

# Each run starts a shell that forks two sleeping children and waits: the timeout must kill the whole
# process group, children included. The marker in the environment finds any survivor in /proc.
_HANG = "sleep 30 & sleep 30 & wait"
# Writes 1 GiB of digits to stdout as fast as it can (head stops after 1 GiB).
_FLOOD = "head -c 1073741824 /dev/zero | tr '\\0' 7"


def _marked_processes(marker: str) -> List[int]:
    """Live (non-zombie) processes whose environment holds ``marker``."""
    import os

    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != b"Z":
            found.append(int(entry))
    return found


def _exec_sampler(marker: str, count: int, command: str, timeout: str, extra: str = "") -> Any:
    import tempfile

    from agent.collectors.build import build_collectors
    from agent.collectors.sampler import Sampler
    from agent.config import parse_config
    from benchmarks.ours import quiet_logger

    state = tempfile.mkdtemp(prefix="defender-faults-")
    collectors = "".join(
        f"  - type: exec\n    name: exec_{i:03d}\n    timeout: {timeout}\n"
        f"    command: [/bin/sh, -c, {json.dumps(command)}]\n"
        f"    metric: m_{i:03d}\n    metric_type: number\n    env: {{FAULT_MARKER: {marker}}}\n{extra}"
        for i in range(count)
    )
    custom = "".join(f"  m_{i:03d}: {{type: number}}\n" for i in range(count))
    text = (
        "thing_name: faults\nmqtt: {endpoint: 127.0.0.1, cert: /x/c.pem, key: /x/k.pem, ca: /x/ca.pem}\n"
        f"report: {{interval: 1s}}\nstate_dir: {state}\ncustom_metrics:\n{custom}collectors:\n{collectors}"
    )
    config = parse_config(text, "faults.yaml")
    jobs = build_collectors(config, logger=quiet_logger(), persist_state=False)
    return Sampler(jobs, 1.0, {n: m.type for n, m in config.custom_metrics.items()}, logger=quiet_logger())


def scenario_exec_timeouts(short: bool) -> Scenario:
    """N exec runs that each time out (a shell with two children), 20 collectors per round."""
    import uuid

    total = 100 if short else 1000
    per_round = 20
    marker = f"defender-fault-{uuid.uuid4().hex}"
    sc = Scenario(
        "exec collector timeouts",
        f"{total:,} exec-collector timeouts (a shell with two sleeping children, timeout 0.1 s, "
        f"{per_round} collectors per round): 0 orphan processes",
    )
    sampler = _exec_sampler(marker, per_round, _HANG, "100ms")
    try:
        while sc.runs < total:
            round_ = sampler.sample_all()
            for failure in round_.failures:
                sc.runs += 1
                sc.count("timed out" if "timed out" in failure.reason else f"other: {failure.reason[:60]}")
                if "timed out" not in failure.reason:
                    sc.fail(f"{failure.collector}: {failure.reason}")
            for sample in round_.samples:
                sc.runs += 1
                sc.fail(f"{sample.name}: a sample from a program that should have timed out")
    finally:
        sampler.close()
    # killpg is asynchronous: give the kernel a moment to finish the kills before counting.
    deadline = time.monotonic() + 5
    left = _marked_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked_processes(marker)
    sc.lost = len(left)
    sc.outcomes["orphan processes"] = len(left)
    if left:
        sc.examples.append(f"orphans left: pids {left[:20]}")
    return sc


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux: "5" into clear_refs), so the peak is this scenario's."""
    import contextlib

    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")


def scenario_exec_flood(short: bool) -> Scenario:
    """An exec collector whose program prints 1 GiB: the run is cut at max_output, RSS barely moves."""
    import gc
    import uuid

    runs = 3 if short else 10
    marker = f"defender-fault-{uuid.uuid4().hex}"
    sc = Scenario(
        "exec collector printing 1 GiB",
        f"{runs} runs of an exec collector whose program prints 1 GiB (max_output at its default 64 KiB): "
        "agent RSS grows under 10 MB, the program is killed",
    )
    sampler = _exec_sampler(marker, 1, _FLOOD, "10s")
    try:
        sampler.sample_all()  # first run: imports, thread and selector set-up are not the flood's cost
        gc.collect()
        _reset_peak_rss()
        before, hwm_before = _rss_kib(), _hwm_kib()
        for _ in range(runs):
            round_ = sampler.sample_all()
            sc.runs += 1
            reasons = [f.reason for f in round_.failures]
            if reasons and "max_output" in reasons[0]:
                sc.count("cut at max_output")
            else:
                sc.fail(f"expected a max_output failure, got samples={round_.samples} failures={reasons}")
        gc.collect()
        after, hwm_after = _rss_kib(), _hwm_kib()
    finally:
        sampler.close()
    growth_mb = (max(after, hwm_after) - before) / 1024
    sc.outcomes["RSS growth (peak) KiB"] = max(after, hwm_after) - before
    sc.outcomes["RSS before KiB"] = before
    sc.outcomes["peak RSS before KiB"] = hwm_before
    if growth_mb >= 10:
        sc.fail(f"RSS grew {growth_mb:.1f} MB (limit 10 MB)")
    left = _marked_processes(marker)
    sc.lost = len(left)
    sc.outcomes["orphan processes"] = len(left)
    return sc


# -- scenarios with a running agent ----------------------------------------------------------------


def _rig_dir(name: str) -> Any:
    import shutil

    from benchmarks.common import WORK_DIR

    work = WORK_DIR / "faults" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _no_broker(sc: Scenario) -> bool:
    from agent.devtools.broker import find_mosquitto

    if find_mosquitto() is None:
        sc.status, sc.reason = "not run", "mosquitto is not installed"
        return True
    return False


def _settle_and_account(sc: Scenario, rig: Any, cfg: Any, state: Any, log_path: Any, since: int = 0) -> None:
    """A final clean run drains what is left; then every id is checked against the ledger."""
    from agent.devtools.rig import account, ledger, pending_ids, wait_until

    before = max(ledger(state) or [0])
    t0 = time.monotonic()
    proc = rig.start_agent(cfg, log_path)
    try:
        # Drained: nothing pending and a report built by this clean run accepted (it really ran).
        drained = wait_until(lambda: not pending_ids(state) and any(
            r > before and o == "accepted" for r, o in ledger(state).items()), 60, 0.1)
        sc.outcomes["final run: start to drained s"] = round(time.monotonic() - t0, 1)  # type: ignore[assignment]
        if not drained:
            sc.fail(f"the final clean run did not drain the outbox in 60 s: pending {pending_ids(state)[:10]}")
    finally:
        rig.stop_agent(proc)
    text = log_path.read_text(errors="replace")
    acc = account(state, text, rig.responder, since)
    for outcome, n in acc["ledger"].items():
        sc.outcomes[f"ids {outcome}"] = n
    sc.outcomes["ids built"] = acc["built"]
    sc.outcomes["ids left pending"] = acc["pending"]
    sc.lost = len(acc["lost"])
    if acc["lost"]:
        sc.examples.append(f"ids in neither ledger nor outbox: {acc['lost'][:20]}")
    if acc["conflicts"]:
        sc.fail(f"ids sent with two different payloads (reused): {acc['conflicts'][:10]}")
    if not acc["published_order_ok"]:
        sc.fail("ids did not increase in the order the agent first published them")
    if acc["inversions"]:
        sc.outcomes["ids first seen by the responder after a higher id (resent after the broker dropped them)"] = (
            acc["inversions"])
    if not acc["built_order_ok"]:
        sc.fail("the ids the agent built did not strictly increase across restarts")
    if acc["tracebacks"]:
        sc.fail(f"{acc['tracebacks']} traceback(s) in the agent log: {text[text.find('Traceback'):][:1500]}")


def _recovery(sc: Scenario, times: List[float]) -> None:
    if times:
        times = sorted(times)
        sc.recovery_seconds = round(times[len(times) // 2], 2)
        sc.outcomes["recovery max s"] = round(times[-1], 2)  # type: ignore[assignment]


def scenario_kills(short: bool) -> Scenario:
    """SIGKILL `defender-agent run` at random points, restart at once; a last clean run drains."""
    from agent.delivery.ids import read_last_id
    from agent.devtools.rig import Rig

    count = 5 if short else 100
    sc = Scenario("agent SIGKILLs", f"{count} SIGKILLs of `defender-agent run` at random points (0.2-1.5 s after "
                  "start, interval 1 s, backlog newest): every report id accounted for, none reused, ids increasing")
    if _no_broker(sc):
        return sc
    rng = random.Random(SEED + 2)
    work = _rig_dir("kills")
    with Rig(work) as rig:
        state, log_path = work / "state", work / "agent.log"
        cfg = rig.write_config(work / "agent.yaml", state, reply_timeout=1, retry_max_delay=1)
        last: List[int] = []
        for _ in range(count):
            proc = rig.start_agent(cfg, log_path)
            time.sleep(rng.uniform(0.2, 1.5))
            rig.stop_agent(proc, signal.SIGKILL, 5)
            sc.runs += 1
            last.append(read_last_id(state))
        if last != sorted(last):
            sc.fail(f"last_report_id went backwards across kills: {last}")
        _settle_and_account(sc, rig, cfg, state, log_path)
        sc.recovery_seconds = sc.outcomes.get("final run: start to drained s")
    return sc


def scenario_broker_restarts(short: bool) -> Scenario:
    """Kill and restart mosquitto under a running agent (backlog all); time until a new report is accepted."""
    from agent.devtools.rig import Rig, accepted_count, wait_until

    count = 3 if short else 50
    sc = Scenario("broker restarts", f"{count} broker restarts (SIGKILL, down 0-1.5 s, up 0.5-2 s; backlog all): "
                  "every report id accounted for; recovery = broker back until the next report is accepted")
    if _no_broker(sc):
        return sc
    rng = random.Random(SEED + 3)
    work = _rig_dir("broker")
    times: List[float] = []
    with Rig(work) as rig:
        state, log_path = work / "state", work / "agent.log"
        cfg = rig.write_config(work / "agent.yaml", state, backlog="all", reply_timeout=1, retry_max_delay=1)
        proc = rig.start_agent(cfg, log_path)
        try:
            if not wait_until(lambda: accepted_count(state) >= 1, 20, 0.1):
                sc.fail("no report accepted before the first restart")
            for i in range(count):
                time.sleep(rng.uniform(0.5, 2.0))
                rig.broker.restart(down_for=rng.uniform(0.0, 1.5))
                back = time.monotonic()
                before = accepted_count(state)
                sc.runs += 1
                if wait_until(lambda b=before: accepted_count(state) > b, 20, 0.05):
                    times.append(time.monotonic() - back)
                else:
                    sc.fail(f"restart #{i}: no report accepted within 20 s of the broker coming back")
                if proc.poll() is not None:
                    sc.fail(f"restart #{i}: the agent exited with {proc.returncode}")
                    break
        finally:
            rig.stop_agent(proc)
        _settle_and_account(sc, rig, cfg, state, log_path)
    _recovery(sc, times)
    return sc


def scenario_cuts(short: bool) -> Scenario:
    """Cuts, stalls and half-open connections through the TCP proxy; time until a new report is accepted."""
    from agent.devtools.proxy import Proxy
    from agent.devtools.rig import Rig, accepted_count, wait_until

    count = 3 if short else 50
    sc = Scenario("connection cuts and stalls", f"{count} faults through the TCP proxy, a third each: cut "
                  "(connections dropped, new ones refused, 0.2-2 s), stall (bytes held 0.5-3 s), half-open "
                  "(bytes swallowed, no FIN, 1-4 s, then reset): every report id accounted for; recovery = fault "
                  "lifted until the next report is accepted")
    if _no_broker(sc):
        return sc
    rng = random.Random(SEED + 4)
    work = _rig_dir("cuts")
    times: List[float] = []
    with Rig(work) as rig:
        proxy = Proxy(rig.broker.port)
        state, log_path = work / "state", work / "agent.log"
        cfg = rig.write_config(work / "agent.yaml", state, port=proxy.port, keep_alive=5, reply_timeout=1,
                               retry_max_delay=1)
        proc = rig.start_agent(cfg, log_path)
        try:
            if not wait_until(lambda: accepted_count(state) >= 1, 20, 0.1):
                sc.fail("no report accepted before the first fault")
            kinds = ["cut", "stall", "half-open"] * (count // 3 + 1)
            rng.shuffle(kinds)
            for i, kind in enumerate(kinds[:count]):
                time.sleep(rng.uniform(0.3, 1.5))
                if kind == "cut":
                    proxy.cut()
                    time.sleep(rng.uniform(0.2, 2.0))
                elif kind == "stall":
                    proxy.stall()
                    time.sleep(rng.uniform(0.5, 3.0))
                else:
                    proxy.blackhole()
                    time.sleep(rng.uniform(1.0, 4.0))
                before = accepted_count(state)
                proxy.restore()
                lifted = time.monotonic()
                sc.runs += 1
                sc.count(kind)
                if wait_until(lambda b=before: accepted_count(state) > b, 30, 0.05):
                    times.append(time.monotonic() - lifted)
                else:
                    sc.fail(f"fault #{i} ({kind}): no report accepted within 30 s after it was lifted")
                if proc.poll() is not None:
                    sc.fail(f"fault #{i}: the agent exited with {proc.returncode}")
                    break
        finally:
            rig.stop_agent(proc)
        try:
            _settle_and_account(sc, rig, cfg, state, log_path)  # through the (restored) proxy, as configured
        finally:
            proxy.close()
    _recovery(sc, times)
    return sc


def scenario_disk_full(short: bool) -> Scenario:
    """state_dir on a 2 MiB tmpfs filled by `dd`; the agent must live on and send again once space returns."""
    import os
    import subprocess

    from agent.devtools.rig import Rig, accepted_count, built_ids, ledger, wait_until

    count = 1 if short else 3
    sc = Scenario("disk full", f"{count} fill(s) of state_dir (a 2 MiB tmpfs, min_free_disk 0) by another process "
                  "(dd) for 3 s: no crash, no traceback, a report built after space returns is accepted within "
                  "one interval (1 s) plus the round trip (limit 2 s)")
    if _no_broker(sc):
        return sc
    work = _rig_dir("diskfull")
    state = work / "state"
    state.mkdir()
    if os.geteuid() != 0:
        sc.status, sc.reason = "not run", "mounting a tmpfs needs root"
        return sc
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], capture_output=True,
                             text=True, check=False, timeout=10)
    if mounted.returncode != 0:
        sc.status, sc.reason = "not run", f"mount -t tmpfs not permitted: {mounted.stderr.strip()[:200]}"
        return sc
    times: List[float] = []
    try:
        with Rig(work) as rig:
            log_path = work / "agent.log"
            cfg = rig.write_config(work / "agent.yaml", state, reply_timeout=1, retry_max_delay=1)
            proc = rig.start_agent(cfg, log_path)
            try:
                if not wait_until(lambda: accepted_count(state) >= 1, 20, 0.1):
                    sc.fail("no report accepted before the disk was filled")
                for i in range(count):
                    filler = state / "filler"
                    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True,
                                   check=False, timeout=30)
                    time.sleep(3.0)
                    sc.runs += 1
                    if proc.poll() is not None:
                        sc.fail(f"fill #{i}: the agent exited with {proc.returncode} while the disk was full")
                        break
                    last_built = max(built_ids(log_path.read_text(errors="replace")) or [0])
                    filler.unlink()
                    freed = time.monotonic()
                    if wait_until(lambda lb=last_built: any(r > lb and o == "accepted"
                                                           for r, o in ledger(state).items()), 15, 0.05):
                        took = time.monotonic() - freed
                        times.append(took)
                        if took > 2.0:
                            sc.fail(f"fill #{i}: sending resumed {took:.1f} s after space returned (limit 2 s)")
                    else:
                        sc.fail(f"fill #{i}: no new report accepted within 15 s after space returned")
                    time.sleep(1.0)
                sc.outcomes["storage errors logged"] = log_path.read_text(errors="replace").count("Cannot write to")
            finally:
                rig.stop_agent(proc)
            _settle_and_account(sc, rig, cfg, state, log_path)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False, timeout=10)
    _recovery(sc, times)
    return sc


def _damage(path: Any, kind: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(rng.randrange(0, max(1, size)))
    elif kind == "zeroed":
        path.write_bytes(b"\0" * size)
    else:
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(max(size, 64))))


def scenario_corrupt(short: bool) -> Scenario:
    """Damage one state file (outbox, id reserve, network counters), start the agent, check it recovers."""
    import shutil

    from agent.devtools.rig import Rig, account, built_ids, counters, ledger

    count = 6 if short else 50
    sc = Scenario("corrupt state files", f"{count} damaged state files, cycling outbox.sqlite3, report_id_reserve "
                  "and the network_stats counter file, each truncated, zeroed or overwritten with random bytes: "
                  "the agent starts and sends (`run --reports 1`), an unreadable outbox is moved aside and counted, "
                  "new ids stay above every earlier one")
    if _no_broker(sc):
        return sc
    rng = random.Random(SEED + 5)
    work = _rig_dir("corrupt")
    files = ["outbox.sqlite3", "report_id_reserve", "network-counters.network_stats.json"]
    kinds = ["truncated", "zeroed", "random bytes"]
    with Rig(work) as rig:
        pristine = work / "pristine"
        cfg0 = rig.write_config(work / "pristine.yaml", pristine)
        first = rig.start_agent(cfg0, work / "pristine.log", "--reports", "3")
        first.wait(60)
        for i in range(count):
            name, kind = files[i % 3], kinds[(i // 3) % 3]
            state = work / f"run-{i:02d}"
            shutil.copytree(pristine, state)
            before = account(state, "", None)["ledger"]
            prior_max = max(ledger(state) or [0])
            _damage(state / name, kind, rng)
            log_path = work / f"run-{i:02d}.log"
            # Each run starts from a copy of the same state: a device of its own, so a thing name of its own
            # (two copies handing out the same next id under one thing would look like id reuse).
            cfg = rig.write_config(work / f"run-{i:02d}.yaml", state, thing=f"rig-gw-{i:02d}")
            proc = rig.start_agent(cfg, log_path, "--reports", "1")
            sc.runs += 1
            sc.count(f"{name} {kind}")
            try:
                proc.wait(30)
            except Exception:
                rig.stop_agent(proc)
                sc.fail(f"#{i} {name} {kind}: `run --reports 1` did not finish in 30 s")
                continue
            text = log_path.read_text(errors="replace")
            if proc.returncode != 0 or "Traceback" in text:
                sc.fail(f"#{i} {name} {kind}: exit {proc.returncode}\n{text[-1500:]}")
                continue
            acc = account(state, text, None)
            if acc["ledger"].get("accepted", 0) < 1 or not acc["built"]:
                sc.fail(f"#{i} {name} {kind}: no report accepted after the damage: {acc}")
            if acc["built"] and min(built_ids(text)) <= prior_max:
                sc.fail(f"#{i} {name} {kind}: a new id is not above the earlier ones ({prior_max})")
            moved = sorted(p.name for p in state.glob("*.corrupt*"))
            if name == "outbox.sqlite3":
                if moved and counters(state).get("outbox_corrupt") == 1:
                    sc.count("outbox moved aside and counted")
                elif not moved and acc["ledger"].get("accepted", 0) >= 1:
                    # SQLite could still read it (e.g. cut to 0 bytes: an empty file is an empty database)
                    sc.count("outbox still readable, kept")
                    if before and sum(before.values()) > sum(acc["ledger"].values()):
                        sc.count("outbox readable but lost ledger rows")
                else:
                    sc.fail(f"#{i} {name} {kind}: moved {moved}, counters {counters(state)}")
            else:
                sc.count(f"{name}: ignored and rewritten (not moved aside, not counted)")
    return sc


SCENARIOS: Dict[str, Callable[[bool], Scenario]] = {
    "configs": scenario_configs,
    "replies": scenario_replies,
    "exec_timeouts": scenario_exec_timeouts,
    "exec_flood": scenario_exec_flood,
    "kills": scenario_kills,
    "broker": scenario_broker_restarts,
    "cuts": scenario_cuts,
    "disk_full": scenario_disk_full,
    "corrupt": scenario_corrupt,
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short variant run by `make test` (< 60 s)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS))
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    results = run_campaign(args.short, args.only)
    name = "faults-short" if args.short else "faults"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {
        "name": name,
        "seed": SEED,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "scenarios": [asdict(s) for s in results],
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"Wrote {path}")
    if not args.short and not args.no_docs:
        from benchmarks import report

        report.render_reliability()
    return 1 if any(s.status == "failed" for s in results) else 0


def run_campaign(short: bool, only: Optional[List[str]] = None) -> List[Scenario]:
    results: List[Scenario] = []
    for key, fn in SCENARIOS.items():
        if only and key not in only:
            continue
        t0 = time.monotonic()
        log(f"Scenario {key}")
        sc = fn(short).finish()
        sc.seconds = round(time.monotonic() - t0, 1)
        log(
            f"  {sc.status}: {sc.runs} runs, {sc.failures} failures, {sc.lost} lost, {sc.outcomes} ({sc.seconds} s)"
        )
        results.append(sc)
    return results


if __name__ == "__main__":
    sys.exit(main())
