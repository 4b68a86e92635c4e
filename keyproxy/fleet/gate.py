"""The fleet's part of one request's decision: one Redis round trip, atomic, after keyproxy's own checks.

The core decides every request as one daemon does, but in a fleet it does not charge its own counters:
what must hold across instances is handed here as a `SharedCharges` and checked and charged in one Lua
script, so two instances can never both spend the last token:
  - the fleet version this instance has applied: older than the fleet's, nothing is charged and the
    request is decided again on the newer state (a missed change notice is never a missed revocation);
  - the signed request's replay id (hashed: no signature reaches Redis), set-if-absent until it expires,
    and the bot's own nonce sequence (Kraken), which must increase across the whole fleet;
  - the bot's and the account's token buckets (rates, orders, the anomaly throttle), on Redis's clock;
  - daily caps (notional, withdrawals), counted per UTC day;
  - the bot's open orders (max_open_orders), as every instance's answers confirmed them (usage.py), plus
    every instance's orders on their way (sent, answer not yet read), reserved here with the check;
  - the bot's repeated orders (duplicate_orders): each placement's shape in a sorted set for its window.
Redis unreachable: the caller refuses what trades, withdraws or transfers, and lets reads, cancels and
reduce-only orders through on this instance's own counters (`SharedCharges.harmless`).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from decimal import Decimal

import redis
import redis.asyncio

from keyproxy.fleet.charges import SharedCharges, Verdict
from keyproxy.fleet.store import FleetStore

_SCRIPT = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > tonumber(ARGV[1]) then return {'stale', tostring(v)} end
if v < tonumber(ARGV[1]) then return {'back', tostring(v)} end
local nr, ns, nb, nc, no, nd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7])
local k, a = 2, 8
local replays, buckets, caps, seq, flight = {}, {}, {}, nil, nil
for i = 1, nr do
  local key, ttl, check = KEYS[k], tonumber(ARGV[a]), ARGV[a + 1]
  k = k + 1; a = a + 2
  if check == '1' and redis.call('EXISTS', key) == 1 then return {'replay'} end
  replays[i] = {key, ttl}
end
if ns == 1 then
  local key, value = KEYS[k], ARGV[a]
  k = k + 1; a = a + 1
  local last = redis.call('GET', key)
  if last and tonumber(last) >= tonumber(value) then return {'sequence'} end
  seq = {key, value}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, nb do
  local key = KEYS[k]
  local rate, cap, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  k = k + 1; a = a + 3
  local s = redis.call('HMGET', key, 'tokens', 'updated', 'rate', 'capacity')
  local level = cap
  if s[1] and s[3] == ARGV[a - 3] and s[4] == ARGV[a - 2] then
    level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
  end
  if level < n then return {'rate', tostring(i), tostring((n - level) / rate)} end
  buckets[i] = {key, level - n, ARGV[a - 3], ARGV[a - 2]}
end
for i = 1, nc do
  local key = KEYS[k]
  local amount, cap = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  k = k + 1; a = a + 2
  local used = tonumber(redis.call('GET', key) or '0')
  if used + amount > cap then return {'cap', tostring(i), tostring(used)} end
  caps[i] = {key, ARGV[a - 2]}
end
if no == 1 then
  local n, cap, total, member, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), 0, ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  for _, v in ipairs(redis.call('HVALS', KEYS[k])) do total = total + tonumber(v) end
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)  -- answers that never came stop counting
  for _, m in ipairs(redis.call('ZRANGE', KEYS[k + 1], 0, -1)) do
    total = total + tonumber(string.match(m, '(%d+)$'))
  end
  if total + n > cap then return {'open', tostring(total)} end
  if member ~= '' then flight = {KEYS[k + 1], now + ttl, member, ttl} end
  k = k + 2
end
local dups = {}
for i = 1, nd do
  local key, window, cap, check = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
  k = k + 1; a = a + 3
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local seen = redis.call('ZCARD', key)
  for _, d in ipairs(dups) do if d[1] == key then seen = seen + 1 end end
  if check == '1' and seen >= cap then return {'duplicate', tostring(i), tostring(seen)} end
  dups[i] = {key, window, seen}
end
for _, r in ipairs(replays) do redis.call('SET', r[1], '1', 'PX', r[2]) end
if seq then redis.call('SET', seq[1], seq[2]) end
for _, b in ipairs(buckets) do
  redis.call('HSET', b[1], 'tokens', tostring(b[2]), 'updated', tostring(now), 'rate', b[3], 'capacity', b[4])
  redis.call('PEXPIRE', b[1], math.floor(tonumber(b[4]) / tonumber(b[3]) * 1000) + 60000)
end
for _, c in ipairs(caps) do
  redis.call('INCRBYFLOAT', c[1], c[2])
  redis.call('EXPIRE', c[1], 172800)
end
if flight then
  redis.call('ZADD', flight[1], flight[2], flight[3])
  redis.call('PEXPIRE', flight[1], math.floor(flight[4] * 1000) + 1000)
end
for i, d in ipairs(dups) do
  redis.call('ZADD', d[1], now, tostring(now) .. ':' .. tostring(d[3]) .. ':' .. tostring(i))  -- unique per placement
  redis.call('PEXPIRE', d[1], math.floor(d[2] * 1000) + 1000)
end
return {'ok'}
"""


