"""The risk desk: the positions book fed from answers and streams, and what the decision needs from it.

`view` gives the pure decision (`policy.decide`) a request's `RiskView`: the bot's positions and resting
sizes for the request's scopes, another bot's order each leg would cross, and whether the bot or its
account is past its daily loss limit. `learn` / `learn_stream` put what the exchange confirmed into the
book (proxy/positions.py). The risk watch (proxy/risk_watch.py) latches a crossed limit for the day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal

from keyproxy.exchanges.base import Adapter, OrderUpdate, OutboundRequest
from keyproxy.policy.decide import Amended, RiskView, amended_leg, retriggered
from keyproxy.policy.valuation import order_size, worst_price
from keyproxy.policy.model import AccountLimits, BotPolicy, RequestFacts
from keyproxy.proxy.markets import MarketBook
from keyproxy.proxy.positions import ZERO, PositionBook, book_id, utc_day
from keyproxy.proxy.registry import BotEntry
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.risk")
MAX_CLIENT_IDS = 50_000  # client ids remembered for cancels by client id (beyond: the oldest forgotten)


class RiskDesk:
    def __init__(self, store: StateStore | None, markets: MarketBook, clock: Callable[[], float]) -> None:
        self.markets = markets
        self.clock = clock
        self.book = PositionBook(store, clock, self.scope_price)
        self.loss_hits: dict[str, str] = {}  # "bot:NAME" / "account:NAME" -> the UTC day its loss limit was hit
        self._unreadable: set[str] = set()  # accounts whose unreadable order answer was logged
        # (account, client id) -> the book's id of the order placed under it (a cancel by client id, whose answer
        # names no order, frees it: `Adapter.cancelled_client_ids`); this run's orders, the latest MAX_CLIENT_IDS
        self._by_client: dict[tuple[str, str], str] = {}

    def scope_price(self, account: str, scope: str) -> Decimal | None:
        """The last price keyproxy saw for a scope's symbol (marks positions)."""
        return self.markets.prices.get((account, scope.partition(":")[2]))

    # --- the decision's view ---------------------------------------------------------------------------

    def view(self, account: str, bot: BotEntry, limits: AccountLimits | None, facts: RequestFacts,
             now: float, adapter: Adapter | None = None, others_trade: bool = False) -> RiskView:
        """`adapter`: the account's REST adapter (whose `fill_markets` say where positions are known). An
        amend is seen as the order it leaves behind (`amended_leg`), its order's own size left out of the
        resting ones. `others_trade`: another bot of the account may place orders, so a position may be built
        in any scope while this request's reduce-only orders rest (`RiskView.shared`)."""
        name, book, policy = bot.info.name, self.book, bot.policy
        amended = self.amended(account, name, facts, adapter)
        legs = self.sized_legs(facts, amended)
        scopes = {leg.scope for leg in legs}
        crossing: tuple[str | None, ...] = ()
        if facts.action in ("order", "amend") and not policy.allow_self_cross:
            books = adapter.stream_markets if adapter is not None else {}
            crossing = tuple(o.order_id if (o := book.crossed(account, name, leg, _one_book(books, leg.market)))
                             is not None else None
                             for leg in legs)
        loss_limited = policy.loss_limited(limits)
        # resting sizes: for the caps, and for what "reduces" means (a sell beyond what resting sells leave)
        sized = policy.position_capped or loss_limited
        fill_markets = adapter.fill_markets if adapter is not None else frozenset()
        open_buy: dict[str, Decimal] = {}
        open_sell: dict[str, Decimal] = {}
        if sized:
            open_buy = {s: book.open_quantity(account, name, s, "buy") for s in scopes}
            open_sell = {s: book.open_quantity(account, name, s, "sell") for s in scopes}
            named: set[str | None] = set()
            for leg, order in zip(facts.placed(), amended, strict=False):  # each amended order counts as what
                if order is not None and order.own and leg.order_id not in named:  # it leaves behind, once
                    named.add(leg.order_id)
                    side = open_buy if order.side == "buy" else open_sell
                    if order.scope in side:
                        side[order.scope] -= order.remaining
        return RiskView(
            loss_limited=loss_limited,
            unread=frozenset(leg.scope for leg in legs if leg.market not in fill_markets),
            # a resting reduce-only order is measured by the exchange against the account's position when it fills,
            # not when it is placed: where another bot may build one meanwhile, the flag is no proof (session 25's
            # review: a capped bot holding nothing rested a reduce-only sell, another bot bought after, and the
            # sell closed that long and booked the capped bot short 99 times its cap)
            shared=frozenset(leg.scope for leg in legs
                             if leg.reduce_only and (others_trade or book.others_hold(account, name, leg.scope))),
            positions={s: book.position(name, s) for s in scopes},
            open_buy=open_buy, open_sell=open_sell, crossing=crossing, amended=amended,
            loss=self.loss_reason(account, bot, limits, now))

    def amended(self, account: str, bot: str, facts: RequestFacts, adapter: Adapter | None = None
                ) -> tuple[Amended | None, ...]:
        """An amend: per leg, the order it names as the book holds it (None: not there, or in another market
        than the amend names: Binance numbers orders per symbol). Where the adapter reads an amend's size as
        what rests after it (Hyperliquid), the order counts nothing filled: the new size is all still to fill."""
        if facts.action != "amend":
            return ()
        fresh = adapter is not None and adapter.amend_size_is_remaining
        keyed = adapter is not None and adapter.order_ids_per_market
        turns = adapter is not None and adapter.amend_may_turn
        out = []
        for leg in facts.placed():
            order = self.book.find(account, leg.order_id, leg.scope, keyed) if leg.order_id else None
            market, _, symbol = order.scope.partition(":") if order is not None else ("", "", "")
            if order is None or (leg.symbol and symbol != leg.symbol) or (leg.market and market != leg.market):
                out.append(None)
            else:
                out.append(Amended(order.bot == bot, order.scope, order.side, order.price, order.remaining,
                                   ZERO if fresh else order.filled, turns))
        return tuple(out)

    @staticmethod
    def sized_legs(facts: RequestFacts, amended: tuple[Amended | None, ...]) -> tuple[RequestFacts, ...]:
        """The request's legs as they add to positions: an amend's as the order it leaves behind."""
        legs = facts.placed()
        if not amended:
            return legs
        return tuple(after if (order := amended[i]) is not None and order.own
                     and (after := amended_leg(leg, order)) is not None else leg for i, leg in enumerate(legs))

    def in_flight_legs(self, facts: RequestFacts, risk: RiskView | None) -> tuple[RequestFacts, ...]:
        """What an amend on its way may add (its legs that raise an order's size), counted like an order's
        legs until its answer is read; an order's legs as they are."""
        if facts.action != "amend":
            return facts.placed()
        if risk is None:
            return ()
        out = []
        for leg, order in zip(facts.placed(), risk.amended, strict=False):
            after = amended_leg(leg, order) if order is not None and order.own else None
            if after is None or after.quantity is None:
                continue
            if after.side != order.side:  # turned: all of it is new on that side
                out.append(after)
            elif after.quantity > order.remaining:
                out.append(replace(after, quantity=after.quantity - order.remaining))
        return tuple(out)

    def fleet_exposure(self, account: str, bot: str, policy: BotPolicy, facts: RequestFacts,
                       prices: dict[str, Decimal], risk: RiskView | None
                       ) -> list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]]:
        """A fleet: each leg of a position-capped bot's order as the gate checks it against every instance's
        orders of the bot on their way (fleet/charges.py `SharedCharges.exposure`): (scope, side, size, what
        the position lets it reduce, position and resting orders signed for the side, the cap in units).
        The same rule as `policy.decide` (`reduces`, `_position_cap`), on this book without this instance's
        own orders on their way (the gate counts every instance's). An amend's leg is the order it leaves
        behind, that order's present size left out of the resting ones; one that only shrinks its order at
        its price is not checked (decide passes it). `risk`: the decision's view (the amended orders, and where a
        reduce-only flag is believed)."""
        out = []
        amended = risk.amended if risk is not None else ()
        for i, leg in enumerate(self.sized_legs(facts, amended)):
            order = amended[i] if i < len(amended) else None
            side, last = (leg.side or "").lower(), prices.get(leg.symbol or "")
            size = order_size(leg, last)
            if leg.reduce_only and not leg.hedged and (risk is None or risk.believes_reduce_only(leg.scope)) \
                    or side not in ("buy", "sell") or size is None:
                continue  # a reduce-only flag believed passes anyway (decide.reduces); the rest decide has refused
            resting = self.book.open_quantity(account, bot, leg.scope, side)
            if facts.action == "amend":
                if order is None or not order.own or leg.action != "order":
                    continue  # not in the book: decide refused a capped bot's new size, a new price changes none
                if order.side == side:
                    if size <= order.remaining and leg.price == order.price:
                        continue
                    resting -= order.remaining
            signed = self.book.position(bot, leg.scope) * (1 if side == "buy" else -1)
            readable = leg.quantity is not None and not (leg.contract is not None and leg.quote_quantity is not None)
            room = -signed - resting if readable else Decimal(-1)
            caps = [policy.max_position] if policy.max_position is not None else []
            price = worst_price(leg, last)
            if policy.max_position_notional is not None and price:
                caps.append(policy.max_position_notional / price)
            if caps:
                out.append((leg.scope, side, size, room, signed + resting, min(caps)))
        return out

    def latch(self, latches: Mapping[str, str]) -> None:
        """Daily loss limits found crossed (subject -> UTC day), by this instance or, in a fleet, another: each holds
        here too for the rest of its day (session 28's review: a bot latched on one instance traded on through the
        other once the market came back)."""
        for subject, day in latches.items():
            if day > self.loss_hits.get(subject, ""):
                self.loss_hits[subject] = day

    def loss_reason(self, account: str, bot: BotEntry, limits: AccountLimits | None, now: float) -> str | None:
        """Why the bot, or its account, is past its daily loss limit today (None: it is not, or has none).
        Once hit, the limit holds for the rest of the UTC day, whatever the market does next."""
        day = utc_day(now)
        for subject, limit in ((f"bot:{bot.info.name}", bot.policy.max_daily_loss),
                               (f"account:{account}", limits.max_daily_loss if limits else None)):
            if limit is None:
                continue
            if self.loss_hits.get(subject) == day:
                return f"{subject.replace(':', ' ')} reached its daily loss limit {limit.normalize():f} today"
            unpriced = self.unpriced(subject, account)
            if unpriced:  # counted as nothing, a position keyproxy cannot price hid any loss (session 27's review)
                return (f"{subject.replace(':', ' ')} holds a position in {unpriced[0]} keyproxy has no price for, so "
                        f"its daily loss limit {limit.normalize():f} cannot be checked")
            pnl = self.day_pnl(subject, account)
            if pnl is not None and pnl <= -limit:
                return (f"{subject.replace(':', ' ')} is down {(-pnl).normalize():f} today, past its daily loss "
                        f"limit {limit.normalize():f}")
        return None

    def unpriced(self, subject: str, account: str) -> list[str]:
        """The scopes `bot:NAME` or `account:NAME` holds a position in that keyproxy has no price for."""
        kind, _, name = subject.partition(":")
        bots = (name,) if kind == "bot" else tuple(self.book.bots_of(account))
        return [scope for b in bots for scope in self.book.scopes_of(b)
                if self.book.position(b, scope) and self.scope_price(account, scope) is None]

    def unpriced_of(self, account: str, bot: BotEntry, limits: AccountLimits | None) -> list[str]:
        """The scopes whose missing price keeps the bot's (or its account's) daily loss limit from being checked."""
        out: list[str] = []
        for subject, limit in ((f"bot:{bot.info.name}", bot.policy.max_daily_loss),
                               (f"account:{account}", limits.max_daily_loss if limits else None)):
            if limit is not None and self.loss_hits.get(subject) != utc_day(self.clock()):
                out += [s for s in self.unpriced(subject, account) if s not in out]
        return out

    def day_pnl(self, subject: str, account: str) -> Decimal | None:
        """Today's P&L of `bot:NAME` or `account:NAME` (its bots together) at the last prices seen; a position
        keyproxy cannot price counts as nothing here (the loss watch fetches its price)."""
        kind, _, name = subject.partition(":")
        bots = (name,) if kind == "bot" else tuple(self.book.bots_of(account))
        if not bots:
            return None
        return sum((self.book.day_pnl(b, self.scope_price)[0] for b in bots), Decimal(0))

    # --- what the exchange confirmed -------------------------------------------------------------------

    def learn(self, account: str, adapter: Adapter, placed_by: tuple[str, RequestFacts] | None,
              out: OutboundRequest, status: int, body: bytes, placed_ids: tuple[str, ...] = (),
              decided_ms: int | None = None) -> None:
        """Orders a 2xx answer reports: placed by this bot when it placed them. `placed_ids` (the adapter's
        `placed_order_ids`) name them leg by leg where the answer lists one per leg; else the answer's order
        reports are matched to the legs on scope and side. `decided_ms`: when the request was decided (its orders
        are booked as of then: one the exchange reports created before is not the bot's, `PositionBook`)."""
        if not adapter.fill_markets:
            return
        updates = self._on_books(account, adapter.order_updates(out, status, body))
        if placed_by is None:
            updates += tuple(OrderUpdate(oid, "", "", None, None, Decimal(0), Decimal(0), True)
                             for cid in adapter.cancelled_client_ids(out, status, body)
                             if (oid := self._by_client.pop((account, cid), None)))
            if updates:
                self.book.apply(account, self._keyed(adapter, updates))
            return
        bot, facts = placed_by
        legs = facts.placed()
        if facts.action == "amend":
            verdicts = adapter.amend_verdicts(out, status, body, len(legs))
            self._amended(account, adapter, bot, facts, updates, placed_ids if adapter.amend_replaces else (),
                          verdicts)
            return
        if len(placed_ids) == len(legs) or not updates:  # one id per leg, in its place ("": refused)
            ids = list(placed_ids)
        else:
            # matched on scope and side, among the orders the answer placed only: a cancel-replace's also reports
            # the order it cancelled (an update naming no id keeps a refused leg's place: Hyperliquid's statuses)
            named = {i for i in placed_ids if i}
            unused = [u for u in updates if not named or not u.order_id or u.order_id in named]
            ids = []
            for leg in legs:
                side = (leg.side or "").lower()  # an update without scope or side (Kraken names pairs its own way)
                match = next((u for u in unused if u.scope in ("", leg.scope) and u.side in ("", side)), None)
                ids.append(match.order_id if match is not None else "")
                if match is not None:
                    unused.remove(match)
        if not any(ids) and account not in self._unreadable:  # logged once per account, never a position move
            self._unreadable.add(account)
            log.warning("an order answer named no order id keyproxy could read (the exchange refused it, or its "
                        "answer does not parse): nothing in it moves a position; reconciliation settles what it missed",
                        extra={"account": account, "exchange": adapter.name, "path": out.path})
        # an order in a market whose fills are not read never enters the book: it could never end there
        ids = [oid if i < len(legs) and legs[i].market in adapter.fill_markets else "" for i, oid in enumerate(ids)]
        if adapter.order_ids_per_market:
            ids = [book_id(oid, legs[i].scope) if adapter.id_per_market(oid) else oid for i, oid in enumerate(ids)]
        # a quote-sized order rests at the size it was checked at (quote / the lowest price it may execute at): the
        # answer names its id alone, and with no size booked it weighed nothing under a position cap until a fill
        # was read (a Bybit spot market buy in USDT, a quote-sized stop resting for days: session 32's review)
        if any(leg.quantity is None and leg.quote_quantity is not None and leg.contract is None for leg in legs):
            prices = self.markets.last_prices(account, facts)
            legs = tuple(replace(leg, quantity=order_size(leg, prices.get(leg.symbol or "")))
                         if leg.quantity is None and leg.quote_quantity is not None and leg.contract is None else leg
                         for leg in legs)
        # a conditional order rests off the order book till its trigger: its size counts, its price crosses nothing
        legs = tuple(replace(leg, price=None) if leg.conditional else leg for leg in legs)
        for leg, oid in zip(legs, ids, strict=False):
            if leg.client_id and oid:
                self._by_client[(account, leg.client_id)] = oid
                if len(self._by_client) > MAX_CLIENT_IDS:
                    del self._by_client[next(iter(self._by_client))]
        self.book.placed(account, bot, legs, tuple(ids), self._keyed(adapter, updates),
                         None if decided_ms is None else decided_ms / 1000)

    def _amended(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts,
                 updates: tuple[OrderUpdate, ...], ids: tuple[str, ...], verdicts: tuple[bool | None, ...]) -> None:
        """A 2xx answer to the bot's amend, believed leg by leg as far as the exchange said (`verdicts`): a leg
        it refused changes nothing. A leg it took moves the order to the amend's side and price and asks for
        the new size (`fresh`: the size is what rests, fills not counted), or for the size the answer's own
        order states; `ids` (given only where an amend replaces the order: Kraken's EditOrder) name the order
        that replaced it: the old one ended, the new one is the bot's. A leg the answer does not settle
        (unreadable) keeps its side and price and asks for the larger of the old and the new size: keyproxy
        never believes an order smaller, or elsewhere, than the exchange confirmed."""
        rows = []
        fresh, keyed = adapter.amend_size_is_remaining, adapter.order_ids_per_market
        stated = {u.order_id: u for u in updates}
        legs = facts.placed()
        for i, (leg, order) in enumerate(zip(legs, self.amended(account, bot, facts, adapter), strict=False)):
            took = verdicts[i] if i < len(verdicts) else None
            if order is None or not order.own or leg.order_id is None or took is False:
                continue
            new_id = ids[i] if len(ids) == len(legs) and ids[i] and ids[i] != leg.order_id else None
            if new_id is not None and keyed:
                new_id = book_id(new_id, leg.scope)
            held = self.book.find(account, leg.order_id, leg.scope, keyed)
            assert held is not None  # `amended` found it
            quantity = leg.quantity
            if new_id is None and (confirmed := stated.get(leg.order_id)) is not None and confirmed.quantity:
                quantity = confirmed.quantity
            elif took and quantity is not None:
                quantity = quantity + held.filled if fresh and new_id is None else quantity
            elif new_id is None and quantity is not None and held.quantity is not None:
                quantity = max(quantity, held.quantity)
            if took:
                price = retriggered(leg, held.price).price  # a stop's new trigger is no price it rests at
                # the side it rests on after the amend: the amend's only where an amend may turn an order
                turned = ((leg.side or "").lower() or None) if adapter.amend_may_turn else None
                rows.append((held.order_id, new_id, quantity, price, turned))
            else:
                rows.append((held.order_id, new_id, quantity, None, None))
        if rows:
            self.book.amend(account, bot, rows)
        if updates:
            self.book.apply(account, self._keyed(adapter, updates))

    def learn_stream(self, account: str, adapter: Adapter, text: str) -> None:
        updates = self._on_books(account, adapter.stream_order_updates(text))
        if adapter.stream_markets:
            updates = tuple(self._placed_market(account, adapter, u) for u in updates)
        updates = self._keyed(adapter, updates)
        if updates:
            self.book.apply(account, updates)

    def _placed_market(self, account: str, adapter: Adapter, update: OrderUpdate) -> OrderUpdate:
        """A stream update in the scope of the order the book holds under its id, where the event names only the
        engine (`stream_markets`: a Binance margin order's fills come as a spot `executionReport`)."""
        market, _, symbol = update.scope.partition(":")
        for other in adapter.stream_markets.get(market, ()):  # the event's own market first
            scope = f"{other}:{symbol}"
            if self.book.find(account, update.order_id, scope, adapter.order_ids_per_market) is not None:
                return update if other == market else replace(update, scope=scope)
        return update

    def learn_late(self, account: str, adapter: Adapter, updates: tuple[OrderUpdate, ...]) -> None:
        """Orders keyproxy asked the exchange about itself (the risk watch's reconciliation)."""
        self.book.apply(account, self._keyed(adapter, self._on_books(account, updates)), late=True)

    def _on_books(self, account: str, updates: tuple[OrderUpdate, ...]) -> tuple[OrderUpdate, ...]:
        """Updates in the scope of the book their product trades on (`MarketBook.book_scope`): the order was booked
        there, and Coinbase's user channel names an order placed on BTC-USDC by BTC-USD."""
        if not updates or not self.markets.names.get(account):
            return updates
        held = self.book.orders.get(account, {})
        out = []
        for u in updates:
            scope = self.markets.book_scope(account, u.scope) if u.scope else u.scope
            if scope != u.scope and (order := held.get(u.order_id)) is not None and order.scope == u.scope:
                scope = u.scope  # booked under the product's own name (before session 31): its reports stay there
            out.append(u if scope == u.scope else replace(u, scope=scope))
        return tuple(out)

    @staticmethod
    def _keyed(adapter: Adapter, updates: tuple[OrderUpdate, ...]) -> tuple[OrderUpdate, ...]:
        """Updates with their ids as the book keys them (`book_id`, where the exchange numbers orders per market)."""
        if not adapter.order_ids_per_market:
            return updates

        def keyed(u: OrderUpdate) -> OrderUpdate:
            if not u.scope:
                return u
            oid = book_id(u.order_id, u.scope) if adapter.id_per_market(u.order_id) else u.order_id
            if u.spawned and adapter.id_per_market(u.spawned):  # the order a conditional one became, keyed alike
                return replace(u, order_id=oid, spawned=book_id(u.spawned, u.scope))
            return u.with_order_id(oid) if oid != u.order_id else u
        return tuple(keyed(u) for u in updates)


def _one_book(books: Mapping[str, tuple[str, ...]], market: str | None) -> tuple[str, ...]:
    """The markets whose orders trade in one order book with `market`'s (its own alone where none is named)."""
    return next((group for group in books.values() if market in group), ())
