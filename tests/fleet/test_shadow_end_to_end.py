"""The fleet feature (issue 25) end to end, all real parts: mosquitto with mutual TLS, the emulator's Device
Shadow service (its responder on the broker and its iot-data HTTP data plane), ``defender-agent run`` as a
process, and the operator's side through boto3's ``iot-data`` client and the AWS CLI (``aws iot-data``).

The emulator's store records every update with its clientToken and answer (:class:`tests.fleet.rig.RecordingShadows`),
so the agent's updates are counted on the service's side, not taken from the agent.

``pytest -s -k operator`` prints the operator's session (desired change with the AWS CLI, the delta on MQTT,
the journal line, get-thing-shadow, a refused key): the transcript of docs/FLEET.md's remote config.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from botocore.exceptions import ClientError

import agent
from agent.consumers.shadow.rate import max_updates
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.subscriber import Subscriber
from tests.delivery.conftest import THING
from tests.fleet.rig import (
    SHADOW,
    AgentProcess,
    RecordingShadows,
    ShadowService,
    Transcript,
    agent_config,
    aws_get,
    aws_update,
    iot_data,
    nowait,
    shown,
    wait_for,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


def listening_socket() -> socket.socket:
    """A real TCP socket listening on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def free_port() -> int:
    """A free loopback port (nothing listens on it until the test binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_behavior(name: str, port: int) -> Dict[str, Any]:
    """A behavior in agent.yaml's form: port ``port`` must not listen."""
    return {"name": name, "metric": "aws:listening-tcp-ports",
            "criteria": {"comparisonOperator": "not-in-port-set", "value": {"ports": [port]}}}


def yaml_behaviors(*behaviors: Dict[str, Any]) -> str:
    return "behaviors:\n" + "".join(f"  - {json.dumps(b)}\n" for b in behaviors)


COLLECT_PORTS = "collectors:\n  - type: listening_ports\n"


def start(agents: List[AgentProcess], work: Path, pki: Pki, broker: Broker, extra: str, remote: bool,
          name: str = "agent") -> AgentProcess:
    config = work / f"{name}.yaml"
    config.write_text(agent_config(pki, broker.port, work / "state", extra, remote))
    config.chmod(0o600)
    process = AgentProcess(config, work / f"{name}.log").start()
    agents.append(process)
    return process


def shadow_of(url: str) -> Dict[str, Any]:
    """get_thing_shadow through boto3: the whole document."""
    return dict(json.loads(iot_data(url).get_thing_shadow(thingName=THING, shadowName=SHADOW)["payload"].read()))


def reported_when(url: str, check: Callable[[Dict[str, Any]], bool]) -> Callable[[], Dict[str, Any]]:
    """A poll of the shadow through boto3: the whole document once ``check(document)`` holds, else {}."""
    def poll() -> Dict[str, Any]:
        try:
            document = shadow_of(url)
            return document if check(document) else {}
        except (ClientError, KeyError):  # no shadow until the agent's first update; no reported section yet
            return {}
    return poll


def test_reported_state_has_the_fleet_fields_typed_for_indexing_and_a_real_alarm(
        pki: Pki, broker: Broker, service: ShadowService, agents: List[AgentProcess], work: Path) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        quiet = port_behavior("QuietPort", 1)  # nothing listens on port 1: never in alarm
        run = start(agents, work, pki, broker, COLLECT_PORTS + yaml_behaviors(port_behavior("NoDebugPort", port), quiet),
                    remote=False)
        document = wait_for(reported_when(service.url, lambda d: d["state"]["reported"].get("violations", {}).get(
            "behaviors") == ["NoDebugPort"]), 60, "the shadow shows NoDebugPort in alarm", run.text)
    reported = document["state"]["reported"]
    assert isinstance(reported["agent"]["version"], str) and reported["agent"]["version"] == agent.__version__
    assert type(reported["health"]["ok"]) is bool and reported["health"]["ok"] is True
    assert type(reported["violations"]["active"]) is int and reported["violations"]["active"] >= 1
    assert reported["violations"]["behaviors"] == ["NoDebugPort"]
    assert reported.get("config", {}).get("refused", {}) == {} and reported["config"]["remote"] is False
    assert type(reported["report"]["last_at"]) in (int, float) and reported["report"]["last_at"] > 1_700_000_000
    assert type(reported["outbox"]["pending"]) is int
    assert run.running() and "Traceback" not in run.text()


