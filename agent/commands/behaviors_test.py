"""`defender-agent behaviors test`: the config's behaviors judged once, on one fresh sample (the `once` of behaviors).

Nothing is sent and no state is written. One datapoint cannot show what the running agent
adds (consecutiveDatapointsToAlarm; durationSeconds, which sums a byte or packet metric's deltas over
its window and leaves a port count judged on its newest datapoint): each verdict line says so.
Exit 0 when no behavior is violated, 1 when one is.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import List

from agent.behaviors.evaluate import Datapoint, judged_value, violates_value
from agent.behaviors.model import SUMMED_METRICS, Behavior
from agent.commands.common import load_from_args
from agent.commands.once import sample_once
from agent.report.cloud import checked_round


def run(args: argparse.Namespace) -> int:
    """One sample, every behavior judged on it; a table of verdicts on stdout."""
    config = load_from_args(args)
    if not config.behaviors:
        print(f"{config.source}: no behaviors configured; nothing to test")
        return 0
    encoded = sample_once(config, args.baseline)
    now_ms = int(time.time() * 1000)
    values = checked_round(config.thing_name, encoded.document, encoded.report_id, now_ms,
                           config.custom_metric_types).values
    width = max(len(b.name) for b in config.behaviors)
    violated = 0
    for behavior in config.behaviors:
        measured = values.get(behavior.metric)
        crit = behavior.criteria
        rule = f"{behavior.metric} {crit.comparison_operator} {json.dumps(crit.value, separators=(',', ':'))}"
        value = judged_value(behavior, [Datapoint(now_ms, measured)], now_ms) if measured is not None else None
        verdict = None if value is None else violates_value(behavior, value)
        if verdict is None:
            shown, detail = "no data", "(the metric is not in this sample: no collector emits it, or it failed)"
        else:
            shown = "VIOLATED" if verdict else "normal"
            detail = f"value {json.dumps(value, separators=(',', ':'))}"
            violated += bool(verdict)
        notes = run_notes(behavior)
        print(f"{behavior.name:<{width}}  {shown:<8}  {rule}  {detail}" + (f" ({'; '.join(notes)})" if notes else ""))
    print(f"{len(config.behaviors)} behavior(s): {violated} violated, one sample of thing {config.thing_name!r}")
    return 1 if violated else 0


def run_notes(behavior: Behavior) -> List[str]:
    """What the running agent does with ``behavior`` that one sample cannot show (agent.behaviors.evaluate)."""
    crit = behavior.criteria
    notes = []
    if crit.consecutive_to_alarm > 1:
        notes.append(f"the agent alarms after {crit.consecutive_to_alarm} in a row")
    if crit.duration_seconds and behavior.metric in SUMMED_METRICS:
        notes.append(f"the agent sums the deltas of a {crit.duration_seconds} s window; this is one report period")
    elif crit.duration_seconds:
        notes.append(f"durationSeconds {crit.duration_seconds}: the agent judges the newest datapoint, as here; "
                     "it sums a window only for byte and packet counts")
    if behavior.suppress_alerts:
        notes.append("suppressAlerts")
    return notes
