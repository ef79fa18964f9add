"""Failure isolation: raising, hanging, wrong-typed and undeclared collectors lose only their own metrics."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest

from agent.catalog import MetricType
from agent.collectors.readcache import ReadCache
from agent.collectors.sampler import GRACE, CollectorJob, FailureKind, Sampler
from agent.config.model import CustomMetricConfig
from agent.errors import CollectorError, NoData
from agent.report.model import ListeningPorts, NetworkStats, Sample, SampleKind

N = MetricType.NUMBER


class Fake:
    def __init__(self, name, behave):
        self.name = name
        self.behave = behave
        self.calls = 0
        self.closed = False

    def collect(self):
        self.calls += 1
        return self.behave(self)

    def close(self):
        self.closed = True


def job(name, behave, emits=None, timeout=1.0, interval=None):
    return CollectorJob(
        name=name,
        type="fake",
        collector=Fake(name, behave),
        timeout=timeout,
        interval=interval,
        emits=emits if emits is not None else {name: N},
    )


def good(c):
    return [Sample(c.name, 1)]


def raises(c):
    raise CollectorError("sensor bus busy")


def test_failures_lose_only_their_own_metrics(caplog):
    release = threading.Event()

    def hangs(c):
        release.wait(10)
        return [Sample(c.name, 1)]

    jobs = [
        job("ok", good),
        job("boom", raises),
        job("crash", lambda c: {}["missing"]),
        job("hang", hangs, timeout=0.2),
        job("wrong", lambda c: [Sample("wrong", "12")]),
        job("undeclared", lambda c: [Sample("undeclared", 1), Sample("other", 2)]),
        job(
            "std",
            lambda c: [Sample("network_stats", NetworkStats(1, 2, 3, 4), SampleKind.STANDARD)],
            emits={"network_stats": None},
        ),
        job(
            "std_bad",
            lambda c: [Sample("listening_tcp_ports", NetworkStats(1, 2, 3, 4), SampleKind.STANDARD)],
            emits={"listening_tcp_ports": None},
        ),
        job("nodata", lambda c: (_ for _ in ()).throw(NoData("no sensors"))),
    ]
    sampler = Sampler(jobs, 300.0, {})
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="agent.collectors.sampler"):
        result = sampler.sample_all()
    elapsed = time.monotonic() - start
    release.set()
    assert elapsed < 0.2 + GRACE + 0.5  # the hung collector did not hold the round
    assert [s.name for s in result.samples] == ["ok", "network_stats"]
    reasons = {f.collector: (f.kind, f.reason) for f in result.failures}
    assert reasons["boom"] == (FailureKind.ERROR, "sensor bus busy")
    assert reasons["crash"] == (FailureKind.ERROR, "KeyError: 'missing'")
    assert reasons["hang"] == (FailureKind.TIMEOUT, "timed out after 0.2s")
    assert reasons["wrong"][0] is FailureKind.BAD_VALUE and "expected a number, got str" in reasons["wrong"][1]
    assert "'other' is not one of the metrics it declared" in reasons["undeclared"][1]
    assert "expected ListeningPorts" in reasons["std_bad"][1]
    assert result.no_data == {"nodata": "no sensors"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert any(
        m.startswith("Collector 'boom' (fake) failed after 0.0") and m.endswith("sensor bus busy")
        for m in warnings
    )
    stats = result.stats
    assert stats["ok"].ok == 1 and stats["boom"].failed == 1 and stats["nodata"].no_data == 1
    assert stats["boom"].last_error == "sensor bus busy" and stats["ok"].last_duration is not None


def test_log_once_per_streak_and_on_recovery(caplog):
    state = {"fail": True}

    def flaky(c):
        if state["fail"]:
            raise CollectorError("down")
        return [Sample(c.name, 1)]

    sampler = Sampler([job("flaky", flaky)], 300.0, {})
    with caplog.at_level(logging.DEBUG, logger="agent.collectors.sampler"):
        for _ in range(3):
            sampler.sample_all()
        state["fail"] = False
        sampler.sample_all()
        state["fail"] = True
        sampler.sample_all()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert messages == [
        (logging.WARNING, messages[0][1]),
        (logging.INFO, "Collector 'flaky' recovered after 3 failed sample(s)"),
        (logging.WARNING, messages[2][1]),
    ]
    stats = sampler.collector_stats()["flaky"]
    assert (stats.ok, stats.failed, stats.consecutive_failures) == (1, 4, 1)
    assert sampler.stats()["flaky"] == {"ok": 1, "failed": 4, "no_data": 0,
                                        "last_duration": stats.last_duration, "last_error": "down",
                                        "consecutive_failures": 1}


def test_hung_collector_is_not_started_twice():
    release = threading.Event()
    started = []

    def hangs(c):
        started.append(1)
        release.wait(10)
        return [Sample(c.name, 1)]

    sampler = Sampler([job("hang", hangs, timeout=0.05)], 300.0, {})
    first = sampler.sample_all()
    second = sampler.sample_all()
    assert first.failures[0].kind is FailureKind.TIMEOUT
    assert second.failures[0].kind is FailureKind.BUSY and "still going" in second.failures[0].reason
    assert len(started) == 1 and sampler.collector_stats()["hang"].running
    release.set()
    deadline = time.monotonic() + 10  # the hung run ends once released; wait for it, boundedly
    while sampler.collector_stats()["hang"].running and time.monotonic() < deadline:
        time.sleep(0.01)
    third = sampler.sample_all()
    assert [s.name for s in third.samples] == ["hang"] and len(started) == 2


def test_interval_in_whole_report_intervals():
    every = job("slow", good, interval=700.0)  # 700s with 300s reports -> every 3rd round
    always = job("fast", good)
    sampler = Sampler([every, always], 300.0, {})
    ran = [[s.name for s in sampler.sample_all().samples] for _ in range(7)]
    assert ran == [
        ["slow", "fast"],
        ["fast"],
        ["fast"],
        ["slow", "fast"],
        ["fast"],
        ["fast"],
        ["slow", "fast"],
    ]


def test_not_due_metrics_name_what_the_last_round_left_out_by_schedule():
    sampler = Sampler([job("slow", good, interval=700.0), job("fast", good)], 300.0, {})
    seen = []
    for _ in range(4):
        sampler.sample()
        seen.append(sorted(sampler.not_due_metrics()))
    assert seen == [[], ["slow"], ["slow"], []]  # the job's metric is named after the job in these tests


def declared(**types):
    return {name: CustomMetricConfig(type=MetricType(t), name=name) for name, t in types.items()}


def test_declared_type_wins_and_lists_become_tuples():
    sampler = Sampler(
        [job("l", lambda c: [Sample("l", [1, 0.1 + 0.2])], emits={"l": MetricType.NUMBER_LIST})],
        300.0,
        declared(l="number-list"),
    )
    [sample] = sampler.sample_all().samples
    assert sample.value == (1, 0.3)  # normalized: a tuple, floats to 15 significant digits
    wrong = Sampler([job("x", lambda c: [Sample("x", 5)], emits={"x": N})], 300.0, declared(x="string-list"))
    assert wrong.sample_all().failures[0].kind is FailureKind.BAD_VALUE


def test_a_value_the_service_refuses_costs_only_its_own_metric(caplog):
    emits = {"fine": N, "huge": N, "names": MetricType.STRING_LIST}
    sampler = Sampler(
        [job("sys", lambda c: [Sample("fine", 1), Sample("huge", 10**15 + 1), Sample("names", ("josé",))],
             emits=emits)],
        300.0,
        declared(fine="number", huge="number", names="string-list"),
    )
    with caplog.at_level(logging.WARNING, logger="agent.collectors.sampler"):
        result = sampler.sample_all()
    assert [s.name for s in result.samples] == ["fine"]
    [failure] = result.failures
    assert failure.kind is FailureKind.BAD_VALUE
    assert "'huge' (number) left out: has more than 15 significant digits" in failure.reason
    assert "'names' (string-list) left out: item 0 ('josé')" in failure.reason
    [warning] = [r.getMessage() for r in caplog.records]
    assert "Collector 'sys'" in warning and "'huge'" in warning and "'names'" in warning


def test_allow_any_characters_is_honoured_by_the_sampler():
    metrics = {"names": CustomMetricConfig(type=MetricType.STRING_LIST, allow_any_characters=True, name="names")}
    sampler = Sampler(
        [job("u", lambda c: [Sample("names", ["josé"])], emits={"names": MetricType.STRING_LIST})], 300.0, metrics
    )
    assert [s.value for s in sampler.sample_all().samples] == [("josé",)]


def test_not_a_list_and_close():
    j = job("weird", lambda c: "nope")
    sampler = Sampler([j, job("ok", good)], 300.0, {})
    result = sampler.sample_all()
    assert "returned str" in result.failures[0].reason
    sampler.close()
    assert j.collector.closed


def test_duplicate_names_refused():
    with pytest.raises(ValueError, match="unique"):
        Sampler([job("a", good), job("a", good)], 300.0, {})


def test_standard_sample_kinds():
    ports = ListeningPorts(())
    sampler = Sampler(
        [
            job(
                "p",
                lambda c: [Sample("listening_tcp_ports", ports, SampleKind.STANDARD)],
                emits={"listening_tcp_ports": None},
            )
        ],
        300.0,
        {},
    )
    assert sampler.sample_all().samples[0].value is ports


# -- the loop's rounds: begin, ready, finish (never waiting) ------------------------------------------


class FakeClock:
    """The sampler's monotonic clock, moved by the test (runs read it from their worker threads)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """A collector behaviour that blocks until opened; ``entered`` is set once a run is inside."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, c):
        self.entered.set()
        assert self.opened.wait(10), "the test never opened the gate"
        return [Sample(c.name, 1)]


