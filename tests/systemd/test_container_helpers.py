"""The container helpers that need no container: reading the host's apt sources, timespans, mounts.

These run in every `make test` (the container checks themselves only under `make systemd-test`).
"""

from __future__ import annotations

from pathlib import Path

from tests.systemd.container import AptSource, debian_mirror, debian_sources, host_apt_sources, mounts_under
from tests.systemd.rig import timespan

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://other.example/node
Suites: nodistro
Components: main
"""

ONE_LINE = """\
# a comment
deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://one.example/debian bookworm main contrib
deb-src http://one.example/debian bookworm main
deb cdrom:[Debian 12]/ bookworm main
deb https://packages.example/apt cloud-sdk-bookworm main
"""


def apt_dir(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(ONE_LINE)
    (tmp_path / "sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d/ignored.list.disabled").write_text("deb http://nope.example/ bookworm main\n")
    return tmp_path


def test_both_source_formats_are_read_and_only_bookworm_over_http_is_kept(tmp_path: Path) -> None:
    sources = host_apt_sources(apt_dir(tmp_path))
    assert AptSource("https://other.example/node", "nodistro", ("main",)) in sources
    assert not any("nope.example" in s.uri for s in sources), "apt reads only *.list and *.sources"
    kept = debian_sources(sources)
    assert [s.line() for s in kept] == [
        "deb http://one.example/debian bookworm main contrib",
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]
    assert debian_mirror(kept) == "http://one.example/debian"


def test_no_bookworm_mirror_is_none(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://x.example/debian trixie main\n")
    assert debian_mirror(debian_sources(host_apt_sources(tmp_path))) is None


def test_timespans_as_systemctl_show_prints_them() -> None:
    assert timespan("10s") == 10 and timespan("2min") == 120 and timespan("1min 30s") == 90
    assert timespan("500ms") == 0.5 and timespan("infinity") == 0


def test_nothing_is_mounted_under_a_fresh_directory(tmp_path: Path) -> None:
    assert mounts_under(tmp_path) == []
    assert mounts_under(Path("/")), "the root is a mount point"
