"""A throwaway PKI for local brokers: one CA, a server certificate for loopback, client certificates.

Uses the ``openssl`` command line tool (present on every Debian machine), so no
Python crypto dependency is needed. EC P-256 keys keep generation fast. These
certificates are for tests and demos only: they live a few days and their keys
are not protected.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

DAYS = "3"


class CertError(RuntimeError):
    """openssl failed; the message carries its stderr."""


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    ca_key: Path
    server: KeyPair

    def client(self, name: str) -> KeyPair:
        """Issue (or reuse) a client certificate with CN=name."""
        cert = self.directory / f"{_safe(name)}.crt"
        key = self.directory / f"{_safe(name)}.key"
        if not cert.exists():
            _issue(self, name, cert, key, extensions="extendedKeyUsage=clientAuth\n")
        return KeyPair(cert, key)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "client"


def _openssl(args: List[str], cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key(path: Path, cwd: Path) -> None:
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)], cwd)
    os.chmod(path, 0o600)


def _issue(pki: Pki, cn: str, cert: Path, key: Path, extensions: str) -> None:
    d = pki.directory
    _new_key(key, d)
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    _openssl(["req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr)], d)
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" + extensions)
    _openssl(
        ["x509", "-req", "-in", str(csr), "-CA", str(pki.ca), "-CAkey", str(pki.ca_key),
         "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert)],
        d,
    )
    csr.unlink()
    ext.unlink()


def make_pki(directory: Path, ca_name: str = "defender-agent throwaway CA") -> Pki:
    """Create a CA and a server certificate valid for 127.0.0.1, ::1 and localhost in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = directory / "ca.crt"
    ca_key = directory / "ca.key"
    _new_key(ca_key, directory)
    _openssl(
        ["req", "-x509", "-new", "-key", str(ca_key), "-subj", f"/CN={ca_name}", "-days", DAYS, "-sha256",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-out", str(ca)],
        directory,
    )
    pki = Pki(directory, ca, ca_key, KeyPair(directory / "server.crt", directory / "server.key"))
    _issue(
        pki, "localhost", pki.server.cert, pki.server.key,
        extensions="extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n",
    )
    return pki
