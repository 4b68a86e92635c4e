"""Bybit v5 emulator over raw HTTP: signing, time window, error shapes, orders,
permissions, withdrawals and key revocation.

Requests are signed by a tiny signer written from Bybit's "Integration
Guidance" (bybit-exchange/docs ``docs/v5/guide.mdx``): HMAC-SHA256 hex (or
RSA-SHA256 base64) of ``timestamp + api_key + recv_window + queryString |
jsonBodyString``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from emulator_testlib import FakeClock

from keyproxy.emulator import bybit
from keyproxy.emulator.accounts import parse_accounts
from keyproxy.emulator.bybit_auth import string_to_sign

# pybit's own test credentials (bybit-exchange/pybit, tests/test_pybit.py)
PYBIT_KEY, PYBIT_SECRET = "CFEJUGQEQPPHGOHGHM", "VDFZSSPUTKRJMXAVMJXBHEXIPZNZJIZUBVRQ"
ENVELOPE = {"retCode", "retMsg", "result", "retExtInfo", "time"}


def sign(cred: dict[str, str], text: str) -> str:
    if "secret" in cred:
        return hmac.new(cred["secret"].encode(), text.encode(), hashlib.sha256).hexdigest()
    private = load_pem_private_key(cred["private_key"].encode(), None)
    raw = private.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,union-attr]
    return base64.b64encode(raw).decode()


async def send(http, emu, cred: dict[str, str], method: str, path: str, params: dict[str, Any],
               timestamp: int, *, recv_window: str | None = "5000",
               signature: str | None = None) -> tuple[int, dict[str, Any]]:
    payload = "&".join(f"{k}={v}" for k, v in params.items()) if method == "GET" \
        else json.dumps(params)
    window = recv_window or "5000"
    headers = {"X-BAPI-API-KEY": cred["api_key"], "X-BAPI-TIMESTAMP": str(timestamp),
               "X-BAPI-SIGN": signature if signature is not None
               else sign(cred, string_to_sign(str(timestamp), cred["api_key"], window, payload)),
               "Content-Type": "application/json"}
    if recv_window is not None:
        headers["X-BAPI-RECV-WINDOW"] = recv_window
    url = emu.url + path + (f"?{payload}" if method == "GET" and payload else "")
    async with http.request(method, url, headers=headers,
                            data=None if method == "GET" else payload) as resp:
        body = await resp.json()
        assert set(body) == ENVELOPE
        return resp.status, body


async def start(emulator_factory, clock, key_type="hmac", **kw: Any):
    entry, cred = bybit.new_key(key_type, **kw)
    emu = await emulator_factory(parse_accounts({"keys": [entry]}), clock=clock)
    return emu, cred


def test_doc_examples_string_to_sign():
    """guide.mdx "Create A Request": the published plain texts for GET and POST."""
    assert string_to_sign("1658384314791", "XXXXXXXXXX", "5000",
                          "category=option&symbol=BTC-29JUL22-25000-C") == \
        "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C"
    assert string_to_sign("1658385579423", "XXXXXXXXXX", "5000", '{"category": "option"}') == \
        '1658385579423XXXXXXXXXX5000{"category": "option"}'


async def test_pybit_signature_with_pybit_test_credentials(emulator_factory, http):
    """A worked example: pybit's generate_signature over the doc's GET text shape."""
    http_manager = pytest.importorskip("pybit._http_manager")
    clock = FakeClock(1658384314.791)
    entry = {"exchange": "bybit", "api_key": PYBIT_KEY, "key_type": "hmac",
             "secret": PYBIT_SECRET, "balances": {"USDT": "1"}}
    emu = await emulator_factory(parse_accounts({"keys": [entry]}), clock=clock)
    query = "category=spot&symbol=BTCUSDT"
    signature = http_manager.generate_signature(
        False, PYBIT_SECRET, "1658384314791" + PYBIT_KEY + "5000" + query)
    assert signature == hmac.new(PYBIT_SECRET.encode(),
                                 f"1658384314791{PYBIT_KEY}5000{query}".encode(),
                                 hashlib.sha256).hexdigest()
    status, body = await send(http, emu, {"api_key": PYBIT_KEY}, "GET", "/v5/order/realtime",
                              {"category": "spot", "symbol": "BTCUSDT"}, 1658384314791,
                              signature=signature)
    assert status == 200 and body["retCode"] == 0 and body["result"]["list"] == []


@pytest.mark.parametrize("key_type", ["hmac", "rsa"])
async def test_signature_checks(emulator_factory, http, key_type):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock, key_type)
    ok = await send(http, emu, cred, "GET", "/v5/account/wallet-balance",
                    {"accountType": "UNIFIED"}, clock.ms())
    assert ok[0] == 200 and ok[1]["retCode"] == 0 and ok[1]["retMsg"] == "OK"
    _, other = bybit.new_key(key_type)
    forged = {**other, "api_key": cred["api_key"]}
    status, body = await send(http, emu, forged, "GET", "/v5/account/wallet-balance",
                              {"accountType": "UNIFIED"}, clock.ms())
    assert (status, body["retCode"], body["result"]) == (200, 10004, {})
    assert body["retMsg"].startswith("error sign! origin_string[")
    assert emu.journal.entries()[-1]["signature_verified"] is False
    status, body = await send(http, emu, cred, "POST", "/v5/order/create", {}, clock.ms(),
                              signature="")
    assert body["retCode"] == 10004


async def test_unknown_key_is_http_401(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock)
    status, body = await send(http, emu, {**cred, "api_key": "A" * 18}, "GET",
                              "/v5/user/query-api", {}, clock.ms())
    assert (status, body["retCode"], body["retMsg"]) == (401, 10003, "API key is invalid.")


@pytest.mark.parametrize(
    "offset_ms, window, accepted",
    [(-5000, None, True), (-5001, None, False), (999, None, True), (1000, "5000", False),
     (-15000, "20000", True), (-20001, "20000", False)],
)
async def test_time_window(emulator_factory, http, offset_ms, window, accepted):
    """server_time - recv_window <= timestamp < server_time + 1000 (recv_window default 5000)."""
    clock = FakeClock(float(int(time.time())))
    emu, cred = await start(emulator_factory, clock)
    status, body = await send(http, emu, cred, "GET", "/v5/user/query-api", {},
                              clock.ms() + offset_ms, recv_window=window)
    assert status == 200
    assert body["retCode"] == (0 if accepted else 10002), body
    if not accepted:
        assert body["retMsg"].startswith("invalid request, please check your server timestamp")
        assert emu.journal.entries()[-1]["signature_verified"] is True


async def test_spot_order_round_trip_locks_funds(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock, balances={"USDT": "1000", "BTC": "0"})
    order = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
             "qty": "0.01", "price": "50000", "orderLinkId": "link-1"}
    _, created = await send(http, emu, cred, "POST", "/v5/order/create", order, clock.ms())
    assert created["retCode"] == 0 and created["result"]["orderLinkId"] == "link-1"
    _, dup = await send(http, emu, cred, "POST", "/v5/order/create", order, clock.ms())
    assert dup["retCode"] == 170141
    _, listed = await send(http, emu, cred, "GET", "/v5/order/realtime",
                           {"category": "spot", "symbol": "BTCUSDT"}, clock.ms())
    [doc] = listed["result"]["list"]
    assert (doc["orderId"], doc["orderStatus"], doc["price"], doc["qty"]) == (
        created["result"]["orderId"], "New", "50000", "0.01")
    _, wallet = await send(http, emu, cred, "GET", "/v5/account/wallet-balance",
                           {"accountType": "UNIFIED", "coin": "USDT"}, clock.ms())
    usdt = wallet["result"]["list"][0]["coin"][0]
    assert (usdt["walletBalance"], usdt["locked"]) == ("1000", "500")
    _, cancelled = await send(http, emu, cred, "POST", "/v5/order/cancel",
                              {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "link-1"},
                              clock.ms())
    assert cancelled["result"]["orderId"] == created["result"]["orderId"]
    _, again = await send(http, emu, cred, "POST", "/v5/order/cancel",
                          {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "link-1"},
                          clock.ms())
    assert again["retCode"] == 170213
    big = {**order, "orderLinkId": "link-2", "qty": "1"}
    _, refused = await send(http, emu, cred, "POST", "/v5/order/create", big, clock.ms())
    assert refused["retCode"] == 170131


async def test_permissions_read_only_ip_and_leverage(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock, permissions={"readOnly": 1})
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
             "qty": "0.01"}
    _, body = await send(http, emu, cred, "POST", "/v5/order/create", order, clock.ms())
    assert body["retCode"] == 10005
    emu2, cred2 = await start(emulator_factory, clock, permissions={"ips": ["10.1.2.3"]})
    _, body = await send(http, emu2, cred2, "GET", "/v5/user/query-api", {}, clock.ms())
    assert body["retCode"] == 10010
    emu3, cred3 = await start(emulator_factory, clock)
    lev = {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "10", "sellLeverage": "10"}
    _, first = await send(http, emu3, cred3, "POST", "/v5/position/set-leverage", lev, clock.ms())
    _, second = await send(http, emu3, cred3, "POST", "/v5/position/set-leverage", lev, clock.ms())
    assert (first["retCode"], second["retCode"]) == (0, 110043)


async def test_withdrawal_needs_the_withdraw_permission(emulator_factory, http):
    clock = FakeClock()
    request = {"coin": "USDT", "chain": "ETH", "address": "0x" + "b" * 40, "amount": "100",
               "timestamp": clock.ms(), "accountType": "FUND"}
    emu, cred = await start(emulator_factory, clock)
    _, body = await send(http, emu, cred, "POST", "/v5/asset/withdraw/create", request, clock.ms())
    assert body["retCode"] == 10005
    assert body["retMsg"] == "Permission denied, please check your API key permissions."
    async with http.get(emu.url + "/_emulator/state") as resp:
        assert (await resp.json())["bybit"][cred["api_key"]]["withdrawals"] == []
    emu, cred = await start(emulator_factory, clock, balances={"USDT": "200"},
                            permissions={"permissions": {"Wallet": ["Withdraw"]}})
    _, body = await send(http, emu, cred, "POST", "/v5/asset/withdraw/create", request, clock.ms())
    assert body["retCode"] == 0 and body["result"]["id"]
    _, body = await send(http, emu, cred, "POST", "/v5/asset/withdraw/create", request, clock.ms())
    assert body["retCode"] == 131212  # 200 - 104 left, not enough for another 100 + fee


async def test_query_api_and_delete_api_revokes(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock, key_type="rsa")
    _, info = await send(http, emu, cred, "GET", "/v5/user/query-api", {}, clock.ms())
    result = info["result"]
    assert result["apiKey"] == cred["api_key"] and result["readOnly"] == 0
    assert result["permissions"]["Spot"] == ["SpotTrade"] and result["ips"] == ["*"]
    assert "BEGIN PUBLIC KEY" in result["rsaPublicKey"]
    _, deleted = await send(http, emu, cred, "POST", "/v5/user/delete-api", {}, clock.ms())
    assert deleted["retCode"] == 0
    status, body = await send(http, emu, cred, "GET", "/v5/user/query-api", {}, clock.ms())
    assert (status, body["retCode"]) == (401, 10003)
    async with http.post(emu.url + "/_emulator/reset") as resp:
        assert resp.status == 200
    _, info = await send(http, emu, cred, "GET", "/v5/user/query-api", {}, clock.ms())
    assert info["retCode"] == 0
