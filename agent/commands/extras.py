"""Optional dependencies: the commands that need one say so in one line instead of a traceback."""

from __future__ import annotations

import importlib.util

from agent.errors import MissingExtra


def require_boto3(command: str, program: str = "defender-agent") -> None:
    """Raise :class:`MissingExtra` unless boto3 (and so botocore) can be imported.

    Only looks the packages up (no import), so the check itself costs nothing.
    """
    missing = [name for name in ("boto3", "botocore") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"`{program} {command}` needs {' and '.join(missing)}, which the base install leaves out: "
            "pip install 'defender-agent[bootstrap]' (Debian, Raspberry Pi OS: apt install python3-boto3)"
        )
