"""The main-job demo: throwaway PKI, a private mosquitto with mTLS, the responder, the agent for N reports.

Then the fleet step: the agent runs again with a named shadow (``remote_config: true``); an operator adds a
behavior with the AWS CLI (``aws iot-data update-thing-shadow`` against the local data plane), the running
gateway applies it, its violation follows, and ``aws iot-data get-thing-shadow`` reads the reported state back.

Runs on a fresh Debian machine with no AWS account; everything lives in a
temporary directory that is removed at the end (unless ``keep``). Returns 0 only
when every report was accepted and the fleet step worked.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

from agent.collectors.builtin import default_registry
from agent.commands.status_view import format_status, read_status
from agent.config.load import parse_config
from agent.errors import ConfigError
from agent.sinks.topics import render_topic
from devkit.broker import Broker, free_port
from devkit.certs import make_pki
from devkit.emulator.controlplane import ControlPlaneServer
from devkit.emulator.dataplane import DataPlaneServer
from devkit.emulator.responder import Responder, ResponderOptions
from devkit.emulator.shadow import ShadowStore
from devkit.emulator.store import Store
from devkit.selfrun import agent_argv, agent_env
from devkit.subscriber import Received, Subscriber

THING = "demo-gateway"
STANDARD_COLLECTORS = ("listening_ports", "tcp_connections", "network_stats")
# The demo's custom metrics: defined in the local control plane by `bootstrap`, read back by `values`.
DEMO_SYSTEM_METRICS = ("cpu_usage", "memory_used_percent", "load_average", "process_count", "uptime_seconds")
DEMO_CUSTOM = """  - type: system
    metrics: [{metrics}]
custom_metrics:
  cpu_usage: {{type: number, display_name: CPU usage (%)}}
  memory_used_percent: {{type: number, display_name: Memory used (%)}}
  load_average: {{type: number-list, display_name: Load average 1/5/15 min}}
  process_count: number
  uptime_seconds: number
""".format(metrics=", ".join(DEMO_SYSTEM_METRICS))
# Dummy credentials: boto3 signs requests, the local control plane does not check signatures.
DEMO_AWS_ENV = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "eu-west-1"}

VIOLATIONS = """\
violations:
  topic: "{events}"
  security_profile_name: {profile}
"""
CONFIG = """\
thing_name: {thing}
mqtt:
  endpoint: 127.0.0.1
  port: {port}
  cert: {cert}
  key: {key}
  ca: {ca}
report:
  interval: {interval}s
  jitter: 0s
delivery:
  reply_timeout: 5s
state_dir: {state}
sinks:
  - type: defender
  - type: topic
    topic: "{topic}"
  - type: textfile
    path: {textfile}
"""
SHADOW = "defender-agent"
# The fleet step's agent.yaml addition: the gateway keeps this named shadow and applies its desired state.
SHADOW_SECTION = """\
shadow:
  name: {name}
  remote_config: true
