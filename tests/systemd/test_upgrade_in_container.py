"""An upgrade of the Debian package over the ones released before, under systemd in the bookworm container.

The package of each commit in :data:`UPGRADE_FROM` (the first and the last whose package said 0.1.0),
built the way that commit's `make deb` built it (scripts/deb-at.sh, cached in build/deb-at/<commit>/), is installed,
configured and enabled; with the broker stopped its reports stay in the outbox; then `apt-get install
./<this .deb>` upgrades it. The upgraded agent must take over that outbox and deliver its newest report
when the broker is back, with the operator's config, the certificates and the state kept, and the unit
restarted exactly once by the maintainer scripts.

Runs after test_package_in_container.py (which ends by purging the package) on the same container; run
alone (``-k``), it purges the package the set-up installed first.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Set, Tuple

import pytest
import yaml

from agent import __version__
from agent.outbox.db import SCHEMA_VERSION
from tests.systemd.rig import CA, CONFIG, DEVICE_CERT, KEY, STATE, UNIT, Rig

pytestmark = pytest.mark.skipif(not os.environ.get("DEFENDER_AGENT_SYSTEMD_DEB"),
                                reason="run by `make systemd-test` (needs root, debootstrap, systemd-nspawn)")

Figure = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
# Both said 0.1.0 and shipped the emulator and devtools. b398137: the first package (an outbox of schema 0,
# which the new agent migrates). 882d322: the last before this release (schema 1, the loop refactor).
UPGRADE_FROM = {"first-0.1.0": "b398137", "last-0.1.0": "882d322"}
# `apt-get install -y` with no dpkg options, as unattended upgrades run it: agent.yaml is no conffile (postinst
# writes it only when missing), so dpkg has no question to stop at, whatever the operator edited.
STARTED = r"Started defender-agent\.service"


@pytest.fixture(params=sorted(UPGRADE_FROM), ids=str)
def old_deb(request: pytest.FixtureRequest) -> Tuple[str, Path]:
    """(commit, its package), built once and kept in build/deb-at/<commit>/."""
    commit = UPGRADE_FROM[request.param]
    built = subprocess.run([str(REPO / "scripts/deb-at.sh"), commit], cwd=REPO, capture_output=True,
                           text=True, timeout=600, check=False)
    assert built.returncode == 0, f"scripts/deb-at.sh {commit}: {built.stderr[-3000:]}"
    return commit, Path(built.stdout.strip())


def version_of(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def built_after(journal: str, mark: str) -> Set[int]:
    """The report ids of the "Built report N" lines after the first line matching ``mark``."""
    found = re.search(mark, journal)
    return {int(n) for n in re.findall(r"Built report (\d+) \(", journal[found.end():])} if found else set()


def schema(rig: Rig) -> Tuple[int, int]:
    """The outbox's ``PRAGMA user_version`` and ``auto_vacuum`` (read-only, stdlib sqlite3)."""
    out = rig.sh(["python3", "-c", "import sqlite3; c = sqlite3.connect('file:%s/outbox.sqlite3?mode=ro' % "
                  f"{STATE!r}, uri=True, timeout=5); print(c.execute('PRAGMA user_version').fetchone()[0], "
                  "c.execute('PRAGMA auto_vacuum').fetchone()[0])"]).stdout.split()
    return int(out[0]), int(out[1])


def files(rig: Rig, *paths: str) -> Dict[str, str]:
    """sha256sum of each file, and its owner and mode."""
    out = {}
    for path in paths:
        digest = rig.sh(["sha256sum", path]).stdout.split()[0]
        out[path] = digest + " " + rig.sh(["stat", "-c", "%U:%G %a", path]).stdout.strip()
    return out


