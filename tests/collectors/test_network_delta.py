"""The network delta engine: pure deltas, the state file, restarts with real counters, fixture /proc trees."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.collectors.build import build_collectors
from agent.collectors.standard.counters import (
    CountersParseError,
    IfCounters,
    ProcCounters,
    parse_proc_net_dev,
)
from agent.collectors.standard.delta import (
    Delta,
    DeltaEngine,
    InterfaceFilter,
    Snapshot,
    StateFile,
    compute_delta,
    limit_span,
)
from agent.collectors.standard.network import NetworkStatsCollector, state_path
from agent.config.load import parse_config
from agent.errors import NoData
from agent.report.model import NetworkStats

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "collectors" / "proc-net-dev" / "dev.txt"
ALL = InterfaceFilter(("*",), ())
BOOT = "boot-a"


def snap(boot=BOOT, **ifaces):
    return Snapshot(boot, {k: IfCounters(*v) for k, v in ifaces.items()})


def test_parse_proc_net_dev_fixture():
    parsed = parse_proc_net_dev(FIXTURE.read_text())
    assert list(parsed) == ["lo", "eth0", "wlan0", "docker0"]
    assert parsed["eth0"] == IfCounters(314920203, 515133, 9188, 5428)
    assert parsed["wlan0"] == IfCounters(4294967000, 4294966000, 1000, 900)  # no space after the colon


def test_parse_proc_net_dev_rejects_short_lines():
    with pytest.raises(CountersParseError, match="line 1"):
        parse_proc_net_dev("eth0: 1 2 3\n")


def test_proc_counters_match_psutil_on_this_host():
    import psutil

    before = psutil.net_io_counters(pernic=True, nowrap=False)
    ours = ProcCounters().counters()
    assert set(ours) == set(before)
    for name, c in ours.items():
        assert c.bytes_in >= before[name].bytes_recv and c.packets_out >= before[name].packets_sent
        assert c.ifindex is not None and c.ifindex > 0


def test_delta_sums_wanted_interfaces():
    prev = snap(eth0=(100, 50, 10, 5), lo=(1000, 1000, 9, 9))
    cur = snap(eth0=(150, 80, 12, 9), lo=(5000, 5000, 99, 99))
    delta = compute_delta(prev, cur, InterfaceFilter(("*",), ("lo",)))
    assert delta.stats == NetworkStats(50, 30, 2, 4) and delta.skipped is None


def test_glob_include_and_exclude():
    wanted = InterfaceFilter(("eth*", "wlan0"), ("eth1",))
    assert [n for n in ("eth0", "eth1", "wlan0", "wlan1", "lo") if wanted(n)] == ["eth0", "wlan0"]


@pytest.mark.parametrize(
    ("prev", "cur", "reason"),
    [
        (snap(eth0=(10, 10, 1, 1)), snap(boot="boot-b", eth0=(20, 20, 2, 2)), "rebooted"),
        (snap(eth0=(10, 10, 1, 1), ppp0=(5, 5, 1, 1)), snap(eth0=(20, 20, 2, 2)), "'ppp0' disappeared"),
        (snap(eth0=(500, 10, 5, 1)), snap(eth0=(20, 20, 6, 2)), "bytes_in went backwards"),
        (snap(eth0=(2**32 - 100, 10, 5, 1)), snap(eth0=(50, 20, 6, 2)), "32-bit wrap"),
        (snap(eth0=(10, 10, 1, 1, 3)), snap(eth0=(20, 20, 2, 2, 7)), "re-created (ifindex 3 -> 7)"),
    ],
)
def test_unknowable_intervals_are_skipped(prev, cur, reason):
    delta = compute_delta(prev, cur, ALL)
    assert delta.stats is None
    assert reason in (delta.skipped or "")


def test_excluded_interface_disappearing_does_not_skip():
    prev = snap(eth0=(10, 10, 1, 1), veth1=(5, 5, 1, 1))
    cur = snap(eth0=(20, 20, 2, 2))
    assert compute_delta(prev, cur, InterfaceFilter(("*",), ("veth*",))).stats == NetworkStats(10, 10, 1, 1)


def test_new_interface_in_same_boot_counts_from_zero():
    delta = compute_delta(snap(eth0=(10, 10, 1, 1)), snap(eth0=(20, 20, 2, 2), wwan0=(7, 3, 1, 1)), ALL)
    assert delta.stats == NetworkStats(17, 13, 2, 2)


counters = st.tuples(*(st.integers(0, 2**64 - 1) for _ in range(4)))


@given(
    st.dictionaries(st.sampled_from(["eth0", "wlan0", "ppp0"]), counters),
    st.dictionaries(st.sampled_from(["eth0", "wlan0", "ppp0"]), counters),
    st.booleans(),
)
def test_delta_is_never_negative_nor_larger_than_the_raw_counters(before, after, rebooted):
    prev = Snapshot(BOOT, {k: IfCounters(*v) for k, v in before.items()})
    cur = Snapshot("other" if rebooted else BOOT, {k: IfCounters(*v) for k, v in after.items()})
    delta = compute_delta(prev, cur, ALL)
    if delta.stats is None:
        assert delta.skipped
        return
    assert not rebooted
    for field in ("bytes_in", "bytes_out", "packets_in", "packets_out"):
        value = getattr(delta.stats, field)
        assert 0 <= value <= sum(getattr(c, field) for c in cur.interfaces.values())


def test_state_file_roundtrip_and_atomic_write(tmp_path):
    state = StateFile(tmp_path / "sub" / "net.json")
    assert state.load() == (None, None)
    s = snap(eth0=(1, 2, 3, 4, 5))
    state.save(s, 123.0)
    assert state.load() == (Snapshot(s.boot_id, s.interfaces, 123.0), None)  # the save time comes back
    assert [p.name for p in state.path.parent.iterdir()] == ["net.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"version": 99, "interfaces": {}}',
        '{"version": 1, "interfaces": {"eth0": {"bytes_in": -5}}}',
        '{"version": 1, "interfaces": []}',
        "[]",
    ],
)
def test_corrupt_state_is_reported_not_raised(tmp_path, content):
    path = tmp_path / "net.json"
    path.write_text(content)
    loaded, problem = StateFile(path).load()
    assert loaded is None and problem and str(path) in problem


@pytest.mark.parametrize("content", [b"\xed\x01\x8c", b"\xff\xfe{}", b"\x00" * 10 + b"\xc9"])
def test_state_file_with_random_bytes_is_reported_not_raised(tmp_path, content):
    """Regression (fault campaign): random bytes raised UnicodeDecodeError out of load(); the collector
    failed to build and `run` refused to start with exit 78 ("configuration error")."""
    path = tmp_path / "net.json"
    path.write_bytes(content)
    loaded, problem = StateFile(path).load()
    assert loaded is None and problem and str(path) in problem


def _proc_tree(root: Path, dev: str, boot: str, ifindex: dict) -> None:
    (root / "proc" / "net").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "net" / "dev").write_text(dev)
    (root / "proc" / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "sys" / "kernel" / "random" / "boot_id").write_text(boot + "\n")
    for name, index in ifindex.items():
        (root / "sys" / "class" / "net" / name).mkdir(parents=True, exist_ok=True)
        (root / "sys" / "class" / "net" / name / "ifindex").write_text(f"{index}\n")


def _dev(**ifaces):
    head = "Inter-|   Receive |  Transmit\n face |bytes packets ...|bytes packets ...\n"
    return head + "".join(
        f"{n}: {bi} {pi} 0 0 0 0 0 0 {bo} {po} 0 0 0 0 0 0\n" for n, (bi, bo, pi, po) in ifaces.items()
    )


def _collector(tmp_path, persist=True, include=("*",), exclude=("lo",), root=None):
    source = ProcCounters(root / "proc", root / "sys") if root else ProcCounters()
    state = StateFile(state_path(tmp_path / "state", "net"))
    wanted = InterfaceFilter(include, exclude)
    return NetworkStatsCollector(
        "net", lambda base: DeltaEngine(state, wanted, base, persist=persist), source, logging.getLogger("t")
    )


def test_restart_reboot_and_wrap_on_a_fixture_tree(tmp_path, caplog):
    root = tmp_path / "host"
    _proc_tree(root, _dev(eth0=(1000, 500, 10, 5)), "boot-1", {"eth0": 2})
    first = _collector(tmp_path, root=root)
    _proc_tree(root, _dev(eth0=(1600, 700, 16, 7)), "boot-1", {"eth0": 2})
    assert first.collect()[0].value == NetworkStats(600, 200, 6, 2)
    # the agent restarts: the new instance continues from the state file, not from zero
    _proc_tree(root, _dev(eth0=(2000, 900, 20, 9)), "boot-1", {"eth0": 2})
    restarted = _collector(tmp_path, root=root)
    _proc_tree(root, _dev(eth0=(2500, 1000, 25, 10)), "boot-1", {"eth0": 2})
    assert restarted.collect()[0].value == NetworkStats(900, 300, 9, 3)
    # a reboot: counters start again near zero; that interval is skipped, the next one is normal
    _proc_tree(root, _dev(eth0=(300, 100, 3, 1)), "boot-2", {"eth0": 2})
    after_reboot = _collector(tmp_path, root=root)
    with pytest.raises(NoData, match="rebooted"):
        after_reboot.collect()
    _proc_tree(root, _dev(eth0=(400, 150, 4, 2)), "boot-2", {"eth0": 2})
    assert after_reboot.collect()[0].value == NetworkStats(100, 50, 1, 1)
    # a 32-bit wrap on the same boot: skipped, never negative
    _proc_tree(root, _dev(eth0=(2**32 - 10, 160, 5, 3)), "boot-2", {"eth0": 2})
    after_reboot.collect()
    _proc_tree(root, _dev(eth0=(90, 170, 6, 4)), "boot-2", {"eth0": 2})
    with pytest.raises(NoData, match="32-bit wrap"):
        after_reboot.collect()


def test_restart_with_real_counters_never_reports_raw_totals(tmp_path):
    """Real /proc counters of the loopback interface, real traffic, a real state file."""
    first = _collector(tmp_path, include=("lo",), exclude=())
    first.collect()
    raw_before = ProcCounters().counters()["lo"]
    payload = b"x" * 50_000
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        for _ in range(20):
            tx.sendto(payload[:1000], rx.getsockname())
    del first  # "stop" the agent
    saved = json.loads(state_path(tmp_path / "state", "net").read_text())
    assert saved["interfaces"]["lo"]["bytes_in"] <= raw_before.bytes_in
    restarted = _collector(tmp_path, include=("lo",), exclude=())
    stats = restarted.collect()[0].value
    raw_after = ProcCounters().counters()["lo"]
    assert stats.packets_in >= 20 and stats.bytes_in >= 20_000  # the traffic sent while "stopped"
    assert stats.bytes_in < raw_after.bytes_in  # a delta, not the raw total since boot
    assert min(stats.bytes_in, stats.bytes_out, stats.packets_in, stats.packets_out) >= 0


def test_first_run_without_state_measures_from_start(tmp_path):
    """No state file: the counters at the agent's start are the baseline, not zero (raw totals since boot)."""
    root = tmp_path / "host"
    ifindex = {"lo": 1, "eth0": 2, "wlan0": 3, "docker0": 4}
    _proc_tree(root, FIXTURE.read_text(), "boot-1", ifindex)  # eth0 has 314920203 bytes in since boot
    collector = _collector(tmp_path, root=root)  # every interface but lo
    assert not collector.engine.from_state
    # (bytes_in, bytes_out, packets_in, packets_out); lo moves too but is excluded
    after = {
        "lo": (3193 + 10**6, 3193 + 10**6, 29 + 700, 29 + 700),
        "eth0": (314920203 + 1500, 515133 + 700, 9188 + 3, 5428 + 2),
        "wlan0": (4294967000 + 200, 4294966000 + 250, 1000 + 2, 900 + 1),
        "docker0": (0, 0, 0, 0),
    }
    _proc_tree(root, _dev(**after), "boot-1", ifindex)
    assert collector.collect()[0].value == NetworkStats(1500 + 200, 700 + 250, 3 + 2, 2 + 1)
    # wlan0's 32-bit rx counter wraps (4294967200 -> 104): that interval is skipped, never negative ...
    after["eth0"] = (314921703 + 40, 515833 + 60, 9191 + 1, 5430 + 1)
    after["wlan0"] = (104, 4294966250 + 30, 1002 + 1, 901 + 1)
    _proc_tree(root, _dev(**after), "boot-1", ifindex)
    with pytest.raises(NoData, match=r"wlan0 bytes_in went backwards \(4294967200 -> 104\).*32-bit wrap"):
        collector.collect()
    # ... and the wrapped counters are the next baseline
    after["eth0"] = (314921743 + 5, 515893 + 6, 9192 + 1, 5431 + 1)
    after["wlan0"] = (104 + 300, 4294966280 + 7, 1003 + 2, 902 + 1)
    _proc_tree(root, _dev(**after), "boot-1", ifindex)
    assert collector.collect()[0].value == NetworkStats(5 + 300, 6 + 7, 1 + 2, 1 + 1)


