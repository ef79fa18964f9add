"""A :class:`~agent.mqtt.link.Link` without a network, shipped beside the real one for tests
(as httpx ships ``MockTransport``): the scheduler runs against it with a fake clock, no broker.

It answers the loop's calls the way awscrt does, with events on the loop's queue,
and records what the loop asked for. The test scripts the broker's side::

    links = FakeLinks()                       # a link_factory for Service
    service = Service(config, ..., link_factory=links, clock=FakeClock())
    link = links.last                         # after service.open()
    link.accept(report_id)                    # the service accepts a report
    link.reject(report_id)                    # ... or rejects it (InvalidPayload)
    link.drop()                               # the connection is lost; link.connect() brings it back

By default ``start()`` connects (a clean session), ``subscribe()`` succeeds, every
publish gets its PUBACK, and no reply comes until the test sends one; the
constructor's keywords change each of these. The fake is strict where the
scheduler promises something: a publish while disconnected, or to a format
whose reply topics were not subscribed, raises :class:`LinkMisuse`.
"""

from __future__ import annotations

import enum
import json
import logging
import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import cbor2

from agent import events as ev
from agent.catalog import PayloadFormat
from agent.config.model import Config
from agent.mqtt.topics import OUTCOMES, parse_topic, reply_topic

DEFAULT_TIMESTAMP = 1_700_000_000_000  # milliseconds, as the service sends it


class LinkMisuse(AssertionError):
    """The loop used the link in a way the scheduler promises not to (a test failure, not an agent error)."""


class AutoReply(enum.Enum):
    """How the fake service answers each publish on its own."""

    NONE = "none"  # the test sends replies (or none: a reply timeout)
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    report_id: int  # 0 for a message of a topic sink (see ``tag``)
    tag: ev.Tag = 0


def accepted_body(thing: str, report_id: Optional[int], timestamp: int = DEFAULT_TIMESTAMP) -> Dict[str, Any]:
    """An accepted reply as "Sending metrics from devices" shows it (``report_id=None`` leaves ``reportId`` out)."""
    body: Dict[str, Any] = {"thingName": thing, "status": "ACCEPTED", "timestamp": timestamp}
    if report_id is not None:
        body["reportId"] = report_id
    return body


def rejected_body(thing: str, report_id: Optional[int], code: str = "InvalidPayload",
                  message: str = "Malformed metrics report", timestamp: int = DEFAULT_TIMESTAMP) -> Dict[str, Any]:
    """A rejected reply; ``report_id=None`` is the troubleshooting guide's shape (no ``reportId``)."""
    body = accepted_body(thing, report_id, timestamp)
    body["status"] = "REJECTED"
    body["statusDetails"] = {"ErrorCode": code, "ErrorMessage": message}
    return body


def encode_body(body: Dict[str, Any], encoding: PayloadFormat) -> bytes:
    return json.dumps(body).encode("utf-8") if encoding is PayloadFormat.JSON else bytes(cbor2.dumps(body))


