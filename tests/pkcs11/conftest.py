"""A real PKCS#11 token for the tests: Debian's SoftHSM2 in a private SOFTHSM2_CONF, keys made by openssl,
certificates from the test CA, the keys imported onto the token (softhsm2-util --import) and their files deleted.

On the token ``gw-token`` (user PIN ``PIN``): ``device-ec`` (EC P-256), ``device-rsa`` (RSA 2048) and two keys
both labelled ``twin``. The certificates: one per key, and ``stranger.crt`` whose key is on no token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from devkit.certs import Pki
from tests.delivery.conftest import broker, pki, responder  # noqa: F401  (shared fixtures)
from tests.install.conftest import base_venv, debian_program, installed  # noqa: F401  (shared fixtures)

SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "gw-token"
PIN = "4711-secret-pin"  # distinctive, so that a test can grep for it in every output
SO_PIN = "so-pin-0815"


@dataclass(frozen=True)
class Token:
    conf: Path  # SOFTHSM2_CONF
    library: Path
    label: str
    pin_file: Path
    ec_cert: Path
    rsa_cert: Path
    twin_cert: Path
    stranger_cert: Path

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{args[0]} failed: {done.stderr or done.stdout}"


def _key_and_cert(ca: Pki, directory: Path, name: str, algorithm: list[str]) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.pem", directory / f"{name}.csr", directory / f"{name}.crt"
    _run("openssl", "genpkey", *algorithm, "-out", str(key))
    _run("openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    ext = directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.ca), "-CAkey", str(ca.ca_key), "-CAcreateserial",
         "-days", "3", "-sha256", "-extfile", str(ext), "-out", str(cert))
    p8 = directory / f"{name}.p8"
    _run("openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-out", str(p8))
    for path in (key, csr, ext):
        path.unlink()
    return p8, cert


EC = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
RSA = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]


@pytest.fixture(scope="session")
def token(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:  # noqa: F811
    if not SOFTHSM.is_file() or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (make mosquitto installs softhsm2)")
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    _run("softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN, env=env)
    certs = {}
    for index, (name, algorithm, label) in enumerate([("device-ec", EC, "device-ec"), ("device-rsa", RSA, "device-rsa"),
                                                      ("twin-1", EC, "twin"), ("twin-2", EC, "twin")]):
        p8, cert = _key_and_cert(pki, home, name, algorithm)
        _run("softhsm2-util", "--import", str(p8), "--token", TOKEN, "--label", label, "--id", f"{index + 1:02x}",
             "--pin", PIN, env=env)
        p8.unlink()  # the key lives on the token only
        certs[name] = cert
    p8, stranger = _key_and_cert(pki, home, "stranger", EC)
    p8.unlink()
    pin_file = home / "pkcs11-pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # the in-process tests load SoftHSM into this process
    yield Token(conf, SOFTHSM, TOKEN, pin_file, certs["device-ec"], certs["device-rsa"], certs["twin-1"], stranger)
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before
