"""The shared public-data cache: one load for concurrent callers, a TTL, and nothing kept that may not be shared."""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable

from keyproxy.proxy.public_cache import Cached, PublicCache, max_age


async def test_concurrent_callers_share_one_load_and_later_ones_hit_until_the_ttl() -> None:
    clock = [100.0]
    cache, loads = PublicCache(lambda: clock[0]), []

    async def load() -> Cached | None:
        loads.append(1)
        await asyncio.sleep(0.05)
        return Cached(200, {"Content-Type": "application/json"}, b'{"symbols": []}')

    results = await asyncio.gather(*(cache.fetch(("o", "GET", "/x", ""), 30, load) for _ in range(5)))
    assert len(loads) == 1 and [loaded for _, loaded in results].count(True) == 1
    assert {r.body for r, _ in results} == {b'{"symbols": []}'}
    assert cache.get(("o", "GET", "/x", "")) is not None
    clock[0] += 31
    assert cache.get(("o", "GET", "/x", "")) is None


async def test_an_answer_that_may_not_be_shared_leaves_the_waiters_to_ask_on_their_own() -> None:
    cache = PublicCache()

    async def load() -> Cached | None:
        await asyncio.sleep(0.02)
        return None  # a 5xx, or Cache-Control: no-store

    results = await asyncio.gather(*(cache.fetch(("o", "GET", "/y", ""), 30, load) for _ in range(3)))
    assert [r for r, _ in results] == [None, None, None] and cache.get(("o", "GET", "/y", "")) is None


async def test_the_exchanges_max_age_caps_the_ttl_and_no_cache_keeps_nothing() -> None:
    clock = [100.0]
    cache = PublicCache(lambda: clock[0])

    def answer(limit: float | None) -> Callable[[], Awaitable[Cached | None]]:
        async def load() -> Cached | None:
            return Cached(200, {}, b"{}", limit)
        return load

    await cache.fetch(("a",), 30, answer(max_age("public, max-age=5")))
    await cache.fetch(("b",), 30, answer(max_age("no-cache")))
    await cache.fetch(("c",), 30, answer(max_age("public")))
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None
    clock[0] += 6
    assert cache.get(("a",)) is None and cache.get(("c",)) is not None  # no max-age: the configured TTL
