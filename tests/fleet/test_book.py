"""The fleet's positions book against a real Redis: what one instance learns, every instance's book holds."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from keyproxy.config import SharedStateSettings
from keyproxy.exchanges.base import OrderUpdate
from keyproxy.fleet.book import FleetBook, decode, encode
from keyproxy.fleet.store import FleetStore
from keyproxy.fleet.usage import FleetUsage
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.positions import PositionBook
from keyproxy.state import StateStore

D = Decimal
KEY = b"k" * 32
SCOPE = "spot:BTCUSDT"


def leg(side: str, qty: str, price: str | None) -> RequestFacts:
    return RequestFacts(action="order", symbol="BTCUSDT", market="spot", side=side, quantity=D(qty),
                        price=D(price) if price else None)


def fill(oid: str, filled: str, final: bool = False, side: str = "buy") -> OrderUpdate:
    return OrderUpdate(oid, SCOPE, side, D("100"), D("1"), D(filled), D(filled) * 100, final)


class Instance:
    def __init__(self, shared: SharedStateSettings, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(root / "state.db")
        self.book = PositionBook(self.store, lambda: 1_796_385_600.0)
        fleet = FleetStore(shared, "vault-1", KEY)
        self.usage = FleetUsage(fleet)
        self.fleet_book = FleetBook(fleet, self.usage, self.book, self.store)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.usage.run()), asyncio.create_task(self.fleet_book.run())]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.store.close()


async def settle(*books: PositionBook, until: float = 3.0) -> None:
    """Until every book holds the same orders and positions (or `until` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + until
    while loop.time() < deadline:
        views = [({(a, o): (t.filled, t.final) for a, m in b.orders.items() for o, t in m.items()},
                  {k: p.qty for k, p in b.positions.items()}) for b in books]
        if all(v == views[0] for v in views):
            return
        await asyncio.sleep(0.02)


def test_entries_survive_their_text_form() -> None:
    rows = [("1", SCOPE, "buy", D("100.5"), D("0.001")), ("2", SCOPE, "sell", None, None)]
    entry = ["p", "main", "b1", rows, [fill("1", "0.0005")]]
    assert decode(encode(entry)) == entry
    entry = ["a", "main", [fill("1", "0.001", final=True)], True]
    assert decode(encode(entry)) == entry
    # when the request was decided (the orders' time in every book), when the exchange made an order (Coinbase)
    made = OrderUpdate("1", SCOPE, "buy", None, None, D("0.5"), D("30000"), False, "", 1_796_385_590.25)
    entry = ["p", "main", "b1", rows, [made], 1_796_385_600.5]
    assert decode(encode(entry)) == entry
    assert decode(encode(["a", "main", [made, replace(made, spawned="9")], False]))[2] == [made,
                                                                                          replace(made, spawned="9")]


def test_what_one_instance_learns_every_instances_book_holds(shared: SharedStateSettings, tmp_path: Path) -> None:
    """A's bot buys and fills; B's book holds the order, the position and the resting size; B's crossing check
    sees A's resting order; a fill B learns reaches A; entries seen twice change nothing."""
    async def run() -> None:
        a, b = Instance(shared, tmp_path / "a"), Instance(shared, tmp_path / "b")
        a.start()
        b.start()
        a.book.placed("main", "b1", (leg("BUY", "1", "100"),), ("1",), (fill("1", "0.25"),))
        a.book.placed("main", "maker", (leg("SELL", "2", "110"),), ("2",))
        await settle(a.book, b.book)
        assert b.book.position("b1", SCOPE) == D("0.25")
        assert b.book.open_quantity("main", "b1", SCOPE, "buy") == D("0.75")
        crossed = b.book.crossed("main", "taker", leg("BUY", "1", "111"))
        assert crossed is not None and crossed.order_id == "2" and crossed.bot == "maker"
        b.book.apply("main", [fill("1", "1", final=True)])  # B's bot queried the order: filled whole
        b.book.apply("main", [fill("1", "0.5")])  # an older answer, late: nothing
        await settle(a.book, b.book)
        assert a.book.position("b1", SCOPE) == D("1") == b.book.position("b1", SCOPE)
        assert a.book.open_quantity("main", "b1", SCOPE, "buy") == 0
        assert a.book.fills_since("b1", 0) == b.book.fills_since("b1", 0) == 2
        assert b.fleet_book.applied == 2 and a.fleet_book.applied == 1
        await a.stop()
        await b.stop()

        # B restarts with its state.db: it goes on from the entry it had applied; a third instance, new, reads
        # the whole stream and holds the same book (entries applied twice change nothing)
        b2, c = Instance(shared, tmp_path / "b"), Instance(shared, tmp_path / "c")
        assert b2.book.position("b1", SCOPE) == D("1")
        b2.start()
        c.start()
        await settle(b2.book, c.book)
        assert c.book.position("b1", SCOPE) == D("1") and c.book.crossed("main", "t", leg("BUY", "1", "111"))
        assert b2.fleet_book.applied == 0 and c.fleet_book.applied == 3  # the late answer changed nothing: never sent
        await b2.stop()
        await c.stop()
    asyncio.run(run())


def test_each_bots_entries_are_numbered_and_an_instance_catches_up_to_a_number(shared: SharedStateSettings,
                                                                               tmp_path: Path) -> None:
    """The gate compares a bot's newest entry number with the one this instance's book holds (`seen`): the
    writer's own entries count at once, another's once applied; `reach` waits for one, and takes a number
    whose entries the stream no longer keeps as reached once everything it keeps is read. `seen` survives a
    restart with the stream position it goes with."""
    async def run() -> None:
        a, b = Instance(shared, tmp_path / "a"), Instance(shared, tmp_path / "b")
        a.start()
        b.start()
        for n in range(3):
            a.book.placed("main", "b1", (leg("BUY", "1", "100"),), (f"o{n}",))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while a.fleet_book.seen.get("b1", 0) < 3 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert a.fleet_book.seen["b1"] == 3  # its own, numbered as written
        assert await b.fleet_book.reach("b1", 3)
        assert b.book.open_quantity("main", "b1", SCOPE, "buy") == 3
        a.fleet_book.fleet._redis.set(a.fleet_book.fleet.key("bookseq:old"), 7)  # entries trimmed long ago
        assert await b.fleet_book.reach("old", 7, timeout=3) and b.fleet_book.seen["old"] == 7
        # a Redis that lost its data numbers the bot's entries anew, below what the books hold: the gate asks for
        # the number exactly, and each instance takes the new one once it has read what the stream keeps
        a.fleet_book.fleet._redis.set(a.fleet_book.fleet.key("bookseq:b1"), 1)
        assert b.fleet_book.seen["b1"] == 3 and await b.fleet_book.reach("b1", 1) and b.fleet_book.seen["b1"] == 1
        a.book.placed("main", "b1", (leg("BUY", "1", "100"),), ("o9",))  # numbered 2: B applies it, seen = 2
        deadline = loop.time() + 3
        while b.fleet_book.seen.get("b1") != 2 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert b.fleet_book.seen["b1"] == 2 and b.book.open_quantity("main", "b1", SCOPE, "buy") == 4
        await a.stop()
        await b.stop()
        again = Instance(shared, tmp_path / "b")
        assert again.fleet_book.seen["b1"] == 2 and again.fleet_book.last_id != "0"
        again.store.close()
    asyncio.run(run())


def test_an_instance_catches_its_book_up_to_a_bots_newest_entry_on_demand(shared: SharedStateSettings,
                                                                          tmp_path: Path) -> None:
    """An amend of an order placed through A, arriving at B before A's entry: B reads the bot's newest number
    itself (`catch_up`) and waits for its follower, rather than refusing an order it does not hold yet."""
    async def run() -> None:
        a, b = Instance(shared, tmp_path / "a"), Instance(shared, tmp_path / "b")
        a.start()
        a.book.placed("main", "late", (leg("BUY", "1", "100"),), ("L1",))
        a.book.placed("main", "late", (leg("BUY", "2", "100"),), ("L2",))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while a.fleet_book.seen.get("late", 0) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert "L2" not in b.book.orders.get("main", {})  # B's follower has not run
        b.start()
        assert await b.fleet_book.catch_up("late")
        assert b.fleet_book.seen["late"] == 2 and b.book.open_quantity("main", "late", SCOPE, "buy") == 3
        await a.stop()
        await b.stop()
    asyncio.run(run())
