"""`defender-agent bootstrap`: register the config's custom metrics with AWS IoT (idempotent)."""

from __future__ import annotations

import argparse
import sys

from agent.commands.aws_args import add_aws_arguments, settings_from_args
from agent.commands.common import load_from_args
from agent.commands.extras import require_boto3
from agent.commands.options import add_config_argument
from agent.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Register every custom metric of the config with AWS IoT Device Defender. Safe to run on "
        "every boot: existing metrics are left alone, display names are updated, a changed type is an "
        "error unless --replace-changed-types. Exit 0 when everything is in place, 1 otherwise. "
        "Without a defender sink (sinks:) there is nothing to register: it says so and exits 0."
    )
    add_config_argument(parser)
    add_aws_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also delete cloud custom metrics that this config no longer declares (never by default)",
    )
    parser.add_argument(
        "--replace-changed-types",
        action="store_true",
        help="delete and recreate a metric whose type changed (its stored values are lost); "
        "refused while a security profile uses it",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_from_args(args)
    except ConfigError:
        require_boto3("bootstrap")  # without boto3 that is the first thing to fix, as before sinks existed
        raise
    if config.defender is None:  # the definitions are Device Defender's alone; no other sink reads them
        print(f"{config.source}: no defender sink, so custom metric definitions are not needed "
              "(only Device Defender reads them); nothing to do")
        return 0
    require_boto3("bootstrap")
    from agent.control import bootstrap as bs
    from agent.control.aws import RetryPolicy, make_client, quiet_sdk_logging
    from agent.control.plan_text import describe_step, summary

    quiet_sdk_logging()
    desired = [bs.Definition.from_config(m) for m in config.custom_metrics.values()]
    client = make_client(settings_from_args(args))
    policy = RetryPolicy()
    state = bs.gather(client, desired, policy, args.replace_changed_types, args.prune)
    steps = bs.plan(desired, state, args.replace_changed_types, args.prune)
    if not steps:
        print(f"{config.source}: no custom metrics declared; nothing to do")
        return 0
    if args.dry_run:
        print(f"Plan for {len(steps)} custom metric(s) (dry run, nothing changed):")
        for step in steps:
            print(f"  {describe_step(step)}")
        return 1 if any(s.fails for s in steps) else 0
    outcomes = bs.execute(client, steps, policy)
    for outcome in outcomes:
        if outcome.ok:
            line = describe_step(outcome.step)
            done = "" if outcome.step.action is bs.Action.UNCHANGED else f" ({outcome.message})"
            print(f"  {line}{done}")
        else:
            print(f"  {'FAILED':<10} {outcome.step.name}: {outcome.message}", file=sys.stdout)
    text, ok = summary(outcomes)
    print(f"Bootstrap {'done' if ok else 'incomplete'}: {text}")
    return 0 if ok else 1
