"""`defender-agent run`: the service. Samples on schedule, delivers over MQTT mTLS, answers systemd."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any

from agent.commands.common import load_audited
from agent.commands.options import add_config_argument
from agent.config.model import Config
from agent.errors import AgentError
from agent.events import Signal, SignalEvent
from agent.notify import Notifier

if TYPE_CHECKING:  # the scheduler (and awscrt behind it) is imported when `run` runs, not for --help
    from agent.scheduler import Service


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run until SIGTERM/SIGINT. SIGHUP reloads the config (an invalid one keeps the old running). "
        "Speaks the systemd notify protocol when NOTIFY_SOCKET is set."
    )
    add_config_argument(parser)
    parser.add_argument("--reports", type=int, metavar="N", help="stop once N reports were built and settled")


def run(args: argparse.Namespace) -> int:
    from agent.behaviors.coverage import cloud_names
    from agent.collectors.builtin import default_registry
    from agent.collectors.sampler import Sampler
    from agent.commands.check import behavior_warnings
    from agent.remote.engine import Remote
    from agent.sampling import build_source
    from agent.scheduler import Service

    # The remote keys the shadow set last apply now, before the service connects (docs/FLEET.md).
    base = load_audited(args)
    remote = Remote(base.state_dir, logging.getLogger("agent.remote"))
    config, adopt = remote.rebase(base)
    adopt()
    logging.getLogger().setLevel(config.log_level.value.upper())
    log = logging.getLogger("agent")

    def source(cfg: Config) -> Sampler:
        """The collectors (at start, and on a reload that changes them), and the behaviors none of them feeds
        (the warnings `check` prints, one journal line each)."""
        sampler = build_source(cfg, logging.getLogger("agent.collectors"))
        try:
            for warning in behavior_warnings(cfg, cloud_names(sampler.emits()), default_registry()):
                log.warning("%s", warning)
        except (AgentError, OSError) as exc:  # the file changed under us: the warnings wait for the next load
            log.debug("No behavior warnings: %s", exc)
        return sampler

    service = Service(
        config,
        source_factory=source,
        logger=log,
        reload_config=lambda: load_audited(args),  # a reload is checked as a start is
        notifier=Notifier(logger=logging.getLogger("agent.notify")),
        max_reports=args.reports,
        remote=remote,
    )
    return serve(service)


def serve(service: Service) -> int:
    """Route SIGTERM/SIGINT/SIGHUP to the loop as events, then run it."""

    def on_signal(signum: int, frame: Any) -> None:
        service.events.put(SignalEvent(Signal(signal.Signals(signum).name[3:])))

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return service.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
