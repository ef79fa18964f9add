"""What the loop tells systemd and ``status`` about itself: watchdog pings, STATUS= lines, outbox meta."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from agent.mqtt.link_state import LinkPhase
from agent.notify import Notifier

NO_WATCHDOG_RECHECK = 3600.0  # without a watchdog the deadline is only a wake-up bound


def status_line(last_report_id: Optional[int], pending: int, connection: LinkPhase) -> str:
    """The short ``STATUS=`` text: ``last report 17; 1 pending; connected``."""
    last = f"last report {last_report_id}" if last_report_id else "no report yet"
    return f"{last}; {pending} pending; {connection}"


def meta_values(collectors: Mapping[str, Mapping[str, Any]], connection: LinkPhase, now: float,
                **extra: object) -> Dict[str, object]:
    """The status values stored in the outbox's meta table (read by ``defender-agent status``)."""
    values: Dict[str, object] = dict(extra)
    values["collectors"] = {k: dict(v) for k, v in collectors.items()}
    values["connection"] = connection.value  # a plain str in the meta table, not the enum
    values["updated_at"] = now
    return values


class Heartbeat:
    """Sends ``WATCHDOG=1`` every half watchdog interval and the current status line (deduplicated by the notifier)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.next_at = 0.0

    def start(self, now: float) -> None:
        self.next_at = now

    def beat(self, now: float, status: str) -> None:
        interval = self.notifier.watchdog_interval
        if interval and now >= self.next_at:
            self.notifier.watchdog()
            self.next_at = now + interval
        elif not interval:
            self.next_at = now + NO_WATCHDOG_RECHECK
        self.notifier.status(status)