def test_a_rejected_update_is_logged_once_while_the_reports_go_on(
        pki: Pki, broker: Broker, service: ShadowService, shadows: RecordingShadows, agents: List[AgentProcess],
        work: Path) -> None:
    # The operator's desired state leaves under 200 bytes of the shadow's 8 KB: the agent's reported (300+
    # bytes even with its lists cut) makes every update of it too large, 413, as AWS answers.
    room = 8 * 1024 - len('{"desired":{"note":""}}') - 200
    aws_update(service.url, work, {"note": "x" * room})
    run = start(agents, work, pki, broker, COLLECT_PORTS, remote=False)
    wait_for(lambda: len(shadows.agent_updates(413)) >= 1, 60, "a first update rejected", run.text)
    reports = service.reports_accepted()
    wait_for(lambda: len(shadows.agent_updates(413)) >= 3, 90, "three updates rejected (retried with backoff)",
             run.text)
    assert service.reports_accepted() > reports, "the reports go on while the shadow rejects"
    assert shadows.agent_updates(200) == [], "nothing of the agent's was accepted"
    rejected = run.lines("rejected with 413")
    assert len(rejected) == 1, run.text()
    assert "WARNING agent.sinks.shadow: Shadow 'defender-agent': update " in rejected[0]
    assert "The payload exceeds the maximum size allowed" in rejected[0]
    # The operator clears desired: the next retry is accepted, and said once.
    aws_update(service.url, work, None)
    wait_for(lambda: shadows.agent_updates(200), 90, "an update accepted once desired is cleared", run.text)
    wait_for(lambda: run.lines("updates work again"), 10, "the journal says updates work again", run.text)
    assert len(run.lines("rejected with 413")) == 1 and run.running()
    assert shadow_of(service.url)["state"]["reported"]["agent"]["version"] == agent.__version__


def test_the_update_rate_at_a_one_second_interval_stays_within_the_pace(
        pki: Pki, broker: Broker, service: ShadowService, shadows: RecordingShadows, agents: List[AgentProcess],
        work: Path) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    began = time.monotonic()
    run = start(agents, work, pki, broker, COLLECT_PORTS + yaml_behaviors(port_behavior("Flapping", port)),
                remote=False)
    try:
        # About 30 rounds with the behavior flapping every 3 s: each flip is an urgent change, every round
        # moves report.last_at (routine); without the pace that is an update a second.
        flips = 0
        deadline = began + 90
        while service.reports_accepted() < 30 and time.monotonic() < deadline:
            nowait(3.0)
            if sock.fileno() >= 0:
                sock.close()
            else:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sock.listen()
            flips += 1
        assert service.reports_accepted() >= 30, run.text()
    finally:
        sock.close()
    updates = shadows.agent_updates()
    seconds = time.monotonic() - began  # after the count: every update counted went within these seconds
    bound = max_updates(seconds, 1.0)
    print(f"\n{len(updates)} shadow updates over {seconds:.1f} s at a 1 s report interval "
          f"({service.reports_accepted()} reports, {flips} flips of the alarm); the pace allows {bound}")
    assert len(run.lines("Behavior 'Flapping' in alarm")) >= 3, "the alarm flapped (urgent changes)"
    assert 2 <= len(updates) <= bound, [u.token for u in updates]
    assert all(u.code == 200 for u in updates)
    assert run.running()


# -- remote config (shadow.remote_config: true) --------------------------------------------------------------

def delta_topic() -> str:
    return f"$aws/things/{THING}/shadow/name/{SHADOW}/update/delta"


