"""`defender-agent values`: show the values AWS IoT stored for a thing and metric."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from agent.commands.aws_args import add_aws_arguments, settings_from_args
from agent.commands.common import load_from_args
from agent.commands.extras import require_boto3
from agent.commands.options import add_config_argument


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the values Device Defender stored for one metric of one thing "
        "(list_metric_values): a custom metric name or a standard one such as aws:all-bytes-out."
    )
    add_config_argument(parser)
    add_aws_arguments(parser)
    parser.add_argument("--thing", metavar="NAME", help="thing name (default: thing_name from the config)")
    parser.add_argument("--metric", "-m", required=True, metavar="NAME", help="metric name, e.g. cpu_usage")
    when = parser.add_argument_group("time range", "relative (90s, 15m, 2h, 1d, 1w before now) or ISO 8601")
    when.add_argument("--since", metavar="AGE", help="start this long ago (default: 1h); same as --start")
    when.add_argument("--start", metavar="TIME", help="start of the range")
    when.add_argument("--end", metavar="TIME", default="now", help="end of the range (default: now)")
    parser.add_argument("--dimension", metavar="NAME", help="only values matching this dimension")
    parser.add_argument("--not-in", action="store_true", help="with --dimension: values NOT matching it")
    parser.add_argument("--max", type=_positive, metavar="N", help="show at most N values (oldest first)")
    parser.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)"
    )


def run(args: argparse.Namespace) -> int:
    require_boto3("values")
    from agent.control import values as cv
    from agent.control.aws import RetryPolicy, make_client, quiet_sdk_logging
    from agent.errors import ControlPlaneError

    quiet_sdk_logging()
    if args.since and args.start:
        raise ControlPlaneError("give --since or --start, not both")
    if args.not_in and not args.dimension:
        raise ControlPlaneError("--not-in needs --dimension NAME")
    thing = args.thing or load_from_args(args).thing_name
    now = dt.datetime.now(dt.timezone.utc)
    try:
        start = cv.parse_time(args.since or args.start or "1h", now)
        end = cv.parse_time(args.end, now)
    except ValueError as exc:
        raise ControlPlaneError(f"time range: {exc}") from None
    if end <= start:
        raise ControlPlaneError(
            f"time range: the end ({end.isoformat()}) is not after the start ({start.isoformat()})"
        )
    query = cv.Query(thing, args.metric, start, end, args.dimension, args.not_in, args.max)
    data = cv.fetch(make_client(settings_from_args(args)), query, RetryPolicy())
    if args.format == "json":
        sys.stdout.write(cv.render_json(query, data))
    elif args.format == "csv":
        sys.stdout.write(cv.render_csv(data))
    else:
        sys.stdout.write(cv.render_table(query, data))
    if not data and args.format != "table":
        print(cv.empty_message(query), file=sys.stderr)
    return 0
