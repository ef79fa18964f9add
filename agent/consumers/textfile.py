"""A textfile sink: the round in Prometheus text format, written atomically once the round is committed.

Nothing goes into the outbox: the file is written after the commit (so it never shows a round
that a failed commit undid), rendered by :func:`agent.sinks.textfile.render` with the agent's
health (:class:`agent.sinks.health.Health`). A write that fails is counted ``failed`` and logged
once per streak, never raised; the other consumers go on.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Mapping, Optional, Tuple

from agent.config.model import Config, SinkConfig, SinkType
from agent.consumers.base import Consumer, Context, Round, Step
from agent.outbox.messages import MessageOutcome, Messages, sink_counts
from agent.sinks.health import SinkHealth
from agent.sinks.textfile import TextfileError, render, write_atomic


class TextfileConsumer(Consumer):
    kind = SinkType.TEXTFILE

    def __init__(self, ctx: Context, sink: SinkConfig, config: Config) -> None:
        self.ctx = ctx
        self.sink = sink
        self.config = config
        self.name = sink.name
        self.messages = Messages(ctx.outbox)  # its counters (sink.NAME.delivered|failed)
        self.failing = False

    def store(self, rnd: Round) -> Optional[Step]:
        return lambda: self.write(rnd)

    def write(self, rnd: Round) -> None:
        path = self.sink.path
        assert path is not None  # the loader requires it for a textfile sink
        try:
            try:
                text = render(rnd.checked, rnd.health, self.config.custom_metrics)
            except ValueError as exc:  # a value that does not fit its kind: a bug, but only this sink's round
                raise TextfileError(f"cannot render round {rnd.report_id}: {exc}") from exc
            write_atomic(path, text)
        except TextfileError as exc:
            self.messages.count(self.name, MessageOutcome.FAILED)
            if not self.failing:
                self.failing = True
                self.ctx.log.error("Sink %r: %s%s; the other sinks go on, and the file is written again every "
                                   "round (logged once until it works)", self.name, exc, _hint(exc, path))
            return
        self.messages.count(self.name, MessageOutcome.DELIVERED)
        if self.failing:
            self.failing = False
            self.ctx.log.info("Sink %r: wrote %s again", self.name, path)

    def prepare(self, config: Config) -> Step:
        sink = next(s for s in config.sinks if s.name == self.name)

        def adopt() -> None:
            self.config, self.sink = config, sink

        return adopt

    def health(self, counters: Mapping[str, int]) -> Tuple[SinkHealth, ...]:
        counts = sink_counts(counters, self.name)
        return (SinkHealth(self.name, "textfile", counts[MessageOutcome.DELIVERED], counts[MessageOutcome.FAILED],
                           counts[MessageOutcome.DROPPED], 0),)


def _hint(exc: TextfileError, path: Path) -> str:
    """What to do about a directory the service may not write: the unit's ProtectSystem=strict makes every
    directory but its state directory read-only, so the textfile's directory must be named in a drop-in."""
    if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ""
    return (f" (under systemd: `systemctl edit defender-agent`, add [Service] ReadWritePaths={path.parent}, "
            "and make that directory writable by the defender-agent user; docs/INSTALL.md)")
