"""Each bot's positions, from fills the exchange confirmed (docs/risk.md).

An order enters the book when the exchange accepts it from a bot (its id from the answer, its side, price
and size from the request keyproxy decided); it moves the bot's position only by what the exchange later
reports filled (`OrderUpdate`: an order, query or cancel answer, a user-stream event, keyproxy's own
reconciliation read). Fills are cumulative per order, so an answer seen twice or late never counts twice.
An order keyproxy did not see placed (another tool, another key) is never any bot's.

Per bot and scope (`market:symbol`) the book keeps the position (base units, or contracts where the
exchange counts contracts) and today's flows (UTC day): the quantity and the quote currency bought minus
sold. The day's P&L at price `p` is `qty * p - start_qty * mark - cash`, with `start_qty` the position the
day began with and `mark` the price keyproxy held when the day rolled over (realized and unrealized
together; fees are not counted). Written through to state.db, orders and positions in one transaction.
"""

from __future__ import annotations

import functools
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import OrderUpdate
from keyproxy.policy.model import RequestFacts
from keyproxy.state import StateStore

MAX_ORDERS = 20_000  # per account; the oldest finished orders are forgotten first
MAX_FILL_TIMES = 10_001  # per bot: more than any max_fills_per_minute
# an update about an order the book does not hold yet is kept this long, in case the order's placement is still
# on its way (a user-stream fill often beats the order's own answer; in a fleet, the placing instance's entry)
HOLD_S = 30.0
MAX_HELD = 10_000
# an order the exchange says it created more than this before the request naming it was decided is not that
# request's (`PositionBook._foreign`): room for the exchange's clock and this host's (`keyproxy doctor` warns past
# 1 s) and for a bot's retry of its own create after a timeout (Coinbase answers it with the order made first). An
# order keyproxy saw reported is refused at the decision instead (`OrderOwners.learn_outside`): this is for those it
# never saw (made before keyproxy, or listed in an answer too large to read)
CREATED_SLACK_S = 60.0
# an amend the exchange accepted: (order id, the id of the order that replaced it, new size, new price, side)
AmendRow = tuple[str, str | None, Decimal | None, Decimal | None, str | None]
ZERO = Decimal(0)
log = logging.getLogger("keyproxy.risk")


