"""Binance emulator behaviour: auth errors, timing window, permissions, order
round trips, balances, withdrawals, journal and control endpoints.

Error codes, texts and statuses: binance-spot-api-docs ``errors.md`` and
``rest-api.md`` ("Timing security"; HTTP 4XX for request errors); -2014/-2015
come back as HTTP 401 at Binance.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from emulator_testlib import FakeClock, sign, signed_query
from yarl import URL

from keyproxy.emulator.keys import new_emulated_key


class Client:
    """Minimal signed client for one key (test-local)."""

    def __init__(self, http, emu, key, secret, clock: FakeClock) -> None:
        self.http, self.emu, self.key, self.secret, self.clock = http, emu, key, secret, clock

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        signed: bool = True,
        in_body: bool = False,
        api_key: str | None = None,
        ts_offset_ms: int = 0,
    ) -> tuple[int, Any]:
        params = dict(params or {})
        if signed:
            params.setdefault("timestamp", self.clock.ms() + ts_offset_ms)
            text = signed_query(self.key.key_type, self.secret, params)
        else:
            text = "&".join(f"{k}={v}" for k, v in params.items())
        headers = {"X-MBX-APIKEY": api_key if api_key is not None else self.key.api_key}
        body = None
        url = f"{self.emu.url}{path}"
        if in_body:
            body, headers["Content-Type"] = text, "application/x-www-form-urlencoded"
        elif text:
            url += "?" + text
        async with self.http.request(
            method, URL(url, encoded=True), data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def setup(emulator_factory, http):
    clock = FakeClock(round(time.time(), 3))  # whole milliseconds: exact window edges
    key, secret = new_emulated_key("hmac", balances={"USDT": "10000", "BTC": "1"})
    emu = await emulator_factory([key], clock=clock)
    return Client(http, emu, key, secret, clock)


async def test_public_endpoints(setup):
    c = setup
    assert await c.call("GET", "/api/v3/ping", signed=False) == (200, {})
    assert await c.call("GET", "/api/v3/time", signed=False) == (200, {"serverTime": c.clock.ms()})
    status, info = await c.call("GET", "/api/v3/exchangeInfo", signed=False)
    assert status == 200 and {s["symbol"] for s in info["symbols"]} >= {
        "BTCUSDT",
        "ETHUSDT",
        "ETHBTC",
    }
    status, info = await c.call("GET", "/fapi/v1/exchangeInfo", signed=False)
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"] and info["symbols"][0][
        "contractType"
    ] == "PERPETUAL"
    status, info = await c.call("GET", "/dapi/v1/exchangeInfo", signed=False)
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSD_PERP"]
    assert await c.call("GET", "/api/v3/ticker/price", {"symbol": "BTCUSDT"}, signed=False) == (
        200,
        {"symbol": "BTCUSDT", "price": "60000.00000000"},
    )
    assert (await c.call("GET", "/api/v3/exchangeInfo", {"symbol": "NOPE"}, signed=False))[1][
        "code"
    ] == -1121


async def test_signed_account(setup):
    status, doc = await setup.call("GET", "/api/v3/account")
    assert status == 200
    assert {b["asset"]: b["free"] for b in doc["balances"]} == {
        "BTC": "1.00000000",
        "USDT": "10000.00000000",
    }


@pytest.mark.parametrize("in_body", [False, True])
async def test_signature_in_query_or_body(setup, in_body):
    order = {
        "symbol": "ETHUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "2000",
    }
    assert await setup.call("POST", "/api/v3/order/test", order, in_body=in_body) == (200, {})


async def test_bad_signature(setup):
    c = setup
    params = {"timestamp": c.clock.ms()}
    bad = sign("hmac", "0" * 64, f"timestamp={params['timestamp']}")
    status, doc = await c.call("GET", "/api/v3/account", {**params, "signature": bad}, signed=False)
    assert (status, doc) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )
    entry = c.emu.journal.entries()[-1]
    assert entry["signature_verified"] is False and entry["api_key"] == c.key.api_key


@pytest.mark.parametrize(
    "offset, recv_window, ok",
    [
        (-4999, None, True),
        (-5001, None, False),  # default recvWindow 5000
        (-59_000, 60000, True),
        (-61_000, 60000, False),  # max recvWindow
        (999, None, True),
        (1000, None, False),
        (1500, None, False),  # at most 1 s ahead
    ],
)
async def test_timing_window(setup, offset, recv_window, ok):
    params = {} if recv_window is None else {"recvWindow": recv_window}
    status, doc = await setup.call("GET", "/api/v3/account", params, ts_offset_ms=offset)
    if ok:
        assert status == 200, doc
    elif offset > 0:
        assert (status, doc) == (
            400,
            {
                "code": -1021,
                "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
            },
        )
    else:
        assert (status, doc) == (
            400,
            {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
        )
    # Even a rejected request is journalled with the signature's cryptographic result.
    assert setup.emu.journal.entries()[-1]["signature_verified"] is True


async def test_recv_window_over_max_and_microseconds(setup):
    status, doc = await setup.call("GET", "/api/v3/account", {"recvWindow": 60001})
    assert (status, doc["code"]) == (400, -1102)
    status, _ = await setup.call(
        "GET", "/api/v3/account", {"timestamp": setup.clock.ms() * 1000 + 7}
    )
    assert status == 200  # microsecond timestamps are accepted


async def test_missing_mandatory_and_duplicates(setup):
    c = setup
    status, doc = await c.call("GET", "/api/v3/account", {"signature": "ab"}, signed=False)
    assert (status, doc) == (
        400,
        {
            "code": -1102,
            "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        },
    )
    status, doc = await c.call("GET", "/api/v3/account", {"timestamp": c.clock.ms()}, signed=False)
    assert doc["code"] == -1102 and "'signature'" in doc["msg"]
    url = URL(f"{c.emu.url}/api/v3/account?timestamp=1&timestamp=2&signature=x", encoded=True)
    async with c.http.get(url, headers={"X-MBX-APIKEY": c.key.api_key}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, -1101)


async def test_api_key_errors(setup):
    c = setup
    unknown = "A" * 64
    assert await c.call("GET", "/api/v3/account", api_key=unknown) == (
        401,
        {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
    )
    assert await c.call("GET", "/api/v3/account", api_key="short") == (
        401,
        {"code": -2014, "msg": "API-key format invalid."},
    )
    assert (await c.call("GET", "/api/v3/account", api_key=""))[1]["code"] == -2014


async def test_permissions(emulator_factory, http):
    clock = FakeClock()
    key, secret = new_emulated_key("ed25519", permissions={"enableSpotAndMarginTrading": False})
    c = Client(http, await emulator_factory([key], clock=clock), key, secret, clock)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    assert (await c.call("POST", "/api/v3/order", order))[1]["code"] == -2015
    assert (await c.call("GET", "/api/v3/account"))[0] == 200
    status, doc = await c.call("GET", "/sapi/v1/account/apiRestrictions")
    assert (
        status == 200
        and doc["enableSpotAndMarginTrading"] is False
        and doc["enableWithdrawals"] is False
    )


async def test_withdrawal_refused_without_permission(setup):
    c = setup
    params = {"coin": "USDT", "address": "0x" + "a" * 40, "amount": "10", "network": "ETH"}
    status, doc = await c.call("POST", "/sapi/v1/capital/withdraw/apply", params, in_body=True)
    assert (status, doc) == (
        401,
        {"code": -1002, "msg": "You are not authorized to execute this request."},
    )
    c.key.permissions["enableWithdrawals"] = True
    status, doc = await c.call("POST", "/sapi/v1/capital/withdraw/apply", params, in_body=True)
    assert status == 200 and len(doc["id"]) == 32
    state = await (await c.http.get(c.emu.url + "/_emulator/state")).json()
    acct = state["binance"][c.key.api_key]
    assert acct["withdrawals"][0]["address"] == params["address"]
    assert Decimal(acct["balances"]["USDT"]["free"]) == Decimal("9990")


async def test_order_round_trip(setup):
    c = setup
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "50000",
    }
    status, created = await c.call("POST", "/api/v3/order", order, in_body=True)
    assert status == 200 and created["status"] == "NEW" and created["fills"] == []
    oid = created["orderId"]
    status, opened = await c.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in opened] == [oid]
    _, acct = await c.call("GET", "/api/v3/account")
    usdt = next(b for b in acct["balances"] if b["asset"] == "USDT")
    assert (usdt["free"], usdt["locked"]) == ("9500.00000000", "500.00000000")
    status, got = await c.call("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid})
    assert got["status"] == "NEW" and got["clientOrderId"] == created["clientOrderId"]
    status, cancelled = await c.call(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid}
    )
    assert status == 200 and cancelled["status"] == "CANCELED"
    assert await c.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}) == (200, [])
    assert await c.call("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": oid}) == (
        400,
        {"code": -2011, "msg": "Unknown order sent."},
    )
    assert await c.call("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999}) == (
        400,
        {"code": -2013, "msg": "Order does not exist."},
    )
    _, acct = await c.call("GET", "/api/v3/account")
    assert next(b for b in acct["balances"] if b["asset"] == "USDT")["free"] == "10000.00000000"


async def test_market_order_fills_and_moves_balances(setup):
    c = setup
    status, doc = await c.call(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.5"},
    )
    assert (
        status == 200
        and doc["status"] == "FILLED"
        and doc["cummulativeQuoteQty"] == "30000.00000000"
    )
    _, acct = await c.call("GET", "/api/v3/account")
    assert {b["asset"]: b["free"] for b in acct["balances"]} == {
        "BTC": "0.50000000",
        "USDT": "40000.00000000",
    }
    status, doc = await c.call(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "1"},
    )
    assert (status, doc["code"]) == (400, -2010)
    status, doc = await c.call(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.000001"},
    )
    assert (status, doc) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})


async def test_futures_leverage_and_order(setup):
    c = setup
    assert await c.call("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 20}) == (
        200,
        {"leverage": 20, "symbol": "BTCUSDT", "maxNotionalValue": "1000000"},
    )
    status, doc = await c.call(
        "POST",
        "/fapi/v1/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
    )
    assert status == 200 and doc["status"] == "FILLED" and doc["avgPrice"] == "60000.0"
    status, acct = await c.call("GET", "/fapi/v2/account")
    assert status == 200 and acct["positions"][0]["positionAmt"] == "0.010"


async def test_journal_reset_health_and_unknown_paths(setup):
    c = setup
    await c.call("GET", "/api/v3/account")
    async with c.http.get(c.emu.url + "/_emulator/journal") as resp:
        (entry,) = await resp.json()
    assert entry["method"] == "GET" and entry["path"] == "/api/v3/account"
    assert entry["query"].startswith("timestamp=") and "&signature=" in entry["query"]
    assert entry["headers"]["X-MBX-APIKEY"] == c.key.api_key and entry["status"] == 200
    assert entry["signature_verified"] is True and entry["exchange"] == "binance"
    async with c.http.get(c.emu.url + "/api/v3/nonexistent") as resp:
        assert resp.status == 404
    async with c.http.post(c.emu.url + "/_emulator/reset") as resp:
        assert resp.status == 200
    async with c.http.get(c.emu.url + "/_emulator/journal") as resp:
        assert await resp.json() == []
    async with c.http.get(c.emu.url + "/_emulator/health") as resp:
        assert await resp.json() == {"status": "ok", "exchanges": ["binance"]}


async def test_keys_of_one_account_share_its_orders_not_their_permissions(emulator_factory, http):
    """At Binance an account's keys (say, the old and the new one of a rotation) see the same orders and
    balances; what each may do is set per key ('account' in the accounts file; without it a key is an
    account of its own)."""
    clock = FakeClock(round(time.time(), 3))
    old, old_secret = new_emulated_key("hmac", balances={"USDT": "10000"})
    new, new_secret = new_emulated_key("hmac", permissions={"enableSpotAndMarginTrading": False})
    alone, alone_secret = new_emulated_key("hmac")
    old.account = new.account = "main"
    emu = await emulator_factory([old, new, alone], clock=clock)
    by_old, by_new = Client(http, emu, old, old_secret, clock), Client(http, emu, new, new_secret, clock)
    by_alone = Client(http, emu, alone, alone_secret, clock)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
             "price": "20000", "newClientOrderId": "rotated1"}
    assert (await by_old.call("POST", "/api/v3/order", order))[0] == 200
    status, seen = await by_new.call("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "rotated1"})
    assert status == 200 and seen["clientOrderId"] == "rotated1"
    assert (await by_alone.call("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "rotated1"}))[1][
        "code"] == -2013
    balances = {b["asset"]: b["locked"] for b in (await by_new.call("GET", "/api/v3/account"))[1]["balances"]}
    assert balances["USDT"] == "200.00000000"
    assert (await by_old.call("GET", "/sapi/v1/account/apiRestrictions"))[1]["enableSpotAndMarginTrading"] is True
    assert (await by_new.call("GET", "/sapi/v1/account/apiRestrictions"))[1]["enableSpotAndMarginTrading"] is False
    assert (await by_new.call("POST", "/api/v3/order", {**order, "newClientOrderId": "x"}))[1]["code"] == -2015


async def test_klines_are_flat_at_the_last_price_and_my_trades_list_fills(setup):
    """What a bot framework reads (freqtrade): candles consistent with fill prices, and its own trades."""
    c = setup
    status, candles = await c.call("GET", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 3},
                                   signed=False)
    assert status == 200 and len(candles) == 3
    now_minute = c.clock.ms() // 60_000 * 60_000
    assert [k[0] for k in candles] == [now_minute - 120_000, now_minute - 60_000, now_minute]
    _, ticker = await c.call("GET", "/api/v3/ticker/price", {"symbol": "BTCUSDT"}, signed=False)
    assert {k[4] for k in candles} == {ticker["price"]} and all(k[6] == k[0] + 59_999 for k in candles)
    status, err = await c.call("GET", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "7m"}, signed=False)
    assert (status, err["code"]) == (400, -1120)
    status, _ = await c.call("GET", "/api/v3/uiKlines", {"symbol": "BTCUSDT", "interval": "1h"}, signed=False)
    assert status == 200

    _, placed = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                       "quantity": "0.01"})
    _, resting = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                        "timeInForce": "GTC", "quantity": "0.01", "price": "20000"})
    status, trades = await c.call("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert status == 200 and [t["orderId"] for t in trades] == [placed["orderId"]]  # the resting one has no fill
    assert trades[0]["qty"] == "0.01000000" and trades[0]["isBuyer"] is True
    assert resting["status"] == "NEW"
    status, _ = await c.call("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, api_key="nobody")
    assert status == 401


async def test_a_test_can_move_the_price_and_resting_orders_it_crosses_fill(setup):
    """`POST /_emulator/price`: the hook a risk test needs (fills at the moved price; candles follow)."""
    c = setup
    _, resting = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                        "timeInForce": "GTC", "quantity": "0.01", "price": "50000"})
    _, far = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                    "timeInForce": "GTC", "quantity": "0.01", "price": "20000"})
    async with c.http.post(f"{c.emu.url}/_emulator/price",
                           json={"exchange": "binance", "symbol": "BTCUSDT", "price": "49000"}) as resp:
        assert resp.status == 200 and (await resp.json()) == {"filled": [resting["orderId"]]}
    status, orders = await c.call("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in orders] == [far["orderId"]]
    _, trades = await c.call("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert [(t["orderId"], t["price"]) for t in trades] == [(resting["orderId"], "50000.00000000")]
    _, candles = await c.call("GET", "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1},
                              signed=False)
    assert candles[0][4] == "49000.00000000"
    _, account = await c.call("GET", "/api/v3/account")
    btc = next(b for b in account["balances"] if b["asset"] == "BTC")
    assert Decimal(btc["free"]) == Decimal("1.01")
    for bad in ({"exchange": "binance", "symbol": "NOPE", "price": "1"},
                {"exchange": "kraken", "symbol": "x", "price": "1"},
                {"exchange": "binance", "symbol": "BTCUSDT", "price": "-1"}):
        async with c.http.post(f"{c.emu.url}/_emulator/price", json=bad) as resp:
            assert resp.status == 400
    async with c.http.post(f"{c.emu.url}/_emulator/reset") as resp:
        assert resp.status == 200
    _, ticker = await c.call("GET", "/api/v3/ticker/price", {"symbol": "BTCUSDT"}, signed=False)
    assert ticker["price"] != "49000.00000000"  # reset puts the first prices back
