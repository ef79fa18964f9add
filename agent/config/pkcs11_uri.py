"""RFC 7512 PKCS#11 URIs (``pkcs11:token=gw-token;object=device``) as ``mqtt.key``: parse, and keep what awscrt can use.

Pure. awscrt selects the token by label or slot id and the private key by label
(``TlsContextOptions.create_client_with_mtls_pkcs11``: ``token_label``, ``slot_id``,
``private_key_label``), so of RFC 7512's path attributes only ``token``, ``slot-id``,
``object`` and ``type=private`` are accepted; any other attribute (``id``, ``serial``,
``manufacturer`` ...) would be silently ignored by awscrt, so it is refused with what to
write instead. The PIN never goes in the URI (``pin-value``, ``pin-source``): it is read from
``mqtt.pkcs11_pin_file``; the module from ``mqtt.pkcs11_library`` (``module-path``, ``module-name``).

RFC 7512 section 2.3: ``pkcs11:`` then path attributes separated by ``;``, optionally ``?`` and
query attributes separated by ``&``; values are percent-decoded; an attribute appears at most once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional
from urllib.parse import unquote_to_bytes

SCHEME = "pkcs11:"

_PATH_ATTRIBUTES = {  # RFC 7512 section 2.3 (and 2.3 of its errata: slot-id, slot-description, slot-manufacturer)
    "token", "manufacturer", "serial", "model", "library-manufacturer", "library-description", "library-version",
    "object", "type", "id", "slot-id", "slot-description", "slot-manufacturer",
}
_QUERY_ATTRIBUTES = {"pin-source", "pin-value", "module-name", "module-path"}
_USED = {"token", "slot-id", "object", "type"}
_OBJECT_TYPES = {"public", "private", "cert", "secret-key", "data"}
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")

WHY_NOT = {  # what awscrt cannot select by, and what to use instead
    "id": "awscrt selects the key by its label: use object=LABEL",
    "serial": "awscrt selects the token by its label or slot id: use token=LABEL",
    "manufacturer": "awscrt selects the token by its label or slot id: use token=LABEL",
    "model": "awscrt selects the token by its label or slot id: use token=LABEL",
    "library-manufacturer": "the module is mqtt.pkcs11_library",
    "library-description": "the module is mqtt.pkcs11_library",
    "library-version": "the module is mqtt.pkcs11_library",
    "slot-description": "awscrt selects the token by its label or slot id: use token=LABEL",
    "slot-manufacturer": "awscrt selects the token by its label or slot id: use token=LABEL",
    "pin-value": "the PIN never goes in the config's URI: put it in the file named by mqtt.pkcs11_pin_file",
    "pin-source": "the PIN is read from mqtt.pkcs11_pin_file",
    "module-name": "name the module's file in mqtt.pkcs11_library",
    "module-path": "name the module's file in mqtt.pkcs11_library",
}


class UriError(ValueError):
    """The text is not a PKCS#11 URI awscrt can use; the message says why and what to write."""


@dataclass(frozen=True)
class Pkcs11Uri:
    """The token (by label or slot id) and the private key (by label; None: the token's only private key)."""

    token: Optional[str] = None
    slot_id: Optional[int] = None
    object: Optional[str] = None

    def describe(self) -> str:
        """For messages: ``token 'gw-token', key 'device'`` (no secret is ever part of it)."""
        where = f"token {self.token!r}" if self.token is not None else f"slot {self.slot_id}"
        if self.token is not None and self.slot_id is not None:
            where += f" in slot {self.slot_id}"
        what = f"key {self.object!r}" if self.object is not None else "its only private key"
        return f"{where}, {what}"


def is_pkcs11_uri(text: str) -> bool:
    return text[: len(SCHEME)].lower() == SCHEME


def parse(text: str) -> Pkcs11Uri:
    """The token and key that ``text`` names. Raises :class:`UriError` for what awscrt cannot select by."""
    if not is_pkcs11_uri(text):
        raise UriError(f"a PKCS#11 URI starts with {SCHEME!r}")
    body = text[len(SCHEME):]
    path, _, query = body.partition("?")
    found: Dict[str, str] = {}
    for part, separator, known in ((path, ";", _PATH_ATTRIBUTES), (query, "&", _QUERY_ATTRIBUTES)):
        for item in part.split(separator) if part else ():
            name, equals, raw = item.partition("=")
            name = name.strip()
            if not equals or not name:
                raise UriError(f"{item!r} is not an attribute=value pair (RFC 7512: pkcs11:token=LABEL;object=LABEL)")
            if name not in known and name not in WHY_NOT:
                raise UriError(f"unknown attribute {name!r}; awscrt selects by token=, slot-id= and object=")
            if name in found:
                raise UriError(f"attribute {name!r} is given twice")
            found[name] = _decode(name, raw)
    unusable = sorted(set(found) - _USED)
    if unusable:
        name = unusable[0]
        why = WHY_NOT.get(name, "awscrt cannot select by it")
        raise UriError(f"attribute {name!r} cannot be used: {why}")
    kind = found.get("type")
    if kind is not None and kind != "private":
        what = "is not a known object type" if kind not in _OBJECT_TYPES else "is not the private key"
        raise UriError(f"type={kind} {what}: write type=private or leave type out")
    slot_id = None
    if "slot-id" in found:
        if not found["slot-id"].isdigit():
            raise UriError(f"slot-id={found['slot-id']} is not a decimal number")
        slot_id = int(found["slot-id"])
        if slot_id > 0xFFFFFFFFFFFFFFFF:
            raise UriError(f"slot-id={found['slot-id']} is larger than a CK_SLOT_ID")
    token = found.get("token")
    if token is None and slot_id is None:
        raise UriError("name the token: token=LABEL (its label, as softhsm2-util --show-slots or "
                       "pkcs11-tool --list-token-slots prints it), or slot-id=N")
    for name in ("token", "object"):
        if found.get(name) == "":
            raise UriError(f"{name}= is empty")
    return Pkcs11Uri(token=token, slot_id=slot_id, object=found.get("object"))


def _decode(name: str, raw: str) -> str:
    if _PCT.search(raw):
        raise UriError(f"{name}: a '%' must start a percent-encoded byte like %20")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise UriError(f"{name}: the percent-encoded bytes are not UTF-8") from None