@functools.lru_cache(maxsize=8)
def _day_name(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def utc_day(now: float) -> str:
    return _day_name(int(now // 86_400))


@dataclass(slots=True)
class TrackedOrder:
    account: str
    order_id: str
    bot: str
    scope: str
    side: str  # "buy" | "sell"
    price: Decimal | None
    quantity: Decimal | None
    filled: Decimal
    filled_quote: Decimal
    final: bool
    ts: float
    # ended because its fills reached its size, not because the exchange said so: an amend the exchange took
    # (a fill of the larger size can arrive before the amend's answer) may reopen it; stored as final = 2
    filled_out: bool = False

    @property
    def remaining(self) -> Decimal:
        return ZERO if self.final or self.quantity is None else max(ZERO, self.quantity - self.filled)

    def row(self) -> tuple[object, ...]:
        return (self.account, self.order_id, self.bot, self.scope, self.side, _text(self.price), _text(self.quantity),
                str(self.filled), str(self.filled_quote), 2 if self.final and self.filled_out else int(self.final),
                self.ts)


@dataclass(slots=True)
class Position:
    account: str
    qty: Decimal = ZERO
    day: str = ""
    day_qty: Decimal = ZERO  # bought minus sold today
    day_cash: Decimal = ZERO  # quote paid minus received today
    day_mark: Decimal | None = None  # the price when the day began (values the position it began with)

    def roll(self, day: str, mark: Decimal | None) -> None:
        if self.day != day:
            self.day, self.day_qty, self.day_cash, self.day_mark = day, ZERO, ZERO, mark

    def pnl(self, price: Decimal | None) -> Decimal | None:
        """Today's P&L at `price`; None when a position is held and no price is known."""
        if self.qty == 0 and self.day_qty == 0:
            return -self.day_cash
        if price is None:
            return None
        start = self.qty - self.day_qty
        mark = self.day_mark if self.day_mark is not None else price
        return self.qty * price - start * mark - self.day_cash


def book_id(order_id: str, scope: str) -> str:
    """The book's key of an order whose exchange numbers orders per market and symbol (Binance): its id and
    scope, so order 500 on ETHUSDT is never taken for order 500 on BTCUSDT. "" stays "" (no order)."""
    return f"{order_id}@{scope}" if order_id else ""


def _bare(book: dict[str, TrackedOrder], key: str) -> TrackedOrder | None:
    """The order a `book_id` key names, booked under its bare id before keys carried the scope: same scope only."""
    order_id, keyed, scope = key.partition("@")
    order = book.get(order_id) if keyed else None
    return order if order is not None and order.scope == scope else None


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class PositionBook:
    """Orders keyproxy saw placed, with their confirmed fills; positions per bot and scope."""

    def __init__(self, store: StateStore | None, clock: Callable[[], float],
                 price: Callable[[str, str], Decimal | None] = lambda account, scope: None) -> None:
        self._store = store
        self._clock = clock
        self._price = price  # the last price keyproxy saw for (account, scope): the day's opening mark
        self.orders: dict[str, dict[str, TrackedOrder]] = {}  # account -> order id -> order (oldest first)
        self.positions: dict[tuple[str, str], Position] = {}  # (bot, scope) -> position
        self._live: dict[tuple[str, str], dict[str, TrackedOrder]] = {}  # (account, scope) -> orders not finished
        # kept as orders change, never recounted (a bot's every order would cost a walk over all resting ones):
        # (account, scope) -> (bot, side) -> what its live orders may still fill
        self._resting: dict[tuple[str, str], dict[tuple[str, str], Decimal]] = {}
        # (account, scope) -> bot -> its live sells' (price, id) as a min-heap, and its live buys' (-price, id):
        # each bot's best on each side, so a crossing check costs one look per bot however many orders rest (a
        # bot resting thousands of orders at one price must not make every other order walk them); an entry
        # whose order finished is dropped when it reaches the top, or when a heap outgrows the live orders
        self._asks: dict[tuple[str, str], dict[str, list[tuple[Decimal, str]]]] = {}
        self._bids: dict[tuple[str, str], dict[str, list[tuple[Decimal, str]]]] = {}
        self._finished: dict[str, dict[str, None]] = {}  # account -> ids of finished orders, oldest first
        self._by_bot: dict[str, set[str]] = {}  # bot -> scopes it holds a position record in
        self.learned_late = 0  # fills learned from reconciliation that no answer had shown (metrics)
        # a fleet (fleet/book.py): every change this instance learns is handed on, so every instance's book holds
        # every bot's orders and positions
        self.mirror: Callable[[str, list[Any]], None] | None = None  # (the bot whose orders it names, the change)
        self.fill_times: dict[str, deque[float]] = {}  # bot -> when keyproxy learned each of its fills (newest last)
        # (account, order id) -> (kept until, the update, learned late): about orders not (yet) in the book
        self._held: dict[tuple[str, str], tuple[float, OrderUpdate, bool]] = {}
        # (account, bot, scope, the book's id): an order a triggered conditional order became (`OrderUpdate.spawned`),
        # booked here as its bot's; the hook puts it on record as the bot's (proxy/risk.py)
        self.on_spawn: Callable[[str, str, str, str], None] | None = None
        # (account, the conditional order's id, what it became, scope): the same of an order the book does not hold
        # (a market whose fills keyproxy does not read: OKX swaps): the record still makes it its placer's
        self.on_spawn_unbooked: Callable[[str, str, str, str], None] | None = None
        # (account, bot, scope, the book's id, still live): an order booked as the bot's that the exchange made before
        # the bot's request (`_foreign`): the hook takes it off the bot's record (proxy/order_owners.py)
        self.on_disown: Callable[[str, str, str, str, bool], None] | None = None
        if store is not None:
            orders, positions = store.risk_rows()
            for a, oid, bot, scope, side, price, qty, filled, quote, final, ts in orders:
                self.orders.setdefault(str(a), {})[str(oid)] = TrackedOrder(
                    str(a), str(oid), str(bot), str(scope), str(side), _dec(price), _dec(qty), Decimal(str(filled)),
                    Decimal(str(quote)), bool(final), float(ts), final == 2)  # type: ignore[arg-type]
            for book in self.orders.values():
                for order in book.values():
                    if order.final:
                        self._finished.setdefault(order.account, {})[order.order_id] = None
                    else:
                        self._go_live(order)
            for bot, scope, a, qty, day, day_qty, day_cash, mark in positions:
                self._by_bot.setdefault(str(bot), set()).add(str(scope))
                self.positions[(str(bot), str(scope))] = Position(
                    str(a), Decimal(str(qty)), str(day), Decimal(str(day_qty)), Decimal(str(day_cash)), _dec(mark))

    # --- what the exchange confirmed ----------------------------------------------------------------

    def placed(self, account: str, bot: str, legs: tuple[RequestFacts, ...], order_ids: tuple[str, ...],
               updates: tuple[OrderUpdate, ...] = (), decided: float | None = None) -> None:
        """Orders the exchange accepted from `bot` (ids in the order of the request's legs), then what the
        same answer says they filled. `decided`: when the request was decided (the orders' time, `_foreign`)."""
        rows = [(oid, leg.scope, leg.side.lower(), leg.price, leg.quantity)
                for leg, oid in zip(legs, order_ids, strict=False) if oid and leg.side]
        at = self._clock() if decided is None else decided
        placed, changed = self._place(account, bot, rows, updates, at)
        if self.mirror is not None and (placed or changed):
            self.mirror(bot, ["p", account, bot, [r for r in rows if r[0] in placed],
                              [u for b, u in changed if b == bot], at])
            self._publish(account, [(b, u) for b, u in changed if b != bot], False)

    def find(self, account: str, order_id: str, scope: str, keyed: bool) -> TrackedOrder | None:
        """The order the book holds under an exchange's id; `keyed`: ids are per market (`book_id`), and an order
        booked before its key carried the scope is found by its bare id, in that scope only."""
        book = self.orders.get(account, {})
        if not keyed:
            return book.get(order_id)
        key = book_id(order_id, scope)
        order = book.get(key)
        return order if order is not None else _bare(book, key)

    def apply(self, account: str, updates: Iterable[OrderUpdate], late: bool = False) -> set[str]:
        """Fills and ends of orders the book holds; the bots whose position moved."""
        moved, changed = self._apply(account, updates, late, self._clock(), hold=True)
        self._publish(account, changed, late)
        return moved

    def amend(self, account: str, bot: str, rows: list[AmendRow]) -> None:
        """The bot's amends the exchange accepted: (order id, the id of the order that replaced it or None, the
        size it now asks for, its new price, its side; None: unchanged). RiskDesk decides what to believe. An
        order whose side changed (a Hyperliquid modify may turn one) moves from one side to the other."""
        changed, held = self._amend(account, bot, rows, self._clock())
        if changed and self.mirror is not None:
            self.mirror(bot, ["m", account, bot, rows])
        self._publish(account, held, False)

    def _amend(self, account: str, bot: str, rows: list[AmendRow], at: float
               ) -> tuple[bool, list[tuple[str, OrderUpdate]]]:
        """(whether an order changed, (bot, update) for each update held for a replacing order and now applied:
        what a fleet shares)."""
        book = self.orders.get(account, {})
        changed: list[TrackedOrder] = []
        replacing: list[str] = []
        for oid, new_id, quantity, price, side in rows:
            order = book.get(oid)
            if order is None or order.bot != bot:
                continue
            if new_id is not None:  # replaced: the old one rests no longer, the new one rests in its place
                if not order.final:
                    before = order.remaining
                    self._end(order)
                    self._add_resting(order, order.remaining - before)
                    changed.append(order)
                if new_id not in book:  # an amend that gave no size (a Kraken EditOrder of the price) keeps the old
                    new = TrackedOrder(account, new_id, bot, order.scope, side or order.side,
                                       price if price is not None else order.price,
                                       quantity if quantity is not None else order.quantity, ZERO, ZERO, False, at)
                    book[new_id] = new
                    self._go_live(new)
                    changed.append(new)
                    replacing.append(new_id)
                continue
            if order.final and not self._reopens(order, quantity):
                continue
            if order.final:
                self._reopen(order)
            before = order.remaining
            if side is not None and side != order.side:  # turned in place: off one side, onto the other
                self._add_resting(order, -before)
                order.side, before = side, ZERO
                self._push(order)
            if quantity is not None and quantity != order.quantity:
                order.quantity = quantity
            if price is not None and price != order.price:
                order.price = price
                self._push(order)  # at its new price (the entry at the old one is dropped: `_top`)
            if order.quantity is not None and order.filled >= order.quantity > 0:
                self._end(order, filled_out=True)
            self._add_resting(order, order.remaining - before)
            changed.append(order)
        if changed:
            self._save(changed, [], self._bound(account))
        held = [h[1] for oid in replacing if (h := self._held.pop((account, oid), None)) is not None]
        return bool(changed), self._apply(account, held, False, at)[1] if held else []

    def _publish(self, account: str, changed: list[tuple[str, OrderUpdate]], late: bool) -> None:
        if self.mirror is not None and changed:
            for bot in dict.fromkeys(b for b, _ in changed):  # one entry per bot: each bot's entries are counted
                self.mirror(bot, ["a", account, [u for b, u in changed if b == bot], late])

    def replay(self, entry: list[Any], at: float) -> None:
        """What another instance of a fleet learned (fleet/book.py), as it learned it at `at`: the same
        changes, not published again. Idempotent: an order already held is not placed twice, fills are
        cumulative."""
        if entry[0] == "p":  # as of when the placing instance decided the request (entries before session 33: `at`)
            _, changed = self._place(entry[1], entry[2], entry[3], entry[4], entry[5] if len(entry) > 5 else at)
            mine = [(b, u) for b, u in changed if u not in entry[4]]  # what this instance held for these orders
            self._publish(entry[1], mine, False)
        elif entry[0] == "a":
            self._apply(entry[1], entry[2], bool(entry[3]), at)
        elif entry[0] == "m":
            self._publish(entry[1], self._amend(entry[1], entry[2], entry[3], at)[1], False)

    def _place(self, account: str, bot: str, rows: list[tuple[str, str, str, Decimal | None, Decimal | None]],
               updates: Iterable[OrderUpdate], at: float) -> tuple[set[str], list[tuple[str, OrderUpdate]]]:
        book = self.orders.setdefault(account, {})
        placed = []
        for oid, scope, side, price, quantity in rows:
            if oid in book:
                continue
            order = TrackedOrder(account, oid, bot, scope, side, price, quantity, ZERO, ZERO, False, at)
            book[oid] = order
            self._go_live(order)
            placed.append(order)
        held = [h[1] for o in placed if (h := self._held.pop((account, o.order_id), None)) is not None]
        updates = [*updates, *held]  # what a stream said of these orders before their placement reached the book
        _, changed = self._apply(account, updates, False, at, placed)  # one transaction: placement and fills
        return {o.order_id for o in placed}, changed

    def _apply(self, account: str, updates: Iterable[OrderUpdate], late: bool, at: float,
               placed: list[TrackedOrder] | None = None, hold: bool = False
               ) -> tuple[set[str], list[tuple[str, OrderUpdate]]]:
        """(the bots whose position moved, (bot, update) for each update that changed an order: what a fleet
        shares). `hold`: an update about an order not in the book is kept for HOLD_S (`_place` applies it)."""
        book = self.orders.get(account)
        orders: list[TrackedOrder] = list(placed or [])
        positions: dict[tuple[str, str], Position] = {}
        moved: set[str] = set()
        used: list[tuple[str, OrderUpdate]] = []
        spawned: list[TrackedOrder] = []
        dropped: list[tuple[str, str]] = []
        day = utc_day(at)
        for u in updates:
            order = book.get(u.order_id) if book else None
            if order is None and book:  # booked under its bare id (before `book_id`), in the update's scope
                order = _bare(book, u.order_id)
            if order is None and u.spawned and self.on_spawn_unbooked is not None:
                self.on_spawn_unbooked(account, u.order_id, u.spawned, u.scope)
            if order is None and hold and u.order_id:
                self._hold(account, u, late, at)
                continue
            if order is None or (u.scope and order.scope != u.scope):
                continue  # not keyproxy's, or an answer about another market under the same id
            if self._foreign(order, u):
                self._disown(order, dropped)
                used.append((order.bot, u))  # a fleet's other books drop it too (the same rule, the same times)
                continue
            fill, cash = u.filled - order.filled, u.filled_quote - order.filled_quote
            changed, before = False, order.remaining
            if u.side and u.side != order.side:  # the exchange's word on which side it rests (a modify turned it)
                self._add_resting(order, -before)
                order.side, before, changed = u.side, ZERO, True
                if not order.final:
                    self._push(order)
            if fill > 0:
                sign = 1 if order.side == "buy" else -1
                key = (order.bot, order.scope)
                position = self.positions.get(key) or Position(account)
                if day >= position.day:
                    position.roll(day, self._price(account, order.scope))
                position.qty += sign * fill
                if day == position.day:  # a fill another instance learned before midnight is not today's
                    position.day_qty += sign * fill
                    position.day_cash += sign * max(cash, ZERO)
                self.positions[key] = position
                self._by_bot.setdefault(order.bot, set()).add(order.scope)
                positions[key] = position
                order.filled, order.filled_quote = u.filled, max(u.filled_quote, order.filled_quote)
                moved.add(order.bot)
                self.learned_late += int(late)
                self.fill_times.setdefault(order.bot, deque(maxlen=MAX_FILL_TIMES)).append(at)
                changed = True
            if u.quantity is not None and (order.quantity is None or u.quantity > order.quantity):
                order.quantity, changed = u.quantity, True  # the size the exchange states, never less than held
                if not u.final and self._reopens(order, order.quantity):
                    self._reopen(order)  # it rested at 0 (`before`), and rests its remaining size now
            if u.final and order.final and order.filled_out:
                order.filled_out, changed = False, True  # the exchange said so now
            elif (u.final or (order.quantity is not None and order.filled >= order.quantity > 0)) and not order.final:
                self._end(order, filled_out=not u.final)  # ended, or filled whole (a fills list never says "done")
                changed = True
            if u.spawned and book is not None and u.spawned not in book:
                # what a triggered conditional order became: its bot's, at its side and size (its fills from now on)
                child = TrackedOrder(account, u.spawned, order.bot, order.scope, order.side, u.price, order.quantity,
                                     ZERO, ZERO, False, order.ts)  # as old as its parent: asked about in its turn
                book[u.spawned] = child
                self._go_live(child)
                spawned.append(child)
                changed = True
            if changed:
                used.append((order.bot, u))
                if order not in orders:
                    orders.append(order)
                self._add_resting(order, order.remaining - before)
        orders += spawned
        if orders or dropped:
            orders = [o for o in orders if (o.account, o.order_id) not in dropped]
            self._save(orders, [self._position_row(k, p) for k, p in positions.items()],
                       dropped + self._bound(account))
        for child in spawned:
            if self.on_spawn is not None:
                self.on_spawn(account, child.bot, child.scope, child.order_id)
            held = self._held.pop((account, child.order_id), None)  # what was said of it before it was known
            if held is not None:
                more, also = self._apply(account, [held[1]], late or held[2], at)
                moved |= more
                used += also
        return moved, used

    @staticmethod
    def _foreign(order: TrackedOrder, u: OrderUpdate) -> bool:
        """The exchange made this order before the request that booked it was decided (past CREATED_SLACK_S):
        Coinbase answers a create reusing a `client_order_id` with the order that holds it, so a bot
        naming the client id of an order placed outside keyproxy (the operator's) got it booked as its own, and
        that order's fills counted as the bot's position (session 32's review: a 0.05 BTC cap, 0.5 BTC sold as
        "reducing")."""
        return u.created is not None and u.created < order.ts - CREATED_SLACK_S

    def _disown(self, order: TrackedOrder, dropped: list[tuple[str, str]]) -> None:
        """An order that was never the bot's leaves the book, none of its fills counted; its owner record goes
        with it (`on_disown`): a halt of the bot must not cancel it."""
        self._add_resting(order, -order.remaining)  # (before `remaining` reads it ended)
        self._live.get((order.account, order.scope), {}).pop(order.order_id, None)
        self._finished.get(order.account, {}).pop(order.order_id, None)
        self.orders.get(order.account, {}).pop(order.order_id, None)
        dropped.append((order.account, order.order_id))
        log.warning("an order the exchange made before the request that named it was decided is not the bot's "
                    "(a client id reused): it left the book, none of its fills counted",
                    extra={"account": order.account, "bot": order.bot, "order_id": order.order_id[:64]})
        if self.on_disown is not None:
            self.on_disown(order.account, order.bot, order.scope, order.order_id, not order.final)

    def _end(self, order: TrackedOrder, filled_out: bool = False) -> None:
        """The order rests no longer (the caller adjusts the resting size it had)."""
        order.final, order.filled_out = True, filled_out
        self._live.get((order.account, order.scope), {}).pop(order.order_id, None)
        self._finished.setdefault(order.account, {})[order.order_id] = None

    @staticmethod
    def _reopens(order: TrackedOrder, size: Decimal | None) -> bool:
        """An order ended only by keyproxy's reckoning (it filled the size keyproxy held) that the exchange now
        states, or took an amend to, at a larger size: it rests again."""
        return order.final and order.filled_out and size is not None and size > order.filled

    def _reopen(self, order: TrackedOrder) -> None:
        """An order ended only by keyproxy's reckoning rests again (its remaining size is 0 until the caller
        gives it more, and the caller adds what it rests)."""
        order.final, order.filled_out = False, False
        self._finished.get(order.account, {}).pop(order.order_id, None)
        self._live.setdefault((order.account, order.scope), {})[order.order_id] = order
        self._push(order)

    def _hold(self, account: str, u: OrderUpdate, late: bool, at: float) -> None:
        """An update about an order not in the book: kept, merged per order (the larger fill, ended if any said
        so), until its placement arrives or HOLD_S passes. An order keyproxy never sees placed stays nobody's."""
        held = self._held
        while held and (len(held) >= MAX_HELD or next(iter(held.values()))[0] < at):
            del held[next(iter(held))]  # the oldest first (dicts keep insertion order)
        prior = held.pop((account, u.order_id), None)
        if prior is not None:  # the larger fill (cumulative), and ended if either said so (they come in any order)
            larger = u if u.filled >= prior[1].filled else prior[1]
            # and what a conditional order became, whichever said it (session 29's review: a later, staler update
            # merged over a TRIGGERED one ended the order with no child)
            u = replace(larger, final=u.final or prior[1].final, spawned=u.spawned or prior[1].spawned)
        held[(account, u.order_id)] = (at + HOLD_S, u, late or (prior is not None and prior[2]))

    def _bound(self, account: str) -> list[tuple[str, str]]:
        book, finished = self.orders.get(account, {}), self._finished.get(account, {})
        dropped = []
        while len(book) > MAX_ORDERS and finished:
            oid = next(iter(finished))
            del finished[oid]
            if book.pop(oid, None) is not None:
                dropped.append((account, oid))
        return dropped

    def _go_live(self, order: TrackedOrder) -> None:
        key = (order.account, order.scope)
        self._live.setdefault(key, {})[order.order_id] = order
        self._add_resting(order, order.remaining)
        self._push(order)

    def _push(self, order: TrackedOrder) -> None:
        """The order's price on its bot's side of the scope (the crossing check's heaps)."""
        key = (order.account, order.scope)
        if order.price is not None and order.side in ("buy", "sell"):
            heaps = self._asks if order.side == "sell" else self._bids
            heap = heaps.setdefault(key, {}).setdefault(order.bot, [])
            heapq.heappush(heap, (order.price if order.side == "sell" else -order.price, order.order_id))
            live = self._live[key]
            if len(heap) > 2 * len(live) + 64:  # finished orders (or old prices) buried under a live best
                heap[:] = [entry for entry in heap if self._current(entry, live)]
                heapq.heapify(heap)

    @staticmethod
    def _current(entry: tuple[Decimal, str], live: dict[str, TrackedOrder]) -> bool:
        """A heap entry that names a live order at the price it rests at now."""
        o = live.get(entry[1])
        return o is not None and o.price is not None and entry[0] == (o.price if o.side == "sell" else -o.price)

    def _add_resting(self, order: TrackedOrder, delta: Decimal) -> None:
        if delta:
            resting = self._resting.setdefault((order.account, order.scope), {})
            resting[(order.bot, order.side)] = resting.get((order.bot, order.side), ZERO) + delta

    @staticmethod
    def _top(heap: list[tuple[Decimal, str]], live: dict[str, TrackedOrder]) -> TrackedOrder | None:
        """The best live order of one bot's side (finished ones, and old prices, are dropped on the way)."""
        while heap and not PositionBook._current(heap[0], live):
            heapq.heappop(heap)  # finished, or an entry of a price the order was amended away from
        return live[heap[0][1]] if heap else None

    def _save(self, orders: list[TrackedOrder], positions: list[tuple[object, ...]],
              dropped: list[tuple[str, str]]) -> None:
        if self._store is not None and (orders or positions or dropped):
            self._store.save_risk([o.row() for o in orders], positions, dropped)

    @staticmethod
    def _position_row(key: tuple[str, str], p: Position) -> tuple[object, ...]:
        return (key[0], key[1], p.account, str(p.qty), p.day, str(p.day_qty), str(p.day_cash), _text(p.day_mark))

    # --- reading -----------------------------------------------------------------------------------

    def scopes_of(self, bot: str) -> tuple[str, ...]:
        """The scopes the bot holds a position record in."""
        return tuple(self._by_bot.get(bot, ()))

    def position(self, bot: str, scope: str) -> Decimal:
        p = self.positions.get((bot, scope))
        return p.qty if p is not None else ZERO

    def open_quantity(self, account: str, bot: str, scope: str, side: str) -> Decimal:
        """What the bot's resting orders on one side of one scope may still fill."""
        return self._resting.get((account, scope), {}).get((bot, side), ZERO)

    def crossed(self, account: str, bot: str, leg: RequestFacts, markets: tuple[str, ...] = ()) -> TrackedOrder | None:
        """Another bot's resting order on the same account that this order would trade against: a buy at or
        above its sell's price (a market buy: any sell), a sell at or below its buy's price. `markets`: every
        market whose orders meet in one order book with the leg's (Binance's spot, cross, isolated and
        portfolio-margin margin orders trade on the spot book: `Adapter.stream_markets`); none: the leg's own."""
        side = (leg.side or "").lower()
        if side not in ("buy", "sell"):
            return None
        symbol = leg.scope.partition(":")[2]
        for scope in (f"{m}:{symbol}" for m in markets) if markets else (leg.scope,):
            key = (account, scope)
            live = self._live.get(key, {})
            opposite = (self._asks if side == "buy" else self._bids).get(key, {})
            for other in [b for b in opposite if b != bot]:
                best = self._top(opposite[other], live)
                if best is None:
                    del opposite[other]
                elif (leg.price is None or (side == "buy" and leg.price >= best.price)
                      or (side == "sell" and leg.price <= best.price)):
                    return best
        return None

    def day_pnl(self, bot: str, price: Callable[[str, str], Decimal | None]) -> tuple[Decimal, list[str]]:
        """The bot's P&L today over every scope it traded, and the scopes it could not value (no price)."""
        today = utc_day(self._clock())
        total, unpriced = ZERO, []
        for scope in self._by_bot.get(bot, ()):
            p = self.positions[(bot, scope)]
            if p.day != today:
                p.roll(today, price(p.account, scope))
            value = p.pnl(price(p.account, scope))
            if value is None:
                unpriced.append(scope)
            else:
                total += value
        return total, unpriced

    def fills_since(self, bot: str, since: float) -> int:
        times = self.fill_times.get(bot)
        if not times:
            return 0
        while times and times[0] < since - 3600:
            times.popleft()
        return sum(1 for t in times if t >= since)

    def others_hold(self, account: str, bot: str, scope: str) -> bool:
        """Another bot's position in `scope` of `account`: a reduce-only order there, which the exchange measures
        against the account's position, could close it (`RiskView.shared`; read only for reduce-only legs)."""
        return any(p.qty and p.account == account and name != bot and where == scope
                   for (name, where), p in self.positions.items())

    def bots_of(self, account: str) -> set[str]:
        return {bot for (bot, _), p in self.positions.items() if p.account == account}

    def others_live(self, account: str, scope: str, bot: str) -> str | None:
        """Another bot's order resting in `scope` (`market:symbol`; `*` matches any), if the book holds one: a
        cancel-all there would cancel it. Its owner's name, else None."""
        market, _, symbol = scope.partition(":")
        for (name, where), live in self._live.items():
            if name != account or not live:
                continue
            m, _, s = where.partition(":")
            if market not in ("*", m) or symbol not in ("*", s):
                continue
            other = next((o.bot for o in live.values() if o.bot != bot), None)
            if other is not None:
                return other
        return None

    def live_orders(self, account: str, scope: str) -> list[tuple[str, float]]:
        """The orders of `scope` not known to be finished: (the book's id, when placed), oldest first."""
        return sorted(((o.order_id, o.ts) for o in self._live.get((account, scope), {}).values()), key=lambda x: x[1])

    def live_scopes(self, account: str) -> dict[str, float]:
        """Scopes with orders not known to be finished, and the oldest such order's time (reconciliation)."""
        out: dict[str, float] = {}
        for (name, scope), live in self._live.items():
            if name == account and live:
                out[scope] = min(o.ts for o in live.values())
        return out
