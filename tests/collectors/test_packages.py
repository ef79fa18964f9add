"""packages: dpkg's database parsed as dpkg-query reads it; real dpkg operations; changes exact across restarts."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from agent.collectors.contract import BuildContext
from agent.collectors.security import packages
from agent.collectors.security.packages import DpkgDatabase, changes, installed, package_key, parse_records
from devkit.security_fixtures import dpkg_record, dpkg_status, write_admin_dir

LOG = logging.getLogger("test.packages")
DPKG = shutil.which("dpkg")
DPKG_QUERY = shutil.which("dpkg-query")
DPKG_DEB = shutil.which("dpkg-deb")


def build(admin: Path, state: Path, persist: bool = True) -> packages.PackagesCollector:
    ctx = BuildContext(name="pk", state_dir=state, timeout=10, report_interval=300, max_list_items=500,
                       logger=LOG, persist_state=persist)
    return packages.SPEC.build(ctx, {"admin_dir": str(admin), "metrics": None})  # type: ignore[return-value]


def values(collector: Any) -> Tuple[int, Tuple[str, ...]]:
    got = {s.name: s.value for s in collector.collect()}
    return got["packages_installed"], got["packages_changed"]


def test_a_1500_package_database_and_a_change(tmp_path: Path) -> None:
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(1500))
    pk = build(admin, tmp_path / "state")
    assert values(pk) == (1501, ())  # the first start is the baseline (1,500 and dpkg)
    text = dpkg_status(1500, extra=[dpkg_record("evil-tools", "6.6.6")])
    text = text.replace("Package: pkg0007\nStatus: install ok installed", "Package: pkg0007\nStatus: deinstall ok config-files")
    (admin / "status").write_text(text)
    assert values(pk) == (1501, ("evil-tools=6.6.6", "-pkg0007=1.2.3-1+deb12u1"))  # sorted by name
    assert values(pk) == (1501, ())


def test_an_upgrade_names_the_new_version_and_multiarch_packages_their_arch(tmp_path: Path) -> None:
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(20))
    pk = build(admin, tmp_path / "state")
    values(pk)
    (admin / "status").write_text(dpkg_status(20).replace("Package: pkg0010\nStatus: install ok installed\n",
                                                          "Package: pkg0010\nStatus: install ok unpacked\n")
                                  .replace("1.2.3-1+deb12u1", "1.2.4-1", 1))
    # pkg0000 is Multi-Arch: same (named with its arch); pkg0010 merely unpacked is still there
    assert values(pk) == (21, ("pkg0000:arm64=1.2.4-1",))


def test_records_in_updates_override_the_status_file(tmp_path: Path) -> None:
    """dpkg writes a record to updates/ first and folds it into status at its next checkpoint."""
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(3))
    pk = build(admin, tmp_path / "state")
    values(pk)
    (admin / "updates" / "0000").write_text(dpkg_record("pkg0001", "9.9"))
    (admin / "updates" / "0001").write_text(dpkg_record("newpkg", "1.0", status="install ok half-configured"))
    (admin / "updates" / "tmp.i").write_text("garbage that dpkg is still writing")
    assert values(pk) == (5, ("newpkg=1.0", "pkg0001=9.9"))


def test_a_restart_reports_what_changed_while_stopped_once(tmp_path: Path) -> None:
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(10))
    state = tmp_path / "state"
    values(build(admin, state))
    (admin / "status").write_text(dpkg_status(10, extra=[dpkg_record("netcat-openbsd", "1.219-1")]))
    assert values(build(admin, state)) == (12, ("netcat-openbsd=1.219-1",))
    assert values(build(admin, state)) == (12, ())


def test_once_does_not_move_the_baseline(tmp_path: Path) -> None:
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(10))
    state = tmp_path / "state"
    values(build(admin, state))
    (admin / "status").write_text(dpkg_status(9))
    assert values(build(admin, state, persist=False)) == (10, ("-pkg0009=1.2.3-1+deb12u1",))
    assert values(build(admin, state)) == (10, ("-pkg0009=1.2.3-1+deb12u1",))


def test_an_unchanged_database_is_not_read_again(tmp_path: Path) -> None:
    admin = write_admin_dir(tmp_path / "dpkg", dpkg_status(50))
    pk = build(admin, tmp_path / "state")
    for _ in range(5):
        values(pk)
    assert pk.parsed == 1
    (admin / "updates" / "0000").write_text(dpkg_record("pkg0001", "2.0"))
    assert values(pk) == (51, ("pkg0001=2.0",))
    assert pk.parsed == 2


def test_a_missing_database_fails_the_collector_naming_it(tmp_path: Path) -> None:
    from agent.errors import CollectorError

    pk = build(tmp_path / "nowhere", tmp_path / "state")
    with pytest.raises(CollectorError, match="nowhere/status: no such file"):
        pk.collect()


def test_parser_pure_parts() -> None:
    text = "Package: a\nStatus: install ok installed\nDescription: x\n Package: fake\n\n\nPackage: b\nVersion: 1\n"
    assert list(parse_records(text)) == [{"Package": "a", "Status": "install ok installed"},
                                         {"Package": "b", "Version": "1"}]
    assert package_key({"Package": "libc6", "Architecture": "arm64", "Multi-Arch": "same"}) == "libc6:arm64"
    assert package_key({"Package": "tzdata", "Architecture": "all", "Multi-Arch": "foreign"}) == "tzdata"
    assert package_key({"Package": "zlib1g", "Architecture": "armhf"}, native="arm64") == "zlib1g:armhf"
    assert installed([dpkg_record("x", "1", status="purge ok not-installed")]) == {}
    assert installed([dpkg_record("dpkg", "1", arch="amd64") + "\n" + dpkg_record("y", "2", arch="arm64")]) == {
        "dpkg": "1", "y:arm64": "2"}
    assert changes({"a": "1", "b": "1"}, {"b": "2", "c": "3"}) == ["-a=1", "b=2", "c=3"]
    # only "\n" ends a line (a form feed in a description must not start a field, nor a record)
    spoof = "Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\x0cVersion: 6.6.6\n \x0c\n more\n"
    assert installed([spoof]) == {"a": "1"}


@pytest.mark.skipif(DPKG_QUERY is None, reason="no dpkg-query on this machine")
def test_this_machine_matches_dpkg_query() -> None:
    out = subprocess.run(
        [DPKG_QUERY or "dpkg-query", "-W", "-f", "${binary:Package}\t${Version}\t${db:Status-Status}\n"],
        capture_output=True, text=True, check=True,
    ).stdout
    expected = {}
    for line in out.splitlines():
        name, version, state = line.split("\t")
        if state not in ("not-installed", "config-files"):
            expected[name] = version
    assert DpkgDatabase("/var/lib/dpkg").read() == expected


def _deb(tmp_path: Path, version: str) -> Path:
    pkg = tmp_path / f"build-{version}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: dd-test-dummy\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        "Description: a tiny package for the packages collector's tests\n")
    (pkg / "usr" / "share" / "dd-test-dummy").mkdir(parents=True)
    (pkg / "usr" / "share" / "dd-test-dummy" / "README").write_text(version + "\n")
    deb = tmp_path / f"dd-test-dummy_{version}_all.deb"
    subprocess.run([DPKG_DEB or "dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)],
                   check=True, capture_output=True)
    return deb


@pytest.mark.skipif(DPKG is None or DPKG_DEB is None, reason="no dpkg on this machine")
def test_real_dpkg_install_upgrade_and_remove(tmp_path: Path) -> None:
    """Real dpkg, on a database of its own (--admindir, --instdir): the system's packages are not touched."""
    native = subprocess.run([DPKG or "dpkg", "--print-architecture"], capture_output=True, text=True,
                            check=True).stdout.strip()
    admin = write_admin_dir(tmp_path / "admin", dpkg_status(30, arch=native))
    for name in ("info", "triggers"):
        (admin / name).mkdir()
    (admin / "available").write_text("")
    root = tmp_path / "root"
    root.mkdir()

    def dpkg(*args: str) -> None:
        subprocess.run([DPKG or "dpkg", f"--admindir={admin}", f"--instdir={root}", "--force-not-root",
                        "--force-script-chrootless", "--log=/dev/null", *args],
                       check=True, capture_output=True, env={**os.environ, "DPKG_ROOT": ""})

    pk = build(admin, tmp_path / "state")
    assert values(pk) == (31, ())
    dpkg("-i", str(_deb(tmp_path, "1.0+b1~rc1")))
    assert values(pk) == (32, ("dd-test-dummy=1.0+b1~rc1",))
    assert (root / "usr" / "share" / "dd-test-dummy" / "README").exists()
    dpkg("-i", str(_deb(tmp_path, "2.0")))
    assert values(pk) == (32, ("dd-test-dummy=2.0",))
    dpkg("-r", "dd-test-dummy")
    assert values(pk) == (31, ("-dd-test-dummy=2.0",))
    assert values(pk) == (31, ())
    query = subprocess.run([DPKG_QUERY or "dpkg-query", f"--admindir={admin}", "-W", "-f",
                            "${binary:Package}\t${Version}\t${db:Status-Status}\n"],
                           capture_output=True, text=True, check=True).stdout
    expected: Dict[str, str] = {}
    for line in query.splitlines():
        name, version, state = line.split("\t")
        if state not in ("not-installed", "config-files"):
            expected[name] = version
    assert DpkgDatabase(str(admin)).read() == expected


