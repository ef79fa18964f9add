"""defender-agent's own sampling path, as the worker and the benchmarks drive it.

``make_sampler(fmt, key_names)`` returns a function that runs one report cycle
without delivery: every configured collector, then the report builder (checks
and encoding). It is built from the real config loader, registry and builder.
"""

from __future__ import annotations

import logging
from typing import Callable

AGENT_YAML = """\
thing_name: bench-gateway
mqtt:
  endpoint: 127.0.0.1
  cert: /nonexistent/device.pem
  key: /nonexistent/device.key
  ca: /nonexistent/ca.pem
report:
  format: {fmt}
  key_names: {key_names}
  interval: 1s
  max_list_items: 5000
state_dir: {state_dir}
custom_metrics:
  cpu_usage: number
collectors:
{collectors}
"""

STANDARD_COLLECTORS = "  - type: standard\n"


class NotAvailable(RuntimeError):
    """The agent on this branch does not have the pieces this benchmark needs yet."""


def make_sampler(fmt: str, key_names: str, custom_metrics: int = 0) -> Callable[[], bytes]:
    raise NotAvailable("the collectors and the Sampler are not on this branch yet (issue: collectors)")


def quiet_logger() -> logging.Logger:
    log = logging.getLogger("bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log
