"""The bookkeeping every instance learns from the exchange's answers, shared in Redis: the bots' open orders
(the gate checks `max_open_orders` against this count, never an instance's own), the release of each order's
in-flight reservation once its answer is read, and which bot placed which order (`halt --bot B --cancel-orders`
on any instance finds B's orders). Queued in the order learned and written off the request path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import redis
import redis.asyncio

from keyproxy.fleet.store import FleetStore

_OPEN_ORDERS = """
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
local n = redis.call('INCR', KEYS[2])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'n'
fields[#fields + 1] = tostring(n)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
return n
"""


BATCH = 64  # queued changes written in one transaction at most (a longer one would hold up every gate check)


class FleetUsage:
    """What every instance learned from the exchange's answers, in Redis: the bots' open orders (`UsageBook`'s
    changes, in the order they were learned; the gate checks `max_open_orders` against this count, never an
    instance's own) and which bot placed which order (`halt --bot B --cancel-orders` on any instance finds
    B's orders wherever they were placed). Queued, so an answer's bookkeeping never waits on Redis."""

    PLACED_TTL_S = 7 * 86400

    def __init__(self, fleet: FleetStore) -> None:
        self.fleet = fleet
        self._queue: asyncio.Queue[tuple[str, tuple[object, ...]]] = asyncio.Queue(maxsize=100_000)

    def change_open_orders(self, bot: str, scope: str, delta: int) -> None:
        self._put("open", ("change", bot, scope, delta))

    def set_open_orders(self, bot: str, scope: str, count: int) -> None:
        self._put("open", ("set", bot, scope, count))

    def reset_open_orders(self, bot: str, market: str) -> None:
        self._put("open", ("reset", bot, market, 0))

    def land(self, bot: str, member: str) -> None:
        """An order reserved by the gate (on its way) has its answer read, or was never sent: its place goes.
        Queued after the open-order change its answer made, so the count never dips in between."""
        self._put("landed", (bot, member))

    def record_placed_orders(self, account: str, bot: str, market: str, order_ids: tuple[str, ...]) -> None:
        self._put("placed", (account, {oid: json.dumps([bot, market]) for oid in order_ids}))

    def forget_placed_orders(self, account: str, order_ids: list[str]) -> None:
        self._put("forget", (account, list(order_ids)))

    def publish(self, stream: str, counter: str, fields: dict[str, str], maxlen: int,
                numbered: Callable[[int], None]) -> None:
        """An entry for a fleet stream (the positions book, fleet/book.py), in order with the rest: after the
        answer's open-order change, before its in-flight release. `counter` is raised with it, atomically; the
        entry carries the new value (`n`), and `numbered` hears it once written."""
        self._put("xadd", (stream, counter, fields, maxlen, numbered))

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

    def _put(self, kind: str, payload: tuple[object, ...]) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except asyncio.QueueFull:  # Redis long gone: counts are rebuilt by the bots' own open-order queries
            pass

    async def run(self) -> None:
        """Apply the queued changes in order until cancelled; waits out an unreachable Redis. What is queued
        when the writer comes round goes in one round trip (a MULTI/EXEC transaction: all of it or none), so
        an order's answer (its open-order change, attribution, book entry, in-flight release) costs one."""
        client = self.fleet.aio()
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                while True:
                    try:
                        await self._write(client, batch)
                        break
                    except (redis.RedisError, OSError):
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
                    op, bot, scope, value = payload
                    p.eval(_OPEN_ORDERS, 1, key(f"open:{bot}"), op, scope, value)  # type: ignore[no-untyped-call]
                    n += 1
                elif kind == "placed":
                    account, fields = payload
                    p.hset(key(f"placed:{account}"), mapping=fields)  # type: ignore[arg-type]
                    p.expire(key(f"placed:{account}"), self.PLACED_TTL_S)
                    n += 2
                elif kind == "landed":
                    bot, member = payload
                    p.zrem(key(f"flight:{bot}"), member)  # type: ignore[arg-type]
                    n += 1
                elif kind == "xadd":
                    stream, counter, fields, maxlen, heard = payload
                    p.eval(_NUMBERED_ENTRY, 2, stream, counter, maxlen,  # type: ignore[no-untyped-call]
                           *[x for kv in fields.items() for x in kv])
                    numbered.append((n, heard))
                    n += 1
                elif kind == "zrem":
                    name, member = payload
                    p.zrem(key(name), member)  # type: ignore[arg-type]
                    n += 1
                elif kind == "forget" and payload[1]:
                    account, ids = payload
                    p.hdel(key(f"placed:{account}"), *ids)  # type: ignore[misc]
                    n += 1
            results = await p.execute()
        for i, heard in numbered:
            heard(int(results[i]))
