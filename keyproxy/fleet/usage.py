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

import redis
import redis.asyncio

from keyproxy.fleet.store import FleetStore

log = logging.getLogger("keyproxy.fleet")


def _mark() -> str:
    return os.urandom(8).hex()

_OPEN_ORDERS = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then return 0 end  -- applied once, however often sent
local op, scope, value = ARGV[1], ARGV[2], tonumber(ARGV[3])
if op == 'set' then
  redis.call('HSET', KEYS[1], scope, tostring(math.max(0, value)))
elseif op == 'reset' or (op == 'change' and string.sub(scope, -2) == ':*' and value < 0) then
  local market = op == 'reset' and scope or string.sub(scope, 1, -3)
  local prefix = market .. ':'
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, #prefix) == prefix then
      local left = tonumber(fields[i + 1])
      if op == 'reset' then left = 0 else
        local take = math.min(left, -value)
        left, value = left - take, value + take
      end
      redis.call('HSET', KEYS[1], fields[i], tostring(left))
    end
  end
else
  local left = math.max(0, tonumber(redis.call('HGET', KEYS[1], scope) or '0') + value)
  redis.call('HSET', KEYS[1], scope, tostring(left))
end
redis.call('EXPIRE', KEYS[1], 2592000)
return 1
"""


_NUMBERED_ENTRY = """
local prior = redis.call('GET', KEYS[3])  -- written once, however often sent: the number it was given
if prior then return tonumber(prior) end
local n = redis.call('INCR', KEYS[2])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'n'
fields[#fields + 1] = tostring(n)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
redis.call('SET', KEYS[3], tostring(n), 'PX', ARGV[2])
return n
"""


_FORGET_IF_STILL = """
-- a record goes only while it is still the one pruned: it names the same bot (and market), and was not written
-- since (its time in KEYS[2] no later than the pruned row's; a record an older version wrote has none)
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] and
      tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') <= tonumber(ARGV[i + 2]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return 1
"""


BATCH = 64  # queued changes written in one transaction at most (a longer one would hold up every gate check)
# how long a change's marker says "applied": a transaction whose reply was lost is sent again within this, and
# a change it applied is not applied twice (an open-order decrement, a book entry)
APPLIED_MS = 600_000
STUCK_S = 2.0  # the writer failing this long: this instance's capped checks are refused (`stuck`)


class FleetUsage:
    """What every instance learned from the exchange's answers, in Redis: the bots' open orders (`UsageBook`'s
    changes, in the order they were learned; the gate checks `max_open_orders` against this count, never an
    instance's own) and which bot placed which order (`halt --bot B --cancel-orders` on any instance finds
    B's orders wherever they were placed). Queued, so an answer's bookkeeping never waits on Redis."""

    PLACED_TTL_S = 7 * 86400

    def __init__(self, fleet: FleetStore) -> None:
        self.fleet = fleet
        self._queue: asyncio.Queue[tuple[str, tuple[object, ...]]] = asyncio.Queue(maxsize=100_000)
        self.failing_since: float | None = None  # when the batch being written first failed (None: it did not)
        self.dropped = 0  # changes Redis refused (each logged): never retried, since a retry cannot make them pass

    def stuck(self) -> bool:
        """The writer has failed for STUCK_S: what this instance learned (open orders, book entries, releases)
        is not reaching the fleet, so a check that counts on it must not pass here (fleet/gate.py callers)."""
        since = self.failing_since
        return since is not None and time.monotonic() - since > STUCK_S

    def change_open_orders(self, bot: str, scope: str, delta: int) -> None:
        self._put("open", ("change", bot, scope, delta, _mark()))

    def set_open_orders(self, bot: str, scope: str, count: int) -> None:
        self._put("open", ("set", bot, scope, count, _mark()))

    def reset_open_orders(self, bot: str, market: str) -> None:
        self._put("open", ("reset", bot, market, 0, _mark()))

    def land(self, bot: str, member: str) -> None:
        """An order reserved by the gate (on its way) has its answer read, or was never sent: its place goes.
        Queued after the open-order change its answer made, so the count never dips in between."""
        self._put("landed", (bot, member))

    def record_placed_orders(self, account: str, bot: str, market: str, order_ids: tuple[str, ...],
                             ts: float = 0.0) -> None:
        """Who placed them (`placed:{account}`, `[bot, market]` as every version reads it) and when
        (`placedts:{account}`, beside it: a prune on another instance removes only a record not written since)."""
        self._put("placed", (account, {oid: json.dumps([bot, market]) for oid in order_ids},
                             {oid: repr(ts) for oid in order_ids}))

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

    def _put(self, kind: str, payload: tuple[object, ...]) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except asyncio.QueueFull:  # Redis long gone: counts are rebuilt by the bots' own open-order queries
            pass

    async def run(self) -> None:
        """Apply the queued changes in order until cancelled; waits out an unreachable Redis. What is queued
        when the writer comes round goes in one round trip (a MULTI/EXEC transaction), so an order's answer
        (its open-order change, attribution, book entry, in-flight release) costs one. A transaction that
        failed, or whose reply was lost, is sent again: each change in it is either idempotent or carries a
        marker that makes a second application a no-op. A change Redis refuses inside it is dropped and
        logged; the rest stand (Redis does not roll a transaction back)."""
        client = self.fleet.aio()
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                while True:
                    try:
                        await self._write(client, batch)
                        self.failing_since = None
                        break
                    except (redis.RedisError, OSError) as e:
                        if self.failing_since is None:
                            self.failing_since = time.monotonic()
                            log.warning("fleet: cannot write this instance's changes to Redis; retrying",
                                        extra={"reason": type(e).__name__})
                        await asyncio.sleep(0.5)
        finally:
            await client.aclose()

    async def _write(self, client: redis.asyncio.Redis, batch: list[tuple[str, tuple[object, ...]]]) -> None:
        """EVAL, not EVALSHA: a script Redis lost (a restart) cannot fail one command of the transaction while
        the others run (Redis caches the compiled script by its hash either way)."""
        key, numbered, n = self.fleet.key, [], 0
        async with client.pipeline(transaction=True) as p:
            for kind, payload in batch:
                if kind == "open":
                    op, bot, scope, value, mark = payload
                    p.eval(_OPEN_ORDERS, 2, key(f"open:{bot}"), key(f"applied:{mark}"),  # type: ignore[no-untyped-call]
                           op, scope, value, APPLIED_MS)
                    n += 1
                elif kind == "placed":
                    account, fields, times = payload
                    p.hset(key(f"placed:{account}"), mapping=fields)  # type: ignore[arg-type]
                    p.expire(key(f"placed:{account}"), self.PLACED_TTL_S)
                    p.hset(key(f"placedts:{account}"), mapping=times)  # type: ignore[arg-type]
                    p.expire(key(f"placedts:{account}"), self.PLACED_TTL_S)
                    n += 4
                elif kind == "landed":
                    bot, member = payload
                    p.zrem(key(f"flight:{bot}"), member)  # type: ignore[arg-type]
                    n += 1
                elif kind == "xadd":
                    stream, counter, fields, maxlen, heard, mark = payload
                    p.eval(_NUMBERED_ENTRY, 3, stream, counter, key(f"applied:{mark}"),  # type: ignore[no-untyped-call]
                           maxlen, APPLIED_MS, *[x for kv in fields.items() for x in kv])
                    numbered.append((n, heard))
                    n += 1
                elif kind == "zrem":
                    name, member = payload
                    p.zrem(key(name), member)  # type: ignore[arg-type]
                    n += 1
                elif kind == "prune" and payload[1]:
                    account, records = payload
                    p.eval(_FORGET_IF_STILL, 2, key(f"placed:{account}"),  # type: ignore[no-untyped-call]
                           key(f"placedts:{account}"), *[x for record in records for x in record])
                    n += 1
                elif kind == "forget" and payload[1]:
                    account, ids = payload
                    p.hdel(key(f"placed:{account}"), *ids)  # type: ignore[misc]
                    p.hdel(key(f"placedts:{account}"), *ids)  # type: ignore[misc]
                    n += 2
            results = await p.execute(raise_on_error=False)
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:
            self.dropped += len(refused)
            log.error("fleet: Redis refused %d of this instance's changes; they are dropped (the rest stand): %s",
                      len(refused), str(refused[0])[:200])
        for i, heard in numbered:
            if not isinstance(results[i], Exception):
                heard(int(results[i]))
