"""A gateway's trusted files laid out in a temporary directory: config, certificate, key, CA.

The key and certificate are real (a throwaway CA signs them, so awscrt accepts them
as `check` and `run` do); their base64 bodies serve as canaries: tests prove that
those bytes never reach any output.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from devkit.certs import make_pki


@dataclass
class GatewayFiles:
    root: Path
    config: Path
    cert: Path
    key: Path
    ca: Path
    key_canary: str
    cert_canary: str

    def write_config(self, key: str = "", cert: str = "", ca: str = "") -> None:
        self.config.write_text(
            "thing_name: gw-1\n"
            "mqtt:\n"
            "  endpoint: 127.0.0.1\n"
            f"  cert: {cert or self.cert}\n"
            f"  key: {key or self.key}\n"
            f"  ca: {ca or self.ca}\n",
            encoding="utf-8",
        )


def encode_acl(entries: List[Tuple[int, int, int]]) -> bytes:
    """The ``system.posix_acl_access`` xattr value (version 2, then (tag, perm, id) entries; acl(5),
    linux/posix_acl_xattr.h) that setfacl would write: what :func:`agent.security.read_acl` reads."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def pem(kind: str, canary: str, headers: str = "") -> str:
    body = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{canary}"
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n{headers}" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def _longest_base64_line(pem_text: str) -> str:
    return max((line for line in pem_text.splitlines() if not line.startswith("-----")), key=len)


def make_gateway_files(root: Path) -> GatewayFiles:
    """Good modes everywhere: key 0600, the rest 0644, all owned by the current user."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    pki = make_pki(root / "pki")
    device = pki.client("gw-1")
    key_text = device.key.read_text(encoding="ascii")
    cert_text = device.cert.read_text(encoding="ascii")
    files = GatewayFiles(
        root=root,
        config=root / "agent.yaml",
        cert=root / "device.pem.crt",
        key=root / "private.pem.key",
        ca=root / "AmazonRootCA1.pem",
        key_canary=_longest_base64_line(key_text),
        cert_canary=_longest_base64_line(cert_text),
    )
    files.key.write_text(key_text, encoding="ascii")
    os.chmod(files.key, 0o600)
    files.cert.write_text(cert_text, encoding="ascii")
    shutil.copy(pki.ca, files.ca)
    for path in (files.cert, files.ca):
        os.chmod(path, 0o644)
    files.write_config()
    os.chmod(files.config, 0o644)
    return files
