"""A device key held by a PKCS#11 token (a TPM 2.0 through tpm2-pkcs11, SoftHSM, a secure element).

:class:`Tokens` is the one holder of the process's ``awscrt.io.Pkcs11Lib``: the run's
link factory owns one and keeps it across reconnects and reloads (a second STRICT
initialisation of one module fails with CKR_CRYPTOKI_ALREADY_INITIALIZED); it builds
a new one only when ``mqtt.pkcs11_library`` names another module.

Every failure becomes one line that says which it is and the fix (:func:`explain`), on
every awscrt: 0.20.3 and later name the PKCS#11 error (``AWS_ERROR_PKCS11_CKR_PIN_INCORRECT``
...), Debian bookworm's 0.16.8 collapses them all into ``34 (AWS_ERROR_INVALID_ARGUMENT)``
and says what it was only in its own log. So :class:`CrtLog` routes awscrt's log (errors
only) to a memory file while a token context is being built, and nowhere otherwise; the
lines it read go to the journal at debug. A token's failure is never retried here: the
caller turns it into a config error (exit 78), since a TPM counts each wrong PIN towards
its dictionary-attack lockout. A link built again for the same ``mqtt`` section (MQTT 3.1.1 restarts
a failed first connect that way) reuses the context: one login per run and per reload that changes
``mqtt``. PKCS#11 login state belongs to the process: once logged in, a later C_Login (a reload)
answers CKR_USER_ALREADY_LOGGED_IN whatever the PIN, so a PIN is only ever judged at start.

A certificate that is not the token key's is only seen at the TLS handshake (awscrt cannot compare
them before): :func:`handshake_hint` adds the comparison to run to the connect failure's line.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from agent.config.model import MqttConfig
from agent.config.pkcs11_uri import Pkcs11Uri
from agent.config.pkcs11_uri import parse as parse_uri
from agent.security import resolve_credential

LOG_WAIT = 1.0  # seconds the newer awscrt's log thread gets to write a line that tells two failures apart
LOG_POLL = 0.05
MAX_LOG_BYTES = 64 * 1024  # of awscrt's log kept per context build
MAX_PIN_BYTES = 256
MEMFD_NAME = "defender-agent-awscrt-log"


class TokenError(Exception):
    """The token, its module, PIN or key cannot be used; ``field`` is the mqtt key to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Identity:
    """What a token context is built from; the PIN is read from ``pin_file`` when it is built, never kept."""

    library: str
    uri: Pkcs11Uri
    cert: str
    pin_file: str  # the file actually read (a LoadCredential= copy when there is one)

    @classmethod
    def of(cls, mqtt: MqttConfig) -> Identity:
        assert mqtt.pkcs11_library is not None and mqtt.pkcs11_pin_file is not None, "checked by the loader"
        return cls(mqtt.pkcs11_library, parse_uri(mqtt.key), mqtt.cert, resolve_credential(mqtt.pkcs11_pin_file))