def test_an_operator_changes_a_behavior_with_the_aws_cli_and_the_agent_applies_it_live(
        pki: Pki, broker: Broker, service: ShadowService, agents: List[AgentProcess], work: Path) -> None:
    say = Transcript()
    watcher_pair = pki.client("operator-watch")
    watcher = Subscriber(broker.port, str(watcher_pair.cert), str(watcher_pair.key), str(pki.ca), [delta_topic()],
                         client_id="operator-watch")
    watcher.start()
    sock = listening_socket()
    port = sock.getsockname()[1]
    try:
        run = start(agents, work, pki, broker, COLLECT_PORTS + yaml_behaviors(port_behavior("QuietPort", 1)),
                    remote=True)
        first = wait_for(reported_when(service.url, lambda d: "report" in d["state"]["reported"]), 60,
                         "the agent's first report in the shadow", run.text)
        assert first["state"]["reported"]["violations"] == {"active": 0, "behaviors": []}
        pid, connected = run.pid, len(run.lines("Connected to"))
        say.step(f"defender-agent run (pid {pid}), remote_config: true; agent.yaml's behavior QuietPort; "
                 f"port {port} listening")

        wanted = [port_behavior("NoDebugPort", port)]
        accepted = aws_update(service.url, work, {"behaviors": wanted}, say)
        version = accepted["version"]
        delta = wait_for(lambda: [m for m in watcher.received(delta_topic())
                                  if json.loads(m.payload)["version"] == version], 20, "the delta on MQTT")
        say.step(f"the device's {delta_topic()} (seen by another subscriber)",
                 shown(json.loads(delta[0].payload)["state"]))

        applied = wait_for(lambda: run.lines(f"Remote config from shadow version {version} applied: behaviors"), 30,
                           "the journal line of the change applied", run.text)
        wait_for(lambda: run.lines("Behavior 'NoDebugPort' in alarm"), 30, "the new behavior's alarm", run.text)
        say.step("journal (agent)", "\n".join(applied + run.lines("Behavior 'NoDebugPort' in alarm")))

        document = wait_for(reported_when(service.url, lambda d: d["state"]["reported"].get("config", {}).get(
            "desired_version") == version and d["state"]["reported"]["violations"]["behaviors"] == ["NoDebugPort"]),
            60, "reported: the violation and the version applied", run.text)
        reports = service.reports_accepted()
        wait_for(lambda: service.reports_accepted() >= reports + 3, 30, "reports keep flowing", run.text)
        state = aws_get(service.url, work, say)["state"]

        # A key a shadow may never set, beside the applied ones: refused, named in reported, left in the delta.
        moved = aws_update(service.url, work, {"mqtt": {"endpoint": "evil.example.com"}}, say)["version"]
        warned = wait_for(lambda: run.lines(f"Remote config from shadow version {moved}: refused"), 30,
                          "the journal line of the refusal", run.text)
        say.step("journal (agent)", "\n".join(warned))
        wait_for(reported_when(service.url, lambda d: d["state"]["reported"]["config"].get("desired_version") == moved),
                 60, "reported: the refusal", run.text)
        after = aws_get(service.url, work, say)["state"]
    finally:
        sock.close()
        watcher.stop()
    assert after["reported"]["config"].get("refused") == {"mqtt.endpoint": "moves the connection"}
    assert after["delta"] == {"mqtt": {"endpoint": "evil.example.com"}}, "only the refused key differs"
    assert after["reported"]["behaviors"] == wanted and after["reported"]["violations"]["active"] == 1
    reported = state["reported"]
    assert "delta" not in state, f"get-thing-shadow shows no delta for what was applied: {state.get('delta')}"
    assert reported.get("behaviors") == wanted, "reported echoes the applied behaviors"
    assert reported["config"]["desired_version"] == version and reported["config"]["remote"] is True
    assert reported["violations"]["active"] == 1
    assert document["state"]["reported"]["violations"]["behaviors"] == ["NoDebugPort"]
    assert run.running() and run.pid == pid, "applied live: the same process"
    assert len(run.lines("Connected to")) == connected == 1, "no reconnect"
    assert len(applied) == 1 and "Traceback" not in run.text()
    print("\n" + say.text())


