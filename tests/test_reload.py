"""SIGHUP on the fake clock and fake link: what a reload changes, what it refuses, and that mqtt restarts the link."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, List

import pytest

from agent import events as ev
from agent.config.model import BacklogMode, Config
from agent.errors import ConfigError
from agent.reload import Section, compare
from tests.delivery.conftest import CountingSource
from tests.loop import Loop, RecordingNotifier, make_config

HUP = ev.SignalEvent(ev.Signal.HUP)


def serving(configs: List[Config]) -> Callable[[], Config]:
    """A reload_config that returns the last config put in ``configs`` (or raises a ConfigError put there)."""

    def load() -> Config:
        value = configs[-1]
        if isinstance(value, Exception):
            raise value
        return value

    return load


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_compare_names_changed_sections_and_keeps_state_dir(tmp_path: Path) -> None:
    old = make_config(tmp_path / "a")
    new = make_config(tmp_path / "b", interval=600, backlog="fold")
    reload = compare(old, new)
    assert reload.changed == (Section.REPORT, Section.DELIVERY)
    assert reload.changed_names() == "report, delivery"
    assert reload.refused_state_dir == tmp_path / "b" and reload.config.state_dir == old.state_dir
    assert reload.touches(Section.REPORT) and not reload.touches(Section.MQTT, Section.THING_NAME)
    same = compare(old, old)
    assert same.changed == () and same.changed_names() == "nothing" and same.refused_state_dir is None


def test_changed_interval_applies_at_once(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state, interval=3600)
    configs = [old]
    with Loop(old, reload_config=serving(configs)) as loop:
        loop.until(lambda: loop.source.rounds == 1)
        started = loop.clock.now
        configs.append(dataclasses.replace(old, report=dataclasses.replace(old.report, interval=300.0),
                                           source="/etc/defender-agent/agent.yaml"))
        loop.service.events.put(HUP)
        loop.turn()
        assert loop.service.config.report.interval == 300.0
        loop.until(lambda: loop.source.rounds == 2, turns=400)
        assert loop.clock.now - started == pytest.approx(300.0), "the next report follows the new interval"
        assert len(loop.links.links) == 1, "a report change does not touch the link"
    assert "Reloaded configuration from /etc/defender-agent/agent.yaml (changed: report)" in caplog.text


def test_an_interval_change_rebuilds_the_collectors_and_a_delivery_change_does_not(state: Path) -> None:
    """Collectors are built for one sampling interval (network_stats refuses a delta over 1.5 of it)."""
    old = make_config(state, interval=60)
    configs = [old]
    with Loop(old, reload_config=serving(configs)) as loop:
        built: List[float] = []
        factory = loop.service.source_factory
        loop.service.source_factory = lambda cfg: (built.append(cfg.report.interval), factory(cfg))[1]
        loop.until(lambda: loop.source.rounds == 1)
        configs.append(dataclasses.replace(old, delivery=dataclasses.replace(old.delivery, max_attempts=9)))
        loop.service.events.put(HUP)
        loop.turn()
        assert built == [], "a delivery change keeps the collectors and their state"
        configs.append(dataclasses.replace(old, report=dataclasses.replace(old.report, interval=300.0)))
        loop.service.events.put(HUP)
        loop.turn()
        assert built == [300.0], "collectors built for the old interval refuse the new one's deltas"


def test_refused_config_keeps_the_running_one(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state)
    configs: List = [old]
    notifier = RecordingNotifier()
    with Loop(old, reload_config=serving(configs), notifier=notifier) as loop:
        loop.until(lambda: loop.link.published)
        configs.append(ConfigError.single("/etc/a.yaml", "report.intervall", "unknown key; did you mean interval?"))
        loop.service.events.put(HUP)
        loop.turn()
        assert loop.service.config is old
        assert len(loop.links.links) == 1 and not loop.link.stopped
        rid = loop.link.published_ids[0]
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
    refused = [r.getMessage() for r in caplog.records if "Reload refused" in r.getMessage()]
    assert len(refused) == 1 and "report.intervall" in refused[0] and "\n" not in refused[0]
    reloading = notifier.sent.index("RELOADING=1")
    assert notifier.sent[reloading + 1].startswith("READY=1"), "systemd hears that the reload is over"


def test_mqtt_change_restarts_the_link_and_resends_on_the_new_one(state: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state, reply_timeout=30)
    configs = [old]
    with Loop(old, reload_config=serving(configs)) as loop:
        loop.until(lambda: loop.link.published)
        first = loop.link
        rid = first.published_ids[0]
        configs.append(dataclasses.replace(old, mqtt=dataclasses.replace(old.mqtt, port=9883)))
        loop.service.events.put(HUP)
        loop.until(lambda: len(loop.links.links) == 2 and loop.link.published, turns=5)
        assert first.stopped and loop.links.configs[-1].mqtt.port == 9883
        assert loop.link.published_ids == [rid], "the pending report goes out again on the new link at once"
        assert loop.service.session.link_state.address == "127.0.0.1:9883"
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
    assert "(changed: mqtt)" in caplog.text


def test_tls_files_refused_on_reload_leave_the_old_link_running(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state)
    configs = [old]
    with Loop(old, reload_config=serving(configs)) as loop:
        loop.until(lambda: loop.link.published)
        configs.append(dataclasses.replace(old, mqtt=dataclasses.replace(old.mqtt, key="/etc/garbage.key")))
        loop.links.refuse = ConfigError.single("agent.yaml", "mqtt", "cannot set up TLS from cert ...")
        loop.service.events.put(HUP)
        loop.turn()
        assert loop.service.config is old and len(loop.links.links) == 1 and not loop.link.stopped
        assert loop.service.session.ready
    assert "Reload refused, keeping the running configuration: agent.yaml: mqtt: cannot set up TLS" in caplog.text


def test_state_dir_change_is_refused_and_a_backlog_change_applies(state: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state, backlog="fold", interval=10)
    configs = [old]
    with Loop(old, reload_config=serving(configs), connects=False) as loop:
        loop.run_for(25)  # three rounds while offline: fold keeps one report, with all three deltas
        (kept,) = loop.service.state.outbox.pending()
        assert kept.network is not None and kept.network.bytes_in == 300
        new = make_config(tmp_path / "elsewhere", backlog="newest", interval=10)
        configs.append(new)
        loop.service.events.put(HUP)
        loop.turn()
        assert loop.service.config.delivery.backlog is BacklogMode.NEWEST
        assert loop.service.config.state_dir == state
        loop.run_for(10)  # the next round under newest: its own delta only, the kept one superseded
        (newest,) = loop.service.state.outbox.pending()
        assert newest.network is not None and newest.network.bytes_in == 100
        assert set(loop.service.consumers.defender.resend.due_at) == {newest.report_id}
    assert f"state_dir changed to {tmp_path / 'elsewhere'}; that takes a restart (keeping {state})" in caplog.text


def test_sighup_without_a_config_file_is_a_warning(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Loop(make_config(state)) as loop:
        loop.service.events.put(HUP)
        loop.turn()
        assert not loop.service.stopping
    assert "Received SIGHUP but this run has no config file to reload" in caplog.text


class ClosingSource(CountingSource):
    """A counting source that knows whether it was closed (a closed source must not be sampled again)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def sample(self):  # type: ignore[no-untyped-def]
        assert not self.closed, "a closed source was sampled"
        return super().sample()

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("failure", [ConfigError.single("/etc/a.yaml", "collectors[0].exec.command[0]",
                                                        "is writable by group or others"),
                                     RuntimeError("the plugin's constructor raised")])