def read_pin(path: str) -> str:
    """The user PIN: the file's first line, without its line end. Raises :class:`TokenError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PIN_BYTES + 1)
    except OSError as exc:
        raise TokenError("mqtt.pkcs11_pin_file", f"{path}: cannot read the PIN file: {exc.strerror}") from None
    if len(data) > MAX_PIN_BYTES:
        raise TokenError("mqtt.pkcs11_pin_file", f"{path}: longer than {MAX_PIN_BYTES} bytes; it must hold only "
                                                 "the PIN, on one line")
    text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    pin = lines[0] if lines else ""
    if not pin:
        raise TokenError("mqtt.pkcs11_pin_file", f"{path}: the PIN file is empty. Fix: write the token's user PIN "
                                                 "into it (printf '%s' PIN > FILE; chmod 600 FILE)")
    if len([line for line in lines if line]) > 1:
        raise TokenError("mqtt.pkcs11_pin_file", f"{path}: holds more than one line; it must hold only the PIN")
    return pin


class CrtLog:
    """awscrt's own log, errors only, into a memory file while a token context is built (and nowhere after).

    awscrt 0.16.8 lets ``init_logging`` be called again (which closes, so flushes, the previous file): it is
    opened before and closed after each build. Newer awscrt allows one ``init_logging`` per process and has
    ``set_log_level``: the level goes up for the build and back to none after, and a later ``CrtLog`` of the
    same process finds the first one's memory file by its name. When something else set up awscrt's logging
    first, nothing is captured and the error names alone tell (then "no key" and "several keys" read as one).
    """

    def __init__(self) -> None:
        self._fd: Optional[int] = None
        self._usable = True

    def start(self) -> None:
        from awscrt import io as crt_io

        if not self._usable:
            return
        if self._fd is None:
            fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
            try:
                crt_io.init_logging(crt_io.LogLevel.Error, f"/proc/self/fd/{fd}")
            except RuntimeError:  # newer awscrt: a logger was set up before, by an earlier CrtLog or not at all
                os.close(fd)
                earlier = _earlier_log()
                if earlier is None:
                    self._usable = False
                    return
                fd = earlier
                os.ftruncate(fd, 0)
                crt_io.set_log_level(crt_io.LogLevel.Error)
            self._fd = fd
            weakref.finalize(self, os.close, fd)
            return
        os.ftruncate(self._fd, 0)
        if hasattr(crt_io, "set_log_level"):
            crt_io.set_log_level(crt_io.LogLevel.Error)
        else:
            crt_io.init_logging(crt_io.LogLevel.Error, self._path())

    def stop(self, wait_for: Sequence[str] = ()) -> List[str]:
        """Logging off; the lines written since :meth:`start`. With ``wait_for``, wait (bounded) until one
        of those texts is in them: awscrt writes from a thread of its own, through a buffered ``FILE``."""
        from awscrt import io as crt_io

        if self._fd is None:
            return []
        deadline = time.monotonic() + (LOG_WAIT if wait_for else 0.0)
        text = self._flushed()
        while wait_for and not any(w in text for w in wait_for) and time.monotonic() < deadline:
            time.sleep(LOG_POLL)
            text = self._flushed()
        if hasattr(crt_io, "set_log_level"):
            crt_io.set_log_level(crt_io.LogLevel.NoLogs)
        else:
            crt_io.init_logging(crt_io.LogLevel.NoLogs, "stderr")  # closes (and flushes) our file
            text = self._read()
        return [line for line in text.splitlines() if line.strip()]

    def _flushed(self) -> str:
        """The file after C's ``fflush(NULL)``: awscrt's log ``FILE`` is fully buffered (it is not a terminal)."""
        ctypes.CDLL(None).fflush(None)
        return self._read()

    def _path(self) -> str:
        return f"/proc/self/fd/{self._fd}"

    def _read(self) -> str:
        assert self._fd is not None
        return os.pread(self._fd, MAX_LOG_BYTES, 0).decode("utf-8", "replace")


def _earlier_log() -> Optional[int]:
    """The memory file an earlier :class:`CrtLog` of this process gave awscrt (newer awscrt lets its logger be
    set up once per process): found among this process's open files by its name, opened anew."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
        if target.startswith(f"/memfd:{MEMFD_NAME} "):
            try:
                return os.open(f"/proc/self/fd/{name}", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
    return None


# What awscrt's log and error names say, in the order they are looked for: (texts, kind).
_SIGNS: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("CKR_PIN_INCORRECT",), "pin"),
    (("CKR_PIN_LOCKED",), "locked"),
    (("CKR_PIN_EXPIRED", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE"), "pin"),
    (("multiple objects on PKCS#11 token match",), "several"),
    (("Failed to find private key on PKCS#11 token",), "key"),
    (("Failed to find PKCS#11 token", "AWS_ERROR_PKCS11_TOKEN_NOT_FOUND"), "token"),
    (("AWS_ERROR_PKCS11_KEY_NOT_FOUND",), "key-or-several"),
    (("C_GetFunctionList", "AWS_IO_SHARED_LIBRARY_FIND_SYMBOL_FAILURE"), "not-pkcs11"),
    (("Failed to load shared library", "AWS_IO_SHARED_LIBRARY_LOAD_FAILURE"), "load"),
    (("CKR_TOKEN_NOT_PRESENT", "CKR_DEVICE_ERROR", "CKR_DEVICE_REMOVED"), "device"),
    (("CKR_USER_TYPE_INVALID", "CKR_USER_PIN_NOT_INITIALIZED"), "pin-not-set"),
    (("CKR_GENERAL_ERROR", "CKR_FUNCTION_FAILED"), "device"),
)
# What a failed build waits for in awscrt's log (how it tells "no key" from "several keys" on every version).
FAILURE_SIGNS = ("[pkcs11]", "[shared-library]")


def kind_of(error: str, log_lines: Sequence[str]) -> Optional[str]:
    """Which failure it is (``pin``, ``token``, ``key``, ``several`` ...), from awscrt's log first (it is precise
    on every version), then from its error name; None when neither tells."""
    for texts, kind in _SIGNS:
        if any(text in line for line in log_lines for text in texts):
            return kind
    for texts, kind in _SIGNS:
        if any(text in error for text in texts):
            return kind
    return None


def explain(kind: Optional[str], ident: Identity, error: str, log_lines: Sequence[str]) -> TokenError:
    """One line for the operator: what is wrong and the fix. Never the PIN."""
    lib, uri = ident.library, ident.uri
    tool = f"pkcs11-tool --module {lib}"
    select = f"--token-label {uri.token!r}" if uri.token is not None else f"--slot {uri.slot_id}"
    if kind == "pin":
        return TokenError("mqtt.pkcs11_pin_file", (
            f"the token ({uri.describe()}) refused the PIN in {ident.pin_file} (CKR_PIN_INCORRECT). Not tried again: "
            f"a TPM counts every wrong PIN towards its lockout. Fix: write the token's user PIN into that file, "
            f"then start the agent again"))
    if kind == "locked":
        return TokenError("mqtt.pkcs11_pin_file", (
            f"the token ({uri.describe()}) is locked after too many wrong PINs (CKR_PIN_LOCKED). Fix: unlock it with "
            f"its SO PIN (TPM 2.0: tpm2_ptool changepin --user so; or wait out the TPM's lockout) and check "
            f"{ident.pin_file}"))
    if kind == "pin-not-set":
        return TokenError("mqtt.key", (
            f"the token ({uri.describe()}) has no user PIN set up. Fix: initialise it (softhsm2-util --init-token; "
            f"tpm2_ptool addtoken) with a user PIN and write that PIN into {ident.pin_file}"))
    if kind == "token":
        which = f"labelled {uri.token!r}" if uri.token is not None else ""
        if uri.slot_id is not None:
            which = f"{which} in slot {uri.slot_id}".strip()
        return TokenError("mqtt.key", (
            f"no token {which} on {lib}. Fix: list the tokens with `{tool} --list-token-slots` and correct "
            f"token= in mqtt.key (select by label: SoftHSM renumbers its slots)"))
    if kind in ("key", "key-or-several", "several"):
        listing = f"`{tool} {select} --login --list-objects --type privkey`"
        if kind == "several":
            what = (f"several private keys on the token match object={uri.object!r}" if uri.object is not None
                    else "the token holds several private keys and mqtt.key names none")
            return TokenError("mqtt.key", f"{what} ({uri.describe()}). Fix: name one with object=LABEL in mqtt.key, "
                                          f"a label only that key has ({listing} lists them)")
        what = (f"no private key labelled {uri.object!r}" if uri.object is not None else "no private key")
        if kind == "key-or-several":
            what += " (or several)"
        return TokenError("mqtt.key", f"{what} on the token ({uri.describe()}). Fix: list the keys with {listing} "
                                      f"and correct object= in mqtt.key")
    if kind == "not-pkcs11":
        return TokenError("mqtt.pkcs11_library", (
            f"{lib} is not a PKCS#11 module (it has no C_GetFunctionList). Fix: name the token's module, e.g. "
            f"/usr/lib/softhsm/libsofthsm2.so or /usr/lib/<triplet>/pkcs11/libtpm2_pkcs11.so"))
    if kind == "load":
        reason = _after(log_lines, "with error: ") or error
        return TokenError("mqtt.pkcs11_library", (
            f"cannot load the PKCS#11 module {lib} ({reason}). Fix: install what it needs (ldd {lib}) or name "
            f"another module"))
    if kind == "device":
        return TokenError("mqtt.key", (
            f"the token ({uri.describe()}) on {lib} does not answer ({error}). Fix: check the device (TPM 2.0: "
            f"/dev/tpmrm0 and the drop-in that allows it; `{tool} --list-token-slots`)"))
    said = f"; awscrt's log: {log_lines[-1].split('] - ', 1)[-1]}" if log_lines else ""
    return TokenError("mqtt.key", f"cannot use the key on the token ({uri.describe()}) with {lib}: {error}{said}")


def handshake_hint(mqtt: MqttConfig, error: str) -> str:
    """What to add to a refused TLS handshake when the key is on a token: the likely cause is a certificate that
    is not the token key's (awscrt cannot compare them before it connects)."""
    if not mqtt.on_token or not any(sign in error for sign in HANDSHAKE_SIGNS):
        return ""
    try:
        uri = parse_uri(mqtt.key)
    except ValueError:
        return ""
    select = f"--token-label '{uri.token}'" if uri.token is not None else f"--slot {uri.slot_id}"
    label = f" --label '{uri.object}'" if uri.object is not None else ""
    return (f"; the key is on a token: check that {mqtt.cert} is its certificate (the two must print the same: "
            f"openssl x509 -noout -pubkey -in {mqtt.cert}; pkcs11-tool --module {mqtt.pkcs11_library} {select} "
            f"--read-object --type pubkey{label} | openssl pkey -pubin -inform DER)")


HANDSHAKE_SIGNS = ("TLS_ERROR_NEGOTIATION_FAILURE", "SIGNATURE_ALGORITHM_UNSUPPORTED", "TLS_ALERT")


def _after(lines: Sequence[str], marker: str) -> str:
    for line in lines:
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return ""


def _error_text(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    text = str(exc).rstrip(". ")
    return f"{name}: {text}" if name and name not in text else text


class Tokens:
    """The process's PKCS#11 module (one ``Pkcs11Lib``) and awscrt's log while token contexts are built."""

    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        self.log = logger or logging.getLogger("agent.mqtt.pkcs11")
        self._library: Optional[str] = None
        self._lib: Any = None
        self.crt_log = CrtLog()
        self.builds = 0  # token contexts built (each one C_Login): for tests and the journal
        self._last: Optional[Tuple[MqttConfig, Optional[List[str]], Any]] = None  # (mqtt, alpn, context)

    def lib(self, path: str) -> Any:
        """The ``Pkcs11Lib`` of ``path``: the one already loaded, or a new one when the module changed."""
        if self._lib is not None and self._library == path:
            return self._lib
        from awscrt import io as crt_io

        self._lib, self._library = None, None  # the old module is released once no context uses it
        self._lib = crt_io.Pkcs11Lib(file=path, behavior=crt_io.Pkcs11Lib.InitializeFinalizeBehavior.DEFAULT)
        self._library = path
        return self._lib

    def context(self, mqtt: MqttConfig, alpn: Optional[List[str]] = None) -> Any:
        """The ``ClientTlsContext`` with the key on the token: awscrt logs in and finds the key here (one
        C_Login, on every version). Raises :class:`TokenError`, never retries.

        The same ``mqtt`` section again (MQTT 3.1.1's restart of a failed first connect builds its link anew)
        gets the context already built: no second login."""
        from awscrt import io as crt_io

        if self._last is not None and self._last[0] == mqtt and self._last[1] == alpn:
            return self._last[2]
        ident = Identity.of(mqtt)
        pin = read_pin(ident.pin_file)  # a file that cannot be read fails before awscrt is touched
        self.crt_log.start()
        try:
            lib = self.lib(ident.library)
            options = crt_io.TlsContextOptions.create_client_with_mtls_pkcs11(
                pkcs11_lib=lib, user_pin=pin, slot_id=ident.uri.slot_id, token_label=ident.uri.token,
                private_key_label=ident.uri.object, cert_file_path=ident.cert)
            options.override_default_trust_store_from_path(None, mqtt.ca)
            if alpn:
                options.alpn_list = alpn
            context = crt_io.ClientTlsContext(options)
        except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError
            error = _error_text(exc)
            lines = self.crt_log.stop(FAILURE_SIGNS)
            self._forward(lines)
            raise explain(kind_of(error, lines), ident, error, lines) from None
        finally:
            del pin
        self._forward(self.crt_log.stop())
        self.builds += 1
        self._last = (mqtt, alpn, context)
        return context

    def _forward(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.log.debug("awscrt: %s", line)
