"""Events handed from awscrt's threads (and signal handlers) to the scheduler loop.

Producers only construct one of these and ``put`` it on a ``queue.SimpleQueue``
(whose ``put`` is reentrant, so a signal handler may use it too). Only the
scheduler loop reads them and changes state.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class PublishDone:
    report_id: int
    ok: bool
    error: str = ""


class Signal(TextEnum):
    """The signals the service handles, by their name without ``SIG``."""

    TERM = "TERM"
    INT = "INT"
    HUP = "HUP"


@dataclass(frozen=True)
class SignalEvent:
    name: Signal
