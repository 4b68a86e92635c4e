"""Where the master key comes from: the OS keyring, a passphrase, or a key file.

The master key only wraps the vault's data key. Each source turns its input
into 32 bytes and says what must be remembered in the vault header to do it
again (salt and cost for a passphrase, entry name for the keyring). The header
decides which source opens a vault; config only tells where to find it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keyproxy.files import PIPE_S, read_bounded
from keyproxy.errors import MasterKeyUnavailable, UsageError
from keyproxy.secret import Secret
from keyproxy.vault import _crypto

KEYRING_SERVICE = "keyproxy"
SOURCES = ("keyring", "passphrase", "file")
MAX_PASSPHRASE_BYTES = 4096


class MasterSource(Protocol):
    kind: str

    def create(self, vault_id: str, generation: int) -> tuple[bytes, dict[str, Any]]:
        """A new master key and the header parameters needed to recover it."""

    def recover(self, vault_id: str, params: dict[str, Any]) -> bytes:
        """The master key described by `params` (from the header)."""

    def discard(self, params: dict[str, Any]) -> None:
        """Forget a master key that is no longer used (after a rekey)."""


# --- passphrase -------------------------------------------------------------


@dataclass
class PassphraseSource:
    """Argon2id over a passphrase read from a file or a TTY prompt (never argv)."""

    read_passphrase: Callable[[bool], Secret]
    kdf: _crypto.KdfParams = _crypto.KdfParams()
    kind: str = "passphrase"

    def create(self, vault_id: str, generation: int) -> tuple[bytes, dict[str, Any]]:
        problem = _crypto.check_kdf_params(self.kdf, creating=True)
        if problem:
            raise UsageError(f"vault.kdf: {problem}")
        salt = os.urandom(_crypto.SALT_BYTES)
        key = _crypto.derive_from_passphrase(self.read_passphrase(True).reveal(), salt, self.kdf)
        params = {
            "alg": "argon2id",
            "memory_kib": self.kdf.memory_kib,
            "iterations": self.kdf.iterations,
            "lanes": self.kdf.lanes,
            "salt": base64.b64encode(salt).decode(),
        }
        return key, params

    def recover(self, vault_id: str, params: dict[str, Any]) -> bytes:
        kdf, salt = kdf_from_header(params)
        return _crypto.derive_from_passphrase(self.read_passphrase(False).reveal(), salt, kdf)

    def discard(self, params: dict[str, Any]) -> None:
        pass


def kdf_from_header(params: dict[str, Any]) -> tuple[_crypto.KdfParams, bytes]:
    """Validate header KDF parameters before any memory is allocated for them."""
    from keyproxy.errors import VaultError

    if params.get("alg") != "argon2id":
        raise VaultError("vault header: unsupported key derivation")
    try:
        kdf = _crypto.KdfParams(params["memory_kib"], params["iterations"], params["lanes"])
        salt = base64.b64decode(params["salt"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise VaultError("vault header: malformed key-derivation parameters") from None
    problem = _crypto.check_kdf_params(kdf, creating=False)
    if problem or not 16 <= len(salt) <= 64:
        raise VaultError(f"vault header: refusing key-derivation parameters ({problem or 'salt length'})")
    return kdf, salt


def is_systemd_credential(path: Path) -> bool:
    """A file systemd handed this unit as a credential ($CREDENTIALS_DIRECTORY): private to the unit whatever its
    mode says (systemd grants the service user with an ACL, whose mask shows in the group bits: 0440)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(directory) and Path(os.path.realpath(path)).parent == Path(os.path.realpath(directory))


