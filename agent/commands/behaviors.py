"""`defender-agent behaviors`: security-profile behaviors evaluated on the gateway.

``pull`` reads a security profile from AWS IoT (describe_security_profile) and writes its behaviors as a
``behaviors:`` block for agent.yaml, naming each behavior the device cannot evaluate (those are written
commented out, under the reason). Without ``--security-profile`` it lists the profiles to pick from.
"""

from __future__ import annotations

import argparse
import sys
from typing import List

from agent.commands.aws_args import add_aws_arguments, settings_from_args
from agent.commands.extras import require_boto3
from agent.commands.options import add_config_argument

EX_USAGE = 2  # as argparse exits for a missing choice


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Security-profile behaviors evaluated on the gateway: `pull` turns a Device Defender security "
        "profile into the config's behaviors: block; `test` judges the config's behaviors on one fresh sample."
    )
    sub = parser.add_subparsers(dest="behaviors_command", metavar="SUBCOMMAND")
    sub.required = True
    pull = sub.add_parser(
        "pull",
        help="write a security profile's behaviors as YAML for the config (needs the bootstrap extra: boto3)",
        description=(
            "Read a security profile (describe_security_profile) and write its behaviors as a behaviors: "
            "block ready for agent.yaml. Behaviors the device cannot evaluate (cloud-side metrics, "
            "statistical thresholds, ML Detect) are written commented out, each under its reason, and named "
            "on stderr. Without --security-profile, list the profiles (exit status 2)."
        ),
    )
    pull.add_argument(
        "--security-profile", metavar="NAME", help="the profile to pull (without it: list the profiles)"
    )
    pull.add_argument(
        "--output", "-o", metavar="PATH", help="write the YAML to PATH (default: standard output)"
    )
    add_aws_arguments(pull)
    test = sub.add_parser(
        "test",
        help="evaluate the config's behaviors once against a fresh sample and print each verdict",
        description=(
            "Sample every collector once (as `once` does; nothing is sent, no state is written) and judge each "
            "behavior of the config on that one datapoint: normal, VIOLATED or no data. Exit 0 when none is "
            "violated, 1 when one is, 78 for a config error. The running agent also counts "
            "consecutiveDatapointsToAlarm and, for byte and packet counts, sums the durationSeconds window (port "
            "counts are judged on the newest datapoint, as here); one sample cannot."
        ),
    )
    add_config_argument(test)
    test.add_argument("--baseline", type=float, default=1.0, metavar="SECONDS",
                      help="pause before the sample for collectors that report deltas (default 1)")


def run(args: argparse.Namespace) -> int:
    if args.behaviors_command == "test":
        from agent.commands import behaviors_test  # the collectors and the loader, which pull never needs

        return behaviors_test.run(args)
    if args.behaviors_command != "pull":  # argparse refuses other subcommands first
        raise AssertionError(f"unknown behaviors subcommand {args.behaviors_command!r}")
    require_boto3("behaviors pull")
    from agent.control import profiles
    from agent.control.aws import RetryPolicy, make_client, quiet_sdk_logging

    quiet_sdk_logging()
    client = make_client(settings_from_args(args))
    policy = RetryPolicy()
    if not args.security_profile:
        return _pick_one(profiles.list_profile_names(client, policy))
    profile = profiles.fetch_profile(client, args.security_profile, policy)
    behaviors = list(profile.get("behaviors") or [])
    notes = profiles.device_notes(behaviors)
    name = profile.get("securityProfileName", args.security_profile)
    text = profiles.behaviors_yaml(
        name, behaviors, notes, arn=profile.get("securityProfileArn"), version=profile.get("version")
    )
    for index, reason in sorted(notes.items()):
        print(
            f"Behavior {behaviors[index].get('name')!r} cannot be evaluated on the device (commented out): {reason}",
            file=sys.stderr,
        )
    if not args.output:
        sys.stdout.write(text)
        return 0
    with open(args.output, "w", encoding="utf-8") as out:
        out.write(text)
    print(
        f"Wrote {len(behaviors)} behavior(s) of security profile {name} to {args.output}: "
        f"{len(behaviors) - len(notes)} evaluated on the device, {len(notes)} commented out.",
        file=sys.stderr,
    )
    return 0


def _pick_one(names: List[str]) -> int:
    """The profile names on stdout and how to pick one on stderr; exit status 2 (nothing was pulled)."""
    if not names:
        print("No security profiles in this account and region; nothing to pull.", file=sys.stderr)
        return EX_USAGE
    for name in names:
        print(name)
    print(f"{len(names)} security profile(s); pick one with --security-profile NAME.", file=sys.stderr)
    return EX_USAGE

