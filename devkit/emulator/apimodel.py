"""Request parsing and validation driven by botocore's IoT service model.

The emulator is as strict as the service: required members, string lengths and
patterns, integer ranges, list lengths and enums all come from
``botocore/data/iot/2015-05-28/service-2.json`` rather than from hand-written
rules. botocore itself only checks required members, types and minimums on the
client side, so the maximums, patterns and enums are checked here.

The model's patterns are Java regular expressions; ``\\p{...}`` classes, which
Python's :mod:`re` lacks, are translated (see :func:`python_pattern`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import botocore.session

# Java \p{...} classes used by the IoT model, as Python character-class bodies.
# \p{Graph} is ASCII-only in Java (without UNICODE_CHARACTER_CLASS); \p{L}/\p{N}/\p{Z} are
# Unicode categories, approximated with \w (letters, digits, underscore) and \s (spaces).
_JAVA_CLASSES = {
    r"\p{Graph}": "!-~",
    r"\p{Print}": " -~",
    r"\p{Alnum}": "A-Za-z0-9",
    r"\p{L}": r"\w",
    r"\p{N}": r"\w",
    r"\p{Z}": r"\s",
}


def python_pattern(java: str) -> Optional[re.Pattern[str]]:
    """Compile a model pattern for :func:`re.fullmatch`; ``None`` when it uses an unknown class."""
    text = java
    for java_class, body in _JAVA_CLASSES.items():
        text = text.replace(java_class, body)
    if r"\p{" in text:
        return None
    try:
        return re.compile(text)
    except re.error:
        return None


class ServiceModel:
    """The operations the emulator serves, with their input shapes: ``iot`` (control plane) or ``iot-data``."""

    def __init__(self, service: str = "iot") -> None:
        session = botocore.session.get_session()
        self._model = session.get_service_model(service)
        self._patterns: Dict[str, Optional[re.Pattern[str]]] = {}

    def operation(self, name: str) -> Any:
        return self._model.operation_model(name)

    def error_status(self, code: str) -> int:
        status: int = self._model.shape_for(code).metadata["error"]["httpStatusCode"]
        return status

    def parse_input(
        self,
        operation: str,
        uri_params: Mapping[str, str],
        query: Mapping[str, List[str]],
        body: Mapping[str, Any],
    ) -> Tuple[Dict[str, Any], List[str]]:
        """Collect the input members from URI, query string and JSON body; return (params, problems)."""
        shape = self.operation(operation).input_shape
        params: Dict[str, Any] = {}
        problems: List[str] = []
        if shape is None:
            return params, problems
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "uri":
                if wire in uri_params:
                    params[name] = uri_params[wire]
            elif location == "querystring":
                if wire in query:
                    raw = query[wire][-1]
                    converted = _from_query(raw, member.type_name)
                    if converted is None:
                        problems.append(
                            f"Value '{raw}' at '{name}' failed to satisfy constraint: "
                            f"Member must be a valid {member.type_name}"
                        )
                    else:
                        params[name] = converted
            elif location is None and name in body:
                params[name] = body[name]
        problems.extend(self.validate(shape, params, ""))
        return params, problems

    def validate(self, shape: Any, value: Any, path: str) -> List[str]:
        """Every constraint ``value`` breaks, as the service words them (one string each)."""
        problems: List[str] = []
        kind = shape.type_name
        where = path or shape.name
        meta = shape.metadata
        if kind == "structure":
            if not isinstance(value, Mapping):
                return [f"Value at '{where}' failed to satisfy constraint: Member must be an object"]
            for required in shape.required_members:
                if value.get(required) is None:
                    problems.append(
                        f"Value null at '{_join(path, required)}' failed to satisfy constraint: "
                        "Member must not be null"
                    )
            for name, member in shape.members.items():
                if value.get(name) is not None:
                    problems.extend(self.validate(member, value[name], _join(path, name)))
            unknown = sorted(set(value) - set(shape.members))
            if unknown:
                problems.append(f"Unknown member(s) {', '.join(unknown)} at '{where}'")
        elif kind == "list":
            if not isinstance(value, list):
                return [f"Value at '{where}' failed to satisfy constraint: Member must be a list"]
            problems.extend(_length(value, meta, where, len(value)))
            for index, item in enumerate(value):
                problems.extend(self.validate(shape.member, item, f"{where}.{index + 1}.member"))
        elif kind == "string":
            if not isinstance(value, str):
                return [f"Value at '{where}' failed to satisfy constraint: Member must be a string"]
            problems.extend(_length(value, meta, where, len(value)))
            enum = getattr(shape, "enum", None) or meta.get("enum")
            if enum and value not in enum:
                problems.append(
                    f"Value '{value}' at '{where}' failed to satisfy constraint: "
                    f"Member must satisfy enum value set: [{', '.join(enum)}]"
                )
            pattern = meta.get("pattern")
            if pattern:
                compiled = self._pattern(pattern)
                if compiled is not None and not compiled.fullmatch(value):
                    problems.append(
                        f"Value '{value}' at '{where}' failed to satisfy constraint: "
                        f"Member must satisfy regular expression pattern: {pattern}"
                    )
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                return [f"Value at '{where}' failed to satisfy constraint: Member must be an integer"]
            if "min" in meta and value < meta["min"]:
                problems.append(
                    f"Value '{value}' at '{where}' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {meta['min']}"
                )
            if "max" in meta and value > meta["max"]:
                problems.append(
                    f"Value '{value}' at '{where}' failed to satisfy constraint: "
                    f"Member must have value less than or equal to {meta['max']}"
                )
        return problems

    def _pattern(self, java: str) -> Optional[re.Pattern[str]]:
        if java not in self._patterns:
            self._patterns[java] = python_pattern(java)
        return self._patterns[java]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _length(value: Any, meta: Mapping[str, Any], where: str, size: int) -> List[str]:
    problems = []
    if "min" in meta and size < meta["min"]:
        problems.append(
            f"Value at '{where}' failed to satisfy constraint: "
            f"Member must have length greater than or equal to {meta['min']}"
        )
    if "max" in meta and size > meta["max"]:
        problems.append(
            f"Value at '{where}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {meta['max']}"
        )
    return problems


def _from_query(raw: str, type_name: str) -> Any:
    if type_name in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            return None
    if type_name == "timestamp":
        return parse_timestamp(raw)
    return raw


def parse_timestamp(raw: str) -> Optional[dt.datetime]:
    """ISO 8601 (what boto3 sends in query strings) or epoch seconds; always timezone-aware."""
    try:
        return dt.datetime.fromtimestamp(float(raw), tz=dt.timezone.utc)
    except ValueError:
        pass
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
