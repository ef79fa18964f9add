"""The collector protocol: a name, ``collect() -> list[Sample]``, optional ``close()``.

A collector is built once from its validated options (errors there are config
errors); ``collect()`` only reads and converts, raises :class:`CollectorError`
(or :class:`NoData`) and never logs its own failures: the scheduler does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import List, Protocol, Union, runtime_checkable

from agent.report.model import CustomValue, StandardValue


class SampleKind(str, enum.Enum):
    STANDARD = "standard"  # goes under `metrics`, name is a key of STANDARD_METRICS
    CUSTOM = "custom"  # goes under `custom_metrics`, name is a declared custom metric


@dataclass(frozen=True)
class Sample:
    name: str
    value: Union[StandardValue, CustomValue]
    kind: SampleKind = SampleKind.CUSTOM


@runtime_checkable
class Collector(Protocol):
    """What every collector, built-in or third-party, looks like."""

    name: str

    def collect(self) -> List[Sample]: ...


def close_collector(collector: Collector) -> None:
    """Call ``close()`` when the collector has one."""
    close = getattr(collector, "close", None)
    if callable(close):
        close()