class FleetGate:
    def __init__(self, fleet: FleetStore) -> None:
        self.fleet = fleet
        self._client: redis.asyncio.Redis | None = None
        self._script: redis.commands.core.AsyncScript | None = None

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = self.fleet.aio()
            self._script = self._client.register_script(_SCRIPT)
        return self._client

    async def check(self, charges: SharedCharges, applied: int, now: float | None = None) -> Verdict:
        """Check and charge atomically; nothing is charged unless everything holds."""
        self._redis()
        assert self._script is not None
        key = self.fleet.key
        keys, args = [key("version")], [applied, len(charges.replays), 1 if charges.sequence is not None else 0]
        for replay_id, ttl_ms, checked in charges.replays:
            keys.append(key("replay:" + hashlib.sha256(replay_id.encode()).hexdigest()[:32]))
        counts = Counter(b[0] for b in charges.buckets)
        buckets = list(dict.fromkeys(charges.buckets))
        args += [len(buckets), len(charges.caps), 1 if charges.open_orders is not None else 0,
                 len(charges.duplicates)]
        for replay_id, ttl_ms, checked in charges.replays:
            args += [max(1, int(ttl_ms)), "1" if checked else "0"]
        if charges.sequence is not None:
            keys.append(key(f"sequence:{charges.bot}"))
            args.append(str(charges.sequence))
        for name, rate, capacity in buckets:
            keys.append(key(f"bucket:{name}"))
            args += [repr(float(rate)), repr(float(capacity)), counts[name]]
        day = time.strftime("%Y-%m-%d", time.gmtime(now if now is not None else time.time()))
        for kind, asset, amount, cap, _code in charges.caps:
            keys.append(key(f"daily:{kind}:{charges.bot}:{asset}:{day}"))
            args += [f"{amount:f}", f"{cap:f}"]
        if charges.open_orders is not None:
            member = charges.flight_member() or ""  # none: checked, nothing reserved
            ttl = charges.in_flight[1] if charges.in_flight is not None else 0.0
            keys += [key(f"open:{charges.bot}"), key(f"flight:{charges.bot}")]
            args += [*charges.open_orders, member, repr(float(ttl))]
        for shape, window, cap, checked in charges.duplicates:
            keys.append(key(f"orders:{shape}"))
            args += [repr(float(window)), cap, "1" if checked else "0"]
        try:
            answer = await self._script(keys=keys, args=args)
        except (redis.RedisError, OSError):
            return Verdict("unavailable")
        kind = answer[0].decode()
        if kind == "rate":
            return Verdict("rate", bucket=buckets[int(answer[1]) - 1][0], retry_after=float(answer[2]))
        if kind == "open":
            return Verdict("open", used=Decimal(answer[1].decode()))
        if kind == "cap":
            return Verdict("cap", cap=charges.caps[int(answer[1]) - 1], used=Decimal(answer[2].decode()))
        if kind == "duplicate":
            return Verdict("duplicate", duplicate=charges.duplicates[int(answer[1]) - 1],
                           used=Decimal(answer[2].decode()))
        return Verdict(kind)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
