"""Nonces of a real key shared by a fleet: increasing across every instance, one request at a time where the
exchange needs it.

Kraken refuses a nonce below one it has already seen, so every instance sending with one key must take
turns: the key's lease in Redis (set-if-absent with an expiry: a killed instance's lease lapses after
LEASE_MS) is held from the nonce's issue until the exchange has answered, and carries the highest nonce
used so far, so the next holder, on any host and whatever its clock, issues above it. Hyperliquid only
needs nonces never used before (it keeps the 100 highest): one Redis script hands out max(its clock,
last + 1) without a lease.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import redis
import redis.asyncio

from keyproxy.fleet.store import FleetStore, SharedStateUnavailable

LEASE_MS = 10_000  # longer than any upstream timeout; a dead holder's lease lapses after it
WAIT_S = 15.0  # how long a request waits for the key's turn before it is refused

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return -1
"""
_RELEASE = """
local used = tonumber(ARGV[2])
if used > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
_NEXT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] == 'ms' then now = math.floor(now / 1000) end
local v = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0') + 1, tonumber(ARGV[2]) + 1)
redis.call('SET', KEYS[1], string.format('%.0f', v))
return string.format('%.0f', v)
"""


class FleetNonces:
    def __init__(self, fleet: FleetStore, lease_ms: int = LEASE_MS) -> None:
        self.fleet, self.lease_ms = fleet, lease_ms
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, object] = {}

    def _script(self, name: str, text: str) -> object:
        if self._client is None:
            self._client = self.fleet.aio()
        if name not in self._scripts:
            self._scripts[name] = self._client.register_script(text)
        return self._scripts[name]

    def _keys(self, account: str) -> list[str]:
        return [self.fleet.key(f"nonce-lease:{account}"), self.fleet.key(f"nonce:{account}")]

    async def acquire(self, account: str) -> tuple[str, int]:
        """The key's turn: (lease token, the highest nonce the fleet has used with it)."""
        script, token = self._script("acquire", _ACQUIRE), secrets.token_hex(16)
        deadline = time.monotonic() + WAIT_S
        pause = 0.001
        while True:
            try:
                last = int(await script(keys=self._keys(account), args=[token, self.lease_ms]))  # type: ignore[operator]
            except (redis.RedisError, OSError) as e:
                raise SharedStateUnavailable(f"shared state at {self.fleet.where} is unavailable: "
                                             f"{type(e).__name__}") from None
            if last >= 0:
                return token, last
            if time.monotonic() > deadline:
                raise SharedStateUnavailable(f"account {account!r}'s key stayed busy on another instance for "
                                             f"{WAIT_S:.0f} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.01)

    async def release(self, account: str, token: str, used: int | None) -> None:
        script = self._script("release", _RELEASE)
        try:
            await script(keys=self._keys(account), args=[token, used or 0])  # type: ignore[operator]
        except (redis.RedisError, OSError):
            pass  # the lease lapses by itself; the nonce is above the fleet's record anyway (the clock moves on)

    async def next(self, account: str, per_ms: bool, floor: int = 0) -> int:
        """A nonce never used with this key by any instance (no turn: Hyperliquid's rule)."""
        script = self._script("next", _NEXT)
        try:
            return int(await script(keys=self._keys(account)[1:], args=["ms" if per_ms else "us", floor]))  # type: ignore[operator]
        except (redis.RedisError, OSError) as e:
            raise SharedStateUnavailable(f"shared state at {self.fleet.where} is unavailable: "
                                         f"{type(e).__name__}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