def test_the_sample_declares_packages_changed_with_any_characters() -> None:
    from agent.config.load import parse_config

    config = parse_config("thing_name: t\nsinks: [{type: textfile, path: /tmp/x.prom}]\n" + packages.SAMPLE, "<s>")
    assert config.custom_metrics["packages_changed"].allow_any_characters
    assert packages.SPEC.reads is not None
    assert packages.SPEC.reads(config.collectors[0].options) == ("/var/lib/dpkg/status",)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PKG = st.from_regex(r"[a-z0-9][a-z0-9+.-]{1,20}", fullmatch=True)
VERSION = st.from_regex(r"([0-9]:)?[0-9][A-Za-z0-9.+~-]{0,12}", fullmatch=True)
LINE = st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(PKG, st.tuples(VERSION, LINE, st.booleans()), max_size=8), st.text(max_size=300))
def test_status_parser_on_generated_databases(packages_: Any, noise: str) -> None:
    """Any text parses without a crash; whatever a description holds (form feeds, "Package: x" after a
    space), each generated record is read back as itself."""
    installed([noise])
    text = "\n".join(
        f"Package: {name}\nStatus: install ok {'installed' if present else 'config-files'}\nArchitecture: all\n"
        f"Version: {version}\nDescription: {line}\n {line}\n Package: spoofed-{name}\n"
        for name, (version, line, present) in packages_.items()
    )
    assert installed([text]) == {name: version for name, (version, _, present) in packages_.items() if present}
