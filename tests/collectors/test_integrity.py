"""file_integrity: real files changed, added and removed; the baseline across restarts; the caps."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from agent.collectors.contract import BuildContext
from agent.collectors.security import integrity
from agent.collectors.security.baseline import Entry, Hasher, Walk, compare, hash_file, walk
from agent.config.load import parse_config
from devkit.security_fixtures import watched_tree

LOG = logging.getLogger("test.integrity")


def build(state: Path, paths: List[str], persist: bool = True, **options: Any) -> integrity.FileIntegrityCollector:
    ctx = BuildContext(name="fi", state_dir=state, timeout=10, report_interval=300, max_list_items=500,
                       logger=LOG, persist_state=persist)
    opts: Dict[str, Any] = {"paths": tuple(paths), "exclude": (), "max_files": integrity.DEFAULT_MAX_FILES,
                            "max_bytes": integrity.DEFAULT_MAX_BYTES, "metrics": None, **options}
    return integrity.SPEC.build(ctx, opts)  # type: ignore[return-value]


def values(collector: Any) -> Tuple[int, Tuple[str, ...]]:
    got = {s.name: s.value for s in collector.collect()}
    return got["files_changed"], got["files_changed_paths"]


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    root = tmp_path / "etc"
    root.mkdir()
    (root / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "group").write_text("root:x:0:\n")
    (root / "ssh").mkdir()
    (root / "ssh" / "sshd_config").write_text("PermitRootLogin no\n")
    return root


def test_first_start_records_the_baseline_and_reports_zero(tmp_path: Path, etc: Path) -> None:
    fi = build(tmp_path / "state", [str(etc / "passwd"), str(etc / "ssh")])
    assert values(fi) == (0, ())
    saved = json.loads((tmp_path / "state" / "file-integrity.fi.json").read_text())
    assert set(saved["entries"]) == {str(etc / "passwd"), str(etc / "ssh"), str(etc / "ssh" / "sshd_config")}
    assert values(fi) == (0, ())


def test_a_file_changed_added_and_removed_each_count_once(tmp_path: Path, etc: Path) -> None:
    fi = build(tmp_path / "state", [str(etc)])
    values(fi)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\n")
    (etc / "ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA...\n")
    (etc / "group").unlink()
    assert values(fi) == (3, tuple(sorted([str(etc / "passwd"), str(etc / "ssh" / "authorized_keys"),
                                           str(etc / "group")])))
    assert values(fi) == (0, ())


def test_same_size_edit_with_the_mtime_put_back_is_seen(tmp_path: Path, etc: Path) -> None:
    """The stamp holds the ctime, which a program cannot set back: an edit that restores the mtime is read."""
    path = etc / "ssh" / "sshd_config"
    fi = build(tmp_path / "state", [str(path)])
    values(fi)
    before = os.stat(path)
    path.write_text("PermitRootLogin ye\n")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert values(fi) == (1, (str(path),))


def test_touch_without_a_content_change_is_not_a_change(tmp_path: Path, etc: Path) -> None:
    path = etc / "passwd"
    fi = build(tmp_path / "state", [str(path)])
    values(fi)
    path.write_text(path.read_text())  # rewritten, same bytes: new mtime and ctime
    os.utime(path, (1, 1))
    assert values(fi) == (0, ())


def test_mode_and_owner_changes_count(tmp_path: Path, etc: Path) -> None:
    path = etc / "passwd"
    fi = build(tmp_path / "state", [str(etc)])
    values(fi)
    path.chmod(0o666)
    assert values(fi) == (1, (str(path),))
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)
        assert values(fi) == (1, (str(path),))
    (etc / "ssh").chmod(0o777)  # a directory's own mode
    assert values(fi) == (1, (str(etc / "ssh"),))


def test_a_symlink_pointed_elsewhere_counts(tmp_path: Path, etc: Path) -> None:
    link = etc / "resolv.conf"
    link.symlink_to("/run/one")
    fi = build(tmp_path / "state", [str(etc)])
    values(fi)
    link.unlink()
    link.symlink_to("/run/two")
    assert values(fi) == (1, (str(link),))


def test_a_restart_counts_a_change_made_while_stopped_once(tmp_path: Path, etc: Path) -> None:
    state = tmp_path / "state"
    first = build(state, [str(etc)])
    values(first)
    (etc / "passwd").write_text("changed while the agent was stopped\n")
    second = build(state, [str(etc)])  # a new process: only the state file connects them
    assert values(second) == (1, (str(etc / "passwd"),))
    third = build(state, [str(etc)])
    assert values(third) == (0, ())


def test_once_reads_the_baseline_but_never_writes_it(tmp_path: Path, etc: Path) -> None:
    state = tmp_path / "state"
    values(build(state, [str(etc)]))
    saved = (state / "file-integrity.fi.json").read_bytes()
    (etc / "group").write_text("changed\n")
    once = build(state, [str(etc)], persist=False)
    assert values(once) == (1, (str(etc / "group"),))
    assert (state / "file-integrity.fi.json").read_bytes() == saved
    assert values(build(state, [str(etc)])) == (1, (str(etc / "group"),))  # the daemon still counts it


def test_a_path_added_to_the_config_joins_the_baseline_silently(tmp_path: Path, etc: Path) -> None:
    state = tmp_path / "state"
    values(build(state, [str(etc / "passwd")]))
    (etc / "passwd").write_text("changed\n")
    grown = build(state, [str(etc / "passwd"), str(etc / "ssh")])
    assert values(grown) == (1, (str(etc / "passwd"),))  # the change counts, the new path's files do not
    (etc / "ssh" / "sshd_config").write_text("PermitRootLogin yes\n")
    assert values(grown) == (1, (str(etc / "ssh" / "sshd_config"),))


def test_a_watched_path_that_appears_later_counts(tmp_path: Path, etc: Path) -> None:
    sudoers = etc / "sudoers"
    fi = build(tmp_path / "state", [str(sudoers)])
    assert values(fi) == (0, ())
    sudoers.write_text("ALL ALL=(ALL) NOPASSWD: ALL\n")
    assert values(fi) == (1, (str(sudoers),))
    sudoers.unlink()
    assert values(fi) == (1, (str(sudoers),))


def test_excluded_paths_are_not_watched(tmp_path: Path, etc: Path) -> None:
    fi = build(tmp_path / "state", [str(etc)], exclude=("*/ssh/*",))
    values(fi)
    (etc / "ssh" / "sshd_config").write_text("changed\n")
    (etc / "passwd").write_text("changed\n")
    assert values(fi) == (1, (str(etc / "passwd"),))


def test_a_damaged_state_file_starts_a_new_baseline(tmp_path: Path, etc: Path, caplog: Any) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "file-integrity.fi.json").write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING):
        fi = build(state, [str(etc)])
    assert "damaged" in caplog.text
    assert values(fi) == (0, ())
    (etc / "group").write_text("x\n")
    assert values(fi) == (1, (str(etc / "group"),))


def _unreadable(unreadable: str) -> Any:
    def read(path: str, limit: int) -> Tuple[Optional[str], Optional[os.stat_result]]:
        return (None, None) if path == unreadable else hash_file(path, limit)
    return read


def test_an_unreadable_file_is_compared_by_its_stamp(tmp_path: Path, etc: Path) -> None:
    """/etc/shadow as the service user: no hash; a write (new ctime) counts, an untouched file does not."""
    shadow = etc / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    found = lambda: walk([str(etc)], (), 100)  # noqa: E731
    hasher = lambda: Hasher(2**20, 2**20, read=_unreadable(str(shadow)))  # noqa: E731
    base = compare({}, found(), [str(etc)], hasher(), 100).entries
    assert base[str(shadow)].digest is None and base[str(etc / "passwd")].digest is not None
    assert compare(base, found(), [str(etc)], hasher(), 100).changed == []
    shadow.write_text("root:$6$new:19000:0:99999:7:::\n"[:26])  # same size, new content
    assert compare(base, found(), [str(etc)], hasher(), 100).changed == [str(shadow)]


def test_a_file_larger_than_max_bytes_is_compared_by_its_stamp(tmp_path: Path, etc: Path) -> None:
    big = etc / "big.bin"
    big.write_bytes(b"a" * 10_000)
    fi = build(tmp_path / "state", [str(etc)], max_bytes=4096)
    values(fi)
    assert fi.last is not None and fi.last.entries[str(big)].digest is None
    assert values(fi) == (0, ())
    big.write_bytes(b"b" * 10_000)
    assert values(fi) == (1, (str(big),))


def test_a_directory_of_10000_files_stays_within_the_caps(tmp_path: Path) -> None:
    root = tmp_path / "many"
    files = watched_tree(root, 10_000, size=4096, per_dir=10_000)  # one flat directory
    fi = build(tmp_path / "state", [str(root)], max_bytes=8 * 2**20)  # the default max_files
    values(fi)
    assert fi.last is not None
    assert fi.last.hashed_bytes <= 8 * 2**20  # the first round hashes what the budget allows
    pending = sum(1 for e in fi.last.entries.values() if e.kind == "file" and e.digest is None)
    assert pending == 10_000 - (8 * 2**20) // 4096
    for _ in range(10):  # later rounds fill the hashes in, within the budget, without counting anything
        assert values(fi) == (0, ())
        assert fi.last.hashed_bytes <= 8 * 2**20
    assert all(e.digest is not None for e in fi.last.entries.values() if e.kind == "file")
    files[9_999].write_bytes(b"changed".ljust(4096, b"y"))
    assert values(fi) == (1, (str(files[9_999]),))
    assert fi.last.hashed_bytes == 4096  # only the file whose stamp moved is read again


def test_the_file_cap_stops_the_walk_and_bounds_the_entries(tmp_path: Path, caplog: Any) -> None:
    root = tmp_path / "many"
    files = watched_tree(root, 1_000, size=64)
    with caplog.at_level(logging.WARNING):
        fi = build(tmp_path / "state", [str(root)], max_files=300)
        values(fi)
        values(fi)
    assert caplog.text.count("only the first 300 are watched") == 1  # said once, not every round
    assert fi.last is not None and len(fi.last.entries) == 300
    watched = [f for f in files if str(f) in fi.last.entries]
    watched[-1].write_bytes(b"changed")
    (root / "d000" / "a-new-file-sorted-first").write_bytes(b"new")  # no room: not watched
    assert values(fi) == (1, (str(watched[-1]),))
    assert len(fi.last.entries) == 300


def test_changes_beyond_the_byte_budget_are_counted_in_later_rounds_each_once(tmp_path: Path) -> None:
    root = tmp_path / "d"
    files = watched_tree(root, 20, size=4096, per_dir=20)
    fi = build(tmp_path / "state", [str(root)], max_bytes=3 * 4096)
    for _ in range(8):
        values(fi)  # baseline, hashes filled in
    for path in files[:10]:
        data = bytearray(path.read_bytes())
        data[-1] = ord("z")
        path.write_bytes(bytes(data))  # same size: only the hash can tell
    seen: List[str] = []
    for _ in range(6):
        count, paths = values(fi)
        assert count == len(paths) <= 3
        seen.extend(paths)
    assert sorted(seen) == sorted(str(p) for p in files[:10])


def test_walk_lists_below_directories_without_following_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    got = walk([str(tmp_path / "a")], (), 100)
    assert sorted(got.found) == [str(tmp_path / "a"), str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "f"),
                                 str(tmp_path / "a" / "loop")]
    assert not got.truncated


def test_entry_round_trips_through_json() -> None:
    entry = Entry("file", 0o644, 0, 0, 12, "ab" * 32, (1, 2, 3))
    assert Entry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    with pytest.raises(ValueError):
        Entry.from_json(["file", "0644", 0, 0, 12, None, 1, 2, 3])


def test_compare_keeps_what_it_cannot_look_at(tmp_path: Path) -> None:
    entry = Entry("file", 0o644, 0, 0, 1, None, (1, 2, 3))
    gone = str(tmp_path / "gone")
    result = compare({gone: entry}, Walk({}), [str(tmp_path)], Hasher(100, 100), 100)
    assert result.changed == [gone] and gone not in result.entries


def test_the_sample_config_loads_with_its_metric_types() -> None:
    config = parse_config("thing_name: t\nsinks: [{type: textfile, path: /tmp/x.prom}]\n" + integrity.SAMPLE, "<s>")
    (collector,) = config.collectors
    assert integrity.SPEC.emits(collector.options) == {"files_changed": integrity.METRICS["files_changed"].type,
                                                       "files_changed_paths": integrity.METRICS["files_changed_paths"].type}
    assert integrity.SPEC.reads is not None and "/etc/shadow" in integrity.SPEC.reads(collector.options)


def test_metrics_can_be_renamed_for_a_second_collector(tmp_path: Path, etc: Path) -> None:
    fi = build(tmp_path / "state", [str(etc)], metrics={"files_changed": "app_files_changed"})
    assert [s.name for s in fi.collect()] == ["app_files_changed"]
