"""Shared public data (issue 19): identical public GETs answered once upstream and served to every bot.

Ten bots loading markets at once would each spend the exchange's weight on the same `exchangeInfo`;
behind keyproxy the first goes upstream, the others wait for its answer (single flight), and later
ones within the endpoint's TTL get it from memory. The adapter names what may be cached and for how
long (`Adapter.public_ttl`, or `[governor.cache]`; market lists only by default, never order books or
prices). Only a 200 answer the exchange did not mark `no-store`/`private` is kept, never longer than its
`max-age` (`no-cache`: only for the callers that waited for it); the body is byte-identical.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_ENTRIES = 256
MAX_ENTRY_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Cached:
    status: int
    headers: dict[str, str]
    body: bytes
    max_age: float | None = None  # the exchange's own Cache-Control limit: kept no longer than it says


def max_age(cache_control: str) -> float | None:
    """Seconds from a (lower-case) Cache-Control value: `max-age=N`, `no-cache` 0; None when it says neither."""
    if "no-cache" in cache_control:
        return 0.0
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


class PublicCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, Cached]] = {}
        self._inflight: dict[tuple[str, ...], asyncio.Future[Cached | None]] = {}
        self.hits = 0

    def get(self, key: tuple[str, ...]) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self.hits += 1
        return entry[1]

    async def fetch(self, key: tuple[str, ...], ttl: float,
                    load: Callable[[], Awaitable[Cached | None]]) -> tuple[Cached | None, bool]:
        """(the answer, whether this call loaded it): the first caller loads (None: not cacheable, the caller
        forwards on its own), concurrent callers wait for that answer."""
        waiting = self._inflight.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting), False
        future: asyncio.Future[Cached | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        result: Cached | None = None
        try:
            result = await load()
            if result is not None and result.max_age is not None:
                ttl = min(ttl, result.max_age)
            if result is not None and len(result.body) <= MAX_ENTRY_BYTES and ttl > 0:
                if len(self._entries) >= MAX_ENTRIES:
                    del self._entries[next(iter(self._entries))]
                self._entries[key] = (self._clock() + ttl, result)
            return result, True
        finally:
            del self._inflight[key]
            future.set_result(result)
