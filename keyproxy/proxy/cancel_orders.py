"""Cancel an account's resting orders (or one bot's) with keyproxy's own signed calls.

Used after a halt is in force (`keyproxy halt ... --cancel-orders`, the `cancel_orders` anomaly action,
a silent bot's heartbeat): the halt stops new orders, this removes the ones already on the book. It
waits for the scope's orders on their way when the halt came (sent, answer not read: SETTLE_S at most), then
lists what the exchange says is resting (never what keyproxy believes), keeps the orders of the halted
scope (a bot's: the ids the exchange gave that bot's orders, `StateStore.placed_orders`), cancels them by
id and lists again, so the summary says what was cancelled, what failed and what is still resting.
Every cancel is an audit event; no cancel is retried (a listing page refused for rate or failing is asked again,
`_listed`) and nothing but a cancel is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from keyproxy.audit.log import get_logger
from keyproxy.exchanges.open_orders import SWEEPS, MAX_PAGES, ListingError, Resting, Spec
from keyproxy.proxy.own_calls import SEND_ERRORS, OwnCalls, Sender, what_failed
from keyproxy.proxy.registry import AccountEntry
from keyproxy.policy.model import normalize_symbol
from keyproxy.state import StateStore, client_key, placed_key, placed_keys

log = get_logger("keyproxy.orders")

# a fleet's (fleet/gate.py `FleetGate.pending_of`): (account, bot or None) -> orders on their way through any
# instance, None when Redis cannot be asked
FleetPending = Callable[[str, str | None], Awaitable[int | None]]
# the daemon's: (account, bot or None) -> (orders on their way whose answer may come, those whose answer never will)
OnTheirWay = Callable[[str, str | None], tuple[int, int]]
CANCEL_CONCURRENCY = 4  # cancels in flight per account: fast, well inside every exchange's order-rate limit
# a sweep waits this long at most for the scope's orders already on their way (sent before the halt, answer not read)
# to be answered and learned before it lists: longer than REST's upstream timeout (10 s), so every answer that can
# come has come (session 26's review: an order sent 0.3 s before `halt --cancel-orders` rested after a clean sweep)
SETTLE_S = 12.0
LIST_RETRIES, LIST_RETRY_S = 2, 1.0  # a listing page refused for rate: asked again 1 s, then 2 s later


async def _list(calls: Sender, account: AccountEntry, markets: frozenset[str],
                symbols: Mapping[str, frozenset[str]], names: dict[str, str] | None = None,
                whole: bool = False) -> list[Resting]:
    """What the exchange lists as resting; `names` collects the market names any answer publishes. `whole`: a
    listing with pages left after MAX_PAGES is a ListingError (what it left out could be another bot's)."""
    sweep = SWEEPS[account.info.exchange]
    adapter: Any = account.adapter
    assert account.key is not None
    found: list[Resting] = []
    for first in sweep.listings(markets, account.key, symbols):
        spec: Spec | None = first
        for _ in range(MAX_PAGES):
            if spec is None:
                break
            status, body = await _listed(calls, account, spec)
            if names is not None and 200 <= status < 300:
                names.update(adapter.market_names(spec[1], body))
            page, spec = sweep.resting(spec, status, body)
            found.extend(page)
        if whole and spec is not None:
            raise ListingError(f"more than {MAX_PAGES} pages of open orders")
    return list({_where(o): o for o in found}.values())


async def _listed(calls: Sender, account: AccountEntry, spec: Spec) -> tuple[int, bytes]:
    """One listing page; asked again (LIST_RETRIES times, a window apart) while the exchange refuses it for rate or
    fails (HTTP 429, 5xx): a bot reading the same endpoint in a loop must not make a halt's sweep give up. Not a
    Binance 429: Binance bans the IP (every bot's) for requests that do not back off after one."""
    for attempt in range(LIST_RETRIES + 1):
        status, body = await calls.send(account, spec)
        backs_off = status == 429 and account.info.exchange == "binance"
        if (status != 429 and status < 500) or backs_off or attempt == LIST_RETRIES:
            break
        await asyncio.sleep(LIST_RETRY_S * (attempt + 1))
    return status, body


async def list_resting(calls: Sender, account: AccountEntry, markets: frozenset[str]) -> list[Resting]:
    """What the exchange lists as resting in `markets` (and whatever else its listing covers): what a cancel-all
    is judged by where the positions book does not hold the orders (proxy/order_owners.py)."""
    return await _list(calls, account, markets, {}, whole=True)


def _symbols(keys: Iterable[str]) -> dict[str, frozenset[str]]:
    """market -> the symbols of the `placed_orders` keys that name their scope (`id@market:symbol`)."""
    found: dict[str, set[str]] = {}
    for key in keys:
        market, colon, symbol = key.partition("@")[2].partition(":")
        if colon and symbol:
            found.setdefault(market, set()).add(symbol)
    return {m: frozenset(s) for m, s in found.items()}


def _where(o: Resting) -> tuple[str, str, str]:
    """An order as the exchange lists it: ids may be per symbol (Binance's), so never the id alone."""
    return o.market, o.symbol, o.order_id


async def _settled(on_their_way: OnTheirWay, account: str, bot: str | None,
                   fleet: FleetPending | None = None) -> int:
    """Until the scope's orders on their way (sent, answer not read) are answered and learned, SETTLE_S at most:
    the halt stops new ones, these may still rest. How many are of unknown fate then: still on their way, or whose
    answer will never be read (timed out, a 5xx, their socket closed: they may rest all the same). In a fleet also
    those on their way through the other instances (`fleet`; Redis out of reach: one of unknown fate)."""
    deadline = time.monotonic() + SETTLE_S
    while (left := on_their_way(account, bot))[0] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    unknown = sum(left)
    if fleet is not None:
        while (elsewhere := await fleet(account, bot)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        unknown = max(unknown, 1 if elsewhere is None else elsewhere)  # this instance's are among the fleet's
    return unknown


async def cancel_account_orders(calls: OwnCalls, store: StateStore, account: AccountEntry, bot: str | None,
                                audit: Callable[..., object], reason: str,
                                on_their_way: OnTheirWay = lambda account, bot: (0, 0),
                                fleet: FleetPending | None = None) -> dict[str, Any]:
    """Cancel every resting order of `account` (bot None) or those `bot` placed, once the scope's orders on their
    way are answered (`on_their_way`: how many there are); the summary for the operator."""
    name, exchange = account.info.name, account.info.exchange
    summary: dict[str, Any] = {"account": name, "exchange": exchange, "bot": bot, "cancelled": [], "failed": [],
                               "left": [], "error": None, "unanswered": 0}
    sweep = SWEEPS.get(exchange)
    if sweep is None:
        summary["error"] = f"keyproxy cannot cancel orders on {exchange} yet: cancel them on the exchange"
        return summary
    if account.adapter is None or account.upstream is None or account.key is None:
        summary["error"] = f"account {name!r} is not served by this daemon (its key is not loaded)"
        return summary
    unanswered = await _settled(on_their_way, name, bot, fleet)
    placed = store.placed_orders(name)
    markets = frozenset(m for b, m in placed.values() if bot is None or b == bot)
    symbols = _symbols(k for k, (b, _) in placed.items() if bot is None or b == bot)
    try:
        names: dict[str, str] = {}
        resting = await _list(calls, account, markets, symbols, names)
    except SEND_ERRORS as e:
        summary["error"] = f"the exchange's open orders could not be listed: {what_failed(e)}"
        audit("order.cancel", account=name, bot=bot, reason=reason, result=f"failed: {summary['error']}"[:300])
        return summary
    per_symbol = bool(getattr(account.adapter, "order_ids_per_market", False))
    # read again: an order whose answer was learned while the exchange listed (the halt was in force, but an order
    # on its way then could still be placed) is the bot's too
    placed = store.placed_orders(name)

    def key(o: Resting) -> str:  # its `placed_orders` key (recorded by an older version: `id@symbol`, or the id)
        scope = f"{o.market}:{normalize_symbol(o.symbol)}" if per_symbol else None
        forms = placed_keys(o.order_id, scope)
        if o.client_id:  # else its client id's: the order a bot's Binance stop became, before keyproxy read which
            forms += (placed_key(client_key(o.client_id), scope),)
        if o.parent:  # else the conditional order's it became (OKX names it), before keyproxy read which
            forms += placed_keys(o.parent, None)
        return next((k for k in forms if k in placed), o.order_id)

    def own_key(o: Resting) -> str:  # what to forget once it is cancelled: never the conditional order's record
        return o.order_id if o.parent and key(o) in placed_keys(o.parent, None) else key(o)

    targets = [o for o in resting if bot is None or placed.get(key(o), ("", ""))[0] == bot]
    gate = asyncio.Semaphore(CANCEL_CONCURRENCY)

    async def cancel(spec: Spec, orders: list[Resting]) -> dict[tuple[str, str, str], str | None]:
        async with gate:
            try:
                status, body = await calls.send(account, spec)
            except SEND_ERRORS as e:
                return {_where(o): f"not sent or no answer: {what_failed(e)}" for o in orders}
            said = sweep.cancelled(orders, status, body)  # by id: unique within one cancel call
            return {_where(o): said.get(o.order_id, "not sent") for o in orders}

    forget: list[str] = []
    batches = sweep.cancels(targets, names)
    results: dict[tuple[str, str, str], str | None] = {}
    for answer in await asyncio.gather(*(cancel(spec, orders) for spec, orders in batches)):
        results.update(answer)
    for o in targets:
        outcome = results.get(_where(o), "not sent")
        owner = placed.get(key(o), ("", ""))[0] or None
        audit("order.cancel", account=name, bot=owner, order_id=o.order_id, symbol=o.symbol, reason=reason,
              result="cancelled" if outcome is None else f"failed: {outcome}"[:300])
        if outcome is None:
            summary["cancelled"].append({"order_id": o.order_id, "symbol": o.symbol, "bot": owner})
            forget.append(own_key(o))
        else:
            summary["failed"].append({"order_id": o.order_id, "symbol": o.symbol, "bot": owner, "error": outcome})
    try:
        still = {_where(o) for o in await _list(calls, account, markets, symbols)} if targets else set()
    except SEND_ERRORS as e:
        summary["error"] = f"cancels sent, but the open orders could not be listed again: {what_failed(e)}"
        still = {_where(o) for o in targets if results.get(_where(o)) is not None}
    summary["left"] = [{"order_id": o.order_id, "symbol": o.symbol} for o in targets if _where(o) in still]
    if unanswered:  # sent before the halt, no answer read within SETTLE_S: they may rest, unseen by this sweep
        summary["unanswered"] = unanswered
        summary["error"] = summary["error"] or (f"{unanswered} order(s) sent before the halt had no answer read "
                                                f"(within {SETTLE_S:g} s, or none will come): they may rest; list "
                                                "the account's open orders on the exchange (or run the sweep again)")
    # an attribution is dropped once its order is cancelled; the rest age out (`MAX_PLACED_ORDERS`)
    store.forget_placed_orders(name, forget)
    return summary


class Canceller:
    """The daemon's entry point: cancel the orders of a halt's scope (all, an account, a bot)."""

    def __init__(self, snapshot: Callable[[], Any], store: StateStore, calls: OwnCalls,
                 audit: Callable[..., object]) -> None:
        self._snapshot = snapshot
        self._store = store
        self._calls = calls
        self._audit = audit
        # run for each account whose orders a sweep cancelled (the daemon: the risk watch's reconciliation, so the
        # positions book stops holding them as resting: a cancel-all there is judged by it)
        self.after: Callable[[str], Awaitable[object]] | None = None
        # the daemon's: (account, bot or None) -> the scope's orders on their way (which a sweep waits for), and those
        # whose answer will never be read (reported: their fate is unknown)
        self.on_their_way: OnTheirWay = lambda account, bot: (0, 0)
        self.fleet_pending: FleetPending | None = None  # in a fleet: the orders on their way through any instance

    def accounts_of(self, scope: str, target: str) -> tuple[list[AccountEntry], str | None]:
        """The accounts a scope covers and the bot whose orders alone are cancelled (None: every order)."""
        snap = self._snapshot()
        if scope == "all":
            return list(snap.accounts.values()), None
        if scope == "account":
            entry = snap.accounts.get(target)
            if entry is None:
                raise KeyError(f"no account named {target!r} served by this daemon")
            return [entry], None
        bot = snap.bot_named(target)
        if bot is None or bot.info.account not in snap.accounts:
            raise KeyError(f"no bot named {target!r} served by this daemon")
        return [snap.accounts[bot.info.account]], target

    async def cancel(self, scope: str, target: str, reason: str) -> list[dict[str, Any]]:
        accounts, bot = self.accounts_of(scope, target)
        self._audit("orders.cancel_all", scope=scope, target=target, reason=reason, result="attempt",
                    accounts=sorted(a.info.name for a in accounts))
        summaries = await asyncio.gather(*(cancel_account_orders(self._calls, self._store, a, bot, self._audit,
                                                                 reason, self.on_their_way, self.fleet_pending)
                                           for a in accounts))
        if self.after is not None:
            for summary in summaries:
                if summary["cancelled"]:
                    try:
                        await self.after(summary["account"])
                    except Exception as e:  # noqa: BLE001 - the orders are cancelled; the book catches up later
                        log.warning("positions book not reconciled after a sweep", account=summary["account"],
                                    kind=type(e).__name__)
        self._audit("orders.cancel_all", scope=scope, target=target, reason=reason, result="done",
                    cancelled=sum(len(s["cancelled"]) for s in summaries),
                    failed=sum(len(s["failed"]) for s in summaries), left=sum(len(s["left"]) for s in summaries),
                    errors=[s["account"] for s in summaries if s["error"]])
        return sorted(summaries, key=lambda s: s["account"])
