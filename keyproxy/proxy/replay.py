"""Signed requests seen within their validity window: a second arrival is a replay."""

from __future__ import annotations

import heapq


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
        """True the first time, False for a replay, None when the cache is full."""
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
