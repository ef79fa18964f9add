"""The MQTT session as the scheduler loop sees it: start the link, subscribe to the replies, know when to publish.

Owns the :class:`~agent.mqtt.link.Link` and its :class:`~agent.mqtt.link_state.LinkState`;
reads only the link's lifecycle events (connected, lost, failed, subscribed)
that the loop hands it. Publishing is possible once ``ready`` is true and the
report's format is in ``subscribed_formats``.

A consumer may also want topics of its own subscribed at every connect (the named shadow's
response topics, :meth:`Session.want_topics`). They go in a SUBSCRIBE of their own, after the
reply topics' SUBACK, one SUBSCRIBE in flight at a time (so each ``Subscribed`` event is known
to be whose): a device policy that denies them then never holds back the reports.
"""

from __future__ import annotations

import logging
import queue
from typing import AbstractSet, Callable, Iterable, Optional, Sequence, Set, Tuple, Union

from agent import events as ev
from agent.clock import Clock
from agent.config.model import Config
from agent.events import Tag
from agent.mqtt.link import Link
from agent.mqtt.link_state import LinkPhase, LinkState
from agent.mqtt.topics import OUTCOMES, reply_topic

LinkFactory = Callable[[Config, "queue.SimpleQueue[object]", logging.Logger], Link]
LinkEvent = Union[ev.Connected, ev.Disconnected, ev.ConnectFailed, ev.Subscribed]
LINK_EVENTS = (ev.Connected, ev.Disconnected, ev.ConnectFailed, ev.Subscribed)
TOPICS_RETRY = 30.0  # seconds before a refused subscribe of a consumer's topics is tried again


def address(config: Config) -> str:
    return f"{config.mqtt.endpoint}:{config.mqtt.port}" if config.mqtt is not None else "no broker"


