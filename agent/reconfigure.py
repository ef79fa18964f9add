"""A new config, made whole before anything runs on it: the first half of the loop's all-or-nothing apply.

:func:`make_change` builds everything a new config needs (the consumers' checks and their adopt step,
the report builder, new collectors when they or the interval changed, a new link when the endpoint,
identity or thing name changed) and raises if any of it fails, having closed what it had built; the
running parts are not touched. The scheduler then swaps them in (:meth:`agent.scheduler.Service._apply`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from agent.config.model import Config
from agent.consumers.base import Step
from agent.consumers.registry import ConsumerSet
from agent.mqtt.link import Link
from agent.mqtt.session import Session
from agent.reload import Reload, Section, compare
from agent.remote.engine import Make
from agent.report.builder import ReportBuilder
from agent.sampling import SampleSource, rounds_of


@dataclass(frozen=True)
class Change:
    reload: Reload
    adopt: Step  # the consumers take the new config (writes nothing)
    adopted: Step  # what the maker of the config does once it runs
    builder: ReportBuilder
    source: Optional[SampleSource]  # None: the running collectors stay
    link: Optional[Link]  # the new link, built not started; meaningful when the connection changes

    @property
    def config(self) -> Config:
        return self.reload.config

    @property
    def reconnects(self) -> bool:
        return self.reload.touches(Section.MQTT, Section.THING_NAME)


def make_change(running: Config, make: Make, consumers: ConsumerSet, session: Session,
                source_factory: Callable[[Config], SampleSource], clock: Callable[[], float],
                log: logging.Logger, discard: Callable[[SampleSource], object]) -> Change:
    """Everything the config from ``make`` needs, or the exception that refuses it (``discard`` closes new
    collectors built before the failure)."""
    source = None
    try:
        new, adopted = make()
        reload = compare(running, new)
        new = reload.config
        adopt = consumers.prepare(new)
        builder = ReportBuilder(new, log.getChild("report"))
        # Collectors are built for one sampling interval (network_stats' max_span is 1.5 of it): a new
        # interval rebuilds them too, else every delta of a longer interval is refused until a restart.
        if reload.touches(Section.COLLECTORS, Section.CUSTOM_METRICS) or new.report.interval != running.report.interval:
            source = rounds_of(source_factory(new), clock)
        link = session.prepare(new) if reload.touches(Section.MQTT, Section.THING_NAME) else None
    except BaseException:
        if source is not None:
            discard(source)
        raise
    return Change(reload, adopt, adopted, builder, source, link)


def refusal(exc: BaseException) -> str:
    """An exception that refused a change, as one journal line."""
    return str(exc).replace("\n", "; ") or type(exc).__name__
