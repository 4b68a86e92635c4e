"""What a Binance request costs against Binance's own budgets, on REST and on the WebSocket API (issue 19).

Weights: Binance's rest-api.md and web-socket-api.md ("Weight:" of each endpoint and method,
https://github.com/binance/binance-spot-api-docs), the USD-M and COIN-M futures docs ("Request Weight",
https://developers.binance.com/docs/derivatives); order counts: rest-api.md "Unfilled Order Count" and the
futures "LIMITS" (ORDERS 300 per 10 s, 1200 per minute). One weight function serves both transports; a
parameter that cannot be read costs the most."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from keyproxy.exchanges.base import IncomingRequest
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.binance_ws import METHODS, WS_API_PATH, binance_ws_usage

rest = Binance()
dialect = rest.websocket(WS_API_PATH)
assert dialect is not None


def _names(costs: tuple) -> dict[str, int]:  # type: ignore[type-arg]
    return {b.name: c for b, c in costs}


def _ws(method: str, params: dict[str, Any] | None = None) -> dict[str, int]:
    body = json.dumps({"id": 1, "method": method, "params": params or {}}).encode()
    return _names(dialect.costs(IncomingRequest(method, WS_API_PATH, "", {}, body)))


def _rest(method: str, path: str, query: str = "") -> dict[str, int]:
    return _names(rest.costs(IncomingRequest(method, path, query, {}, b"")))


def _symbols(n: int) -> list[str]:
    return [f"S{i}USDT" for i in range(n)]


# (method, params, REQUEST_WEIGHT): every method of web-socket-api.md, at each of its documented conditions
WS_WEIGHTS: list[tuple[str, dict[str, Any], int]] = [
    ("ping", {}, 1), ("time", {}, 1), ("exchangeInfo", {}, 20),
    ("depth", {"symbol": "BTCUSDT"}, 5), ("depth", {"symbol": "BTCUSDT", "limit": 100}, 5),
    ("depth", {"symbol": "BTCUSDT", "limit": 101}, 25), ("depth", {"symbol": "BTCUSDT", "limit": 500}, 25),
    ("depth", {"symbol": "BTCUSDT", "limit": 1000}, 50), ("depth", {"symbol": "BTCUSDT", "limit": 5000}, 250),
    ("depth", {"symbol": "BTCUSDT", "limit": "lots"}, 250),
    ("trades.recent", {"symbol": "BTCUSDT"}, 25), ("trades.historical", {"symbol": "BTCUSDT"}, 25),
    ("trades.aggregate", {"symbol": "BTCUSDT"}, 4), ("klines", {"symbol": "BTCUSDT", "interval": "1m"}, 2),
    ("uiKlines", {"symbol": "BTCUSDT", "interval": "1m"}, 2), ("avgPrice", {"symbol": "BTCUSDT"}, 2),
    ("ticker.24hr", {"symbol": "BTCUSDT"}, 2), ("ticker.24hr", {"symbols": _symbols(20)}, 2),
    ("ticker.24hr", {"symbols": _symbols(21)}, 40), ("ticker.24hr", {"symbols": _symbols(100)}, 40),
    ("ticker.24hr", {"symbols": _symbols(101)}, 80), ("ticker.24hr", {}, 80),
    ("ticker.24hr", {"symbols": "BTCUSDT"}, 80),  # not a list: unreadable
    ("ticker.tradingDay", {"symbol": "BTCUSDT"}, 4), ("ticker.tradingDay", {"symbols": _symbols(50)}, 200),
    ("ticker.tradingDay", {"symbols": _symbols(51)}, 200), ("ticker.tradingDay", {"symbols": _symbols(7)}, 28),
    ("ticker.tradingDay", {}, 200),
    ("ticker", {"symbol": "BTCUSDT"}, 4), ("ticker", {"symbols": _symbols(3)}, 12),
    ("ticker", {"symbols": _symbols(51)}, 200), ("ticker", {"symbols": _symbols(100)}, 200), ("ticker", {}, 200),
    ("ticker.price", {"symbol": "BTCUSDT"}, 2), ("ticker.price", {"symbols": _symbols(2)}, 4),
    ("ticker.price", {}, 4), ("ticker.book", {"symbol": "BTCUSDT"}, 2), ("ticker.book", {}, 4),
    ("session.logon", {}, 2), ("session.status", {}, 2), ("session.logout", {}, 2),
    ("order.place", {"symbol": "BTCUSDT"}, 1), ("order.test", {"symbol": "BTCUSDT"}, 1),
    ("order.test", {"symbol": "BTCUSDT", "computeCommissionRates": True}, 20),
    ("order.test", {"symbol": "BTCUSDT", "computeCommissionRates": False}, 1),
    ("order.cancel", {"symbol": "BTCUSDT"}, 1), ("order.cancelReplace", {"symbol": "BTCUSDT"}, 1),
    ("order.amend.keepPriority", {"symbol": "BTCUSDT"}, 4), ("openOrders.cancelAll", {"symbol": "BTCUSDT"}, 1),
    ("orderList.place", {}, 1), ("orderList.place.oco", {}, 1), ("orderList.place.oto", {}, 1),
    ("orderList.place.otoco", {}, 1), ("orderList.cancel", {}, 1),
    ("sor.order.place", {}, 1), ("sor.order.test", {}, 1), ("sor.order.test", {"computeCommissionRates": True}, 20),
    ("account.status", {}, 20), ("order.status", {"symbol": "BTCUSDT"}, 4),
    ("openOrders.status", {"symbol": "BTCUSDT"}, 6), ("openOrders.status", {}, 80),
    ("allOrders", {"symbol": "BTCUSDT"}, 20), ("orderList.status", {}, 4), ("openOrderLists.status", {}, 6),
    ("allOrderLists", {}, 20), ("myTrades", {"symbol": "BTCUSDT"}, 20),
    ("myTrades", {"symbol": "BTCUSDT", "orderId": 5}, 5), ("account.rateLimits.orders", {}, 40),
    ("myPreventedMatches", {"symbol": "BTCUSDT", "preventedMatchId": 1}, 2),
    ("myPreventedMatches", {"symbol": "BTCUSDT", "orderId": 1}, 20), ("myPreventedMatches", {}, 20),
    ("myAllocations", {"symbol": "BTCUSDT"}, 20), ("account.commission", {"symbol": "BTCUSDT"}, 20),
    ("order.amendments", {"symbol": "BTCUSDT", "orderId": 1}, 4),
    ("userDataStream.subscribe", {}, 2), ("userDataStream.subscribe.signature", {}, 2),
    ("userDataStream.subscribe.listenToken", {"listenToken": "t"}, 2),
    ("userDataStream.unsubscribe", {"subscriptionId": 1}, 2), ("session.subscriptions", {}, 2),
]


@pytest.mark.parametrize(("method", "params", "weight"), WS_WEIGHTS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(WS_WEIGHTS)])
def test_every_websocket_api_method_costs_its_documented_weight(method: str, params: dict[str, Any],
                                                                weight: int) -> None:
    assert _ws(method, params)["REQUEST_WEIGHT"] == weight


def test_the_weight_table_covers_every_method_keyproxy_forwards() -> None:
    assert {m for m, _, _ in WS_WEIGHTS} == set(METHODS)


@pytest.mark.parametrize(("method", "params"), [
    ("depth", {"symbol": "BTCUSDT", "limit": 300}), ("ticker.24hr", {"symbols": _symbols(30)}),
    ("ticker", {"symbols": _symbols(5)}), ("ticker.price", {"symbol": "BTCUSDT"}),
    ("myTrades", {"symbol": "BTCUSDT", "orderId": 3}), ("order.test", {"computeCommissionRates": True}),
    ("openOrders.status", {}),
])
def test_a_frame_and_its_rest_twin_cost_the_same(method: str, params: dict[str, Any]) -> None:
    spec = METHODS[method]
    twin = spec.twin or spec.weighed_as
    assert twin is not None
    query = urlencode({k: json.dumps(v, separators=(",", ":")) if isinstance(v, list) else
                       str(v).lower() if isinstance(v, bool) else v for k, v in {**params, "timestamp": 1}.items()})
    assert _ws(method, params) == _rest(*twin, query)


@pytest.mark.parametrize(("method", "path", "query", "weight"), [
    ("GET", "/api/v3/ticker/24hr", "symbols=" + quote(json.dumps(_symbols(30))), 40),
    ("GET", "/api/v3/ticker/24hr", 'symbols=["BTCUSDT","ETHUSDT"]', 2),
    ("GET", "/api/v3/ticker/24hr", "symbols=%5Bnot", 80),
    ("GET", "/api/v3/ticker/24hr", "symbol=BTCUSDT&symbols=%5B%22A%22%5D", 80),  # both: unreadable
    ("GET", "/api/v3/ticker", "symbols=" + quote(json.dumps(_symbols(10))), 40),
    ("GET", "/api/v3/ticker/tradingDay", "symbol=BTCUSDT", 4),
    ("GET", "/api/v3/rateLimit/order", "", 40), ("GET", "/api/v3/myAllocations", "", 20),
    ("GET", "/api/v3/order/amendments", "symbol=BTCUSDT&orderId=1", 4),
    ("GET", "/api/v3/myTrades", "symbol=BTCUSDT&orderId=1", 5), ("GET", "/api/v3/myTrades", "symbol=BTCUSDT", 20),
    ("GET", "/api/v3/myPreventedMatches", "symbol=BTCUSDT&preventedMatchId=1", 2),
    ("GET", "/api/v3/myPreventedMatches", "symbol=BTCUSDT&orderId=1", 20),
    ("GET", "/api/v3/executionRules", "symbol=BTCUSDT", 2), ("GET", "/api/v3/executionRules", "", 40),
    ("GET", "/api/v3/executionRules", "symbols=" + quote(json.dumps(_symbols(3))), 6),
    ("GET", "/api/v3/depth", "symbol=BTCUSDT&limit=5000&limit=5", 250),  # sent twice: unreadable
    ("POST", "/api/v3/order/test", "symbol=BTCUSDT&computeCommissionRates=true&timestamp=1", 20),
    ("POST", "/api/v3/order/test", "symbol=BTCUSDT&timestamp=1", 1),
    ("POST", "/api/v3/order/test", "", 1),  # no parameter in the query and an empty body: none asks for more
    ("PUT", "/api/v3/order/amend/keepPriority", "", 4),
])
def test_rest_spot_weights_read_the_request(method: str, path: str, query: str, weight: int) -> None:
    assert _rest(method, path, query)["REQUEST_WEIGHT"] == weight


@pytest.mark.parametrize(("method", "path", "orders"), [
    ("POST", "/api/v3/order", 1), ("POST", "/api/v3/order/cancelReplace", 1), ("POST", "/api/v3/sor/order", 1),
    ("POST", "/api/v3/order/oco", 2), ("POST", "/api/v3/orderList/oco", 2), ("POST", "/api/v3/orderList/oto", 2),
    ("POST", "/api/v3/orderList/otoco", 3), ("POST", "/api/v3/order/test", 0), ("DELETE", "/api/v3/order", 0),
])
def test_spot_order_counts_count_each_order_placed(method: str, path: str, orders: int) -> None:
    costs = _rest(method, path, "timestamp=1")
    assert (costs.get("ORDERS_10S", 0), costs.get("ORDERS_1D", 0)) == (orders, orders)


@pytest.mark.parametrize(("method", "orders"), [
    ("order.place", 1), ("order.cancelReplace", 1), ("orderList.place", 2), ("orderList.place.oco", 2),
    ("orderList.place.oto", 2), ("orderList.place.otoco", 3), ("sor.order.place", 1), ("order.test", 0),
])
def test_websocket_orders_count_as_their_rest_twins(method: str, orders: int) -> None:
    assert _ws(method, {"symbol": "BTCUSDT"}).get("ORDERS_10S", 0) == orders


@pytest.mark.parametrize(("method", "path", "query", "weight"), [
    ("GET", "/fapi/v1/depth", "symbol=BTCUSDT&limit=5", 2), ("GET", "/fapi/v1/depth", "symbol=BTCUSDT&limit=50", 2),
    ("GET", "/fapi/v1/depth", "symbol=BTCUSDT&limit=100", 5), ("GET", "/fapi/v1/depth", "symbol=BTCUSDT", 10),
    ("GET", "/fapi/v1/depth", "symbol=BTCUSDT&limit=1000", 20), ("GET", "/fapi/v1/depth", "limit=x", 20),
    ("GET", "/fapi/v1/openOrders", "symbol=BTCUSDT", 1), ("GET", "/fapi/v1/openOrders", "", 40),
    ("GET", "/fapi/v1/allOrders", "symbol=BTCUSDT", 5), ("GET", "/fapi/v1/userTrades", "symbol=BTCUSDT", 5),
    ("GET", "/fapi/v2/account", "", 5), ("GET", "/fapi/v3/account", "", 5), ("GET", "/fapi/v2/balance", "", 5),
    ("GET", "/fapi/v3/positionRisk", "", 5), ("GET", "/fapi/v1/ticker/24hr", "symbol=BTCUSDT", 1),
    ("GET", "/fapi/v1/ticker/24hr", "", 40), ("GET", "/fapi/v1/ticker/price", "symbol=BTCUSDT", 1),
    ("GET", "/fapi/v2/ticker/price", "", 2), ("GET", "/fapi/v1/ticker/bookTicker", "symbol=BTCUSDT", 2),
    ("GET", "/fapi/v1/ticker/bookTicker", "", 5), ("GET", "/fapi/v1/trades", "symbol=BTCUSDT", 5),
    ("GET", "/fapi/v1/historicalTrades", "symbol=BTCUSDT", 20), ("GET", "/fapi/v1/aggTrades", "symbol=X", 20),
    ("GET", "/fapi/v1/income", "", 30), ("GET", "/fapi/v1/klines", "symbol=X&interval=1m&limit=99", 1),
    ("GET", "/fapi/v1/klines", "symbol=X&interval=1m&limit=100", 2),
    ("GET", "/fapi/v1/klines", "symbol=X&interval=1m", 5), ("GET", "/fapi/v1/klines", "limit=1500", 10),
    ("GET", "/fapi/v1/markPriceKlines", "limit=1000", 5), ("GET", "/fapi/v1/ping", "", 1),
    ("POST", "/fapi/v1/batchOrders", "", 5),
    # session 33's review: charged 1 where Binance documents more
    ("GET", "/fapi/v1/positionSide/dual", "", 30), ("POST", "/fapi/v1/positionSide/dual", "", 1),
    ("GET", "/fapi/v1/multiAssetsMargin", "", 30), ("GET", "/fapi/v1/income/asyn", "", 1000),
    ("GET", "/fapi/v1/income/asyn/id", "", 10), ("POST", "/fapi/v1/countdownCancelAll", "", 10),
    ("GET", "/fapi/v1/order/asyn", "", 1000), ("GET", "/fapi/v1/trade/asyn/id", "", 10),
    ("GET", "/fapi/v1/commissionRate", "symbol=BTCUSDT", 20),
])
def test_usdm_futures_weights(method: str, path: str, query: str, weight: int) -> None:
    assert _rest(method, path, query)["FUTURES_REQUEST_WEIGHT"] == weight


@pytest.mark.parametrize(("method", "path", "query", "weight"), [
    ("GET", "/dapi/v1/depth", "symbol=BTCUSD_PERP&limit=20", 2), ("GET", "/dapi/v1/depth", "symbol=X", 10),
    ("GET", "/dapi/v1/allOrders", "symbol=BTCUSD_PERP", 20), ("GET", "/dapi/v1/allOrders", "pair=BTCUSD", 40),
    ("GET", "/dapi/v1/userTrades", "pair=BTCUSD", 40), ("GET", "/dapi/v1/account", "", 5),
    ("GET", "/dapi/v1/balance", "", 1), ("GET", "/dapi/v1/positionRisk", "", 1), ("GET", "/dapi/v1/income", "", 20),
    ("GET", "/dapi/v1/openOrders", "", 40), ("GET", "/dapi/v1/ticker/24hr", "pair=BTCUSD", 40),
    ("GET", "/dapi/v1/ticker/bookTicker", "symbol=BTCUSD_PERP", 2), ("GET", "/dapi/v1/trades", "symbol=X", 5),
    ("GET", "/dapi/v1/klines", "symbol=X&interval=1m&limit=200", 2), ("GET", "/dapi/v1/aggTrades", "symbol=X", 20),
    ("GET", "/dapi/v1/commissionRate", "symbol=X", 20), ("GET", "/dapi/v1/positionSide/dual", "", 30),
    ("POST", "/dapi/v1/countdownCancelAll", "", 10),
])
def test_coinm_futures_weights(method: str, path: str, query: str, weight: int) -> None:
    assert _rest(method, path, query)["COINM_REQUEST_WEIGHT"] == weight


def test_usdm_orders_spend_the_accounts_order_budget() -> None:
    batch = "batchOrders=" + quote(json.dumps([{"symbol": "BTCUSDT"}] * 3)) + "&timestamp=1"
    assert _rest("POST", "/fapi/v1/order", "timestamp=1") == {
        "FUTURES_REQUEST_WEIGHT": 1, "FUTURES_ORDERS_10S": 1, "FUTURES_ORDERS_1M": 1}
    assert _rest("PUT", "/fapi/v1/order", "timestamp=1")["FUTURES_ORDERS_1M"] == 1
    # a batch: 5 on the 10 s count (documented), one per order on the minute's; unread: 5 orders
    assert _rest("POST", "/fapi/v1/batchOrders", batch) == {
        "FUTURES_REQUEST_WEIGHT": 5, "FUTURES_ORDERS_10S": 5, "FUTURES_ORDERS_1M": 3}
    assert _rest("PUT", "/fapi/v1/batchOrders", "")["FUTURES_ORDERS_1M"] == 5
    assert "FUTURES_ORDERS_10S" not in _rest("DELETE", "/fapi/v1/order", "timestamp=1")
    budgets = {b.name: (b.per, b.limit, b.window_s, b.header) for b in rest.budgets}
    assert budgets["FUTURES_ORDERS_10S"] == ("account", 300, 10.0, "x-mbx-order-count-10s")
    assert budgets["FUTURES_ORDERS_1M"] == ("account", 1200, 60.0, "x-mbx-order-count-1m")


RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000, "count": 70},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100, "count": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000, "count": 300},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000, "count": 9},
]


def test_a_websocket_answers_rate_limits_read_as_the_rest_usage_headers() -> None:
    assert binance_ws_usage({"id": 1, "status": 200, "result": {}, "rateLimits": RATE_LIMITS}, 200, 0) == ({
        "x-mbx-used-weight-1m": "70", "x-mbx-order-count-10s": "100", "x-mbx-order-count-1d": "300"}, None)
    assert binance_ws_usage({"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                             "intervalNum": 1, "count": "lots"}]}, 200, 0) == ({}, None)


def test_a_websocket_refusal_for_rate_holds_until_retry_after() -> None:
    banned = {"id": 1, "status": 418, "error": {"code": -1003, "msg": "banned", "data": {
        "serverTime": 1_000_000, "retryAfter": 1_120_000}}}
    assert binance_ws_usage(banned, 418, 1_000_000) == ({}, (120.0, None))
    orders = {"id": 2, "status": 429, "error": {"code": -1015, "msg": "Too many new orders", "data": {
        "serverTime": 1_000_000, "retryAfter": 1_004_000}}, "rateLimits": RATE_LIMITS}
    assert binance_ws_usage(orders, 429, 1_000_000)[1] == (4.0, "ORDERS_10S")  # the account's orders, not the IP
    assert binance_ws_usage({"id": 3, "status": 429, "error": {"code": -1003}}, 429, 0)[1] == (60.0, None)
    # the dialect answers the governor's `rate_limit_hold` from the frame, as a REST adapter from its answer
    frame = json.dumps({"id": 4, "status": 429, "error": {"code": -1003, "msg": "x"}}).encode()
    assert dialect.rate_limit_hold(429, {}, frame) == (60.0, None)
    usage, hold = dialect.answer_usage(200, json.dumps({"id": 5, "status": 200, "rateLimits": RATE_LIMITS}).encode())
    assert usage["x-mbx-used-weight-1m"] == "70" and hold is None


def test_parameters_in_a_rest_body_are_read_not_charged_at_their_most() -> None:
    """A POST's parameters are in its form body (ccxt, the SDKs): read there like a query's."""
    body = b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&timestamp=1"
    plain = _names(rest.costs(IncomingRequest("POST", "/api/v3/order/test", "", {}, body)))
    priced = _names(rest.costs(IncomingRequest("POST", "/api/v3/order/test", "", {},
                                               body + b"&computeCommissionRates=true")))
    assert (plain["REQUEST_WEIGHT"], priced["REQUEST_WEIGHT"]) == (1, 20)


def test_a_bot_cannot_turn_the_rate_limits_in_answers_off() -> None:
    """`returnRateLimits=false` (the socket's query, or a frame's params) would leave the governor without Binance's
    count: dropped from what goes upstream, the frame re-signed without it."""
    from keyproxy.exchanges.base import Endpoint, RealKey, SignContext
    from keyproxy.secret import Secret

    assert dialect.upstream_query("returnRateLimits=false&timeUnit=MILLISECOND") == "timeUnit=MILLISECOND"
    assert dialect.upstream_query("returnRateLimits=false") == ""
    frame = {"id": 1, "method": "account.status", "params": {"returnRateLimits": False, "timestamp": 5,
                                                             "apiKey": "virtual", "signature": "x"}}
    req = IncomingRequest("account.status", WS_API_PATH, "", {}, json.dumps(frame).encode())
    real = RealKey("hmac", Secret("REALKEY"), secret=Secret("REALSECRET"))
    out = dialect.sign(req, real, dialect.classify("account.status", WS_API_PATH) or Endpoint(None, ""),  # type: ignore[arg-type]
                       SignContext("wss://ws-api.binance.com", "production", 5, None))
    params = json.loads(out.body)["params"]
    assert "returnRateLimits" not in params and params["apiKey"] == "REALKEY"


@pytest.mark.parametrize("query", ["symbol=BTCUSDT&limit=%C2%B2", "symbol=BTCUSDT&limit=" + "9" * 5000,
                                   "symbols=" + "%5B" * 3000, "symbols=" + "[" * 3000])
def test_a_parameter_no_reader_can_read_costs_the_most_never_an_error(query: str) -> None:
    """A `²` (a digit int() refuses), a number past int()'s digits, a list nested past the parser's depth: the
    most the endpoint can cost, never an exception (a 500 to a bot that needs no credential for it)."""
    depth = _rest("GET", "/api/v3/depth", query)["REQUEST_WEIGHT"]
    ticker = _rest("GET", "/api/v3/ticker/24hr", query)["REQUEST_WEIGHT"]
    futures = _rest("GET", "/fapi/v1/depth", query)["FUTURES_REQUEST_WEIGHT"]
    assert depth in (5, 250) and ticker in (2, 80) and futures in (2, 10, 20)
    if "limit" in query:
        assert (depth, futures) == (250, 20)
    else:
        assert ticker == 80
    batch = _names(rest.costs(IncomingRequest("POST", "/fapi/v1/batchOrders", "", {},
                                              b"batchOrders=" + b"%5B" * 3000 + b"&timestamp=1")))
    assert batch["FUTURES_ORDERS_1M"] == 5  # unreadable: the most a batch may hold


def test_opening_a_spot_socket_spends_its_services_connections() -> None:
    """300 connections per 5 minutes per IP, the WebSocket API's and the market streams' each; a WebSocket API
    connection weighs 2. COIN-M's user stream (`/ws/<listenKey>`, at dstream) and the futures hosts: not modelled."""
    assert _names(rest.connection_costs("/ws-api/v3")) == {"WS_API_CONNECTIONS": 1, "REQUEST_WEIGHT": 2}
    for path in ("/ws", "/stream", "/ws/btcusdt@trade"):
        assert _names(rest.connection_costs(path)) == {"STREAM_CONNECTIONS": 1}
    assert rest.connection_costs("/ws/" + "a" * 64) == () and rest.connection_costs("/private/ws") == ()


