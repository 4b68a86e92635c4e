"""keyproxy's own calls for data a decision both edges share needs: public market data, and an account's resting orders.

Market lists: a request or frame naming a market by an id keyproxy has no name for (Hyperliquid's asset
index after a restart). Reference prices: an order a price band checks whose reference is missing or old
(`NeedReference`, proxy/markets.py). Both are the exchange's public calls, charged to its rate budget
like any request, answered only by the hosts in the account's table, never retried, and bounded: at most
one market-list fetch per account per MARKET_LIST_PAUSE, one fetch of a reference call at a time, and
none again within REFERENCE_PAUSE, so a bot cannot make keyproxy call the exchange in a loop. A failed
call is no error here: the decision then refuses for want of the data (fail closed).

Resting orders: a cancel-all where the positions book does not hold the orders (`NeedResting`,
proxy/order_owners.py) is decided on what the exchange lists as resting there, listed with the account's real key as
a halt's sweep lists them (proxy/cancel_orders.py): anew once an order was placed or cancelled on the account
through keyproxy since the last listing, or after LISTING_REUSE_MS (cancel-alls arriving while a listing is on its
way share it), so a bot cannot make keyproxy spend the account's rate limit in a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from keyproxy.exchanges._fills import loads
from keyproxy.exchanges.base import IncomingRequest, order_ids_in
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.cancel_orders import list_resting
from keyproxy.proxy.core import Core
from keyproxy.proxy.outcome import Outcome, Route, new_request_id
from keyproxy.proxy.markets import NeedReference, PublicCall, scope_reference
from keyproxy.proxy.order_owners import FAILED, MISSING, SHOWN, NeedOrders, NeedResting
from keyproxy.proxy.sweeps import NeedQuiet
from keyproxy.proxy.own_calls import SEND_ERRORS, OwnCalls
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import AccountEntry
from keyproxy.proxy.upstream import UpstreamClients

BUFFERED_RESPONSE = 8 << 20  # an own call's answer larger than this is dropped unread
MARKET_LIST_PAUSE = 10.0  # seconds between keyproxy's own market-list calls for one account
REFERENCE_PAUSE = 1.0  # seconds between two of keyproxy's own calls for the same reference
NEEDS = 4  # a decision resumed at most this often (a wait, then a listing or references: two in practice)
OWN_CALL_TIMEOUT = 5.0  # an order waits this long at most for its reference


class MarketData:
    """The public calls keyproxy makes on its own; `admit` is the core's admission with them."""

    def __init__(self, core: Core, clients: UpstreamClients, upstream_timeout: float = 10.0) -> None:
        self.core = core
        self._clients = clients
        self._timeout = min(upstream_timeout, OWN_CALL_TIMEOUT)
        self._market_lists: dict[str, float] = {}  # account -> when keyproxy last fetched its market lists
        self._fetching_lists: dict[str, asyncio.Future[None]] = {}  # account -> its market lists' fetch on its way
        self._references: dict[tuple[str, PublicCall], float] = {}  # -> when keyproxy last asked
        self._in_flight: dict[tuple[str, PublicCall], asyncio.Future[None]] = {}
        self._listings: dict[tuple[str, str, int], asyncio.Future[None]] = {}  # (account, market, changes)
        self._own = OwnCalls(core, clients)  # the listings' signed calls

    async def admit(self, route: Route, incoming: IncomingRequest, peer: str, outcome: Outcome,
                    session: str | None = None) -> tuple[Route, IncomingRequest]:
        """`Core.admit`, with the reference prices the decision asks for fetched and the decision resumed once."""
        await self.ensure_markets(route, incoming)
        return await self.settle(route, lambda: self.core.admit(route, incoming, peer, outcome, session=session))

    async def settle(self, route: Route, decide: Callable[[], tuple[Route, IncomingRequest]]
                     ) -> tuple[Route, IncomingRequest]:
        """A decision of the core's, resumed once what it asks for is here: the reference prices it needs, the
        orders resting where a cancel-all would cancel, the other bots' requests before it (sweeps.py)."""
        for _ in range(NEEDS):
            try:
                return decide()
            except NeedQuiet as wait:
                await self.core.sweeps.quiet(wait)
                decide = wait.resume  # type: ignore[assignment]
            except NeedResting as need:
                await self._resting(route.account, need)
                decide = need.resume
            except NeedOrders as need:
                await self._orders(route.account, need)
                decide = need.resume
            except NeedReference as need:
                got = await asyncio.gather(*(self._reference(route.account, symbol, call, need.bot, need.facts)
                                             for symbol, call in need.calls), return_exceptions=True)
                failed = next((e for e in got if isinstance(e, BaseException)), None)
                if failed is not None:
                    raise failed
                decide = need.resume
        try:
            return decide()
        except (NeedQuiet, NeedResting, NeedOrders, NeedReference):  # asked for more than NEEDS times: never a 500
            raise Refused("unavailable", "this request's decision kept waiting for other requests; retry", 1.0) \
                from None

    async def ensure_markets(self, route: Route, incoming: IncomingRequest) -> None:
        """Before a request (or WebSocket frame) naming a market by an id keyproxy has no name for: fetch the
        exchange's market lists."""
        adapter, name = route.account.adapter, route.account.info.name
        if adapter is None or not adapter.market_list_requests \
                or not self.core.markets.missing(name, route.adapter, incoming):
            return
        await self.fetch_market_lists(route.account)

    async def fetch_market_lists(self, account: AccountEntry) -> None:
        """The exchange's market lists for the account (`Adapter.market_list_requests`): one fetch at a time, at most
        one per MARKET_LIST_PAUSE; a failure leaves what was held."""
        adapter, name = account.adapter, account.info.name
        if adapter is None or not adapter.market_list_requests:
            return
        fetching = self._fetching_lists.get(name)
        if fetching is not None:  # one fetch at a time per account: the others wait for its answer
            await asyncio.shield(fetching)
            return
        now = time.monotonic()
        if now - self._market_lists.get(name, -MARKET_LIST_PAUSE) < MARKET_LIST_PAUSE:
            return
        self._market_lists[name] = now
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetching_lists[name] = done
        try:
            for call in adapter.market_list_requests:
                try:
                    answer = await self._call(account, call)
                except Refused:  # the exchange's budget is spent: the request goes on without the list
                    return
                if answer is None:
                    return
                self.core.markets.learn(name, adapter, call[1], answer)
            self.core.markets.listed.add(name)
        finally:
            del self._fetching_lists[name]
            done.set_result(None)

    async def refresh_price(self, account: AccountEntry, scope: str) -> None:
        """The scope's reference price fetched again (the loss watch valuing a position)."""
        call = scope_reference(account.adapter, scope)
        if call is not None:
            await self._reference(account, scope.partition(":")[2], call)

    async def _reference(self, account: AccountEntry, symbol: str, call: PublicCall, bot: str = "",
                         facts: Any = None) -> None:
        """One reference call, shared by every order waiting for it; `bot`: the one whose order asked, whose share
        of the exchange's budget it spends (none: keyproxy's own, the loss watch's), Refused when that share is
        spent; `facts`: its request's (a way out may spend the budget's reserve). A call refused for the budget
        was not made: an order that waited for it asks in its own share, the next one asks again."""
        key = (account.info.name, call)
        while (waiting := self._in_flight.get(key)) is not None:
            if await asyncio.shield(waiting):
                return
        now = time.monotonic()
        if now - self._references.get(key, -REFERENCE_PAUSE) < REFERENCE_PAUSE:
            return  # asked a moment ago: what it answered is all there is
        self._references[key] = now
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = done
        asked = False
        try:
            answer = await self._call(account, call, bot, facts)
            asked = True
            if answer is not None and account.adapter is not None:
                self.core.markets.learn_reference(account.info.name, account.adapter, symbol, call[1], answer)
        except Refused:
            self._references.pop(key, None)
            if bot:  # the asking bot's share is spent: its order is refused for it (session 28's review)
                raise
        finally:
            del self._in_flight[key]
            done.set_result(asked)
            if len(self._references) > 10_000:
                self._references.clear()

    async def _resting(self, account: AccountEntry, need: NeedResting) -> None:
        """The account's resting orders where a cancel-all asks (one listing shared by every cancel-all waiting),
        handed to the owners' record; a failed listing too (the cancel-all is then refused)."""
        # joined only while no order changed since it began, and never by a decision that needs one asked for after
        # it arrived (`NeedResting.own`)
        key = (need.account, need.market, need.changes)
        waiting = None if need.own else self._listings.get(key)
        if waiting is not None:
            await asyncio.shield(waiting)
            self.core.owners.joined(need)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not need.own:
            self._listings[key] = done
        asked = self.core.clock_ms()
        orders: tuple[Any, ...] | None = None
        spent = False
        try:
            if account.upstream is not None and account.key is not None and account.adapter is not None:
                calls = _Charged(self.core, self._own, need.bot)
                orders = tuple(await asyncio.wait_for(list_resting(calls, account, need.markets), self._timeout))
        except Refused:  # the exchange's budget is spent: this bot is refused for it, the others list in their turn
            spent = True
            raise
        except (*SEND_ERRORS, KeyError):
            orders = None
        finally:
            if not spent:
                self.core.owners.learn_resting(need, orders, asked)
            if self._listings.get(key) is done:
                del self._listings[key]
            done.set_result(None)

    async def _orders(self, account: AccountEntry, need: NeedOrders) -> None:
        """Each order a decision names with no owner on record, asked about with the account's key in the asking
        bot's share of the budget (spent: that bot is refused for it) and learned as a read; an exchange that did not
        answer (a send error, a 5xx or 429) leaves the decision refused. An error answer (no such order) teaches
        nothing, and needs nothing: no order of anyone's rests under that id."""
        ended = SHOWN if account.upstream is not None and account.key is not None and account.adapter is not None \
            else FAILED
        calls = _Charged(self.core, self._own, need.bot)
        try:
            for call, order_id in zip(need.calls, need.order_ids, strict=True) if ended == SHOWN else ():
                try:
                    status, body = await asyncio.wait_for(calls.send(account, call), self._timeout)
                except (*SEND_ERRORS, KeyError):
                    ended = FAILED
                    break
                assert account.adapter is not None
                if not shows(account.adapter, status, body, order_id):
                    ended = MISSING if not_found(account.adapter, status, body) else FAILED
                    break
                self.core.learn_read(account.info.name, account.adapter, call, status, body)
        finally:
            self.core.owners.asked(need.request_id, "orders", ended)

    async def _call(self, account: AccountEntry, call: PublicCall, bot: str = "", facts: Any = None) -> bytes | None:
        """A public call of keyproxy's own to the account's exchange, charged to its rate budget (in `bot`'s share
        when a bot's request asked for it; with its request's `facts`, so a way out may use the reserve): the
        answer's body when the exchange answered 200, else None; Refused when the budget is spent."""
        method, path, query, body = call
        if account.upstream is None:
            return None
        try:
            own_route, charges, own = charged(self.core, account, call, bot, facts)
        except Refused as refused:
            if refused.code == "budget_exhausted":  # never asked: the callers say what follows
                raise
            return None  # not an endpoint keyproxy knows here
        session = self._clients.session(account.upstream.insecure_loopback)
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=min(5.0, self._timeout))
        try:
            async with session.request(method, own_route.origin + path + (f"?{query}" if query else ""),
                                       data=body or None, headers={"content-type": "application/json"},
                                       allow_redirects=False, timeout=timeout) as resp:
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > BUFFERED_RESPONSE:
                        return None
                    chunks.append(chunk)
                answer = b"".join(chunks)
                self.core.budget.observe(own_route, charges, resp.status, resp.headers, answer, own)
                return answer if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None


