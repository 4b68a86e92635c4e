"""What the positions book says for one request's orders (`RiskView`), and the order each amend leg changes
(`Amended`), as `decide` reads them: the orders an amend leaves behind are checked as new orders (`amended_leg`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from keyproxy.policy.model import RequestFacts


@dataclass(frozen=True, slots=True)
class RiskView:
    """What the positions book says for one request's orders (proxy/positions.py), read by the core."""

    positions: dict[str, Decimal] = field(default_factory=dict)  # scope -> the bot's position
    open_buy: dict[str, Decimal] = field(default_factory=dict)  # scope -> its resting buys' remaining size
    open_sell: dict[str, Decimal] = field(default_factory=dict)
    crossing: tuple[str | None, ...] = ()  # per leg: the other bot's resting order it would trade against
    loss: str | None = None  # why the bot (or its account) is past its daily loss limit, if it is
    loss_limited: bool = False  # the bot or its account has a daily loss limit
    unread: frozenset[str] = frozenset()  # scopes whose fills keyproxy does not read: no position is known there
    amended: tuple[Amended | None, ...] = ()  # an amend: per leg, the order it changes (None: not in the book)
    shared: frozenset[str] = frozenset()  # scopes where another bot of the account holds a position

    def believes_reduce_only(self, scope: str) -> bool:
        """Whether a reduce-only flag alone makes an order reducing here: the exchange measures it against the
        account's position, which is the bot's own unless another bot holds one in the scope; where no fills are
        read it is the bot's only way out."""
        return scope in self.unread or scope not in self.shared


@dataclass(frozen=True, slots=True)
class Amended:
    """The order an amend leg changes, as the positions book holds it. The open sizes of the `RiskView` leave
    this order out: the amend is checked as the order it leaves behind (`amended_leg`)."""

    own: bool  # the bot's own order: a bot may not amend another bot's (it would move that bot's position)
    scope: str
    side: str
    price: Decimal | None
    remaining: Decimal  # what it may still fill before the amend
    filled: Decimal
    # an amend that names a side may turn the order (Hyperliquid's modify restates the whole order); elsewhere the
    # exchange keeps the order's side whatever the amend says (Binance futures' modify requires a `side`)
    may_turn: bool = False


def retriggered(leg: RequestFacts, booked_price: Decimal | None) -> RequestFacts:
    """An amend leg whose one price is a stop's new trigger (`price_or_trigger`, Kraken's EditOrder, of an order the
    book holds with no price) as that trigger: no price it rests at, it trades at market once it fires (read as a limit
    it crossed nothing and valued a 10 BTC buy at 1 USD: session 32's review); any other leg as it is."""
    if leg.price_or_trigger and booked_price is None and leg.price is not None:
        return replace(leg, price=None, trigger_price=leg.price)
    return leg


def amended_leg(leg: RequestFacts, order: Amended) -> RequestFacts | None:
    """The order an amend leaves behind, as a new order of what it may still fill (its market from the book,
    its side from the amend where the exchange lets an amend turn it (`may_turn`), else the book's; its new size
    and price from the amend, a price the exchange sets from the book (`book_priced`) as a market order's); None
    when the new size cannot be read. A new size is the order's whole size, what it filled included (as every
    exchange keyproxy knows reads it)."""
    if leg.quantity is None and leg.quote_quantity is not None:
        return None
    remaining = order.remaining if leg.quantity is None else max(Decimal(0), leg.quantity - order.filled)
    market, _, symbol = order.scope.partition(":")
    # a modify that names a side may turn the order only where the exchange reads it so (Hyperliquid's); elsewhere
    # the order keeps its side, and an amend naming another is refused by `decide` (session 35's review: Binance
    # futures' modify of a resting buy with side=SELL was checked as a sell, passing max_position and the loss
    # limit, while the exchange raised the buy)
    side = ((leg.side or "").lower() if order.may_turn else "") or order.side
    leg = retriggered(leg, order.price)
    return replace(leg, action="order", side=side, market=None if market == "*" else market,
                   symbol=None if symbol == "*" else symbol, quantity=remaining, quote_quantity=None,
                   price=leg.price if leg.price is not None or leg.book_priced else order.price, orders=())
