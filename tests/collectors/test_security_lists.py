"""kernel_modules and accounts: /proc/modules and /etc/passwd from fixtures and from this machine."""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path
from typing import Any, Dict

import pytest

from agent.collectors.contract import BuildContext
from agent.collectors.security import accounts, modules
from agent.collectors.security.accounts import is_login_shell, parse_passwd, parse_shells
from agent.collectors.security.modules import parse_modules, read_modules
from agent.config.load import parse_config
from agent.errors import CollectorError
from devkit.security_fixtures import PROC_MODULES

LOG = logging.getLogger("test.security")
BASE = "thing_name: t\nsinks: [{type: textfile, path: /tmp/x.prom}]\n"


def ctx(tmp_path: Path) -> BuildContext:
    return BuildContext(name="c", state_dir=tmp_path, timeout=10, report_interval=300, max_list_items=500,
                        logger=LOG)


def collect(collector: Any) -> Dict[str, Any]:
    return {s.name: s.value for s in collector.collect()}


def test_modules_from_a_fixture_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "modules").write_text(PROC_MODULES + "evil_rootkit 16384 0 - Live 0x0000000000000000 (OE)\n")
    got = collect(modules.SPEC.build(ctx(tmp_path), {"proc_root": str(proc), "metrics": None}))
    assert got == {"kernel_modules": tuple(sorted(
        ["rfcomm", "cmac", "algif_hash", "aes_arm64", "bnep", "hci_uart", "btbcm", "bluetooth", "brcmfmac",
         "brcmutil", "cfg80211", "rfkill", "snd_bcm2835", "vc4", "ipv6", "evil_rootkit"]))}


def test_modules_of_this_machine() -> None:
    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as handle:
            expected = sorted({line.split()[0] for line in handle if line.strip()})
        assert list(read_modules("/proc")) == expected
    else:  # a kernel (or sandbox) without loadable modules: none can be loaded
        assert read_modules("/proc") == ()


def test_modules_without_a_procfs_fails(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="not a mounted procfs"):
        read_modules(str(tmp_path))
    assert parse_modules("\n  \nb 1 0 - Live 0x0\na 1 0 - Live 0x0\na 1 0 - Live 0x0\n") == ("a", "b")


PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
pi:x:1000:1000:,,,:/home/pi:/bin/bash
toor:x:0:0::/root:/bin/sh
legacy:x:1001:1001::/home/legacy:
nologin-false:x:1002:1002::/:/bin/false
# a comment:x:0:0::/:/bin/sh
+nisuser::0:0:::
broken:x:zero:0::/:/bin/sh
short:x:0:0
"""

SHELLS = """\
# /etc/shells: valid login shells
/bin/sh
/usr/bin/sh
/bin/bash
/usr/bin/bash
/bin/rbash
/bin/dash
"""


def test_accounts_from_fixtures(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "shells").write_text(SHELLS)
    collector = accounts.SPEC.build(ctx(tmp_path), {"passwd": str(tmp_path / "passwd"),
                                                    "shells": str(tmp_path / "shells"), "metrics": None})
    assert collect(collector) == {"uid0_accounts": ("root", "toor"),
                                  "login_accounts": ("legacy", "pi", "root", "toor")}


def test_accounts_without_a_shells_file(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(PASSWD)
    collector = accounts.SPEC.build(ctx(tmp_path), {"passwd": str(tmp_path / "passwd"),
                                                    "shells": str(tmp_path / "missing"), "metrics": None})
    # every shell but nologin and false: /bin/sync counts here
    assert collect(collector)["login_accounts"] == ("legacy", "pi", "root", "sync", "toor")


def test_accounts_missing_passwd_fails(tmp_path: Path) -> None:
    collector = accounts.SPEC.build(ctx(tmp_path), {"passwd": str(tmp_path / "nope"), "shells": "/etc/shells",
                                                    "metrics": None})
    with pytest.raises(CollectorError, match="nope: no such file"):
        collector.collect()


def test_accounts_of_this_machine_match_the_password_database() -> None:
    """The pwd module reads the same /etc/passwd through NSS (files) on this machine."""
    got = collect(accounts.SPEC.build(ctx(Path("/tmp")), {"passwd": "/etc/passwd", "shells": "/etc/shells",
                                                          "metrics": None}))
    entries = [e for e in pwd.getpwall() if e.pw_name in {n for n, _, _ in parse_passwd(Path("/etc/passwd").read_text())}]
    assert got["uid0_accounts"] == tuple(sorted({e.pw_name for e in entries if e.pw_uid == 0}))
    shells = parse_shells(Path("/etc/shells").read_text()) if os.path.exists("/etc/shells") else None
    assert got["login_accounts"] == tuple(sorted({e.pw_name for e in entries if is_login_shell(e.pw_shell, shells)}))
    assert "root" in got["uid0_accounts"]


@pytest.mark.parametrize("spec", [modules.SPEC, accounts.SPEC])
def test_samples_load_and_name_what_they_read(spec: Any) -> None:
    config = parse_config(BASE + spec.sample, f"<{spec.type}>")
    (collector,) = config.collectors
    reads = spec.reads(collector.options)
    if spec is modules.SPEC and not os.path.exists("/proc/modules"):
        assert reads == ()  # no loadable modules here: nothing for `check` to warn about
    else:
        assert reads and all(p.startswith("/") for p in reads)
    assert set(spec.emits(collector.options)) == set(config.custom_metrics)


def _doc_behaviors(doc: str) -> str:
    """The ```yaml block of a collector's DOC: the behaviors a user pastes."""
    _, _, rest = doc.partition("```yaml\n")
    block, _, _ = rest.partition("```")
    assert block.startswith("behaviors:")
    return block