class FakeLink:
    def __init__(
        self,
        events: queue.SimpleQueue[object],
        thing: str,
        *,
        connects: bool = True,
        connect_error: str = "",
        retry_by_caller: bool = False,
        suback_ok: bool = True,
        puback: bool = True,
        auto_reply: AutoReply = AutoReply.NONE,
        confirms_stop: bool = True,
        refuses: Sequence[str] = (),
        drops_on: Sequence[str] = (),
    ) -> None:
        self.events = events
        self.thing = thing
        self.connects = connects  # False: start() leaves the connect hanging (no event at all)
        self.connect_error = connect_error  # set: start() fails with it (ConnectFailed)
        self.retry_by_caller = retry_by_caller  # with connect_error: MQTT 3.1.1's first connect
        self.suback_ok = suback_ok
        self.puback = puback
        self.auto_reply = auto_reply
        self.confirms_stop = confirms_stop
        self.refuses = tuple(refuses)  # topics of messages the broker refuses (PUBACK 0x87, not authorized)
        self.drops_on = tuple(drops_on)  # topics whose publish closes the connection (AWS IoT over MQTT 3.1.1)
        self.hung_up = False  # a publish closed the connection (until connect())
        self.connected = False
        self.stopped = False
        self.starts = 0
        self.subscribed: List[str] = []  # reply topics the broker holds for this (clean) session
        self.subscribe_calls: List[List[str]] = []
        self.published: List[Published] = []

    # -- the Link protocol (calls from the loop) ----------------------------------------

    def start(self) -> None:
        self.starts += 1
        self.stopped = False
        if self.connect_error:
            self.events.put(ev.ConnectFailed(self.connect_error, self.retry_by_caller))
        elif self.connects:
            self.connect()

    def subscribe(self, topics: Sequence[str]) -> None:
        self.subscribe_calls.append(list(topics))
        if self.suback_ok and self.connected:
            self.subscribed.extend(t for t in topics if t not in self.subscribed)
            self.events.put(ev.Subscribed(True, f"{len(topics)} topic(s)"))
        else:
            self.events.put(ev.Subscribed(False, "reason codes [135]" if self.connected else "not connected"))

    def publish(self, topic: str, payload: bytes, tag: ev.Tag) -> None:
        if not isinstance(tag, int):  # a message, or a shadow request (ShadowRef)
            self._publish_message(topic, payload, tag)
            return
        report_id = tag
        parsed = parse_topic(topic)
        if parsed is None or parsed[2] is not None:
            raise LinkMisuse(f"publish to {topic!r}, not a report topic")
        thing, fmt, _ = parsed
        if not self.connected:
            if self.hung_up:  # a message's publish just closed it; the loop has not seen the event yet
                return
            raise LinkMisuse(f"report {report_id} published while disconnected")
        if any(reply_topic(thing, fmt, outcome) not in self.subscribed for outcome in OUTCOMES):
            raise LinkMisuse(f"report {report_id} published before subscribing to its {fmt} reply topics")
        self.published.append(Published(topic, payload, report_id, report_id))
        if self.puback:
            self.complete(report_id)
        if self.auto_reply is AutoReply.ACCEPT:
            self.accept(report_id)
        elif self.auto_reply is AutoReply.REJECT:
            self.reject(report_id)

    def _publish_message(self, topic: str, payload: bytes, tag: ev.Tag) -> None:
        if parse_topic(topic) is not None:
            raise LinkMisuse(f"message {tag} published on the report topic {topic!r}")
        if not self.connected:
            if self.hung_up:  # the loop has not seen the hang-up yet: awscrt would queue it offline
                return
            raise LinkMisuse(f"message {tag} published while disconnected")
        self.published.append(Published(topic, payload, 0, tag))
        if topic in self.drops_on:
            self.drop("AWS_ERROR_MQTT_UNEXPECTED_HANGUP: The connection was closed unexpectedly")
            self.hung_up = True
        elif topic in self.refuses:
            self.events.put(ev.PublishDone(tag, False, "PUBACK reason code 0x87 (NOT_AUTHORIZED)", refused=True))
        elif self.puback:
            self.events.put(ev.PublishDone(tag, True))

    def messages(self, topic: Optional[str] = None) -> List[Published]:
        """The messages (not reports) published, on ``topic`` when given."""
        return [p for p in self.published if isinstance(p.tag, ev.MessageRef) and topic in (None, p.topic)]

    def stop(self, timeout: float = 3.0) -> bool:
        """Like awscrt's MQTT5 client: a disconnection event (when connected), then stopped."""
        if self.connected:
            self.connected = False
            self.subscribed = []
            self.events.put(ev.Disconnected("AWS_ERROR_MQTT5_USER_REQUESTED_STOP: user requested stop"))
        self.stopped = True
        if self.confirms_stop:
            self.events.put(ev.Stopped())
        return self.confirms_stop

    # -- the broker's and the service's side (calls from the test) ----------------------

    def connect(self, session_present: bool = False) -> None:
        """The connection (re)established; a clean session holds no subscriptions."""
        self.connected = True
        self.hung_up = False
        if not session_present:
            self.subscribed = []
        self.events.put(ev.Connected(session_present))

    def drop(self, error: str = "AWS_ERROR_MQTT_UNEXPECTED_HANGUP: The connection was closed unexpectedly") -> None:
        """The connection is lost (awscrt reconnects by itself: call :meth:`connect` for that)."""
        self.connected = False
        self.subscribed = []
        self.events.put(ev.Disconnected(error))

    def complete(self, report_id: int, ok: bool = True, error: str = "") -> None:
        """The publish's completion: a PUBACK (``ok``) or a failure such as a timeout."""
        self.events.put(ev.PublishDone(report_id, ok, error))

    def accept(self, report_id: int, with_id: bool = True, encoding: Optional[PayloadFormat] = None) -> None:
        """The service accepts ``report_id``: on the reply topic of the format it was published in, and
        (unless ``encoding`` says otherwise) in that format, as the service and the local responder do."""
        body = accepted_body(self.thing, report_id if with_id else None)
        self._reply(report_id, "accepted", body, encoding)

    def reject(self, report_id: int, code: str = "InvalidPayload", message: str = "Malformed metrics report",
               with_id: bool = True, encoding: Optional[PayloadFormat] = None) -> None:
        body = rejected_body(self.thing, report_id if with_id else None, code, message)
        self._reply(report_id, "rejected", body, encoding)

    def deliver(self, topic: str, payload: bytes) -> None:
        """Any message on any topic (what the broker forwards, malformed or not)."""
        self.events.put(ev.Message(topic, payload))

    # -- what the loop did ----------------------------------------------------------------

    @property
    def published_ids(self) -> List[int]:
        """The report ids published, in order (messages left out)."""
        return [p.report_id for p in self.published if not isinstance(p.tag, ev.MessageRef)]

    def _reply(self, report_id: int, outcome: str, body: Dict[str, Any], encoding: Optional[PayloadFormat]) -> None:
        topics = [parse_topic(p.topic) for p in self.published if p.report_id == report_id]
        fmt = PayloadFormat(topics[-1][1]) if topics and topics[-1] is not None else PayloadFormat.JSON
        self.deliver(reply_topic(self.thing, fmt.value, outcome), encode_body(body, encoding or fmt))


class FakeLinks:
    """A ``link_factory`` for :class:`agent.scheduler.Service`: a new :class:`FakeLink` per call, all kept.

    ``options`` are :class:`FakeLink`'s keywords for every link it builds; ``refuse`` makes
    the next call raise (awscrt refusing the TLS files of a reload, say).
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.links: List[FakeLink] = []
        self.configs: List[Config] = []
        self.refuse: Optional[Exception] = None

    def __call__(self, config: Config, events: queue.SimpleQueue[object], logger: logging.Logger) -> FakeLink:
        if self.refuse is not None:
            exc, self.refuse = self.refuse, None
            raise exc
        self.configs.append(config)
        self.links.append(FakeLink(events, config.thing_name, **self.options))
        return self.links[-1]

    @property
    def last(self) -> FakeLink:
        assert self.links, "no link was built yet (call Service.open() first)"
        return self.links[-1]


if TYPE_CHECKING:  # mypy holds the fake to the real seam: FakeLinks is a LinkFactory, so FakeLink is a Link
    from agent.mqtt.session import LinkFactory

    _FACTORY: LinkFactory = FakeLinks()
