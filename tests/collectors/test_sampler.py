"""Failure isolation: raising, hanging, wrong-typed and undeclared collectors lose only their own metrics."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from agent.catalog import MetricType
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
