"""The ``file_integrity`` collector: which watched files changed since the previous sample.

Each watched file has an entry (kind, mode, owner, group, size, SHA-256 of its content, and the stamp
``(inode, mtime, ctime)`` it had when it was hashed) in ``state_dir/file-integrity.<name>.json``. A round
lists the watched paths (a directory: everything below it, without following symlinks), compares each
file's entry with the saved one and counts the files whose entry differs, that appeared or that disappeared
(the entries, the walk and the comparison: :mod:`agent.collectors.security.baseline`).

The cost of a round is bounded: at most ``max_files`` entries are kept (a walk that finds more stops there and
says so once), and at most ``max_bytes`` of content is hashed. A file is hashed only when it is new or its
stamp moved; the ctime cannot be set back by a program (short of changing the system clock), so a write that
keeps the mtime still moves the stamp. A file whose stamp moved but that the byte budget does not reach this
round keeps its old entry and is compared in a later round. A file that cannot be read (``/etc/shadow`` for
the service user) or is larger than ``max_bytes`` has no hash: it counts as changed when its mode, owner,
size or stamp changed.
"""

from __future__ import annotations

import os
import threading
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.metric_names import describes_of, emits_of, metric_names_option, selected
from agent.collectors.security.baseline import Entry, Hasher, Round, Walk, compare, under, walk
from agent.collectors.security.state import StateKeeper, state_path
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import Int, ListOf, PathStr, Size, Str

METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["file_integrity"]
STATE_VERSION = 1
DEFAULT_PATHS = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/sudoers", "/etc/ssh/sshd_config")
DEFAULT_MAX_FILES = 20_000
DEFAULT_MAX_BYTES = 16 * 2**20


