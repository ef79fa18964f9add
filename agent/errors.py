"""The exception tree of defender-agent: every error the agent raises on purpose and lets travel.

Library code raises these; only :mod:`agent.cli` turns them into messages and exit codes.

    AgentError
    ├── ConfigError          invalid configuration, unsafe key or config files included (exit 78, EX_CONFIG)
    ├── PluginError          a collector plugin cannot be loaded or does not fit the contract (becomes a ConfigError)
    ├── ReportError          a report document or value breaks the Device Defender contract
    ├── CollectorError       a collector failed to sample; only its own metrics are lost
    │   └── NoData           nothing to report this time (e.g. no temperature sensor); not a failure
    ├── StateDirError        `run` cannot open its outbox in state_dir at start (exit 74, EX_IOERR)
    ├── ControlPlaneError    a control-plane call (bootstrap, values) failed
    └── MissingExtra         a command needs an optional dependency the base install leaves out

Not in the tree, on purpose:
- storage failures while running (a full or failing state_dir) surface as the standard library
  raises them, ``sqlite3.OperationalError`` and ``OSError``; the scheduler's loop catches exactly
  those (``agent.outbox.store.STORAGE_ERRORS``), logs once per burst and retries, and a damaged outbox
  is moved aside where it is opened (``agent.outbox.store``); only at start, where retrying is
  systemd's job, they become a :class:`StateDirError`;
- errors local to one parser, caught next to where they are raised: ``schema.Invalid``,
  ``report.document.DecodeError`` and ``collectors.parse.ValueParseError`` (both ``ValueError``),
  ``collectors.standard.counters.CountersParseError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

EX_CONFIG = 78  # sysexits.h: configuration error (systemd: RestartPreventExitStatus=78)
EX_IOERR = 74  # sysexits.h: an input/output error (a state_dir the service cannot use)
EX_SOFTWARE = 70  # sysexits.h: an internal software error


class AgentError(Exception):
    """Base class of every error the agent raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration file.

    ``path`` is the YAML path (``collectors[2].exec.timeout``); ``line`` is the
    1-based line in ``file`` when known.
    """

    file: str
    path: str
    message: str
    line: Optional[int] = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = self.path or "(top level)"
        return f"{where}: {path}: {self.message}"


class ConfigError(AgentError):
    """The configuration is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str, path: str, message: str, line: Optional[int] = None) -> ConfigError:
        return cls([ConfigProblem(file, path, message, line)])


@dataclass(frozen=True)
class Violation:
    """One broken rule in a report: where (JSON path), what value, which rule."""

    path: str
    rule: str
    value: object = None
    metric: Optional[str] = None

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        prefix = f"metric {self.metric!r}: " if self.metric else ""
        return f"{prefix}{self.path}: {self.rule} (got {shown})"


class ReportError(AgentError):
    """A report or a value in it breaks the Device Defender contract."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


class CollectorError(AgentError):
    """A collector could not produce its samples. The message says why, in one line."""


class NoData(CollectorError):
    """The collector has nothing to report this cycle; this is not a failure."""


class PluginError(AgentError):
    """A plugin could not be loaded or does not fit the protocol; the message names it."""


class StateDirError(AgentError):
    """``run`` cannot open its outbox in state_dir at start (disk full, I/O error, permissions)."""


class ControlPlaneError(AgentError):
    """A call to the AWS IoT control plane failed; the message is meant for a person."""


class DetectUnavailable(ControlPlaneError):
    """The account cannot use Device Defender Detect (closed to new customers on 2026-08-31): every Detect
    API answers UnauthorizedException. One line says what that means and what works without Detect."""


class MissingExtra(AgentError):
    """A command needs a library that the base install leaves out (e.g. boto3 for ``bootstrap``)."""
