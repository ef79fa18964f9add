"""The Debian package: what `make deb` builds, and that package installed on this machine.

The built .deb is read with dpkg-deb (fields, files, conffiles); the installed one is run as
an operator runs it: /usr/bin/defender-agent on Debian's python3 and python3-* libraries. The
broker round trip on that install is test_base_install's, parametrized over both installs.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Dict, List

import pytest

from devkit.broker import find_mosquitto
from tests.install.test_base_install import program
from tests.procs import imported_modules, plain_env, under

ROOT = Path(__file__).resolve().parents[2]
DEB_ENV = "DEFENDER_AGENT_DEB"
LIBRARIES = ("python3-awscrt", "python3-psutil", "python3-cbor2", "python3-yaml")
# What a gateway does not run, so the package must not carry it (devkit/ in the source tree holds it).
NOT_SHIPPED = re.compile(r"devkit|emulator|devtools|fake|demo", re.IGNORECASE)


@pytest.fixture(scope="module")
def deb() -> Path:
    given = os.environ.get(DEB_ENV)
    if not given:
        pytest.skip(f"${DEB_ENV} names the .deb (`make test` builds it with `make deb`)")
    path = Path(given)
    assert path.is_file(), f"${DEB_ENV}={given}: no such file"
    return path


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def members(deb: Path) -> Dict[str, bytes]:
    """path -> content of every regular file in the package's data archive."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True,
                          timeout=60).stdout
    out = {}
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name.lstrip(".")] = handle.read()
    return out


def control_file(deb: Path, name: str, tmp_path: Path) -> str:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "ctl")], check=True, timeout=30)
    return (tmp_path / "ctl" / name).read_text()


def test_one_version() -> None:
    """agent/__init__.py's __version__ is the version; debian/changelog's and CHANGELOG.md's newest name it."""
    version = __import__("agent").__version__
    newest_deb = (ROOT / "debian/changelog").read_text().splitlines()[0]
    assert re.fullmatch(r"defender-agent \(([^)]+)\) \w+; urgency=\w+", newest_deb), newest_deb
    assert newest_deb.split("(")[1].split(")")[0] == version, (newest_deb, version)
    releases = re.findall(r"^## \[([^]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert releases and releases[0] == version, (releases, version)
    # the .deb build refuses a changelog that names another version (debian/rules)
    assert "$(AGENT_VERSION)" in (ROOT / "debian/rules").read_text()


def test_the_licence_is_apache_2_0_everywhere_it_is_stated() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("\n                                 Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in licence
    copyright = (ROOT / "debian/copyright").read_text()
    assert copyright.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    assert re.search(r"^Files: \*\nCopyright: .+\nLicense: Apache-2.0$", copyright, re.MULTILINE), copyright
    assert '"/usr/share/common-licenses/Apache-2.0"' in copyright
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "Apache-2.0"$', pyproject, re.MULTILINE)
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, re.MULTILINE)


def test_fields_name_debians_libraries_and_boto3_only_as_a_recommendation(deb: Path) -> None:
    assert field(deb, "Architecture") == "all"
    assert field(deb, "Version") == __import__("agent").__version__
    depends = field(deb, "Depends")
    for library in LIBRARIES:
        assert re.search(rf"\b{library} \(>= [\d.]+\)", depends), (library, depends)
    assert "python3" in depends and "boto3" not in depends and "awsiot" not in depends
    assert field(deb, "Recommends") == "python3-boto3"


def test_the_package_ships_the_trees_own_files(deb: Path, tmp_path: Path) -> None:
    """One source: the units, user, directories and example config are systemd/'s and config/'s, byte for byte."""
    files = members(deb)
    same = {
        "/lib/systemd/system/defender-agent.service": "systemd/defender-agent.service",
        "/lib/systemd/system/defender-agent-bootstrap.service": "systemd/defender-agent-bootstrap.service",
        "/usr/lib/sysusers.d/defender-agent.conf": "systemd/defender-agent.sysusers",
        "/usr/lib/tmpfiles.d/defender-agent.conf": "systemd/defender-agent.tmpfiles",
        "/usr/share/defender-agent/agent.example.yaml": "config/agent.example.yaml",
        # the PKCS#11 drop-ins, shipped disabled (docs/HARDWARE-KEYS.md)
        "/usr/share/defender-agent/systemd/pkcs11-tpm2.conf": "systemd/pkcs11-tpm2.conf",
        "/usr/share/defender-agent/systemd/pkcs11-softhsm.conf": "systemd/pkcs11-softhsm.conf",
    }
    for packaged, source in same.items():
        assert files.get(packaged) == (ROOT / source).read_bytes(), packaged
    code = {p[len("/usr/share/defender-agent/"):] for p in files
            if p.startswith("/usr/share/defender-agent/")} - {"agent.example.yaml", "systemd/pkcs11-tpm2.conf",
                                                               "systemd/pkcs11-softhsm.conf"}
    tree = {str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".yaml", ".typed")}
    assert code == tree, (sorted(code - tree), sorted(tree - code))
    # ... and disabled: no drop-in directory of the unit anywhere in the package.
    assert [p for p in files if "defender-agent.service.d" in p] == []
    assert files["/usr/bin/defender-agent"].startswith(b"#!/usr/bin/python3\n")
    # No conffile: postinst writes agent.yaml only when missing, so no upgrade ever stops at dpkg's question.
    assert "/etc/defender-agent/agent.yaml" not in files
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "control")], check=True, timeout=30)
    assert not (tmp_path / "control" / "conffiles").exists()
    assert b"License: Apache-2.0" in files["/usr/share/doc/defender-agent/copyright"]
    assert files["/usr/share/doc/defender-agent/CHANGELOG.md"] == (ROOT / "CHANGELOG.md").read_bytes()
    # The operator's pages, uncompressed, where INSTALL.md's links to its neighbours resolve on the gateway.
    for page in ("INSTALL", "OPERATIONS", "CONFIGURATION", "COLLECTORS", "SINKS", "BEHAVIORS", "FLEET",
                 "WITHOUT-DETECT", "AWS-SETUP", "PLUGINS", "HARDWARE-KEYS"):
        assert files[f"/usr/share/doc/defender-agent/{page}.md"] == (ROOT / f"docs/{page}.md").read_bytes(), page


