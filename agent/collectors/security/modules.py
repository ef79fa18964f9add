"""The ``kernel_modules`` collector: the names of the kernel modules loaded now, from ``/proc/modules``."""

from __future__ import annotations

import os
from functools import partial
from typing import Any, List, Mapping, Tuple

from agent.catalog import BUILTIN_METRICS, BuiltinMetric
from agent.collectors.contract import BuildContext, CollectorSpec
from agent.collectors.metric_names import describes_of, emits_of, metric_names_option, selected
from agent.errors import CollectorError
from agent.report.model import Sample
from agent.schema import PathStr

METRICS: Mapping[str, BuiltinMetric] = BUILTIN_METRICS["kernel_modules"]


def parse_modules(text: str) -> Tuple[str, ...]:
    """The module names of a ``/proc/modules`` text (the first field of each line), sorted and unique (pure)."""
    return tuple(sorted({line.split(None, 1)[0] for line in text.split("\n") if line.strip()}))


def read_modules(proc_root: str) -> Tuple[str, ...]:
    """The loaded modules. A kernel built without loadable modules has no ``/proc/modules``: none are loaded."""
    path = os.path.join(proc_root, "modules")
    try:
        with open(path, "rb") as handle:
            return parse_modules(handle.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        if os.path.isdir(os.path.join(proc_root, "self")):
            return ()
        raise CollectorError(f"{path}: no such file, and {proc_root} is not a mounted procfs") from None
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from None


class KernelModulesCollector:
    def __init__(self, name: str, *, proc_root: str, metrics: Mapping[str, str]) -> None:
        self.name = name
        self._proc_root = proc_root
        self._metrics = dict(metrics)

    def collect(self) -> List[Sample]:
        return [Sample(name, read_modules(self._proc_root)) for name in self._metrics.values()]


def _reads(options: Mapping[str, Any]) -> Tuple[str, ...]:
    path = os.path.join(options["proc_root"], "modules")
    if not os.path.exists(path) and os.path.isdir(os.path.join(options["proc_root"], "self")):
        return ()  # a kernel without loadable modules: nothing to read, and nothing can be loaded
    return (path,)


def _build(ctx: BuildContext, options: Mapping[str, Any]) -> KernelModulesCollector:
    return KernelModulesCollector(ctx.name, proc_root=options["proc_root"], metrics=selected(options, METRICS))


DOC = """\
The names of the kernel modules loaded when the sample is taken (the first column of `/proc/modules`, as
`lsmod` shows them), sorted. A kernel built without loadable module support has no `/proc/modules`: the list
is empty. It is a snapshot: a module loaded and unloaded between two samples is not seen. `/proc/modules` is
readable by every user, so the service needs nothing more.

Detect's `in-set` lists what is allowed, so one module outside the set is a violation ([BEHAVIORS.md](BEHAVIORS.md)).
Take the list from a healthy gateway (`defender-agent once` or `cut -d' ' -f1 /proc/modules | sort`) and
paste it:

```yaml
behaviors:
  - name: only-known-kernel-modules
    metric: kernel_modules
    criteria: {comparisonOperator: in-set, value: {strings: [brcmfmac, brcmutil, cfg80211, ipv6, snd_bcm2835, vc4]}}
```
"""

SAMPLE = """\
collectors:
  - type: kernel_modules
custom_metrics:
  kernel_modules: string-list
"""


SPEC = CollectorSpec(
    type="kernel_modules",
    doc=DOC,
    sample=SAMPLE,
    summary="Names of the loaded kernel modules (/proc/modules): kernel_modules (string-list).",
    options={
        "proc_root": PathStr(doc="Where procfs is mounted (for containers).", default="/proc"),
        "metrics": metric_names_option(METRICS),
    },
    build=_build,
    emits=partial(emits_of, metrics=METRICS),
    describes=partial(describes_of, metrics=METRICS),
    reads=_reads,
    example={},
    example_enabled=False,
)