class _Charged:
    """`OwnCalls` for a listing a bot's cancel-all asked for: every page charged to the exchange's budget in that
    bot's share before it goes (spent: `Refused`, nothing sent) and its answer counted, like the bot's own calls
    (session 28: in a fleet every cancel-all listed anew, unbudgeted). A halt's sweep lists with `OwnCalls` as it is:
    removing orders never waits for the budget."""

    def __init__(self, core: Any, own: OwnCalls, bot: str) -> None:
        self._core, self._own, self._bot = core, own, bot

    async def send(self, account: AccountEntry, spec: PublicCall) -> tuple[int, bytes]:
        # a cancel-all's listing: a way out, which may use the budget's reserve as the cancel-all itself may
        route, charges, outcome = charged(self._core, account, spec, self._bot, _LISTING)
        return await self._own.send(account, spec, lambda status, headers, answer: self._core.budget.observe(
            route, charges, status, headers, answer, outcome))


def shows(adapter: Any, status: int, body: bytes, order_id: str) -> bool:
    """Whether an answer about one order is the exchange's account of that order (a 2xx naming its id under the
    adapter's `order_id_keys`): an error, a busy exchange, an unreadable answer or a wrong symbol teaches nothing
    (session 31's review: any answer under 500 counted as an account of the order)."""
    if not 200 <= status < 300 or not body:
        return False
    return order_id.partition("@")[0] in order_ids_in(loads(body), adapter.order_id_keys)


def not_found(adapter: Any, status: int, body: bytes) -> bool:
    """Whether an answer about one order is the exchange saying it holds no such order (its own code for that,
    `Adapter.order_not_found_codes`), not a refusal for another reason (a clock, a weight, a busy exchange)."""
    doc = loads(body) if 400 <= status < 500 or 200 <= status < 300 else None
    return isinstance(doc, dict) and str(doc.get("code")) in adapter.order_not_found_codes


def charged(core: Any, account: AccountEntry, call: PublicCall, bot: str, facts: Any
            ) -> tuple[Route, tuple[Any, ...], Outcome]:
    """A call of keyproxy's own routed and charged to the exchange's budget in `bot`'s share (none: keyproxy's),
    before it goes: (its route, the charges its answer is observed against, its outcome). Refused if it cannot."""
    method, path, query, body = call
    outcome = Outcome(request_id=new_request_id(), method=method, path=path, bot=bot or "(keyproxy)", facts=facts)
    route = core.route(account.info.name, method, path, outcome)
    return route, core.budget.spend(route, IncomingRequest(method, path, query, {}, body), outcome), outcome


_LISTING = RequestFacts(action="cancel")  # what a cancel-all's listing serves, for the budget's reserve