def test_never_remote_keys_are_refused_and_never_run_and_bad_requests_never_reach_the_agent(
        pki: Pki, broker: Broker, service: ShadowService, shadows: RecordingShadows, agents: List[AgentProcess],
        work: Path) -> None:
    mark = work / "pwned"
    touch = ["/usr/bin/touch", str(mark)]
    port = free_port()
    run = start(agents, work, pki, broker, COLLECT_PORTS + yaml_behaviors(port_behavior("NoDebugPort", port)),
                remote=True)
    wait_for(reported_when(service.url, lambda d: "report" in d["state"]["reported"]), 60,
             "the agent's first report in the shadow", run.text)
    desired = {
        "collectors": {"pwn": {"type": "exec", "command": ["/bin/sh", "-c", f"touch {mark}"], "interval": "1s"},
                       "listening_ports": {"command": touch}},
        "mqtt": {"endpoint": "evil.example.com"},
        "state_dir": str(work / "elsewhere"),
        "sinks": [{"type": "textfile", "path": str(work / "evil.prom")}],
        "violations": {"exec": touch},
        "report": {"interval": "2s"},  # allowed: applied beside the refusals
    }
    version = aws_update(service.url, work, desired)["version"]
    expected = {
        "collectors.pwn.type": "could run a program",
        "collectors.pwn.command": "could run a program",
        "collectors.listening_ports.command": "could run a program",
        "mqtt.endpoint": "moves the connection",
        "state_dir": "names a file",
        "sinks[0].path": "names a file",
        "violations.exec": "could run a program",
    }
    document = wait_for(reported_when(service.url, lambda d: d["state"]["reported"]["config"].get(
        "desired_version") == version), 60, "reported: the version resolved", run.text)
    reported = document["state"]["reported"]
    refused = reported["config"].get("refused", {})
    for key, reason in expected.items():
        assert refused.get(key) == reason, (key, refused)
    assert reported["report"]["interval"] == "2s", "the allowed key of the same document applies"
    assert set(document["state"]["delta"]) >= {"collectors", "mqtt", "state_dir", "sinks", "violations"}, \
        "a refused key stays in the delta (hasDelta finds the gateway)"
    assert "report" not in document["state"]["delta"]
    warned = run.lines(f"Remote config from shadow version {version}: refused")
    assert len(warned) == 1 and "mqtt.endpoint (moves the connection)" in warned[0], run.text()

    # An unknown key in a later delta: refused as such; the earlier refusals stay.
    version = aws_update(service.url, work, {"frobnicate": {"level": 11}})["version"]
    document = wait_for(reported_when(service.url, lambda d: d["state"]["reported"]["config"].get(
        "desired_version") == version), 60, "reported: the unknown key's version", run.text)
    refused = document["state"]["reported"]["config"].get("refused", {})
    assert refused.get("frobnicate") == "not a config key", refused
    assert refused.get("mqtt.endpoint") == "moves the connection", refused

    # Bad requests to the data plane are answered as AWS answers them, and reach nobody.
    client = iot_data(service.url)
    for payload, error, status in (
            (b'{"state": {"desired": {"log_level": "debug"}', "InvalidRequestException", 400),
            (json.dumps({"state": {"desired": {"log_level": "debug"}}, "version": version - 1}).encode(),
             "ConflictException", 409),
            (json.dumps({"state": {"desired": {"note": "x" * (8 * 1024)}}}).encode(),
             "RequestEntityTooLargeException", 413)):
        with pytest.raises(ClientError) as caught:
            client.update_thing_shadow(thingName=THING, shadowName=SHADOW, payload=payload)
        assert caught.value.response["Error"]["Code"] == error
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert [r.code for r in shadows.records if r.token is None][-3:] == [400, 409, 413]
    desired_now = shadow_of(service.url)["state"]["desired"]
    assert "log_level" not in desired_now and "note" not in desired_now, "nothing was stored"

    # A violation event now: violations.exec, had it been taken from the shadow, would run touch.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        wait_for(lambda: run.lines("Behavior 'NoDebugPort' in alarm"), 30, "a violation event", run.text)
        reports = service.reports_accepted()
        wait_for(lambda: service.reports_accepted() >= reports + 3, 30, "reports keep flowing", run.text)
    assert not mark.exists(), "no program named by the shadow ran"
    assert not (work / "evil.prom").exists() and not (work / "elsewhere").exists()
    assert shadow_of(service.url)["state"]["reported"]["config"]["desired_version"] == version
    assert run.lines("log_level") == [] and run.running()
    assert len(run.lines("Connected to")) == 1, "the connection stays"
    assert "evil.example.com" not in "".join(run.lines("Connected to")) and "Traceback" not in run.text()