def test_persist_false_reads_but_never_writes(tmp_path):
    _collector(tmp_path, include=("lo",), exclude=()).collect()
    path = state_path(tmp_path / "state", "net")
    before = path.read_bytes()
    once = _collector(tmp_path, persist=False, include=("lo",), exclude=())
    assert once.engine.from_state
    once.collect()
    assert path.read_bytes() == before


def test_unwritable_state_dir_is_said_once_and_deltas_continue(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    root = tmp_path / "host"
    _proc_tree(root, _dev(eth0=(10, 10, 1, 1)), "b", {"eth0": 2})
    collector = _collector(tmp_path, root=root)
    with caplog.at_level(logging.INFO):
        for n in (2, 3, 4):
            _proc_tree(root, _dev(eth0=(10 * n, 10 * n, n, n)), "b", {"eth0": 2})
            assert collector.collect()[0].value == NetworkStats(10, 10, 1, 1)
    warnings = [r for r in caplog.records if "cannot save counter state" in r.getMessage()]
    assert len(warnings) == 1


def test_state_file_mode_and_location(tmp_path):
    _collector(tmp_path, include=("lo",), exclude=()).collect()
    path = state_path(tmp_path / "state", "net")
    assert path.name == "network-counters.net.json"
    assert (
        json.loads(path.read_text())["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    )
    assert os.stat(path).st_size > 0


# -- a delta never covers much more than one sampling interval -------------------------------------


def _timed_collector(tmp_path, root, now, max_span):
    state = StateFile(state_path(tmp_path / "state", "net"))
    return NetworkStatsCollector(
        "net",
        lambda base: DeltaEngine(state, InterfaceFilter(), base, max_span=max_span),
        ProcCounters(root / "proc", root / "sys"),
        logging.getLogger("t"),
        clock=lambda: now[0],
    )


def _one_interval_sent(tmp_path):
    """A collector (max_span 450 s) that sent one 300 s delta; returns the fake /proc root and clock."""
    root, now = tmp_path / "host", [1_000_000.0]
    _proc_tree(root, _dev(eth0=(1000, 500, 10, 5)), "boot-1", {"eth0": 2})
    first = _timed_collector(tmp_path, root, now, max_span=450)
    now[0] += 300
    _proc_tree(root, _dev(eth0=(1600, 700, 16, 7)), "boot-1", {"eth0": 2})
    assert first.collect()[0].value == NetworkStats(600, 200, 6, 2)  # one interval: sent
    return root, now


def test_a_delta_over_an_agent_stop_longer_than_the_span_is_skipped_and_said(tmp_path):
    """Detect sums deltas per 300-3600 s window: a 2 h stop must not arrive as one report's traffic."""
    root, now = _one_interval_sent(tmp_path)
    now[0] += 7200  # the agent was stopped for two hours; traffic went on
    _proc_tree(root, _dev(eth0=(901_600, 20_700, 916, 27)), "boot-1", {"eth0": 2})
    restarted = _timed_collector(tmp_path, root, now, max_span=450)
    with pytest.raises(NoData) as skipped:
        restarted.collect()
    assert "the previous sample is 7200 s old, more than the 450 s one delta may cover" in str(skipped.value)
    assert "left out 900000 bytes in, 20000 bytes out, 900 packets in, 20 packets out" in str(skipped.value)
    now[0] += 300
    _proc_tree(root, _dev(eth0=(902_000, 20_800, 920, 28)), "boot-1", {"eth0": 2})
    assert restarted.collect()[0].value == NetworkStats(400, 100, 4, 1)  # the next interval is whole again


def test_a_restart_within_the_span_keeps_the_true_delta(tmp_path):
    root, now = _one_interval_sent(tmp_path)
    now[0] += 420  # a quick restart: still within 1.5 intervals
    _proc_tree(root, _dev(eth0=(2000, 900, 20, 9)), "boot-1", {"eth0": 2})
    assert _timed_collector(tmp_path, root, now, max_span=450).collect()[0].value == NetworkStats(400, 200, 4, 2)


@pytest.mark.parametrize(
    ("since", "now", "max_span", "sent"),
    [(0, 300, 450, True), (0, 450, 450, True), (0, 451, 450, False), (100, 50, 450, False),
     (None, 10_000, 450, True), (0, 10_000, None, True)],
)
def test_limit_span(since, now, max_span, sent):
    delta = limit_span(Delta(NetworkStats(1, 2, 3, 4)), since, now, max_span)
    assert (delta.stats is not None) is sent
    if since is not None and now < since:
        assert "the clock went back 50 s" in delta.skipped


def test_the_default_span_follows_the_collectors_interval(tmp_path):
    def span(collector_yaml):
        config = parse_config(
            "thing_name: gw\nmqtt: {endpoint: 127.0.0.1, cert: /c, key: /k, ca: /a}\n"
            f"state_dir: {tmp_path}\ncollectors:\n  - {collector_yaml}\n"
        )
        [job] = build_collectors(config, persist_state=False)
        return job.collector.engine._max_span

    assert span("{type: network_stats}") == 450.0  # 1.5 x the 5-minute report interval
    assert span("{type: network_stats, interval: 10m}") == 900.0
    assert span("{type: network_stats, max_span: 1h}") == 3600.0
    assert span("{type: network_stats, max_span: 0}") is None  # opted out: every delta is sent
