"""`shadow:` in agent.yaml: absent means no shadow; the name follows AWS IoT's named-shadow rule (1 to 64 of
A-Z a-z 0-9 : _ -, SPEC.md "Named shadow"); a problem names file, line and YAML path, and `check` exits 78."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.load import parse_config
from agent.config.model import ShadowConfig
from tests.config.test_load import MINIMAL, problems
from tests.procs import plain_env

BASE = MINIMAL


def test_absent_or_empty_key_means_no_shadow() -> None:
    assert parse_config(BASE).shadow is None
    assert parse_config(BASE + "shadow:\n").shadow is None


def test_defaults_and_given_values() -> None:
    assert parse_config(BASE + "shadow: {}\n").shadow == ShadowConfig("defender-agent", False)
    config = parse_config(BASE + "shadow:\n  name: gw:fleet_view-1\n  remote_config: true\n")
    assert config.shadow == ShadowConfig("gw:fleet_view-1", True)
    assert config.needs_broker


@pytest.mark.parametrize("name", ["a/b", "a b", "a+b", "é", "x" * 65, "''"])
def test_a_name_outside_the_rule_is_refused_with_file_line_and_path(name: str) -> None:
    found = problems(BASE + "shadow:\n  name: " + name + "\n")
    assert len(found) == 1 and found[0].startswith("agent.yaml:8: shadow.name: "), found


def test_the_longest_name_passes() -> None:
    config = parse_config(BASE + "shadow: {name: " + "x" * 64 + "}\n")
    assert config.shadow is not None and len(config.shadow.name) == 64


def test_unknown_key_and_wrong_type() -> None:
    found = problems(BASE + "shadow:\n  nam: x\n  remote_config: yes please\n")
    assert any(p.startswith("agent.yaml:8: shadow.nam: unknown key") for p in found), found
    assert any(p.startswith("agent.yaml:9: shadow.remote_config: expected true or false") for p in found), found


def test_a_shadow_needs_mqtt() -> None:
    found = problems("thing_name: gw-1\nsinks: [{type: textfile, path: /tmp/x.prom}]\nshadow: {}\n")
    assert found == ["agent.yaml:1: mqtt: required key is missing: the shadow is read and written over MQTT"], found


def test_check_exits_78_naming_the_shadow_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + "shadow:\n  name: gw/1\n")
    path.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(path)], capture_output=True,
                          text=True, env=plain_env(), check=False, timeout=60)
    assert done.returncode == 78, done.stderr
    assert f"{path}:8: shadow.name: 'gw/1' must be 1 to 64" in done.stderr
