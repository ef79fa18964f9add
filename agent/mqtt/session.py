"""The MQTT session as the scheduler loop sees it: start the link, subscribe to the replies, know when to publish.

Owns the :class:`~agent.mqtt.link.Link` and its :class:`~agent.mqtt.link_state.LinkState`;
reads only the link's lifecycle events (connected, lost, failed, subscribed)
that the loop hands it. Publishing is possible once ``ready`` is true and the
report's format is in ``subscribed_formats``.
"""

from __future__ import annotations

import logging
import queue
from typing import AbstractSet, Callable, Iterable, Optional, Set, Union

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
        if self.link_state.subscribing or self.link is None:
            return
        chosen = sorted(formats)
        if not chosen:  # no defender sink and no report pending: nothing to subscribe to
            self.link_state.subscribed(self.clock.monotonic(), True, "no reply topics needed")
            self.requested_formats = set()
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
        elif isinstance(event, ev.ConnectFailed):
            state.failed(now, event.error, event.retry_by_caller)
        else:
            state.subscribed(now, event.ok, event.detail)
            if event.ok:  # the formats asked for then, not those wanted now (a new one may have come since)
                self.subscribed_formats |= self.requested_formats

    def next_deadline(self, config: Config) -> Optional[float]:
        """When :meth:`tick` is next due (a slow-connect warning, a restart, a resubscribe), or ``None``."""
        if config.mqtt is None:
            return None
        return self.link_state.next_deadline(config.mqtt.connect_timeout)

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
