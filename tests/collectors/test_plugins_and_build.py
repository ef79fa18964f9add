"""Third-party plugins (installed from tests/plugins), build_collectors, built-in specs, the plugin API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import plugin_api
from agent.collectors.build import build_collectors
from agent.collectors.builtin import default_registry
from agent.collectors.sampler import Sampler
from agent.config.load import parse_config
from agent.errors import ConfigError
from agent.schema import render_scalar

BASE = """
thing_name: gw
mqtt: {endpoint: 127.0.0.1, cert: /c, key: /k, ca: /a}
report: {interval: 10s}
"""


def test_plugin_api_surface_is_pinned():
    assert sorted(plugin_api.__all__) == [
        "Bool",
        "BuildContext",
        "Collector",
        "CollectorError",
        "CollectorSpec",
        "CustomValue",
        "Duration",
        "ENTRY_POINT_GROUP",
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
        "REQUIRED",
        "Sample",
        "SampleKind",
        "Size",
        "Str",
        "ValueParseError",
        "parse_value",
    ]
    for name in plugin_api.__all__:
        assert hasattr(plugin_api, name)
    assert plugin_api.ENTRY_POINT_GROUP == "defender_agent.collectors"


def test_example_plugin_is_loaded_by_name_and_sampled(installed_plugins, tmp_path):
    config = parse_config(
        BASE
        + f"""
state_dir: {tmp_path}
custom_metrics: {{dice_total: number, dice_rolls: number-list}}
collectors:
  - {{type: dice, count: 3, total_metric: dice_total, rolls_metric: dice_rolls}}
"""
    )
    jobs = build_collectors(config)
    assert jobs[0].origin.startswith(
        "entry point 'dice' (defender_agent_dice:spec) from defender-agent-dice 1.0.0"
    )
    sampler = Sampler(jobs, 10.0, config.custom_metrics)
    values = {s.name: s.value for s in sampler.sample_all().samples}
    assert len(values["dice_rolls"]) == 3 and values["dice_total"] == sum(values["dice_rolls"])
    sampler.close()
    assert jobs[0].collector.closed


def _fresh_interpreter(installed_plugins, code: str) -> str:
    """Run ``code`` in a new Python that sees the installed plugins; its stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{installed_plugins}{os.pathsep}{Path(__file__).resolve().parents[2]}",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_plugins_are_imported_only_when_named(installed_plugins):
    """In a fresh interpreter, so no earlier test in this one has imported a plugin already."""
    builtin_only = BASE + "collectors: [{type: tcp_connections}]"
    naming_dice = (
        BASE
        + "custom_metrics: {dice_total: number, dice_rolls: number-list}\n"
        + "collectors: [{type: dice, total_metric: dice_total, rolls_metric: dice_rolls}]"
    )
    code = f"""
import sys
from agent.collectors.builtin import default_registry
from agent.config.load import parse_config

def plugins():
    return sorted(m for m in sys.modules if m.startswith("defender_agent_"))

registry = default_registry()
print(sorted({{"dice", "fails_import", "builds_junk"}} & set(registry.available())))
print(plugins())
parse_config({builtin_only!r}, registry=registry)
print(plugins())
parse_config({naming_dice!r}, registry=registry)
print(plugins())
"""
    assert _fresh_interpreter(installed_plugins, code).splitlines() == [
        "['builds_junk', 'dice', 'fails_import']",  # listed from the entry points ...
        "[]",  # ... without importing any
        "[]",  # a config naming only built-in types imports no plugin
        "['defender_agent_dice']",  # naming one imports that one (so the probe does see an import)
    ]


@pytest.mark.parametrize(
    ("ctype", "message"),
    [
        (
            "fails_import",
            "cannot load plugin entry point 'fails_import' (defender_agent_broken.missing_module:spec) "
            "from defender-agent-broken-plugins 0.0.1: ModuleNotFoundError",
        ),
        (
            "not_a_spec",
            "plugin entry point 'not_a_spec' (defender_agent_broken:not_a_spec) from "
            "defender-agent-broken-plugins 0.0.1 must provide an agent.plugin_api.CollectorSpec",
        ),
        ("wrong_type_name", "declares type 'something_else'; it must equal the entry point name"),
    ],
)
def test_bad_plugins_are_config_errors_naming_entry_point_and_distribution(installed_plugins, ctype, message):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f"collectors: [{{type: {ctype}}}]")
    assert message in str(info.value)
    assert "collectors[0].type" in str(info.value)


