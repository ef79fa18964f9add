"""`python -m devkit demo` (what `make demo` runs) and `defender-agent status` as processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.broker import find_mosquitto
from tests.delivery.conftest import ROOT

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_demo_shows_three_accepted_reports_and_cleans_up(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob("defender-demo-*"))
    result = subprocess.run([sys.executable, "-m", "devkit", "demo"], capture_output=True, text=True, timeout=100,
                            cwd=str(ROOT), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ACCEPTED") == 3
    assert "Demo passed: 3 of 3" in result.stdout and "$ defender-agent status" in result.stdout
    assert "3 topic message(s) received, textfile written, violation events: in-alarm, alarm-cleared" in result.stdout
    assert "Topic sink: 3 message(s) on dt/gateways/demo-gateway/metrics" in result.stdout
    assert "Behavior 'FleetTypicalTraffic' cannot be evaluated on the device" in result.stdout
    assert "NoDebugPort: in-alarm 1, alarm-cleared 1, alarm-invalidated 0" in result.stdout
    assert set(Path("/tmp").glob("defender-demo-*")) == before
    # The fleet step: an operator adds a behavior with the AWS CLI; the running gateway applies it from its
    # shadow's delta, the violation follows, and get-thing-shadow reads the reported state back.
    fleet = result.stdout[result.stdout.index("\nFleet: "):]
    assert "$ aws iot-data update-thing-shadow --endpoint-url http://127.0.0.1:" in fleet
    assert "--thing-name demo-gateway --shadow-name defender-agent --payload '{\"state\": {\"desired\"" in fleet
    assert "update.json: accepted, version 2" in fleet
    assert "Violation: in-alarm NoTelnet" in fleet
    assert "$ aws iot-data get-thing-shadow --endpoint-url http://127.0.0.1:" in fleet
    shown = fleet[fleet.index("Reported state (version"):]
    reported = json.loads(shown[shown.index("\n") + 1:shown.index("\nDelta")])
    assert reported["config"]["desired_version"] >= 2 and "NoTelnet" in json.dumps(reported["violations"])
    assert "fleet step: NoTelnet set from the AWS CLI, applied live, in alarm" in result.stdout


def test_status_json_on_empty_and_used_state(tmp_path: Path) -> None:
    import logging

    from agent.outbox.store import Outbox, Pending

    run = [sys.executable, "-m", "agent", "status", "--json", "--state-dir", str(tmp_path / "s")]
    empty = json.loads(subprocess.run(run, capture_output=True, text=True, timeout=30, cwd=str(ROOT),
                                      check=True).stdout)
    assert empty["last_report_id"] is None and empty["pending"] == []
    box = Outbox.open(tmp_path / "s", logging.getLogger("t"))
    box.add(Pending.new(10, "json", b"{}", 1.0))
    box.add(Pending.new(11, "json", b"{}", 1.0))
    box.finish(10, "rejected", "InvalidPayload", "Malformed metrics report", 2.0)
    box.set_meta({"last_report_id": 11, "last_report_at": 2.0,
                  "collectors": {"net": {"ok": 3, "failed": 1, "no_data": 0, "last_duration": 0.01,
                                         "last_error": "boom"}}})
    box.close()
    status = json.loads(subprocess.run(run, capture_output=True, text=True, timeout=30, cwd=str(ROOT),
                                       check=True).stdout)
    assert status["last_report_id"] == 11 and status["outcomes"]["rejected"] == 1
    assert [p["report_id"] for p in status["pending"]] == [11]
    assert status["last_rejections"][0]["code"] == "InvalidPayload"
    text = subprocess.run([*run[:-3], "--state-dir", str(tmp_path / "s")], capture_output=True, text=True,
                          timeout=30, cwd=str(ROOT), check=True).stdout
    assert "net: ok 3, failed 1" in text and "InvalidPayload" in text
