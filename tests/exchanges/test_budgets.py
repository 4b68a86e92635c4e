"""What Bybit, OKX and Kraken requests cost against the exchange's own budgets, and how each says a limit was
hit (issue 19; the numbers from each exchange's rate-limit documentation, cited in its *_budget.py)."""

from __future__ import annotations

import json
import time

from keyproxy.exchanges.base import IncomingRequest
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.okx import Okx


def _req(method: str, path: str, body: bytes = b"", query: str = "") -> IncomingRequest:
    return IncomingRequest(method, path, query, {}, body)


def _names(costs: tuple) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(b.name, c) for b, c in costs]


def test_bybit_charges_the_ip_for_everything_and_the_endpoint_for_private_calls() -> None:
    a = Bybit()
    assert _names(a.costs(_req("GET", "/v5/market/tickers", query="category=spot"))) == [("IP_REQUESTS", 1)]
    assert _names(a.costs(_req("POST", "/v5/order/create", b"{}"))) == [("IP_REQUESTS", 1), ("UID_ENDPOINT", 1)]


def test_bybit_batches_count_their_orders_on_the_single_twins_limit() -> None:
    a = Bybit()
    batch = _req("POST", "/v5/order/create-batch", json.dumps({"category": "linear", "request": [{}] * 3}).encode())
    assert _names(a.costs(batch)) == [("IP_REQUESTS", 1), ("UID_ENDPOINT", 3)]
    assert a.budget_path(batch) == "/v5/order/create"
    assert a.budget_path(_req("POST", "/v5/order/cancel-batch")) == "/v5/order/cancel"
    assert a.budget_path(_req("POST", "/v5/order/create")) == "/v5/order/create"
    for unreadable in (b"", b"[", b'{"request": "x"}', b'{"request": []}'):  # counted at its worst, never a 500
        assert _names(a.costs(_req("POST", "/v5/order/amend-batch", unreadable)))[1] == ("UID_ENDPOINT", 20)
    assert _names(a.connection_costs("/v5/trade")) == [("WS_CONNECTIONS", 1)]


def test_bybit_websocket_trade_ops_spend_their_rest_twins_limit_and_read_its_answer_header() -> None:
    from keyproxy.exchanges.bybit_ws import BybitWsApi

    ws = BybitWsApi(Bybit())

    def frame(op: str, args: list[object]) -> IncomingRequest:
        return IncomingRequest(op, "/v5/trade", "", {}, json.dumps({"reqId": "1", "op": op, "args": args}).encode())

    create = frame("order.create", [{"category": "linear", "symbol": "BTCUSDT"}])
    assert _names(ws.costs(create)) == [("UID_ENDPOINT", 1)]  # no IP budget: Bybit's counts HTTP requests
    assert ws.budget_path(create) == "/v5/order/create"
    batch = frame("order.create-batch", [{"category": "linear", "request": [{}, {}]}])
    assert _names(ws.costs(batch)) == [("UID_ENDPOINT", 2)] and ws.budget_path(batch) == "/v5/order/create"
    auth = frame("auth", ["k", 1, "s"])
    assert ws.costs(auth) == () and ws.budget_path(auth) == "/v5/trade"
    assert ws.costs(frame("order.create", [{}, {}])) == ()  # refused by its facts, never charged
    reset = int(time.time() * 1000) + 700
    header = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)}
    usage, hold = ws.answer_usage(400, json.dumps({
        "reqId": "1", "retCode": 10006, "retMsg": "Too many visits!", "op": "order.create", "data": {},
        "header": header}).encode())
    assert usage["x-bapi-limit"] == "10" and usage["x-bapi-limit-status"] == "0"
    assert hold is not None and hold[1] == "UID_ENDPOINT" and 0.4 < hold[0] <= 0.7
    assert ws.answer_usage(200, b'{"reqId":"1","retCode":0,"header":{"X-Bapi-Limit-Status":"9"}}')[1] is None
    assert ws.answer_usage(200, b"[") == ({}, None) and ws.answer_usage(200, b'{"header": 5}') == ({}, None)


def test_bybit_refusals_for_rate() -> None:
    a = Bybit()
    assert a.rate_limit_hold(403, {}, b"access too frequent") == (600.0, None)  # the IP is banned
    reset = str(int(time.time() * 1000) + 800)
    hold = a.rate_limit_hold(200, {"x-bapi-limit-reset-timestamp": reset},
                             b'{"retCode":10006,"retMsg":"Too many visits!"}')
    assert hold is not None and hold[1] == "UID_ENDPOINT" and 0.5 < hold[0] <= 0.8
    assert a.rate_limit_hold(200, {}, b'{"retCode": 10006}') == (1.0, "UID_ENDPOINT")
    assert a.rate_limit_hold(200, {}, b'{"retCode":0,"result":{"x":10006}}') is None
    assert a.rate_limit_hold(200, {}, None) is None


