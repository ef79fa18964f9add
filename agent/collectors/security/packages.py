"""The ``packages`` collector: what dpkg has installed, and what was installed, changed or removed since the
previous sample.

The source is dpkg's own database: ``<admin_dir>/status`` plus the records in ``<admin_dir>/updates/`` that
dpkg has not folded into it yet (what ``dpkg-query`` reads too). The installed set is kept in
``state_dir/packages.<name>.json``, so a package installed while the agent was stopped is reported in the
first round after it starts again.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.metric_names import describes_of, emits_of, metric_names_option, selected
from agent.collectors.security.state import StateKeeper, state_path
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import PathStr

METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["packages"]
STATE_VERSION = 1
NOT_PRESENT = frozenset({"not-installed", "config-files"})  # dpkg's package states with no files of the package
_WANTED = ("Package", "Status", "Version", "Architecture", "Multi-Arch")


def parse_records(text: str) -> Iterable[Dict[str, str]]:
    """The fields this collector needs of each record of a dpkg database file (deb822: records separated by
    blank lines, continuation lines start with a space), one dict per record (pure)."""
    record: Dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip(" \t\r"):  # deb822: a paragraph ends at a line of nothing but spaces and tabs
            if record:
                yield record
                record = {}
            continue
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep and key in _WANTED:
            record[key] = value.strip()
    if record:
        yield record


def package_key(record: Mapping[str, str], native: Optional[str] = None) -> Optional[str]:
    """The package's name as ``dpkg -l`` shows it (``${binary:Package}``): ``name``, or ``name:arch`` for a
    Multi-Arch: same package and for one of a foreign architecture (neither ``native`` nor ``all``)."""
    name = record.get("Package")
    if not name:
        return None
    arch = record.get("Architecture", "")
    if arch and arch != "all" and (record.get("Multi-Arch") == "same" or (native and arch != native)):
        return f"{name}:{arch}"
    return name


def is_present(record: Mapping[str, str]) -> bool:
    """The third word of ``Status:`` (want, error flag, state) is a state in which the package's files are there."""
    words = record.get("Status", "").split()
    return len(words) == 3 and words[2] not in NOT_PRESENT


def installed(texts: Iterable[str]) -> Dict[str, str]:
    """Package name -> version of the present packages, the later texts overriding the earlier (pure).

    The native architecture is dpkg's own (the ``dpkg`` package is always native); without a ``dpkg`` record
    only Multi-Arch: same packages carry their architecture in the name.
    """
    records: Dict[Tuple[str, str], Mapping[str, str]] = {}
    for text in texts:
        for record in parse_records(text):
            name = record.get("Package")
            if name:
                records[(name, record.get("Architecture", ""))] = record
    native = next((arch for (name, arch), r in records.items() if name == "dpkg" and is_present(r)), None)
    out: Dict[str, str] = {}
    for found in records.values():
        key = package_key(found, native)
        if key is not None and is_present(found):
            out[key] = found.get("Version", "")
    return out


def changes(old: Mapping[str, str], new: Mapping[str, str]) -> List[str]:
    """``name=version`` for each package installed or whose version changed, ``-name=version`` (the version that
    was there) for each one removed, sorted by name (pure)."""
    out: List[Tuple[str, str]] = []
    for key in set(old) | set(new):
        if key not in new:
            out.append((key, f"-{key}={old[key]}"))
        elif old.get(key) != new[key]:
            out.append((key, f"{key}={new[key]}"))
    return [entry for _, entry in sorted(out)]


