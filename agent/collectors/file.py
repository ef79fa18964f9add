"""The ``file`` collector: read one custom metric value from a file (a sysfs sensor, a textfile).

Same parsing rules as ``exec``. The file must be a regular file no larger than
``max_size``; with ``max_age`` set, a file last modified longer ago is an error
(leave it unset for sysfs, whose mtimes do not move).
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any, Callable, List, Mapping, Optional

from agent.catalog import MetricType
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.exec import metric_options, single_metric_emits
from agent.collectors.parse import ValueParseError, parse_value
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import REQUIRED, Duration, Num, PathStr, Size, format_duration


class FileCollector:
    def __init__(
        self,
        name: str,
        *,
        path: str,
        metric: str,
        mtype: MetricType,
        fmt: str = "auto",
        max_age: Optional[float] = None,
        max_size: int = 65536,
        scale: Optional[float] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._path = path
        self._metric = metric
        self._type = mtype
        self._format = fmt
        self._max_age = max_age
        self._max_size = max_size
        self._scale = scale
        self._clock = clock

    def collect(self) -> List[Sample]:
        path = self._path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise CollectorError(f"{path}: no such file") from None
        except OSError as exc:
            raise CollectorError(f"{path}: cannot open it ({exc.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CollectorError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            if self._max_age is not None:
                age = self._clock() - st.st_mtime
                if age > self._max_age:
                    raise CollectorError(
                        f"{path} is stale: last written {format_duration(max(round(age), 0))} ago "
                        f"(max_age {format_duration(self._max_age)})"
                    )
            try:
                data = handle.read(self._max_size + 1)
            except OSError as exc:
                raise CollectorError(f"{path}: cannot read it ({exc.strerror})") from None
        if len(data) > self._max_size:
            raise CollectorError(f"{path} is larger than max_size ({self._max_size} bytes)")
        try:
            value = parse_value(data.decode("utf-8"), self._type, self._format, self._scale)
        except UnicodeDecodeError:
            raise CollectorError(f"{path} is not UTF-8 text") from None
        except ValueParseError as exc:
            raise CollectorError(f"{path} does not hold a {self._type.value}: {exc}") from None
        return [Sample(self._metric, value)]


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> FileCollector:
    mtype = MetricType(options["metric_type"])
    if options["scale"] is not None and mtype not in (MetricType.NUMBER, MetricType.NUMBER_LIST):
        raise CollectorError("scale: applies to number and number-list metrics only")
    return FileCollector(
        ctx.name,
        path=options["path"],
        metric=options["metric"],
        mtype=mtype,
        fmt=options["format"],
        max_age=options["max_age"],
        max_size=options["max_size"],
        scale=options["scale"],
    )


DOC = """\
Reads the formats `exec` parses (one value per line, or JSON) from a regular file: a sysfs value, or a file
another program rewrites. `scale: 0.001` turns a sysfs millidegree reading into degrees. With `max_age`, a
file not modified for longer is an error rather than an old value (leave it unset for sysfs, whose
modification times do not move). A file larger than `max_size`, not UTF-8, or not holding a `metric_type`
is an error naming the path.
"""

SAMPLE = """\
collectors:
  - type: file
    name: soc_temp
    path: /sys/class/thermal/thermal_zone0/temp
    metric: soc_temperature
    metric_type: number
    scale: 0.001            # millidegrees -> degrees
  - type: file
    name: modem_signal
    path: /run/modem/signal-dbm    # rewritten every minute by the modem's hook
    metric: modem_signal_dbm
    metric_type: number
    max_age: 10m                   # an old reading is an error, not a value
custom_metrics:
  soc_temperature: number
  modem_signal_dbm: number
"""


SPEC = CollectorSpec(
    type="file",
    doc=DOC,
    sample=SAMPLE,
    summary="Read one custom metric from a file (sysfs value, textfile written by another program).",
    options={
        "path": PathStr(
            doc="Absolute path of the file.",
            default=REQUIRED,
            pattern=r"/.*",
            pattern_hint="must be an absolute path",
            example="/sys/class/thermal/thermal_zone0/temp",
        ),
        **metric_options("file"),
        "scale": Num(doc="Multiply numbers by this (0.001 turns millidegrees into degrees)."),
        "max_age": Duration(
            doc="Error when the file was last modified longer ago; unset: never stale.", min=0.001
        ),
        "max_size": Size(doc="Largest file accepted.", default=65536, min=1, max=16 * 2**20),
    },
    build=_build,
    emits=single_metric_emits,
    example_enabled=False,
    example={
        "path": "/sys/class/thermal/thermal_zone0/temp",
        "metric": "soc_temperature",
        "metric_type": "number",
        "scale": 0.001,
    },
)
