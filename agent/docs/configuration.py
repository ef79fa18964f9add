"""docs/CONFIGURATION.md: every key of agent.yaml from the schema, the duration and size forms, the commands."""

from __future__ import annotations

from typing import Dict, List, Mapping

from agent.cli import COMMANDS
from agent.collectors.builtin import builtin_specs
from agent.config import spec as config_spec
from agent.config.sample import BEHAVIORS_DOC, SINKS_DOC
from agent.config.spec import COLLECTOR_COMMON, CUSTOM_METRIC, SINK_COMMON, SINK_OPTIONS, TOP_LEVEL
from agent.docs.markdown import GENERATED, cell, docs_links, key_table, walk
from agent.errors import EX_CONFIG, EX_IOERR, EX_SOFTWARE
from agent.schema import _DURATION_UNITS, _SIZE_UNITS, Section

CONFIG_INTRO = f"""\
# Configuration

{GENERATED.format(source="the schema in agent/config/spec.py and agent/cli.py")}

The agent reads one YAML file. Every command takes `--config PATH`; without it, `$DEFENDER_AGENT_CONFIG`
names the file, else `/etc/defender-agent/agent.yaml`. Start from `defender-agent sample-config`, which
prints every key with its description and default (the same text as
[config/agent.example.yaml](../config/agent.example.yaml)).

`defender-agent check --config PATH` checks the file and the certificate, key and CA it names, without
connecting. Unknown keys are errors (with a "did you mean"), and every problem is reported at once with
file, line and YAML path; the command, like `run`, then exits {EX_CONFIG} (EX_CONFIG: systemd does not restart
the service on it):

```
defender-agent: configuration error (2 problem(s)):
  /etc/defender-agent/agent.yaml:9: report.interval: expected a duration like "10s", "5m" or "1h", got '5x'
  /etc/defender-agent/agent.yaml:14: custom_metrics.temp.type: expected one of number, number-list, string-list, ip-address-list, got 'numbr' (did you mean "number"?)
```

In the tables, a description cut short (…) is given whole in the list under its table.
"""


def _units(units: Mapping[str, object], *, sizes: bool = False) -> str:
    """The unit names as the docs write them (sizes: ``kib`` -> ``KiB``)."""
    return ", ".join(f"`{unit.upper().replace('IB', 'iB') if sizes else unit}`" for unit in units)


def _forms() -> List[str]:
    return [
        "## Durations and sizes",
        "",
        f"A duration is a number of seconds or a string of parts with the units {_units(_DURATION_UNITS)}: "
        "`250ms`, `10s`, `5m`, `1h30m`.",
        f"A size is a number of bytes or a number with one of {_units(_SIZE_UNITS, sizes=True)} (any case; KB is 1000 "
        "bytes, KiB 1024): `65536`, `64KiB`, `16MiB`.",
        "",
    ]


def extra_sections() -> Dict[str, Section]:
    """Top-level sections the schema defines beside TOP_LEVEL (checked by the loader on their own, such as
    `shadow`), by key: every Section of agent.config.spec that no other section holds."""
    held = {id(node) for _, node, _ in walk(TOP_LEVEL, "")} | {id(CUSTOM_METRIC)}
    out: Dict[str, Section] = {}
    for attr, value in vars(config_spec).items():
        if isinstance(value, Section) and attr.isupper() and id(value) not in held:
            out[attr.lower()] = value
    return out


SPECIAL = {
    "collectors": ("list", "`[]`", "Collectors to run: [COLLECTORS.md](COLLECTORS.md)."),
    "custom_metrics": ("mapping", "`{}`", "Custom metric definitions by name."),
    "sinks": ("list", "`[{type: defender}]`", SINKS_DOC),
    "behaviors": ("list", "`[]`", BEHAVIORS_DOC),
}


