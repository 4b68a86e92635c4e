"""What a bot's triggered stops became, and keyproxy's own asks about the orders a request names with no owner.

Where a triggered conditional order becomes an order of its own under a new id (`Adapter.spawning_markets`: Binance
futures, OKX), that order is its stop's bot's: recorded from the positions book's `on_spawn`, from reads that name
the stop (its client id, Binance; its `algoId`, OKX), and, before a cancel, amend or change naming an order of no
owner there, from keyproxy's own ask (`NeedOrders`: the order by id; `NeedResting`: a listing), which the edge makes
(market_data.py) and the decision resumes on (`asked`). Cancelling such an order frees no place (`SPAWNED`). Also the
forms an exchange may read as the same order id (`id_forms`). `OrderOwners` (order_owners.py) takes it as a mixin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyproxy.exchanges.base import ALGO, Adapter, OutboundRequest
from keyproxy.exchanges.open_orders import Resting
from keyproxy.policy.model import RequestFacts, normalize_symbol
from keyproxy.proxy.refusal import Refused
from keyproxy.state import OwnersUnknown, StateStore, client_key, placed_key, placed_keys

SPAWNED = "spawn:"  # `placed_orders` key prefix: an order a bot's stop became, which its count never held
ASKS_REMEMBERED = 1_000  # decisions whose asks about orders of no owner are remembered (`OrderOwners.asked`)
SHOWN, MISSING, FAILED = "shown", "missing", "failed"  # how an ask ended: the exchange showed what was asked; it
# answered without showing an order asked about (no such order); it did not answer (or unreadably: a 5xx, a 429)


class NeedResting(Exception):  # noqa: N818 - a request for data, not an error; never reaches a bot
    """A cancel-all where the positions book does not hold the orders: list what rests in `markets` of `account`
    (`OrderOwners.learn_resting` under `market`), then `resume()` the same decision once."""

    def __init__(self, account: str, market: str, markets: frozenset[str], changes: int, bot: str,
                 adapter: Adapter | None = None, request_id: str = "", own: bool = False) -> None:
        super().__init__("resting orders needed")
        self.account, self.market, self.markets = account, market, markets
        self.adapter = adapter  # reads what each listed order came from (`OrderOwners.learn_children`)
        self.request_id = request_id  # the decision that asked for it: resumed on that listing (`OrderOwners.asked`)
        self.own = own  # a listing of its own, asked for after the request arrived (never one already on its way)
        self.changes = changes  # the account's order changes through keyproxy when it was asked for
        self.bot = bot  # whose cancel-all asked: the listing's calls spend its share of the exchange's budget
        self.resume: Callable[[], Any] = lambda: None  # set by the core: the same decision, once more


class NeedOrders(Exception):  # noqa: N818 - a request for data, not an error; never reaches a bot
    """Orders a request names with no owner on record, where a stop may have become them: keyproxy asks the exchange
    about each (`calls`, with the account's key, in `bot`'s share of its budget), learns the answers as a bot's read
    (`Core.learn_read`: the stop each came from names its owner), reports with `OrderOwners.asked`, then
    `resume()`s the same decision once."""

    def __init__(self, account: str, calls: tuple[tuple[str, str, str, bytes], ...], bot: str, request_id: str,
                 order_ids: tuple[str, ...] = ()) -> None:
        super().__init__("orders needed")
        self.account, self.calls, self.bot, self.request_id = account, calls, bot, request_id
        self.order_ids = order_ids  # the order each call asks about: an answer that does not show it teaches nothing
        self.resume: Callable[[], Any] = lambda: None  # set by the core: the same decision, once more


class StopChildren:
    """`OrderOwners`' part that follows what stops became (the record, the listings and the asks are its own)."""

    _sequences: StateStore | None
    _listed: dict[tuple[str, str], tuple[int, int, tuple[Resting, ...] | None]]
    _asked: dict[tuple[str, str], str]
    changes: dict[str, int]
    clock_ms: Callable[[], int]
    owner: Callable[..., str | None]  # `OrderOwners.owner`: the order's owner on record
    changed: Callable[[str], None]  # `OrderOwners.changed`: a listing from before is stale

    def learn_resting_clients(self, account: str, adapter: Adapter, out: OutboundRequest, status: int,
                              body: bytes) -> None:
        """A resting order a read's answer lists with no owner on record, under a client id on record as a bot's
        (Binance: the order a bot's stop became carries the stop's client id): recorded as that bot's, before any
        bot can act on the listing (session 30: a bot polling the open orders could cancel it until keyproxy had
        read what the stop became). No bot places under another bot's client id (`own_client_ids`)."""
        for order_id, scope, client_id in adapter.resting_client_ids(out, status, body):
            self._learn_child(account, adapter, order_id, scope, client_id, "")

    def learn_children(self, account: str, adapter: Adapter, orders: tuple[Resting, ...]) -> None:
        """What each order of a listing of resting orders came from, where the listing names it (a stop's client id,
        Binance; its algo order, OKX): the order a bot's triggered stop became is that bot's before anything else
        has shown keyproxy which it became (session 31: another bot cancelled it by a guessed id)."""
        try:
            for o in orders:
                if (o.client_id or o.parent) and o.market in adapter.spawning_markets:
                    self._learn_child(account, adapter, o.order_id, f"{o.market}:{normalize_symbol(o.symbol)}",
                                      o.client_id, o.parent)
        except OwnersUnknown:
            return  # a fleet's record out of reach: the decision after it refuses what it cannot attribute

    def _learn_child(self, account: str, adapter: Adapter, order_id: str, scope: str, client_id: str,
                     parent: str) -> None:
        """A resting order of no owner on record: its conditional order's placer's, where the exchange names that
        order (`parent`, `algo#<id>`) or carries its client id (`client_id`). Never taken over from any owner."""
        if self._sequences is None:
            return
        key = placed_key(order_id, scope if adapter.id_per_market(order_id) else None)
        if self._sequences.placed_owner(account, (key,)) is not None:  # any instance's: never taken over
            return
        owner = None
        if parent:  # under any form a version recorded it (`spawned_unbooked`)
            owner = self._sequences.placed_owner(account, tuple(k for form in id_forms(parent)
                                                                for k in placed_keys(form, None)))
        elif client_id:
            # a stop's own client id (`cid:algo#X`, written by an algo placement alone), and the matching engine's
            # form, if on record, naming the same bot: a bot that guessed another's plain client id and placed under
            # it first is no stop's placer (session 30's review)
            stop = self._sequences.placed_owners(account, (client_key(ALGO + client_id),))
            plain = self._sequences.placed_owners(account, (placed_key(client_key(client_id), scope),))
            owner = stop[0] if len(stop) == 1 and set(plain) <= set(stop) else None
        if owner is not None:
            self.changed(account)
            self._sequences.record_placed_orders(account, owner, scope.partition(":")[0], (key, SPAWNED + key),
                                                 self.clock_ms() / 1000)

    def _spawned(self, account: str, adapter: Adapter, order_id: str, scope: str) -> bool:
        """Whether the order is one a bot's stop became (`SPAWNED`): its bot's count never held it (the stop's place
        is freed once it triggered), so cancelling it frees no place (session 31's review: a bot cancelling what its
        stops became, in a loop, rested more orders than its cap)."""
        assert self._sequences is not None
        keyed = adapter.id_per_market(order_id)
        keys = tuple(SPAWNED + k for form in id_forms(order_id) for k in placed_keys(form, scope if keyed else None))
        return self._sequences.placed_owner(account, keys) is not None

    def _learn_unowned(self, account: str, adapter: Adapter, bot: str, facts: RequestFacts, request_id: str) -> None:
        """Orders named by the exchange's id with no owner on record, where a triggered conditional order becomes an
        order of its own (`Adapter.spawning_markets`): each may be what another bot's stop became, which no read has
        shown keyproxy yet (session 31: a guessed Binance id cancelled it). Before the owners are looked up again,
        keyproxy asks about this decision's orders itself, after it began (a listing from before may predate the
        trigger): each order by its id where the adapter can ask for one (`NeedOrders`: Binance futures, OKX spot),
        else the account's resting orders (`NeedResting`: OKX swaps, or a batch across markets, whose ids are the
        account's, so its scope may not say where they rest). An ask that failed refuses."""
        spawning = adapter.spawning_markets
        if not spawning or self._sequences is None:
            return
        named = [*((oid, facts.scope) for oid in facts.cancels), *((t, facts.scope) for t in facts.touches if t),
                 *((leg.order_id, leg.scope) for leg in facts.placed() if facts.action == "amend" and leg.order_id)]
        unknown = [(oid, scope) for oid, scope in named if not oid.startswith(ALGO)
                   and (not adapter.id_per_market(oid) or scope.partition(":")[0] in spawning)
                   and self.owner(account, adapter, oid, scope) is None]
        if not unknown:
            return
        asked = self._asked.get((request_id, "orders"), self._asked.get((request_id, "*"))) if request_id else None
        if asked == FAILED:
            raise Refused("unavailable", "keyproxy could not ask the exchange whose order this names (an order a stop "
                          "became may be another bot's): retry", 1.0)
        if asked == MISSING:  # a cancel would find nothing now, and one sent later might find another bot's
            raise Refused("bad_request", "the exchange shows no order " + ", ".join(oid for oid, _ in unknown)[:200]
                          + ": keyproxy cannot tell whose it would be, so it sends nothing")
        if asked is not None:
            return
        calls = [adapter.order_query_request(scope, oid) if scope.partition(":")[0] in spawning else None
                 for oid, scope in unknown]
        if all(call is not None for call in calls):
            pairs = dict(zip(calls, (oid for oid, _ in unknown), strict=True))
            raise NeedOrders(account, tuple(c for c in pairs if c is not None), bot, request_id, tuple(pairs.values()))
        raise NeedResting(account, "*", frozenset(spawning), self.changes.get(account, 0), bot, adapter, request_id,
                          own=True)

    def asked(self, request_id: str, what: str, ended: str) -> None:
        """keyproxy's own ask for a decision is done (`what`: "orders", the orders of no owner it names; else the
        market of a listing), `ended` as `SHOWN`, `MISSING` or `FAILED` (these two refuse the decision)."""
        if not request_id:
            return
        if len(self._asked) >= ASKS_REMEMBERED:
            del self._asked[next(iter(self._asked))]
        self._asked[(request_id, what)] = ended

    def joined(self, need: NeedResting) -> None:
        """A cancel-all's listing that was on its way when it asked, shared: what it listed decides it too."""
        held = self._listed.get((need.account, need.market))
        self.asked(need.request_id, need.market, SHOWN if held is not None and held[2] is not None else FAILED)

    def spawned(self, account: str, bot: str, scope: str, book_key: str) -> None:
        """An order a bot's triggered conditional order became (the positions book's `on_spawn`, under the book's
        key: `id@scope` where ids are per market): recorded as the bot's, as if it placed it, so a halt sweeps it and
        only the bot may cancel or amend it."""
        if self._sequences is None:
            return
        order_id, keyed, _ = book_key.partition("@")
        key = placed_key(order_id, scope if keyed else None)
        if self._sequences.placed_owner(account, (key,)) is None:  # any instance's record: never taken over
            self.changed(account)
            self._sequences.record_placed_orders(account, bot, scope.partition(":")[0], (key, SPAWNED + key),
                                                 self.clock_ms() / 1000)

    def spawned_unbooked(self, account: str, parent: str, book_key: str, scope: str) -> None:
        """What a conditional order the positions book does not hold became (its `on_spawn_unbooked`): its placer's
        on record, as the order a booked one became is (`spawned`), so only that bot may cancel or amend it and a
        halt of it sweeps it (session 30's review: an OKX swap stop's order was nobody's)."""
        if self._sequences is None:
            return
        keys = tuple(k for form in id_forms(parent) for k in placed_keys(form, None))
        bot = self._sequences.placed_owner(account, keys)  # in a fleet, whichever instance recorded it
        if bot is not None:
            self.spawned(account, bot, scope, book_key)


