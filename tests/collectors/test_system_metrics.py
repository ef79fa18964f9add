"""System and disk collectors: pure conversions on recorded psutil shapes, config selection, this host."""

from __future__ import annotations

import collections
import contextlib
import os
import tempfile

import psutil
import pytest

from agent.catalog import MetricType
from agent.collectors.system import cpu, host
from agent.collectors.system.collector import METRICS, SystemCollector
from agent.collectors.system.disk import DiskCollector
from agent.config.load import parse_config
from agent.errors import CollectorError, ConfigError, NoData

Times = collections.namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
Temp = collections.namedtuple("Temp", "label current high critical")
User = collections.namedtuple("User", "name terminal host started pid")
VM = collections.namedtuple("VM", "total available percent used free")
Swap = collections.namedtuple("Swap", "total used free percent sin sout")
Usage = collections.namedtuple("Usage", "total used free percent")


def t(user, idle, guest=0.0, iowait=0.0):
    return Times(user, 0.0, 0.0, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


def test_busy_percent_ignores_guest_and_counts_iowait_as_idle():
    assert cpu.busy_percent(t(10, 10), t(40, 40, guest=25)) == 50.0
    assert cpu.busy_percent(t(0, 0), t(10, 20, iowait=10)) == 25.0
    assert cpu.busy_percent(t(1, 1), t(1, 1)) is None


def test_per_core_percent_and_hotplug():
    assert cpu.per_core_percent([t(0, 0), t(0, 0)], [t(1, 3), t(3, 1)]) == (25.0, 75.0)
    assert cpu.per_core_percent([t(0, 0)], [t(1, 3), t(3, 1)]) is None


def test_max_temperature_selection():
    sensors = {
        "cpu_thermal": [Temp("", 48.3, None, None)],
        "nvme": [Temp("Composite", 51.0, 80.0, 85.0), Temp("Sensor 1", float("nan"), None, None)],
        "acpitz": [Temp("", 999.0, None, None)],  # a broken reading is ignored
    }
    assert host.max_temperature(sensors, ["*"]) == 51.0
    assert host.max_temperature(sensors, ["cpu_thermal"]) == 48.3
    assert host.max_temperature(sensors, ["nvme/Composite"]) == 51.0
    assert host.max_temperature({}, ["*"]) is None


def test_user_names_are_distinct_and_sorted():
    users = [User("pi", "pts/0", "", 0, 1), User("admin", "tty1", "", 0, 2), User("pi", "pts/1", "", 0, 3)]
    assert host.user_names(users) == ("admin", "pi")


class FakeSystem:
    def __init__(self, sensors=None):
        self.times = [t(0, 0)]
        self.sensors = sensors or {}

    def cpu_times(self, percpu):
        cur = self.times[-1]
        return [cur, cur] if percpu else cur

    def virtual_memory(self):
        return VM(1000, 250, 75.0, 700, 50)

    def swap_memory(self):
        return Swap(0, 0, 0, 0.0, 0, 0)

    def getloadavg(self):
        return (0.123, 0.5, 1.0)

    def sensors_temperatures(self):
        return self.sensors

    def boot_time(self):
        return 1000.0

    def pids(self):
        return [1, 2, 3]

    def users(self):
        return [User("pi", "pts/0", "", 0, 1)]

    def own_fds(self):
        return 9

    def disk_usage(self, path):
        if path == "/missing":
            raise FileNotFoundError(2, "No such file or directory")
        return Usage(100, 40, 60, 40.0)


def _system(source, metrics, monotonic=None):
    times = iter([0.0, 10.0, 20.0, 30.0])
    return SystemCollector(
        "sys",
        metrics=metrics,
        sensors=("*",),
        source=source,
        clock=lambda: 4600.0,
        monotonic=monotonic or (lambda: next(times)),
        sleep=lambda s: None,
    )


def test_system_collector_on_a_fake_source():
    source = FakeSystem()
    collector = _system(source, {name: name for name in METRICS})
    source.times.append(t(30, 10))
    values = {s.name: s.value for s in collector.collect()}
    assert values == {
        "cpu_usage": 75.0,
        "cpu_core_usage": (75.0, 75.0),
        "load_average": (0.12, 0.5, 1.0),
        "memory_used_percent": 75.0,
        "memory_available_bytes": 250,
        "swap_used_percent": 0.0,
        "swap_used_bytes": 0,
        "uptime_seconds": 3600,
        "process_count": 3,
        "logged_in_users": ("pi",),
        "agent_open_fds": 9,
    }  # no temperature: no sensors means no data for that metric only


def test_custom_names_and_no_data():
    collector = _system(FakeSystem(), {"temperature": "soc_temp"})
    with pytest.raises(NoData):
        collector.collect()
    hot = _system(FakeSystem({"cpu_thermal": [Temp("", 61.2, None, None)]}), {"temperature": "soc_temp"})
    assert [(s.name, s.value) for s in hot.collect()] == [("soc_temp", 61.2)]


def test_short_first_window_waits_for_a_meaningful_cpu_percent():
    slept = []
    clock = iter([0.0, 0.05, 0.3])
    collector = SystemCollector(
        "s",
        metrics={"cpu_usage": "cpu"},
        source=FakeSystem(),
        monotonic=lambda: next(clock),
        sleep=slept.append,
    )
    with pytest.raises(NoData):  # the fake's times do not move
        collector.collect()
    assert slept == [pytest.approx(0.2)]


def test_disk_collector():
    assert [
        (s.name, s.value)
        for s in DiskCollector(
            "d", mounts={"/": "root_pct"}, value="used_percent", source=FakeSystem()
        ).collect()
    ] == [("root_pct", 40.0)]
    assert (
        DiskCollector("d", mounts={"/": "x"}, value="free_bytes", source=FakeSystem()).collect()[0].value
        == 60
    )
    with pytest.raises(CollectorError, match="/missing"):
        DiskCollector("d", mounts={"/missing": "x"}, value="used_percent", source=FakeSystem()).collect()


BASE = """
thing_name: gw
mqtt: {endpoint: 127.0.0.1, cert: /c, key: /k, ca: /a}
"""


def test_config_selection_list_mapping_and_errors():
    cfg = parse_config(
        BASE
        + """
custom_metrics: {cpu_usage: number, soc_temp: number, root_pct: number}
collectors:
  - {type: system, metrics: [cpu_usage]}
  - {type: system, name: temp, metrics: {temperature: soc_temp}}
  - {type: disk, mounts: {/: root_pct}}
"""
    )
    assert [c.options.get("metrics") for c in cfg.collectors[:2]] == [
        {"cpu_usage": "cpu_usage"},
        {"temperature": "soc_temp"},
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(
            BASE
            + """
custom_metrics: {load_average: number}
collectors:
  - {type: system, metrics: [cpu_usge, load_average]}
  - {type: disk, mounts: {data: x}}
"""
        )
    text = str(info.value)
    assert "unknown system metric 'cpu_usge' (did you mean \"cpu_usage\"?)" in text
    assert "must be an absolute path" in text
    with pytest.raises(
        ConfigError, match=r"load_average\.type: is number, but collector 'system' emits a number-list"
    ):
        parse_config(
            BASE
            + "custom_metrics: {load_average: number}\ncollectors: [{type: system, metrics: [load_average]}]"
        )


def test_this_host_gives_at_least_six_system_metrics():
    collector = SystemCollector("sys", metrics={name: name for name in METRICS})
    samples = collector.collect()
    assert len(samples) >= 6
    for sample in samples:
        kind = METRICS[sample.name].type
        if kind is MetricType.NUMBER:
            assert isinstance(sample.value, (int, float)) and sample.value >= 0
        else:
            assert isinstance(sample.value, tuple)
    values = {s.name: s.value for s in samples}
    assert values["agent_open_fds"] == _fd_count()
    assert len(values["cpu_core_usage"]) == psutil.cpu_count()
    assert 0 <= values["cpu_usage"] <= 100


def _fd_count() -> int:
    """This process's open descriptors, as /proc/self/fd lists them while it is read.

    The listing counts the one descriptor it opens for itself, as psutil's num_fds() does.
    """
    return len(os.listdir("/proc/self/fd"))


def test_agent_open_fds_is_the_count_of_this_process_and_follows_it():
    collector = SystemCollector("sys", metrics={"agent_open_fds": "fds"})

    def sample() -> int:
        before = _fd_count()
        [fds] = collector.collect()
        after = _fd_count()
        assert before == after, "a descriptor was opened or closed while sampling"
        assert fds.name == "fds"
        assert fds.value == before
        return int(fds.value)

    start = sample()
    with contextlib.ExitStack() as extra:
        for _ in range(7):
            extra.enter_context(tempfile.TemporaryFile())
        assert sample() == start + 7
    assert sample() == start
