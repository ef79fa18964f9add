"""A small schema language for the YAML config.

Each node checks one YAML value, records problems with their YAML path, and
returns the typed value. The same nodes render the example config and the
reference pages in docs/ (agent.docs), so documentation cannot drift from validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.errors import ConfigProblem


class TextEnum(str, enum.Enum):
    """A ``str`` enum that reads and prints as its value (``f"{PayloadFormat.JSON}" == "json"``).

    Python's mixed ``str`` enums format as ``ClassName.MEMBER`` in an f-string on 3.12; log lines,
    status output and topics need the value.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


REQUIRED: Any = object()
"""Marker default: the key must be present."""


class Checker:
    """Collects problems while a document is checked."""

    def __init__(self, file: str, lines: Optional[Mapping[str, int]] = None) -> None:
        self.file = file
        self.lines = dict(lines or {})
        self.problems: List[ConfigProblem] = []

    def problem(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        if line is None:  # fall back to the closest parent that has a line
            parent = path
            while line is None and parent:
                parent = _parent_path(parent)
                line = self.lines.get(parent)
        self.problems.append(ConfigProblem(self.file, path, message, line))


def _parent_path(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def join(path: str, key: object) -> str:
    """Extend a YAML path: ``join("mqtt", "port") == "mqtt.port"``, ``join("c", 2) == "c[2]"``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", text):
        text = f'"{text}"'
        return f"{path}[{text}]" if path else text
    return f"{path}.{text}" if path else text


def describe_value(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    shown = repr(value) if isinstance(value, str) else str(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def is_number(value: Any, *, finite: bool = False) -> bool:
    """The one test of "is a number": an ``int`` or a ``float``, never a ``bool`` (which Python counts as an
    ``int``); with ``finite``, not NaN nor an infinity either (as ``math.isfinite``, which raises
    :class:`OverflowError` for an int beyond a float's range).

    Without ``finite``: the value rules (:mod:`agent.report.rules`, which name a non-finite float in a
    message of their own), a behavior's judgement and the textfile (which writes ``NaN`` and ``+Inf``).
    With it: :class:`Num` here, and a behavior's threshold (:mod:`agent.behaviors.check`).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not finite or math.isfinite(value)


class Invalid(Exception):
    """Raised inside a node's ``convert`` to report one problem at the node's own path."""


@dataclass(frozen=True)
class Node:
    doc: str = ""
    default: Any = None
    example: Any = None  # shown in the example config instead of the default

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """Turn a YAML value into the typed value, or raise :class:`Invalid`."""
        raise NotImplementedError

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        try:
            return self.convert(value)
        except Invalid as exc:
            checker.problem(path, str(exc))
            return None

    def default_text(self) -> str:
        if self.required:
            return "required"
        if self.default is None:
            return "unset"
        return self.render(self.default)

    def render(self, value: Any) -> str:
        """``value`` written as a user would write it in YAML."""
        return render_scalar(value)


def render_scalar(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class Str(Node):
    pattern: Optional[str] = None
    pattern_hint: str = ""
    max_bytes: Optional[int] = None
    min_len: int = 1

    def type_name(self) -> str:
        return "string"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(f"expected a string, got {describe_value(value)}")
        text = str(value)
        if len(text) < self.min_len:
            raise Invalid("must not be empty")
        if self.max_bytes is not None and len(text.encode("utf-8")) > self.max_bytes:
            raise Invalid(f"is {len(text.encode('utf-8'))} bytes of UTF-8; at most {self.max_bytes} allowed")
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise Invalid(f"{text!r} {self.pattern_hint or 'does not match ' + self.pattern}")
        return text


@dataclass(frozen=True)
class PathStr(Str):
    def type_name(self) -> str:
        return "path"


@dataclass(frozen=True)
class Int(Node):
    min: Optional[int] = None
    max: Optional[int] = None

    def type_name(self) -> str:
        return "integer"

    def convert(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {describe_value(value)}")
        _check_range(value, self.min, self.max)
        return value


@dataclass(frozen=True)
class Num(Node):
    min: Optional[float] = None
    max: Optional[float] = None

    def type_name(self) -> str:
        return "number"

    def convert(self, value: Any) -> Any:
        if not is_number(value, finite=True):
            raise Invalid(f"expected a number, got {describe_value(value)}")
        _check_range(value, self.min, self.max)
        return value


def _check_range(value: float, low: Optional[float], high: Optional[float]) -> None:
    if low is not None and value < low:
        raise Invalid(f"must be at least {render_scalar(low)}, got {render_scalar(value)}")
    if high is not None and value > high:
        raise Invalid(f"must be at most {render_scalar(high)}, got {render_scalar(value)}")


@dataclass(frozen=True)
class Bool(Node):
    def type_name(self) -> str:
        return "boolean"

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {describe_value(value)}")
        return value


@dataclass(frozen=True)
class Enum(Node):
    """One of ``choices``; with ``of`` (a ``str`` enum) the choices are its values and a member is returned."""

    choices: Tuple[str, ...] = ()
    of: Optional[Any] = None
    removed: Mapping[str, str] = field(default_factory=dict)  # a former choice -> why it went, what to use

    def __post_init__(self) -> None:
        if self.of is not None and not self.choices:
            object.__setattr__(self, "choices", tuple(member.value for member in self.of))

    def type_name(self) -> str:
        return " | ".join(self.choices)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str) and value in self.removed:
            raise Invalid(f"{value!r} is no longer supported: {self.removed[value]}")
        if not isinstance(value, str) or value not in self.choices:
            hint = did_you_mean(str(value), self.choices)
            raise Invalid(f"expected one of {', '.join(self.choices)}, got {describe_value(value)}{hint}")
        return value if self.of is None else self.of(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> Optional[float]:
    """Parse ``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` to seconds; ``None`` when not a duration."""
    text = text.strip().replace(" ", "")
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


@dataclass(frozen=True)
class Duration(Node):
    """A duration: ``"10s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, or a plain number of seconds."""

    min: Optional[float] = None
    max: Optional[float] = None

    def type_name(self) -> str:
        return "duration"

    def render(self, value: Any) -> str:
        return format_duration(float(value))

    def convert(self, value: Any) -> Any:
        seconds: Optional[float]
        if isinstance(value, bool):
            seconds = None
        elif isinstance(value, (int, float)):
            seconds = float(value) if math.isfinite(value) else None
        elif isinstance(value, str):
            seconds = parse_duration(value)
        else:
            seconds = None
        if seconds is None:
            raise Invalid(f'expected a duration like "10s", "5m" or "1h", got {describe_value(value)}')
        if self.min is not None and seconds < self.min:
            raise Invalid(f"must be at least {format_duration(self.min)}, got {format_duration(seconds)}")
        if self.max is not None and seconds > self.max:
            raise Invalid(f"must be at most {format_duration(self.max)}, got {format_duration(seconds)}")
        return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def format_size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


@dataclass(frozen=True)
class Size(Node):
    """A byte size: ``4096``, ``"64KiB"``, ``"10MiB"``, ``"1GB"``."""

    min: Optional[int] = None
    max: Optional[int] = None

    def type_name(self) -> str:
        return "size"

    def render(self, value: Any) -> str:
        return format_size(int(value))

    def convert(self, value: Any) -> Any:
        size: Optional[int] = None
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str):
            match = _SIZE.fullmatch(value.strip())
            if match:
                size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
        if size is None:
            raise Invalid(f'expected a size like 65536, "64KiB" or "10MiB", got {describe_value(value)}')
        _check_range(size, self.min, self.max)
        return size


@dataclass(frozen=True)
class ListOf(Node):
    item: Node = field(default_factory=Str)
    max_items: Optional[int] = None

    def type_name(self) -> str:
        return f"list of {self.item.type_name()}"

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        if not isinstance(value, list):
            checker.problem(path, f"expected a list, got {describe_value(value)}")
            return None
        if self.max_items is not None and len(value) > self.max_items:
            checker.problem(path, f"has {len(value)} items; at most {self.max_items} allowed")
        return tuple(self.item.check(v, join(path, i), checker) for i, v in enumerate(value))


@dataclass(frozen=True)
class Argv(ListOf):
    """A program to run as an argv list (no shell): its first item an absolute path (no PATH lookup).

    ``allow_empty``: an empty list means "no program" (an optional hook) instead of a problem."""

    allow_empty: bool = False

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        items = super().check(value, path, checker)
        if items is None:
            return None
        if not items:
            if not self.allow_empty:
                checker.problem(path, "must name the program to run, e.g. [/usr/local/bin/probe, --json]")
        elif isinstance(items[0], str) and not items[0].startswith("/"):
            checker.problem(
                join(path, 0), f"{items[0]!r} must be an absolute path (no PATH lookup, no shell)"
            )
        return items


@dataclass(frozen=True)
class MapOf(Node):
    """A mapping with free keys (checked by ``key``) and values checked by ``value``."""

    key: Str = field(default_factory=Str)
    value: Node = field(default_factory=Str)

    def type_name(self) -> str:
        return f"mapping of {self.value.type_name()}"

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        if not isinstance(value, dict):
            checker.problem(path, f"expected a mapping, got {describe_value(value)}")
            return None
        out: Dict[str, Any] = {}
        for k, v in value.items():
            sub = join(path, k)
            try:
                key = self.key.convert(k)
            except Invalid as exc:
                checker.problem(sub, f"bad key: {exc}")
                continue
            out[key] = self.value.check(v, sub, checker)
        return out


@dataclass(frozen=True)
class Section(Node):
    """A mapping with known keys. With ``model`` set, returns that frozen dataclass."""

    fields: Mapping[str, Node] = field(default_factory=dict)
    model: Optional[Callable[..., Any]] = None
    removed: Mapping[str, str] = field(default_factory=dict)  # a former key -> why it went, what to use

    def __post_init__(self) -> None:
        if self.model is not None and dataclasses.is_dataclass(self.model):
            names = [f.name for f in dataclasses.fields(self.model) if f.init]
            missing = set(self.fields) - set(names)
            if missing:
                raise TypeError(f"{self.model!r} lacks fields {sorted(missing)} of its schema")

    def type_name(self) -> str:
        return "mapping"

    def check(self, value: Any, path: str, checker: Checker) -> Any:
        if value is None and not self.required:
            value = {}
        if not isinstance(value, dict):
            checker.problem(path, f"expected a mapping, got {describe_value(value)}")
            return None
        values = self.check_fields(value, path, checker, extra_known=())
        return self.model(**values) if self.model is not None else values

    def check_fields(
        self, value: Mapping[str, Any], path: str, checker: Checker, extra_known: Sequence[str]
    ) -> Dict[str, Any]:
        known = list(self.fields) + list(extra_known)
        for key in value:
            if key in self.removed:
                checker.problem(join(path, key), f"is no longer supported: {self.removed[key]}")
            elif key not in known:
                checker.problem(join(path, key), f"unknown key{did_you_mean(str(key), known)}")
        out: Dict[str, Any] = {}
        for name, node in self.fields.items():
            sub = join(path, name)
            if name in value and value[name] is not None:
                out[name] = node.check(value[name], sub, checker)
            elif node.required:
                checker.problem(sub, f"required key is missing ({node.doc.rstrip('.') or node.type_name()})")
                out[name] = None
            else:
                out[name] = _default_of(node, sub, checker)
        return out


def _default_of(node: Node, path: str, checker: Checker) -> Any:
    if isinstance(node, Section):
        return node.check({}, path, checker)
    default = node.default
    if isinstance(default, list):
        return tuple(default)
    if isinstance(default, dict):
        return dict(default)
    return default


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
