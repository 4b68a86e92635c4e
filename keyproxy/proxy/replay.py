"""Signed requests seen within their validity window: a second arrival is a replay, also after a restart (the ids
of forwarded requests are in their audit lines, read back at start: `recent_replays`)."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from keyproxy.audit.trail import trail_files

# the longest any adapter keeps a signed request valid, and then some (a Coinbase JWT lives 2 minutes; Binance's
# recvWindow at most 60 s): the audit trail is read back this far at start
LOOKBACK_S = 600.0


def digest(replay_id: str) -> str:
    """What the cache and the audit line hold of a replay id (it names the bot's key and signature)."""
    return hashlib.sha256(replay_id.encode()).hexdigest()[:32]


class ReplayCache:
    """Remembers replay ids until the exchange itself would refuse the request.

    Bounded: when full of unexpired entries it refuses new ones (fail closed)
    rather than forgetting ids that could still be replayed. Expired ids leave in
    order of expiry (a heap), a few per sighting, never by rebuilding the whole
    table on the request path.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._seen: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []  # (expires_ms, id), a heap; stale where an id was seen again
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def first_sighting(self, replay_id: str, expires_ms: int, now_ms: int) -> bool | None:
        """True the first time, False for a replay, None when the cache is full (`replay_id`: its `digest`)."""
        self._purge(now_ms)
        if replay_id in self._seen:
            return False
        if len(self._seen) >= self._max:
            return None
        self._seen[replay_id] = expires_ms
        heapq.heappush(self._expiry, (expires_ms, replay_id))
        return True

    def _purge(self, now_ms: int) -> None:
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] < now_ms:
            expires, replay_id = heapq.heappop(expiry)
            if seen.get(replay_id) == expires:  # not seen again since (then a later entry is its own)
                del seen[replay_id]

    def preload(self, seen: Iterable[tuple[str, int]], now_ms: int) -> int:
        """Digests the previous process recorded forwarding, with their expiries: a replay of one of them after a
        restart is refused (session 34's crash review: an order's request sent again 0.8 s after a kill -9 was
        placed twice). How many were still valid."""
        kept = 0
        for replay_digest, expires_ms in seen:
            if expires_ms >= now_ms and self.first_sighting(replay_digest, expires_ms, now_ms):
                kept += 1
        return kept


def recent_replays(directory: Path, since: float, chunk: int = 1 << 20) -> Iterator[tuple[str, int]]:
    """(digest, expires ms) of every replay id the audit trail's `request.forward` lines written at or after `since`
    (Unix s) recorded, read backwards from the end of the newest file (a torn or unreadable line is skipped)."""
    for path in reversed(trail_files(directory)):
        with open(path, "rb") as f:
            end, rest = f.seek(0, 2), b""
            while end > 0:
                start = max(0, end - chunk)
                f.seek(start)
                lines = (f.read(end - start) + rest).split(b"\n")
                rest, end = (lines.pop(0) if start > 0 else b""), start
                for raw in reversed(lines):
                    try:
                        line = json.loads(raw) if raw.strip() else None
                    except (ValueError, RecursionError):
                        continue
                    if not isinstance(line, dict):
                        continue
                    ts = line.get("ts")
                    if not isinstance(ts, int | float):
                        continue
                    if ts < since:
                        return
                    # a forward line, or the line of an answer keyproxy gave itself (a session.logon); an expiry no
                    # further than any window from its line's time (a line written by hand cannot pin ids for ever)
                    replay = line.get("replay")
                    if isinstance(replay, list) and 2 <= len(replay) <= 3 and type(replay[-1]) is int:
                        expires = min(replay[-1], int(ts * 1000 + LOOKBACK_S * 1000))
                        for replay_digest in replay[:-1]:
                            if isinstance(replay_digest, str) and len(replay_digest) == 32:
                                yield replay_digest, expires
