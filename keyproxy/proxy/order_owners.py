"""Who placed which order (`StateStore.placed_orders`), that a bot changes and cancels only its own orders, and the
open-order counts only a bot's own orders move.

A halt of one bot cancels the orders recorded as that bot's and no other bot's; a bot's `max_open_orders` count
moves by what the exchange confirmed of its own orders: a cancel of another bot's order frees no place (the
cancelled orders' owners from the positions book, else the record). Fed by `Core.learn` from every answer.

A cancel-all is judged by the positions book where it holds the market's orders (`Adapter.fill_markets`); elsewhere
(OKX swaps, Binance COIN-M, any cancel of every market) by what the exchange lists as resting there, each listed
order's owner from the record: `NeedResting` sends the edge to list them (market_data.py), then the decision resumes.
"""

from __future__ import annotations

import collections
from dataclasses import replace
from collections.abc import Callable

from keyproxy.exchanges._fills import loads
from keyproxy.exchanges.base import ALGO, Adapter, OutboundRequest, Reported, order_ids_in
from keyproxy.exchanges.open_orders import LISTED_MARKETS, Resting
from keyproxy.policy.model import RequestFacts, normalize_symbol, scopes_overlap
from keyproxy.proxy.positions import PositionBook
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.stop_children import (  # noqa: F401 - NeedOrders, NeedResting, the ask states, id_forms: theirs
    FAILED, MISSING, SHOWN, SPAWNED, NeedOrders, NeedResting, StopChildren, _canonical, id_forms,
)
from keyproxy.state import OUTSIDE, OwnersUnknown, StateStore, client_key, placed_key, placed_keys
from keyproxy.usage import UsageBook


OPENS_REMEMBERED = 512  # a bot's latest orders learned open, per bot (a listing's answer adds those after it)
LISTING_REUSE_MS = 2_000  # a listing decides the cancel-alls of this long after it, while no order changes


UNCERTAIN = "uncertain|"  # state.db usage key prefix: `uncertain|<bot>|<scope>` (OrderOwners._uncertain)


