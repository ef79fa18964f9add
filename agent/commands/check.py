"""`defender-agent check`: validate the config and the files it names."""

from __future__ import annotations

import argparse
import sys

from agent.collectors.build import build_collectors
from agent.collectors.contract import close_collector
from agent.commands.common import load_audited
from agent.commands.options import add_config_argument
from agent.delivery.mqtt import check_tls_files
from agent.delivery.violations import check_exec


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check the configuration: every problem is listed with file, line and YAML path. "
        "Exit 0 when valid, 78 otherwise."
    )
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    config = load_audited(args)
    if config.mqtt is not None:  # what `run` builds first: a key that is not the cert's fails here
        check_tls_files(config.mqtt, config.source)
    for job in build_collectors(config, persist_state=False):  # e.g. an exec program with unsafe permissions
        close_collector(job.collector)
    check_exec(config)  # violations.exec: the exec collector's rules, as run applies them
    broker = (f"endpoint {config.mqtt.endpoint}:{config.mqtt.port}" if config.mqtt is not None
              else "no broker: only textfile sinks")
    sinks = ", ".join(f"{s.type} {s.name!r}" if s.name != s.type.value else s.name for s in config.sinks)
    print(
        f"{config.source}: OK (thing {config.thing_name!r}, {len(config.collectors)} collector(s), "
        f"{len(config.custom_metrics)} custom metric(s), {len(config.behaviors)} behavior(s), sinks: {sinks}; "
        f"{broker})",
        file=sys.stdout,
    )
    return 0
