"""A gateway's trusted files laid out in a temporary directory: config, certificate, key, CA.

The key and certificate carry canary strings so tests can prove that their
bytes never reach any output.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


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


def pem(kind: str, canary: str, headers: str = "") -> str:
    body = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{canary}"
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n{headers}" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def make_gateway_files(root: Path) -> GatewayFiles:
    """Good modes everywhere: key 0600, the rest 0644, all owned by the current user."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    key_canary = "KEYCANARY" + secrets.token_hex(16)
    cert_canary = "CERTCANARY" + secrets.token_hex(16)
    files = GatewayFiles(
        root=root,
        config=root / "agent.yaml",
        cert=root / "device.pem.crt",
        key=root / "private.pem.key",
        ca=root / "AmazonRootCA1.pem",
        key_canary=key_canary,
        cert_canary=cert_canary,
    )
    files.key.write_text(pem("PRIVATE KEY", key_canary), encoding="ascii")
    os.chmod(files.key, 0o600)
    files.cert.write_text(pem("CERTIFICATE", cert_canary), encoding="ascii")
    files.ca.write_text(pem("CERTIFICATE", "CA" + secrets.token_hex(8)), encoding="ascii")
    for path in (files.cert, files.ca):
        os.chmod(path, 0o644)
    files.write_config()
    os.chmod(files.config, 0o644)
    return files
