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
in-flight release, and off the request path. What it does not close yet: orders of one bot sent through two
instances within the few milliseconds an entry takes to reach the other (docs/fleet.md, "Known limits").
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
from keyproxy.fleet.usage import FleetUsage
from keyproxy.proxy.positions import PositionBook
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.fleet")
LAST_ID = "fleet|book_id"  # state.db usage key: the newest stream entry this instance's book has applied
STREAM_MAXLEN = 200_000  # entries kept (Redis trims the oldest, approximately)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode(entry: list[Any]) -> str:
    """A book change as JSON: decimals as text, updates as lists."""
    def update(u: OrderUpdate) -> list[Any]:
        return [u.order_id, u.scope, u.side, _text(u.price), _text(u.quantity), str(u.filled), str(u.filled_quote),
                u.final]
    if entry[0] == "p":
        kind, account, bot, rows, updates = entry
        return json.dumps([kind, account, bot, [[oid, scope, side, _text(price), _text(qty)]
                                                for oid, scope, side, price, qty in rows],
                           [update(u) for u in updates]])
    kind, account, updates, late = entry
    return json.dumps([kind, account, [update(u) for u in updates], late])


def decode(text: str) -> list[Any]:
    raw = json.loads(text)

    def update(v: list[Any]) -> OrderUpdate:
        return OrderUpdate(str(v[0]), str(v[1]), str(v[2]), _dec(v[3]), _dec(v[4]), Decimal(v[5]), Decimal(v[6]),
                           bool(v[7]))
    if raw[0] == "p":
        return ["p", str(raw[1]), str(raw[2]), [(str(r[0]), str(r[1]), str(r[2]), _dec(r[3]), _dec(r[4]))
                                                for r in raw[3]], [update(v) for v in raw[4]]]
    if raw[0] == "a":
        return ["a", str(raw[1]), [update(v) for v in raw[2]], bool(raw[3])]
    raise ValueError(f"unknown book entry kind {raw[0]!r}")


class FleetBook:
    def __init__(self, fleet: FleetStore, usage: FleetUsage, book: PositionBook, store: StateStore) -> None:
        self.fleet, self.usage, self.book, self.store = fleet, usage, book, store
        self.instance = secrets.token_hex(8)  # this process's entries, skipped when read back
        self.stream = fleet.key("book")
        self.last_id = store.usage_items(LAST_ID).get(LAST_ID, "0")  # a new instance reads the whole stream
        self.applied = 0  # entries from other instances applied here (status, tests)
        book.mirror = self.publish

    def publish(self, entry: list[Any]) -> None:
        self.usage.publish(self.stream, {"i": self.instance, "e": encode(entry)}, STREAM_MAXLEN)

    async def run(self) -> None:
        """Apply the other instances' entries as they come, until cancelled; waits out an unreachable Redis."""
        client = self.fleet.aio()
        try:
            while True:
                try:
                    got = await client.xread({self.stream: self.last_id}, block=1000, count=500)
                except (redis.RedisError, OSError):
                    await asyncio.sleep(0.5)
                    continue
                for _, entries in got or ():
                    for entry_id, fields in entries:
                        self._apply(entry_id.decode(), fields)
                    self.last_id = entries[-1][0].decode()
                    self.store.set_usage(LAST_ID, self.last_id)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _apply(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"i", b"").decode() == self.instance:
            return
        try:
            entry = decode(fields[b"e"].decode())
        except (KeyError, ValueError, TypeError, IndexError, ArithmeticError):
            log.error("fleet book: an entry that does not parse was skipped", extra={"entry": entry_id})
            return
        at = int(entry_id.partition("-")[0]) / 1000  # when the other instance published it (Redis's clock)
        self.book.replay(entry, at)
        self.applied += 1
