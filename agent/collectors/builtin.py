"""The list of built-in collector specs."""

from __future__ import annotations

from typing import List

from agent.collectors import exec as exec_collector
from agent.collectors import file as file_collector
from agent.collectors.registry import CollectorSpec
from agent.collectors.standard import connections, network, ports
from agent.collectors.system import collector as system
from agent.collectors.system import disk


def builtin_specs() -> List[CollectorSpec]:
    return [
        ports.SPEC,
        connections.SPEC,
        network.SPEC,
        system.SPEC,
        disk.SPEC,
        exec_collector.SPEC,
        file_collector.SPEC,
    ]
