"""Everything a third-party collector may use. Anything not listed here is internal and may change.

A plugin is a distribution with an entry point in the group
``defender_agent.collectors`` whose name is the collector type and whose object is a
:class:`CollectorSpec` (or a function returning one). See docs/PLUGINS.md.
"""

from __future__ import annotations

from agent.catalog import MetricType
from agent.collectors.contract import BuildContext, Collector, CollectorSpec, Emits
from agent.collectors.parse import ValueParseError, parse_value
from agent.collectors.registry import ENTRY_POINT_GROUP
from agent.errors import CollectorError, NoData
from agent.report.model import CustomValue, Number, Sample, SampleKind
from agent.schema import REQUIRED, Bool, Duration, Enum, Int, ListOf, MapOf, Num, PathStr, Size, Str

__all__ = [
    "ENTRY_POINT_GROUP",
    "REQUIRED",
    "Bool",
    "BuildContext",
    "Collector",
    "CollectorError",
    "CollectorSpec",
    "CustomValue",
    "Duration",
    "Emits",
    "Enum",
    "Int",
    "ListOf",
    "MapOf",
    "MetricType",
    "NoData",
    "Num",
    "Number",
    "PathStr",
    "Sample",
    "SampleKind",
    "Size",
    "Str",
    "ValueParseError",
    "parse_value",
]
