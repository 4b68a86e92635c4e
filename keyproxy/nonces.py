"""Each account's real-key nonce sequence: strictly increasing across restarts, its ceiling in state.db."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from keyproxy.state import StateStore

US_SCALE = 10**14  # a nonce this large counts µs (as ms it would be the year 5138; µs now are ~1.8e15)


class NonceSequence:
    """One strictly increasing nonce sequence per account's real key.

    nonce = max(now in µs, previous + 1), so a clock step back never repeats a
    value. Before handing out a value above the persisted ceiling, a new
    ceiling (value + `reserve_us`) is committed first; after a restart the
    sequence resumes above that ceiling. Cost: one fsync per account per
    `reserve_us` of nonces, not one per request.
    """

    def __init__(self, store: StateStore, clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
                 reserve_us: int = 60_000_000) -> None:
        self._store = store
        self._clock_us = clock_us
        self._reserve = reserve_us
        self._last: dict[str, int] = {}
        self._ceiling: dict[str, int] = {}

    def for_adapter(self, account: str, adapter: Any) -> int | None:
        """keyproxy's own call's nonce for the account, in its exchange's unit (None: the exchange takes none)."""
        return self.next(account, per_ms=adapter.nonce_in_ms) if adapter.needs_nonce else None

    def next(self, account: str, per_ms: bool = False, floor: int = 0) -> int:
        """The account's next nonce, above `floor` too (the highest another instance of a fleet used); `per_ms`:
        the sequence counts milliseconds (Hyperliquid's nonces are ms timestamps). An account's key belongs
        to one exchange, so its sequence keeps one unit."""
        unit = 1000 if per_ms else 1
        if account not in self._ceiling:
            ceiling = self._store.nonce_ceiling(account)
            if per_ms and ceiling >= US_SCALE:
                # counted in µs by a version that drew keyproxy's own nonces (rotation, `key audit`, `doctor`) in µs
                # for a ms exchange: Hyperliquid refused each one (outside its window of a few days), and every nonce
                # after it, so none was used; the sequence goes on in ms from there (session 32)
                ceiling //= 1000
                self._store.set_nonce_ceiling(account, ceiling)
            self._ceiling[account] = ceiling
            self._last[account] = ceiling  # never reuse anything below a persisted ceiling
        value = max(self._clock_us() // unit, self._last[account] + 1, floor + 1)
        if value >= self._ceiling[account]:
            ceiling = value + self._reserve // unit
            self._store.raise_nonce_ceiling(account, ceiling)
            self._ceiling[account] = ceiling
        self._last[account] = value
        return value
