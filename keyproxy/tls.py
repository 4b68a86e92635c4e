"""An optional TLS listener, for SDKs that only speak `wss://`/`https://` (python-okx always passes an SSL
context, so it cannot reach a `ws://` URL).

`keyproxy tls init` makes a private CA and a certificate for the loopback names (127.0.0.1, ::1, localhost)
with the `cryptography` library; the CA's private key is never written (nothing else can be issued under
it), and the server key is written 0600 next to the certificate. A client trusts keyproxy with the CA
certificate: `SSL_CERT_FILE=<dir>/ca.pem` for Python's default contexts (python-okx's included).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from keyproxy.errors import KeyproxyError
from keyproxy.vault._crypto import loopback_certificates
from keyproxy.vault.store import ensure_private_dir

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


DAYS_RANGE = (1, 3650)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically: a crash leaves the old file or the new one, never a torn key. The temporary name is new and
    never a link (session 35's review: a fixed name let a symlink planted there receive the private key)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def make_local_ca(directory: Path, days: int = 825) -> TlsFiles:
    """A fresh CA and loopback server certificate in `directory` (ca.pem, cert.pem, key.pem)."""
    if not DAYS_RANGE[0] <= days <= DAYS_RANGE[1]:
        raise TlsError(f"--days must be {DAYS_RANGE[0]} to {DAYS_RANGE[1]}, not {days}")
    ensure_private_dir(directory)  # a key written where another user can replace it is not this user's key
    ca, cert, key = loopback_certificates(LOOPBACK_NAMES, LOOPBACK_ADDRESSES, days)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    _write(files.key, key, 0o600)
    _write(files.cert, cert, 0o644)
    _write(files.ca, ca, 0o644)
    return files


class TlsError(KeyproxyError):
    """The configured certificate or key cannot be used (said in one line, no traceback)."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The listener's TLS context: TLS 1.2 or later, the configured certificate chain and key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise TlsError(f"listen.tls: {e.filename} does not exist (make one with `keyproxy tls init`)") from None
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"listen.tls: cannot use {cert} with {key}: {getattr(e, 'reason', None) or e}") from None
    return ctx
