"""Binance REST emulator: spot ``/api/v3``, wallet/margin ``/sapi``, USD-M
``/fapi`` and COIN-M ``/dapi`` on one loopback port, told apart by path prefix.

Written from Binance's documentation (see ``binance_auth``), independently of
keyproxy's own exchange adapters, so a shared misunderstanding cannot pass.

Endpoints an unmodified ccxt 4.5.90 ``binance()`` (default options, apiKey and
secret set, every ``urls['api']`` host pointed here) calls, in order; all served:

* ``load_markets()``: ``GET /sapi/v1/capital/config/getall`` (signed),
  ``GET /sapi/v1/margin/allPairs`` (signed; from fetch_currencies),
  ``GET /api/v3/exchangeInfo``, ``GET /sapi/v1/margin/allPairs`` (again, from
  fetch_markets), ``GET /sapi/v1/margin/isolated/allPairs`` (signed),
  ``GET /fapi/v1/exchangeInfo``, ``GET /dapi/v1/exchangeInfo``.
  (margin/allPairs is MARKET_DATA at Binance; ccxt signs it anyway.)
* ``fetch_balance()``: ``GET /api/v3/account``; ``{'type': 'swap'}``:
  ``GET /fapi/v3/account`` (``/fapi/v2/account`` with ``useV2``);
  ``{'type': 'swap', 'subType': 'inverse'}``: ``GET /dapi/v1/account``.
* ``create_order()`` limit or market: ``POST /api/v3/order``; swap: ``POST /fapi/v1/order``.
* ``fetch_open_orders(symbol)``: ``GET /api/v3/openOrders`` (swap ``/fapi/v1/openOrders``).
* ``fetch_order()``: ``GET /api/v3/order`` (swap ``GET /fapi/v1/order``).
* ``cancel_order()``: ``DELETE /api/v3/order`` (swap ``DELETE /fapi/v1/order``).
* ``fetch_ticker()``: ``GET /api/v3/ticker/24hr``; ``fetch_time()``: ``GET /api/v3/time``;
  ``fetch_order_book()``: ``GET /api/v3/depth``.
* ``set_leverage()``: ``POST /fapi/v1/leverage``; ``fetch_positions()``:
  ``GET /fapi/v1/leverageBracket`` then ``GET /fapi/v3/positionRisk``.
* ``withdraw()``: ``POST /sapi/v1/capital/withdraw/apply`` (ccxt raw-encodes this one).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from keyproxy.emulator.accounts import AccountsError, EmulatedKey
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.binance_limits import SapiLimits, WeightLimit, weight
from keyproxy.emulator.binance_algo import AlgoOrders
from keyproxy.emulator.binance_auth import (
    API_KEY_RE,
    REJECTED_KEY,
    AuthOutcome,
    BinanceError,
    Verifier,
    authenticate,
    mandatory_missing,
    parse_request,
)
from keyproxy.emulator.binance_data import MARKETS, Market, exchange_info, fmt
from keyproxy.emulator.binance_history import HistoryError, klines, my_trades
from keyproxy.emulator.binance_margin import MarginHandlers
from keyproxy.emulator.binance_orders import decimal_param, futures_order, parse_new_order, spot_order
from keyproxy.emulator.binance_routes import (
    DEFAULT_PERMISSIONS,
    PREFIXES,
    READ,
    ROUTES,
    WITHDRAW,
    Call,
    Route,
    venue_of,
)
from keyproxy.emulator.binance_state import ZERO, Account
from keyproxy.emulator.binance_streams import UserStreams
from keyproxy.emulator.binance_ws import WsApi
from keyproxy.emulator.binance_wallet import WalletHandlers


_FIRST_PRICES = {(venue, symbol): m.last for venue, markets in MARKETS.items() for symbol, m in markets.items()}


class BinanceEmulator(WalletHandlers, MarginHandlers, AlgoOrders):
    """Binance, as far as bots and ccxt can tell."""

    name = "binance"

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        for key in keys:
            if not API_KEY_RE.match(key.api_key):
                raise AccountsError(
                    f"accounts: binance api_key {key.api_key[:8]}... is not 64 alphanumerics"
                )
        self.clock = clock
        self.keys = list(keys)
        self.verifiers = {k.api_key: Verifier(k) for k in keys}
        self.ws = WsApi(self)
        self.limits = WeightLimit()  # the IP's request weight: kept across resets, off until a test sets it
        self.sapi_limits = SapiLimits()  # the IP's /sapi/ weight per endpoint: likewise
        self.reset()

    def reset(self) -> None:
        for venue, markets in MARKETS.items():  # prices a test moved go back (set_price)
            for symbol, market in markets.items():
                object.__setattr__(market, "last", _FIRST_PRICES[(venue, symbol)])
        self.streams = UserStreams()  # listenKeys belong to the accounts reset here
        self.dstreams = UserStreams()  # COIN-M's own listenKeys
        # several keys of one account (a rotation's old and new key) see the same balances and orders
        shared: dict[str, Account] = {}
        for k in self.keys:
            shared.setdefault(k.account or k.api_key, Account.fresh(k))
        self.accounts = {k.api_key: shared[k.account or k.api_key] for k in self.keys}
        self._next_order_id = 1_000_001

    def state(self) -> dict[str, Any]:
        return {key: acct.snapshot() for key, acct in self.accounts.items()}

    def owns(self, path: str) -> bool:
        return any(path.startswith(p) for p in PREFIXES)

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        """Spot `/api/` requests are weighed against the IP's limit first (binance_limits.py); every `/api/`
        answer reports the minute's weight in X-MBX-USED-WEIGHT-1M."""
        if request.path.startswith("/sapi/"):
            used, retry_after = self.sapi_limits.charge(request.path, self.clock())
            sapi = {"X-SAPI-USED-IP-WEIGHT-1M": str(used)}
            if retry_after is not None:
                note.exchange, note.error_code = self.name, -1003
                return web.json_response({"code": -1003, "msg": "Too much request weight used; current limit is "
                                          f"{self.sapi_limits.per_minute} request weight per 1 MINUTE."}, status=429,
                                         headers={**sapi, "Retry-After": str(max(1, math.ceil(retry_after)))})
            response = await self._handle(request, body, note)
            response.headers.update(sapi)
            return response
        if not request.path.startswith("/api/"):
            return await self._handle(request, body, note)
        query = request.raw_path.partition("?")[2]
        limited = self.limits.charge(weight(request.method, request.path, query), self.clock())
        used = {"X-MBX-USED-WEIGHT-1M": str(self.limits.used)}
        if limited is not None:
            status, retry_after = limited
            note.exchange, note.error_code = self.name, -1003
            message = ("Way too much request weight used; IP banned until "
                       f"{int((self.clock() + retry_after) * 1000)}." if status == 418 else
                       f"Too much request weight used; current limit is {self.limits.per_minute} request weight "
                       "per 1 MINUTE.") + " Please use WebSocket Streams for live updates to avoid bans."
            return web.json_response({"code": -1003, "msg": message}, status=status,
                                     headers={**used, "Retry-After": str(max(1, math.ceil(retry_after)))})
        response = await self._handle(request, body, note)
        response.headers.update(used)
        return response

    async def _handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        note.api_key = request.headers.get("X-MBX-APIKEY")
        route = ROUTES.get((request.method, request.path))
        if route is None:
            return web.Response(
                status=404, text=f"emulator: no Binance endpoint {request.method} {request.path}"
            )
        now_dec = Decimal(str(self.clock())) * 1000
        try:
            raw_query = request.raw_path.partition("?")[2].encode("utf-8", errors="surrogateescape")
            parsed = parse_request(request.method, raw_query, body)
            account, key = None, None
            if route.security != "NONE":
                outcome = AuthOutcome()
                try:
                    key = authenticate(
                        signed=route.security == "SIGNED",
                        api_key_header=note.api_key,
                        parsed=parsed,
                        verifiers=self.verifiers,
                        now_ms=now_dec,
                        outcome=outcome,
                    )
                finally:
                    note.signature_verified = outcome.signature_verified
                self._permit(route, key)
                account = self.accounts[key.api_key]
            handler: Callable[[Call], Any] = getattr(self, route.handler)
            result = handler(Call(venue_of(request.path), parsed.params, account, int(now_dec), key))
        except BinanceError as err:
            note.error_code = err.code
            return web.json_response(err.body(), status=err.status)
        self._order_events((request.method, request.path), account, result, int(now_dec))
        return web.json_response(result)

    def run_route(self, route_key: tuple[str, str], params: dict[str, str], account: Any, key: Any) -> Any:
        """A WebSocket API method, run by the REST handler it mirrors (binance_ws.py authenticated it)."""
        route = ROUTES[route_key]
        if route.security != "NONE":
            self._permit(route, key)
        now = int(Decimal(str(self.clock())) * 1000)
        result = getattr(self, route.handler)(Call(venue_of(route_key[1]), params, account, now, key))
        self._order_events(route_key, account, result, now)
        return result

    def set_price(self, symbol: str, price: Decimal, venue: str = "spot") -> list[int]:
        """The test hook that moves a market: its last price (tickers, candles, market orders) becomes `price`,
        and every resting limit order it crosses (a buy at or above, a sell at or below) fills at its own price,
        with the same user-stream events as any fill. Returns the ids of the orders filled."""
        market = MARKETS[venue].get(symbol)
        if market is None:
            raise KeyError(symbol)
        object.__setattr__(market, "last", price)  # in place: orders hold the Market itself
        now = int(Decimal(str(self.clock())) * 1000)
        filled = []
        for account in {id(a): a for a in self.accounts.values()}.values():
            for order in account.open_orders(venue, symbol):
                if order.side == "BUY" and order.price >= price or order.side == "SELL" and order.price <= price:
                    account.fill_resting(order, now)
                    filled.append(order.order_id)
                    path = {"spot": "/api/v3/order", "fapi": "/fapi/v1/order", "dapi": "/dapi/v1/order"}[venue]
                    doc = spot_order(order, "query", None, None) if venue == "spot" else futures_order(order, True)
                    self._order_events(("POST", path), account, doc, now)
        if venue != "spot":  # conditional orders the new price triggers (binance_algo.py)
            accounts = list({id(a): a for a in self.accounts.values()}.values())
            for account, order in self.trigger_algo_orders(accounts, venue, symbol, price, now):
                self._order_events(("POST", f"/{venue}/v1/order"), account, futures_order(order, True), now)
        return filled

    def _order_events(self, route_key: tuple[str, str], account: Any, result: Any, now: int) -> None:
        """Spot orders placed or cancelled, by REST or WebSocket: events for the account's user data streams."""
        if route_key in (("POST", "/api/v3/order"), ("DELETE", "/api/v3/order")) and isinstance(result, dict) \
                and self.ws.subscriptions:
            asyncio.get_running_loop().create_task(self.ws.publish(account, result, now))
        venue = route_key[1][:6]  # "/fapi/" or "/dapi/"
        streams = {"/fapi/": self.streams, "/dapi/": self.dstreams}.get(venue)
        if streams is not None and streams.keys and route_key[1].endswith(("/order", "/batchOrders")) \
                and route_key[0] in ("POST", "DELETE"):
            asset = "USDT" if venue == "/fapi/" else "BTC"
            balances = [(asset, fmt(account.free.get(asset, ZERO)))]
            for order in result if isinstance(result, list) else [result]:
                if isinstance(order, dict) and "orderId" in order:
                    asyncio.get_running_loop().create_task(streams.publish(account, order, balances, now))

    @staticmethod
    def _permit(route: Route, key: EmulatedKey) -> None:
        perms = {**DEFAULT_PERMISSIONS, **key.permissions}
        if route.security == "SIGNED" and not perms.get(READ):
            raise BinanceError(*REJECTED_KEY)
        if route.permission == WITHDRAW and not perms.get(WITHDRAW):
            raise BinanceError(401, -1002, "You are not authorized to execute this request.")
        if route.permission and not perms.get(route.permission):
            raise BinanceError(*REJECTED_KEY)

    # -- helpers ------------------------------------------------------------
    @staticmethod
    def _market(call: Call, required: bool = True) -> Market | None:
        symbol = call.params.get("symbol")
        if not symbol:
            if required:
                raise mandatory_missing("symbol")
            return None
        market = MARKETS[call.venue].get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    def _markets(self, call: Call) -> list[Market]:
        one = self._market(call, required=False)
        return [one] if one else list(MARKETS[call.venue].values())

    def _order_doc(self, call: Call, order: Any, kind: str) -> dict[str, Any]:
        if call.venue == "spot":
            return spot_order(
                order,
                kind,
                call.params.get("newOrderRespType"),
                call.params.get("newClientOrderId"),
            )
        return futures_order(order, with_time=kind == "query")

    def _find(self, call: Call, missing: tuple[int, int, str], book: str = "spot") -> Any:
        market = self._market(call)
        assert market is not None
        order_id, client_id = call.params.get("orderId"), call.params.get("origClientOrderId")
        if not order_id and not client_id:
            raise BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        order = call.acct.find(market.symbol, order_id or None, client_id or None)
        if order is None or order.market.venue != call.venue or order.book != book:
            raise BinanceError(*missing)
        return order

    # -- public -------------------------------------------------------------
    def ping(self, call: Call) -> dict[str, Any]:
        return {}

    def time(self, call: Call) -> dict[str, Any]:
        return {"serverTime": call.now}

    def system_status(self, call: Call) -> dict[str, Any]:
        return {"status": 0, "msg": "normal"}

    def exchange_info(self, call: Call) -> dict[str, Any]:
        wanted: list[str] | None = None
        if call.params.get("symbol"):
            wanted = [call.params["symbol"]]
        elif call.params.get("symbols"):
            try:
                wanted = [str(s) for s in json.loads(call.params["symbols"])]
            except (ValueError, TypeError):
                raise BinanceError(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
        if wanted and any(s not in MARKETS[call.venue] for s in wanted):
            raise BinanceError(400, -1121, "Invalid symbol.")
        return exchange_info(call.venue, call.now, wanted)

    def _one_or_all(self, call: Call, make: Callable[[Market], dict[str, Any]]) -> Any:
        docs = [make(m) for m in self._markets(call)]
        return docs[0] if call.params.get("symbol") else docs

    def ticker_24hr(self, call: Call) -> Any:
        def make(m: Market) -> dict[str, Any]:
            p, vol = fmt(m.last), "1000.00000000"
            doc = {
                "symbol": m.symbol,
                "priceChange": fmt(ZERO),
                "priceChangePercent": "0.000",
                "weightedAvgPrice": p,
                "lastPrice": p,
                "lastQty": fmt(m.min_qty),
                "openPrice": p,
                "highPrice": p,
                "lowPrice": p,
                "volume": vol,
                "quoteVolume": fmt(m.last * 1000),
                "openTime": call.now - 86_400_000,
                "closeTime": call.now,
                "firstId": 1,
                "lastId": 1000,
                "count": 1000,
            }
            if m.venue == "spot":
                doc.update(
                    {
                        "prevClosePrice": p,
                        "bidPrice": fmt(m.last - m.tick),
                        "bidQty": "1.00000000",
                        "askPrice": fmt(m.last + m.tick),
                        "askQty": "1.00000000",
                    }
                )
            elif m.venue == "dapi":
                doc.update(
                    {"pair": m.base + m.quote, "baseVolume": fmt(1000 * m.contract_size / m.last)}
                )
            return doc

        return self._one_or_all(call, make)

    def ticker_price(self, call: Call) -> Any:
        def make(m: Market) -> dict[str, Any]:
            doc: dict[str, Any] = {"symbol": m.symbol, "price": fmt(m.last)}
            if m.venue != "spot":
                doc["time"] = call.now
            return doc

        return self._one_or_all(call, make)

    def book_ticker(self, call: Call) -> Any:
        return self._one_or_all(
            call,
            lambda m: {
                "symbol": m.symbol,
                "bidPrice": fmt(m.last - m.tick),
                "bidQty": "1.00000000",
                "askPrice": fmt(m.last + m.tick),
                "askQty": "1.00000000",
            },
        )

    def klines(self, call: Call) -> list[list[Any]]:
        market = self._market(call)
        assert market is not None
        try:
            return klines(market, call.params, call.now)
        except HistoryError as e:
            raise BinanceError(400, e.code, e.msg) from None

    def my_trades(self, call: Call) -> list[dict[str, Any]]:
        market = self._market(call)
        assert market is not None
        try:
            return my_trades(call.acct, market, call.params)
        except HistoryError as e:
            raise BinanceError(400, e.code, e.msg) from None

    def depth(self, call: Call) -> dict[str, Any]:
        m = self._market(call)
        assert m is not None
        levels = range(1, 6)
        doc: dict[str, Any] = {
            "lastUpdateId": call.now,
            "bids": [[fmt(m.last - i * m.tick), "1.00000000"] for i in levels],
            "asks": [[fmt(m.last + i * m.tick), "1.00000000"] for i in levels],
        }
        if m.venue != "spot":
            doc.update({"E": call.now, "T": call.now})
        return doc

    # -- spot / futures orders -------------------------------------------------
    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id - 1

    def new_order(self, call: Call) -> dict[str, Any]:
        market = self._market(call)
        assert market is not None
        order = parse_new_order(call.params, market, self._new_order_id(), call.now)
        call.acct.place(order, call.now)
        return self._order_doc(call, order, "new")

    def cancel_replace(self, call: Call) -> dict[str, Any]:
        """Spot "Cancel an Existing Order and Send a New Order": the cancel first; STOP_ON_FAILURE places nothing
        after a failed cancel, ALLOW_FAILURE places the new order anyway. One half failing answers 409 (-2021),
        both 400 (-2022), each with `data`: both halves' results and answers."""
        mode = call.params.get("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise mandatory_missing("cancelReplaceMode")
        cancel = {"symbol": call.params.get("symbol", ""), "orderId": call.params.get("cancelOrderId", ""),
                  "origClientOrderId": call.params.get("cancelOrigClientOrderId", "")}
        try:
            cancelled: dict[str, Any] = self.cancel_order(Call(call.venue, cancel, call.account, call.now, call.key))
            cancel_result = "SUCCESS"
        except BinanceError as err:
            cancelled, cancel_result = err.body(), "FAILURE"
        new = {k: v for k, v in call.params.items() if not k.startswith("cancel")}
        if cancel_result == "FAILURE" and mode == "STOP_ON_FAILURE":
            placed: dict[str, Any] = {"code": -2021, "msg": "Order cancel-replace partially failed."}
            new_result = "NOT_ATTEMPTED"
        else:
            try:
                placed, new_result = self.new_order(Call(call.venue, new, call.account, call.now, call.key)), "SUCCESS"
            except BinanceError as err:
                placed, new_result = err.body(), "FAILURE"
        data = {"cancelResult": cancel_result, "newOrderResult": new_result, "cancelResponse": cancelled,
                "newOrderResponse": placed}
        if cancel_result == new_result == "SUCCESS":
            return data
        if cancel_result == "SUCCESS" or new_result == "SUCCESS":
            raise BinanceError(409, -2021, "Order cancel-replace partially failed.", data)
        raise BinanceError(400, -2022, "Order cancel-replace failed.", data)

    def batch_orders(self, call: Call) -> list[dict[str, Any]]:
        """Futures "Place Multiple Orders": `batchOrders` is a JSON list of at most 5 orders, each placed as
        a single order; one order's error is its entry in the answer, the others still go in."""
        try:
            legs = json.loads(call.params.get("batchOrders") or "")
        except ValueError:
            raise BinanceError(400, -1130, "Data sent for parameter 'batchOrders' is not valid.") from None
        if not isinstance(legs, list) or not legs or len(legs) > 5 or not all(isinstance(x, dict) for x in legs):
            raise BinanceError(400, -1130, "Data sent for parameter 'batchOrders' is not valid.")
        answers: list[dict[str, Any]] = []
        for leg in legs:
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in leg.items()}
            try:
                answers.append(self.new_order(Call(call.venue, params, call.account, call.now, call.key)))
            except BinanceError as err:
                answers.append(err.body())
        return answers

    def modify_order(self, call: Call) -> dict[str, Any]:
        """Futures "Modify Order": a resting LIMIT order gets the new `quantity` and `price` (both required)."""
        order = self._find(call, (400, -2013, "Order does not exist."))
        if order.type != "LIMIT" or not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        quantity = decimal_param(call.params, "quantity")
        price = decimal_param(call.params, "price")
        assert quantity is not None and price is not None
        order.orig_qty, order.price, order.update_time = quantity, price, call.now
        return self._order_doc(call, order, "new")

    def _streams(self, call: Call) -> UserStreams:
        return self.dstreams if call.venue == "dapi" else self.streams

    def listen_key_start(self, call: Call) -> dict[str, str]:
        return self._streams(call).start(call.account)

    def listen_key_keepalive(self, call: Call) -> dict[str, str]:
        return self._streams(call).keepalive(call.account)

    def listen_key_close(self, call: Call) -> dict[str, Any]:
        return self._streams(call).close(call.account)

    def listen_token(self, call: Call) -> dict[str, Any]:
        return self.streams.new_token(call.account, call.now, call.params.get("validity"))

    def test_order(self, call: Call) -> dict[str, Any]:
        market = self._market(call)
        assert market is not None
        parse_new_order(call.params, market, 0, call.now)
        return {}

    def query_order(self, call: Call) -> dict[str, Any]:
        return self._order_doc(
            call, self._find(call, (400, -2013, "Order does not exist.")), "query"
        )

    def cancel_order(self, call: Call) -> dict[str, Any]:
        order = self._find(call, (400, -2011, "Unknown order sent."))
        return self._order_doc(call, call.acct.cancel(order, call.now), "cancel")

    def amend_keep_priority(self, call: Call) -> dict[str, Any]:
        """`PUT /api/v3/order/amend/keepPriority`: `newQty` below the order's, a `newClientOrderId` or one made up."""
        order = self._find(call, (400, -2013, "Order does not exist."))
        old_client_id = order.client_order_id
        try:
            new_qty = Decimal(call.params.get("newQty", ""))
        except InvalidOperation:
            new_qty = Decimal("NaN")
        if not new_qty.is_finite():
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'newQty'.")
        client_id = call.params.get("newClientOrderId") or "x-" + secrets.token_hex(8)
        call.acct.shrink(order, new_qty, client_id, call.now)
        return {"transactTime": call.now, "executionId": call.now, "amendedOrder": {  # as Binance words it (`qty`)
            "symbol": order.market.symbol, "orderId": order.order_id, "orderListId": -1,
            "origClientOrderId": old_client_id, "clientOrderId": client_id, "price": fmt(order.price),
            "qty": fmt(order.orig_qty), "executedQty": fmt(order.executed_qty), "preventedQty": "0.00000000",
            "quoteOrderQty": "0.00000000", "cumulativeQuoteQty": fmt(order.cum_quote), "status": order.status,
            "timeInForce": order.time_in_force, "type": order.type, "side": order.side, "workingTime": order.time,
            "selfTradePreventionMode": "NONE"}}

    def open_orders(self, call: Call) -> list[dict[str, Any]]:
        market = self._market(call, required=False)
        orders = call.acct.open_orders(call.venue, market.symbol if market else None)
        return [self._order_doc(call, o, "query") for o in orders]

    def all_orders(self, call: Call) -> list[dict[str, Any]]:
        market = self._market(call)
        assert market is not None
        return [
            self._order_doc(call, o, "query")
            for o in call.acct.orders.values()
            if o.market is market
        ]

    def cancel_all(self, call: Call) -> Any:
        market = self._market(call)
        assert market is not None
        orders = call.acct.open_orders(call.venue, market.symbol)
        if call.venue != "spot":
            for order in orders:
                call.acct.cancel(order, call.now)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}
        if not orders:
            raise BinanceError(400, -2011, "Unknown order sent.")
        return [self._order_doc(call, call.acct.cancel(o, call.now), "cancel") for o in orders]


def create(keys: list[EmulatedKey], clock: Clock) -> BinanceEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return BinanceEmulator(keys, clock)
