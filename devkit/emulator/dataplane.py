"""A local AWS IoT data plane for shadows (service ``iot-data``, protocol ``rest-json``), spoken as boto3 and
the AWS CLI speak it::

    GET    /things/{thingName}/shadow[?name=SHADOW]                  GetThingShadow
    POST   /things/{thingName}/shadow[?name=SHADOW]  (the document)  UpdateThingShadow
    DELETE /things/{thingName}/shadow[?name=SHADOW]                  DeleteThingShadow
    GET    /api/things/shadow/ListNamedShadowsForThing/{thingName}   ListNamedShadowsForThing

Routes and input checks come from botocore's ``iot-data`` model (:class:`devkit.emulator.apimodel.ServiceModel`);
the documents from :class:`devkit.emulator.shadow.ShadowStore`, which the MQTT side shares. An error answers
with its HTTP status, the modelled exception name in ``x-amzn-ErrorType`` (so boto3 raises ConflictException,
RequestEntityTooLargeException, ResourceNotFoundException, InvalidRequestException, ...) and the shadow error
document (``code``, ``message``, ``timestamp``) as the body. An update accepted here publishes
``/update/delta`` and ``/update/documents`` over MQTT through ``publish``, as the service does for an update
made with the REST API (device-shadow-mqtt); errors are not published (device-shadow-error-messages).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from devkit.emulator.apimodel import ServiceModel
from devkit.emulator.httpserver import LoopbackServer
from devkit.emulator.restjson import page, with_token
from devkit.emulator.shadow import ShadowError, ShadowStore, notifications, topic_prefix
from devkit.emulator.store import ApiError

log = logging.getLogger("devkit.emulator.dataplane")

Publish = Callable[[str, Dict[str, Any]], None]
PAGE_SIZE = 25
# The iot-data model's errors by the status the shadow service answers with.
ERROR_TYPES = {
    400: "InvalidRequestException",
    401: "UnauthorizedException",
    404: "ResourceNotFoundException",
    405: "MethodNotAllowedException",
    409: "ConflictException",
    413: "RequestEntityTooLargeException",
    415: "UnsupportedDocumentEncodingException",
    429: "ThrottlingException",
    500: "InternalFailureException",
    503: "ServiceUnavailableException",
}
_SHADOW = re.compile(r"^/things/(?P<thing>[^/]+)/shadow$")
_LIST = re.compile(r"^/api/things/shadow/ListNamedShadowsForThing/(?P<thing>[^/]+)$")
_SHADOW_OPERATIONS = {"GET": "GetThingShadow", "POST": "UpdateThingShadow", "DELETE": "DeleteThingShadow"}


def route(method: str, path: str) -> Tuple[str, Dict[str, str]]:
    """(operation, URI members) for a request; MethodNotAllowed (405) for anything else."""
    match = _SHADOW.match(path)
    if match and method in _SHADOW_OPERATIONS:
        return _SHADOW_OPERATIONS[method], {"thingName": unquote(match.group("thing"))}
    match = _LIST.match(path)
    if match and method == "GET":
        return "ListNamedShadowsForThing", {"thingName": unquote(match.group("thing"))}
    raise ShadowError(405, f"The specified combination of HTTP verb and URI is not supported: {method} {path}")


class DataPlaneServer(LoopbackServer):
    """The data plane on a loopback port. ``port=0`` picks a free one; see :attr:`url`.

    ``publish(topic, document)`` sends the MQTT side of an update made here (the responder's
    :meth:`~devkit.emulator.responder.Responder.publish_json`); without it nothing is sent.
    """

    label = "Data plane"

    def __init__(
        self,
        shadows: ShadowStore,
        publish: Optional[Publish] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = PAGE_SIZE,
        model: Optional[ServiceModel] = None,
    ) -> None:
        self.shadows = shadows
        self.publish = publish
        self.page_size = page_size
        self.model = model or ServiceModel("iot-data")
        self._lock = threading.Lock()
        self.requests: List[Tuple[str, int]] = []
        self._serve(self.handle, host, port)

    def calls(self, operation: Optional[str] = None) -> List[Tuple[str, int]]:
        with self._lock:
            return [r for r in self.requests if operation is None or r[0] == operation]

    def _record(self, operation: str, status: int) -> None:
        with self._lock:
            self.requests.append((operation, status))

    def handle(self, method: str, raw_path: str, body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """One request -> (status, extra headers, body). Never raises."""
        split = urlsplit(raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        operation = "Unknown"
        try:
            operation, uri = route(method, split.path)
            members = {"payload": body} if operation == "UpdateThingShadow" else {}
            params, problems = self.model.parse_input(operation, uri, query, members)
            if problems:
                count = len(problems)
                raise ShadowError(400, f"{count} validation error{'s' if count > 1 else ''} detected: "
                                  + "; ".join(problems))
            document = self._operation(operation, params, body)
            self._record(operation, 200)
            return 200, {}, json.dumps(document).encode()
        except (ShadowError, ApiError) as exc:
            if isinstance(exc, ApiError):  # a bad nextToken (restjson.page)
                exc = ShadowError(exc.status, exc.message)
            self._record(operation, exc.code)
            log.debug("%s %s -> %d %s", method, raw_path, exc.code, exc.message)
            error_type = ERROR_TYPES.get(exc.code, "InternalFailureException")
            return exc.code, {"x-amzn-ErrorType": error_type}, json.dumps(exc.document(self.shadows.now())).encode()
        except Exception as exc:  # a bug in the emulator: report it the way the service would
            log.exception("Data plane failed on %s %s", method, raw_path)
            self._record(operation, 500)
            return 500, {"x-amzn-ErrorType": "InternalFailureException"}, json.dumps(
                {"message": f"emulator error: {exc}"}).encode()

    def _operation(self, operation: str, params: Dict[str, Any], body: bytes) -> Dict[str, Any]:
        thing, name = params["thingName"], params.get("shadowName")
        if operation == "GetThingShadow":
            return self.shadows.get(thing, name)
        if operation == "DeleteThingShadow":
            return self.shadows.delete(thing, name)
        if operation == "UpdateThingShadow":
            update = self.shadows.update(thing, name, body)
            if self.publish is not None:
                for topic, document in notifications(thing, name, update):
                    self.publish(topic, document)
            log.info("Shadow %s updated over HTTP to version %d", topic_prefix(thing, name), update.accepted["version"])
            return update.accepted
        names, token = page(self.shadows.names(thing), {"maxResults": params.get("pageSize"),
                                                        "nextToken": params.get("nextToken")},
                            f"shadows:{thing}", self.page_size)
        return with_token({"results": names, "timestamp": self.shadows.now()}, token)
