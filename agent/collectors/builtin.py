"""The built-in collector types, and the registry of them plus installed plugins."""

from __future__ import annotations

from typing import List

from agent.collectors import exec as exec_collector
from agent.collectors import file as file_collector
from agent.collectors.contract import CollectorSpec
from agent.collectors.registry import Registry
from agent.collectors.security import accounts, integrity, logins, modules, packages
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
        integrity.SPEC,
        packages.SPEC,
        modules.SPEC,
        accounts.SPEC,
        logins.SPEC,
        exec_collector.SPEC,
        file_collector.SPEC,
    ]


def default_registry() -> Registry:
    """A registry of every built-in collector plus installed plugins."""
    return Registry(builtin_specs())
