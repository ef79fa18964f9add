"""The package's layers: every module imports on its own, imports only downwards, and no cycle is dodged.

The layers, lowest first (a module may import its own layer and the ones below)::

    errors -> schema -> catalog -> config model (and behavior model) -> report
    -> collectors (and sinks, behaviors) -> config loader
    -> sampling -> outbox, mqtt (and security, notify, heartbeat, reload, remote config) -> consumers -> scheduler
    -> control plane -> commands, cli

The developer tools (emulator, rig, fakes) live in ``devkit/``, outside the package: nothing in it
imports them. An import inside a function is allowed in one place only: a command's ``run()`` may
import what only running it needs (awscrt, boto3), so that ``--help`` and the base install
stay light. Anywhere else it would be a cycle being dodged, or an import hidden from this test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from tests.procs import plain_env

PACKAGE = Path(__file__).resolve().parent.parent / "agent"

LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("agent", "agent.errors", "agent.durable"),
    ("agent.schema",),
    ("agent.catalog",),
    ("agent.config", "agent.config.model", "agent.config.spec", "agent.config.yamlsrc", "agent.behaviors.model"),
    ("agent.report",),
    ("agent.collectors", "agent.plugin_api", "agent.sinks", "agent.behaviors"),
    ("agent.config.load", "agent.config.sample", "agent.config.sinks"),
    ("agent.sampling",),
    ("agent.security", "agent.notify", "agent.outbox", "agent.mqtt", "agent.events", "agent.heartbeat", "agent.reload",
     "agent.clock", "agent.remote"),
    ("agent.consumers",),
    ("agent.reconfigure", "agent.guard"),
    ("agent.scheduler",),
    ("agent.control", "agent.commands.status_view"),
    ("agent.commands", "agent.cli", "agent.docs", "agent.__main__"),
)


def module_files() -> Dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names ``module`` (``agent.config.load`` is not ``agent.config``)."""
    best = (-1, -1)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = (index, len(prefix))
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def agent_imports(path: Path) -> Iterator[Tuple[str, int, bool, str]]:
    """(imported agent module, line, at module level?, enclosing function) for every import of ``agent.*``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    type_checking = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    functions = {
        id(inner): node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue  # annotations only: never executed
        names: List[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "agent":
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "agent"]
        for name in names:
            yield name, node.lineno, id(node) in top, functions.get(id(node), "")


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    def import_alone(module: str) -> Tuple[str, int, str]:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], check=False, capture_output=True, text=True,
                              env=plain_env(), cwd=PACKAGE.parent, timeout=120)
        lines = done.stderr.strip().splitlines()
        return module, done.returncode, lines[-1] if lines else ""

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(import_alone, MODULES))
    failed = [f"{module}: {last}" for module, code, last in results if code != 0]
    assert len(results) == len(MODULES) > 90
    assert not failed, "\n".join(failed)


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)}) at line {line}"
        for module, path in MODULES.items()
        for target, line, _, _ in agent_imports(path)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    graph: Dict[str, Set[str]] = {
        module: {target for target, *_ in agent_imports(path) if target in MODULES and target != module}
        for module, path in MODULES.items()
    }
    # a package's __init__ runs before its submodules: importing agent.a.b imports agent.a first
    for module in MODULES:
        parent = module.rpartition(".")[0]
        while parent:
            if parent in graph and parent != module:
                graph[module].add(parent)
            parent = parent.rpartition(".")[0]
    state: Dict[str, int] = {}
    cycles: List[str] = []

    def visit(module: str, trail: List[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target):], target]) if target in trail else target)
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_imports_inside_functions_only_in_a_commands_run() -> None:
    hidden = [
        f"{module}:{line} imports {target} inside {function or 'a nested block'}()"
        for module, path in MODULES.items()
        for target, line, at_top, function in agent_imports(path)
        if not at_top and not (module.startswith("agent.commands.") and function == "run")
    ]
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("module", ["agent.collectors.registry", "agent.config.load", "agent.report.builder"])
def test_the_layer_test_sees_an_upward_import(module: str, tmp_path: Path) -> None:
    """The checks above read the source: a module that imports the scheduler would be caught."""
    fake = tmp_path / "fake.py"
    fake.write_text(MODULES[module].read_text(encoding="utf-8") + "\nfrom agent.scheduler import Service\n")
    targets = [target for target, *_ in agent_imports(fake)]
    assert "agent.scheduler" in targets and layer_of("agent.scheduler") > layer_of(module)


def test_the_package_never_imports_the_developer_tools() -> None:
    """devkit is not installed on a gateway: an import of it from the package would fail there."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{name}:{node.lineno} imports {t}" for t in targets if t == "devkit" or t.startswith("devkit.")]
    assert found == []