def collector_rounds(run: AgentProcess) -> int:
    """Rounds of the listening_ports collector, from ``defender-agent status --json`` (state_dir alone)."""
    done = run.command("status", "--json")
    if done.returncode != 0:
        return -1
    c = json.loads(done.stdout).get("collectors", {}).get("listening_ports", {})
    return int(c.get("ok", 0) + c.get("failed", 0) + c.get("no_data", 0))


def test_a_change_made_while_the_agent_is_stopped_applies_at_connect_and_stays_with_the_broker_away(
        pki: Pki, broker: Broker, service: ShadowService, agents: List[AgentProcess], work: Path) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    extra = COLLECT_PORTS + yaml_behaviors(port_behavior("QuietPort", 1))
    config = work / "agent.yaml"
    config.write_text(agent_config(pki, broker.port, work / "state", extra, remote=True, interval=60))
    config.chmod(0o600)
    try:
        first = AgentProcess(config, work / "first.log").start()
        agents.append(first)
        wait_for(reported_when(service.url, lambda d: "report" in d["state"]["reported"]), 60,
                 "the agent's first report in the shadow", first.text)
        assert first.stop() == 0

        # (b) while it is stopped, the operator sets a behavior and a 1 s report interval.
        wanted = [port_behavior("NoDebugPort", port)]
        version = aws_update(service.url, work, {"behaviors": wanted, "report": {"interval": "1s"}})["version"]
        second = AgentProcess(config, work / "second.log").start()
        agents.append(second)
        wait_for(lambda: second.lines(f"Remote config from shadow version {version} applied: behaviors, "
                                      "report.interval"), 60, "applied at connect (get)", second.text)
        document = wait_for(reported_when(service.url, lambda d: d["state"]["reported"]["config"].get(
            "desired_version") == version and d["state"]["reported"]["violations"]["active"] == 1), 60,
            "reported: applied at connect, the new behavior in alarm", second.text)
        reports = service.reports_accepted()
        wait_for(lambda: service.reports_accepted() >= reports + 3, 30, "reports every second (the remote interval)",
                 second.text)
        assert second.stop() == 0
    finally:
        sock.close()
    state = document["state"]
    assert "delta" not in state, state.get("delta")
    assert state["reported"]["behaviors"] == wanted and state["reported"]["report"]["interval"] == "1s"

    # (f) the broker away: the next start runs the remote keys from state_dir before any connection.
    broker.stop()
    third = AgentProcess(config, work / "third.log").start()
    agents.append(third)
    wait_for(lambda: third.lines(f"Remote config from shadow version {version} in effect: behaviors, "
                                 "report.interval"), 30, "the stored keys in effect at start", third.text)
    running = wait_for(lambda: third.lines("INFO agent: Running: "), 30, "the Running line", third.text)
    assert "report every 1 s" in running[0], "the interval in effect is the remote one"
    rounds = collector_rounds(third)
    wait_for(lambda: collector_rounds(third) >= rounds + 3, 30,
             "rounds every second with the broker away (agent.yaml says 60 s)", third.text)
    status = json.loads(third.command("status", "--json").stdout)["remote"]
    assert status["version"] == version
    assert status["applied"] == {"behaviors": wanted, "report": {"interval": "1s"}}
    text = third.command("status").stdout
    assert f"remote config: shadow version {version}, in effect" in text, text
    assert '  report.interval: "1s" (shadow version' in text, text
    effective = third.command("config", "--effective", "--json")
    assert effective.returncode == 0, effective.stderr
    merged = json.loads(effective.stdout)
    assert merged["config"]["report"]["interval"] == "1s" and merged["config"]["behaviors"] == wanted, merged
    assert third.running() and third.lines("Connected to") == []
    assert "Traceback" not in first.text() + second.text() + third.text()
