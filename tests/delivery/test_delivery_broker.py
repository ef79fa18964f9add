"""The scheduler against a real mosquitto (mutual TLS), the real awscrt client and the local responder."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Dict

import pytest

from agent.commands.status_view import read_status
from agent.mqtt.topics import reply_topic
from agent.report.document import decode, to_long
from devkit.broker import Broker
from devkit.certs import Pki
from devkit.emulator.responder import Responder
from devkit.fake_link import rejected_body
from devkit.proxy import Proxy
from devkit.rig import counters
from tests.delivery.conftest import THING, RunningService, ledger, make_config, pending_ids, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def accepted_count(state: Path) -> int:
    return sum(1 for o in ledger(state).values() if o == "accepted")


def bytes_in(payload: bytes) -> int:
    doc, _ = decode(payload)
    return int(to_long(doc).get("metrics", {}).get("network_stats", {}).get("bytes_in", 0))


def check_accounting(state: Path, responder: Responder, rounds: int, per_round: int = 100, fold: bool = False) -> None:
    """Every id has one outcome; no id carried two payloads; ids on the wire only went up; no delta was counted twice.

    ``newest`` (the default): every report sent carries exactly its own round's delta, never an outage's.
    ``fold``: a report may carry several rounds' deltas, but their sum never exceeds what was sampled.
    """
    outcomes = ledger(state)
    pend = pending_ids(state)
    assert not set(outcomes) & set(pend)
    assert len(outcomes) + len(pend) >= rounds  # every round's id is accounted for (fold adds ids of its own)
    assert responder.conflicts == []
    payloads: Dict[int, bytes] = {}
    firsts = []
    for item in responder.snapshot():
        assert item.report_id is not None
        payloads[item.report_id] = item.payload
        if item.report_id not in firsts:
            firsts.append(item.report_id)
        assert item.report_id in outcomes or item.report_id in pend, f"received id {item.report_id} unaccounted"
    assert firsts == sorted(firsts), "an older report id was first published after a newer one"
    accepted = [rid for rid, o in outcomes.items() if o == "accepted"]
    assert all(rid in payloads for rid in accepted)
    sent = [bytes_in(payload) for payload in payloads.values()]
    if fold:
        assert all(b % per_round == 0 and b > 0 for b in sent)
    else:
        assert set(sent) <= {per_round}, "a report carried more than its own interval's delta"
    assert sum(bytes_in(payloads[rid]) for rid in accepted) <= rounds * per_round


def test_accepted_flow_and_status(pki: Pki, broker: Broker, responder: Responder, tmp_path: Path) -> None:
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state))
    assert wait_until(lambda: accepted_count(state) >= 3, 20)
    assert svc.stop() < 3.0
    got = responder.snapshot()
    assert [r.replied for r in got][:3] == ["accepted"] * 3
    ids = [r.report_id for r in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    status = read_status(state)
    assert status["outcomes"]["accepted"] >= 3 and status["collectors"]["counting"]["ok"] >= 3
    check_accounting(state, responder, svc.source.rounds)


def test_rejected_flow_keeps_code_and_message(pki: Pki, broker: Broker, responder: Responder,
                                              tmp_path: Path) -> None:
    responder.mode = "reject"
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, format="cbor"))
    assert wait_until(lambda: "rejected" in ledger(state).values(), 15)
    svc.stop()
    rejection = read_status(state)["last_rejections"][0]
    assert (rejection["code"], rejection["message"]) == ("InvalidPayload", "Malformed metrics report")


def test_no_reply_means_same_id_same_bytes_with_backoff(pki: Pki, broker: Broker, responder: Responder,
                                                        tmp_path: Path) -> None:
    responder.mode = "silent"
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, interval=300, reply_timeout=1, retry_max_delay=2))
    got = wait_until(lambda: len(responder.snapshot()) >= 3 and responder.snapshot(), 15)
    assert len({r.report_id for r in got}) == 1 and len({r.payload for r in got}) == 1
    gaps = [b.received_at_ms - a.received_at_ms for a, b in zip(got, got[1:])]
    assert all(g >= 900 for g in gaps) and all(g <= 2600 for g in gaps)
    responder.mode = "normal"
    assert wait_until(lambda: accepted_count(state) == 1, 10)
    svc.stop()
    assert responder.conflicts == []


def test_malformed_and_foreign_replies_are_ignored(pki: Pki, broker: Broker, responder: Responder,
                                                   tmp_path: Path) -> None:
    responder.mode = "garbage"
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, interval=300, reply_timeout=1, retry_max_delay=1))
    got = wait_until(lambda: len(responder.snapshot()) >= 2 and responder.snapshot(), 10)
    assert got and ledger(state) == {}
    rid = got[0].report_id
    # extra noise on the agent's own reply topics, sent by the responder's client
    from awscrt import mqtt5

    def send(outcome: str, payload: bytes) -> None:
        responder._client.publish(mqtt5.PublishPacket(topic=reply_topic(THING, "json", outcome), payload=payload,
                                                      qos=mqtt5.QoS.AT_LEAST_ONCE))

    noise = [b"", b"[]", b"{}", json.dumps({"reportId": 1, "thingName": THING}).encode(), b"\x00" * 70000,
             json.dumps({"reportId": 99, "thingName": "someone-else", "status": "ACCEPTED"}).encode()]
    for payload in noise:
        send("accepted", payload)
    # Then a well-formed rejection of the awaiting report, from the same client: mosquitto forwards one client's
    # messages to the agent in the order it received them, so once it is in the ledger the noise was handled
    # before it, and had the noise settled the report, the ledger would hold that outcome instead.
    send("rejected", json.dumps(rejected_body(THING, rid, "AfterTheNoise", "sent after the noise")).encode())
    assert wait_until(lambda: ledger(state), 10) == {rid: "rejected"}, "the noise settled a report"
    assert svc.thread.is_alive()
    rejection = read_status(state)["last_rejections"][0]
    assert (rejection["code"], rejection["message"]) == ("AfterTheNoise", "sent after the noise")
    svc.stop()


@pytest.mark.parametrize("backlog", ["newest", "fold"])
def test_after_an_outage_only_the_newest_report_goes(pki: Pki, broker: Broker, responder: Responder, proxy: Proxy,
                                                     tmp_path: Path, backlog: str) -> None:
    proxy.cut()
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, proxy.port, state, retry_max_delay=1, backlog=backlog))
    assert wait_until(lambda: svc.source.rounds >= 4, 10)
    assert responder.snapshot() == []
    proxy.restore()
    assert wait_until(lambda: accepted_count(state) >= 1, 15)
    svc.stop()
    first = responder.snapshot()[0]
    if backlog == "fold":
        assert bytes_in(first.payload) >= 300  # the outage's reports were folded into the first one sent
    else:
        assert bytes_in(first.payload) == 100  # its own interval: the outage's deltas were left out, and logged
    assert "superseded" in ledger(state).values()
    check_accounting(state, responder, svc.source.rounds, fold=backlog == "fold")


def test_without_replies_each_newer_report_ends_the_older_one_unanswered(pki: Pki, broker: Broker,
                                                                          responder: Responder, tmp_path: Path) -> None:
    """A device policy without iot:Receive looks like this: the broker takes every publish, no reply comes back."""
    responder.mode = "silent"
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, interval=1, reply_timeout=1, retry_max_delay=1))
    assert wait_until(lambda: list(ledger(state).values()).count("unanswered") >= 3, 20)
    svc.stop()
    assert read_status(state)["outcomes"]["unanswered"] >= 3
    check_accounting(state, responder, svc.source.rounds)


def test_stalled_connection_recovers(pki: Pki, broker: Broker, responder: Responder, proxy: Proxy,
                                     tmp_path: Path) -> None:
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, proxy.port, state, reply_timeout=1, retry_max_delay=2))
    assert wait_until(lambda: accepted_count(state) >= 1, 10)
    published = counters(state).get("published", 0)
    proxy.stall()
    # Stalled until the agent has published into it twice: both wait in the proxy, unanswered.
    assert wait_until(lambda: counters(state).get("published", 0) >= published + 2, 10)
    proxy.cut()
    proxy.restore()
    before = accepted_count(state)
    assert wait_until(lambda: accepted_count(state) > before, 20)
    svc.stop()
    check_accounting(state, responder, svc.source.rounds)


def test_twenty_broker_restarts_lose_nothing(pki: Pki, broker: Broker, responder: Responder,
                                             tmp_path: Path) -> None:
    rng = random.Random(7)
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, reply_timeout=1, retry_max_delay=1))
    assert wait_until(lambda: accepted_count(state) >= 1, 10)
    started = time.monotonic()
    for _ in range(20):
        time.sleep(rng.uniform(0.1, 1.2))
        broker.restart(down_for=rng.uniform(0.0, 0.5))
    restarts_took = time.monotonic() - started
    before = accepted_count(state)
    assert wait_until(lambda: accepted_count(state) > before + 1, 20)
    svc.stop()
    check_accounting(state, responder, svc.source.rounds)
    assert restarts_took < 60


def test_mqtt311_flow(pki: Pki, broker: Broker, responder: Responder, tmp_path: Path) -> None:
    state = tmp_path / "state"
    svc = RunningService(make_config(pki, broker.port, state, protocol="mqtt311"))
    assert wait_until(lambda: accepted_count(state) >= 2, 15)
    svc.stop()
    check_accounting(state, responder, svc.source.rounds)
