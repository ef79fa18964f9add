"""The AWS IoT Device Shadow service (classic and named shadows) as a pure, thread-safe in-memory store.

No I/O: :class:`ShadowStore` turns request payloads into the documents the service answers with, and the
MQTT responder (:mod:`devkit.emulator.responder`) and the HTTP data plane (:mod:`devkit.emulator.dataplane`)
carry them. Sources, all in the AWS IoT developer guide:

* device-shadow-document: the request document (``state.desired``/``state.reported``, ``clientToken``,
  ``version``); the ``/accepted``, ``/delta``, ``/documents``, error and get documents; "Updates affect
  only the fields specified"; a ``null`` deletes a field, and ``"desired": null`` / ``"reported": null``
  removes the section; arrays are values, replaced whole; per-attribute ``metadata`` timestamps (epoch s);
  ``version`` incremented by every update and checked when a request carries one; the delta holds every
  desired field whose value differs from the reported one (nested objects compared field by field).
* device-shadow-mqtt: the topics under ``$aws/things/THING/shadow[/name/SHADOW]``.
* device-shadow-data-flow: a named shadow is created by its first update; "When the shadow's state
  changes, AWS IoT sends /delta messages ... with the difference between the desired and the reported
  states", so every accepted update (a reported-only one too) publishes the whole delta while there is one;
  a shadow deleted and created again continues the deleted one's version (the guide says within 48 hours;
  the emulator always does).
* device-shadow-error-messages: the codes and messages of :class:`ShadowError`.
* diagnosing-shadows: 8 KB for the desired and reported state together; metadata does not count.

Choices where the guide says nothing: the size is the UTF-8 length of the compact JSON of
``{"desired": ..., "reported": ...}``; a ``/documents`` message for the update that created a shadow has
no ``previous``; an object left empty by deletions is removed with its metadata.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

SECTIONS = ("desired", "reported")
NAME_PATTERN = re.compile(r"[a-zA-Z0-9:_-]{1,64}")  # named shadow names (device-shadow-mqtt, "Shadow names")
THING_PATTERN = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # botocore iot-data model, thingName
MAX_STATE_BYTES = 8 * 1024
MAX_CLIENT_TOKEN_BYTES = 64
# device-shadow-error-messages: "JSON contains too many levels of nesting; maximum is 6". Counted here
# below state.desired / state.reported: the section object is level 1, so state.desired.a.b.c.d.e.f
# (f holding a value) is the deepest accepted document. Other AWS pages say 5 or 8 (see SPEC.md
# "Named shadow"); the agent stays at 5, so it is accepted either way.
MAX_DEPTH = 6

# Messages as device-shadow-error-messages prints them.
INVALID_JSON = "Invalid JSON"
MISSING_STATE = "Missing required node: state"
STATE_NOT_OBJECT = "State node must be an object"
INVALID_VERSION = "Invalid version"
INVALID_CLIENT_TOKEN = "Invalid clientToken"
TOO_DEEP = f"JSON contains too many levels of nesting; maximum is {MAX_DEPTH}"
VERSION_CONFLICT = "Version conflict"
TOO_LARGE = "The payload exceeds the maximum size allowed"
NOT_UTF8 = "Unsupported documented encoding; supported encoding is UTF-8"

PREFIX = "$aws/things/"
OPERATIONS = ("update", "get", "delete")
# The requests the service answers, one filter each (AWS advises against wildcards on the response side;
# these are the service's own subscriptions). Classic shadows too: they cost nothing here.
REQUEST_FILTERS = tuple(
    [f"{PREFIX}+/shadow/name/+/{op}" for op in OPERATIONS] + [f"{PREFIX}+/shadow/{op}" for op in OPERATIONS]
)


class ShadowError(Exception):
    """A rejected request: ``code`` is the HTTP status the guide gives, ``message`` its text."""

    def __init__(self, code: int, message: str, client_token: Optional[str] = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.client_token = client_token

    def document(self, timestamp: int) -> Dict[str, Any]:
        """The error response document: ``code``, ``message``, ``timestamp`` and ``clientToken`` when sent."""
        body: Dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": timestamp}
        if self.client_token is not None:
            body["clientToken"] = self.client_token
        return body


@dataclass(frozen=True)
class Update:
    """What an accepted update publishes: the ``/update/accepted`` answer, the ``/update/delta`` document
    (``None`` when desired and reported agree) and the ``/update/documents`` document."""

    accepted: Dict[str, Any]
    delta: Optional[Dict[str, Any]]
    documents: Dict[str, Any]


@dataclass
class _Shadow:
    state: Dict[str, Dict[str, Any]]
    metadata: Dict[str, Dict[str, Any]]
    version: int


# -- topics ------------------------------------------------------------------------------------------


def topic_prefix(thing: str, name: Optional[str]) -> str:
    """``$aws/things/THING/shadow`` (classic) or ``$aws/things/THING/shadow/name/NAME``."""
    return f"{PREFIX}{thing}/shadow" + (f"/name/{name}" if name is not None else "")


def parse_request_topic(topic: str) -> Optional[Tuple[str, Optional[str], str]]:
    """``(thing, shadow name or None for the classic shadow, operation)`` of a request topic, else ``None``."""
    if not topic.startswith(PREFIX):
        return None
    parts = topic[len(PREFIX):].split("/")
    if len(parts) == 3 and parts[1] == "shadow" and parts[2] in OPERATIONS and parts[0]:
        return parts[0], None, parts[2]
    if len(parts) == 5 and parts[1:3] == ["shadow", "name"] and parts[4] in OPERATIONS and parts[0] and parts[3]:
        return parts[0], parts[3], parts[4]
    return None


def notifications(thing: str, name: Optional[str], update: Update) -> List[Tuple[str, Dict[str, Any]]]:
    """The messages an accepted update sends to subscribers besides its answer, in the service's order:
    ``/update/delta`` (when there is a delta) then ``/update/documents``. The same whether the update came
    over MQTT or over HTTP (device-shadow-mqtt)."""
    prefix = topic_prefix(thing, name)
    out: List[Tuple[str, Dict[str, Any]]] = []
    if update.delta is not None:
        out.append((f"{prefix}/update/delta", update.delta))
    out.append((f"{prefix}/update/documents", update.documents))
    return out


# -- the store ---------------------------------------------------------------------------------------


class ShadowStore:
    """Shadow documents per (thing, shadow name); ``name=None`` is the thing's classic shadow.

    ``clock`` gives epoch seconds (the documents' ``timestamp`` and metadata). Every method takes the raw
    request payload and raises :class:`ShadowError` for what the service rejects.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._shadows: Dict[Tuple[str, Optional[str]], _Shadow] = {}
        self._deleted_versions: Dict[Tuple[str, Optional[str]], int] = {}

    def now(self) -> int:
        return int(self._clock())

    def update(self, thing: str, name: Optional[str], payload: bytes) -> Update:
        request = _parse(payload)
        token = _client_token(request)
        try:
            return self._update(thing, name, request, token)
        except ShadowError as exc:
            exc.client_token = token
            raise

    def _update(self, thing: str, name: Optional[str], request: Dict[str, Any], token: Optional[str]) -> Update:
        _check_names(thing, name)
        wanted_version = request.get("version")
        if "version" in request and (
            isinstance(wanted_version, bool) or not isinstance(wanted_version, int) or wanted_version < 0
        ):
            raise ShadowError(400, INVALID_VERSION)
        changes = _check_state(request)
        if _state_size(changes) > MAX_STATE_BYTES:
            raise ShadowError(413, TOO_LARGE)
        key = (thing, name)
        with self._lock:
            now = self.now()
            old = self._shadows.get(key)
            current_version = old.version if old is not None else self._deleted_versions.get(key, 0)
            if wanted_version is not None and wanted_version != current_version:
                raise ShadowError(409, VERSION_CONFLICT)
            new = _Shadow(copy.deepcopy(old.state), copy.deepcopy(old.metadata), current_version + 1) if old else \
                _Shadow({}, {}, current_version + 1)
            for section in SECTIONS:
                if section not in changes:
                    continue
                value = changes[section]
                if value is None:
                    new.state.pop(section, None)
                    new.metadata.pop(section, None)
                    continue
                state = new.state.setdefault(section, {})
                _merge(state, new.metadata.setdefault(section, {}), value, now)
                if not state:
                    new.state.pop(section)
                    new.metadata.pop(section, None)
            if _state_size(new.state) > MAX_STATE_BYTES:
                raise ShadowError(413, TOO_LARGE)
            self._shadows[key] = new
        accepted: Dict[str, Any] = {
            "state": copy.deepcopy(changes),
            "metadata": _request_metadata(changes, now),
            "version": new.version,
            "timestamp": now,
        }
        delta_state, delta_meta = _shadow_delta(new)
        delta: Optional[Dict[str, Any]] = None
        if delta_state:
            delta = {"state": delta_state, "metadata": delta_meta, "version": new.version, "timestamp": now}
        documents: Dict[str, Any] = {}
        if old is not None:
            documents["previous"] = _snapshot(old)
        documents["current"] = _snapshot(new)
        documents["timestamp"] = now
        for body in (accepted, delta, documents):
            if body is not None and token is not None:
                body["clientToken"] = token
        return Update(accepted, delta, documents)

    def get(self, thing: str, name: Optional[str], payload: bytes = b"") -> Dict[str, Any]:
        """The ``/get/accepted`` document: state with ``delta``, metadata, version, timestamp."""
        token = _optional_token(payload)
        try:
            _check_names(thing, name)
            with self._lock:
                shadow = self._shadows.get((thing, name))
                if shadow is None:
                    raise ShadowError(404, _not_found(thing, name))
                state: Dict[str, Any] = _ordered(shadow.state)
                delta_state, _ = _shadow_delta(shadow)
                if delta_state:
                    state["delta"] = delta_state
                body: Dict[str, Any] = {"state": state, "metadata": _ordered(shadow.metadata),
                                        "version": shadow.version, "timestamp": self.now()}
        except ShadowError as exc:
            exc.client_token = token
            raise
        if token is not None:
            body["clientToken"] = token
        return body

    def delete(self, thing: str, name: Optional[str], payload: bytes = b"") -> Dict[str, Any]:
        """The ``/delete/accepted`` document: the deleted shadow's ``version`` and a ``timestamp``."""
        token = _optional_token(payload)
        try:
            _check_names(thing, name)
            with self._lock:
                shadow = self._shadows.pop((thing, name), None)
                if shadow is None:
                    raise ShadowError(404, _not_found(thing, name))
                self._deleted_versions[(thing, name)] = shadow.version
                body: Dict[str, Any] = {"version": shadow.version, "timestamp": self.now()}
        except ShadowError as exc:
            exc.client_token = token
            raise
        if token is not None:
            body["clientToken"] = token
        return body

    def names(self, thing: str) -> List[str]:
        """The thing's named shadows, sorted (ListNamedShadowsForThing; the classic shadow is not one)."""
        with self._lock:
            return sorted(n for (t, n) in self._shadows if t == thing and n is not None)

    def document(self, thing: str, name: Optional[str]) -> Optional[Dict[str, Any]]:
        """The stored shadow (state, metadata, version) or ``None``; for tests."""
        with self._lock:
            shadow = self._shadows.get((thing, name))
            return _snapshot(shadow) if shadow is not None else None


# -- request checks ----------------------------------------------------------------------------------


def _parse(payload: bytes) -> Dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowError(415, NOT_UTF8) from None
    try:
        request = json.loads(text)
    except ValueError:
        raise ShadowError(400, INVALID_JSON) from None
    if not isinstance(request, dict):
        raise ShadowError(400, INVALID_JSON)
    return request


def _client_token(request: Dict[str, Any]) -> Optional[str]:
    if "clientToken" not in request:
        return None
    token = request["clientToken"]
    if not isinstance(token, str) or len(token.encode("utf-8")) > MAX_CLIENT_TOKEN_BYTES:
        raise ShadowError(400, INVALID_CLIENT_TOKEN)
    return token


def _optional_token(payload: bytes) -> Optional[str]:
    """The clientToken of a get or delete request, whose payload may be empty."""
    if not payload.strip():
        return None
    return _client_token(_parse(payload))


def _check_names(thing: str, name: Optional[str]) -> None:
    if not THING_PATTERN.fullmatch(thing):
        raise ShadowError(400, f"Invalid thing name: '{thing}'")
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise ShadowError(400, f"Invalid shadow name: '{name}'")


def _check_state(request: Dict[str, Any]) -> Dict[str, Any]:
    if "state" not in request:
        raise ShadowError(400, MISSING_STATE)
    state = request["state"]
    if not isinstance(state, dict):
        raise ShadowError(400, STATE_NOT_OBJECT)
    for node, value in state.items():
        if node not in SECTIONS:
            raise ShadowError(400, f"State contains an invalid node: '{node}'")
        if value is not None and not isinstance(value, dict):
            raise ShadowError(400, f"{node.capitalize()} node must be an object")
        if value is not None and _depth(value) > MAX_DEPTH:
            raise ShadowError(400, TOO_DEEP)
    return state


def _depth(value: Any) -> int:
    """Levels of objects and arrays in ``value``: a scalar is 0, ``{"a": 1}`` is 1."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _state_size(state: Dict[str, Any]) -> int:
    counted = {k: state[k] for k in SECTIONS if state.get(k) is not None}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _not_found(thing: str, name: Optional[str]) -> str:
    return f"No shadow exists with name: '{name if name is not None else thing}'"


# -- documents -------------------------------------------------------------------------------------


def _merge(state: Dict[str, Any], metadata: Dict[str, Any], changes: Dict[str, Any], now: int) -> None:
    """Apply ``changes`` to ``state`` in place: only the given fields change, ``None`` deletes, objects merge
    field by field, everything else (arrays included) replaces; ``metadata`` follows every leaf."""
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(state.get(key), dict):  # a new object, or one replacing a value
                state[key] = {}
                metadata[key] = {}
            _merge(state[key], metadata.setdefault(key, {}), value, now)
            if not state[key]:
                del state[key]
                metadata.pop(key, None)
        else:
            state[key] = copy.deepcopy(value)
            metadata[key] = _leaf_metadata(value, now)


def _leaf_metadata(value: Any, now: int) -> Any:
    if isinstance(value, dict):
        return {k: _leaf_metadata(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_leaf_metadata(v, now) for v in value]
    return {"timestamp": now}


def _request_metadata(changes: Dict[str, Any], now: int) -> Dict[str, Any]:
    """The accepted document's metadata: a timestamp for every field of the request, deletions included."""
    return {section: _leaf_metadata(value, now) for section, value in changes.items()}


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's ``==`` says it is); ``1`` and ``1.0`` are one number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_MISSING = object()


def delta(desired: Dict[str, Any], reported: Dict[str, Any], metadata: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(delta state, its metadata): every desired field whose value differs from the reported one,
    recursing into objects present on both sides; fields only in reported are not in it."""
    out: Dict[str, Any] = {}
    meta: Dict[str, Any] = {}
    for key, want in desired.items():
        have = reported.get(key, _MISSING)
        if isinstance(want, dict) and isinstance(have, dict):
            sub, sub_meta = delta(want, have, metadata.get(key) or {})
            if sub:
                out[key], meta[key] = sub, sub_meta
        elif have is _MISSING or not _same(want, have):
            out[key] = copy.deepcopy(want)
            if key in metadata:
                meta[key] = copy.deepcopy(metadata[key])
    return out, meta


def _shadow_delta(shadow: _Shadow) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    return delta(shadow.state.get("desired", {}), shadow.state.get("reported", {}),
                 shadow.metadata.get("desired", {}))


def _ordered(sections: Dict[str, Any]) -> Dict[str, Any]:
    """A copy with desired before reported, as the guide prints documents."""
    return {k: copy.deepcopy(sections[k]) for k in SECTIONS if k in sections}


def _snapshot(shadow: _Shadow) -> Dict[str, Any]:
    return {"state": _ordered(shadow.state), "metadata": _ordered(shadow.metadata), "version": shadow.version}
