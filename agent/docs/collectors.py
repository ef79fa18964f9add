"""docs/COLLECTORS.md: one section per built-in collector type, from its spec (options, doc, sample)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from agent.catalog import BUILTIN_METRICS, STANDARD_CLOUD_NAMES, STANDARD_METRICS
from agent.collectors.contract import CollectorSpec
from agent.collectors.registry import ENTRY_POINT_GROUP
from agent.config.load import parse_config
from agent.config.model import Config
from agent.docs.markdown import GENERATED, Table, cell, docs_links, short_doc

# What every collector example is loaded with (tests/docs/test_generated.py loads each through load_config).
EXAMPLE_BASE = """\
thing_name: gateway-01
mqtt:
  endpoint: xxxxxxxxxxxxxx-ats.iot.eu-west-1.amazonaws.com
  cert: /etc/defender-agent/certs/device.pem.crt
  key: /etc/defender-agent/certs/private.pem.key
  ca: /etc/defender-agent/certs/AmazonRootCA1.pem
"""


COLLECTORS_INTRO = f"""\
# Collectors

{GENERATED.format(source="each collector's spec (agent/collectors/)")}

Each entry of `collectors:` in the config is one collector: its `type`, the keys every type takes
([CONFIGURATION.md](CONFIGURATION.md#collectors): `name`, `interval`, `timeout`) and the type's own
options below. A type may appear more than once, each with its own `name`. Every custom metric a collector
emits is declared under `custom_metrics:` with the same type; `defender-agent check` names any that are
missing, and `defender-agent once` prints the report the collectors make now (no network, no AWS, no root).

A collector that raises, hangs past its `timeout`, or returns an undeclared metric or a value of the
wrong type loses only its own metrics for that report. The failure is logged once per streak with the
collector's name, duration and reason, and recovery is logged once; `defender-agent status` shows each
collector's successes, failures, "no data" counts, last duration and last error.

Every example below is loaded through the config loader by tests/docs/test_generated.py.
"""


def example_config(spec: CollectorSpec) -> str:
    """A whole config around ``spec``'s sample: what the test loads and what the metric lists are read from."""
    return EXAMPLE_BASE + spec.sample


def _load_example(spec: CollectorSpec) -> Config:
    return parse_config(example_config(spec), f"<{spec.type} example>")


def _metrics(spec: CollectorSpec) -> List[str]:
    config = _load_example(spec)
    emitted: Dict[str, Optional[str]] = {}
    for collector in config.collectors:
        for name, mtype in spec.emits(collector.options).items():
            emitted[name] = mtype.value if mtype is not None else None
    out: List[str] = []
    standard = [name for name, mtype in emitted.items() if mtype is None]
    if standard:
        out.extend(["Standard metrics of the report (what Device Defender derives from them in the cloud):", "",
                    "| report key | Device Defender metrics | meaning |", "|---|---|---|"])
        for name in standard:
            cloud = ", ".join(f"`{metric}`" for metric in STANDARD_CLOUD_NAMES.get(name, ()))
            out.append(f"| `{name}` | {cloud} | {cell(STANDARD_METRICS[name].description)} |")
        out.append("")
    builtin = BUILTIN_METRICS.get(spec.type)
    if builtin:
        out.extend(["What it computes (`unit` and `description` fill in a custom metric's definition that leaves "
                    "them out):", "", "| built-in | type | unit | meaning |", "|---|---|---|---|"])
        for name, metric in builtin.items():
            out.append(f"| `{name}` | {metric.type.value} | {metric.unit} | {cell(metric.description)} |")
        out.append("")
    custom = [f"`{name}` ({mtype})" for name, mtype in emitted.items() if mtype is not None]
    if custom:
        what = "custom metric" if len(custom) == 1 else "custom metrics"
        out.extend([f"The example below emits the {what} {', '.join(custom)}.", ""])
    return out


def _collector(spec: CollectorSpec) -> List[str]:
    table = Table("| option | type | default | description |")
    for name, node in spec.options.items():
        table.node(f"`{name}`", node)
    lines = [f"## {spec.type}", "", docs_links(spec.summary), ""]
    if spec.doc:
        lines.extend([docs_links(spec.doc).rstrip("\n"), ""])
    lines.extend(["**Options**", ""])
    lines.extend(table.lines() if spec.options else ["None besides the common keys.", ""])
    lines.extend(["**Metrics**", "", *_metrics(spec)])
    lines.extend(["**Example**", "", "```yaml", spec.sample.rstrip("\n"), "```", ""])
    return lines


def collectors_page(specs: Sequence[CollectorSpec]) -> str:
    lines = [COLLECTORS_INTRO, "| type | what it measures |", "|---|---|"]
    for spec in specs:
        lines.append(f"| [`{spec.type}`](#{spec.type}) | {cell(short_doc(spec.summary)[0])} |")
    lines.append("")
    for spec in specs:
        lines.extend(_collector(spec))
    lines.extend([
        "## Plugins",
        "",
        f"Other collector types come from installed Python distributions that register a `CollectorSpec` in "
        f"the entry-point group `{ENTRY_POINT_GROUP}`; the agent imports one only when the config names its "
        "type. A plugin's options are checked at load like the built-in ones. Writing one: "
        "[PLUGINS.md](PLUGINS.md).",
        "",
    ])
    return "\n".join(lines).rstrip("\n") + "\n"
