"""`defender-agent values`: list_metric_values through the paginator, rendered for people and scripts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from typing import Any, Dict, List

import pytest

from agent.config.load import load_config
from agent.control import values as cv
from agent.control.aws import RetryPolicy
from agent.report.document import decode
from agent.report.encode import Encoder
from agent.report.model import ListeningPort, ListeningPorts, NetworkStats, Report

pytestmark = pytest.mark.usefixtures("aws_env")

NOW_MS = int(time.time() * 1000)


def report(report_id: int, custom: Dict[str, Any]) -> Dict[str, Any]:
    return {"header": {"report_id": report_id, "version": "1.0"}, "custom_metrics": custom}


def test_values_prints_exactly_what_was_sent(emulator, store, cli, write_config) -> None:
    """Bootstrap, encode reports with the agent's own encoder, store them as the responder does, read back."""
    config_path = write_config()
    assert cli("bootstrap", "-c", config_path, "--endpoint-url", emulator.url)[0] == 0
    config = load_config(config_path)
    encoder = Encoder(config.custom_metrics)
    sent = [
        {
            "cpu_usage": 37.5,
            "core_load": (12.0, 40.5),
            "services": ("sshd", "mosquitto"),
            "peers": ("10.0.0.2",),
        },
        {"cpu_usage": 12.25, "core_load": (1.0,), "services": ("sshd",), "peers": ("fd00::1", "10.0.0.3")},
        {"cpu_usage": 99, "core_load": (), "services": (), "peers": ()},
    ]
    for index, custom in enumerate(sent):
        encoded = encoder.encode(Report(index + 1, custom=custom))
        document, _ = decode(encoded.payload)
        store.record_report("gw-1", document, NOW_MS - 60_000 + index * 1000)

    code, out, err = cli(
        "values",
        "-c",
        config_path,
        "--endpoint-url",
        emulator.url,
        "--metric",
        "cpu_usage",
        "--format",
        "json",
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["thing"] == "gw-1" and got["metric"] == "cpu_usage"
    assert [v["value"] for v in got["values"]] == [37.5, 12.25, 99]
    assert {v["type"] for v in got["values"]} == {"number"}
    assert [v["epoch_ms"] for v in got["values"]] == [NOW_MS - 60_000, NOW_MS - 59_000, NOW_MS - 58_000]
    # three values, page size 2: the paginator needed two requests
    assert emulator.calls("ListMetricValues") == [("ListMetricValues", 200)] * 2

    expect = {
        "core_load": [[12.0, 40.5], [1.0], []],
        "services": [["sshd", "mosquitto"], ["sshd"], []],
        "peers": [["10.0.0.2"], ["fd00::1", "10.0.0.3"], []],
    }
    kinds = {"core_load": "numbers", "services": "strings", "peers": "cidrs"}
    for metric, values in expect.items():
        code, out, _ = cli(
            "values", "-c", config_path, "--endpoint-url", emulator.url, "-m", metric, "--format", "json"
        )
        assert code == 0
        got = json.loads(out)["values"]
        assert [v["value"] for v in got] == values
        assert {v["type"] for v in got} == {kinds[metric]}


def test_table_shows_local_time_rendered_values_and_a_sparkline(emulator, store, cli, write_config) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    for index, value in enumerate([1, 5, 3, 8, 2]):
        store.record_report(
            "gw-1", report(index + 1, {"cpu_usage": [{"number": value}]}), NOW_MS - 5000 + index
        )
    code, out, _ = cli(
        "values", "--thing", "gw-1", "-m", "cpu_usage", "--since", "2h", "--endpoint-url", emulator.url
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("cpu_usage on gw-1: 5 value(s), ")
    assert lines[1].split() == ["TIME", "VALUE"]
    local = dt.datetime.fromtimestamp((NOW_MS - 5000) / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert lines[2].startswith(local) and lines[2].endswith("  1")
    assert [line.split()[-1] for line in lines[2:7]] == ["1", "5", "3", "8", "2"]
    assert lines[7] == "▁▅▃█▂  min 1  max 8"
    assert emulator.calls("ListMetricValues") == [("ListMetricValues", 200)] * 3  # 2 + 2 + 1


def test_max_limits_the_values(emulator, store, cli) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    for index in range(7):
        store.record_value("gw-1", "cpu_usage", NOW_MS - 10_000 + index, {"number": float(index)})
    code, out, _ = cli(
        "values",
        "--thing",
        "gw-1",
        "-m",
        "cpu_usage",
        "--max",
        "3",
        "--format",
        "csv",
        "--endpoint-url",
        emulator.url,
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["timestamp", "type", "value"]
    assert [r[2] for r in rows[1:]] == ["0", "1", "2"]
    assert len(emulator.calls("ListMetricValues")) == 2  # stopped paging once it had enough


def test_standard_metrics_render_ports_and_counts(emulator, store, cli) -> None:
    encoded = Encoder({}).encode(
        Report(
            1,
            standard={
                "listening_tcp_ports": ListeningPorts((ListeningPort(22), ListeningPort(443, "eth0"))),
                "network_stats": NetworkStats(bytes_in=10, bytes_out=2048, packets_in=1, packets_out=3),
            },
        )
    )
    store.record_report("gw-1", decode(encoded.payload)[0], NOW_MS - 1000)
    base = ("values", "--thing", "gw-1", "--endpoint-url", emulator.url, "-m")
    code, out, _ = cli(*base, "aws:listening-tcp-ports")
    assert code == 0 and out.splitlines()[2].endswith("  22, 443")
    code, out, _ = cli(*base, "aws:all-bytes-out", "--format", "csv")
    assert out.splitlines()[1].endswith(",count,2048")


def test_empty_results_say_so(emulator, store, cli) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    code, out, _ = cli("values", "--thing", "gw-1", "-m", "cpu_usage", "--endpoint-url", emulator.url)
    assert code == 0 and out.startswith("No values for metric cpu_usage of thing gw-1 between ")
    code, out, err = cli(
        "values", "--thing", "gw-1", "-m", "cpu_usage", "--endpoint-url", emulator.url, "--format", "json"
    )
    assert code == 0 and json.loads(out)["values"] == [] and err.startswith("No values for metric")


def test_values_outside_the_range_are_not_listed(emulator, store, cli) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    store.record_value("gw-1", "cpu_usage", NOW_MS - 3 * 3600 * 1000, {"number": 1.0})
    store.record_value("gw-1", "cpu_usage", NOW_MS - 1000, {"number": 2.0})
    base = (
        "values",
        "--thing",
        "gw-1",
        "-m",
        "cpu_usage",
        "--endpoint-url",
        emulator.url,
        "--format",
        "json",
    )
    assert [v["value"] for v in json.loads(cli(*base, "--since", "2h")[1])["values"]] == [2.0]
    assert [v["value"] for v in json.loads(cli(*base, "--since", "1d")[1])["values"]] == [1.0, 2.0]
    start = dt.datetime.fromtimestamp(NOW_MS / 1000 - 4 * 3600, tz=dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    got = json.loads(cli(*base, "--start", start, "--end", "1h")[1])["values"]
    assert [v["value"] for v in got] == [1.0]


def test_throttled_listing_resumes(emulator, store, iot) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    for index in range(5):
        store.record_value("gw-1", "cpu_usage", NOW_MS - 10_000 + index, {"number": float(index)})
    emulator.inject_errors(1, operation="ListMetricValues")
    sleeps: List[float] = []
    now = dt.datetime.now(dt.timezone.utc)
    query = cv.Query("gw-1", "cpu_usage", now - dt.timedelta(hours=1), now)
    data = cv.fetch(iot, query, RetryPolicy(sleep=sleeps.append))
    assert [d.value for d in data] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(sleeps) == 1
    assert [s for _, s in emulator.calls("ListMetricValues")] == [400, 200, 200, 200]


def test_service_errors_are_one_line(emulator, store, cli) -> None:
    base = ("values", "--thing", "gw-1", "--endpoint-url", emulator.url)
    code, _, err = cli(*base, "-m", "nope")
    assert code == 1 and err.count("\n") == 1
    assert "list values of nope for gw-1: it does not exist (ResourceNotFoundException" in err
    store.create_metric("cpu_usage", "number", None, (), "t")
    code, _, err = cli(*base, "-m", "cpu_usage", "--dimension", "TopicFilter")
    assert code == 1 and "Dimension TopicFilter does not exist" in err
    code, _, err = cli(*base, "-m", "cpu_usage", "--since", "yesterday")
    assert code == 1 and "'yesterday' is neither a relative time" in err
    code, _, err = cli(*base, "-m", "cpu_usage", "--not-in")
    assert code == 1 and "--not-in needs --dimension" in err


def test_dimension_filter_is_sent(emulator, store, cli) -> None:
    store.create_metric("cpu_usage", "number", None, (), "t")
    store.add_dimension("TopicFilter")
    store.record_value("gw-1", "cpu_usage", NOW_MS - 1000, {"number": 4.0})
    base = (
        "values",
        "--thing",
        "gw-1",
        "-m",
        "cpu_usage",
        "--endpoint-url",
        emulator.url,
        "--format",
        "json",
        "--dimension",
        "TopicFilter",
    )
    assert json.loads(cli(*base)[1])["values"] == []  # emulated values carry no dimension
    assert [v["value"] for v in json.loads(cli(*base, "--not-in")[1])["values"]] == [4.0]


# -- pure parts -------------------------------------------------------------------


def test_parse_time() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert cv.parse_time("2h", now) == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert cv.parse_time("90s", now) == now - dt.timedelta(seconds=90)
    assert cv.parse_time("1w", now) == now - dt.timedelta(days=7)
    assert cv.parse_time("now", now) == now
    assert cv.parse_time("2024-04-30T08:00:00Z", now) == dt.datetime(2024, 4, 30, 8, tzinfo=dt.timezone.utc)
    assert cv.parse_time("2024-04-30T08:00:00+02:00", now).utcoffset() == dt.timedelta(hours=2)
    assert cv.parse_time("2024-04-30 08:00", now).tzinfo is not None  # naive = local time
    with pytest.raises(ValueError, match="neither a relative time"):
        cv.parse_time("2 hours", now)


def test_renderers_for_every_type() -> None:
    t = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    cases = [
        ({"number": 37.5}, "37.5"),
        ({"number": 3.0}, "3"),
        ({"count": 12}, "12"),
        ({"numbers": [1.0, 2.5]}, "1, 2.5"),
        ({"strings": ["a", "b"]}, "a, b"),
        ({"cidrs": ["10.0.0.1"]}, "10.0.0.1"),
        ({"ports": [22, 80]}, "22, 80"),
        ({"strings": []}, "(empty)"),
    ]
    for value, shown in cases:
        assert cv.format_value(cv.to_datum({"timestamp": t, "value": value})) == shown
    assert cv.sparkline([1, 1, 1]) == "▅▅▅"
    assert cv.sparkline([0, 7]) == "▁█"
    data = [cv.to_datum({"timestamp": t, "value": {"strings": ["x", "y"]}})]
    assert cv.render_csv(data) == "timestamp,type,value\n2024-05-01T12:00:00.000Z,strings,x;y\n"
    query = cv.Query("gw", "m", t - dt.timedelta(hours=1), t)
    table = cv.render_table(query, data, tz=dt.timezone.utc)
    assert "2024-05-01 12:00:00 UTC  x, y" in table and "▁" not in table  # no sparkline for strings