def test_the_package_ships_no_developer_tools(deb: Path) -> None:
    """No emulator, demo, devtools, fake link or devkit: what `dpkg-deb -c` lists is what a gateway runs."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True,
                             timeout=30).stdout
    paths = [line.split()[-1] for line in listing.splitlines()]
    assert any(p.endswith("/agent/cli.py") for p in paths), listing  # the listing is the one asked for
    assert [p for p in paths if NOT_SHIPPED.search(p)] == []
    imports = [path for path, content in members(deb).items()
               if path.endswith(".py") and re.search(rb"^\s*(from|import) devkit\b", content, re.MULTILINE)]
    assert imports == [], "shipped code that imports devkit"


def test_a_first_install_leaves_the_unit_disabled_and_prints_the_next_step(deb: Path, tmp_path: Path) -> None:
    postinst = control_file(deb, "postinst", tmp_path)
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles"), "the group must exist first"
    # dh_installsystemd --no-enable: `enable` only for a unit the operator had enabled (debian-installed),
    # never on a first install. (make systemd-test checks the behaviour on a real systemd.)
    for unit in ("defender-agent.service", "defender-agent-bootstrap.service"):
        enables = [m.start() for m in re.finditer(re.escape(f"deb-systemd-helper enable '{unit}'"), postinst)]
        assert enables, unit
        for at in enables:
            snippet = postinst[postinst.rindex("# Automatically added by", 0, at):at]
            assert f"if deb-systemd-helper debian-installed '{unit}'; then" in snippet, f"{unit} enabled on install"
    for step in ("defender-agent check", "systemctl enable --now defender-agent", "-m 600"):
        assert step in postinst
    assert "rm -rf /etc/defender-agent /var/lib/defender-agent" in control_file(deb, "postrm", tmp_path)


# -- the installed package ---------------------------------------------------------------------

def tmpfiles_layout() -> List[List[str]]:
    lines = (ROOT / "systemd/defender-agent.tmpfiles").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_the_installed_layout_is_the_tmpfiles_one(debian_program: Path) -> None:
    import grp
    import pwd

    user = pwd.getpwnam("defender-agent")
    assert user.pw_dir == "/var/lib/defender-agent" and user.pw_shell == "/usr/sbin/nologin"
    assert 0 < user.pw_uid < 1000
    for kind, path, mode, owner, group, _ in tmpfiles_layout():
        if kind == "z" and not os.path.exists(path):
            continue
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name) == (
            int(mode, 8), owner, group), path


def test_the_program_runs_on_debians_interpreter_and_libraries(debian_program: Path) -> None:
    probe = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import sys; sys.path.insert(0, '/usr/share/defender-agent'); import agent, awscrt, psutil, cbor2, yaml; "
         "print(agent.__file__); print(awscrt.__file__, psutil.__file__, cbor2.__file__, yaml.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd="/", env=plain_env())
    where, libraries = probe.stdout.splitlines()
    assert where == "/usr/share/defender-agent/agent/__init__.py"
    assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in libraries.split()), libraries
    version = program(debian_program, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"defender-agent {__import__('agent').__version__}"
    sample = program(debian_program, "sample-config")
    assert sample.returncode == 0 and sample.stdout == (ROOT / "config/agent.example.yaml").read_text()
    # The shipped example config is refused with the files it still needs, exit 78, no traceback.
    check = program(debian_program, "check", "--config", "/etc/defender-agent/agent.yaml")
    assert check.returncode == 78 and "Traceback" not in check.stderr, check.stderr
    assert "mqtt.key" in check.stderr


@pytest.mark.broker
@pytest.mark.timeout(150)
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_demo_on_debians_libraries(debian_program: Path, tmp_path: Path) -> None:
    """The whole main job (broker, emulator, bootstrap through Debian's boto3, run, values) on the package.

    The demo is the checkout's (the package ships none); the agent it runs is the installed one, on
    Debian's python3 and python3-* libraries: /usr/share/defender-agent comes first on the path.
    """
    path = f"/usr/share/defender-agent:{ROOT}"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import agent, devkit; print(agent.__file__, devkit.__file__)"],
                           capture_output=True, text=True, timeout=60, check=True, cwd=str(tmp_path),
                           env=plain_env(PYTHONPATH=path))
    assert probe.stdout.split() == ["/usr/share/defender-agent/agent/__init__.py", str(ROOT / "devkit/__init__.py")]
    # The operator's AWS CLI is the checkout's (awscli, in the dev extra): Debian's python3 has none.
    aws_cli = Path(sys.executable).with_name("aws")
    result = subprocess.run(["/usr/bin/python3", "-m", "devkit", "demo", "--aws-cli", str(aws_cli)],
                            capture_output=True, text=True,
                            timeout=140, cwd=str(tmp_path), check=False,
                            env=plain_env(PYTHONPATH=path, PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count(": ACCEPTED") == 3 and "Demo passed: 3 of 3" in result.stdout
    loaded = imported_modules(result.stderr)
    assert "awscrt.mqtt5" in loaded, "the import log was not captured"
    assert under(loaded, "awsiot") == [], "Debian has no awsiotsdk"