def until(predicate, timeout=5.0):
    """Poll ``predicate`` (a run ending has no event of its own) for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Wakes:
    """The ``wake`` callback: counts its calls, and sets an event the test can wait on."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


def test_begin_returns_at_once_while_a_collector_hangs_and_finish_keeps_the_others():
    clock, gate, wakes = FakeClock(), Gate(), Wakes()
    sampler = Sampler([job("ok", good, timeout=5.0), job("hang", gate, timeout=0.2)], 300.0, {}, clock=clock)
    try:
        start = time.monotonic()
        deadline = sampler.begin(wakes)
        assert time.monotonic() - start < 0.5  # no waiting for the hung one
        assert deadline == 1000.0 + 5.0 + GRACE  # the latest limit of the runs it started
        assert gate.entered.wait(5)
        assert not sampler.ready()  # "hang" is still going, within its 0.2 s
        assert until(lambda: not sampler.collector_stats()["ok"].running)
        assert not sampler.ready()
        clock.now = 1000.0 + 0.2 + GRACE + 0.01  # past hang's own limit, long before the round's deadline
        assert sampler.ready()  # nothing left worth waiting for: "ok" ended, "hang" is given up
        result = sampler.finish_round()
        assert [s.name for s in result.samples] == ["ok"]
        [failure] = result.failures
        assert (failure.collector, failure.kind, failure.reason) == ("hang", FailureKind.TIMEOUT,
                                                                      "timed out after 0.2s")
        assert wakes.calls == 0  # the hung run has not ended: no wake-up
        assert result.stats["hang"].running and result.stats["ok"].ok == 1
    finally:
        gate.opened.set()
        sampler.close()


