"""Build the configured collectors: ``build_collectors(config) -> [CollectorJob]`` for the :class:`Sampler`.

Every problem (an unsafe exec program, a plugin that fails to load, builds
something that is not a collector, or raises) becomes a :class:`ConfigError`
naming the collector's YAML path and, for plugins, the entry point and its
distribution. All problems are reported together; collectors built before a
problem was found are closed.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from agent.collectors.builtin import default_registry
from agent.collectors.contract import BuildContext, Collector, close_collector
from agent.collectors.readcache import ReadCache
from agent.collectors.registry import Registry
from agent.collectors.sampler import CollectorJob, rounds_between
from agent.config.model import Config
from agent.errors import AgentError, ConfigError, ConfigProblem, PluginError
from agent.schema import join


def build_collectors(
    config: Config,
    registry: Optional[Registry] = None,
    logger: Optional[logging.Logger] = None,
    *,
    persist_state: bool = True,
) -> List[CollectorJob]:
    """One fresh collector per ``collectors:`` entry, in config order.

    ``persist_state=False`` lets a one-off run (``once``) read state files (the
    network counters) without writing them, so the daemon's next delta stays whole.
    Collector loggers are ``agent.collectors.<name>`` (children of ``logger`` when given).
    """
    registry = registry or default_registry()
    base = logger or logging.getLogger("agent.collectors")
    problems: List[ConfigProblem] = []
    jobs: List[CollectorJob] = []
    reads = ReadCache()  # one per build: its collectors share the socket table within a round
    for cfg in config.collectors:
        where = cfg.path or cfg.name
        try:
            spec = registry.get(cfg.type)
        except PluginError as exc:
            problems.append(ConfigProblem(config.source, join(where, "type"), str(exc)))
            continue
        if spec is None:
            problems.append(
                ConfigProblem(config.source, join(where, "type"), f"unknown collector type {cfg.type!r}")
            )
            continue
        ctx = BuildContext(
            name=cfg.name,
            state_dir=config.state_dir,
            timeout=cfg.timeout,
            report_interval=config.report.interval,
            max_list_items=config.report.max_list_items,
            logger=base.getChild(cfg.name),
            custom_metric_types=config.custom_metric_types,
            persist_state=persist_state,
            reads=reads,
            sample_interval=rounds_between(cfg.interval, config.report.interval) * config.report.interval,
        )
        plugin = "" if spec.origin == "built-in" else f" ({spec.origin})"
        try:
            collector = spec.build(ctx, cfg.options)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except AgentError as exc:
            problems.append(ConfigProblem(config.source, where, f"collector {cfg.name!r}{plugin}: {exc}"))
            continue
        except Exception as exc:
            problems.append(
                ConfigProblem(
                    config.source,
                    where,
                    f"collector type {cfg.type!r}{plugin} failed to build: {type(exc).__name__}: {exc}",
                )
            )
            continue
        if not isinstance(collector, Collector) or not callable(getattr(collector, "collect", None)):
            problems.append(
                ConfigProblem(
                    config.source,
                    where,
                    f"collector type {cfg.type!r}{plugin} built a {type(collector).__name__}, "
                    "which does not fit the Collector protocol (a `name` attribute and a `collect()` method)",
                )
            )
            continue
        jobs.append(
            CollectorJob(
                name=cfg.name,
                type=cfg.type,
                collector=collector,
                timeout=cfg.timeout,
                interval=cfg.interval,
                emits=dict(spec.emits(cfg.options)),
                origin=spec.origin,
                reads=reads,
            )
        )
    if problems:
        for job in jobs:
            close_collector(job.collector)
        raise ConfigError(problems)
    return jobs