def _read_private(path: Path, size: int, what: str) -> bytes:
    """Up to `size` bytes of a file only its owner may read: one others can read is refused, as the private key
    file is (what it holds has leaked to them already); a systemd credential is the unit's alone."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077 and not is_systemd_credential(path):
            raise MasterKeyUnavailable(f"{what} {path} can be read by other users (mode {oct(mode & 0o777)}): "
                                       "chmod 600 it first")
        return read_bounded(path, size, pipe_s=PIPE_S)[:size]  # a FIFO with no writer: refused, not a hang
    except OSError as e:
        raise MasterKeyUnavailable(f"cannot read {what} {path}: {e.strerror}") from None


def passphrase_from_file(path: Path) -> Secret:
    """First line of `path`, without its line ending."""
    data = _read_private(path, MAX_PASSPHRASE_BYTES + 2, "passphrase file")
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise MasterKeyUnavailable(f"passphrase file {path} is empty")
    if len(line) > MAX_PASSPHRASE_BYTES:
        raise MasterKeyUnavailable(f"passphrase in {path} is longer than {MAX_PASSPHRASE_BYTES} bytes")
    return Secret(line)


# --- key file ---------------------------------------------------------------


@dataclass
class FileSource:
    """A 32-byte key in a file, e.g. a systemd credential under $CREDENTIALS_DIRECTORY.

    The file holds 32 raw bytes, or 64 hex digits (a trailing newline is fine).
    Rekeying to a file source names the new file; the header remembers nothing
    but the kind, so the file can move (credentials directories do).
    """

    path: Path
    kind: str = "file"

    def create(self, vault_id: str, generation: int) -> tuple[bytes, dict[str, Any]]:
        return self._read(), {}

    def recover(self, vault_id: str, params: dict[str, Any]) -> bytes:
        return self._read()

    def discard(self, params: dict[str, Any]) -> None:
        pass

    def _read(self) -> bytes:
        data = _read_private(self.path, 200, "key file")
        if len(data) == _crypto.KEY_BYTES:
            return data
        text = data.strip()
        if len(text) == 2 * _crypto.KEY_BYTES:
            try:
                return bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                pass
        raise MasterKeyUnavailable(
            f"key file {self.path} must hold 32 random bytes or 64 hex digits"
        )


def write_key_file(path: Path) -> None:
    """Create a new random key file (mode 0600); refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_crypto.new_key())
        f.flush()
        os.fsync(f.fileno())


# --- OS keyring -------------------------------------------------------------

# Backends that are not a real OS secret store: a "fail" stub, a null one, or
# keyrings.alt's files (plaintext or weakly encrypted). We refuse them.
_REFUSED_BACKEND_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def usable_keyring() -> tuple[Any | None, str]:
    """The keyring backend to use, or None with the reason it cannot be used."""
    try:
        import keyring
        from keyring.backends import chainer
    except Exception as e:  # pragma: no cover - keyring is a hard dependency
        return None, f"keyring package unavailable ({type(e).__name__})"
    backend = keyring.get_keyring()
    backends = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
    good = [b for b in backends if not type(b).__module__.startswith(_REFUSED_BACKEND_MODULES)]
    if not good:
        names = ", ".join(f"{type(b).__module__}.{type(b).__name__}" for b in backends) or "none"
        return None, f"no OS keyring backend is available (found: {names})"
    return backend, ""


@dataclass
class KeyringSource:
    """A random key kept in the OS keyring under service `keyproxy`.

    Each master-key generation gets its own entry name, so a rekey writes the
    new entry first, commits the vault, and only then deletes the old entry: a
    crash at any point leaves the entry the header names in place.
    """

    kind: str = "keyring"

    def create(self, vault_id: str, generation: int) -> tuple[bytes, dict[str, Any]]:
        backend = self._backend()
        key = _crypto.new_key()
        entry = f"vault-{vault_id}-g{generation}"
        try:
            backend.set_password(KEYRING_SERVICE, entry, base64.b64encode(key).decode())
        except Exception as e:
            raise MasterKeyUnavailable(f"cannot store the master key in the keyring: {type(e).__name__}") from None
        return key, {"entry": entry}

    def recover(self, vault_id: str, params: dict[str, Any]) -> bytes:
        backend = self._backend()
        entry = str(params.get("entry", ""))
        try:
            stored = backend.get_password(KEYRING_SERVICE, entry)
        except Exception as e:
            raise MasterKeyUnavailable(f"cannot read the keyring: {type(e).__name__}") from None
        if stored is None:
            raise MasterKeyUnavailable(
                f"the keyring has no entry {KEYRING_SERVICE}/{entry} for this vault; "
                "restore it from your keyring backup, or restore the vault from a backup"
            )
        try:
            key = base64.b64decode(stored, validate=True)
        except ValueError:
            key = b""
        if len(key) != _crypto.KEY_BYTES:
            raise MasterKeyUnavailable(f"the keyring entry {KEYRING_SERVICE}/{entry} is not a keyproxy key")
        return key

    def discard(self, params: dict[str, Any]) -> None:
        backend, _ = usable_keyring()
        if backend is None:
            return
        try:
            backend.delete_password(KEYRING_SERVICE, str(params.get("entry", "")))
        except Exception:
            pass  # a leftover entry wraps nothing any more; never fail a committed rekey

    @staticmethod
    def _backend() -> Any:
        backend, why = usable_keyring()
        if backend is None:
            raise MasterKeyUnavailable(
                f"{why}; use a passphrase (KEYPROXY_PASSPHRASE_FILE or a prompt) or a key file instead"
            )
        return backend
