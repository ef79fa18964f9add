"""remote-config.json: written atomically with mode 0600, read back through the allow-list; a bad file is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.remote.file import CorruptState, path_of
from agent.remote.store import RemoteState, read_state, write_state


def test_round_trip_and_mode(tmp_path: Path) -> None:
    state = RemoteState(7, {("report", "interval"): "60s", ("collectors", "cmd", "interval"): "10m"},
                        {"mqtt.endpoint": "moves the connection"}, 1700000000.0,
                        {"report.interval": (7, 1700000000.0)})
    write_state(tmp_path, state)
    assert stat.S_IMODE(path_of(tmp_path).stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))
    assert read_state(tmp_path) == RemoteState(7, state.overrides, state.refused, 1700000000.0,
                                               {"report.interval": (7, 1700000000.0)})
    on_disk = json.loads(path_of(tmp_path).read_text())
    assert on_disk["applied"] == {"collectors": {"cmd": {"interval": "10m"}}, "report": {"interval": "60s"}}


def test_a_hand_edited_file_cannot_set_what_a_shadow_may_not(tmp_path: Path) -> None:
    path_of(tmp_path).write_text(json.dumps({"version": 3, "applied": {
        "report": {"interval": "60s"}, "mqtt": {"endpoint": "evil"}, "violations": {"exec": ["/bin/sh"]},
        "collectors": {"cmd": {"command": ["/bin/sh", "-c", "touch x"]}}}}))
    state = read_state(tmp_path)
    assert state is not None and state.overrides == {("report", "interval"): "60s"}


def test_no_file_is_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None


@pytest.mark.parametrize("text", ["{", "[]", '{"version": "7"}', "\xff", "{" * 100_000])
def test_a_corrupt_file_is_refused(tmp_path: Path, text: str) -> None:
    path_of(tmp_path).write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff" else b"\xff")
    with pytest.raises(CorruptState):
        read_state(tmp_path)