class FileIntegrityCollector:
    def __init__(
        self,
        name: str,
        *,
        paths: Sequence[str],
        exclude: Sequence[str] = (),
        max_files: int = DEFAULT_MAX_FILES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        metrics: Mapping[str, str],
        keeper: StateKeeper,
        logger: Any,
    ) -> None:
        self.name = name
        self._roots = tuple(os.path.normpath(p) for p in paths)
        self._exclude = tuple(exclude)
        self._max_files = max_files
        self._max_bytes = max_bytes
        self._metrics = dict(metrics)
        self._keeper = keeper
        self._logger = logger
        self._lock = threading.Lock()
        self._said_truncated = False
        self.last: Optional[Round] = None
        self._entries: Optional[Dict[str, Entry]] = None
        self._known_roots: Tuple[str, ...] = ()
        saved = keeper.load()
        if saved is not None:
            try:
                self._entries = {str(p): Entry.from_json(e) for p, e in saved["entries"].items()}
                self._known_roots = tuple(str(r) for r in saved["roots"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                logger.warning("%s is damaged (%s); starting from a new baseline", keeper.path, exc)
                self._entries = None

    def collect(self) -> List[Sample]:
        with self._lock:
            return self._collect()

    def _collect(self) -> List[Sample]:
        seen = walk(self._roots, self._exclude, self._max_files)
        if seen.truncated and not self._said_truncated:
            self._logger.warning("More than %d files below %s; only the first %d are watched (max_files)",
                                 self._max_files, ", ".join(self._roots), self._max_files)
        self._said_truncated = seen.truncated
        if not seen.found and not self._entries and seen.unlisted:
            raise CollectorError(f"cannot look at any watched path: {', '.join(seen.unlisted)}")
        hasher = Hasher(self._max_bytes, self._max_bytes)
        old = self._entries or {}
        known = [r for r in self._roots if r in self._known_roots] if self._entries is not None else []
        new_roots = [r for r in self._roots if r not in known]
        if new_roots:  # a first start, or a path added to the config: its files are the baseline, not changes
            fresh = Walk({p: st for p, st in seen.found.items() if any(under(p, r) for r in new_roots)})
            baseline = compare({}, fresh, new_roots, hasher, self._max_files).entries
        else:
            baseline = {}
        kept = Walk({p: st for p, st in seen.found.items() if p not in baseline}, seen.truncated,
                    seen.unlisted) if baseline else seen
        old_kept: Mapping[str, Entry] = old
        if self._exclude or set(known) != set(self._known_roots):  # entries the config no longer watches
            old_kept = {p: e for p, e in old.items() if any(under(p, r) for r in known)
                        and not any(fnmatchcase(p, pattern) for pattern in self._exclude)}
        result = compare(old_kept, kept, known, hasher, self._max_files - len(baseline))
        result.entries.update(baseline)
        self.last = result
        if result.entries != self._entries or tuple(self._roots) != self._known_roots:
            self._entries = result.entries
            self._known_roots = self._roots
            self._keeper.save({"roots": list(self._roots),
                               "entries": {p: e.to_json() for p, e in sorted(result.entries.items())}})
        values: Dict[str, Any] = {"files_changed": len(result.changed),
                                  "files_changed_paths": tuple(result.changed)}
        return [Sample(name, values[builtin]) for builtin, name in self._metrics.items()]


def _reads(options: Mapping[str, Any]) -> Tuple[str, ...]:
    return tuple(options["paths"])


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> FileIntegrityCollector:
    keeper = StateKeeper(state_path(ctx.state_dir, "file-integrity", ctx.name), STATE_VERSION, ctx.logger,
                         ctx.persist_state)
    return FileIntegrityCollector(
        ctx.name, paths=options["paths"], exclude=options["exclude"], max_files=options["max_files"],
        max_bytes=options["max_bytes"], metrics=selected(options, METRICS), keeper=keeper, logger=ctx.logger,
    )


DOC = """\
Counts the watched files that changed since the previous sample (`files_changed`) and names them
(`files_changed_paths`). A file's entry is its content (SHA-256), mode, owner, group and size; a file that
appears or disappears counts too, and so does a change of a directory's mode or owner. The entries are kept in
`state_dir/file-integrity.<name>.json`, so a change made while the agent was stopped is counted in the first
report after it starts again. The first start records the baseline and reports 0; so does a path newly added
to `paths` (its files join the baseline).

`paths` may name directories: everything below one is watched, symlinks are not followed (a symlink's entry is
its target's name). Cost per round is bounded: at most `max_files` entries (a walk that finds more stops
there, and says so once in the log) and at most `max_bytes` of content hashed. Only a new file or one whose
inode, mtime or ctime moved is read again; a program cannot set a ctime back, so an edit that restores the
mtime is still seen. A file the byte budget does not reach is compared in a later round (counted then).
A file the agent cannot read (`/etc/shadow` and `/etc/sudoers` are readable only by root; the service runs as
its own user) or one larger than `max_bytes` is compared without its content: it counts as changed when its
mode, owner, size, inode, mtime or ctime changed. `defender-agent check` names the paths the current user
cannot read (run it as the service user: `sudo -u defender-agent defender-agent check`). A path the service
cannot even look at (`/root/.ssh`: `/root` is mode 0700, and the shipped unit hides `/home` and `/root` with
`ProtectHome=yes`) is not watched at all: `check` names it, and nothing is counted for it.

Paths are sent as they are; a path with characters outside the service's set (A-Z a-z 0-9 : _ - / .) needs
`allow_any_characters: true` on `files_changed_paths`.

A behavior states what is normal ([BEHAVIORS.md](BEHAVIORS.md)): "no watched file changed" is
`less-than-equals 0`, so one changed file raises the alarm, and the next round without a change clears it.
`files_changed_paths` arrives with the same report, as the audit trail.

```yaml
behaviors:
  - name: system-files-unchanged
    metric: files_changed
    criteria: {comparisonOperator: less-than-equals, value: {number: 0}}
```
"""

SAMPLE = """\
collectors:
  - type: file_integrity
    paths: [/etc/passwd, /etc/group, /etc/shadow, /etc/sudoers, /etc/sudoers.d, /etc/ssh/sshd_config]
custom_metrics:
  files_changed: number
  files_changed_paths: string-list
"""


SPEC = CollectorSpec(
    type="file_integrity",
    doc=DOC,
    sample=SAMPLE,
    summary="Watched files changed, added or removed since the previous sample (content hash, mode, owner, "
    "size against a baseline kept in state_dir): files_changed (number), files_changed_paths (string-list).",
    options={
        "paths": ListOf(
            doc="Files and directories to watch (absolute paths; a directory: everything below it).",
            item=PathStr(pattern=r"/.*", pattern_hint="must be an absolute path"),
            default=list(DEFAULT_PATHS),
        ),
        "exclude": ListOf(
            doc="Paths left out, by glob on the whole path (e.g. /etc/*.cache).",
            item=Str(),
            default=[],
        ),
        "max_files": Int(doc="Most files and directories watched; a walk that finds more stops there.",
                         default=DEFAULT_MAX_FILES, min=1, max=1_000_000),
        "max_bytes": Size(doc="Most bytes of content hashed per round; a larger file is compared by its "
                          "mode, owner, size and times only.", default=DEFAULT_MAX_BYTES, min=4096),
        "metrics": metric_names_option(METRICS),
    },
    build=_build,
    emits=partial(emits_of, metrics=METRICS),
    describes=partial(describes_of, metrics=METRICS),
    reads=_reads,
    example={"paths": list(DEFAULT_PATHS)},
    example_enabled=False,
)
