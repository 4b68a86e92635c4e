"""A real key's nonces across a fleet (real Redis): in turn, increasing, and a dead holder's turn lapses."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from keyproxy.config import SharedStateSettings
from keyproxy.fleet.nonces import FleetNonces
from keyproxy.fleet.store import FleetStore

KEY = b"k" * 32  # the vault's fleet key, as Vault.fleet_key derives one


def test_each_turn_starts_above_every_nonce_used_before(shared: SharedStateSettings) -> None:
    async def run() -> list[int]:
        a, b = FleetNonces(FleetStore(shared, "v", KEY)), FleetNonces(FleetStore(shared, "v", KEY))
        floors = []
        for used, nonces in ((1000, a), (5000, b), (3000, a)):  # a clock behind the fleet's is lifted by the floor
            token, floor = await nonces.acquire("kraken-main")
            floors.append(floor)
            await nonces.release("kraken-main", token, used)
        await a.close()
        await b.close()
        return floors
    assert asyncio.run(run()) == [0, 1000, 5000]


def test_a_turn_waits_for_the_holder_and_a_dead_holders_turn_lapses(shared: SharedStateSettings) -> None:
    async def run() -> float:
        dead, live = FleetNonces(FleetStore(shared, "v", KEY), lease_ms=400), FleetNonces(FleetStore(shared, "v", KEY))
        await dead.acquire("kraken-main")  # never released: its instance was killed
        started = time.monotonic()
        token, _ = await live.acquire("kraken-main")
        waited = time.monotonic() - started
        await live.release("kraken-main", token, 1)
        await dead.close()
        await live.close()
        return waited
    waited = asyncio.run(run())
    assert 0.2 < waited < 2.0


def test_unordered_nonces_are_never_handed_out_twice(shared: SharedStateSettings) -> None:
    async def run() -> list[int]:
        roomy = replace(shared, timeout=10.0)  # 200 calls at once open many connections: slow beside other tests
        a, b = FleetNonces(FleetStore(roomy, "v", KEY)), FleetNonces(FleetStore(roomy, "v", KEY))
        got = await asyncio.gather(*[(a if i % 2 else b).next("hl-main", per_ms=True) for i in range(200)])
        await a.close()
        await b.close()
        return list(got)
    got = asyncio.run(run())
    assert len(set(got)) == 200 and abs(max(got) - time.time() * 1000) < 60_000
