"""The state directory beside the vault: admin socket and the daemon's lock.

The running daemon holds an exclusive flock on `daemon.lock` for its whole
life; a CLI command that opens the vault itself holds a shared one. So the
two never write at once: while the daemon runs, the CLI goes through the
admin socket instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from keyproxy.config import Settings
from keyproxy.errors import KeyproxyError


def socket_path(settings: Settings) -> Path:
    return settings.state_dir / "admin.sock"


def lock_path(settings: Settings) -> Path:
    return settings.state_dir / "daemon.lock"


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


AUDIT_WRITER_WAIT_S = 30.0  # a command waits this long for another command writing the audit trail


@contextlib.contextmanager
def audit_writer(settings: Settings) -> Iterator[None]:
    """Held by a command writing the audit trail itself (no daemon running): one such writer at a time. Each one
    continues the chain from the head it read on opening; two at once would write the same seq twice and fork it
    for good. A command that waits longer than AUDIT_WRITER_WAIT_S for another is refused."""
    fd = _open_lock(settings.state_dir / "audit.lock")
    try:
        deadline = time.monotonic() + AUDIT_WRITER_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KeyproxyError("another keyproxy command has been writing the audit trail for "
                                        f"{AUDIT_WRITER_WAIT_S:.0f} s; retry when it is done") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def daemon_lock(settings: Settings) -> Iterator[None]:
    """Held by `keyproxy serve`: refuses a second daemon or a CLI writing directly."""
    fd = _open_lock(lock_path(settings))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyproxyError(f"another keyproxy daemon or command is using {settings.vault.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def direct_access(settings: Settings) -> Iterator[bool]:
    """Yield True when this process may open the vault itself (no daemon running)."""
    fd = _open_lock(lock_path(settings))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
