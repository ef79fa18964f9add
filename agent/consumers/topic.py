"""A topic sink: one QoS 1 message per round on a topic of the user's choice (or Basic Ingest).

In the round's transaction the message (the flat document, or the report's own bytes with
``document: report``; with ``document: per-metric`` one message per metric, each on its own
topic, :mod:`agent.sinks.per_metric`) enters the outbox's ``messages`` table under the sink's ``max_pending``
and the outbox's bound in bytes; the shared lane (:class:`agent.consumers.queue.MessageSender`)
publishes it on the same mTLS connection and its PUBACK ends it ``delivered`` (or ``failed``
when the broker refuses it). A retired topic sink (gone from the config) stores nothing new and
drains what it still holds.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from agent.config.model import Config, SinkConfig, SinkType, TopicDocument
from agent.consumers.base import Consumer, Context, Round, Step
from agent.consumers.queue import MessageQueue
from agent.outbox.messages import MessageOutcome, Messages
from agent.sinks.health import SinkHealth
from agent.sinks.per_metric import encode_per_metric, metric_units
from agent.sinks.topics import render_topic


class TopicConsumer(Consumer):
    kind = SinkType.TOPIC

    def __init__(self, ctx: Context, sink: Optional[SinkConfig], config: Config, name: str = "") -> None:
        """``sink`` None: a retired queue of that ``name`` (a sink gone from the config) that only drains."""
        self.ctx = ctx
        self.sink = sink
        self.config = config
        self.name = sink.name if sink is not None else name
        self.retired = sink is None
        self.queue = MessageQueue(self.name, Messages(ctx.outbox), ctx.admission, ctx.log)
        self.units = _units(config)  # the CloudWatch unit of each metric (a per-metric sink's messages)

    def store(self, rnd: Round) -> Optional[Step]:
        sink = self.sink
        if sink is None:
            return None
        assert sink.topic is not None  # the loader requires it for a topic sink
        thing = rnd.checked.thing_name
        if sink.document is TopicDocument.PER_METRIC:
            batch = [(render_topic(sink.topic, thing, metric), body)
                     for metric, body in encode_per_metric(rnd.checked, self.units)]
            self.queue.add_many(batch, rnd.wall, sink.max_pending)
            return None
        payload = rnd.report.payload if sink.document is TopicDocument.REPORT else rnd.flat
        self.queue.add(render_topic(sink.topic, thing), payload, rnd.wall, sink.max_pending)
        return None

    def prepare(self, config: Config) -> Step:
        sink = next((s for s in config.sinks if s.name == self.name), None)
        units = _units(config)

        def adopt() -> None:
            self.config, self.sink, self.units = config, sink, units
            self.retired = sink is None

        return adopt

    def queues(self) -> Tuple[str, ...]:
        return (self.name,)

    def pending(self) -> int:
        return self.queue.pending()

    def health(self, counters: Mapping[str, int]) -> Tuple[SinkHealth, ...]:
        if self.sink is None:
            return ()
        counts = self.queue.counts(counters)
        return (SinkHealth(self.name, "topic", counts[MessageOutcome.DELIVERED], counts[MessageOutcome.FAILED],
                           counts[MessageOutcome.DROPPED], self.queue.pending()),)


def _units(config: Config) -> Dict[str, str]:
    return metric_units({name: metric.unit for name, metric in config.custom_metrics.items()})