def test_an_upgrade_keeps_config_state_and_outbox_and_the_new_agent_delivers(
        rig: Rig, old_deb: Tuple[str, Path], figure: Figure) -> None:
    commit, old = old_deb
    old_version = version_of(old)
    assert version_of(rig.deb) == __version__
    subprocess.run(["dpkg", "--compare-versions", __version__, "gt", old_version], check=True, timeout=30)
    took: Dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        start = time.monotonic()
        try:
            return fn()
        finally:
            took[name] = time.monotonic() - start

    if rig.sh(["dpkg-query", "-W", "-f=${Status}", "defender-agent"], check=False).stdout.endswith(" installed"):
        rig.sh(["apt-get", "purge", "-y", "-q", "defender-agent"], timeout=300)
    (rig.box.root / f"root/upgrade-from/{commit}").mkdir(parents=True, exist_ok=True)
    old_inside = rig.box.copy_in(old, f"/root/upgrade-from/{commit}")
    try:
        # -- today's package, configured as an operator does, running and delivering
        installed = timed("install the old package", lambda: rig.sh(
            ["apt-get", "install", "-y", "-q", old_inside], timeout=300, check=False))
        assert isinstance(installed, subprocess.CompletedProcess) and installed.returncode == 0, installed
        assert rig.sh(["dpkg-query", "-W", "-f=${Version}", "defender-agent"]).stdout == old_version
        shipped_old = rig.shipped_config()
        rig.install_credentials()
        config = rig.edited(shipped_old)
        rig.write_config(yaml.safe_dump(config, sort_keys=False))
        rig.sh(["systemctl", "reset-failed", UNIT], check=False)
        rig.sh(["systemctl", "enable", "--now", UNIT], timeout=150)
        rig.wait_for(lambda: any(o == "accepted" for _, o in rig.outbox()["ledger"]), 60,
                     f"a report accepted by the {old_version} agent")

        # -- the broker goes away: the reports built from now on stay pending (a newer one supersedes an
        # older one that never reached the broker, so the outbox holds the newest)
        away = rig.cursor()
        rig.sh(["systemctl", "stop", "mosquitto"])
        before_stop = {rid for rid, _ in rig.outbox()["ledger"]}
        rig.wait_for(lambda: len(re.findall(r"Built report \d+ \(", rig.journal(away))) >= 2
                     and rig.outbox()["pending"], 30, "reports built and pending with the broker away")
        # An operator's edit after the install (not reloaded: the old agent never reads it). The new agent's
        # first report then comes up to an hour after its start, so what it sends first is the old outbox's.
        config["report"] = {**config["report"], "interval": "1h", "jitter": "1h"}
        rig.write_config(yaml.safe_dump(config, sort_keys=False) + "# edited before the upgrade\n")
        kept = files(rig, CONFIG, DEVICE_CERT, KEY, CA)
        user = rig.sh(["getent", "passwd", "defender-agent"]).stdout.strip()
        ledger_before = dict(rig.outbox()["ledger"])
        schema_before = schema(rig)
        old_pid = rig.main_pid()
        n_restarts = rig.show("NRestarts")["NRestarts"]

        # -- the upgrade
        cursor = rig.cursor()
        upgrade = timed("apt-get install ./new.deb (the upgrade)", lambda: rig.sh(
            ["apt-get", "install", "-y", "-q", rig.deb_inside], timeout=300, check=False))
        assert isinstance(upgrade, subprocess.CompletedProcess) and upgrade.returncode == 0, upgrade
        upgrade_out = upgrade.stdout + upgrade.stderr
        assert f"Unpacking defender-agent ({__version__}) over ({old_version})" in upgrade_out, upgrade_out
        assert "installed, not enabled" not in upgrade_out, "the first-install message on an upgrade"
        assert rig.sh(["dpkg-query", "-W", "-f=${Version}", "defender-agent"]).stdout == __version__
        assert rig.sh(["defender-agent", "--version"]).stdout.strip() == f"defender-agent {__version__}"
        rig.wait_for(rig.active, 60, "active after the upgrade")
        new_pid = rig.main_pid()
        text = rig.journal(cursor)
        # Restarted once, by the postinst (debhelper's restart after upgrade), not by a failure.
        assert len(re.findall(STARTED, text)) == 1 and new_pid != old_pid, text
        assert rig.show("NRestarts")["NRestarts"] == n_restarts, text
        for bad in ("Traceback", "Failed with result", "SIGKILL", "timed out"):
            assert bad not in text, text
        stopped = re.search(r"Stopped \((\d+) report\(s\) still pending in the outbox\)", text)
        assert stopped, text  # a clean stop (what the old agent counts there varies between versions)
        holds = rig.wait_journal(cursor, r"Outbox holds (\d+) pending report\(s\) from before", 30)
        in_outbox = rig.outbox()["pending"]
        new_built = built_after(rig.journal(cursor), STARTED)
        pending = sorted(set(in_outbox) - new_built)  # the old agent's, as it left them
        assert len(pending) == int(holds.group(1)) >= 1, (pending, holds.group(0))
        assert not set(pending) & before_stop

        # -- kept: config (the operator's edit), certificates, modes, the user, the outbox's history
        assert files(rig, CONFIG, DEVICE_CERT, KEY, CA) == kept
        assert rig.sh(["getent", "passwd", "defender-agent"]).stdout.strip() == user
        assert rig.sh(["stat", "-c", "%U:%G %a", STATE]).stdout.strip() == "defender-agent:defender-agent 700"
        assert rig.sh(["test", "-e", CONFIG + ".dpkg-dist"], check=False).returncode != 0, "dpkg took agent.yaml"

        # -- the broker is back: the upgraded agent delivers the newest report the old one left pending
        rig.sh(["systemctl", "start", "mosquitto"])
        back = time.monotonic()

        def settled() -> Dict[int, str]:
            ledger = dict(rig.outbox()["ledger"])
            return {rid: ledger[rid] for rid in pending} if all(rid in ledger for rid in pending) else {}

        outcomes = rig.wait_for(settled, 90, f"an outcome for each of {pending}")
        took["broker back -> the old reports settled"] = time.monotonic() - back
        newest, older = pending[-1], pending[:-1]
        ledger_after = dict(rig.outbox()["ledger"])
        after = rig.journal(cursor)
        # Only the newest pending report is ever sent (report ids only go up); the older ones end superseded.
        # Should the new agent's own first report (at a random point of its first hour) come before the
        # broker, that one is sent instead and must be accepted: ended by design, never lost.
        first_new = min(built_after(after, STARTED) or {0})
        assert outcomes[newest] == "accepted" or (outcomes[newest] == "superseded" and first_new > newest
                                                  and ledger_after.get(first_new) == "accepted"), (outcomes, after)
        assert all(outcomes[rid] in ("superseded", "accepted") for rid in older), outcomes
        assert rig.main_pid() == new_pid, "delivered by another process than the upgraded agent"
        assert {rid: ledger_after.get(rid) for rid in ledger_before} == ledger_before, "history lost"
        # the outbox is on this version's schema (auto_vacuum 2: INCREMENTAL), migrated in place if it was older
        schema_after = schema(rig)
        assert schema_after == (SCHEMA_VERSION, 2), (schema_before, schema_after)
    finally:
        rig.sh(["systemctl", "start", "mosquitto"], check=False)

    figure(f"{old_version} (built from {commit}) -> {__version__}: '{stopped.group(0)}', then the new agent "
           f"'{holds.group(0)}'; after the broker came back: {outcomes}")
    figure(f"unit restarted once (MainPID {old_pid} -> {new_pid}, NRestarts {n_restarts}); agent.yaml (edited), "
           f"certificates, modes, user and {len(ledger_before)} ledger entries kept; outbox schema (user_version, "
           f"auto_vacuum) {schema_before} -> {schema_after}; no dpkg question, no agent.yaml.dpkg-dist")
    figure("seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in took.items()))
