"""Each command, run for real, loads none of the heavy libraries it does not use.

boto3/botocore belong to the control plane (bootstrap, values) and to what serves or
drives it (emulator, demo); awscrt to the connection (run, demo, emulator) and to the
one TLS context `check` builds as `run` would (awscrt.io only, never an MQTT client).
A command that loads one of them anyway costs every operator the memory and the start
time (docs/BENCHMARKS.md, "Quick commands"). Each case runs the console entry point in a
fresh interpreter with CPython's import log (PYTHONPROFILEIMPORTTIME=1, read by
tests.procs.imported_modules) on real inputs: a config with the rig's collectors and a
real PKI, a report file, a used state_dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from agent.cli import COMMANDS
from devkit.certs import make_pki
from tests.delivery.conftest import config_text
from tests.procs import imported_modules, plain_env, under

SDK = ("boto3", "botocore")
AWSCRT = ("awscrt", "awsiot")
OURS_HEAVY = ("devkit", "agent.control")  # the control plane; devkit is never installed with the agent
# Plugins' entry points: read only when a config names a type no built-in collector has (2 MB, 20 ms).
PLUGINS = ("importlib.metadata",)
COLLECTORS = ("collectors:\n  - type: listening_ports\n  - type: tcp_connections\n  - type: network_stats\n"
              "  - type: system\n    metrics: [cpu_usage, load_average]\n"
              "custom_metrics:\n  cpu_usage: {type: number}\n  load_average: {type: number-list}\n")

# command -> what it must not load (run for real, below); every other command's --help loads neither family
MUST_NOT_LOAD: Dict[str, Tuple[str, ...]] = {
    "--help": (*SDK, *AWSCRT, *OURS_HEAVY),
    "sample-config": (*SDK, *AWSCRT, *OURS_HEAVY),
    "validate": (*SDK, *AWSCRT, *OURS_HEAVY),
    "once": (*SDK, *AWSCRT, *OURS_HEAVY, *PLUGINS),
    # status reads only state_dir from the config: not the loader, which imports every collector
    "status": (*SDK, *AWSCRT, *OURS_HEAVY, *PLUGINS, "agent.config.load", "agent.collectors"),
    "check": (*SDK, "awscrt.mqtt", "awscrt.mqtt5", "awsiot", *OURS_HEAVY, *PLUGINS),
    # the loader (and the collectors it imports) but no connection: it prints the merged config
    "config": (*SDK, *AWSCRT, *OURS_HEAVY, *PLUGINS),
    "run": (*SDK, *OURS_HEAVY, *PLUGINS),
    # `behaviors test` samples and judges locally: no SDK, no connection, no plugins (agent.control.aws, the
    # AWS options' dataclass of the `pull` parser beside it, is a few stdlib imports)
    "behaviors test": (*SDK, *AWSCRT, "devkit", "agent.control.profiles", *PLUGINS),
}
ALWAYS_NORMAL = ("behaviors:\n  - name: AnyPortCount\n    metric: aws:num-listening-tcp-ports\n"
                 "    criteria: {comparisonOperator: greater-than-equals, value: {count: 0}}\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    work = tmp_path_factory.mktemp("command-imports")
    pki = make_pki(work / "pki")
    config = work / "agent.yaml"
    config.write_text(config_text(pki, 8883, work / "state") + COLLECTORS)
    config.chmod(0o600)
    blocker = work / "not-a-directory"
    blocker.write_text("a file where run's state_dir should be\n")
    unusable = work / "unusable.yaml"
    unusable.write_text(config_text(pki, 8883, blocker / "state") + COLLECTORS)
    unusable.chmod(0o600)
    judged = work / "behaviors.yaml"
    judged.write_text(config_text(pki, 8883, work / "state") + COLLECTORS + ALWAYS_NORMAL)
    judged.chmod(0o600)
    report = work / "report.json"
    report.write_text(json.dumps({"header": {"report_id": 1700000000, "version": "1.0"},
                                  "metrics": {"network_stats": {"bytes_in": 1, "bytes_out": 2, "packets_in": 1,
                                                                "packets_out": 1}}}))
    return {"work": work, "config": config, "unusable": unusable, "report": report, "behaviors": judged}


def args_of(command: str, inputs: Dict[str, Path]) -> Tuple[List[str], int]:
    """The command line of a real run of ``command`` and the exit status it must end with."""
    config, work = str(inputs["config"]), inputs["work"]
    return {
        "--help": (["--help"], 0),
        "sample-config": (["sample-config"], 0),
        "validate": (["validate", str(inputs["report"])], 0),
        "once": (["once", "--config", config, "--output", str(work / "once.out")], 0),
        "status": (["status", "--config", config], 0),
        "check": (["check", "--config", config], 0),
        "config": (["config", "--effective", "--config", config], 0),
        # state_dir unusable: exit 74 once the scheduler (the whole of run's import graph but the link) is loaded
        "run": (["run", "--config", str(inputs["unusable"])], 74),
        "behaviors test": (["behaviors", "test", "--config", str(inputs["behaviors"]), "--baseline", "0"], 0),
    }[command]


def loaded_by(args: List[str], expected: int, cwd: Path, **env: str) -> Set[str]:
    result = subprocess.run([sys.executable, "-c", "from agent.cli import main; main()", *args],
                            capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                            env=plain_env(PYTHONPROFILEIMPORTTIME="1", **env))
    assert result.returncode == expected, result.stderr[-3000:]
    modules = imported_modules(result.stderr)
    assert "agent.cli" in modules, "the import log was not captured"
    return modules


@pytest.mark.parametrize("command", list(MUST_NOT_LOAD))
def test_a_command_loads_no_heavy_module_it_does_not_use(command: str, inputs: Dict[str, Path]) -> None:
    args, expected = args_of(command, inputs)
    modules = loaded_by(args, expected, inputs["work"])
    assert under(modules, *MUST_NOT_LOAD[command]) == [], f"`defender-agent {' '.join(args)}`"
    if command == "check":
        assert "awscrt.io" in modules, "check builds the TLS context as run does"
    if command == "run":
        assert "agent.scheduler" in modules, "run got as far as its loop's imports"


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_no_commands_help_loads_the_sdk_or_awscrt(command: str, inputs: Dict[str, Path]) -> None:
    modules = loaded_by([command, "--help"], 0, inputs["work"])
    assert under(modules, *SDK, *AWSCRT) == []


def test_a_subcommands_help_loads_neither_the_sdk_nor_awscrt(inputs: Dict[str, Path]) -> None:
    modules = loaded_by(["behaviors", "pull", "--help"], 0, inputs["work"])
    assert under(modules, *SDK, *AWSCRT) == []


def test_behaviors_pull_loads_the_sdk_and_none_of_the_daemon(inputs: Dict[str, Path]) -> None:
    """`behaviors pull` needs boto3 (and botocore loads awscrt when it can), never the daemon's parts."""
    args = ["behaviors", "pull", "--security-profile", "fleet", "--endpoint-url", "http://127.0.0.1:9",
            "--region", "eu-west-1"]
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_CONFIG_FILE": str(inputs["work"] / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(inputs["work"] / "none")}
    modules = loaded_by(args, 1, inputs["work"], **env)  # 1: nothing listens on port 9
    assert "boto3" in modules and "agent.control.profiles" in modules
    daemon = ("devkit", "agent.config.load", "agent.collectors", "agent.scheduler",
              "agent.outbox", "agent.mqtt", "agent.consumers", "awscrt.mqtt", "awscrt.mqtt5", "awsiot")
    assert under(modules, *daemon) == []


def test_every_command_is_pinned() -> None:
    boto3_commands = {"bootstrap", "values", "behaviors"}  # their --help is pinned above
    assert {c.name for c in COMMANDS} - boto3_commands == set(MUST_NOT_LOAD) - {"--help", "behaviors test"}
