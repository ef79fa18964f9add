"""The network delta engine: counters -> deltas since the previous sample, persisted across restarts.

State is a JSON file in ``state_dir`` written atomically (temporary file, rename;
no fsync, see ``StateFile._write``). It holds the boot id and the counters of *every* interface, so the first
sample after an agent restart is a true delta against the last sample before it.

When a true delta cannot be known, the interval is skipped (``None`` plus a
reason) and the new counters become the baseline:
- the boot id changed (a reboot);
- an included interface disappeared, or was re-created (new ifindex);
- a counter went backwards (a reset, or a 32-bit counter that wrapped);
- the previous sample is much older than one sampling interval (``max_span``: the agent was
  stopped, or a round was missed): Detect sums deltas per 300-3600 s window, so a delta that
  covers a long stop would land in one window as a false spike. What is left out is said.
An interface that is new in the same boot was created after the previous
sample, so its counters are its traffic in this interval and are counted.
Without any state (first run, state lost) the baseline is the agent's start.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from agent.collectors.standard.counters import IfCounters
from agent.durable import replace_file
from agent.report.model import NetworkStats

STATE_VERSION = 1
_FIELDS = ("bytes_in", "bytes_out", "packets_in", "packets_out")
_U32 = 2**32


@dataclass(frozen=True)
class Snapshot:
    boot_id: Optional[str]
    interfaces: Mapping[str, IfCounters]
    taken_at: Optional[float] = None  # wall-clock seconds; None when unknown


@dataclass(frozen=True)
class Delta:
    """``stats`` is the delta, or ``None`` with ``skipped`` saying why."""

    stats: Optional[NetworkStats]
    skipped: Optional[str] = None


@dataclass(frozen=True)
class InterfaceFilter:
    include: Tuple[str, ...] = ("*",)
    exclude: Tuple[str, ...] = ("lo",)

    def __call__(self, name: str) -> bool:
        return any(fnmatchcase(name, p) for p in self.include) and not any(
            fnmatchcase(name, p) for p in self.exclude
        )


def compute_delta(prev: Snapshot, cur: Snapshot, wanted: InterfaceFilter) -> Delta:
    """The summed delta of the wanted interfaces between two snapshots (pure)."""
    if prev.boot_id and cur.boot_id and prev.boot_id != cur.boot_id:
        return Delta(None, "the system rebooted since the previous sample")
    total = NetworkStats(0, 0, 0, 0)
    for name in sorted(set(prev.interfaces) | set(cur.interfaces)):
        if not wanted(name):
            continue
        old, new = prev.interfaces.get(name), cur.interfaces.get(name)
        if new is None:
            return Delta(None, f"interface {name!r} disappeared since the previous sample")
        if old is None:
            total = total + NetworkStats(new.bytes_in, new.bytes_out, new.packets_in, new.packets_out)
            continue
        if old.ifindex is not None and new.ifindex is not None and old.ifindex != new.ifindex:
            return Delta(None, f"interface {name!r} was re-created (ifindex {old.ifindex} -> {new.ifindex})")
        parts = []
        for field in _FIELDS:
            before, after = getattr(old, field), getattr(new, field)
            if after < before:
                kind = "a counter reset or a 32-bit wrap" if before < _U32 else "a counter reset"
                return Delta(None, f"{name} {field} went backwards ({before} -> {after}): {kind}")
            parts.append(after - before)
        total = total + NetworkStats(*parts)
    return Delta(total)


class StateFile:
    """The persisted snapshot. ``load()`` returns (snapshot or None, problem or None)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tuple[Optional[Snapshot], Optional[str]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"cannot read {self.path}: {exc.strerror}"
        except UnicodeDecodeError as exc:  # random bytes: damaged, not a reason to refuse to start
            return None, f"{self.path} is not a valid counter state (not UTF-8: {exc.reason} at byte {exc.start})"
        try:
            data = json.loads(raw)
            if data.get("version") != STATE_VERSION:
                return None, f"{self.path} has unknown version {data.get('version')!r}"
            interfaces = {
                str(name): IfCounters(
                    _nonneg(c["bytes_in"]),
                    _nonneg(c["bytes_out"]),
                    _nonneg(c["packets_in"]),
                    _nonneg(c["packets_out"]),
                    _ifindex(c.get("ifindex")),
                )
                for name, c in data["interfaces"].items()
            }
            boot_id = data.get("boot_id")
            taken = data.get("time")
            taken_at = float(taken) if isinstance(taken, (int, float)) and not isinstance(taken, bool) else None
            return Snapshot(str(boot_id) if boot_id else None, interfaces, taken_at), None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return None, f"{self.path} is not a valid counter state ({type(exc).__name__}: {exc})"

    def save(self, snap: Snapshot, now: float) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        payload = _state_json(snap, now).encode("utf-8")
        try:
            self._write(payload)
        except (FileNotFoundError, NotADirectoryError):  # no state directory (yet): create it, as before
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._write(payload)

    def _write(self, payload: bytes) -> None:
        """Temporary file, rename over the state, and no fsync.

        The rename is atomic against a crash or kill -9 of the agent (the kernel keeps the data), which is
        the only case where the saved counters are used. After a power loss the machine reboots, the boot id
        changes and the interval is skipped whatever the file holds; an empty or half-written file is then
        reported as damaged and the agent's start becomes the baseline. An fsync would buy nothing and cost
        two per report (file and directory).
        """
        replace_file(self.path, payload, 0o640, sync=False)


_SAVED_FIELDS = tuple(f.name for f in fields(IfCounters))


def _state_json(snap: Snapshot, now: float) -> str:
    """The state file's text (the same as ``json.dump(..., indent=1)`` of the dataclasses' fields)."""
    data: Dict[str, Any] = {
        "version": STATE_VERSION,
        "boot_id": snap.boot_id,
        "time": now,
        "interfaces": {
            name: {f: getattr(c, f) for f in _SAVED_FIELDS} for name, c in sorted(snap.interfaces.items())
        },
    }
    return json.dumps(data, indent=1)


def _ifindex(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _nonneg(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"counter {value!r} is not a whole number >= 0")
    return value


class DeltaEngine:
    """Turns successive snapshots into deltas; the previous snapshot survives restarts in ``state``.

    ``baseline`` (taken when the agent starts) is used only when no usable state exists.
    ``persist=False`` reads the state but never writes it (for one-off runs beside a daemon).
    """

    def __init__(
        self,
        state: StateFile,
        wanted: InterfaceFilter,
        baseline: Snapshot,
        persist: bool = True,
        max_span: Optional[float] = None,
    ) -> None:
        self._state = state
        self._wanted = wanted
        self._persist = persist
        self._max_span = max_span
        self._lock = threading.Lock()
        loaded, self.load_problem = state.load()
        self._prev: Snapshot = loaded if loaded is not None else baseline
        self.from_state = loaded is not None

    @property
    def state_path(self) -> Path:
        return self._state.path

    def advance(self, cur: Snapshot, now: float) -> Tuple[Delta, Optional[str]]:
        """Delta against the previous snapshot, then ``cur`` becomes the previous one.

        Returns the delta and a problem saving the state (None when saved or not persisting).
        """
        cur = Snapshot(cur.boot_id, cur.interfaces, now)
        with self._lock:
            delta = limit_span(compute_delta(self._prev, cur, self._wanted), self._prev.taken_at, now, self._max_span)
            self._prev = cur
            if not self._persist:
                return delta, None
            try:
                self._state.save(cur, now)
            except OSError as exc:
                return delta, f"cannot save counter state to {self._state.path}: {exc.strerror or exc}"
            return delta, None


def limit_span(delta: Delta, since: Optional[float], now: float, max_span: Optional[float]) -> Delta:
    """``delta``, or a skip saying what it would have carried when it covers more than ``max_span`` seconds (pure)."""
    if delta.stats is None or max_span is None or since is None:
        return delta
    span = now - since
    if 0 <= span <= max_span:
        return delta
    s = delta.stats
    why = (f"the clock went back {-span:.0f} s since the previous sample" if span < 0 else
           f"the previous sample is {span:.0f} s old, more than the {max_span:.0f} s one delta may cover "
           f"(the agent was stopped, or rounds were missed)")
    return Delta(None, f"{why}; left out {s.bytes_in} bytes in, {s.bytes_out} bytes out, {s.packets_in} packets in, "
                       f"{s.packets_out} packets out, so that no report carries them as one interval's traffic")


def filter_from(include: Sequence[str], exclude: Sequence[str]) -> InterfaceFilter:
    return InterfaceFilter(tuple(include) or ("*",), tuple(exclude))