def test_okx_charges_each_endpoint_and_counts_every_order_of_a_batch() -> None:
    a = Okx()
    assert _names(a.costs(_req("GET", "/api/v5/account/balance"))) == [("GET /api/v5/account/balance", 1)]
    batch = json.dumps([{"instId": "BTC-USDT"}] * 3).encode()
    assert _names(a.costs(_req("POST", "/api/v5/trade/batch-orders", batch))) == [
        ("POST /api/v5/trade/batch-orders", 3), ("ORDERS_2S", 3)]
    assert _names(a.costs(_req("POST", "/api/v5/trade/order", b"{}"))) == [("POST /api/v5/trade/order", 1),
                                                                          ("ORDERS_2S", 1)]
    # a batch keyproxy cannot read costs the most OKX takes (20), never one (session 24's review)
    assert _names(a.costs(_req("POST", "/api/v5/trade/batch-orders", b"not json"))) == [
        ("POST /api/v5/trade/batch-orders", 20), ("ORDERS_2S", 20)]
    assert a.costs(_req("GET", "/api/v5/asset/deposit-address")) == ()
    assert a.rate_limit_hold(200, {}, b'{"code":"0"}') is None


def test_okx_counts_a_batch_cancels_orders_and_a_batch_of_one_as_its_single_twin() -> None:
    """OKX counts a batch endpoint's orders, and a batch of one against the single endpoint's (smaller) limit: a
    20-order cancel batch cost 1, and one-order batches spent the 300 of batches where OKX counts the 60 of
    place-order (session 24's review). Cancels spend no order rate."""
    a = Okx()
    cancels = json.dumps([{"instId": "BTC-USDT", "ordId": str(i)} for i in range(20)]).encode()
    assert _names(a.costs(_req("POST", "/api/v5/trade/cancel-batch-orders", cancels))) == [
        ("POST /api/v5/trade/cancel-batch-orders", 20)]
    one = json.dumps([{"instId": "BTC-USDT"}]).encode()
    assert _names(a.costs(_req("POST", "/api/v5/trade/batch-orders", one))) == [
        ("POST /api/v5/trade/order", 1), ("ORDERS_2S", 1)]
    assert _names(a.costs(_req("POST", "/api/v5/trade/amend-batch-orders", one))) == [
        ("POST /api/v5/trade/amend-order", 1), ("ORDERS_2S", 1)]
    assert _names(a.costs(_req("POST", "/api/v5/trade/cancel-batch-orders", one))) == [
        ("POST /api/v5/trade/cancel-order", 1)]


def test_okx_holds_only_the_budget_its_429_names() -> None:
    """50011 is an endpoint's own limit (per instrument at OKX): it holds that endpoint's budget, never the account's
    order rate, so one bot's 429 on its instrument does not stop every bot's orders; 50061 is the order rate."""
    from keyproxy.policy.budget import Charge, Governor
    from keyproxy.exchanges.okx_budget import ENDPOINT_BUDGETS, ORDERS_2S

    a = Okx()
    assert a.rate_limit_hold(429, {}, b'{"code":"50011"}') == (2.0, "!ORDERS_2S")
    assert a.rate_limit_hold(429, {}, b'{"code":"50061"}') == (2.0, "ORDERS_2S")
    gov = Governor()
    place, amend = ENDPOINT_BUDGETS["POST /api/v5/trade/order"], ENDPOINT_BUDGETS["POST /api/v5/trade/amend-order"]
    sent = (Charge(place, "acct", 1), Charge(ORDERS_2S, "acct", 1))
    gov.observe(sent, {}, 100.0, *a.rate_limit_hold(429, {}, b'{"code":"50011"}'))  # type: ignore[misc]
    assert gov.spend(sent, False, 100.5, "other") is not None  # the same endpoint waits ...
    assert gov.spend((Charge(amend, "acct", 1), Charge(ORDERS_2S, "acct", 1)), False, 100.5, "other") is None


def test_kraken_counts_calls_by_kind_and_orders_not_at_all() -> None:
    a = Kraken()
    assert _names(a.costs(_req("POST", "/0/private/Balance"))) == [("CALL_COUNTER", 1)]
    assert _names(a.costs(_req("POST", "/0/private/TradesHistory"))) == [("CALL_COUNTER", 2)]
    # the order operations are the trading engine's (per pair); CancelAll and the dead man's switch count on the
    # call counter (Kraken's Spot REST Rate Limits, ccxt's costs; session 33's review: 40 of them spent nothing)
    for method in ("AddOrder", "CancelOrder", "AddOrderBatch", "EditOrder", "AmendOrder", "CancelOrderBatch"):
        assert a.costs(_req("POST", f"/0/private/{method}")) == (), method
    for method in ("CancelAll", "CancelAllOrdersAfter"):
        assert _names(a.costs(_req("POST", f"/0/private/{method}"))) == [("CALL_COUNTER", 1)], method
    assert a.costs(_req("GET", "/0/public/Ticker", query="pair=XBTUSD")) == ()
    assert {t: (b.limit, b.window_s) for t, (b,) in a.budget_tiers.items()} == {
        "starter": (15, 3.0), "intermediate": (20, 2.0), "pro": (20, 1.0)}
    assert a.rate_limit_hold(200, {}, b'{"error":["EAPI:Rate limit exceeded"]}') == (3.0, "CALL_COUNTER")
    assert a.rate_limit_hold(200, {}, b'{"error":["EGeneral:Temporary lockout"]}') == (900.0, None)
    assert a.rate_limit_hold(200, {}, b'{"error":[],"result":{}}') is None