def _canonical(order_id: str) -> str:
    """One spelling per order for `_named_orders`: a number as a reader of numbers takes it, else in lower case."""
    prefix = ALGO if order_id.startswith(ALGO) else ""
    bare = order_id.removeprefix(ALGO).strip()
    try:
        return prefix + str(int(bare))
    except ValueError:
        return prefix + bare.lower()


def id_forms(order_id: str) -> tuple[str, ...]:
    """An exchange order id as named, then the forms an exchange that reads ids as numbers or without regard to
    case would take for the same order: `0881` or `+881` for 881 (an id sent as text, read as a number), `ABC-1` for
    `abc-1` (a UUID or txid). Not every exchange does (OKX documents `ordId` as a string, and whether it reads
    `0881` as 881 is not confirmed): looking the other forms up too only ever finds an owner the exchange might
    act on, so a bot cannot slip past the own-orders check by writing another bot's id differently. Exchange
    ids only: client ids are the bots' own text, where `a1` and `A1` are two bots' ids. An algo order's id
    (`algo#<algoId>`) takes the same forms after its prefix, then the bare id's (how a version before session 30
    recorded OKX's)."""
    if order_id.startswith(ALGO):
        bare = id_forms(order_id.removeprefix(ALGO))
        return tuple(dict.fromkeys((*(ALGO + f for f in bare), *bare)))
    forms = [order_id]
    text = order_id.strip()
    try:  # what a number parser reads: leading zeros, a sign, non-ASCII digits (Java's Long.parseLong takes `８８１`)
        forms.append(str(int(text)))
    except ValueError:
        if text.isascii():
            forms += [text.lower(), text.upper()]
    return tuple(dict.fromkeys(forms))