class DpkgDatabase:
    """Reads ``status`` and ``updates/``; ``stamp()`` is cheap and moves whenever either may have changed."""

    def __init__(self, admin_dir: str) -> None:
        self.admin_dir = admin_dir.rstrip("/") or "/"
        self.status = os.path.join(self.admin_dir, "status")
        self.updates = os.path.join(self.admin_dir, "updates")

    def stamp(self) -> Tuple[int, ...]:
        try:
            st = os.stat(self.status)
        except FileNotFoundError:
            raise CollectorError(f"{self.status}: no such file (is this a dpkg system?)") from None
        except OSError as exc:
            raise CollectorError(f"cannot stat {self.status}: {exc.strerror or exc}") from None
        try:
            up = os.stat(self.updates)
            up_stamp: Tuple[int, ...] = (up.st_ino, up.st_mtime_ns, up.st_ctime_ns)
        except OSError:
            up_stamp = ()
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, *up_stamp)

    def read(self) -> Dict[str, str]:
        texts = [self._text(self.status)]
        try:
            journal = sorted((n for n in os.listdir(self.updates) if n.isdigit()), key=int)
        except OSError:
            journal = []
        for name in journal:
            try:
                texts.append(self._text(os.path.join(self.updates, name)))
            except CollectorError:
                continue  # folded into status and removed by dpkg meanwhile
        return installed(texts)

    @staticmethod
    def _text(path: str) -> str:
        try:
            with open(path, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except OSError as exc:
            raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from None


class PackagesCollector:
    def __init__(self, name: str, *, database: DpkgDatabase, metrics: Mapping[str, str], keeper: StateKeeper,
                 logger: Any) -> None:
        self.name = name
        self._db = database
        self._metrics = dict(metrics)
        self._keeper = keeper
        self._logger = logger
        self._lock = threading.Lock()
        self._stamp: Optional[Tuple[int, ...]] = None
        self._known: Optional[Dict[str, str]] = None
        saved = keeper.load()
        if saved is not None:
            packages = saved.get("packages")
            if isinstance(packages, dict) and all(isinstance(v, str) for v in packages.values()):
                self._known = {str(k): v for k, v in packages.items()}
            else:
                logger.warning("%s is damaged (no packages mapping); starting from a new baseline", keeper.path)
        self.parsed = 0  # rounds that read the database (the others found its stamp unchanged)

    def collect(self) -> List[Sample]:
        with self._lock:
            stamp = self._db.stamp()
            if stamp == self._stamp and self._known is not None:
                now, changed = self._known, []
            else:
                now = self._db.read()
                self.parsed += 1
                changed = changes(self._known, now) if self._known is not None else []
                if now != self._known:
                    self._keeper.save({"packages": now})
                self._known, self._stamp = now, stamp
        values: Dict[str, Any] = {"packages_installed": len(now), "packages_changed": tuple(changed)}
        return [Sample(name, values[builtin]) for builtin, name in self._metrics.items()]


def _reads(options: Mapping[str, Any]) -> Tuple[str, ...]:
    return (DpkgDatabase(options["admin_dir"]).status,)


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> PackagesCollector:
    keeper = StateKeeper(state_path(ctx.state_dir, "packages", ctx.name), STATE_VERSION, ctx.logger,
                         ctx.persist_state)
    return PackagesCollector(ctx.name, database=DpkgDatabase(options["admin_dir"]),
                             metrics=selected(options, METRICS), keeper=keeper, logger=ctx.logger)


DOC = """\
`packages_installed` is the number of packages installed now; `packages_changed` lists what changed since
the previous sample, sorted by name: `name=version` for a package installed, upgraded or downgraded (the new
version), `-name=version` for one removed (the version that was there). A name is as `dpkg -l` shows it:
`libc6:arm64` for a Multi-Arch: same package or one of a foreign architecture, `openssh-server` otherwise.
A package counts as installed in every dpkg state in which its files are on disk (`installed`, `unpacked`,
`half-configured`, `half-installed`, `triggers-*`), not in `config-files` (removed, its conffiles kept) nor
`not-installed`.

The source is dpkg's own database, `/var/lib/dpkg/status` plus the records in `/var/lib/dpkg/updates/` that
dpkg has not folded into it yet: no program is run, and the file is read again only when it or the
`updates/` directory changed (a round without package activity costs two `stat` calls). The installed set is
kept in `state_dir/packages.<name>.json`: a package installed while the agent was stopped is reported in the
first round after it starts; the first start records the baseline and reports no change.

Debian versions use `+` and `~` and the entries an `=`, all outside the service's character set, so declare
`packages_changed` with `allow_any_characters: true` (as below). A round with more changes than
`report.max_list_items` (a release upgrade) sends `packages_changed` as "left out" rather than a cut list
(see OPERATIONS.md); `packages_installed` still goes.

Use `packages_changed` as an audit trail (it arrives with each report, and with the violation of a
behavior on `packages_installed`); Detect judges a number, so alarm on the count moving. A behavior states
what is normal ([BEHAVIORS.md](BEHAVIORS.md)), so "alarm above 1,600 packages" is:

```yaml
behaviors:
  - name: package-count-normal
    metric: packages_installed
    criteria: {comparisonOperator: less-than-equals, value: {number: 1600}}
```
"""

SAMPLE = """\
collectors:
  - type: packages
custom_metrics:
  packages_installed: number
  packages_changed: {type: string-list, allow_any_characters: true}
"""


SPEC = CollectorSpec(
    type="packages",
    doc=DOC,
    sample=SAMPLE,
    summary="Installed Debian packages from dpkg's database: packages_installed (number) and packages_changed "
    "(string-list: name=version installed or changed, -name=version removed, since the previous sample).",
    options={
        "admin_dir": PathStr(doc="dpkg's database directory (its `--admindir`).", default="/var/lib/dpkg",
                             pattern=r"/.*", pattern_hint="must be an absolute path"),
        "metrics": metric_names_option(METRICS),
    },
    build=_build,
    emits=partial(emits_of, metrics=METRICS),
    describes=partial(describes_of, metrics=METRICS),
    reads=_reads,
    example={},
    example_enabled=False,
)