class Session:
    def __init__(self, config: Config, events: queue.SimpleQueue[object], logger: logging.Logger,
                 link_factory: LinkFactory, clock: Clock) -> None:
        self.events = events
        self.log = logger
        self.link_factory = link_factory
        self.clock = clock
        self.link_state = LinkState(address(config), logger)
        self.subscribed_formats: Set[str] = set()
        self.requested_formats: Set[str] = set()  # of the subscribe awaiting its SUBACK
        self.link: Optional[Link] = None
        self.wanted_topics: Tuple[str, ...] = ()  # a consumer's own topics (want_topics)
        self.subscribed_topics: Set[str] = set()
        self.topics_pending = False  # their SUBSCRIBE awaits its SUBACK
        self.requested_topics: Tuple[str, ...] = ()
        self.topics_retry_at: Optional[float] = None
        self.topics_failing = False  # their subscribe was refused (logged once until it works)

    @property
    def ready(self) -> bool:
        """Connected and subscribed to the reply topics: reports may go."""
        return self.link_state.ready

    @property
    def connected(self) -> bool:
        """Connected: messages of the topic sinks may go (they have no reply topics)."""
        return self.link_state.phase is LinkPhase.CONNECTED

    def start(self, config: Config) -> None:
        """Build the link and connect. Raises :class:`agent.errors.ConfigError` when awscrt refuses the TLS files.

        Without ``mqtt`` (only textfile sinks) there is no link: the phase stays ``no broker``."""
        if config.mqtt is None:
            self.link = None
            self.link_state.phase = LinkPhase.NO_BROKER
            return
        self._run(self.link_factory(config, self.events, self.log.getChild("mqtt")))

    def _run(self, link: Link) -> None:
        self.link = link
        self.link_state.starting(self.clock.monotonic())
        link.start()

    def stop(self, timeout: float) -> bool:
        return self.link.stop(timeout=timeout) if self.link is not None else True

    def prepare(self, config: Config) -> Optional[Link]:
        """Build (not start) the link for a changed endpoint, identity or thing name: awscrt refuses bad TLS files
        here, and this raises while the running link is left as it was. ``None`` without ``mqtt``."""
        return self.link_factory(config, self.events, self.log.getChild("mqtt")) if config.mqtt else None

    def switch(self, config: Config, link: Optional[Link]) -> None:
        """Stop the running link and start ``link`` (from :meth:`prepare`) in its place."""
        self.stop(2.0)
        self.subscribed_formats = set()
        self._lose_topics()
        self.link_state = LinkState(address(config), self.log)
        if link is None:
            self.start(config)
        else:
            self._run(link)

    def publish(self, topic: str, payload: bytes, tag: Tag) -> None:
        assert self.link is not None, "publish before start"
        self.link.publish(topic, payload, tag)

    def subscribe(self, thing: str, formats: Iterable[str]) -> None:
        """Subscribe to the accepted and rejected topics of ``formats`` (once at a time)."""
        if self.link_state.subscribing or self.topics_pending or self.link is None:
            return
        chosen = sorted(formats)
        if not chosen:  # no defender sink and no report pending: nothing to subscribe to
            self.link_state.subscribed(self.clock.monotonic(), True, "no reply topics needed")
            self.requested_formats = set()
            self._subscribe_topics(self.clock.monotonic())
            return
        topics = [reply_topic(thing, fmt, outcome) for fmt in chosen for outcome in OUTCOMES]
        self.link_state.subscribing = True
        self.requested_formats = set(chosen)
        self.link.subscribe(topics)

    def handle(self, event: LinkEvent, now: float, thing: str, wanted: Callable[[], AbstractSet[str]]) -> None:
        """One lifecycle event from the link; ``wanted()`` names the formats whose replies are needed."""
        state = self.link_state
        if isinstance(event, ev.Connected):
            state.connected(now, event.session_present)
            if not event.session_present or not self.subscribed_formats:
                self.subscribed_formats = set()
                self.subscribe(thing, wanted())
        elif isinstance(event, ev.Disconnected):
            state.lost(now, event.error)
            self.subscribed_formats = set()
            self._lose_topics()
        elif isinstance(event, ev.ConnectFailed):
            state.failed(now, event.error, event.retry_by_caller)
        elif self.topics_pending:
            self._topics_subscribed(now, event)
        else:
            state.subscribed(now, event.ok, event.detail)
            if event.ok:  # the formats asked for then, not those wanted now (a new one may have come since)
                self.subscribed_formats |= self.requested_formats
            self._subscribe_topics(now)

    # -- a consumer's own topics ------------------------------------------------------------

    def want_topics(self, topics: Sequence[str]) -> None:
        """Subscribe ``topics`` at every connect, after the reply topics; ``()`` stops wanting them (a
        subscription made stays until the connection ends)."""
        if tuple(topics) != self.wanted_topics:
            self.wanted_topics = tuple(topics)
            self.topics_retry_at = None
            self._subscribe_topics(self.clock.monotonic())

    def has_topics(self, topics: Sequence[str]) -> bool:
        """Connected and ``topics`` subscribed on this connection."""
        return self.connected and set(topics) <= self.subscribed_topics

    def _lose_topics(self) -> None:
        self.subscribed_topics = set()
        self.topics_pending = False
        self.topics_retry_at = None

    def _subscribe_topics(self, now: float) -> None:
        missing = [t for t in self.wanted_topics if t not in self.subscribed_topics]
        if (not missing or self.link is None or not self.connected or self.link_state.subscribing
                or self.topics_pending or (self.topics_retry_at is not None and now < self.topics_retry_at)):
            return
        self.topics_pending = True
        self.requested_topics = tuple(missing)
        self.link.subscribe(missing)

    def _topics_subscribed(self, now: float, event: ev.Subscribed) -> None:
        self.topics_pending = False
        if event.ok:
            self.subscribed_topics |= set(self.requested_topics)
            self.topics_retry_at = None
            if self.topics_failing:
                self.topics_failing = False
                self.log.info("Subscribed to %s", ", ".join(self.requested_topics))
        else:
            self.topics_retry_at = now + TOPICS_RETRY
            if not self.topics_failing:
                self.topics_failing = True
                self.log.error("Subscribing to %s failed (%s); retrying every %.0f s, the reports go on. Check "
                               "that the device policy allows iot:Subscribe and iot:Receive on them "
                               "(docs/FLEET.md, \"Device policy\"); logged once until it works",
                               ", ".join(self.requested_topics), event.detail, TOPICS_RETRY)
        self._subscribe_topics(now)

    def next_deadline(self, config: Config) -> Optional[float]:
        """When :meth:`tick` is next due (a slow-connect warning, a restart, a resubscribe), or ``None``."""
        if config.mqtt is None:
            return None
        times = [self.link_state.next_deadline(config.mqtt.connect_timeout)]
        if self.connected and not self.topics_pending and self.topics_retry_at is not None:
            times.append(self.topics_retry_at)
        return min((t for t in times if t is not None), default=None)

    def tick(self, now: float, config: Config, wanted: Callable[[], AbstractSet[str]]) -> None:
        """Deadlines: warn about a slow connect, restart a failed first connect, retry a failed subscribe."""
        if config.mqtt is None:
            return
        state = self.link_state
        state.check_slow(now, config.mqtt.connect_timeout)
        if state.restart_due(now):
            self.start(config)
        if state.resubscribe_due(now):
            self.subscribe(config.thing_name, wanted())
        if state.ready:
            self._subscribe_topics(now)
