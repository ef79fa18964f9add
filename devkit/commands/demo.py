"""`defender-agent demo`: the agent against a private mTLS broker and a local responder (`make demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.commands.extras import require_boto3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate a throwaway CA and certificates, start mosquitto with mutual TLS on a free loopback "
        "port and the local Device Defender responder, run the agent for a few reports, print each outcome and "
        "`status`, and clean up. Exit 0 only when every report was accepted."
    )
    parser.add_argument("--reports", type=int, default=3, help="how many reports (default 3)")
    parser.add_argument("--interval", type=int, default=2, help="seconds between reports (default 2)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--aws-cli", metavar="PATH", type=Path,
                        help="the AWS CLI the operator's step runs (default: beside this Python, else on PATH)")


def run(args: argparse.Namespace) -> int:
    require_boto3("demo", "python -m devkit")
    from devkit.demo import run_demo

    return run_demo(args.reports, args.interval, Path(args.keep).resolve() if args.keep else None,
                    aws_cli=args.aws_cli)  # its config names absolute paths
