"""The AWS options shared by the control-plane commands (`bootstrap`, `values`)."""

from __future__ import annotations

import argparse

from agent.control.aws import AwsSettings


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS", "default: the standard AWS_* environment variables and ~/.aws")
    group.add_argument(
        "--profile", metavar="NAME", help="named profile from ~/.aws/config (default: $AWS_PROFILE)"
    )
    group.add_argument(
        "--region", metavar="REGION", help="AWS region (default: $AWS_REGION or the profile's)"
    )
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="IoT control-plane endpoint, e.g. the local emulator http://127.0.0.1:PORT (default: AWS)",
    )


def settings_from_args(args: argparse.Namespace) -> AwsSettings:
    return AwsSettings(profile=args.profile, region=args.region, endpoint_url=args.endpoint_url)
