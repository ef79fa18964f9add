"""`defender-agent check`: validate the config and the files it names."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Collection, Dict, List

from agent.behaviors.coverage import cloud_names, unjudgeable_behaviors
from agent.collectors.access import access_problems, user_name
from agent.collectors.build import build_collectors
from agent.collectors.builtin import default_registry
from agent.collectors.contract import close_collector
from agent.collectors.registry import Registry
from agent.commands.common import load_audited
from agent.commands.options import add_config_argument
from agent.config.model import Config
from agent.config.pkcs11_uri import parse as parse_pkcs11_uri
from agent.config.source import located_problems
from agent.consumers.violations.hook import check_exec
from agent.errors import ConfigProblem
from agent.mqtt.link import check_tls_files
from agent.remote.engine import Remote
from agent.remote.view import remote_lines
from agent.schema import Checker, Section


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check the configuration: every problem is listed with file, line and YAML path. "
        "Exit 0 when valid, 78 otherwise. A valid config may still draw warnings on stderr "
        "(a behavior whose metric no collector emits)."
    )
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load_audited(args)
    if config.mqtt is not None:  # what `run` builds first: a key that is not the cert's fails here; a token
        # key is looked up with one login (a wrong PIN is a config error, never tried again)
        check_tls_files(config.mqtt, config.source)
    jobs = build_collectors(config, persist_state=False)  # e.g. an exec program with unsafe permissions
    emitted = cloud_names(name for job in jobs for name in job.emits)
    for job in jobs:
        close_collector(job.collector)
    check_exec(config)  # violations.exec: the exec collector's rules, as run applies them
    registry = default_registry()
    warnings = behavior_warnings(config, emitted, registry)
    for warning in warnings:
        print(f"defender-agent: warning: {warning}", file=sys.stderr)
    for line in access_lines(config, registry):
        print(f"defender-agent: warning: {line}", file=sys.stderr)
    broker = (f"endpoint {config.mqtt.endpoint}:{config.mqtt.port}" if config.mqtt is not None
              else "no broker: only textfile sinks")
    if config.mqtt is not None and config.mqtt.on_token:  # check_tls_files logged in and found it
        broker += f"; key on the PKCS#11 {parse_pkcs11_uri(config.mqtt.key).describe()}: found"
    sinks = ", ".join(f"{s.type} {s.name!r}" if s.name != s.type.value else s.name for s in config.sinks)
    never = f" ({len(warnings)} never judged, see the warnings)" if warnings else ""
    print(
        f"{config.source}: OK (thing {config.thing_name!r}, {len(config.collectors)} collector(s), "
        f"{len(config.custom_metrics)} custom metric(s), {len(config.behaviors)} behavior(s){never}, sinks: {sinks}; "
        f"{broker})",
        file=sys.stdout,
    )
    for line in remote_config_lines(config):
        print(line, file=sys.stdout)
    return 0


def remote_config_lines(config: Config) -> List[str]:
    """The remote keys in effect on this agent.yaml (as stored in state_dir) and where each came from."""
    view = Remote(config.state_dir, logging.getLogger("agent.remote")).effective(config)
    lines = remote_lines(view)
    if not lines:
        return []
    on = "in effect" if view.keys else "none in effect"
    return [f"remote config ({on}; `defender-agent config --effective` prints the merged config):", *lines]


def access_lines(config: Config, registry: Registry) -> List[str]:
    """One line per collector whose sources (``CollectorSpec.reads``) the current user cannot read."""
    out: List[str] = []
    for cfg in config.collectors:
        spec = registry.get(cfg.type)
        if spec is None or spec.reads is None:
            continue
        problems = access_problems(spec.reads(cfg.options))
        if problems:
            out.append(
                f"{config.source}: {cfg.path or cfg.name}: collector {cfg.name!r} cannot read its source as user "
                f"{user_name()}: {'; '.join(problems)}"
            )
    return out


def behavior_warnings(config: Config, emitted_cloud_names: Collection[str], registry: Registry) -> List[ConfigProblem]:
    """The behaviors no collector feeds (:func:`agent.behaviors.coverage.unjudgeable_behaviors`), each with the
    file and line of its ``metric`` key."""
    found = unjudgeable_behaviors(config, emitted_cloud_names, standard_sources(registry))
    return located_problems(config.source, found) if found else []


def standard_sources(registry: Registry) -> Dict[str, str]:
    """Report metric (``listening_tcp_ports``) -> the built-in collector type that emits it with its defaults."""
    out: Dict[str, str] = {}
    for spec in registry.builtin_specs():
        if any(node.required for node in spec.options.values()):
            continue  # exec, file: a custom metric of the config's choosing
        options = Section(fields=dict(spec.options)).check_fields({}, "", Checker("<defaults>"), extra_known=())
        for name, mtype in spec.emits(options).items():
            if mtype is None:
                out.setdefault(name, spec.type)
    return out
