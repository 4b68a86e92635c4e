"""Reading a file an operator names (a config, a passphrase or key file, an audit trail to verify) without hanging
or filling memory: a FIFO with no writer blocks `open` for good, and /dev/zero never ends (session 35's review).
Only a regular file is read whole; a pipe (`--passphrase-file <(...)`) only where `pipe_s` allows it, for that
long at most, and never more than `limit` bytes.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from pathlib import Path

PIPE_S = 10.0  # how long a passphrase or key given as a pipe (`<(...)`) may take to arrive


class NotRegularFile(OSError):
    """Said as any unreadable file is: `cannot read PATH: <strerror>`."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EINVAL, why, str(path))


def read_bounded(path: Path, limit: int, pipe_s: float = 0.0) -> bytes:
    """Up to `limit` + 1 bytes of `path` (a caller refuses more than `limit`), which must be a regular file, or a
    pipe that delivers within `pipe_s` seconds when `pipe_s` > 0."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            return _read(fd, limit + 1)
        if not (stat.S_ISFIFO(mode) and pipe_s > 0):
            raise NotRegularFile(path, "not a regular file (a pipe, a device or a directory)")
        return _read_pipe(fd, limit + 1, time.monotonic() + pipe_s, path)
    finally:
        os.close(fd)


def _read(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_pipe(fd: int, size: int, deadline: float, path: Path) -> bytes:
    chunks, left = [], size
    while left > 0:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            raise NotRegularFile(path, "a pipe that gave nothing in time")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:  # the writer closed it
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
