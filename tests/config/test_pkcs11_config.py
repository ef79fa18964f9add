"""`mqtt.key` as an RFC 7512 PKCS#11 URI: what the parser takes and refuses (awscrt selects by token label,
slot id and key label only), the loader's problems with file, line and YAML path, and the file audit of the
module and the PIN file (the key audit's rules, LoadCredential= copy included)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

from agent.config.load import parse_config
from agent.config.pkcs11_uri import Pkcs11Uri, UriError, parse
from agent.errors import ConfigError
from agent.security import audit_files

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.mark.parametrize(("text", "expected"), [
    ("pkcs11:token=gw-token;object=device", Pkcs11Uri(token="gw-token", object="device")),
    ("PKCS11:token=gw-token", Pkcs11Uri(token="gw-token")),
    ("pkcs11:slot-id=1911117828;object=device;type=private", Pkcs11Uri(slot_id=1911117828, object="device")),
    ("pkcs11:token=My%20Token;object=k%c3%a9y", Pkcs11Uri(token="My Token", object="k\u00e9y")),
    ("pkcs11:token=t;slot-id=3", Pkcs11Uri(token="t", slot_id=3)),
])
def test_the_uris_awscrt_can_use(text: str, expected: Pkcs11Uri) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("pkcs11:object=device", "name the token: token=LABEL"),
    ("pkcs11:token=t;id=%01", "'id' cannot be used: awscrt selects the key by its label: use object=LABEL"),
    ("pkcs11:token=t;serial=abc", "'serial' cannot be used"),
    ("pkcs11:token=t?pin-value=1234", "the PIN never goes in the config's URI"),
    ("pkcs11:token=t?module-path=/usr/lib/x.so", "mqtt.pkcs11_library"),
    ("pkcs11:token=t;type=cert", "type=cert is not the private key: write type=private or leave type out"),
    ("pkcs11:token=t;type=nonsense", "type=nonsense is not a known object type"),
    ("pkcs11:token=t;token=u", "'token' is given twice"),
    ("pkcs11:token=a%2", "a '%' must start a percent-encoded byte"),
    ("pkcs11:token=%ff", "not UTF-8"),
    ("pkcs11:token=t;x-vendor=1", "unknown attribute 'x-vendor'"),
    ("pkcs11:token", "is not an attribute=value pair"),
    ("pkcs11:slot-id=one", "slot-id=one is not a decimal number"),
    ("pkcs11:token=", "token= is empty"),
])
def test_what_awscrt_cannot_select_by_is_refused_with_what_to_write(text: str, words: str) -> None:
    with pytest.raises(UriError) as info:
        parse(text)
    assert words in str(info.value)


def mqtt_config(tmp: Path, key: str, extra: str = "") -> str:
    return ("thing_name: gw-1\n"
            "mqtt:\n"
            "  endpoint: 127.0.0.1\n"
            f"  cert: {tmp / 'device.crt'}\n"
            f"  key: \"{key}\"\n"
            f"  ca: {tmp / 'ca.pem'}\n" + extra)


def problems(text: str) -> List[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.yaml")
    return [str(p) for p in info.value.problems]


def test_a_token_key_needs_its_module_and_pin_file(tmp_path: Path) -> None:
    found = problems(mqtt_config(tmp_path, "pkcs11:token=gw-token;object=device"))
    assert found == [
        "agent.yaml:2: mqtt.pkcs11_library: required key is missing: a pkcs11: key needs the token's PKCS#11 module, "
        "e.g. /usr/lib/softhsm/libsofthsm2.so",
        "agent.yaml:2: mqtt.pkcs11_pin_file: required key is missing: a pkcs11: key needs the file holding the "
        "token's user PIN, e.g. /etc/defender-agent/pkcs11-pin",
    ]


def test_a_bad_uri_names_the_key_line(tmp_path: Path) -> None:
    extra = "  pkcs11_library: /usr/lib/softhsm/libsofthsm2.so\n  pkcs11_pin_file: /etc/defender-agent/pkcs11-pin\n"
    [found] = problems(mqtt_config(tmp_path, "pkcs11:token=t;id=%01", extra))
    assert found.startswith("agent.yaml:5: mqtt.key: 'pkcs11:token=t;id=%01' is not a PKCS#11 URI awscrt can use: "
                            "attribute 'id' cannot be used"), found


def test_the_token_keys_without_a_token_key_are_refused(tmp_path: Path) -> None:
    extra = "  pkcs11_library: /usr/lib/softhsm/libsofthsm2.so\n"
    [found] = problems(mqtt_config(tmp_path, str(tmp_path / "private.pem.key"), extra))
    assert found.startswith("agent.yaml:7: mqtt.pkcs11_library: is only used with a key held by a PKCS#11 token"), found


def test_a_file_key_config_is_unchanged(tmp_path: Path) -> None:
    config = parse_config(mqtt_config(tmp_path, str(tmp_path / "private.pem.key")), "agent.yaml")
    assert config.mqtt is not None and not config.mqtt.on_token
    assert config.mqtt.pkcs11_library is None and config.mqtt.pkcs11_pin_file is None


# -- the file audit -------------------------------------------------------------------------------------


def token_layout(tmp: Path, pin_mode: int = 0o600) -> tuple[Path, Path, Path]:
    """Config, module and PIN file with good modes (the module a copy of a real file: only stat-ed here)."""
    for name in ("device.crt", "ca.pem"):
        (tmp / name).write_text("-----BEGIN CERTIFICATE-----\n")
        (tmp / name).chmod(0o644)
    module = tmp / "libtoken.so"
    module.write_bytes(b"\x7fELF")
    module.chmod(0o644)
    pin = tmp / "pkcs11-pin"
    pin.write_text("4711\n")
    pin.chmod(pin_mode)
    config = tmp / "agent.yaml"
    config.write_text(mqtt_config(tmp, "pkcs11:token=gw-token;object=device",
                                  f"  pkcs11_library: {module}\n  pkcs11_pin_file: {pin}\n"))
    config.chmod(0o600)
    return config, module, pin


def audit(config: Path, env: dict[str, str] | None = None) -> List[str]:
    from agent.config.load import load_config

    return [str(p) for p in audit_files(load_config(str(config)), env=env or {})]


def test_a_good_token_layout_passes_and_the_key_uri_is_no_file(tmp_path: Path) -> None:
    config, _, _ = token_layout(tmp_path)
    assert audit(config) == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_pin_file_others_can_read_is_refused_as_a_key_file_is(tmp_path: Path, mode: int) -> None:
    config, _, pin = token_layout(tmp_path, mode)
    [found] = audit(config)
    assert f"mqtt.pkcs11_pin_file: {pin}: PIN file is readable or writable by" in found
    assert f"Fix: chmod 600 {pin}" in found
    assert "4711" not in found


def test_a_missing_pin_file_is_refused(tmp_path: Path) -> None:
    config, _, pin = token_layout(tmp_path)
    pin.unlink()
    [found] = audit(config)
    assert f"mqtt.pkcs11_pin_file: {pin}: file not found" in found


def test_the_pin_file_copy_from_load_credential_is_read_and_the_file_on_disk_still_judged(tmp_path: Path) -> None:
    config, _, pin = token_layout(tmp_path, 0o644)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pkcs11-pin").write_text("4711\n")
    (creds / "pkcs11-pin").chmod(0o400)
    [found] = audit(config, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert f"{pin}: PIN file on disk (the file systemd's LoadCredential= copies) is readable" in found
    pin.chmod(0o600)
    assert audit(config, {"CREDENTIALS_DIRECTORY": str(creds)}) == []


def test_the_module_must_exist_and_be_a_regular_file(tmp_path: Path) -> None:
    config, module, _ = token_layout(tmp_path)
    module.unlink()
    [found] = audit(config)
    assert f"mqtt.pkcs11_library: {module}: PKCS#11 module not found" in found
    module.mkdir()
    [found] = audit(config)
    assert "must be a regular file" in found and "not a directory" in found


def test_a_module_others_can_write_is_refused(tmp_path: Path) -> None:
    config, module, _ = token_layout(tmp_path)
    module.chmod(0o666)
    [found] = audit(config)
    assert f"{module}: PKCS#11 module is writable by its group and others (mode 0666)" in found
    assert f"Fix: chmod go-w {module}" in found


@needs_root
def test_a_module_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    config, module, _ = token_layout(tmp_path)
    os.chown(module, NOBODY, -1)
    [found] = audit(config)
    assert f"{module}: PKCS#11 module is owned by uid {NOBODY}" in found and f"Fix: chown root {module}" in found