def test_wake_is_called_once_when_every_run_has_ended():
    first, second, wakes = Gate(), Gate(), Wakes()
    sampler = Sampler([job("a", first), job("b", second)], 300.0, {})
    try:
        sampler.begin(wakes)
        assert first.entered.wait(5) and second.entered.wait(5)
        first.opened.set()
        assert not wakes.event.wait(0.2) and not sampler.ready()  # "b" still runs
        second.opened.set()
        assert wakes.event.wait(5), "wake() was not called once every run had ended"
        assert sampler.ready()
        assert sorted(s.name for s in sampler.finish()) == ["a", "b"]
        assert wakes.calls == 1
    finally:
        first.opened.set()
        second.opened.set()
        sampler.close()


def test_wake_is_called_from_begin_when_nothing_runs():
    wakes = Wakes()
    sampler = Sampler([job("slow", good, interval=900.0)], 300.0, {}, clock=FakeClock())
    sampler.sample_all()  # round 1 runs "slow"; round 2 has nothing due
    assert sampler.begin(wakes) == 1000.0 and wakes.calls == 1 and sampler.ready()
    assert sampler.finish() == () and sampler.not_due_metrics() == frozenset({"slow"})
    sampler.close()


def test_a_run_that_ends_after_its_own_limit_is_a_timeout_and_the_next_round_runs_it_again():
    clock, gate, wakes = FakeClock(), Gate(), Wakes()
    sampler = Sampler([job("late", gate, timeout=1.0)], 300.0, {}, clock=clock)
    try:
        sampler.begin(wakes)
        assert gate.entered.wait(5)
        clock.now += 1.0 + GRACE + 1  # its result comes after the round stopped waiting for it
        gate.opened.set()
        assert wakes.event.wait(5)
        result = sampler.finish_round()
        assert result.samples == () and result.failures[0].kind is FailureKind.TIMEOUT
        assert result.failures[0].duration == pytest.approx(2.5)
        again = sampler.sample_all()
        assert [s.name for s in again.samples] == ["late"] and again.failures == ()
    finally:
        gate.opened.set()
        sampler.close()