def test_a_reload_whose_collectors_cannot_be_built_changes_nothing(state: Path, failure: Exception,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Issue 23, defect 1: the new collectors are built before anything is swapped. Before, the config was
    swapped and the old source closed first, so a failing build left closed collectors under the new config
    and systemd never heard READY=1 after RELOADING=1."""
    caplog.set_level(logging.INFO, logger="agent.test.loop")
    old = make_config(state)
    new = dataclasses.replace(old, report=dataclasses.replace(old.report, interval=600.0),
                              mqtt=dataclasses.replace(old.mqtt, port=9883))
    configs: List = [old, new]
    notifier = RecordingNotifier()
    source = ClosingSource()
    with Loop(old, source=source, reload_config=serving(configs), notifier=notifier) as loop:
        loop.until(lambda: loop.link.published)

        def refuse(cfg: Config) -> ClosingSource:
            raise failure

        loop.service.source_factory = refuse
        loop.service.events.put(HUP)
        loop.turn()
        assert loop.service.config is old, "the running config stays whole"
        assert not source.closed, "the running collectors stay open"
        assert len(loop.links.links) == 1 and not loop.link.stopped, "nor does the link move"
        reloading = notifier.sent.index("RELOADING=1")
        assert notifier.sent[reloading + 1].startswith("READY=1")
        rid = loop.link.published_ids[0]
        loop.link.accept(rid)
        loop.until(lambda: loop.outcome(rid) == "accepted")
        rounds = source.rounds
        loop.run_for(old.report.interval + 1)
        assert source.rounds == rounds + 1, "rounds go on under the old config"
    refused = [r.getMessage() for r in caplog.records if "Reload refused" in r.getMessage()]
    assert len(refused) == 1 and str(failure).split(":")[0] in refused[0]