def test_the_rate_limits_switch_is_dropped_however_its_name_is_written() -> None:
    assert dialect.upstream_query("returnRateLimit%73=false&responseFormat=json") == "responseFormat=json"
    assert dialect.upstream_query("returnRateLimits=false&returnRateLimits=true") == ""


def test_a_refusal_for_rate_holds_by_binances_clock_not_this_hosts() -> None:
    """retryAfter is Binance's clock: against its serverTime, a host 10 minutes behind holds 30 s, not 630 s."""
    answer = {"status": 429, "error": {"code": -1003, "msg": "too many", "data": {"serverTime": 1_000_000,
                                                                                     "retryAfter": 1_030_000}}}
    assert binance_ws_usage(answer, 429, 1_000_000 - 600_000)[1] == (30.0, None)
    odd = {"status": 200, "rateLimits": [{"rateLimitType": ["REQUEST_WEIGHT"], "interval": {}, "count": 1}]}
    assert binance_ws_usage(odd, 200, 0) == ({}, None)  # an entry of the wrong shape is skipped, never an error


def test_too_many_orders_on_rest_holds_the_order_counts_not_the_ips_weight() -> None:
    """-1015 ("Too many new orders") is the account's order count: on REST it held every budget of the request, the
    IP's request weight with them, so every account and bot waited a minute (session 33's review); it holds the
    order counts, of whichever market, as the WebSocket API's answer does."""
    from keyproxy.exchanges.binance_budget import SPOT_ORDERS, SPOT_ORDERS_DAY, SPOT_WEIGHT
    from keyproxy.policy.budget import Charge, Governor

    body = b'{"code":-1015,"msg":"Too many new orders; current limit is 100 orders per 10 SECOND."}'
    hold = rest.rate_limit_hold(429, {"retry-after": "7"}, body)
    assert hold == (7.0, "~ORDERS")
    assert rest.rate_limit_hold(429, {}, b'{"code":-1003,"msg":"Too much request weight used"}') == (60.0, None)
    g = Governor()
    charges = tuple(Charge(b, "k", 1) for b in (SPOT_WEIGHT, SPOT_ORDERS, SPOT_ORDERS_DAY))
    g.observe(charges, {}, 1000.0, *hold)
    assert {c.budget.name for c in charges if g.banned_until.get(c.key, 0) > 1000} == {"ORDERS_10S", "ORDERS_1D"}