CASES = [  # (spec, metric value that is normal, metric value that violates)
    ("file_integrity", {"files_changed": {"number": 0}}, {"files_changed": {"number": 1}}),
    ("packages", {"packages_installed": {"number": 1500}}, {"packages_installed": {"number": 1601}}),
    ("kernel_modules", {"kernel_modules": {"strings": ["brcmfmac", "vc4"]}},
     {"kernel_modules": {"strings": ["brcmfmac", "evil_rootkit"]}}),
    ("accounts", {"uid0_accounts": {"strings": ["root"]}, "login_accounts": {"strings": ["pi"]}},
     {"uid0_accounts": {"strings": ["root", "toor"]}, "login_accounts": {"strings": ["pi", "backdoor"]}}),
]


@pytest.mark.parametrize("kind,normal,bad", CASES)
def test_the_documented_behaviors_load_and_alarm_on_what_they_say(kind: str, normal: Dict[str, Any],
                                                                   bad: Dict[str, Any]) -> None:
    from agent.behaviors.evaluate import violates_value
    from agent.collectors.builtin import default_registry

    spec = default_registry().get(kind)
    assert spec is not None
    config = parse_config(BASE + spec.sample + _doc_behaviors(spec.doc), f"<{kind} behaviors>")
    assert config.behaviors
    for behavior in config.behaviors:
        assert violates_value(behavior, normal[behavior.metric]) is False, behavior.name
        assert violates_value(behavior, bad[behavior.metric]) is True, behavior.name



from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAMES = st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True)
GECOS = st.text(alphabet=st.characters(blacklist_characters=":\n\r", blacklist_categories=("Cs",)), max_size=30)
SHELL = st.sampled_from(["/bin/bash", "/bin/sh", "/usr/sbin/nologin", "/bin/false", "", "/bin/sync"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, st.integers(0, 70000), GECOS, SHELL), max_size=10), st.text(max_size=300))
def test_passwd_parser_on_generated_files(entries: Any, noise: str) -> None:
    """Any text parses without a crash; generated accounts are read back exactly, whatever their GECOS field
    holds (a user may set it with chfn), so only a real uid field of 0 makes a uid-0 account."""
    parse_passwd(noise)
    text = "".join(f"{name}:x:{uid}:{uid}:{gecos}:/home/{name}:{shell}\n" for name, uid, gecos, shell in entries)
    assert parse_passwd(text) == tuple((name, uid, shell) for name, uid, _, shell in entries)
    uid0, login = accounts.accounts(text, SHELLS)
    assert set(uid0) == {name for name, uid, _, _ in entries if uid == 0}
    assert set(login) == {name for name, _, _, shell in entries if shell in ("/bin/bash", "/bin/sh", "")}
