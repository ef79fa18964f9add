"""What a shadow's desired state may set: an allow-list, and a reason for everything else.

Allowed remotely: ``behaviors``, ``report.interval``, ``report.jitter``, ``collectors.NAME.interval`` (NAME is
the collector's ``name``, else its ``type``, as in agent.yaml), ``log_level``, ``health_metrics`` and
``violations.security_profile_name``. Everything else is refused with why: a key that could run a program,
names a file or moves the connection is never taken from a shadow (a desired state that could do any of
that is a remote code execution and credential theft path), another config key is agent.yaml's alone, and
anything else is not a config key.

Pure: the desired document is untrusted JSON (any depth, any size, any key), read here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple, Union

from agent.collectors.builtin import builtin_specs
from agent.config.spec import COLLECTOR_COMMON, REPORT, TOP_LEVEL, VIOLATIONS
from agent.schema import Argv, PathStr

Key = Tuple[str, ...]  # ("report", "interval"), ("collectors", "cpu", "interval"), ("behaviors",)

PROGRAM = "could run a program"
FILE = "names a file"
CONNECTION = "moves the connection"
LOCAL = "set in agent.yaml only"
UNKNOWN = "not a config key"
COLLECTORS_SHAPE = (PROGRAM + " (collectors are never added or replaced remotely; a collector's interval is "
                    "collectors: {NAME: {interval: 60s}})")

MAX_REFUSED = 20  # refusals listed by name; more are counted under MORE (the shadow document is 8 KB)
MORE = "(more)"
MAX_KEY = 200  # characters of a refused key's name
MAX_DEPTH = 8  # of an allowed value (a behavior is 5 deep)
MAX_NODES = 5000  # values in an allowed value
MAX_TEXT = 4096  # characters of one string in it


def display(key: Key) -> str:
    """``report.interval``, as the journal, status and ``config.refused`` name a key."""
    return ".".join(key)[:MAX_KEY]


@dataclass(frozen=True)
class Allow:
    """A leaf a shadow may set: its value is taken whole (checked later by the loader)."""


@dataclass(frozen=True)
class Refuse:
    """Never from a shadow; ``by_key`` gives a sub-key its own reason (a sink's ``path`` names a file)."""

    reason: str
    by_key: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tree:
    """A section: its own rules by key; ``known`` keys without a rule are agent.yaml's only."""

    children: Mapping[str, Rule]
    known: FrozenSet[str] = frozenset()
    shape: str = "expected a mapping of its keys"


@dataclass(frozen=True)
class Names:
    """A mapping of names chosen in agent.yaml (the collectors' names), each by ``rule``."""

    rule: Rule
    shape: str


Rule = Union[Allow, Refuse, Tree, Names]
ALLOW = Allow()


def _collector_rule() -> Tree:
    """``interval`` alone; a program's argv or environment, a path or a root directory are never remote."""
    explicit: Dict[str, Rule] = {"interval": ALLOW, "type": Refuse(PROGRAM), "env": Refuse(PROGRAM),
                                 "proc_root": Refuse(FILE), "sys_root": Refuse(FILE), "mounts": Refuse(FILE)}
    children: Dict[str, Rule] = {}
    known = set(COLLECTOR_COMMON)
    for spec in builtin_specs():
        for name, node in spec.options.items():
            known.add(name)
            if isinstance(node, Argv):
                children[name] = Refuse(PROGRAM)
            elif isinstance(node, PathStr):
                children[name] = Refuse(FILE)
    children.update(explicit)
    return Tree(children, frozenset(known))


def top_rule() -> Tree:
    """The rule of the whole desired document."""
    return Tree({
        "behaviors": ALLOW,
        "log_level": ALLOW,
        "health_metrics": ALLOW,
        "report": Tree({"interval": ALLOW, "jitter": ALLOW}, frozenset(REPORT.fields)),
        "violations": Tree({"security_profile_name": ALLOW, "exec": Refuse(PROGRAM), "topic": Refuse(CONNECTION)},
                           frozenset(VIOLATIONS.fields)),
        "collectors": Names(_collector_rule(), COLLECTORS_SHAPE),
        "mqtt": Refuse(CONNECTION),
        "thing_name": Refuse(CONNECTION),  # the client id and every topic
        "shadow": Refuse(CONNECTION),  # where remote config comes from, and whether it is read at all
        "sinks": Refuse(CONNECTION, {"path": FILE}),  # where the data goes: topics and files
        "state_dir": Refuse(FILE),
        "plugins": Refuse(PROGRAM),
        "delivery": Refuse(LOCAL),
        "custom_metrics": Refuse(LOCAL),
    }, frozenset(TOP_LEVEL) | {"collectors", "custom_metrics", "sinks", "behaviors", "shadow"})


@dataclass
class Screened:
    """What a desired document asks for: values to set, keys to give back to agent.yaml (a ``null``: every
    remote key at or under it), and refusals (key -> reason)."""

    changes: Dict[Key, Any] = field(default_factory=dict)
    removals: List[Key] = field(default_factory=list)
    refused: Dict[str, str] = field(default_factory=dict)

    def refuse(self, key: Key, reason: str) -> None:
        name = display(key) if all(isinstance(k, str) for k in key) else repr(key)[:MAX_KEY]
        if name in self.refused or len(self.refused) < MAX_REFUSED:
            self.refused[name] = reason
            return
        more = self.refused.get(MORE, "0 more key(s) refused").split(" ", 1)[0]
        self.refused[MORE] = f"{int(more) + 1} more key(s) refused"


def screen(desired: Any, rule: Optional[Tree] = None) -> Screened:
    """Sort ``desired`` (untrusted) by the allow-list; never raises on any JSON-like value."""
    out = Screened()
    if desired is None:
        return out
    if not isinstance(desired, Mapping):
        out.refuse(("(desired)",), "expected a mapping of agent.yaml keys")
        return out
    _walk(rule or top_rule(), desired, (), out)
    return out


def _walk(rule: Rule, value: Any, key: Key, out: Screened) -> None:
    if isinstance(rule, Allow):
        if value is None:
            out.removals.append(key)
            return
        problem = _unbounded(value)
        if problem:
            out.refuse(key, problem)
        else:
            out.changes[key] = value
    elif isinstance(rule, Refuse):
        if value is not None:
            _refuse_all(value, key, rule.reason, rule.by_key, out, 0)
    elif value is None:
        out.removals.append(key)  # a whole section, or a collector: back to agent.yaml
    elif not isinstance(value, Mapping):
        out.refuse(key, rule.shape)
    elif isinstance(rule, Names):
        for name, sub in value.items():
            if not isinstance(name, str):
                out.refuse((*key, repr(name)), UNKNOWN)
            else:
                _walk(rule.rule, sub, (*key, name), out)
    else:
        for name, sub in value.items():
            if not isinstance(name, str):
                out.refuse((*key, repr(name)), UNKNOWN)
            elif name in rule.children:
                _walk(rule.children[name], sub, (*key, name), out)
            elif sub is not None:  # a null asks for nothing
                out.refuse((*key, name), LOCAL if name in rule.known else UNKNOWN)


def _refuse_all(value: Any, key: Key, reason: str, by_key: Mapping[str, str], out: Screened, depth: int) -> None:
    """Name each refused leaf (``mqtt.endpoint``), a few levels deep; a list or a deeper part by its key."""
    if isinstance(value, Mapping) and value and depth < 4:
        for raw_name, sub in value.items():
            if sub is None:
                continue
            name = raw_name if isinstance(raw_name, str) else repr(raw_name)
            _refuse_all(sub, (*key, name), by_key.get(name, reason), by_key, out, depth + 1)
    elif isinstance(value, list) and by_key and depth < 4:  # sinks as agent.yaml lists them
        for index, item in enumerate(value[:MAX_REFUSED]):
            at = (*key[:-1], f"{key[-1]}[{index}]")
            if isinstance(item, Mapping):
                _refuse_all(item, at, reason, by_key, out, depth + 1)
            else:
                out.refuse(at, reason)
        if not value:
            out.refuse(key, reason)
    else:
        out.refuse(key, reason)


def _unbounded(value: Any) -> Optional[str]:
    """Why an allowed value is refused before the loader sees it: too deep, too large, or not plain JSON."""
    stack: List[Tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if count > MAX_NODES:
            return f"more than {MAX_NODES} values"
        if isinstance(item, Mapping):
            if not all(isinstance(k, str) for k in item):
                return "mapping keys must be strings"
            if count + len(stack) + 2 * len(item) > MAX_NODES:
                return f"more than {MAX_NODES} values"
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, list):
            if count + len(stack) + len(item) > MAX_NODES:
                return f"more than {MAX_NODES} values"
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            if len(item) > MAX_TEXT:
                return f"a string longer than {MAX_TEXT} characters"
        elif item is not None and not isinstance(item, (bool, int, float)):
            return f"not a JSON value ({type(item).__name__})"
    return None
