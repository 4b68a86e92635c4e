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
  - the bot's repeated orders (duplicate_orders): each placement's shape in a sorted set for its window;
  - every order, in its account's orders on their way (`pending:{account}`, every bot's) until its answer is read:
    what a cancel-all or a cancel of an order of no known owner on any instance waits for (`others_pending`);
  - a position-capped bot's order: the bot's positions book as of its newest entry (fleet/book.py: older, and
    the instance catches up and decides again), and each leg's size with every instance's orders of the bot on
    their way on that side, within what it may reduce or within the cap; reserved until its answer is read.
Redis unreachable: the caller refuses what trades, withdraws or transfers, and lets reads, cancels and
reduce-only orders through on this instance's own counters (`SharedCharges.harmless`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import time
from decimal import Decimal

import redis
import redis.asyncio

from keyproxy.fleet.charges import SharedCharges, Verdict
from keyproxy.fleet.store import FleetStore
from keyproxy.policy.model import scopes_overlap

_SCRIPT = """
local marker = KEYS[#KEYS]  -- this check's own: a call sent again after a lost reply finds it charged
if redis.call('EXISTS', marker) == 1 then return {'ok'} end
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > tonumber(ARGV[1]) then return {'stale', tostring(v)} end
if v < tonumber(ARGV[1]) then return {'back', tostring(v)} end
local nr, ns, nb, nc, no, nd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7])
local nk, ne, ttl_legs, np = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local k, a = 2, 12
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
  local key, rate, cap, n = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level, s = cap, redis.call('GET', key)  -- "tokens updated rate capacity"
  if s then  -- a changed rate or capacity carries the level over, never refills it: two instances whose pinned
    -- limits differ (a rolling config change) would each find it full, and a bot alternating between them none
    local tokens, updated = string.match(s, '^(%S+) (%S+)')
    level = math.min(cap, tonumber(tokens) + math.max(0, now - tonumber(updated)) * rate)
  end
  if level < n then return {'rate', tostring(i), tostring((n - level) / rate)} end
  buckets[i] = {key, tostring(level - n) .. ' ' .. tostring(now) .. ' ' .. ARGV[a] .. ' ' .. ARGV[a + 1],
                math.floor(cap / rate * 1000) + 60000}
  k = k + 1; a = a + 3
end
for i = 1, nc do  -- three keys a cap: the instance's day before, its day, its day after; Redis's clock picks one
  local amount, cap, day = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local pick = math.floor(now / 86400) - day  -- -1, 0 or 1 unless the instance's clock is a day out
  local key = KEYS[k + math.max(-1, math.min(1, pick)) + 1]
  local was = redis.call('GET', key)
  local used = tonumber(was or '0')
  if used + amount > cap then return {'cap', tostring(i), tostring(used)} end
  caps[i] = {key, ARGV[a], not was}
  k = k + 3; a = a + 3
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
if nk == 1 then
  local newest = tonumber(redis.call('GET', KEYS[k]) or '0')
  k = k + 1; a = a + 1
  if newest ~= tonumber(ARGV[a - 1]) then return {'book', tostring(newest)} end  -- behind, or numbered anew
end
local legs = {}
for i = 1, ne do
  local key, size, room, base, limit, member = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1]),
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
  k = k + 1; a = a + 5
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)  -- answers that never came stop counting
  local flying = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do flying = flying + tonumber(string.match(m, ':([^:]+)$')) end
  for _, l in ipairs(legs) do if l[1] == key then flying = flying + l[3] end end
  local slack = 1e-12 * math.max(1, math.abs(limit))  -- decimal sizes summed as doubles
  if flying + size > room + slack and base + flying + size > limit + slack then
    return {'position', tostring(i), tostring(base + flying)}
  end
  legs[i] = {key, member, size}
end
local pending = nil  -- the order among the account's orders on their way (every bot's), until its answer is read
if np == 1 then
  pending = {KEYS[k], ARGV[a], tonumber(ARGV[a + 1])}
  if ARGV[a + 2] == '1' then  -- first come first served: another bot's cancel-all pending on the account goes first
    local mine, others = string.match(ARGV[a], '^[^|]*|'), {}
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[k + 1], now, '+inf')) do
      if string.sub(m, 1, #mine) ~= mine then others[#others + 1] = m end
    end
    if #others > 0 then return {'sweeping', unpack(others)} end
  end
  k = k + 2; a = a + 3
end
for _, r in ipairs(replays) do redis.call('SET', r[1], '1', 'PX', r[2]) end
for _, l in ipairs(legs) do
  redis.call('ZADD', l[1], now + ttl_legs, l[2])
  redis.call('PEXPIRE', l[1], math.floor(ttl_legs * 1000) + 1000)
end
if seq then redis.call('SET', seq[1], seq[2]) end
for _, b in ipairs(buckets) do redis.call('SET', b[1], b[2], 'PX', b[3]) end
for _, c in ipairs(caps) do
  redis.call('INCRBYFLOAT', c[1], c[2])
  if c[3] then redis.call('EXPIRE', c[1], 172800) end  -- a day's key, kept two days
end
if flight then
  redis.call('ZADD', flight[1], flight[2], flight[3])
  redis.call('PEXPIRE', flight[1], math.floor(flight[4] * 1000) + 1000)
end
if pending then
  redis.call('ZREMRANGEBYSCORE', pending[1], '-inf', now)
  redis.call('ZADD', pending[1], now + pending[3], pending[2])
  redis.call('PEXPIRE', pending[1], math.floor(pending[3] * 1000) + 1000)
end
for i, d in ipairs(dups) do
  redis.call('ZADD', d[1], now, tostring(now) .. ':' .. tostring(d[3]) .. ':' .. tostring(i))  -- unique per placement
  redis.call('PEXPIRE', d[1], math.floor(d[2] * 1000) + 1000)
end
redis.call('SET', marker, '1', 'PX', ARGV[#ARGV])
return {'ok'}
"""


