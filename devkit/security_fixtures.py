"""Realistic inputs for the security collectors' tests and benchmarks (dev tooling, never shipped).

- :func:`dpkg_record` / :func:`dpkg_status`: a dpkg ``status`` database of N packages, shaped like Debian's
  (about 900 bytes a record, as on a Debian bookworm install: descriptions, dependencies, conffiles).
- :func:`watched_tree`: a directory of files of given sizes, for ``file_integrity``.
- :data:`PROC_MODULES`: ``/proc/modules`` of a Raspberry Pi 4 on Raspberry Pi OS bookworm (abridged).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence


def dpkg_record(name: str, version: str, *, status: str = "install ok installed", arch: str = "arm64",
                multi_arch: Optional[str] = None) -> str:
    lines = [
        f"Package: {name}",
        f"Status: {status}",
        "Priority: optional",
        "Section: libs",
        "Installed-Size: 1234",
        "Maintainer: Debian Developers <debian-devel@lists.debian.org>",
        f"Architecture: {arch}",
    ]
    if multi_arch:
        lines.append(f"Multi-Arch: {multi_arch}")
    lines += [
        f"Source: {name}-src",
        f"Version: {version}",
        "Depends: libc6 (>= 2.34), libgcc-s1 (>= 3.0), libstdc++6 (>= 11), zlib1g (>= 1:1.2.0)",
        "Conffiles:",
        f" /etc/{name}/{name}.conf 0123456789abcdef0123456789abcdef",
        f"Description: {name}, a package of the fixture",
        " This long description stands for the several lines most Debian packages carry,",
        " so that the database has the size of a real one: the collector reads only the",
        " Package, Status, Version, Architecture and Multi-Arch fields and skips the rest.",
        " .",
        " It has a second paragraph, as many do.",
        "Homepage: https://example.org/",
    ]
    return "\n".join(lines) + "\n"


def dpkg_names(count: int) -> List[str]:
    return [f"pkg{index:04d}" for index in range(count)]


def dpkg_status(count: int, *, version: str = "1.2.3-1+deb12u1", extra: Sequence[str] = (),
                arch: str = "arm64") -> str:
    """A status database of ``dpkg`` (of ``arch``, the native architecture) and ``count`` installed packages
    ``pkg0000``... (every tenth Multi-Arch: same), then the ``extra`` records."""
    records = [dpkg_record(name, version, arch=arch, multi_arch="same" if index % 10 == 0 else None)
               for index, name in enumerate(dpkg_names(count))]
    return "\n".join([dpkg_record("dpkg", "1.21.22", arch=arch), *records, *extra])


def write_admin_dir(root: Path, status: str) -> Path:
    """A dpkg admin directory (``status``, empty ``updates/``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "updates").mkdir(exist_ok=True)
    (root / "status").write_text(status, encoding="utf-8")
    return root


def watched_tree(root: Path, count: int, size: int = 2048, per_dir: int = 100) -> List[Path]:
    """``count`` files of ``size`` bytes each under ``root``, ``per_dir`` to a subdirectory."""
    out = []
    for index in range(count):
        directory = root / f"d{index // per_dir:03d}"
        if index % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{index:05d}.conf"
        path.write_bytes(f"# file {index}\n".encode().ljust(size, b"x"))
        out.append(path)
    return out


PROC_MODULES = """\
rfcomm 49152 4 - Live 0x0000000000000000
cmac 16384 3 - Live 0x0000000000000000
algif_hash 16384 1 - Live 0x0000000000000000
aes_arm64 16384 2 - Live 0x0000000000000000
bnep 20480 2 - Live 0x0000000000000000
hci_uart 114688 1 - Live 0x0000000000000000
btbcm 20480 1 hci_uart, Live 0x0000000000000000
bluetooth 610304 31 rfcomm,bnep,hci_uart,btbcm, Live 0x0000000000000000
brcmfmac 344064 0 - Live 0x0000000000000000
brcmutil 20480 1 brcmfmac, Live 0x0000000000000000
cfg80211 778240 1 brcmfmac, Live 0x0000000000000000
rfkill 32768 6 bluetooth,cfg80211, Live 0x0000000000000000
snd_bcm2835 24576 1 - Live (C) 0x0000000000000000
vc4 294912 4 - Live 0x0000000000000000
ipv6 565248 38 - Live 0x0000000000000000
"""
