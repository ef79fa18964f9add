"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
from typing import Optional

from agent.config import Config, load_config
from agent.config.load import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )


def load_from_args(args: argparse.Namespace) -> Config:
    path: Optional[str] = getattr(args, "config", None)
    return load_config(config_path(path))
