"""The bookkeeping every instance learns from the exchange's answers, shared in Redis: the bots' open orders
(the gate checks `max_open_orders` against this count, never an instance's own), the release of each order's
in-flight reservation once its answer is read, and which bot placed which order (`halt --bot B --cancel-orders`
on any instance finds B's orders). Queued in the order learned and written off the request path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from keyproxy.fleet.store import FleetStore

log = logging.getLogger("keyproxy.fleet")


def _mark() -> str:
    return os.urandom(8).hex()


# a listing's decision time is read on this host's clock and turned into Redis's by the offset measured at the
# writer's calls (`FleetUsage._calibrate`, good to a round trip): an open another process learned up to this long
# before the decision is still added (counted twice at worst, until the next listing: never left out)
CLOCKS_MARGIN_MS = 50
CALIBRATE_S = 60.0  # the offset to Redis's clock measured again this often
OPENS_KEPT_MS = 120_000  # how long each open stays in `opens:{bot}`: longer than any listing's round trip

# One script applies a whole batch of changes, in order, atomically: one EVALSHA instead of a MULTI/EXEC of
# several commands each (bench/fleet_gate.py's "answer write": ~380 -> ~180 µs of the instance's CPU per order).
# ARGV holds each change as (kind, its key count, its argument count, its arguments...); KEYS its keys in
# the same order. A change Redis refuses (a key of the wrong type) is caught by pcall: that change is dropped,
# the rest stand, and its reply says why; a refusal that passes (OOM, READONLY after a failover, MISCONF, LOADING)
# fails the whole batch, which is sent again (the instance `stuck` meanwhile), never dropped. Every change is
# idempotent or carries a marker (`applied:<mark>`), so a batch sent again after its reply was lost applies nothing
# twice.
_APPLY = """
local function in_chunks(command, key, items, width)  -- unpack() has a limit of a few thousand values
  for i = 1, #items, 2000 * width do
    redis.call(command, key, unpack(items, i, math.min(#items, i + 2000 * width - 1)))
  end
end

local function scope_parts(scope)
  local colon = string.find(scope, ':', 1, true)
  if not colon then return scope, '' end
  return string.sub(scope, 1, colon - 1), string.sub(scope, colon + 1)
end

local function overlap(a, b)  -- scopes_overlap (policy/model.py): `*` stands for any market or symbol
  local am, as = scope_parts(a)
  local bm, bs = scope_parts(b)
  return (am == bm or am == '*' or bm == '*') and (as == bs or as == '*' or bs == '*')
end

-- a bot's open-order count per scope (the gate's max_open_orders). keys[3] holds the bot's orders learned open
-- for args[6] ms, each as `writer|mark|scope` (args[7]: the writing process), scored by Redis's clock: a listing
-- (`set`) or a cancel-all (`reset`) decided at args[5] (Redis's clock) counts what it saw plus the orders other
-- processes learned open since (the exchange may have shown them or not); the writer adds its own itself, exactly
local function open_orders(keys, args)
  if not redis.call('SET', keys[2], '1', 'NX', 'PX', args[4]) then return 0 end  -- applied once
  local op, scope, value = args[1], args[2], tonumber(args[3])
  local since, writer = tonumber(args[5] or ''), args[7] or ''
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if keys[3] and op == 'change' and value > 0 then
    for i = 1, value do redis.call('ZADD', keys[3], now, writer .. '|' .. keys[2] .. '#' .. i .. '|' .. scope) end
    redis.call('ZREMRANGEBYSCORE', keys[3], '-inf', now - tonumber(args[6]))
    redis.call('PEXPIRE', keys[3], args[6])
  end
  local late = {}  -- the scopes of the orders other processes learned open since the listing was decided
  if keys[3] and since and (op == 'set' or op == 'reset') then
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', keys[3], since, '+inf')) do
      local first = string.find(member, '|', 1, true)
      local second = first and string.find(member, '|', first + 1, true)
      if second and string.sub(member, 1, first - 1) ~= writer then
        late[#late + 1] = string.sub(member, second + 1)
      end
    end
  end
  if op == 'set' then
    for _, opened in ipairs(late) do
      if overlap(opened, scope) then value = value + 1 end
    end
    redis.call('HSET', keys[1], scope, tostring(math.max(0, value)))
  elseif op == 'reset' or (op == 'change' and string.sub(scope, -2) == ':*' and value < 0) then
    local market = op == 'reset' and scope or string.sub(scope, 1, -3)
    local prefix = market .. ':'
    local fields = redis.call('HGETALL', keys[1])
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, #prefix) == prefix then
        local left = tonumber(fields[i + 1])
        if op == 'reset' then left = 0 else
          local take = math.min(left, -value)
          left, value = left - take, value + take
        end
        redis.call('HSET', keys[1], fields[i], tostring(left))
      end
    end
    for _, opened in ipairs(late) do  -- a cancel-all's: those learned open since it was decided may have rested on
      if scope_parts(opened) == market then redis.call('HINCRBY', keys[1], opened, 1) end
    end
  else
    local left = math.max(0, tonumber(redis.call('HGET', keys[1], scope) or '0') + value)
    redis.call('HSET', keys[1], scope, tostring(left))
  end
  redis.call('EXPIRE', keys[1], 2592000)
  return 1
end

local function placed(keys, args)  -- who placed which orders ([bot, market]) and when; args: ttl, then triples
  local owners, times = {}, {}
  for i = 2, #args, 3 do
    owners[#owners + 1] = args[i]; owners[#owners + 1] = args[i + 1]
    times[#times + 1] = args[i]; times[#times + 1] = args[i + 2]
  end
  in_chunks('HSET', keys[1], owners, 2)
  redis.call('EXPIRE', keys[1], args[1])
  in_chunks('HSET', keys[2], times, 2)
  redis.call('EXPIRE', keys[2], args[1])
  return 1
end

local function numbered_entry(keys, args)  -- a fleet stream's entry, numbered once however often sent
  local prior = redis.call('GET', keys[3])
  if prior then return tonumber(prior) end
  local n = redis.call('INCR', keys[2])
  local fields = {}
  for i = 3, #args do fields[#fields + 1] = args[i] end
  fields[#fields + 1] = 'n'
  fields[#fields + 1] = tostring(n)
  redis.call('XADD', keys[1], 'MAXLEN', '~', args[1], '*', unpack(fields))
  redis.call('SET', keys[3], tostring(n), 'PX', args[2])
  return n
end

local function zrem(keys, args)  -- a reservation of the gate's goes (an order on its way, a leg's size)
  redis.call('ZREM', keys[1], args[1])
  return 1
end

-- a record goes only while it is still the one pruned: it names the same bot (and market), and was not written
-- since (its time in keys[2] no later than the pruned row's; a record an older version wrote has none)
local function forget_if_still(keys, args)
  for i = 1, #args, 3 do
    if redis.call('HGET', keys[1], args[i]) == args[i + 1] and
        tonumber(redis.call('HGET', keys[2], args[i]) or '0') <= tonumber(args[i + 2]) then
      redis.call('HDEL', keys[1], args[i])
      redis.call('HDEL', keys[2], args[i])
    end
  end
  return 1
end

local function forget(keys, args)
  in_chunks('HDEL', keys[1], args, 1)
  in_chunks('HDEL', keys[2], args, 1)
  return 1
end

-- errors that pass (out of memory, a replica, a failed save, a load, a busy script): never a change's own fault
local TRANSIENT = {'OOM', 'READONLY', 'MISCONF', 'LOADING', 'BUSY', 'NOREPLICAS', 'MASTERDOWN', 'TRYAGAIN'}
local apply = {open = open_orders, placed = placed, xadd = numbered_entry, zrem = zrem, prune = forget_if_still,
               forget = forget}
local out, k, a = {}, 1, 1
while a <= #ARGV do
  local kind, nk, na = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local keys, args = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i - 1] end
  for i = 1, na do args[i] = ARGV[a + 2 + i] end
  k, a = k + nk, a + 3 + na
  local ok, result = pcall(apply[kind], keys, args)
  if ok then out[#out + 1] = result else
    local why = type(result) == 'table' and tostring(result.err) or tostring(result)
    for _, passing in ipairs(TRANSIENT) do  -- Redis refuses writes for now: the whole batch fails, and is sent again
      if string.find(why, passing, 1, true) then return redis.error_reply(why) end
    end
    out[#out + 1] = 'refused: ' .. why
  end
end
return out
"""


BATCH = 64  # queued changes written in one script call at most (a longer one would hold up every gate check)
# how long a change's marker says "applied": a batch whose reply was lost is sent again within this, and
# a change it applied is not applied twice (an open-order decrement, a book entry)
APPLIED_MS = 600_000
# a batch unwritten this long (failing, or its reply held: a stalled connection fails only at its socket timeout):
# this instance's capped checks are refused (`stuck`)
STUCK_S = 2.0


class FleetUsage:
    """What every instance learned from the exchange's answers, in Redis: the bots' open orders (`UsageBook`'s
    changes, in the order they were learned; the gate checks `max_open_orders` against this count, never an
    instance's own) and which bot placed which order (`halt --bot B --cancel-orders` on any instance finds
    B's orders wherever they were placed). Queued, so an answer's bookkeeping never waits on Redis."""

    PLACED_TTL_S = 7 * 86400

    def __init__(self, fleet: FleetStore) -> None:
        self.fleet = fleet
        # (kind, payload, when it was queued): a batch's first change is its oldest (`writing_since`)
        self._queue: asyncio.Queue[tuple[str, tuple[object, ...], float]] = asyncio.Queue(maxsize=100_000)
        self.failing_since: float | None = None  # when the batch being written first failed (None: it did not)
        self.writing_since: float | None = None  # when the batch being written was taken (None: none is)
        self.dropped = 0  # changes Redis refused (each logged): never retried, since a retry cannot make them pass
        self._apply: Any = None  # redis-py's Script for `_APPLY`, bound to the writer's client
        self._writer = os.urandom(6).hex()  # this process's opens in `opens:{bot}` (its own it counts exactly)
        self._offset_ms: float | None = None  # Redis's clock minus this host's
        self._calibrated = 0.0

    def stuck(self) -> bool:
        """A batch has waited STUCK_S to be written (failing, or a reply held: session 34's review stalled the
        writer's connection, and it failed only at its 7 s timeout): what this instance learned (open orders, book
        entries, releases) is not reaching the fleet, so a check that counts on it must not pass here."""
        since = self.writing_since
        return since is not None and time.monotonic() - since > STUCK_S

    async def drained(self, timeout: float) -> bool:
        """Until every queued change is written, or `timeout`: a stop waits for it (a change left in memory is
        lost, and the order it counted with it once its reservation expires: session 34's review)."""
        deadline = time.monotonic() + timeout
        while (not self._queue.empty() or self.writing_since is not None) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._queue.empty() and self.writing_since is None

    def change_open_orders(self, bot: str, scope: str, delta: int) -> None:
        self._put("open", ("change", bot, scope, delta, _mark(), None))

    def set_open_orders(self, bot: str, scope: str, count: int, since_ms: int | None = None) -> None:
        """The scope's count as a listing gave it (with this process's own orders learned open since); with
        `since_ms` (when the listing was decided, this host's clock), plus the bot's orders other processes learned
        open in the scope since, which it may not have listed (counted either way)."""
        self._put("open", ("set", bot, scope, count, _mark(), since_ms))

    def reset_open_orders(self, bot: str, market: str, since_ms: int | None = None) -> None:
        self._put("open", ("reset", bot, market, 0, _mark(), since_ms))

    def land(self, bot: str, member: str) -> None:
        """An order reserved by the gate (on its way) has its answer read, or was never sent: its place goes.
        Queued after the open-order change its answer made, so the count never dips in between."""
        self.release(f"flight:{bot}", member)

    def record_placed_orders(self, account: str, bot: str, market: str, order_ids: tuple[str, ...],
                             ts: float = 0.0) -> None:
        """Who placed them (`placed:{account}`, `[bot, market]` as every version reads it) and when
        (`placedts:{account}`, beside it: a prune on another instance removes only a record not written since)."""
        owner, when = json.dumps([bot, market]), repr(ts)
        self._put("placed", (account, [(oid, owner, when) for oid in order_ids]))

    def record_placed_now(self, account: str, bot: str, rows: tuple[tuple[str, str, float], ...]) -> None:
        """`record_placed_orders` (rows of key, market, time) written before this returns (`SharedStateUnavailable`
        if it cannot be): a record another instance must see before the bot can act on what it was recorded for (a
        client id placed outside keyproxy, recorded before the answer naming it reaches the bot: session 33's review
        raced a queued one)."""
        with self.fleet._calls() as r:
            pipe = r.pipeline(transaction=True)
            pipe.hset(self.fleet.key(f"placed:{account}"), mapping={k: json.dumps([bot, m]) for k, m, _ in rows})
            pipe.expire(self.fleet.key(f"placed:{account}"), self.PLACED_TTL_S)
            pipe.hset(self.fleet.key(f"placedts:{account}"), mapping={k: repr(ts) for k, _, ts in rows})
            pipe.expire(self.fleet.key(f"placedts:{account}"), self.PLACED_TTL_S)
            pipe.execute()

    def forget_placed_orders(self, account: str, order_ids: list[str]) -> None:
        self._put("forget", (account, list(order_ids)))

    def forget_pruned(self, account: str, bot: str, records: list[tuple[str, str, float]]) -> None:
        """Records an instance pruned from its own (`(key, market, ts)`, all `bot`'s): each goes from the fleet's only
        while it is still that record there (another instance may have recorded it since: a client id reused, by
        another bot or the same one, for an order that may be live, whose record a flood must not wipe)."""
        self._put("prune", (account, [(key, json.dumps([bot, market]), repr(ts)) for key, market, ts in records]))

    def publish(self, stream: str, counter: str, fields: dict[str, str], maxlen: int,
                numbered: Callable[[int], None]) -> None:
        """An entry for a fleet stream (the positions book, fleet/book.py), in order with the rest: after the
        answer's open-order change, before its in-flight release. `counter` is raised with it, atomically; the
        entry carries the new value (`n`), and `numbered` hears it once written."""
        self._put("xadd", (stream, counter, fields, maxlen, numbered, _mark()))

    def release(self, name: str, member: str) -> None:
        """A reservation of the gate's (an order's size on its way, `exposure:...`) goes, like `land`."""
        self._put("zrem", (name, member))

    def placed_orders(self, account: str) -> dict[str, tuple[str, str]]:
        """Order id -> (bot, market) as every instance recorded it (read when cancelling: rare)."""
        with self.fleet._calls() as r:
            rows = r.hgetall(self.fleet.key(f"placed:{account}"))
        out = {}
        for oid, value in rows.items():
            bot, market = json.loads(value)
            out[oid.decode()] = (str(bot), str(market))
        return out

    def placed_owner(self, account: str, keys: tuple[str, ...]) -> str | None:
        """The bot any instance recorded under the first of `keys` found (an order placed through another
        instance: its owner for the own-orders check)."""
        with self.fleet._calls() as r:
            values = r.hmget(self.fleet.key(f"placed:{account}"), list(keys))
        for value in values:
            if value is not None:
                return str(json.loads(value)[0])
        return None

    def owners_of(self, account: str, keys: list[str]) -> dict[str, str]:
        """Key -> the bot any instance recorded under it, for those of `keys` on record (one round trip)."""
        with self.fleet._calls() as r:
            values = r.hmget(self.fleet.key(f"placed:{account}"), keys) if keys else []
        return {k: str(json.loads(v)[0]) for k, v in zip(keys, values, strict=True) if v is not None}

    def _put(self, kind: str, payload: tuple[object, ...]) -> None:
        try:
            self._queue.put_nowait((kind, payload, time.monotonic()))
        except asyncio.QueueFull:  # Redis long gone: counts are rebuilt by the bots' own open-order queries
            pass

    async def run(self) -> None:
        """Apply the queued changes in order until cancelled; waits out an unreachable Redis. What is queued
        when the writer comes round goes in one round trip (one call of the `_APPLY` script), so an order's answer
        (its open-order change, attribution, book entry, in-flight release) costs one. A batch that
        failed, or whose reply was lost, is sent again: each change in it is either idempotent or carries a
        marker that makes a second application a no-op. A change Redis refuses inside it (a key of the wrong type)
        is dropped and logged, the rest stand; a refusal that passes (OOM, READONLY, ...) fails the whole batch."""
        client = self.fleet.aio()
        try:
            while True:
                _cancelled_meanwhile()  # a cancel redis-py swallowed during the last write
                first = await self._queue.get()
                # counted from when the oldest change was queued: after an outage each batch of the backlog is
                # written quickly, while the changes behind it are still not in Redis (the regression review)
                self.writing_since = first[2]
                batch = [first[:2]]
                while len(batch) < BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait()[:2])
                while True:
                    try:
                        await self._write(client, batch)
                        self.failing_since = self.writing_since = None
                        break
                    except (redis.RedisError, OSError) as e:
                        _cancelled_meanwhile()
                        if self.failing_since is None:
                            self.failing_since = time.monotonic()
                            log.warning("fleet: cannot write this instance's changes to Redis; retrying",
                                        extra={"reason": type(e).__name__})
                        await asyncio.sleep(0.5)
        finally:
            await client.aclose()

    async def _write(self, client: redis.asyncio.Redis, batch: list[tuple[str, tuple[object, ...]]]) -> None:
        """The batch as one call of `_APPLY`; a Redis that lost the script (a restart) refuses it whole (NOSCRIPT,
        nothing applied) and is given it again by redis-py's `Script`."""
        key, keys, args = self.fleet.key, [], []
        numbered: list[tuple[int, Callable[[int], None]]] = []  # (the change's place among the replies, its hook)
        changes = 0

        def change(kind: str, its_keys: list[str], its_args: list[object]) -> None:
            nonlocal changes
            keys.extend(its_keys)
            args.extend((kind, len(its_keys), len(its_args), *its_args))
            changes += 1

        if self._offset_ms is None or time.monotonic() - self._calibrated > CALIBRATE_S:
            await self._calibrate(client)
        offset = self._offset_ms or 0.0
        for kind, payload in batch:
            if kind == "open":
                op, bot, scope, value, mark, since = payload
                redis_since = "" if since is None else str(int(float(since) + offset) - CLOCKS_MARGIN_MS)  # type: ignore[arg-type]
                change("open", [key(f"open:{bot}"), key(f"applied:{mark}"), key(f"opens:{bot}")],
                       [op, scope, value, APPLIED_MS, redis_since, OPENS_KEPT_MS, self._writer])
            elif kind == "placed":
                account, records = payload
                assert isinstance(records, list)
                change("placed", [key(f"placed:{account}"), key(f"placedts:{account}")],
                       [self.PLACED_TTL_S, *[x for record in records for x in record]])
            elif kind == "zrem":
                name, member = payload
                change("zrem", [key(str(name))], [member])
            elif kind == "xadd":
                stream, counter, fields, maxlen, heard, mark = payload
                assert isinstance(fields, dict)
                numbered.append((changes, heard))  # type: ignore[arg-type]
                change("xadd", [str(stream), str(counter), key(f"applied:{mark}")],
                       [maxlen, APPLIED_MS, *[x for kv in fields.items() for x in kv]])
            elif kind == "prune" and payload[1]:
                account, records = payload
                assert isinstance(records, list)
                change("prune", [key(f"placed:{account}"), key(f"placedts:{account}")],
                       [x for record in records for x in record])
            elif kind == "forget" and payload[1]:
                account, ids = payload
                assert isinstance(ids, list)
                change("forget", [key(f"placed:{account}"), key(f"placedts:{account}")], list(ids))
        if not args:
            return
        results = await self._script(client)(keys=keys, args=args)
        refused = [r for r in results if isinstance(r, bytes) and r.startswith(b"refused: ")]
        if refused:
            self.dropped += len(refused)
            log.error("fleet: Redis refused %d of this instance's changes; they are dropped (the rest stand): %s",
                      len(refused), refused[0].decode(errors="replace")[:200])
        for at, heard in numbered:
            if isinstance(results[at], int):
                heard(results[at])

    async def _calibrate(self, client: redis.asyncio.Redis) -> None:
        """Redis's clock against this host's, read midway through one TIME call (a listing's decision time is
        this host's; the opens it is compared with are stamped by Redis)."""
        before = time.time()
        seconds, micros = await client.time()
        after = time.time()
        self._offset_ms = (seconds * 1000 + micros / 1000) - (before + after) * 500
        self._calibrated = time.monotonic()

    def _script(self, client: redis.asyncio.Redis) -> Any:
        if self._apply is None or self._apply.registered_client is not client:
            self._apply = client.register_script(_APPLY)
        return self._apply


def _cancelled_meanwhile() -> None:
    """Re-raise a cancellation an error swallowed: redis-py can turn a cancel that lands mid-call into a connection
    error, and a writer that then retried waited on its queue for ever (a stop, or a test, hung on it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