def test_plugin_building_junk_is_a_config_error(installed_plugins):
    config = parse_config(BASE + "collectors: [{type: builds_junk}]")
    with pytest.raises(
        ConfigError,
        match=r"collectors\[0\]: collector type 'builds_junk' \(entry point "
        r"'builds_junk' .* from defender-agent-broken-plugins 0.0.1\) built a "
        r"object, which does not fit the Collector protocol",
    ):
        build_collectors(config)


def test_plugin_loads_in_a_fresh_interpreter(installed_plugins):
    code = (
        "from agent.collectors.builtin import default_registry; "
        "print(default_registry().get('dice').summary)"
    )
    out = _fresh_interpreter(installed_plugins, code)
    assert out.strip() == "Rolls dice: the total (number) and each roll (number-list)."


def _example_yaml(spec_type: str, options) -> str:
    lines = [f"  - type: {spec_type}"]
    for key, value in options.items():
        lines.append(f"    {key}: {render_scalar(list(value) if isinstance(value, tuple) else value)}")
    return "\n".join(lines)


def test_every_builtin_example_is_a_valid_config(tmp_path):
    """The examples the generated sample config uses: standard + system (>= 6 custom metrics) + disk, etc."""
    registry = default_registry()
    specs = registry.builtin_specs()
    assert [s.type for s in specs] == sorted(
        ["listening_ports", "tcp_connections", "network_stats", "system", "disk", "exec", "file",
         "file_integrity", "packages", "kernel_modules", "accounts", "logins"]
    )
    metrics = {}
    blocks = []
    for spec in specs:
        assert spec.example is not None and spec.summary
        blocks.append(_example_yaml(spec.type, spec.example))
        for name, mtype in spec.emits(_checked_options(spec)).items():
            if mtype is not None:
                metrics[name] = mtype.value
    text = (
        BASE
        + f"state_dir: {tmp_path}\ncustom_metrics:\n"
        + "".join(f"  {n}: {t}\n" for n, t in metrics.items())
        + "collectors:\n"
        + "\n".join(blocks)
        + "\n"
    )
    config = parse_config(text)  # every example, the exec and file ones included, passes the config check
    standard = [
        c for c in config.collectors if c.type in ("listening_ports", "tcp_connections", "network_stats")
    ]
    system = [c for c in config.collectors if c.type in ("system", "disk")]
    # build and sample all but exec and file, whose example paths do not exist on this machine, and logins,
    # whose source (the journal, or /var/log/auth.log where journald does not run) a test machine may lack
    usable = parse_config(
        BASE
        + f"state_dir: {tmp_path}\ncustom_metrics:\n"
        + "".join(f"  {n}: {t}\n" for n, t in metrics.items() if n not in ("mesh_peers", "soc_temperature"))
        + "collectors:\n"
        + "\n".join(b for b in blocks if "exec" not in b and "file" not in b and "logins" not in b)
        + "\n"
    )
    built = build_collectors(usable, registry, persist_state=False)
    result = Sampler(built, usable.report.interval, usable.custom_metrics).sample_all()
    assert result.failures == ()
    names = {s.name for s in result.samples}
    assert {"listening_tcp_ports", "listening_udp_ports", "tcp_connections", "network_stats"} <= names
    assert (
        len(names - {"listening_tcp_ports", "listening_udp_ports", "tcp_connections", "network_stats"}) >= 6
    )
    assert len(standard) == 3 and len(system) == 2
    assert not any(tmp_path.iterdir())  # persist_state=False wrote nothing


def _checked_options(spec):
    from agent.schema import Checker, Section

    checker = Checker("<example>")
    values = Section(fields=dict(spec.options)).check_fields(dict(spec.example), "", checker, extra_known=())
    assert checker.problems == []
    return values
