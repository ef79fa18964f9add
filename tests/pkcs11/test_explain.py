"""Which failure it is, from what awscrt says: the error of 0.20.3 and later, or Debian 0.16.8's error 34 and
the line of its own log that tells (the texts below were printed by those versions against SoftHSM2)."""

from __future__ import annotations

from typing import List

import pytest

from agent.config.pkcs11_uri import Pkcs11Uri
from agent.mqtt.pkcs11 import Identity, explain, kind_of

OLD = "34 (AWS_ERROR_INVALID_ARGUMENT): An invalid argument was passed to a function"
LOG = "[ERROR] [2026-12-05T23:49:38Z] [00007fb28b2f2040] [pkcs11] - id=0x2b1fb00 session=3: "


@pytest.mark.parametrize(("error", "lines", "kind"), [
    ("1117 (AWS_ERROR_PKCS11_CKR_PIN_INCORRECT): A PKCS#11 (Cryptoki) library function failed with return value "
     "CKR_PIN_INCORRECT", [], "pin"),
    (OLD, [LOG + "C_Login() failed. PKCS#11 error: CKR_PIN_INCORRECT (0x000000A0). AWS error: "
                 "AWS_ERROR_PKCS11_CKR_PIN_INCORRECT"], "pin"),
    ("1074 (AWS_ERROR_PKCS11_TOKEN_NOT_FOUND): Could not pick PKCS#11 token matching search criteria", [], "token"),
    (OLD, [LOG + "Failed to find PKCS#11 token which matches search criteria"], "token"),
    ("1075 (AWS_ERROR_PKCS11_KEY_NOT_FOUND): Could not pick PKCS#11 key matching search criteria (none found, or "
     "multiple found)", [], "key-or-several"),
    (OLD, [LOG + "Failed to find private key on PKCS#11 token which matches search criteria"], "key"),
    (OLD, [LOG + "Failed to choose private key, multiple objects on PKCS#11 token match search criteria"],
     "several"),
    ("1065 (AWS_IO_SHARED_LIBRARY_LOAD_FAILURE): System call error during attempt to load shared library", [],
     "load"),
    ("1066 (AWS_IO_SHARED_LIBRARY_FIND_SYMBOL_FAILURE): System call error during attempt to find shared library "
     "symbol", [], "not-pkcs11"),
    (OLD, [], None),
])
def test_the_failure_is_told_on_every_version(error: str, lines: List[str], kind: str) -> None:
    assert kind_of(error, lines) == kind


IDENT = Identity("/usr/lib/softhsm/libsofthsm2.so", Pkcs11Uri(token="gw-token", object="device"), "/c.crt",
                 "/etc/defender-agent/pkcs11-pin")


@pytest.mark.parametrize(("kind", "field", "words"), [
    ("pin", "mqtt.pkcs11_pin_file", "refused the PIN in /etc/defender-agent/pkcs11-pin (CKR_PIN_INCORRECT)"),
    ("locked", "mqtt.pkcs11_pin_file", "locked after too many wrong PINs"),
    ("token", "mqtt.key", "no token labelled 'gw-token' on /usr/lib/softhsm/libsofthsm2.so"),
    ("key", "mqtt.key", "no private key labelled 'device' on the token"),
    ("key-or-several", "mqtt.key", "no private key labelled 'device' (or several)"),
    ("several", "mqtt.key", "several private keys on the token match object='device'"),
    ("not-pkcs11", "mqtt.pkcs11_library", "is not a PKCS#11 module"),
    ("load", "mqtt.pkcs11_library", "cannot load the PKCS#11 module"),
    (None, "mqtt.key", f"cannot use the key on the token (token 'gw-token', key 'device') with "
                       f"/usr/lib/softhsm/libsofthsm2.so: {OLD}"),
])
def test_each_failure_is_one_line_with_the_field_to_fix(kind: str, field: str, words: str) -> None:
    error = explain(kind, IDENT, OLD, [])
    assert error.field == field
    assert words in str(error) and "\n" not in str(error)
    if kind is not None:
        assert "Fix:" in str(error)
