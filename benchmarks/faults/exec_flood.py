"""Scenario ``exec_flood``: an exec collector whose program prints 1 GiB; the run is cut at max_output
(default 64 KiB), the program killed, and the agent's RSS (peak included) grows under 10 MB.

Overlaps tests/collectors/test_exec_collector.py::test_huge_stdout_is_capped_and_the_run_killed
(the cut, with max_output 1000); what this adds is the memory bound, at the default max_output.
"""

from __future__ import annotations

import contextlib
import gc

from benchmarks.faults.exec_sampler import exec_collectors
from benchmarks.faults.harness import Scenario, scenario

GOAL = (  # the record's promise; {count} is the number of runs
    "{count} runs of an exec collector whose program prints 1 GiB (max_output at its default 64 KiB): agent "
    "RSS grows under 10 MB, the program is killed"
)

FLOOD = "head -c 1073741824 /dev/zero | tr '\\0' 7"  # 1 GiB of digits, as fast as it can


def _status_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux: "5" into clear_refs), so the peak is this scenario's."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")


@scenario("exec collector printing 1 GiB", (3, 10), GOAL)
def run(sc: Scenario, count: int) -> None:
    with exec_collectors(sc, 1, FLOOD, "10s") as execs:
        sampler = execs.sampler
        sampler.sample_all()  # first run: imports, thread and selector set-up are not the flood's cost
        gc.collect()
        _reset_peak_rss()
        before, hwm_before = _status_kib("VmRSS"), _status_kib("VmHWM")
        for _ in range(count):
            round_ = sampler.sample_all()
            sc.runs += 1
            reasons = [f.reason for f in round_.failures]
            if reasons and "max_output" in reasons[0]:
                sc.count("cut at max_output")
            else:
                sc.fail(f"expected a max_output failure, got samples={round_.samples} failures={reasons}")
        gc.collect()
        growth = max(_status_kib("VmRSS"), _status_kib("VmHWM")) - before
        sc.outcomes["RSS growth (peak) KiB"] = growth
        sc.outcomes["RSS before KiB"] = before
        sc.outcomes["peak RSS before KiB"] = hwm_before
        if growth / 1024 >= 10:
            sc.fail(f"RSS grew {growth / 1024:.1f} MB (limit 10 MB)")