"""
NEW_BEHAVIOR = "NoTelnet"  # what the operator adds from the AWS CLI in the fleet step
TOPIC = "dt/gateways/{thing_name}/metrics"
EVENTS = "dt/gateways/{thing_name}/violations"
PROFILE = "demo-gateways"


def demo_profile(port: int) -> List[Dict[str, Any]]:
    """The security profile the demo pulls: port ``port`` must not listen (the demo opens it for a while), and
    one behavior only the cloud can evaluate (pulled commented out, with the reason)."""
    return [
        {"name": "NoDebugPort", "metric": "aws:listening-tcp-ports",
         "criteria": {"comparisonOperator": "not-in-port-set", "value": {"ports": [port]}}},
        {"name": "CpuNotPinned", "metric": "cpu_usage",
         "criteria": {"comparisonOperator": "less-than-equals", "value": {"number": 100},
                      "consecutiveDatapointsToAlarm": 2}},
        {"name": "FleetTypicalTraffic", "metric": "aws:all-bytes-out",
         "criteria": {"comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p90"},
                      "durationSeconds": 300}},
    ]


def agent_config(base: Path, port: int, cert: Path, key: Path, ca: Path, interval: int = 2) -> str:
    text = CONFIG.format(thing=THING, port=port, cert=cert, key=key, ca=ca, interval=interval, state=base / "state",
                         topic=TOPIC, textfile=textfile_path(base))
    available = set(default_registry().available())
    chosen = [c for c in STANDARD_COLLECTORS if c in available]
    if chosen:
        with_collectors = text + "collectors:\n" + "".join(f"  - type: {c}\n" for c in chosen) + DEMO_CUSTOM
        try:
            parse_config(with_collectors, "demo.yaml")
            return with_collectors
        except ConfigError:
            pass
    return text


def textfile_path(base: Path) -> Path:
    return base / "textfile" / "defender_agent.prom"


def find_aws_cli() -> Optional[Path]:
    """The AWS CLI beside this interpreter (the venv's: awscli is in the dev extra), else the one on PATH."""
    beside = Path(sys.executable).with_name("aws")
    found = shutil.which("aws")
    return beside if beside.exists() else Path(found) if found else None


def run_demo(reports: int = 3, interval: int = 2, keep: Optional[Path] = None, out: TextIO = sys.stdout,
             aws_cli: Optional[Path] = None) -> int:
    log = logging.getLogger("agent.demo")
    owned = keep is None
    base = Path(tempfile.mkdtemp(prefix="defender-demo-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    broker: Optional[Broker] = None
    responder: Optional[Responder] = None
    control: Optional[ControlPlaneServer] = None
    data: Optional[DataPlaneServer] = None
    subscriber: Optional[Subscriber] = None
    try:
        pki = make_pki(base / "pki")
        device = pki.client(THING)
        emulator = pki.client("defender-emulator")
        broker = Broker(base / "broker", pki)
        broker.start()
        print(f"Broker: mosquitto with mutual TLS on 127.0.0.1:{broker.port} (throwaway CA in {pki.directory})",
              file=out)
        store = Store()
        shadows = ShadowStore()
        control = ControlPlaneServer(store)
        control.start()
        responder = Responder(ResponderOptions("127.0.0.1", broker.port, str(emulator.cert), str(emulator.key),
                                               str(pki.ca), on_accepted=store.record_report, shadows=shadows),
                              log.getChild("responder"))
        responder.start()
        data = DataPlaneServer(shadows, publish=responder.publish_json)
        data.start()
        print("Responder: subscribed to $aws/things/+/defender/metrics/+ and the shadow topics", file=out)
        print(f"Control plane: AWS IoT custom-metric and security-profile API on {control.url}", file=out)
        print(f"Data plane: AWS IoT shadow API (aws iot-data) on {data.url}", file=out)
        reader = pki.client("topic-reader")
        topic, events_topic = render_topic(TOPIC, THING), render_topic(EVENTS, THING)
        subscriber = Subscriber(broker.port, str(reader.cert), str(reader.key), str(pki.ca), [topic, events_topic])
        subscriber.start()
        print(f"Subscriber: a client of our own on {topic} (the topic sink) and {events_topic} (violations)",
              file=out)
        textfile_path(base).parent.mkdir(parents=True, exist_ok=True)
        debug_port = free_port()
        store.create_security_profile(PROFILE, "the demo's behaviors", demo_profile(debug_port))
        config_path = base / "agent.yaml"
        text = agent_config(base, broker.port, device.cert, device.key, pki.ca, interval)
        config_path.write_text(text)
        pulled = base / "behaviors.yaml"
        _agent_cli(out, "behaviors", "pull", "--security-profile", PROFILE, "--output", str(pulled),
                   "--endpoint-url", control.url)
        config_path.write_text(text + pulled.read_text() + VIOLATIONS.format(events=EVENTS, profile=PROFILE))
        bootstrapped = _agent_cli(out, "bootstrap", "--config", str(config_path), "--endpoint-url", control.url) == 0
        print(f"\nAgent: {reports} report(s), one every {interval} s, thing {THING!r}; port {debug_port} "
              "listens until the violation of NoDebugPort arrives", file=out, flush=True)
        command = agent_argv("run", "--config", str(config_path), "--reports", str(reports))
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", debug_port))
            listener.listen()
            agent = subprocess.Popen(command, env=agent_env({"PYTHONUNBUFFERED": "1"}))
            subscriber.wait_for(1, reports * (interval + 5), events_topic)
        try:
            code = agent.wait(60 + reports * (interval + 10))
        except subprocess.TimeoutExpired:
            agent.kill()
            code = agent.wait()
        received = responder.wait_for(reports, 5.0)
        print("", file=out)
        for item in received:
            detail = "" if item.accepted else f" ({'; '.join(item.problems) or 'rejected on request'})"
            print(f"Report {item.report_id}: {item.replied.upper()}{detail}", file=out)
        messages = subscriber.wait_for(reports, 5.0, topic)
        _show_sinks(out, messages, textfile_path(base))
        violations = [json.loads(m.payload) for m in subscriber.wait_for(2, 5.0, events_topic)]
        _show_violations(out, violations)
        status = read_status(base / "state")
        print("\n$ defender-agent status", file=out)
        print(format_status(status), file=out)
        for metric in ("cpu_usage", "load_average", "aws:all-bytes-in"):
            _agent_cli(out, "values", "--config", str(config_path), "--endpoint-url", control.url,
                       "--metric", metric, "--since", "10m")
        accepted = status["outcomes"]["accepted"]
        sinks_ok = len(messages) >= reports and textfile_path(base).is_file()
        kinds = [v.get("violationEventType") for v in violations]
        fleet = _fleet_step(out, base, config_path, data.url, shadows, subscriber, events_topic,
                            demo_profile(debug_port)[:2], interval, aws_cli or find_aws_cli())
        ok = (code == 0 and accepted >= reports and not responder.conflicts and bootstrapped
              and sinks_ok and kinds == ["in-alarm", "alarm-cleared"] and fleet == "")
        print(f"\nDemo {'passed' if ok else 'FAILED'}: {accepted} of {reports} report(s) accepted over mTLS, "
              f"{len(messages)} topic message(s) received, textfile "
              f"{'written' if textfile_path(base).is_file() else 'MISSING'}, violation events: "
              f"{', '.join(map(str, kinds)) or 'none'}"
              + ("" if code == 0 else f"; agent exited with status {code}")
              + (f"; fleet step: {NEW_BEHAVIOR} set from the AWS CLI, applied live, in alarm"
                 if fleet == "" else f"; fleet step FAILED: {fleet}"), file=out)
        return 0 if ok else 1
    finally:
        if subscriber is not None:
            subscriber.stop()
        if responder is not None:
            responder.stop()
        if data is not None:
            data.stop()
        if control is not None:
            control.stop()
        if broker is not None:
            broker.stop()
        if owned:
            _remove(base)


def _fleet_step(out: TextIO, base: Path, config_path: Path, data_url: str, shadows: ShadowStore,
                subscriber: Subscriber, events_topic: str, behaviors: List[Dict[str, Any]], interval: int,
                aws_cli: Optional[Path]) -> str:
    """The agent again, now with its named shadow: an operator adds a behavior from the AWS CLI while it runs.

    Returns "" when it worked, else what went wrong (one phrase)."""
    print(f"\nFleet: the agent runs again, keeping the named shadow {SHADOW!r} (remote_config: true); an "
          f"operator adds the behavior {NEW_BEHAVIOR} to its desired state with the AWS CLI", file=out, flush=True)
    if aws_cli is None or not aws_cli.exists():
        print(f"No AWS CLI ({aws_cli or 'none beside the interpreter or on PATH'}): install the dev extra "
              "(pip install -e '.[dev]') or give --aws-cli", file=out)
        return "no AWS CLI"
    config_path.write_text(config_path.read_text() + SHADOW_SECTION.format(name=SHADOW))
    telnet_port = free_port()
    wanted = [*behaviors, {"name": NEW_BEHAVIOR, "metric": "aws:listening-tcp-ports",
                           "criteria": {"comparisonOperator": "not-in-port-set", "value": {"ports": [telnet_port]}}}]
    seen = len(subscriber.received(events_topic))
    problem = ""
    with socket.socket() as listener:  # a port the new behavior forbids: listening before the operator acts
        listener.bind(("127.0.0.1", telnet_port))
        listener.listen()
        agent = subprocess.Popen(agent_argv("run", "--config", str(config_path)),
                                 env=agent_env({"PYTHONUNBUFFERED": "1"}))
        try:
            if _poll(lambda: _reported(shadows) is not None, 30.0) is None:
                problem = "the agent did not report to its shadow"
            elif _aws(aws_cli, out, base, data_url, "update-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
                      "--payload", json.dumps({"state": {"desired": {"behaviors": wanted}}}), "update.json") != 0:
                problem = "update-thing-shadow failed"
            else:
                event = _poll(lambda: _new_alarm(subscriber, events_topic, seen), 10.0 + 5 * interval)
                if event is None:
                    problem = f"no in-alarm event of {NEW_BEHAVIOR}"
                else:
                    print(f"\nViolation: {event.get('violationEventType')} {NEW_BEHAVIOR} "
                          f"{json.dumps(event.get('metricValue'))}: the gateway applied the new behavior live, "
                          f"without a restart", file=out)
                    # The gateway reports the desired version it applied (its shadow updates are paced: seconds).
                    version = json.loads((base / "update.json").read_text())["version"]
                    if _poll(lambda: _applied(shadows, version), 30.0) is None:
                        problem = f"the gateway did not report config.desired_version {version} or later"
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    if _aws(aws_cli, out, base, data_url, "get-thing-shadow", "--thing-name", THING, "--shadow-name", SHADOW,
            "shadow.json") != 0:
        return problem or "get-thing-shadow failed"
    document = json.loads((base / "shadow.json").read_text())
    state = document.get("state", {})
    print(f"Reported state (version {document.get('version')}):", file=out)
    print(json.dumps(state.get("reported", {}), indent=2)[:2000], file=out)
    print(f"Delta (desired fields that reported does not show): {', '.join(state.get('delta', {})) or 'none'}",
          file=out)
    return problem


def _reported(shadows: ShadowStore) -> Optional[Dict[str, Any]]:
    document = shadows.document(THING, SHADOW)
    reported: Optional[Dict[str, Any]] = (document or {}).get("state", {}).get("reported")
    return reported


def _applied(shadows: ShadowStore, version: int) -> bool:
    """The gateway reported that it applied the desired state of ``version`` (or a later one)."""
    config = (_reported(shadows) or {}).get("config")
    applied = config.get("desired_version") if isinstance(config, dict) else None
    return isinstance(applied, int) and applied >= version


def _new_alarm(subscriber: Subscriber, events_topic: str, seen: int) -> Optional[Dict[str, Any]]:
    for message in subscriber.received(events_topic)[seen:]:
        event: Dict[str, Any] = json.loads(message.payload)
        if event.get("violationEventType") == "in-alarm" and event.get("behavior", {}).get("name") == NEW_BEHAVIOR:
            return event
    return None


def _poll(check: Any, timeout: float) -> Any:
    """``check()`` until it is truthy (its value) or ``timeout`` seconds pass (``None``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return None


def _aws(aws_cli: Path, out: TextIO, base: Path, url: str, command: str, *args: str) -> int:
    """Run ``aws iot-data COMMAND ARGS`` against the local data plane as an operator would, echoing it.

    The last argument is the output file (relative to ``base``); its JSON is printed. The venv's CLI is v1
    (PyPI's): it takes ``--payload`` raw; the config file's ``cli_binary_format`` makes CLI v2 do the same."""
    config = base / "aws-config"
    config.write_text("[default]\ncli_binary_format = raw-in-base64-out\n")
    env = agent_env({**DEMO_AWS_ENV, "AWS_CONFIG_FILE": str(config), "AWS_PAGER": "",
                     "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-credentials")})
    *options, outfile = args
    shown = " ".join(f"'{a}'" if a.startswith("{") else a for a in options)
    print(f"\n$ aws iot-data {command} --endpoint-url {url} {shown} {outfile}", file=out, flush=True)
    result = subprocess.run([str(aws_cli), "iot-data", command, "--endpoint-url", url, *options, outfile],
                            capture_output=True, text=True, timeout=60, check=False, env=env, cwd=str(base))
    print((result.stdout + result.stderr).rstrip("\n"), file=out)
    if result.returncode == 0 and command == "update-thing-shadow":
        accepted = json.loads((base / outfile).read_text())
        print(f"{outfile}: accepted, version {accepted.get('version')}", file=out, flush=True)
    return result.returncode


def _show_sinks(out: TextIO, messages: List[Received], textfile: Path) -> None:
    """The last topic message as the subscriber got it, and the textfile's metrics (a few of them)."""
    if messages:
        last = messages[-1]
        print(f"\nTopic sink: {len(messages)} message(s) on {last.topic}; the last one:", file=out)
        print(json.dumps(json.loads(last.payload), indent=2)[:1500], file=out)
    else:
        print("\nTopic sink: no message arrived", file=out)
    try:
        lines = textfile.read_text().splitlines()
    except OSError as exc:
        print(f"\nTextfile sink: {textfile} not written ({exc})", file=out)
        return
    samples = [line for line in lines if line and not line.startswith("#")]
    print(f"\nTextfile sink: {textfile} ({len(samples)} samples), for example:", file=out)
    wanted = ("defender_agent_aws_num_listening_tcp_ports", "defender_agent_cpu_usage ",
              "defender_agent_collector_success", "defender_agent_sink_delivered_total")
    for line in samples:
        if line.startswith(wanted):
            print(f"  {line}", file=out)


def _show_violations(out: TextIO, events: List[Dict[str, Any]]) -> None:
    print(f"\nViolations: {len(events)} event(s) on {render_topic(EVENTS, THING)}", file=out)
    for event in events:
        print(f"  {event.get('violationEventType'):<18} {event.get('behavior', {}).get('name')} "
              f"{json.dumps(event.get('metricValue'))} (violation {event.get('violationId')})", file=out)
    if events:
        print("The first, as Detect's ViolationEvent:", file=out)
        print(json.dumps(events[0], indent=2), file=out)


def _agent_cli(out: TextIO, *args: str) -> int:
    """Run one `defender-agent` command as a person would, echoing it and its output."""
    shown = " ".join(Path(a).name if a.startswith("/") else a for a in args)
    print(f"\n$ defender-agent {shown}", file=out, flush=True)
    result = subprocess.run(agent_argv(*args), capture_output=True, text=True, timeout=60,
                            check=False, env=agent_env(DEMO_AWS_ENV))
    print((result.stdout + result.stderr).rstrip("\n"), file=out, flush=True)
    return result.returncode


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devkit.demo")
    parser.add_argument("--reports", type=int, default=3)
    parser.add_argument("--interval", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_demo(args.reports, args.interval)
