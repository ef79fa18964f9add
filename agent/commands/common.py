"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
from typing import Optional

from agent.config.load import load_config
from agent.config.model import Config
from agent.config.source import config_path
from agent.errors import ConfigError
from agent.security import audit_files


def load_from_args(args: argparse.Namespace) -> Config:
    path: Optional[str] = getattr(args, "config", None)
    return load_config(config_path(path))


def load_audited(args: argparse.Namespace) -> Config:
    """The config, after the ownership and mode checks on the files it names (ConfigError otherwise).

    The one way `check`, `run` and `run`'s SIGHUP reload load it: a reload is refused for what a start refuses.
    """
    config = load_from_args(args)
    problems = audit_files(config)
    if problems:
        raise ConfigError(problems)
    return config
