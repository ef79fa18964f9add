"""Events handed from awscrt's threads (and signal handlers) to the scheduler loop.

Producers only construct one of these and ``put`` it on a ``queue.SimpleQueue``
(whose ``put`` is reentrant, so a signal handler may use it too). Only the
scheduler loop reads them and changes state.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

from agent.schema import TextEnum


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class ConnectFailed:
    error: str
    retry_by_caller: bool = False  # MQTT 3.1.1: a failed first connect is not retried by awscrt


@dataclass(frozen=True)
class Disconnected:
    error: str


@dataclass(frozen=True)
class Stopped:
    pass


@dataclass(frozen=True)
class Subscribed:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class MessageRef:
    """The tag of a queued message's publish (:mod:`agent.outbox.messages`); a report's tag is its id."""

    seq: int


@dataclass(frozen=True)
class ShadowRef:
    """The tag of a named-shadow request's publish (:mod:`agent.consumers.shadow`): its clientToken."""

    token: str


Tag = Union[int, MessageRef, ShadowRef]


@dataclass(frozen=True)
class PublishDone:
    tag: Tag  # a report id, the message it was, or a shadow request
    ok: bool
    error: str = ""
    refused: bool = False  # the broker answered with an error reason code (MQTT5 PUBACK >= 0x80)


@dataclass(frozen=True)
class HookDone:
    """``violations.exec`` finished with one event (from the hook's thread)."""

    violation_id: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class DesiredState:
    """The named shadow's desired state (from /get/accepted at connect, or /update/delta), for the loop."""

    desired: Mapping[str, Any]  # get/accepted: its `state.desired` (whole); /update/delta: its `state` (only the
    # differing fields)
    version: int  # the shadow document's version
    complete: bool  # True: `desired` is the whole desired state (get); False: a delta


@dataclass(frozen=True)
class CollectorsDone:
    """Every collector started by the current round has returned (from the last one's worker thread)."""


class Signal(TextEnum):
    """The signals the service handles, by their name without ``SIG``."""

    TERM = "TERM"
    INT = "INT"
    HUP = "HUP"


@dataclass(frozen=True)
class SignalEvent:
    name: Signal


def drain(events: queue.SimpleQueue[object], limit: int) -> Iterator[object]:
    """What is queued on ``events`` now, one at a time (taken as the caller asks), at most ``limit``."""
    for _ in range(limit):
        try:
            yield events.get_nowait()
        except queue.Empty:
            return