class OrderOwners(StopChildren):
    """The attribution record and the open-order counts, kept from answers."""

    def __init__(self, usage: UsageBook | None, store: StateStore | None, book: PositionBook,
                 clock_ms: Callable[[], int]) -> None:
        self._usage = usage
        self._sequences = store
        self._book = book
        self.clock_ms = clock_ms
        # (account, market) -> (when asked for, the account's order changes then, what rested; None: the listing
        # failed): a cancel-all is judged on a listing asked for since an order was last placed or cancelled on the
        # account through keyproxy (and within LISTING_REUSE_MS), so a bot cannot make keyproxy list in a loop
        self._listed: dict[tuple[str, str], tuple[int, int, tuple[Resting, ...] | None]] = {}
        self.changes: dict[str, int] = {}  # account -> answers to orders and cancels learned so far
        # per bot: how many of its orders were learned open, and the latest of them (number, scope): what a listing
        # sent before they were learned may not show (`track_open_orders`)
        self._opens_seen: dict[str, int] = {}
        self._opens: dict[str, collections.deque[tuple[int, str]]] = {}
        # (bot, conditional scope) -> (when keyproxy's last whole listing was asked for, the forms of every id it
        # showed): a cancel decided before it, of an order it no longer showed, frees no place again (`recount`)
        self._recounted: dict[tuple[str, str], tuple[int, frozenset[str]]] = {}
        # (request id, what was asked: "orders", or a listing's market) -> how keyproxy's own ask for that decision
        # ended (`SHOWN`, `MISSING`, `FAILED`): the decision resumes on it, never on a listing from before it
        self._asked: dict[tuple[str, str], str] = {}

    def track_open_orders(self, account: str, adapter: Adapter, track: tuple[str, RequestFacts],
                           out: OutboundRequest, status: int, body: bytes, mark: int | None = None,
                           since_ms: int | None = None) -> None:
        """Keep the bot's open-order count from what the exchange confirmed (see `OrderBookChange`). `mark`: the
        bot's `opens_mark` when the request was decided; a listing (or cancel-all) sets a count as the exchange saw
        it then, so the bot's orders learned open since are added to it (the exchange may have listed them or not:
        counted either way, never forgotten). In a fleet, the orders other instances learned open since `since_ms`
        (the decision's time) are added in Redis (fleet/usage.py): this instance knows only its own (session 28's
        review: a listing through one instance wiped the orders placed meanwhile through another)."""
        if self._usage is None:
            return
        bot, facts = track
        change = adapter.order_book_change(out, status, body, facts)
        late = self._opened_since(bot, mark) if change.reset or change.counted else []
        for market in change.reset:
            self._usage.reset_open_orders(bot, market, since_ms)
        for scope in change.opened:
            self._usage.change_open_orders(bot, scope, +1)
        if change.opened:
            self._opens_learned(bot, change.opened)
            self._uncertain(bot, adapter, change.opened, status, body)
        others = self._others(account, adapter, bot, facts, out, body, len(change.closed)) \
            if change.closed else 0
        closed = self._not_recounted(bot, adapter, change.closed[others:], out, body, since_ms)[:_named_orders(facts)]
        for scope in closed:
            self._usage.change_open_orders(bot, scope, -1)
        if len(change.counted) == 1:  # one scope's listing: the account's orders there, other bots' too
            scope, count = change.counted[0]
            change = replace(change, counted=((scope, max(0, count - self._listed_others(account, adapter, bot,
                                                                                          scope, body))),))
        for scope, count in change.counted:
            self._set_count(bot, scope, count, late, since_ms)
        counted = {scope for scope, _ in change.counted}
        for opened in late or ():  # reset with its market, listed under no scope of the answer
            if opened not in counted and opened.partition(":")[0] in change.reset:
                self._usage.change_open_orders(bot, opened, +1)

    def _set_count(self, bot: str, scope: str, count: int, late: list[str] | None, since_ms: int | None) -> None:
        """A listing's count of the bot's orders in `scope`, plus those learned open since it was asked for."""
        assert self._usage is not None
        if late is None:  # more opens since than are remembered: the listing may only raise the count
            count = max(count, self._usage.scope_open_orders(bot, scope))
        else:
            count += sum(1 for opened in late if scopes_overlap((opened,), (scope,)))
        self._usage.set_open_orders(bot, scope, count, since_ms)

    def recount(self, account: str, adapter: Adapter, bot: str, scope: str, listed: list[str], mark: int,
                since_ms: int) -> bool:
        """keyproxy's own whole listing of `scope`'s resting orders (the risk watch's, for conditional orders, whose
        end no answer to the bot need show: a stop that triggered): the bot's count becomes what it lists on record
        as the bot's, plus the bot's orders learned open since `mark`. An order of no known owner counts only as far
        as the bot placed orders whose answer named none (`_uncertain`): a stop placed on the exchange's site, or by
        an unbounded bot as an attached order, takes no bounded bot's place (session 30's review)."""
        if self._usage is None or self._sequences is None:
            return False
        try:  # a fleet's record out of reach: an order placed through another instance would read as nobody's
            owners = [self.owner(account, adapter, oid, scope) for oid in listed]
        except OwnersUnknown:
            return False
        unknown, key = owners.count(None), f"{UNCERTAIN}{bot}|{scope}"
        uncertain = min(int(self._sequences.usage_value(key) or "0"), unknown)
        self._sequences.set_usage(key, str(uncertain))
        # a cancel decided before now, answered later, of an order this listing did not show: its place is not
        # freed again (decided after the listing was asked for, its order may have gone before the exchange listed)
        self._recounted[(bot, scope)] = (self.clock_ms(), frozenset(f for oid in listed for f in id_forms(oid)))
        self._set_count(bot, scope, owners.count(bot) + uncertain, self._opened_since(bot, mark), since_ms)
        return True

    def opened_in(self, bot: str, mark: int, scope: str) -> bool:
        """Whether the bot had an order learned open in `scope` since `mark` (or more than are remembered)."""
        since = self._opened_since(bot, mark)
        return since is not None and scope in since

    def forget_cancelled(self, account: str, adapter: Adapter, bot: str | None, facts: RequestFacts,
                         out: OutboundRequest, status: int, body: bytes) -> None:
        """Conditional orders a cancel's answer confirmed gone (`algo#` ids): their record goes, so a bot placing
        and cancelling stops in a loop does not fill the account's record until its resting stops' entries are
        pruned (session 30's review: then they counted for no one, and no halt found them). Only a cancel that
        names algo orders, or every order, can answer for one: no other cancel's answer is read again."""
        if self._sequences is None or not 200 <= status < 300 \
                or not (facts.cancels_all or any(c.startswith(ALGO) for c in facts.cancels)):
            return
        ended = [u.order_id for u in adapter.order_updates(out, status, body)
                 if u.final and not u.spawned and u.order_id.startswith(ALGO)]
        # the cancelling bot's own records only (one of no owner, or another bot's, is never its to remove)
        keys = [k for oid in ended for k in placed_keys(oid, None)
                if self._sequences.local_owner(account, (k,)) == bot]
        if keys:
            self._sequences.forget_placed_orders(account, keys)

    def _uncertain(self, bot: str, adapter: Adapter, opened: tuple[str, ...], status: int, body: bytes) -> None:
        """Conditional orders counted open whose answer named no id (a fate the exchange did not know, an unreadable
        answer): they may rest under no owner on record, so `recount` counts that many of no known owner as the
        bot's until a listing shows fewer."""
        scopes = [s for s in opened if s in adapter.conditional_count_scopes]
        if not scopes or self._sequences is None or any(adapter.placed_order_ids(status, body)):
            return
        for scope in scopes:
            key = f"{UNCERTAIN}{bot}|{scope}"
            self._sequences.set_usage(key, str(int(self._sequences.usage_value(key) or "0") + 1))

    def _not_recounted(self, bot: str, adapter: Adapter, closed: tuple[str, ...], out: OutboundRequest,
                       body: bytes, since_ms: int | None) -> tuple[str, ...]:
        """The places a cancel frees, less those of orders keyproxy's whole listing, asked for after the cancel was
        decided, no longer showed: that count already left them out (session 30's review: a cancel answered after
        the recount freed its place twice)."""
        if since_ms is None or not closed:
            return closed
        kept = [s for s in closed if not ((rec := self._recounted.get((bot, s))) is not None and since_ms < rec[0])]
        if len(kept) == len(closed):
            return closed
        # the orders the answer confirmed cancelled (never those the request named: one it refused, padded in,
        # freed nothing; session 30's review)
        named = [u.order_id for u in adapter.order_updates(out, 200, body) if u.final and not u.spawned]
        for scope in {s for s in closed if s not in kept}:
            shown = self._recounted[(bot, scope)][1]
            still = sum(1 for oid in named if any(f in shown for f in id_forms(oid)))
            kept += [scope] * min(still, sum(1 for s in closed if s == scope))
        return tuple(kept)

    def _listed_others(self, account: str, adapter: Adapter, bot: str, scope: str, body: bytes) -> int:
        """How many of the orders a listing of `scope` shows this instance knows to be another bot's (the book's,
        else its attribution record): a listing is the account's, and another bot's orders there take no place
        under this bot's `max_open_orders`. An order of no known owner stays counted (it may be the bot's)."""
        if not adapter.order_id_keys or self._sequences is None:
            return 0
        others = 0
        for oid in order_ids_in(loads(body), adapter.order_id_keys):  # 1000 at most
            keyed = adapter.id_per_market(oid)
            held = self._book.find(account, oid, scope, keyed)
            owner = held.bot if held is not None else self._sequences.local_owner(
                account, placed_keys(oid, scope if keyed else None))
            others += owner is not None and owner != bot
        return others

    def opens_mark(self, bot: str) -> int:
        """How many of the bot's orders were learned open so far (`track_open_orders`'s `mark`)."""
        return self._opens_seen.get(bot, 0)

    def _opens_learned(self, bot: str, scopes: tuple[str, ...]) -> None:
        recent = self._opens.get(bot)
        if recent is None:
            if len(self._opens) > 10_000:  # bots come and go: start over rather than grow (marks then only raise)
                self._opens.clear()
            recent = self._opens[bot] = collections.deque(maxlen=OPENS_REMEMBERED)
        for scope in scopes:
            self._opens_seen[bot] = self._opens_seen.get(bot, 0) + 1
            recent.append((self._opens_seen[bot], scope))

    def _opened_since(self, bot: str, mark: int | None) -> list[str] | None:
        """The scopes of the bot's orders learned open after `mark` (None: not all of them are remembered)."""
        if mark is None:
            return []
        seen = self._opens_seen.get(bot, 0)
        if seen == mark:
            return []
        recent = self._opens.get(bot)
        if recent is None or not recent or recent[0][0] > mark + 1:
            return None
        return [scope for number, scope in recent if number > mark]

    def _others(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts, out: OutboundRequest,
                body: bytes, closed: int) -> int:
        """How many of the orders a cancel closed were another bot's (the book's, else `placed_orders`): a cancel of
        another bot's order frees no place under this bot's `max_open_orders`. The ids come from the answer, else
        from the request (Kraken, Hyperliquid); a cancel by client id frees none (whose orders, unknown), nor does a
        cancel of an order with no owner on record (placed outside keyproxy, or its answer never read): the bot's
        count never held it, so freeing a place for it would let the bot rest one order more than its cap."""
        ids = order_ids_in(loads(body), adapter.order_id_keys) if adapter.order_id_keys else ()
        if not ids:
            ids, by_client = adapter.cancelled_ids(out)
            if by_client:
                return closed
        others = 0
        for oid in ids:  # a fleet's record out of reach: an order of no known owner frees nothing either
            owner = self.owner(account, adapter, oid, facts.scope, strict=False)
            others += owner != bot or bool(adapter.spawning_markets) and self._spawned(account, adapter, oid,
                                                                                        facts.scope)
        return others

    def only_own(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts, request_id: str = "") -> bool:
        """Refuse a request that would change or cancel another bot's resting orders (docs/policy.md, "Only its own
        orders"): an amend's legs, by their order's owner on record (the positions book holds only orders in
        markets whose fills keyproxy reads; the attribution record, every order it saw placed); a cancel's orders,
        by the exchange's id or by client id; a cancel-all where another bot's orders rest; a take-profit /
        stop-loss change (which moves no size or price), named by the exchange's id: another bot's stop moved or
        removed is that bot's risk changed. An amend by a client id is refused by `decide` where it matters.
        `request_id`: the decision's, whose own asks (a cancel-all's listing, `NeedResting`; the orders of no owner it
        names, `_learn_unowned`) it resumes on. In a fleet whose
        shared record cannot be read, an order this instance has no record of may be another bot's: refused.
        True when an order it names has no owner on record (placed outside keyproxy, or another bot's still on its
        way: the core lets the other bots' orders on their way land first, sweeps.py)."""
        try:
            return self._only_own(account, adapter, bot, facts, request_id)
        except OwnersUnknown:
            raise Refused("shared_state_unavailable", "the fleet's record of who placed which order cannot be read, "
                          "and this instance has none of an order this request would change or cancel: it may be "
                          "another bot's. Retry, or go through the instance that placed it", 1.0) from None

    def _only_own(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts, request_id: str) -> bool:
        def deny(detail: str) -> Refused:
            return Refused("policy_denied", f"bot {bot!r}: {detail}")

        self._learn_unowned(account, adapter, bot, facts, request_id)
        unowned = False
        for leg in facts.placed() if facts.action == "amend" else ():
            if leg.order_id and (owner := self.owner(account, adapter, leg.order_id, leg.scope)) not in (None, bot):
                raise deny(f"order {leg.order_id} was placed by another bot on this account: a bot amends only its "
                           "own orders")
            unowned = unowned or bool(leg.order_id) and owner is None
        for order_id in facts.cancels:
            if (owner := self.owner(account, adapter, order_id, facts.scope)) not in (None, bot):
                raise deny(f"order {order_id} was placed by another bot on this account: a bot cancels only its "
                           "own orders")
            unowned = unowned or owner is None
        for client_id in facts.cancels_by_client:
            if (owner := self.client_owner(account, adapter, client_id, facts.scope, bot)) not in (None, bot):
                raise deny(f"the order with client id {client_id[:64]!r} was placed by another bot on this "
                           "account: a bot cancels only its own orders")
            unowned = unowned or owner is None
        if facts.cancels_all and facts.cancels_unlisted:  # orders no listing shows: any of another bot's there
            if (other := self._other_placed(account, bot, *facts.scope.split(":", 1))) is not None:
                raise deny(f"this would cancel orders of {facts.scope} keyproxy cannot attribute (conditional, algo, "
                           f"spread or rfq orders), and bot {other!r} places orders there: cancel this bot's own "
                           "orders by their ids")
        elif facts.cancels_all and (other := self._book.others_live(account, facts.scope, bot)
                                    or self._other_resting(account, adapter, bot, facts.scope, request_id)) is not None:
            raise deny(f"this would cancel every order of {facts.scope}, and bot {other!r} has orders resting "
                       "there: cancel this bot's own orders by their ids")
        for order_id in facts.touches:
            if order_id is None:
                raise deny("name the order by the exchange's order id, not a client id: keyproxy cannot tell whose "
                           "order a client id names, and a bot changes only its own orders")
            if (owner := self.owner(account, adapter, order_id, facts.scope)) not in (None, bot):
                raise deny(f"order {order_id} was placed by another bot on this account: a bot changes only its "
                           "own orders")
            unowned = unowned or owner is None
        return unowned

    def _other_resting(self, account: str, adapter: Adapter, bot: str, scope: str, request_id: str) -> str | None:
        """Another bot's order resting in `scope` where the positions book does not hold the market's orders: from
        the exchange's listing (`NeedResting` when there is none fresh), each order's owner from the record; a
        market keyproxy cannot list (Binance options): any order another bot placed there, finished or not."""
        market, _, symbol = scope.partition(":")
        if market != "*" and market in adapter.fill_markets:
            return None  # the book holds them, and said none is another's
        listable = LISTED_MARKETS.get(adapter.name, frozenset())
        if adapter.name not in LISTED_MARKETS or market != "*" and listable is not None and market not in listable:
            return self._other_placed(account, bot, market, symbol)
        markets = frozenset({market}) if market != "*" else None
        resting = self._listing(account, adapter, bot, market, markets, request_id, "whose orders this cancel-all "
                                "would cancel: retry, or cancel this bot's orders by their ids")
        for order in resting:
            where = f"{order.market}:{normalize_symbol(order.symbol)}"
            if market not in ("*", order.market) or symbol not in ("*", where.partition(":")[2]):
                continue
            owner = self.owner(account, adapter, order.order_id, where)
            if owner not in (None, bot):
                return owner
        return None

    def _listing(self, account: str, adapter: Adapter, bot: str, market: str, markets: frozenset[str] | None,
                 request_id: str, what: str) -> tuple[Resting, ...]:
        """The exchange's listing of what rests in `market` (`*`: everywhere, `markets` None: the markets the account's
        bots placed orders on): the one this decision asked for, or a fresh one, else `NeedResting`; Refused when the
        decision's own failed (session 31's review: a decision resumed for a reference price took any listing held,
        however old)."""
        entry = self._listed.get((account, market))
        own = self._asked.get((request_id, market)) if request_id else None
        # reused only by one daemon: orders placed through another worker or instance do not count as changes here
        fresh = entry is not None and entry[1] == self.changes.get(account, 0) \
            and self.clock_ms() - entry[0] < LISTING_REUSE_MS \
            and (self._sequences is None or self._sequences.placed_mirror is None)
        if entry is None and own is None or own is None and not fresh:
            if markets is None:
                markets = frozenset(m for _, m in (self._sequences.placed_orders(account)
                                                   if self._sequences is not None else {}).values())
            raise NeedResting(account, market, markets, self.changes.get(account, 0), bot, adapter, request_id)
        if own == FAILED or entry is None or entry[2] is None:
            raise Refused("unavailable", f"keyproxy could not list the exchange's open orders to see {what}", 1.0)
        return entry[2]

    def _other_placed(self, account: str, bot: str, market: str, symbol: str) -> str | None:
        """Another bot that placed an order in `market` (and `symbol`, where its key names one) through keyproxy."""
        return self._sequences.other_placer(account, bot, market, symbol, strict=True) \
            if self._sequences is not None else None

    def learn_resting(self, need: NeedResting, orders: tuple[Resting, ...] | None, asked_ms: int) -> None:
        """What the exchange listed as resting where `need` asked at `asked_ms` (None: the listing failed), for the
        cancel-alls waiting for it and those after it while no order is placed on the account."""
        if len(self._listed) > 1_000:
            self._listed.clear()
        held = self._listed.get((need.account, need.market))
        if held is None or held[1] <= need.changes:  # never one asked for before a change the held one knew of
            self._listed[(need.account, need.market)] = (asked_ms, need.changes, orders)
        if orders and need.adapter is not None:
            self.learn_children(need.account, need.adapter, orders)
        self.asked(need.request_id, need.market, SHOWN if orders is not None else FAILED)

    def changed(self, account: str) -> None:
        """An order was placed or cancelled on the account through keyproxy: a listing asked for before is stale."""
        self.changes[account] = self.changes.get(account, 0) + 1

    def client_owner(self, account: str, adapter: Adapter, client_id: str, scope: str, bot: str | None = None
                     ) -> str | None:
        """The bot that last placed an order under this client id through keyproxy (None: none did). In a fleet,
        this instance's record and the fleet's may name different bots (the id reused since through another
        instance, and neither record says which is newer): a bot other than `bot` named by either is the answer."""
        if self._sequences is None:
            return None
        # in every form the exchange reads as the same order's (`client_id_forms`: a Binance stop's clientAlgoId is
        # the client id of the order it became, whose own record may have been pruned first: session 31's review)
        owners = [owner for form in adapter.client_id_forms(client_id)
                  for owner in self._sequences.placed_owners(account, (_client_record(adapter, form, scope),),
                                                             strict=True)]
        others = [o for o in owners if o != bot]
        return others[0] if others else (bot if bot in owners else None)

    def owner(self, account: str, adapter: Adapter, order_id: str, scope: str, strict: bool = True) -> str | None:
        """The bot that placed the order, as far as keyproxy knows: the positions book's, else the attribution
        record's (any key form a version wrote); None for an order keyproxy never saw placed. The id as the bot
        wrote it first, then the forms an exchange may read as the same order (`id_forms`). `strict`: a fleet's
        record out of reach raises `OwnersUnknown` for an order this instance has no record of."""
        keyed, forms = adapter.id_per_market(order_id), id_forms(order_id)
        for form in forms:
            if (held := self._book.find(account, form, scope, keyed)) is not None:
                return held.bot
        if self._sequences is None:
            return None
        # every form's keys in one lookup (in a fleet, one Redis round trip for an order nobody recorded, not one
        # per form), the id as written first
        return self._sequences.placed_owner(account, tuple(key for form in forms
                                                           for key in placed_keys(form, scope if keyed else None)),
                                            strict=strict)

    def own_client_ids(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts) -> None:
        """Refuse an order under a client id on record as another bot's (in any form the exchange reads as the same
        order's, `client_id_forms`; in a fleet, any instance's record): the record names the latest placer, so the
        order would make the other bot's order this bot's to cancel (session 29's review: a bot placed and cancelled
        an order under another bot's stop's client id, then cancelled the order the stop became; session 31's: through
        an instance that had not seen the stop)."""
        if self._sequences is None:
            return
        for leg in _named_client_ids(facts):
            keys = tuple(_client_record(adapter, form, leg.scope) for form in adapter.client_id_forms(leg.client_id))
            # this instance's record, and the fleet's in one read (out of reach: this instance's, as an order that
            # only reduces a position still goes while Redis is down)
            owner = next((o for o in self._sequences.placed_owners(account, keys) if o != bot), None)
            if owner == OUTSIDE:
                raise Refused("policy_denied", f"bot {bot!r}: client id {leg.client_id[:64]!r} names an order placed "
                              "on this account outside keyproxy: the exchange would answer with that order")
            if owner is not None:
                raise Refused("policy_denied", f"bot {bot!r}: client id {leg.client_id[:64]!r} names an order bot "
                              f"{owner!r} placed on this account: a bot's client ids are its own")

    def claim_client_ids(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts) -> None:
        """An allowed request's client ids recorded as the bot's at its decision, where the exchange answers a reused
        one with the order holding it (`Adapter.client_ids_answer_existing`): a read or stream event showing the
        order before its answer is read, or after a timeout, then never makes the client id one placed outside
        keyproxy (`learn_outside`), and the bot's retry under it passes (session 33's review)."""
        if self._sequences is None:
            return
        for leg in _named_client_ids(facts):
            key = _client_record(adapter, leg.client_id, leg.scope)
            if self._sequences.local_owner(account, (key,)) is None:  # never anyone else's (`own_client_ids`)
                self._sequences.record_placed_orders(account, bot, leg.scope.partition(":")[0], (key,),
                                                     self.clock_ms() / 1000)

    def learn_outside(self, account: str, adapter: Adapter, reported: tuple[Reported, ...]) -> None:
        """The client ids of orders a read or stream event reports that no bot placed or asked for through keyproxy,
        recorded as placed outside it (`OUTSIDE`; in a fleet in Redis too) before the bot sees them: Coinbase answers
        a create reusing a client id with the order holding it, so a bot naming the client id of the operator's order
        it had just listed took that order, and its fills, as its own (session 33's review: within seconds of its
        making, where the time rule of `PositionBook._foreign` cannot tell). `reported`: (order id, scope, client
        id, when made), `reported_client_ids`. A client id on record as anyone's stays so (a bot's from its decision on,
        `claim_client_ids`); only one new to this instance asks the fleet's record."""
        if self._sequences is None or not reported:
            return
        cids = {_client_record(adapter, cid, scope): (oid, scope, made) for oid, scope, cid, made in reported}
        known = self._sequences.recorded(account, list(cids))  # one query (and one fleet read) for the whole answer
        unknown = {k: v for k, v in cids.items() if k not in known}
        if not unknown:
            return  # the usual case: every client id listed is on record already (a bot's, or outside keyproxy)
        order_keys = {k: placed_keys(oid, scope if adapter.id_per_market(oid) else None)
                      for k, (oid, scope, _) in unknown.items()}
        owned = self._sequences.recorded(account, [o for keys in order_keys.values() for o in keys])
        # a bot's order whose client id is not on record (an answer read before client ids were): its bot's
        new = [(k, unknown[k][1].partition(":")[0], unknown[k][2]) for k, keys in order_keys.items()
               if not owned & set(keys)]
        if new:
            # dated by the order's making, so the bound (`MAX_OUTSIDE`) drops the oldest orders' first: a bot
            # reading old orders again cannot push out a live one's (session 33's review)
            now = self.clock_ms() / 1000
            self.changed(account)
            self._sequences.record_outside(account, tuple((k, market, made if made is not None else now)
                                                          for k, market, made in new))

    def attribute(self, account: str, adapter: Adapter, placed_by: tuple[str, RequestFacts],
                  ids: tuple[str, ...], new_only: bool = False, client_ids: tuple[str, ...] = ()) -> None:
        """Remember which bot placed the orders an answer names (`StateStore.placed_orders`): what lets a
        halt of one bot cancel that bot's orders and no other bot's on the same account. An amend's: only an
        order it made anew (never one it only named). Where ids are per market and symbol (Binance), keyed with them.
        `new_only` (an answer keyproxy cannot read as placements): ids already someone's keep their owner."""
        bot, facts = placed_by
        legs = facts.placed() or ((facts,) if facts.action is None else ())  # an unread shape: its one scope
        if self._sequences is None or not legs:
            return
        if facts.action == "amend" and not adapter.amend_replaces:
            # an amend that keeps the order's id places no order: what it names is never the amender's; but the order
            # may take a new client id (Binance's keepPriority amend gives it one), which is its bot's (only its own
            # bot amends an order): unrecorded, any bot cancelled the order by it (session 32's review). An id the
            # answer echoes that another bot holds stays its (an amend naming its own order by id and another bot's
            # client id beside it: the session's regression review)
            scope = legs[0].scope
            mine = tuple(cid if cid and self._held_by(account, adapter, cid, scope, bot) else "" for cid in client_ids)
            self._record(account, bot, legs, (), mine, adapter)
            return
        ids = tuple(dict.fromkeys(ids)) if facts.action is None else ids  # an order list names its orders twice
        named = {leg.order_id for leg in legs}
        per_leg = len(ids) == len(legs)
        scopes = [(legs[i] if per_leg else legs[0]).scope if adapter.id_per_market(ids[i]) else None
                  for i in range(len(ids))]
        found = [(oid, scope) for oid, scope in zip(ids, scopes, strict=True) if oid and oid not in named]
        if new_only:  # every owner any instance recorded, under every key form a version wrote
            owned = self._sequences.placed_orders(account)
            found = [(oid, scope) for oid, scope in found if not owned.keys() & set(placed_keys(oid, scope))]
        # an answer naming an order another bot placed (Coinbase answers a reused client_order_id with the order
        # that holds it) places nothing: that order, and its client id, stay its placer's (`new_only` kept only
        # ids nobody owns already)
        foreign = set() if new_only else {oid for oid, scope in found
                                          if self._sequences.local_owner(account, placed_keys(oid, scope))
                                          not in (None, bot)}
        found = [(oid, scope) for oid, scope in found if oid not in foreign]
        keys = tuple(placed_key(oid, scope) for oid, scope in found)
        if not client_ids and len(ids) == len(legs) and any(leg.client_id for leg in legs):
            # the answer does not echo client ids (Hyperliquid's cloid): the request's, for the legs it placed
            client_ids = tuple(leg.client_id or "" if oid else "" for leg, oid in zip(legs, ids, strict=True))
        if foreign and client_ids:
            client_ids = tuple(cid if len(client_ids) == len(ids) and ids[i] not in foreign else ""
                               for i, cid in enumerate(client_ids))
        if new_only and client_ids:  # an unread answer's client ids (an order list's legs'): those nobody owns
            client_ids = tuple(cid if cid and not owned.keys() & {placed_key(client_key(cid), scope) for scope in
                                                                  (None, *(leg.scope for leg in legs))} else ""
                               for cid in client_ids)
        self._record(account, bot, legs, keys, client_ids, adapter)

    def disowned(self, account: str, bot: str, scope: str, book_key: str, live: bool) -> None:
        """An order the exchange made before the bot's request named it (the positions book's `on_disown`: a
        Coinbase client id reused) is not the bot's: off its record, so a halt of the bot does not cancel the
        operator's order and cancelling it frees no place under the bot's cap."""
        if self._sequences is None:
            return
        order_id, keyed, _ = book_key.partition("@")
        keys = placed_keys(order_id, scope if keyed else None)
        if self._sequences.placed_owner(account, keys) == bot:
            self.changed(account)
            self._sequences.forget_placed_orders(account, list(keys))
            if live and self._usage is not None:  # its place under the bot's max_open_orders, given back
                self._usage.change_open_orders(bot, scope, -1)

    def _held_by(self, account: str, adapter: Adapter, client_id: str, scope: str, bot: str) -> bool:
        """Whether the client id is the bot's or nobody's on record (out of reach in a fleet: not known to be)."""
        try:
            return self.client_owner(account, adapter, client_id, scope, bot) in (None, bot)
        except OwnersUnknown:
            return False

    def _record(self, account: str, bot: str, legs: tuple[RequestFacts, ...], keys: tuple[str, ...],
                client_ids: tuple[str, ...], adapter: Adapter) -> None:
        """The order keys and client ids (the latest order placed under a client id is the one it names now) recorded
        as the bot's."""
        assert self._sequences is not None
        if client_ids:
            keys += tuple(_client_record(adapter, cid, (legs[i] if len(client_ids) == len(legs) else legs[0]).scope)
                          for i, cid in enumerate(client_ids) if cid)
        if keys:
            self.changed(account)
            self._sequences.record_placed_orders(account, bot, legs[0].scope.partition(":")[0], keys,
                                                 self.clock_ms() / 1000)


def _client_record(adapter: Adapter, client_id: str, scope: str) -> str:
    """A client id's key in `placed_orders`: with the order's scope where the exchange numbers each market's apart."""
    return placed_key(client_key(client_id), scope if adapter.id_per_market(client_id) else None)


def _named_client_ids(facts: RequestFacts) -> tuple[RequestFacts, ...]:
    """The legs of a request that name a client id, a request of a shape keyproxy cannot read included (session 33's
    review: unchecked, its client id took the operator's order)."""
    return tuple(leg for leg in facts.placed() or (facts,) if leg.client_id)


def _named_orders(facts: RequestFacts) -> int | None:
    """How many orders a cancel naming its orders can free places for at most: each it names once, however often
    or in whatever form (`881`, `0881`; a batch naming one order twice, each leg confirmed, freed two places:
    session 30's review). None: no bound (a cancel-all, or one naming none)."""
    if facts.cancels_all or not (facts.cancels or facts.cancels_by_client):
        return None
    return len({_canonical(i) for i in facts.cancels}) + len(set(facts.cancels_by_client))


