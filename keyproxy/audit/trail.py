"""The audit trail: append-only JSON lines, hash-chained and MACed, in size-rotated files.

Each line is canonical JSON (orjson, sorted keys) with `seq`, `ts`, `event`, the event's fields,
`prev` (SHA-256 of the previous line's bytes, across file boundaries) and
`mac` = HMAC-SHA256(audit key, the line without `mac`). The audit key is
derived from the vault's data key, so only someone holding the master key can
forge a line; `verify` names the first line that was edited, deleted,
inserted or reordered, a torn last line, and (given the recorded head) lines
cut from the end.

Durability: every line reaches the OS (one write(2)) before `append`
returns, so a crash of keyproxy never loses an acknowledged line; with
`fsync = "always"` each line is also fsynced before the request it records
goes upstream; with `"interval"` (default) a background task fsyncs every
`interval_ms`, bounding what a power loss can take.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from keyproxy.files import read_bounded
from keyproxy.audit.events import EVENTS

FILE_RE = re.compile(r"audit-(\d{6})\.jsonl")
TRAIL_FILE_MAX = 1 << 40  # no bound in practice: a trail file is read whole, as it always was
GENESIS = "0" * 64


class AuditUnavailable(Exception):
    """The trail cannot be written; requests must be refused (fail closed)."""


# the legacy encoder (lines written before orjson, and any line orjson cannot encode): json.dumps with these
# options would build a new encoder per call
_legacy = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
_SORTED = orjson.OPT_SORT_KEYS


def legacy_canonical(obj: dict[str, Any]) -> bytes:
    """The canonical form of lines written before the trail moved to orjson (json, ASCII-escaped); verify still
    accepts it."""
    return _legacy(obj).encode()


def canonical(obj: dict[str, Any]) -> bytes:
    """A line's canonical bytes: orjson with sorted keys (a tenth of json's cost on every audited request), or
    the legacy json form for what orjson refuses (integers past 64 bits, lone surrogates, non-str keys)."""
    try:
        return orjson.dumps(obj, option=_SORTED)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return legacy_canonical(obj)


def _head_of(line: bytes, path: Path | None) -> Head:
    """The chain's head at a complete last line; a line that is no trail line (damage, or an edit) refuses the
    write with the trail's one error, never a traceback (session 35's review: a last line `{}` made `bot revoke`
    and `halt --all` fail as internal errors)."""
    try:
        seq = json.loads(line)["seq"]
        if type(seq) is not int:
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise AuditUnavailable(f"audit trail damaged: the last line of {path or 'the trail'} is not a trail line; "
                               "run `keyproxy audit verify` and see docs/incident-response.md") from None
    return Head(seq, hashlib.sha256(line).hexdigest())


def mac_of(key: bytes, line_without_mac: dict[str, Any]) -> str:
    return hmac.new(key, canonical(line_without_mac), hashlib.sha256).hexdigest()


def _mac_matches(key: bytes, mac: str, line_without_mac: dict[str, Any]) -> bool:
    """The MAC over the line's canonical form, or over its legacy form (a trail spans versions). Either is a
    keyed function of the parsed fields, so accepting both lets no one without the key forge a line."""
    if not mac.isascii():  # compare_digest takes ASCII text only; a MAC never holds anything else
        return False
    if hmac.compare_digest(mac, mac_of(key, line_without_mac)):
        return True
    legacy = hmac.new(key, legacy_canonical(line_without_mac), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, legacy)


def _sealed(mac: hmac.HMAC, line: dict[str, Any]) -> tuple[str, bytes]:
    """The line's MAC and its canonical bytes with the MAC in place. Equal to canonical() byte for byte (verify
    checks)."""
    keyed = mac.copy()
    keyed.update(canonical(line))
    digest = keyed.hexdigest()
    return digest, canonical({**line, "mac": digest}) + b"\n"


def trail_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := FILE_RE.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class Head:
    seq: int = 0
    hash: str = GENESIS


class AuditTrail:
    def __init__(self, directory: Path, key: bytes, *, fsync: str = "interval", interval_ms: int = 200,
                 max_bytes: int = 64 << 20, clock: Callable[[], float] = time.time,
                 on_head: Callable[[Head], None] | None = None, recorded_seq: int | None = None) -> None:
        """`recorded_seq`: the newest seq keyproxy recorded writing (state.db's audit head). A trail on disk that
        ends before it was cut: the chain goes on from it, never from the cut end (`cut`), so the lines written
        next cannot hide the gap from `verify`."""
        if fsync not in ("always", "interval"):
            raise ValueError("fsync must be 'always' or 'interval'")
        self.directory = directory
        self._mac = hmac.new(key, digestmod=hashlib.sha256)  # keyed once; each line MACs a copy
        self._identity: tuple[int, int] | None = None  # the open file's (inode, device)
        self._fsync_always = fsync == "always"
        self._interval = interval_ms / 1000
        self._max_bytes = max_bytes
        self._clock = clock
        self._on_head = on_head
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._dirty = False
        self.head = Head()
        self.recovered_bytes = 0
        self.failures = 0
        self.cut: tuple[int, int] | None = None  # (seq the disk ended at, seq keyproxy had written): see `_open`
        self._open(initial=True)
        if recorded_seq is not None and recorded_seq > self.head.seq:
            self.cut = (self.head.seq, recorded_seq)
            self.head = Head(recorded_seq, self.head.hash)
        # the newest line known on disk (fsynced): what state.db may record as written, so that a power loss, which
        # can take lines written but not yet fsynced, is never mistaken for lines cut from the end
        self.synced = self.head

    # --- files ------------------------------------------------------------

    def _open(self, initial: bool = False) -> None:
        try:  # a file where the directory should be (or no room, no rights): the trail's one refusal, no traceback
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            files = trail_files(self.directory)
            path = files[-1] if files else self.directory / "audit-000001.jsonl"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise self._failed(e) from None
        written, self.head = self.head, Head()  # the head as the disk has it, compared below
        try:
            self._resume(fd, files)
        except BaseException:
            os.close(fd)
            self.head = written
            raise
        if not initial and self.head != written:
            # reopened (the file under the path moved, was deleted or cut) and the disk no longer ends at the line
            # this trail last wrote: the chain goes on from that line, so `verify` names the gap
            self.cut = (self.head.seq, written.seq)
            self.head = written
        self._held(fd, path)

    def _resume(self, fd: int, files: list[Path]) -> None:
        """Continue the chain after the last complete line; cut a torn one (never acknowledged)."""
        size = os.fstat(fd).st_size
        data = _tail(fd, size)
        good = data.rfind(b"\n") + 1
        if good < len(data):
            self.recovered_bytes = len(data) - good
            os.ftruncate(fd, size - (len(data) - good))
            os.fsync(fd)
        lines = data[:good].splitlines()
        if lines:
            self.head = _head_of(lines[-1], files[-1] if files else None)
        elif len(files) > 1:  # an empty newest file: the chain continues from the previous one
            prev = files[-2]
            with open(prev, "rb") as f:
                tail = _tail(f.fileno(), os.fstat(f.fileno()).st_size).splitlines()
            if tail:
                self.head = _head_of(tail[-1], prev)

    def _held(self, fd: int, path: Path) -> None:
        info = os.fstat(fd)
        self._fd, self._path, self._size = fd, path, info.st_size
        self._identity = (info.st_ino, info.st_dev)

    def _still_ours(self) -> bool:
        """The path still names the file we hold open (not moved away or replaced by a directory): one stat of
        the path per line, against the open file's identity (which cannot change)."""
        assert self._path is not None
        try:
            b = os.stat(self._path)
        except OSError:
            return False
        return (b.st_ino, b.st_dev) == self._identity

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _rotate(self) -> None:
        assert self._path is not None
        self._sync()
        number = int(FILE_RE.fullmatch(self._path.name).group(1)) + 1  # type: ignore[union-attr]
        self._close_fd()
        path = self.directory / f"audit-{number:06d}.jsonl"
        self._held(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), path)

    # --- writing ----------------------------------------------------------

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event; raise AuditUnavailable if it cannot be written whole. `event` must be one of the
        catalogue's (audit/events.py), so every line a reader meets is documented."""
        if event not in EVENTS:
            raise ValueError(f"audit event {event!r} is not in the catalogue (keyproxy/audit/events.py)")
        if self._fd is None or not self._still_ours():
            try:
                self._close_fd()
                self._open()
            except OSError as e:
                raise self._failed(e) from None
        if self.cut is not None:  # said in the chain before anything else is written
            cut, self.cut = self.cut, None
            try:
                self.append("trail.cut", found_seq=cut[0], recorded_seq=cut[1])
            except AuditUnavailable:
                self.cut = cut  # said by the next append that can write
                raise
        try:
            line = {**fields, "seq": self.head.seq + 1, "ts": round(self._clock(), 6), "event": event,
                    "prev": self.head.hash}
            line["mac"], data = _sealed(self._mac, line)
            assert self._fd is not None
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError("short write")
            if self._fsync_always:
                os.fsync(self._fd)
            else:
                self._dirty = True
        except OSError as e:
            raise self._failed(e) from None
        self._size += len(data)
        self.head = Head(line["seq"], hashlib.sha256(data[:-1]).hexdigest())
        if self._fsync_always:
            self.synced = self.head
        if self._on_head is not None:
            self._on_head(self.head)
        if self._size >= self._max_bytes:
            with contextlib.suppress(OSError):
                self._rotate()
        return line

    def _failed(self, e: OSError) -> AuditUnavailable:
        """A write that failed: its partial line dropped, the file closed (reopened by the next append)."""
        self.failures += 1
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # drop a partial line
        self._close_fd()
        return AuditUnavailable(f"audit trail not writable ({type(e).__name__}: {e.strerror or e})")

    def _sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
            self.synced = self.head

    async def run_flusher(self) -> None:
        """Group commit for `fsync = "interval"`: one fsync per interval, off the request path."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            if self._dirty and self._fd is not None:
                fd, head = self._fd, self.head
                self._dirty = False
                with contextlib.suppress(OSError):
                    await loop.run_in_executor(None, os.fsync, fd)
                    if head.seq > self.synced.seq:
                        self.synced = head

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sync()
        self._close_fd()


def _tail(fd: int, size: int, chunk: int = 1 << 16) -> bytes:
    """The last complete line(s) and any torn remainder: enough to resume the chain."""
    start = max(0, size - chunk)
    data = os.pread(fd, size - start, start)
    while start > 0 and data.count(b"\n") < 2:
        start = max(0, start - chunk)
        data = os.pread(fd, size - start, start)
    if start > 0:
        data = data[data.find(b"\n") + 1:]
    return data


# --- verification --------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int
    problem: str | None = None
    last_seq: int = 0


def iter_lines(files: list[Path]) -> Iterator[tuple[Path, int, bytes, bool]]:
    for path in files:
        data = read_bounded(path, TRAIL_FILE_MAX)  # a regular file only: a FIFO or a device named to verify hung
        parts = data.split(b"\n")
        for i, raw in enumerate(parts):
            last = i == len(parts) - 1
            if last and raw == b"":
                break
            yield path, i + 1, raw, last and not data.endswith(b"\n")


def verify(files: list[Path], key: bytes, recorded_head: int | None = None) -> VerifyResult:
    """Check seq contiguity, the hash chain and every MAC; name the first bad line."""
    prev_hash, expected, count = None, None, 0
    for path, lineno, raw, torn in iter_lines(files):
        where = f"{path.name} line {lineno}"
        if torn:
            return VerifyResult(False, count, f"{where}: truncated tail (incomplete last line)", expected or 0)
        try:
            line = json.loads(raw)
            mac = line.pop("mac")
            seq = int(line["seq"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return VerifyResult(False, count, f"{where}: not a valid audit line (edited or corrupt)", expected or 0)
        if not _mac_matches(key, str(mac), line):
            return VerifyResult(False, count, f"{where} (seq {seq}): MAC mismatch: the line was edited or forged",
                                expected or 0)
        whole = {**line, "mac": mac}
        if raw != canonical(whole) and raw != legacy_canonical(whole):
            # the MAC covers the parsed fields; bytes that parse to them but are not what keyproxy writes (a member
            # named twice, where parsers differ on which one counts; spacing) were edited after the line was written
            return VerifyResult(False, count, f"{where} (seq {seq}): not in keyproxy's canonical form: the line was "
                                "edited after it was written", expected or 0)
        if expected is not None and seq != expected:
            return VerifyResult(False, count, f"{where}: seq {seq} where {expected} was expected: lines were "
                                "deleted, inserted or reordered before it", expected - 1)
        if prev_hash is not None and line.get("prev") != prev_hash:
            return VerifyResult(False, count, f"{where} (seq {seq}): does not chain to the line before it: lines "
                                "were deleted, inserted or reordered", seq)
        if prev_hash is None and seq == 1 and line.get("prev") != GENESIS:
            return VerifyResult(False, count, f"{where}: first line does not start the chain", seq)
        prev_hash, expected, count = hashlib.sha256(raw).hexdigest(), seq + 1, count + 1
    last = (expected or 1) - 1
    if count and files and (first_seq := _first_seq(files)) not in (None, 1):
        return VerifyResult(False, count, f"the trail starts at seq {first_seq}: earlier lines or files are missing",
                            last)
    if recorded_head is not None and recorded_head > last:
        return VerifyResult(False, count, f"the trail ends at seq {last} but keyproxy recorded seq {recorded_head}: "
                            "lines were removed from the end", last)
    return VerifyResult(True, count, None, last)


def _first_seq(files: list[Path]) -> int | None:
    for _, _, raw, _ in iter_lines(files[:1]):
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
    return None