def test_the_next_round_reports_a_hung_collector_busy_and_runs_the_others():
    gate = Gate()
    sampler = Sampler([job("hang", gate, timeout=0.05), job("ok", good)], 300.0, {})
    try:
        first = sampler.sample_all()  # gives up on "hang" after 0.05 s + GRACE
        assert [f.kind for f in first.failures] == [FailureKind.TIMEOUT] and len(first.samples) == 1
        wakes = Wakes()
        sampler.begin(wakes)
        assert wakes.event.wait(5)  # "ok" ended; the busy "hang" was not started, so not waited for
        second = sampler.finish_round()
        assert [s.name for s in second.samples] == ["ok"]
        [busy] = second.failures
        assert busy.collector == "hang" and busy.kind is FailureKind.BUSY
        assert busy.reason.startswith("previous run still going after ")
        assert sampler.collector_stats()["hang"].running
    finally:
        gate.opened.set()
        sampler.close()


def test_one_round_at_a_time():
    sampler = Sampler([job("ok", good)], 300.0, {})
    with pytest.raises(RuntimeError, match="finish"):
        sampler.finish()
    sampler.begin(Wakes())
    with pytest.raises(RuntimeError, match="while a round is open"):
        sampler.begin(Wakes())
    sampler.finish()
    sampler.close()


def test_a_wake_that_raises_costs_nothing_but_a_warning(caplog):
    called = threading.Event()

    def wake():
        called.set()
        raise OSError("queue gone")

    gate = Gate()
    gate.opened.set()
    sampler = Sampler([job("a", gate)], 300.0, {})
    with caplog.at_level(logging.WARNING, logger="agent.collectors.sampler"):
        sampler.begin(wake)
        assert called.wait(5)
        assert [s.name for s in sampler.finish()] == ["a"]
        # The same worker thread runs the next round's run once done with the wake-up: it survived.
        assert [s.name for s in sampler.sample_all().samples] == ["a"]
    assert [r.getMessage() for r in caplog.records] == [
        "Waking the loop after a sampling round failed: queue gone"]
    sampler.close()


def test_the_shared_reads_stay_shared_until_finish():
    cache = ReadCache()
    reads = []
    gate = Gate()

    def early(c):
        cache.shared("table", lambda: reads.append(1) or len(reads))
        return [Sample(c.name, 1)]

    def late(c):
        gate(c)
        cache.shared("table", lambda: reads.append(1) or len(reads))  # long after "early" read it
        return [Sample(c.name, 1)]

    jobs = [dataclasses.replace(job("early", early), reads=cache),
            dataclasses.replace(job("late", late), reads=cache)]
    sampler = Sampler(jobs, 300.0, {})
    wakes = Wakes()
    try:
        sampler.begin(wakes)
        assert gate.entered.wait(5)
        gate.opened.set()
        assert wakes.event.wait(5)
        assert len(sampler.finish()) == 2
        assert len(reads) == 1  # one read for the round, although the runs ended at different times
        cache.shared("table", lambda: reads.append(1) or len(reads))
        assert len(reads) == 2  # the round is over: a read is fresh again
    finally:
        gate.opened.set()
        sampler.close()


def test_close_returns_at_once_with_a_hung_collector_and_drops_the_round():
    gate, wakes = Gate(), Wakes()
    cache = ReadCache()
    sampler = Sampler([dataclasses.replace(job("hang", gate, timeout=60.0), reads=cache)], 300.0, {})
    sampler.begin(wakes)
    assert gate.entered.wait(5)
    start = time.monotonic()
    sampler.close()
    assert time.monotonic() - start < 0.5
    assert cache.shared("k", lambda: 1) == 1 and cache.shared("k", lambda: 2) == 2  # its round is closed
    gate.opened.set()  # the hung run ends after the close: nobody is woken for a dropped round
    assert not wakes.event.wait(0.3) and wakes.calls == 0
