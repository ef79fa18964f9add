"""`defender-agent validate FILE...`: check report files against the Device Defender rules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.report.document import DecodeError, decode, key_style, validate_document


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check Device Defender report files. The encoding (JSON/CBOR) and key names "
        "(long/short) are detected. Every violation is listed with its JSON path. "
        "Exit 0 when all files are valid, 1 otherwise."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="report file; - reads standard input")
    parser.add_argument(
        "--max-list-items",
        type=int,
        default=None,
        metavar="N",
        help="also flag lists longer than N (the agent's report.max_list_items)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only invalid files")


def run(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        try:
            payload = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}")
            failed += 1
            continue
        try:
            document, fmt = decode(payload)
        except DecodeError as exc:
            print(f"{name}: INVALID: {exc}")
            failed += 1
            continue
        violations = validate_document(document, args.max_list_items, payload_size=len(payload))
        style = key_style(document) if isinstance(document, dict) else None
        if violations:
            failed += 1
            print(f"{name}: INVALID ({fmt}, {style or 'unknown'} keys, {len(violations)} violation(s))")
            for violation in violations:
                print(f"  {violation}")
        elif not args.quiet:
            print(f"{name}: valid ({fmt}, {style} keys, {len(payload)} bytes)")
    return 1 if failed else 0