# the account's orders on their way (every bot's: `pending:{account}`), what a cancel of an order of no known owner
# or a cancel-all on any instance waits for (proxy/sweeps.py): the ones still there when this one is read
_PENDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if #ARGV == 0 then return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf') end
local still = {}  -- of the members named, those still on their way
for i, score in ipairs(redis.call('ZMSCORE', KEYS[1], unpack(ARGV))) do
  if score and tonumber(score) >= now then still[#still + 1] = ARGV[i] end
end
return still
"""
_PENDING_SHA = hashlib.sha1(_PENDING.encode()).hexdigest()
PENDING_S = 10.0  # an order on its way whose answer never came stops holding cancels back after this

# a cancel-all (or a cancel of an order of no known owner) begins its turn on the account: in `sweeping:{account}`
# until its answer is read (or its hold runs out), where every instance's orders after it find it (the gate's
# script), atomically with reading the orders on their way before it, which it waits for (proxy/sweeps.py)
_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) * 1000) + 1000)
return redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
"""
_SWEEP_SHA = hashlib.sha1(_SWEEP.encode()).hexdigest()

# how long a check's marker says "charged": longer than any check may take (FleetSettings.timeout, its retry
# included), so the retry of a call whose reply was lost finds it and is not charged twice (or refused as a replay)
MARKER_MS = 30_000

_PLAIN = {kind: Verdict(kind) for kind in ("ok", "stale", "back", "replay", "sequence", "unavailable")}


@functools.lru_cache(maxsize=4)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


class FleetGate:
    """The gate keeps its own connections (taken once from redis-py's pool) and calls EVALSHA on them: the
    client's per-call machinery (pool lock and observability, retry wrapper, reply callbacks) was ~35 µs of
    a ~250 µs check (bench/fleet_gate.py, docs/performance.md). A connection that failed or was interrupted
    mid-call is closed, never reused: its next reply would be this call's."""

    def __init__(self, fleet: FleetStore) -> None:
        self.fleet = fleet
        self._client: redis.asyncio.Redis | None = None
        self._sha = hashlib.sha1(_SCRIPT.encode()).hexdigest()
        self._scripts = {self._sha: _SCRIPT, _PENDING_SHA: _PENDING, _SWEEP_SHA: _SWEEP}
        self._idle: list[redis.asyncio.Connection] = []
        self._closing: set[asyncio.Task[None]] = set()

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = self.fleet.aio(timed_reads=False)
        return self._client

    async def _call(self, conn: redis.asyncio.Connection, command: tuple[object, ...]) -> list[bytes]:
        """Bounded by `_evalsha`'s one timer (none per socket write or read)."""
        await conn.send_command(*command)
        try:
            return await conn.read_response(timeout=math.inf)
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts: load it once more
            await conn.send_command("SCRIPT", "LOAD", self._scripts[str(command[1])])
            await conn.read_response(timeout=math.inf)
            await conn.send_command(*command)
            return await conn.read_response(timeout=math.inf)

    async def _evalsha(self, command: tuple[object, ...]) -> list[bytes]:
        """One limit for all of it: taking a connection (a new one's AUTH and HELLO are read without a socket
        timer), the call, and its one retry; a Redis that accepts and never answers cannot hold a request."""
        async with asyncio.timeout(self.fleet.settings.timeout):
            return await self._evalsha_within(command)

    async def _evalsha_within(self, command: tuple[object, ...]) -> list[bytes]:
        pool = self._redis().connection_pool
        reused = bool(self._idle)
        conn: redis.asyncio.Connection | None = self._idle.pop() if reused else await pool.get_connection()
        done = False
        try:
            assert conn is not None
            answer = await self._call(conn, command)
            done = True
            return answer
        except (redis.ConnectionError, ConnectionError):  # never a timeout: the script may have run
            if not reused:
                raise
            # an idle connection Redis closed meanwhile (a restart): once more on a new one, as redis-py retries
            assert conn is not None
            self._discard(conn)
            conn = None  # discarded once: a failure to take a new one must not discard it again
            conn = await pool.get_connection()
            answer = await self._call(conn, command)
            done = True
            return answer
        finally:
            if conn is not None:
                if done:
                    self._idle.append(conn)
                else:
                    self._discard(conn)

    def _discard(self, conn: redis.asyncio.Connection) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self._redis().connection_pool.release(conn)
        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def check(self, charges: SharedCharges, applied: int, now: float | None = None) -> Verdict:
        """Check and charge atomically; nothing is charged unless everything holds."""
        key = self.fleet.key
        keys, args = [key("version")], [applied, len(charges.replays), 1 if charges.sequence is not None else 0]
        for replay_id, ttl_ms, checked in charges.replays:
            keys.append(key("replay:" + hashlib.sha256(replay_id.encode()).hexdigest()[:32]))
        counts: dict[str, int] = {}
        buckets: list[tuple[str, float, float]] = []
        for bucket in charges.buckets:
            if bucket[0] not in counts:
                counts[bucket[0]] = 0
                buckets.append(bucket)
            counts[bucket[0]] += 1
        legs = charges.exposure if charges.in_flight is not None else []
        args += [len(buckets), len(charges.caps), 1 if charges.open_orders is not None else 0,
                 len(charges.duplicates), 1 if charges.book_seq is not None else 0, len(legs),
                 repr(float(charges.in_flight[1])) if charges.in_flight is not None else "0",
                 1 if charges.pending is not None else 0]
        for replay_id, ttl_ms, checked in charges.replays:
            args += [max(1, int(ttl_ms)), "1" if checked else "0"]
        if charges.sequence is not None:
            keys.append(key(f"sequence:{charges.bot}"))
            args.append(str(charges.sequence))
        for name, rate, capacity in buckets:
            keys.append(key("tokens:" + name))
            args += [repr(float(rate)), repr(float(capacity)), counts[name]]
        if charges.caps:  # the UTC day by Redis's clock (the script picks): instances' clocks may differ
            day = int((now if now is not None else time.time()) // 86_400)
            for kind, asset, amount, cap, _code in charges.caps:
                keys += [key(f"daily:{kind}:{charges.bot}:{asset}:{_day(d)}") for d in (day - 1, day, day + 1)]
                args += [f"{amount:f}", f"{cap:f}", str(day)]
        if charges.open_orders is not None:
            member = charges.flight_member() or ""  # none: checked, nothing reserved
            ttl = charges.in_flight[1] if charges.in_flight is not None else 0.0
            keys += [key(f"open:{charges.bot}"), key(f"flight:{charges.bot}")]
            args += [*charges.open_orders, member, repr(float(ttl))]
        for shape, window, cap, checked in charges.duplicates:
            keys.append(key(f"orders:{shape}"))
            args += [repr(float(window)), cap, "1" if checked else "0"]
        if charges.book_seq is not None:
            keys.append(key(f"bookseq:{charges.bot}"))
            args.append(charges.book_seq)
        for (name, member), (_scope, _side, size, room, base, limit) in zip(charges.exposure_members(), legs):
            keys.append(key(name))
            args += [f"{size:f}", f"{room:f}", f"{base:f}", f"{limit:f}", member]
        if charges.pending is not None:
            keys += [key(f"pending:{charges.pending[0]}"), key(f"sweeping:{charges.pending[0]}")]
            args += [charges.pending[1], repr(PENDING_S), "1" if charges.sweeps_first else "0"]
        keys.append(key("gate:" + os.urandom(8).hex()))  # this call's marker: its retry sends the same one
        args.append(MARKER_MS)
        try:
            answer = await self._evalsha(("EVALSHA", self._sha, len(keys), *keys, *args))
        except (redis.RedisError, OSError):
            return _PLAIN["unavailable"]
        kind = answer[0].decode()
        if kind == "rate":
            return Verdict("rate", bucket=buckets[int(answer[1]) - 1][0], retry_after=float(answer[2]))
        if kind == "open":
            return Verdict("open", used=Decimal(answer[1].decode()))
        if kind == "cap":
            return Verdict("cap", cap=charges.caps[int(answer[1]) - 1], used=Decimal(answer[2].decode()))
        if kind in ("book", "position"):
            leg = int(answer[1]) - 1 if kind == "position" else None
            return Verdict(kind, used=Decimal(answer[-1].decode()), leg=leg)
        if kind == "sweeping":
            return Verdict("sweeping", members=tuple(answer[1:]))
        if kind == "duplicate":
            return Verdict("duplicate", duplicate=charges.duplicates[int(answer[1]) - 1],
                           used=Decimal(answer[2].decode()))
        return _PLAIN.get(kind) or Verdict(kind)

    async def others_pending(self, account: str, bot: str, scopes: tuple[str, ...],
                             among: list[bytes] | None = None, sweep: tuple[str, float] | None = None) -> list[bytes]:
        """The other bots' orders on their way in `scopes` of `account` through any instance (answers not read
        yet, so owners not on record); `among`: of those named only (a wait's first look fixes what it waits for,
        so orders placed after it cannot keep it waiting, and each later look costs one ZMSCORE). `sweep`: the first
        look of a cancel-all, (its member, seconds it holds): it takes its turn in `sweeping:{account}` in the same
        call, so every order after it, through any instance, waits for it (`check`). Redis unreachable: none (the
        decision's own owner lookups refuse what they cannot tell, `OwnersUnknown`)."""
        if among is not None and not among:
            return []
        try:
            if sweep is not None and among is None:
                members = await self._evalsha(("EVALSHA", _SWEEP_SHA, 2, self.fleet.key(f"sweeping:{account}"),
                                               self.fleet.key(f"pending:{account}"), sweep[0], repr(float(sweep[1]))))
            else:
                members = await self._evalsha(("EVALSHA", _PENDING_SHA, 1, self.fleet.key(f"pending:{account}"),
                                               *(among or ())))
        except (redis.RedisError, OSError, TimeoutError):
            return []
        if among is not None:
            return list(members)
        out = []
        for member in members:
            other, _, rest = member.decode(errors="replace").partition("|")
            if other != bot and scopes_overlap(tuple(rest.partition("|")[2].split(",")), scopes):
                out.append(member)
        return out[:1000]  # what one later look names (a flood beyond it is waited for no longer than the rest)

    async def pending_of(self, account: str, bot: str | None) -> int | None:
        """How many orders of `bot` (None: of every bot) are on their way to `account` through any instance (their
        answers not read: `pending:{account}`), what a halt's sweep waits for; None when Redis cannot be asked."""
        try:
            members = await self._evalsha(("EVALSHA", _PENDING_SHA, 1, self.fleet.key(f"pending:{account}")))
        except (redis.RedisError, OSError, TimeoutError):
            return None
        prefix = f"{bot}|".encode() if bot is not None else b""
        return sum(1 for m in members if m.startswith(prefix))

    async def still_sweeping(self, account: str, among: tuple[bytes, ...]) -> bool:
        """Whether any of `among` (cancel-alls pending on `account`, `sweeping:{account}`) is still pending: an
        order waits while one is. Redis unreachable: no (the order's gate call that follows says so)."""
        try:
            return bool(await self._evalsha(("EVALSHA", _PENDING_SHA, 1, self.fleet.key(f"sweeping:{account}"),
                                             *among)))
        except (redis.RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._idle.clear()
        if self._client is not None:
            await self._client.aclose()  # closes every connection of its pool, the gate's too