def _index() -> List[str]:
    table = key_table()
    sections: Dict[str, Section] = {}
    for name, node in TOP_LEVEL.items():
        if isinstance(node, Section):
            sections[name] = node
            table.add(f"[`{name}`](#{name})", "mapping", "", node.doc, note=False)
        else:
            table.node(f"`{name}`", node)
    for name, (type_text, default, doc) in SPECIAL.items():
        table.add(f"[`{name}`](#{name})", type_text, default, doc, note=False)
    for name, section in extra_sections().items():
        table.add(f"[`{name}`](#{name})", "mapping", "", section.doc, note=False)
    return ["## Top-level keys", "", *table.lines()]


def _section(name: str, section: Section) -> List[str]:
    table = key_table()
    table.removed(f"{name}.", section)
    for path, node, sub in walk(section.fields, f"{name}."):
        if sub is None:
            table.node(f"`{path}`", node)
        else:
            table.removed(f"{path}.", sub)
    return [f"## {name}", "", docs_links(section.doc), "", *table.lines()]


def _collectors_section() -> List[str]:
    table = key_table()
    for name, node in COLLECTOR_COMMON.items():
        table.node(f"`collectors[].{name}`", node)
    types = ", ".join(f"[`{spec.type}`](COLLECTORS.md#{spec.type})" for spec in builtin_specs())
    return [
        "## collectors",
        "",
        "Each entry is one collector. The keys every type takes:",
        "",
        *table.lines(),
        f"The other keys depend on the type: {types}, or a plugin's; see [COLLECTORS.md](COLLECTORS.md).",
        "",
    ]


def _custom_metrics_section() -> List[str]:
    table = key_table()
    for name, node in CUSTOM_METRIC.fields.items():
        table.node(f"`custom_metrics.NAME.{name}`", node)
    return [
        "## custom_metrics",
        "",
        docs_links(CUSTOM_METRIC.doc) + " Every custom metric a collector emits is declared here with its type; "
        "`NAME: TYPE` is short for `NAME: {type: TYPE}`.",
        "",
        *table.lines(),
    ]


def _sinks_section() -> List[str]:
    table = key_table()
    for name, node in SINK_COMMON.items():
        table.node(f"`sinks[].{name}`", node)
    out = ["## sinks", "", docs_links(SINKS_DOC), "", *table.lines()]
    for kind, options in SINK_OPTIONS.items():
        out.extend([f"### {kind.value} sink", ""])
        if not options:
            out.extend(["No options besides `type` and `name`.", ""])
            continue
        sink_table = key_table()
        for name, node in options.items():
            sink_table.node(f"`sinks[].{name}`", node)
        out.extend(sink_table.lines())
    return out


def _commands() -> List[str]:
    rows = [f"| `defender-agent {command.name}` | {cell(command.summary)} |" for command in COMMANDS]
    return [
        "## Commands",
        "",
        "`defender-agent --help` lists them; `defender-agent COMMAND --help` gives a command's options.",
        "",
        "| command | what it does |",
        "|---|---|",
        *rows,
        "",
        f"Exit status: 0 success, 1 failure, 2 usage error, {EX_CONFIG} configuration error, {EX_IOERR} a state "
        f"directory or file the command cannot use, {EX_SOFTWARE} an unexpected error (one line; "
        "`log_level: debug` shows the traceback), 130 interrupted.",
        "",
    ]


def configuration_page() -> str:
    lines = [CONFIG_INTRO, *_forms(), *_index()]
    for name, node in TOP_LEVEL.items():
        if isinstance(node, Section):
            lines.extend(_section(name, node))
    lines.extend(_collectors_section())
    lines.extend(_custom_metrics_section())
    lines.extend(_sinks_section())
    lines.extend(["## behaviors", "", docs_links(BEHAVIORS_DOC), ""])
    for name, section in extra_sections().items():
        lines.extend(_section(name, section))
    lines.extend(_commands())
    return "\n".join(lines).rstrip("\n") + "\n"
