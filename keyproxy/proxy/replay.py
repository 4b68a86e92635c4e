"""Signed requests seen within their validity window: a second arrival is a replay."""

from __future__ import annotations


class ReplayCache:
    """Remembers replay ids until the exchange itself would refuse the request.

    Bounded: when full of unexpired entries it refuses new ones (fail closed)
    rather than forgetting ids that could still be replayed.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._seen: dict[str, int] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def first_sighting(self, replay_id: str, expires_ms: int, now_ms: int) -> bool | None:
        """True the first time, False for a replay, None when the cache is full."""
        if replay_id in self._seen and self._seen[replay_id] >= now_ms:
            return False
        if len(self._seen) >= self._max:
            self._purge(now_ms)
            if len(self._seen) >= self._max:
                return None
        self._seen[replay_id] = expires_ms
        if len(self._seen) % 4096 == 0:
            self._purge(now_ms)
        return True

    def _purge(self, now_ms: int) -> None:
        self._seen = {k: v for k, v in self._seen.items() if v >= now_ms}
