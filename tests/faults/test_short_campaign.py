"""The short fault campaign (`python -m benchmarks.faults --short`): part of `make test`, under 60 s."""

from __future__ import annotations

from benchmarks.faults.cli import run_campaign


def test_short_fault_campaign_loses_nothing_and_raises_no_traceback() -> None:
    results = run_campaign(short=True)
    ran = [sc for sc in results if sc.status != "not run"]
    assert ran, "the short campaign ran no scenario"
    for sc in ran:
        assert sc.status == "passed", f"{sc.name}: {sc.failures} failures, {sc.lost} lost; first: {sc.examples[:1]}"
