"""Command-line options several commands share, importing nothing heavy (`status` uses them)."""

from __future__ import annotations

import argparse

from agent.config.source import CONFIG_ENV, DEFAULT_CONFIG_PATH


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
