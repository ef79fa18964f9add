"""What the exec-collector scenarios share (exec_timeouts, exec_flood): a Sampler over N exec
collectors that run one shell command, and the count of the processes they left behind.

Each collector's environment carries a marker (``FAULT_MARKER``), so a survivor is found in /proc
whatever became of its parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator, List

from agent.collectors.build import build_collectors
from agent.collectors.sampler import Sampler
from agent.config.load import parse_config
from benchmarks.faults.harness import Scenario
from benchmarks.ours import quiet_logger


@dataclass
class ExecCollectors:
    sampler: Sampler
    left: List[int] = field(default_factory=list)  # pids left behind, known once the block has ended


@contextlib.contextmanager
def exec_collectors(sc: Scenario, count: int, command: str, timeout: str, settle: float = 0.0,
                    ) -> Iterator[ExecCollectors]:
    """A Sampler over ``count`` exec collectors running ``/bin/sh -c command`` for the block.

    Afterwards the sampler is closed and the processes still alive (after up to ``settle`` s: killpg
    is asynchronous) are ``sc.lost`` and the outcome "orphan processes".
    """
    marker = f"defender-fault-{uuid.uuid4().hex}"
    run = ExecCollectors(_sampler(marker, count, command, timeout))
    try:
        yield run
    finally:
        run.sampler.close()
    run.left = _marked_processes(marker, settle)
    sc.lost = len(run.left)
    sc.outcomes["orphan processes"] = len(run.left)


def _sampler(marker: str, count: int, command: str, timeout: str) -> Sampler:
    """``count`` exec collectors running ``/bin/sh -c command`` with ``timeout``, one number metric each."""
    state = tempfile.mkdtemp(prefix="defender-faults-")
    collectors = "".join(
        f"  - type: exec\n    name: exec_{i:03d}\n    timeout: {timeout}\n"
        f"    command: [/bin/sh, -c, {json.dumps(command)}]\n"
        f"    metric: m_{i:03d}\n    metric_type: number\n    env: {{FAULT_MARKER: {marker}}}\n"
        for i in range(count)
    )
    custom = "".join(f"  m_{i:03d}: {{type: number}}\n" for i in range(count))
    text = (
        "thing_name: faults\nmqtt: {endpoint: 127.0.0.1, cert: /x/c.pem, key: /x/k.pem, ca: /x/ca.pem}\n"
        f"report: {{interval: 1s}}\nstate_dir: {state}\ncustom_metrics:\n{custom}collectors:\n{collectors}"
    )
    config = parse_config(text, "faults.yaml")
    jobs = build_collectors(config, logger=quiet_logger(), persist_state=False)
    return Sampler(jobs, 1.0, config.custom_metrics, logger=quiet_logger())


def _marked_processes(marker: str, wait: float) -> List[int]:
    """Live (non-zombie) processes whose environment holds ``marker``, after up to ``wait`` s for them to go."""
    deadline = time.monotonic() + wait
    left = _marked(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked(marker)
    return left


def _marked(marker: str) -> List[int]:
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != b"Z":
            found.append(int(entry))
    return found
