"""The counter state file's bytes are those of the original ``json.dump(asdict(...), indent=1)`` writer."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.collectors.standard.counters import IfCounters
from agent.collectors.standard.delta import STATE_VERSION, Snapshot, StateFile

COUNT = st.integers(0, 2**64)
COUNTERS = st.builds(IfCounters, COUNT, COUNT, COUNT, COUNT, st.one_of(st.none(), st.integers(1, 2**31)))
SNAPSHOTS = st.builds(
    Snapshot,
    st.one_of(st.none(), st.uuids().map(str)),
    st.dictionaries(st.text(min_size=1, max_size=15).filter(lambda n: "/" not in n), COUNTERS, max_size=6),
)


def _reference(snap: Snapshot, now: float) -> bytes:
    data = {
        "version": STATE_VERSION,
        "boot_id": snap.boot_id,
        "time": now,
        "interfaces": {name: asdict(c) for name, c in sorted(snap.interfaces.items())},
    }
    return json.dumps(data, indent=1).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(SNAPSHOTS, st.floats(0, 2e9))
def test_saved_bytes_match_the_reference_writer(tmp_path_factory, snap, now) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("state") / "missing-dir" / "net.json"
    state = StateFile(path)
    state.save(snap, now)
    assert path.read_bytes() == _reference(snap, now)
    assert state.load() == (Snapshot(snap.boot_id, snap.interfaces, now), None)
    state.save(snap, now + 1)  # over an existing file, in an existing directory
    assert path.read_bytes() == _reference(snap, now + 1)
    assert [p.name for p in path.parent.iterdir()] == ["net.json"]
