"""The positions book shared by a fleet: every instance holds every bot's orders, fills and positions.

An instance hands on each change its book learns from the exchange (an order placed, with what its answer
says it filled; fills and ends from answers, user streams, reconciliation) as an entry of a Redis Stream,
and applies every other instance's entries to its own book (proxy/positions.py `PositionBook.replay`). So a
position built through one instance counts against `max_position` and the daily loss limit on every other,
and a bot's resting order on one instance refuses another bot's crossing order on any. Entries are
idempotent (an order is placed once, fills are cumulative per order), so one applied twice, or an instance
replaying the stream after a restart, changes nothing. They name orders, bots, scopes, sizes and prices:
never a key, secret or signature.

Entries go through FleetUsage's ordered writer, after the answer's open-order change and before its
in-flight release, and off the request path. The few milliseconds an entry takes to reach the other instances
are closed for position caps by the gate (each bot's entries numbered, orders on their way reserved: fleet/gate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from decimal import Decimal
from typing import Any

import redis

from keyproxy.exchanges.base import OrderUpdate
from keyproxy.fleet.store import FleetStore
from keyproxy.fleet.usage import FleetUsage, _cancelled_meanwhile
from keyproxy.proxy.positions import PositionBook
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.fleet")
LAST_ID = "fleet|book_id"  # state.db usage key: the newest stream entry this instance's book has applied
STREAM_MAXLEN = 200_000  # entries kept (Redis trims the oldest, approximately)
SETTLE_S = 0.5  # a cancel-all waits this long at most for the book to read the stream's newest entries


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode(entry: list[Any]) -> str:
    """A book change as JSON: decimals as text, updates as lists."""
    def update(u: OrderUpdate) -> list[Any]:
        # what a triggered conditional order became, and when the exchange made the order (where it says)
        more = [u.spawned, u.created] if u.created is not None else [u.spawned] if u.spawned else []
        return [u.order_id, u.scope, u.side, _text(u.price), _text(u.quantity), str(u.filled), str(u.filled_quote),
                u.final, *more]
    if entry[0] == "p":  # (..., when the request was decided: the orders' time in every book)
        kind, account, bot, rows, updates, *decided = entry
        return json.dumps([kind, account, bot, [[oid, scope, side, _text(price), _text(qty)]
                                                for oid, scope, side, price, qty in rows],
                           [update(u) for u in updates], *decided])
    if entry[0] == "m":
        kind, account, bot, rows = entry
        return json.dumps([kind, account, bot, [[oid, new_id, _text(qty), _text(price), side]
                                                for oid, new_id, qty, price, side in rows]])
    kind, account, updates, late = entry
    return json.dumps([kind, account, [update(u) for u in updates], late])


def decode(text: str) -> list[Any]:
    raw = json.loads(text)

    def update(v: list[Any]) -> OrderUpdate:
        return OrderUpdate(str(v[0]), str(v[1]), str(v[2]), _dec(v[3]), _dec(v[4]), Decimal(v[5]), Decimal(v[6]),
                           bool(v[7]), str(v[8]) if len(v) > 8 else "", float(v[9]) if len(v) > 9 else None)
    if raw[0] == "p":
        return ["p", str(raw[1]), str(raw[2]), [(str(r[0]), str(r[1]), str(r[2]), _dec(r[3]), _dec(r[4]))
                                                for r in raw[3]], [update(v) for v in raw[4]],
                *([float(raw[5])] if len(raw) > 5 else [])]
    if raw[0] == "a":
        return ["a", str(raw[1]), [update(v) for v in raw[2]], bool(raw[3])]
    if raw[0] == "m":  # amends: (order id, the id of the order that replaced it, new size, new price, side)
        return ["m", str(raw[1]), str(raw[2]), [(str(r[0]), None if r[1] is None else str(r[1]), _dec(r[2]),
                                                 _dec(r[3]), None if r[4] is None else str(r[4])) for r in raw[3]]]
    raise ValueError(f"unknown book entry kind {raw[0]!r}")


class FleetBook:
    """Each bot's entries are numbered (`bookseq:BOT`, raised with each entry, atomically), and `seen` says how
    far this instance's book has taken each bot's: the gate refuses to charge a position-capped bot's order
    on a book older than the bot's newest entry (fleet/gate.py), and `reach` catches up."""

    def __init__(self, fleet: FleetStore, usage: FleetUsage, book: PositionBook, store: StateStore) -> None:
        self.fleet, self.usage, self.book, self.store = fleet, usage, book, store
        self.instance = secrets.token_hex(8)  # this process's entries, skipped when read back
        self.stream = fleet.key("book")
        saved = json.loads(store.usage_value(LAST_ID) or "{}")
        self.last_id: str = saved.get("id", "0")  # a new instance reads the whole stream
        self.seen: dict[str, int] = {str(k): int(v) for k, v in saved.get("seen", {}).items()}
        self.applied = 0  # entries from other instances applied here (status, tests)
        self._moved = asyncio.Event()  # set after each batch the follower read
        self._client: Any = None  # reach's own (the follower's blocks on its stream read)
        book.mirror = self.publish

    def publish(self, bot: str, entry: list[Any]) -> None:
        self.usage.publish(self.stream, self.fleet.key(f"bookseq:{bot}"),
                           {"i": self.instance, "b": bot, "e": encode(entry)}, STREAM_MAXLEN,
                           lambda n: self._numbered(bot, n))

    def _numbered(self, bot: str, n: int) -> None:
        """Our own entry was written as the bot's `n`th: the book holds it already, and holds every earlier one
        if it held the one before."""
        if self.seen.get(bot, 0) == n - 1:
            self.seen[bot] = n

    async def reach(self, bot: str, n: int, timeout: float = 2.0) -> bool:
        """Until this book holds the bot's entries up to `n`, the bot's newest (False: not within `timeout`).
        Entries the stream no longer keeps (trimmed, older than its newest STREAM_MAXLEN) cannot be waited for:
        once the follower has read everything written before this call, the book is as current as the stream
        can make it, and `n` is taken as held. So is a newest number below the one held: a Redis that lost its
        data numbers each bot's entries anew, and the gate asks for the number exactly (never `held >= n`,
        which would pass every check until the new numbers climbed past the old ones)."""
        before = self.seen.get(bot, 0)
        if before == n:
            return True
        if self._client is None:
            self._client = self.fleet.aio()
        try:
            newest = await self._client.xrevrange(self.stream, count=1)
        except (redis.RedisError, OSError):
            return False
        end = newest[0][0].decode() if newest else "0-0"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.seen.get(bot, 0) != n:
            if _at_or_after(self.last_id, end):
                held = self.seen.get(bot, 0)
                if held == before or held < n:  # never back below what the follower took meanwhile
                    self.seen[bot] = n
                break
            self._moved.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._moved.wait(), max(0.0, deadline - loop.time()))
            if loop.time() >= deadline and self.seen.get(bot, 0) != n and not _at_or_after(self.last_id, end):
                return False
        return True

    async def catch_up(self, bot: str, timeout: float = 2.0) -> bool:
        """Until this book holds the bot's newest entry, whatever the gate last said (an amend of an order placed
        through another instance moments ago: its entry may not be here yet). False: Redis unreachable, or not
        within `timeout`."""
        if self._client is None:
            self._client = self.fleet.aio()
        try:
            newest = await self._client.get(self.fleet.key(f"bookseq:{bot}"))
        except (redis.RedisError, OSError):
            return False
        return await self.reach(bot, int(newest or 0), timeout)

    async def holds_newest(self, timeout: float = SETTLE_S) -> bool:
        """Whether this book holds every entry the stream holds now, waiting up to `timeout` for the follower to
        read them (a cancel-all's wait ends with it: sweeps.py `_settle`). False: not within `timeout`, or Redis
        out of reach (the call itself bounded by `timeout`: a hung Redis cannot hold the cancel-all)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._client is None:
            self._client = self.fleet.aio()
        try:
            async with asyncio.timeout(timeout):
                newest = await self._client.xrevrange(self.stream, count=1)
        except (redis.RedisError, OSError, TimeoutError):
            return False
        target = newest[0][0].decode() if newest else "0-0"
        while not _at_or_after(self.last_id, target):
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return True

    async def run(self) -> None:
        """Apply the other instances' entries as they come, until cancelled; waits out an unreachable Redis."""
        client = self.fleet.aio()
        with contextlib.suppress(redis.RedisError, OSError):
            oldest = await client.xrange(self.stream, count=1)
            if oldest and not _at_or_after(self.last_id, oldest[0][0].decode()) and self.last_id != "0":
                log.error("fleet book: the stream no longer keeps the entries after the last one this instance read "
                          "(it was away for about %d entries or more): orders and fills of that time may be missing "
                          "from its book until their next answer, stream event or reconciliation", STREAM_MAXLEN)
        try:
            while True:
                _cancelled_meanwhile()  # a cancel redis-py swallowed during the last read
                try:
                    got = await client.xread({self.stream: self.last_id}, block=1000, count=500)
                except (redis.RedisError, OSError):
                    _cancelled_meanwhile()
                    await asyncio.sleep(0.5)
                    continue
                for _, entries in got or ():
                    for entry_id, fields in entries:
                        try:
                            self._apply(entry_id.decode(), fields)
                        except Exception as e:  # noqa: BLE001 - one entry the book cannot take must not end the
                            # follower (a book that stops reading refuses every cancel-all on a shared account)
                            log.error("fleet book: an entry could not be applied; skipped",
                                      extra={"entry": entry_id.decode(errors="replace"), "kind": type(e).__name__})
                    self.last_id = entries[-1][0].decode()
                    self.store.set_usage(LAST_ID, json.dumps({"id": self.last_id, "seen": self.seen}))
                self._moved.set()
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.aclose()

    def _apply(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        bot, n = fields.get(b"b", b"").decode(), int(fields.get(b"n", b"0") or 0)
        if fields.get(b"i", b"").decode() != self.instance:
            try:
                entry = decode(fields[b"e"].decode())
            except (KeyError, ValueError, TypeError, IndexError, ArithmeticError):
                log.error("fleet book: an entry that does not parse was skipped", extra={"entry": entry_id})
            else:
                at = int(entry_id.partition("-")[0]) / 1000  # when the other instance published it (Redis's clock)
                self.book.replay(entry, at)
                self.applied += 1
        if bot and n:  # the stream holds each bot's entries in their number's order: the last one read is the newest
            self.seen[bot] = n


def _at_or_after(a: str, b: str) -> bool:
    """Stream ids ("ms-seq") compared as the numbers they are."""
    def parts(x: str) -> tuple[int, int]:
        ms, _, seq = x.partition("-")
        return int(ms or 0), int(seq or 0)
    return parts(a) >= parts(b)