def test_hyperliquid_charges_the_ips_weight_by_request_kind_and_batch_length() -> None:
    """Hyperliquid's "Rate limits and user limits": 1,200 weight a minute per IP; an action 1 + floor(batch / 40),
    l2Book and the other light reads 2, userRole 60, every other read 20 (session 33's review: nothing was charged)."""
    from keyproxy.exchanges.hyperliquid import Hyperliquid

    a = Hyperliquid()

    def cost(path: str, doc: object) -> list[tuple[str, int]]:
        return _names(a.costs(_req("POST", path, json.dumps(doc).encode())))
    assert cost("/info", {"type": "l2Book", "coin": "BTC"}) == [("IP_WEIGHT", 2)]
    assert cost("/info", {"type": "userRole", "user": "0x0"}) == [("IP_WEIGHT", 60)]
    assert cost("/info", {"type": "meta"}) == cost("/info", {"type": "openOrders"}) == [("IP_WEIGHT", 20)]
    assert _names(a.costs(_req("POST", "/info", b"not json"))) == [("IP_WEIGHT", 20)]
    order = {"a": 0, "b": True, "p": "1", "s": "1", "r": False, "t": {"limit": {"tif": "Gtc"}}}
    assert cost("/exchange", {"action": {"type": "order", "orders": [order]}}) == [("IP_WEIGHT", 1)]
    assert cost("/exchange", {"action": {"type": "order", "orders": [order] * 79}}) == [("IP_WEIGHT", 2)]
    assert cost("/exchange", {"action": {"type": "cancel", "cancels": [{"a": 0, "o": 1}] * 80}}) == [("IP_WEIGHT", 3)]
    assert {b.name: (b.limit, b.window_s, b.kind) for b in a.budgets} == {"IP_WEIGHT": (1200, 60.0, "rolling")}


def test_coinbase_charges_private_requests_per_account_and_public_ones_per_ip() -> None:
    """Advanced Trade: 30 private requests a second per user, 10 public a second per IP; the v2 App API 10,000 an
    hour; 750 WebSocket connections a second per IP (session 34: Coinbase had no budget). A 429 holds a second."""
    from keyproxy.exchanges.coinbase import Coinbase

    a = Coinbase()
    assert _names(a.costs(_req("GET", "/api/v3/brokerage/orders/historical/batch"))) == [("PRIVATE_REQUESTS", 1)]
    assert _names(a.costs(_req("POST", "/api/v3/brokerage/orders", b"{}"))) == [("PRIVATE_REQUESTS", 1)]
    assert _names(a.costs(_req("GET", "/api/v3/brokerage/market/products/BTC-USD"))) == [("PUBLIC_REQUESTS", 1)]
    assert _names(a.costs(_req("GET", "/v2/currencies"))) == []  # the App API's public data: per hour, unmodelled
    assert _names(a.costs(_req("GET", "/v2/accounts"))) == [("APP_REQUESTS", 1)]
    assert _names(a.connection_costs("/user")) == [("WS_CONNECTIONS", 1)]
    assert {b.name: (b.per, b.limit, b.window_s, b.kind) for b in a.budgets} == {
        "PRIVATE_REQUESTS": ("account", 30, 1.0, "rolling"), "PUBLIC_REQUESTS": ("ip", 10, 1.0, "rolling"),
        "APP_REQUESTS": ("account", 10_000, 3600.0, "rolling"), "WS_CONNECTIONS": ("ip", 750, 1.0, "rolling"),
        "WS_UNAUTHENTICATED": ("ip", 8, 1.0, "rolling")}
    assert a.rate_limit_hold(429, {}, b"<html>") == (1.0, None)
    assert a.rate_limit_hold(429, {"retry-after": "5"}, None) == (5.0, None)
    assert a.rate_limit_hold(200, {}, b"{}") is None


def test_okx_and_kraken_charge_the_ips_socket_opens() -> None:
    """OKX: 3 connections a second per IP ("Connection limit"); Kraken: ~150 connection attempts per rolling 10 minutes
    per IP, a 10-minute ban over it (session 34's WebSocket review: neither was charged)."""
    from keyproxy.exchanges.kraken import Kraken
    from keyproxy.exchanges.okx import Okx

    for adapter, limit, window in ((Okx(), 3, 1.0), (Kraken(), 150, 600.0)):
        [(budget, cost)] = adapter.connection_costs("/v2")
        assert (budget.name, budget.per, budget.limit, budget.window_s, budget.kind, cost) == (
            "WS_CONNECTIONS", "ip", limit, window, "rolling", 1)
        assert budget in adapter.budgets
