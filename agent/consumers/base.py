"""What a consumer of the checked round is, and what the loop gives it.

The loop (:mod:`agent.scheduler`) knows consumers only through :class:`Consumer`:

- :meth:`Consumer.store` runs inside the round's outbox transaction and writes what the
  consumer keeps durably (a report, a message, its state); it returns what to do once the
  round is committed (adopt new state, schedule a publish, run a hook), or ``None``. When
  the commit fails (disk full) the returned step is never run: memory never moves ahead
  of what is on disk.
- :meth:`Consumer.prepare` checks a new config without changing anything and returns the
  step that adopts it; a reload runs every consumer's ``prepare`` first and adopts only when
  all of them (and the new collectors, and the new connection) succeeded.
- :meth:`Consumer.tick` publishes what is due; :meth:`Consumer.next_deadline` bounds the
  loop's sleep; :meth:`Consumer.handle` takes the events that are its own (a PUBACK of its
  publish, a reply on its topic, its hook's result) and the link's lifecycle events.
- :meth:`Consumer.health`, :meth:`Consumer.pending` and :meth:`Consumer.status` are what the
  textfile, ``STATUS=`` and ``defender-agent status`` show of it; :meth:`Consumer.remote_outcome` is the
  remote config in effect (the shadow echoes it).

A consumer that is no longer configured (a reload removed it, or the outbox holds what an
earlier config left) is *retired*: it stores nothing new, and drains or ends what it holds.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, FrozenSet, Mapping, Optional, Tuple

from agent.clock import Clock
from agent.config.model import Config, SinkType
from agent.mqtt.session import Session
from agent.outbox.admission import Admission
from agent.outbox.store import Outbox
from agent.remote.outcome import Outcome
from agent.report.cloud import CheckedRound
from agent.report.encode import EncodedReport
from agent.report.model import Sample
from agent.sinks.flat import encode_flat
from agent.sinks.health import CollectorHealth, Health, SinkHealth

Step = Callable[[], None]


@dataclass(frozen=True)
class Round:
    """One round, checked: what every consumer gets."""

    report_id: int
    wall: float  # epoch seconds when it was built
    now: float  # the loop's monotonic clock
    samples: Tuple[Sample, ...]
    report: EncodedReport  # the Device Defender report (the encoder's own bytes)
    checked: CheckedRound  # the values as Device Defender would store them
    not_due: FrozenSet[str]  # cloud names left out by schedule (a collector's longer interval)
    collectors: Tuple[CollectorHealth, ...]
    health_of: Callable[[Round], Health]  # the agent's health as of a round (what a textfile shows)

    @cached_property
    def flat(self) -> bytes:
        """The flat document (:mod:`agent.sinks.flat`), encoded once however many sinks send it."""
        return encode_flat(self.checked)

    @cached_property
    def health(self) -> Health:
        """The agent's health after this round's commit, read once however many textfiles show it."""
        return self.health_of(self)


@dataclass
class Context:
    """What the loop lends every consumer: the outbox, the session, the clock and the event queue."""

    outbox: Outbox
    admission: Admission
    session: Session
    clock: Clock
    events: queue.SimpleQueue[object]
    log: logging.Logger
    save_meta: Callable[..., None]  # the status meta, inside the caller's transaction


class Consumer:
    """The base every consumer extends; the defaults are those of a consumer with nothing on the wire."""

    name = ""
    kind: Optional[SinkType] = None  # the sink type it serves (None: not a sink, e.g. the violation events)
    retired = False

    def store(self, rnd: Round) -> Optional[Step]:
        return None

    def prepare(self, config: Config) -> Step:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        return None

    def next_deadline(self) -> Optional[float]:
        return None

    def handle(self, event: object, now: float) -> bool:
        """Take ``event`` when it is this consumer's (True), or react to a link event (False: others see it too)."""
        return False

    def health(self, counters: Mapping[str, int]) -> Tuple[SinkHealth, ...]:
        """Its sinks' counts, from the outbox's ``counters`` (read once for every consumer)."""
        return ()

    def pending(self) -> int:
        return 0

    def status(self) -> Mapping[str, Any]:
        """Values for the status meta (``defender-agent status`` reads only state_dir)."""
        return {}

    def queues(self) -> Tuple[str, ...]:
        """The outbox message queues this consumer owns (published by the shared lane)."""
        return ()

    def remote_outcome(self, outcome: Outcome) -> None:
        """The remote config now in effect (:mod:`agent.remote`): at start, and after each change or refusal."""
        return None

    def close(self) -> None:
        return None
