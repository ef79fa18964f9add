"""Desired states on the loop (fake clock, fake link): applied live through the SIGHUP path, refused keys
named, the running config never half-changed, the outcome handed to the consumers and kept in state_dir."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from agent import events as ev
from agent.config.load import parse_config
from agent.config.model import Config
from agent.consumers.registry import ConsumerSet
from agent.remote.engine import Remote
from agent.remote.file import path_of
from agent.remote.outcome import Outcome
from agent.remote.store import read_state
from agent.scheduler import Service
from tests.loop import Loop
from tests.remote.base import SHADOW, base_text

EXEC = ["/bin/sh", "-c", "touch /tmp/remote-config-pwned"]
LOG = "agent.test.loop"


class Harness:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = SHADOW,
                 interval: str = "3600s") -> None:
        self.state = tmp_path / "state"
        self.file = tmp_path / "agent.yaml"
        self.text = base_text(self.state, extra).replace("interval: 300s", f"interval: {interval}")
        self.file.write_text(self.text)
        self.outcomes: List[Outcome] = []
        monkeypatch.setattr(ConsumerSet, "remote_outcome", lambda _, outcome: self.outcomes.append(outcome))
        self.remote = Remote(self.state, logging.getLogger(LOG))
        config, adopt = self.remote.rebase(self.load())
        adopt()
        self.built: List[Config] = []
        monkeypatch.setattr("tests.loop.Service", functools.partial(Service, remote=self.remote))
        self.loop = Loop(config, reload_config=self.load)
        factory = self.loop.service.source_factory
        self.loop.service.source_factory = lambda cfg: (self.built.append(cfg), factory(cfg))[1]

    def load(self) -> Config:
        return parse_config(self.file.read_text(), str(self.file))

    def desired(self, desired: Any, version: int, complete: bool = True) -> None:
        self.loop.service.events.put(ev.DesiredState(desired, version, complete))
        self.loop.turn()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Harness]:
    caplog.set_level(logging.DEBUG, logger=LOG)
    h = Harness(tmp_path, monkeypatch)
    try:
        yield h
    finally:
        h.loop.service.close()


def messages(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == LOG]


def test_a_desired_interval_applies_live_and_the_reports_follow_it(harness: Harness,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    loop = harness.loop
    assert harness.outcomes == [Outcome()], "the consumers hear the stored outcome once the loop is open"
    loop.until(lambda: loop.source.rounds == 1)
    harness.desired({"report": {"interval": "300s"}, "log_level": "debug"}, 7)
    assert loop.service.config.report.interval == 300.0
    started = loop.clock.now
    loop.until(lambda: loop.source.rounds == 2, turns=400)
    assert loop.clock.now - started == pytest.approx(300.0), "the next report follows the remote interval"
    assert len(loop.links.links) == 1 and not loop.link.stopped, "no reconnect, no restart"
    assert harness.outcomes[-1] == Outcome(7, {"report": {"interval": "300s"}, "log_level": "debug"}, {})
    assert "Remote config from shadow version 7 applied: log_level, report.interval" in messages(caplog, logging.INFO)
    assert logging.getLogger(LOG).level == logging.DEBUG, "log_level applies live"
    stored = read_state(harness.state)
    assert stored is not None and stored.version == 7 and stored.overrides[("report", "interval")] == "300s"
    logging.getLogger(LOG).setLevel(logging.NOTSET)


@pytest.mark.parametrize(("desired", "key", "reason"), [
    ({"collectors": {"cmd": {"command": EXEC}}}, "collectors.cmd.command", "could run a program"),
    ({"collectors": [{"type": "exec", "command": EXEC, "metric": "x", "metric_type": "number"}]}, "collectors",
     "could run a program"),
    ({"violations": {"exec": EXEC}}, "violations.exec", "could run a program"),
    ({"sinks": [{"type": "textfile", "path": "/tmp/x.prom"}]}, "sinks[0].path", "names a file"),
    ({"sinks": [{"type": "topic", "topic": "attacker/t"}]}, "sinks[0].topic", "moves the connection"),
    ({"plugins": ["evil"]}, "plugins", "could run a program"),
    ({"mqtt": {"endpoint": "evil.example.com"}}, "mqtt.endpoint", "moves the connection"),
    ({"state_dir": "/tmp"}, "state_dir", "names a file"),
    ({"repot": {"interval": "1s"}}, "repot", "not a config key"),
])
def test_a_never_remote_key_is_refused_and_the_running_config_stays(
        harness: Harness, caplog: pytest.LogCaptureFixture, desired: Any, key: str, reason: str) -> None:
    loop = harness.loop
    running = loop.service.config
    harness.desired({**desired, "report": {"interval": "600s"}}, 9, complete=False)
    assert loop.service.config.report.interval == 600.0, "the allowed key of the same document applies"
    assert loop.service.config.mqtt == running.mqtt and loop.service.config.state_dir == running.state_dir
    assert loop.service.config.sinks == running.sinks and loop.service.config.violations == running.violations
    assert [c.options for c in loop.service.config.collectors] == [c.options for c in running.collectors]
    assert all(EXEC not in [list(c.options.get("command", ())) for c in cfg.collectors] for cfg in harness.built)
    assert harness.outcomes[-1].refused[key].startswith(reason)
    assert harness.outcomes[-1].applied == {"report": {"interval": "600s"}}
    [warning] = [m for m in messages(caplog, logging.WARNING) if "refused" in m]
    assert warning.startswith("Remote config from shadow version 9: refused ") and f"{key} ({reason}" in warning
    assert len(loop.links.links) == 1


def test_a_change_refused_at_build_time_refuses_every_key_and_changes_nothing(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    loop = harness.loop

    def broken(cfg: Config) -> Any:
        raise RuntimeError("collector cmd cannot start")

    loop.service.source_factory = broken
    running = loop.service.config
    harness.desired({"collectors": {"cmd": {"interval": "2h"}}, "log_level": "debug"}, 11)
    assert loop.service.config is running
    reason = "the config could not be built: collector cmd cannot start"
    assert harness.outcomes[-1] == Outcome(11, {}, {"collectors.cmd.interval": reason, "log_level": reason})
    stored = read_state(harness.state)
    assert stored is not None and stored.overrides == {} and set(stored.refused) == {"collectors.cmd.interval",
                                                                                      "log_level"}


def test_a_sighup_keeps_the_remote_keys_and_null_gives_them_back(harness: Harness) -> None:
    loop = harness.loop
    harness.desired({"report": {"interval": "300s"}}, 3)
    harness.file.write_text(harness.text.replace("jitter: 0s", "jitter: 1s"))
    loop.service.events.put(ev.SignalEvent(ev.Signal.HUP))
    loop.turn()
    assert (loop.service.config.report.interval, loop.service.config.report.jitter) == (300.0, 1.0)
    assert harness.outcomes[-1].applied == {"report": {"interval": "300s"}}
    harness.desired({"report": {"interval": None}}, 4, complete=False)
    assert loop.service.config.report.interval == 3600.0, "agent.yaml's value again"
    assert harness.outcomes[-1] == Outcome(4, {}, {})


def test_a_refused_change_is_not_logged_again_when_the_same_refusal_comes_back(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    for version in (5, 6, 7):
        harness.desired({"mqtt": {"endpoint": "evil.example.com"}}, version)
    refused = [m for m in messages(caplog, logging.WARNING) if "refused mqtt.endpoint" in m]
    assert refused == ["Remote config from shadow version 5: refused mqtt.endpoint (moves the connection)"]


def start_with_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str) -> Tuple[Harness, Path]:
    """A first run applies version 8 and stops; the second starts from what it stored."""
    first = Harness(tmp_path, monkeypatch)
    first.desired({"report": {"interval": "300s"}}, 8)
    first.loop.service.close()
    return Harness(tmp_path, monkeypatch, extra=extra), path_of(first.state)


def test_the_stored_keys_apply_at_the_next_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second, _ = start_with_stored(tmp_path, monkeypatch, SHADOW)
    try:
        assert second.loop.service.config.report.interval == 300.0
        assert second.outcomes == [Outcome(8, {"report": {"interval": "300s"}}, {})]
    finally:
        second.loop.service.close()


def test_remote_config_off_ignores_the_stored_keys_and_keeps_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    off = "shadow:\n  name: fleet\n  remote_config: false\n"
    second, stored = start_with_stored(tmp_path, monkeypatch, off)
    try:
        assert second.loop.service.config.report.interval == 3600.0
        assert second.outcomes == [Outcome()]
        second.desired({"report": {"interval": "600s"}}, 9)
        assert second.loop.service.config.report.interval == 3600.0
        assert stored.exists()
        assert sum("is ignored: shadow.remote_config is off" in m for m in messages(caplog, logging.INFO)) == 1
    finally:
        second.loop.service.close()


def test_a_corrupt_file_is_logged_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").mkdir()
    path_of(tmp_path / "state").write_text("{not json")
    h = Harness(tmp_path, monkeypatch)
    try:
        assert h.loop.service.config.report.interval == 3600.0
        assert sum("Ignoring the stored remote config" in m for m in messages(caplog, logging.WARNING)) == 1
        h.desired({"report": {"interval": "600s"}}, 2)
        assert read_state(h.state) is not None, "the next desired state writes it anew"
    finally:
        h.loop.service.close()
