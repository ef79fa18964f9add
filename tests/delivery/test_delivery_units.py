"""Pure and SQLite-level parts of delivery: replies, ids, outbox/ledger, backlog policy, notify."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import List

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.model import DeliveryConfig
from agent.delivery.backlog import Backlog
from agent.delivery.fold import rewrite
from agent.delivery.ids import ReportIds, read_last_id
from agent.delivery.outbox import Outbox, Pending
from agent.delivery.replies import Reply, Unusable, parse_reply
from agent.delivery.topics import parse_topic, reply_topic
from agent.notify import Notifier
from agent.report.document import decode, validate_document
from agent.report.model import NetworkStats

LOG = logging.getLogger("test")
T = "gw-1"


def acc(rid: object, **extra: object) -> bytes:
    return json.dumps({"thingName": T, "reportId": rid, "status": "ACCEPTED", "timestamp": 1, **extra}).encode()


def test_reply_accepted_and_rejected() -> None:
    r = parse_reply(reply_topic(T, "json", "accepted"), acc(7), T)
    assert r == Reply(T, 7, True, timestamp=1)
    body = {"thingName": T, "reportId": 8, "status": "REJECTED",
            "statusDetails": {"ErrorCode": "InvalidPayload", "ErrorMessage": "Malformed metrics report"}}
    r = parse_reply(reply_topic(T, "cbor", "rejected"), cbor2.dumps(body), T)
    assert isinstance(r, Reply) and not r.accepted
    assert (r.error_code, r.error_message) == ("InvalidPayload", "Malformed metrics report")


def test_reply_unusable_cases() -> None:
    topic = reply_topic(T, "json", "accepted")
    assert isinstance(parse_reply(topic, b"{not json", T), Unusable)
    assert isinstance(parse_reply(topic, acc(None), T), Unusable)
    assert isinstance(parse_reply(topic, acc(True), T), Unusable)
    assert isinstance(parse_reply(topic, acc("12"), T), Unusable)
    assert isinstance(parse_reply(reply_topic("other", "json", "accepted"), acc(3), T), Unusable)
    assert isinstance(parse_reply(topic, acc(3, thingName="other"), T), Unusable)
    assert isinstance(parse_reply(topic, b"{" + b" " * 20000 + b"}", T), Unusable)
    assert isinstance(parse_reply(topic, acc(3, status="REJECTED"), T), Unusable)
    assert isinstance(parse_reply("$aws/things/gw-1/shadow/get/accepted", acc(3), T), Unusable)


def test_topics_allow_slashes_in_thing_names() -> None:
    assert parse_topic("$aws/things/a/b/defender/metrics/cbor/rejected") == ("a/b", "cbor", "rejected")
    assert parse_topic("$aws/things/x/defender/metrics/xml") is None


@settings(max_examples=300, deadline=None)
@given(topic=st.one_of(st.text(max_size=80), st.sampled_from([reply_topic(T, "json", "accepted"),
                                                              reply_topic(T, "cbor", "rejected")])),
       payload=st.one_of(st.binary(max_size=300),
                         st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                                      lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4),
                                      max_leaves=12).map(lambda v: json.dumps(v).encode()),
                         st.fixed_dictionaries({"reportId": st.integers(), "thingName": st.text(max_size=5),
                                                "status": st.text(max_size=9)}).map(
                                                    lambda v: json.dumps(v).encode())))
def test_reply_parser_never_raises(topic: str, payload: bytes) -> None:
    result = parse_reply(topic, payload, T)
    assert isinstance(result, (Reply, Unusable))
    if isinstance(result, Reply):
        assert result.report_id > 0 and result.thing == T


def test_ids_increase_across_restart_and_clock_steps(tmp_path: Path) -> None:
    now = [1_000_000.0]
    ids = ReportIds(tmp_path, clock=lambda: now[0])
    a = ids.next()
    now[0] -= 3600  # the clock steps back an hour
    b = ids.next()
    again = ReportIds(tmp_path, clock=lambda: now[0])
    c = again.next()
    assert a == 1_000_000 and b == a + 1 and c == b + 1
    assert read_last_id(tmp_path) == c
    (tmp_path / "last_report_id").write_text("garbage")
    assert ReportIds(tmp_path, floor=c, clock=lambda: 5).next() == c + 1


def pending(rid: int, size: int = 10, net: int = 0, attempts: int = 0, delivered: bool = False) -> Pending:
    doc = {"header": {"report_id": rid, "version": "1.0"}, "metrics": {}}
    payload = json.dumps(doc).encode() + b" " * max(0, size - 50)
    network = NetworkStats(net, net, 1, 1) if net else None
    return Pending(rid, "json", payload, 1.0, attempts, 1.0, None, delivered, network)


def test_outbox_ledger_and_counters_survive_reopen(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    box.add(pending(1))
    box.add(pending(2))
    box.record_attempt(1, 2.0, 3.0)
    assert box.finish(1, "accepted", None, None, 4.0)
    assert not box.finish(1, "accepted", None, None, 4.0)  # exactly one outcome
    assert box.finish(2, "rejected", "InvalidPayload", "Malformed metrics report", 5.0)
    box.close()
    box = Outbox.open(tmp_path, LOG)
    assert box.counters() == {"accepted": 1, "rejected": 1, "published": 1}
    assert box.outcome_of(2) == "rejected" and box.pending() == []
    assert box.ledger(outcome="rejected")[0].code == "InvalidPayload"
    assert box.max_known_id() == 2


def test_corrupt_outbox_is_moved_aside(tmp_path: Path, caplog: object) -> None:
    (tmp_path / "outbox.sqlite3").write_bytes(b"this is not a database" * 100)
    box = Outbox.open(tmp_path, LOG)
    assert box.counters() == {"outbox_corrupt": 1}
    assert len(list(tmp_path.glob("outbox.sqlite3.*.corrupt"))) == 1
    box.add(pending(5))
    assert [p.report_id for p in box.pending()] == [5]


def delivery(**kw: object) -> DeliveryConfig:
    values = dict(backlog="all", reply_timeout=2.0, retry_max_delay=4.0, drain_interval=0.0,
                  max_outbox_bytes=1000, min_free_disk=0)
    values.update(kw)
    return DeliveryConfig(**values)  # type: ignore[arg-type]


def test_backlog_all_bounds_outbox_dropping_oldest(tmp_path: Path, caplog: object) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, ReportIds(tmp_path), tmp_path, LOG)
    for rid in range(1, 21):
        backlog.store(pending(rid, size=300), delivery())
        assert box.pending_bytes() <= 1000
    ids = [p.report_id for p in box.pending()]
    assert ids == [18, 19, 20]
    assert box.counters()["dropped"] == 17
    assert set(range(1, 18)) == {r for r in range(1, 18) if box.outcome_of(r) == "dropped"}


def test_backlog_all_stops_growing_when_disk_is_low(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    free = [10**9]
    backlog = Backlog(box, ReportIds(tmp_path), tmp_path, LOG, disk_free=lambda p: free[0])
    for rid in (1, 2):
        backlog.store(pending(rid, size=100), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
    free[0] = 10
    for rid in (3, 4, 5):
        backlog.store(pending(rid, size=100), delivery(min_free_disk=1000, max_outbox_bytes=10**6))
        assert box.pending_count() == 2
    assert [p.report_id for p in box.pending()] == [4, 5]


def test_backlog_newest_folds_network_deltas(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    backlog = Backlog(box, ReportIds(tmp_path), tmp_path, LOG)
    d = delivery(backlog="newest")
    backlog.store(pending(1, net=100), d)
    backlog.store(pending(2, net=100), d)
    change = backlog.store(pending(3, net=100), d)
    assert [p.report_id for p in box.pending()] == [3]
    assert change.stored is not None and change.stored.network == NetworkStats(300, 300, 3, 3)
    doc, _ = decode(box.pending()[0].payload)
    assert doc["metrics"]["network_stats"] == {"bytes_in": 300, "bytes_out": 300, "packets_in": 3, "packets_out": 3}
    assert doc["header"]["report_id"] == 3 and validate_document(doc) == []
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"


def test_fold_never_changes_bytes_under_a_published_id(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, LOG)
    ids = ReportIds(tmp_path, clock=lambda: 0)
    box.add(pending(ids.next(), net=100))  # id 1, never sent
    box.add(pending(ids.next(), net=50, attempts=2))  # id 2, already published
    change = Backlog(box, ids, tmp_path, LOG).fold_pending()
    assert change.stored is not None and change.stored.report_id == 3
    assert change.stored.network == NetworkStats(150, 150, 2, 2)
    assert box.outcome_of(1) == box.outcome_of(2) == "superseded"
    # a delivered (PUBACKed) report stays pending (resent until a reply) and is not folded
    box.record_attempt(3, 1.0, 2.0)
    box.mark_delivered(3)
    backlog = Backlog(box, ids, tmp_path, LOG)
    backlog.store(pending(ids.next(), net=70), delivery(backlog="newest"))
    assert [(p.report_id, p.network) for p in box.pending()] == [
        (3, NetworkStats(150, 150, 2, 2)), (4, NetworkStats(70, 70, 1, 1))]
    assert box.outcome_of(3) is None


def test_rewrite_keeps_short_keys_and_cbor() -> None:
    payload = cbor2.dumps({"hed": {"rid": 1, "v": "1.0"}, "met": {"ns": {"bi": 1, "bo": 1, "pi": 1, "po": 1}}})
    doc, fmt = decode(rewrite(payload, 9, NetworkStats(5, 6, 7, 8)))
    assert fmt == "cbor" and doc == {"hed": {"rid": 9, "v": "1.0"}, "met": {"ns": {"bi": 5, "bo": 6, "pi": 7, "po": 8}}}


def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval == 2.0
    notifier.ready("hello")
    notifier.watchdog()
    got: List[bytes] = [sock.recv(1024), sock.recv(1024)]
    assert got == [b"READY=1\nSTATUS=hello", b"WATCHDOG=1"]
    assert not Notifier({}).enabled and not Notifier({}).send("READY=1")
