"""Read YAML into plain Python values plus a map of YAML path -> line number.

Duplicate keys are refused (PyYAML would silently keep the last one), and so is a document of more than
MAX_NODES values (a few lines of aliases can expand to billions), at the YAML path and line where it passes
the limit.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Set, Tuple

import yaml

from agent.errors import ConfigError, ConfigProblem
from agent.schema import join


def read_yaml(text: str, file: str) -> Tuple[Any, Dict[str, int]]:
    """Parse ``text``; raise ConfigError naming ``file`` and the line on bad YAML."""
    deep = _flow_too_deep(text)
    if deep is not None:
        raise ConfigError([ConfigProblem(file, "", f"brackets nested more than {MAX_FLOW_DEPTH} levels deep", deep)])
    try:
        loader = yaml.SafeLoader(text)  # the reader checks characters here already
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, file) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: Dict[str, int] = {}
        problems: List[ConfigProblem] = []
        value = _build(loader, node, "", lines, problems, file)
    except RecursionError:
        raise ConfigError([ConfigProblem(file, "", "the document is nested too deeply")]) from None
    except _TooLarge as exc:
        raise ConfigError([ConfigProblem(
            file, exc.path, f"the document passes {MAX_NODES} values here (a list or mapping this long, or "
            "aliases that repeat a node, each use counted again); no config needs that many", exc.line,
        )]) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, file) from None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(problems)
    return value, lines


MAX_NODES = 100_000
MAX_FLOW_DEPTH = 64
_FLOW_CHARS = re.compile(r"[\[\]{}]")


def _flow_too_deep(text: str) -> Optional[int]:
    """The line where ``[``/``{`` nesting first passes MAX_FLOW_DEPTH, else None.

    PyYAML needs seconds for a thousand nested brackets (and then Python's recursion
    limit is hit); no config needs more than a few levels, so refuse early. Brackets
    inside quoted strings count too, which only matters past 64 of them.
    """
    depth = 0
    for match in _FLOW_CHARS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_FLOW_DEPTH:
            return text.count("\n", 0, match.start()) + 1
    return None


class _TooLarge(Exception):
    """The document passed MAX_NODES values at ``path``; ``line`` is where that value is written (for a node an
    alias repeats, the line of the alias's enclosing node, not of its anchor)."""

    def __init__(self, path: str, line: int) -> None:
        super().__init__(path, line)
        self.path = path
        self.line = line


def _syntax_error(exc: yaml.YAMLError, file: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
    return ConfigError([ConfigProblem(file, "", f"not valid YAML: {reason}", line)])


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: str,
    lines: Dict[str, int],
    problems: List[ConfigProblem],
    file: str,
    seen: Optional[Set[int]] = None,
    used_at: int = 0,
) -> Any:
    """The plain value of ``node``; ``used_at`` is the line where it was written, or for a node an alias repeats
    (``seen`` before), the line of the nearest enclosing node written in place: where that alias is."""
    seen = set() if seen is None else seen
    lines[path] = node.start_mark.line + 1
    if id(node) not in seen:
        seen.add(id(node))
        used_at = lines[path]
    if len(lines) > MAX_NODES:
        raise _TooLarge(path, used_at)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: Dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)) or key is None:
                problems.append(ConfigProblem(file, path, "mapping keys must be plain scalars", key_node.start_mark.line + 1))
                continue
            key = key if isinstance(key, str) else str(key)
            sub = join(path, key)
            if key in out:
                problems.append(
                    ConfigProblem(file, sub, f"duplicate key (first at line {lines.get(sub)})", key_node.start_mark.line + 1)
                )
                continue
            out[key] = _build(loader, value_node, sub, lines, problems, file, seen, used_at)
            lines[sub] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, join(path, i), lines, problems, file, seen, used_at)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
