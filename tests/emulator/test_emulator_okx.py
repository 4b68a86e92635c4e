"""OKX emulator: the documented signing examples, auth errors (codes, HTTP
statuses), the 30 s timestamp window, demo vs live keys, permissions, order
round trips and withdrawals, over real HTTP on loopback.

Sources: OKX API v5 docs "REST Authentication" (prehash ``timestamp + method +
requestPath + body``; example timestamp ``2020-12-08T09:08:57.715Z``, GET path
``/api/v5/account/balance?ccy=BTC``, body ``{"instId":"BTC-USDT","lever":"5",
"mgnMode":"isolated"}``) and "Error Code" (5010x-5011x are HTTP 401). OKX
publishes no secret/signature pair, so the examples are signed here with a
test secret by a test-local signer that shares no code with the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from emulator_testlib import FakeClock

from keyproxy.emulator.accounts import EmulatedKey, parse_key
from keyproxy.emulator.keys import new_emulated_key
from keyproxy.emulator.kraken import new_key as new_kraken_key
from keyproxy.emulator.okx import new_key
from keyproxy.emulator.okx_auth import iso_ms, ok_access_sign, parse_timestamp_ms

DOC_TS = "2020-12-08T09:08:57.715Z"
DOC_GET = "/api/v5/account/balance?ccy=BTC"
DOC_POST_PATH = "/api/v5/account/set-leverage"
DOC_BODY = '{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}'
DOC_MS = int(datetime(2020, 12, 8, 9, 8, 57, 715000, tzinfo=UTC).timestamp() * 1000)


def sign(secret: str, ts: str, method: str, path: str, body: str = "") -> str:
    """OK-ACCESS-SIGN as the docs spell it out (test-local)."""
    mac = hmac.new(secret.encode(), (ts + method + path + body).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def make_key(**permissions: Any) -> tuple[EmulatedKey, dict[str, str]]:
    entry, creds = new_key(permissions=permissions or None)
    return parse_key(0, entry), creds


class Client:
    """Minimal OKX client for one key on a settable clock (test-local)."""

    def __init__(self, http, emu, creds: dict[str, str], clock: FakeClock) -> None:
        self.http, self.emu, self.creds, self.clock = http, emu, creds, clock

    async def call(self, method: str, path: str, body: Any = None, *, ts: str | None = None,
                   demo: bool | None = None, headers: dict[str, str] | None = None,
                   drop: tuple[str, ...] = (), content_type: str = "application/json",
                   raw_body: str | None = None) -> tuple[int, dict[str, Any]]:
        text = raw_body if raw_body is not None else ("" if body is None else json.dumps(body))
        ts = ts or iso_ms(self.clock.ms())
        sent = {
            "OK-ACCESS-KEY": self.creds["api_key"],
            "OK-ACCESS-SIGN": sign(self.creds["secret"], ts, method, path, text),
            "OK-ACCESS-TIMESTAMP": ts,
            "OK-ACCESS-PASSPHRASE": self.creds["passphrase"],
            "Content-Type": content_type,
        }
        if demo is not None:
            sent["x-simulated-trading"] = "1" if demo else "0"
        sent.update(headers or {})
        for name in drop:
            sent.pop(name)
        async with self.http.request(method, self.emu.url + path, data=text.encode() or None,
                                     headers=sent) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def okx(emulator_factory, http):
    async def _make(clock: FakeClock | None = None, **permissions: Any):
        key, creds = make_key(**permissions)
        clock = clock or FakeClock(round(DOC_MS / 1000 + 0.2, 3))
        emu = await emulator_factory([key], clock=clock)
        return emu, Client(http, emu, creds, clock)
    return _make


def test_timestamp_format_and_signer_agree():
    assert parse_timestamp_ms(DOC_TS) == DOC_MS and iso_ms(DOC_MS) == DOC_TS
    for bad in ("2020-12-08T09:08:57Z", "2020-12-08 09:08:57.715Z", "1607418537715", ""):
        assert parse_timestamp_ms(bad) is None
    secret = "0123456789ABCDEF0123456789ABCDEF"
    expected = sign(secret, DOC_TS, "GET", DOC_GET)
    assert ok_access_sign(secret, DOC_TS, "GET", DOC_GET, b"") == expected
    assert ok_access_sign(secret, DOC_TS, "POST", DOC_POST_PATH, DOC_BODY.encode()) == sign(
        secret, DOC_TS, "POST", DOC_POST_PATH, DOC_BODY)


async def test_documented_examples_are_accepted(okx):
    emu, c = await okx()
    status, body = await c.call("GET", DOC_GET, ts=DOC_TS)
    assert status == 200 and body["code"] == "0"
    assert [d["ccy"] for d in body["data"][0]["details"]] == ["BTC"]
    status, body = await c.call("POST", DOC_POST_PATH, raw_body=DOC_BODY, ts=DOC_TS)
    assert (status, body) == (200, {"code": "0", "msg": "", "data": [
        {"lever": "5", "mgnMode": "isolated", "instId": "BTC-USDT", "posSide": ""}]})
    assert [e["signature_verified"] for e in emu.journal.entries()] == [True, True]


@pytest.mark.parametrize("change, code, msg", [
    ({"OK-ACCESS-SIGN": base64.b64encode(b"x" * 32).decode()}, "50113", "Invalid Sign"),
    ({"OK-ACCESS-KEY": "00000000-0000-0000-0000-000000000000"}, "50111", "Invalid OK-ACCESS-KEY"),
    ({"OK-ACCESS-PASSPHRASE": "wrong"}, "50105",
     'Request header "OK-ACCESS-PASSPHRASE" incorrect.'),
    ({"OK-ACCESS-TIMESTAMP": "1607418537715"}, "50112", "Invalid OK-ACCESS-TIMESTAMP"),
])
async def test_auth_errors(okx, change, code, msg):
    emu, c = await okx()
    status, body = await c.call("GET", "/api/v5/account/balance", headers=change)
    assert (status, body) == (401, {"msg": msg, "code": code})
    assert emu.journal.entries()[-1]["error_code"] == int(code)


@pytest.mark.parametrize("header, code", [
    ("OK-ACCESS-KEY", "50103"), ("OK-ACCESS-SIGN", "50106"),
    ("OK-ACCESS-TIMESTAMP", "50107"), ("OK-ACCESS-PASSPHRASE", "50104"),
])
async def test_missing_headers(okx, header, code):
    _, c = await okx()
    status, body = await c.call("GET", "/api/v5/account/balance", drop=(header,))
    assert (status, body) == (401, {"msg": f'Request header "{header}" can not be empty.',
                                    "code": code})


async def test_body_is_part_of_the_signature(okx):
    emu, c = await okx()
    ts = iso_ms(c.clock.ms())
    good = sign(c.creds["secret"], ts, "POST", DOC_POST_PATH, DOC_BODY)
    tampered = DOC_BODY.replace('"5"', '"50"')
    status, body = await c.call("POST", DOC_POST_PATH, raw_body=tampered, ts=ts,
                                headers={"OK-ACCESS-SIGN": good})
    assert (status, body["code"]) == (401, "50113")
    assert emu.journal.entries()[-1]["signature_verified"] is False


async def test_timestamp_window_is_30_seconds(okx):
    clock = FakeClock(1_700_000_000.0)
    _, c = await okx(clock)
    now = clock.ms()
    for offset, expected in ((-30_000, 200), (30_000, 200), (-30_001, 401), (30_001, 401)):
        status, body = await c.call("GET", "/api/v5/account/balance", ts=iso_ms(now + offset))
        assert status == expected, offset
        if expected == 401:
            assert body == {"msg": "Timestamp request expired", "code": "50102"}


async def test_demo_and_live_keys_need_their_environment(okx):
    wrong_env = {"msg": "APIKey does not match current environment.", "code": "50101"}
    _, live = await okx()
    assert (await live.call("GET", "/api/v5/account/balance", demo=True)) == (401, wrong_env)
    assert (await live.call("GET", "/api/v5/account/balance", demo=False))[0] == 200
    _, demo = await okx(demo=True)
    assert (await demo.call("GET", "/api/v5/account/balance")) == (401, wrong_env)
    assert (await demo.call("GET", "/api/v5/account/balance", demo=False)) == (401, wrong_env)
    assert (await demo.call("GET", "/api/v5/account/balance", demo=True))[0] == 200


async def test_permissions_and_account_config(okx):
    _, c = await okx(trade=False)
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
             "px": "50000", "sz": "0.01"}
    status, body = await c.call("POST", "/api/v5/trade/order", order)
    assert (status, body) == (401, {"msg": "API key doesn't have permission to use this function",
                                    "code": "50120"})
    status, body = await c.call("GET", "/api/v5/account/config")
    assert status == 200 and body["data"][0]["perm"] == "read_only"


async def test_order_round_trip(okx):
    _, c = await okx()
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
             "px": "50000", "sz": "0.1", "clOrdId": "bot1", "tag": "", "posSide": "", "tgtCcy": ""}
    status, placed = await c.call("POST", "/api/v5/trade/order", order)
    assert status == 200 and placed["code"] == "0" and placed["data"][0]["sCode"] == "0"
    ord_id = placed["data"][0]["ordId"]
    _, pending = await c.call("GET", "/api/v5/trade/orders-pending?instId=BTC-USDT")
    assert [(o["ordId"], o["state"], o["clOrdId"]) for o in pending["data"]] == [
        (ord_id, "live", "bot1")]
    _, bal = await c.call("GET", "/api/v5/account/balance?ccy=USDT")
    usdt = bal["data"][0]["details"][0]
    assert (usdt["cashBal"], usdt["frozenBal"], usdt["availBal"]) == ("100000", "5000", "95000")
    _, got = await c.call("GET", f"/api/v5/trade/order?instId=BTC-USDT&ordId={ord_id}")
    assert got["data"][0]["px"] == "50000" and got["data"][0]["sz"] == "0.1"
    _, cancel = await c.call("POST", "/api/v5/trade/cancel-order",
                             {"instId": "BTC-USDT", "clOrdId": "bot1"})
    assert cancel["code"] == "0" and cancel["data"][0]["ordId"] == ord_id
    _, again = await c.call("POST", "/api/v5/trade/cancel-order",
                            {"instId": "BTC-USDT", "ordId": ord_id})
    assert again["code"] == "1" and again["data"][0]["sCode"] == "51401"
    assert (await c.call("GET", "/api/v5/trade/orders-pending"))[1]["data"] == []
    _, missing = await c.call("GET", "/api/v5/trade/order?instId=BTC-USDT&ordId=1")
    assert missing == {"code": "51603", "msg": "Order does not exist", "data": []}
    # market buy sized in quote currency (the default for spot market buys)
    _, market = await c.call("POST", "/api/v5/trade/order", {
        "instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "3000"})
    mid = market["data"][0]["ordId"]
    _, filled = await c.call("GET", f"/api/v5/trade/order?instId=ETH-USDT&ordId={mid}")
    assert (filled["data"][0]["state"], filled["data"][0]["accFillSz"]) == ("filled", "1")
    _, bal = await c.call("GET", "/api/v5/account/balance?ccy=ETH,USDT")
    assert {d["ccy"]: d["cashBal"] for d in bal["data"][0]["details"]} == {
        "ETH": "101", "USDT": "97000"}


@pytest.mark.parametrize("change, s_code", [
    ({"instId": "DOGE-USDT"}, "51001"),
    ({"sz": "10"}, "51008"),
    ({"sz": "0.000001"}, "51020"),
    ({"px": "50000.05"}, "51000"),
    ({"side": "long"}, "51000"),
    ({"tdMode": ""}, "50014"),
])
async def test_order_rejections(okx, change, s_code):
    _, c = await okx()
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
             "px": "50000", "sz": "0.01", **change}
    status, body = await c.call("POST", "/api/v5/trade/order", order)
    assert status == 200 and body["code"] == "1" and body["msg"] == "All operations failed"
    assert body["data"][0]["sCode"] == s_code and body["data"][0]["ordId"] == ""


async def test_batch_orders_partial_success(okx):
    _, c = await okx()
    good = {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "market",
            "sz": "1"}
    _, body = await c.call("POST", "/api/v5/trade/batch-orders", [good, {**good, "sz": "0.001"}])
    assert body["code"] == "2" and [d["sCode"] for d in body["data"]] == ["0", "51121"]
    _, positions = await c.call("GET", "/api/v5/account/positions")
    assert [(p["instId"], p["pos"]) for p in positions["data"]] == [("BTC-USDT-SWAP", "1")]


async def test_withdrawal_needs_permission(okx):
    request = {"ccy": "USDT", "amt": "100", "dest": "4", "toAddr": "0x" + "a" * 40,
               "chain": "USDT-ERC20"}
    _, c = await okx()
    status, body = await c.call("POST", "/api/v5/asset/withdrawal", request)
    assert (status, body["code"]) == (401, "50120")
    _, c = await okx(withdraw=True)
    status, body = await c.call("POST", "/api/v5/asset/withdrawal", request)
    assert status == 200 and body["data"][0]["chain"] == "USDT-ERC20" and body["data"][0]["wdId"]
    _, bal = await c.call("GET", "/api/v5/asset/balances?ccy=USDT")
    assert bal["data"][0]["bal"] == "99900"
    status, body = await c.call("POST", "/api/v5/asset/withdrawal", {**request, "amt": "1e9"})
    assert (status, body["code"]) == (400, "51000")
    status, body = await c.call("POST", "/api/v5/asset/withdrawal", {**request, "amt": "999999"})
    assert (status, body) == (200, {"code": "58350", "msg": "Insufficient balance", "data": []})


async def test_body_format_errors(okx):
    _, c = await okx()
    status, body = await c.call("POST", "/api/v5/trade/order", raw_body="instId=BTC-USDT",
                                content_type="application/x-www-form-urlencoded")
    assert (status, body["code"]) == (400, "50006")
    status, body = await c.call("POST", "/api/v5/trade/order", raw_body="{not json")
    assert (status, body["code"]) == (400, "50002")
    status, body = await c.call("DELETE", "/api/v5/trade/order")
    assert (status, body["code"]) == (405, "50115")


async def test_public_instruments(okx):
    emu, c = await okx()
    async with c.http.get(emu.url + "/api/v5/public/instruments?instType=SWAP") as resp:
        ids = [i["instId"] for i in (await resp.json())["data"]]
    assert ids == ["BTC-USDT-SWAP", "BTC-USD-SWAP", "ETH-USDT-SWAP"]
    async with c.http.get(emu.url + "/api/v5/public/instruments") as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "50014"
    async with c.http.get(emu.url + "/api/v5/public/instruments?instType=OPTION") as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "50015"
    assert all(e["api_key"] is None for e in emu.journal.entries())


def test_new_key_shape():
    entry, creds = new_key(permissions={"demo": True})
    assert entry["exchange"] == "okx" and entry["key_type"] == "hmac"
    assert len(entry["api_key"]) == 36 and len(entry["secret"]) == 32 and entry["passphrase"]
    assert entry["permissions"] == {"read_only": True, "trade": True, "withdraw": False,
                                    "demo": True}
    assert creds == {"api_key": entry["api_key"], "secret": entry["secret"],
                     "passphrase": entry["passphrase"]}


async def test_shares_a_port_with_binance_and_kraken(emulator_factory, http):
    """okx's /api/v5/ lies inside binance's /api/: okx answers its own paths."""
    okx_key, _ = make_key()
    emu = await emulator_factory([new_emulated_key()[0], okx_key,
                                  parse_key(0, new_kraken_key()[0])])
    for path in ("/api/v5/public/time", "/api/v3/time", "/0/public/Time"):
        async with http.get(emu.url + path) as resp:
            assert resp.status == 200, path
    assert [e["exchange"] for e in emu.journal.entries()] == ["okx", "binance", "kraken"]


async def test_algo_orders_rest_list_fire_and_cancel(okx):
    """OKX docs-v5 "Algo Trading": a stop rests `live`, is listed by its kind (`ordType` mandatory, `conditional,oco`
    the one pair), fires when the price passes its trigger (the order it places names the algo order, and the algo
    order names it in `ordIdList`), and the history is asked by `state` or `algoId`, exactly one."""
    emu, c = await okx()
    stop = {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "conditional", "sz": "0.1",
            "slTriggerPx": "59000", "slOrdPx": "-1", "algoClOrdId": "mystop"}
    _, placed = await c.call("POST", "/api/v5/trade/order-algo", stop)
    assert placed["code"] == "0" and placed["data"][0]["sCode"] == "0"
    algo_id = placed["data"][0]["algoId"]
    _, twice = await c.call("POST", "/api/v5/trade/order-algo", stop)
    assert twice["code"] == "1" and twice["data"][0]["sCode"] == "51065"
    _, bad = await c.call("POST", "/api/v5/trade/order-algo", {**stop, "algoClOrdId": "", "slTriggerPx": ""})
    assert bad["data"][0]["sCode"] == "50014"
    _, trigger = await c.call("POST", "/api/v5/trade/order-algo", {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "trigger", "sz": "0.1",
        "triggerPx": "70000", "orderPx": "-1", "tgtCcy": "base_ccy"})
    for query, ids in (("ordType=conditional,oco", [algo_id]), ("ordType=trigger", [trigger["data"][0]["algoId"]]),
                       ("ordType=oco", [])):
        status, listed = await c.call("GET", f"/api/v5/trade/orders-algo-pending?{query}")
        assert status == 200 and [o["algoId"] for o in listed["data"]] == ids, query
    for query in ("instId=BTC-USDT", "ordType=trigger,oco", "ordType=stop"):
        status, refused = await c.call("GET", f"/api/v5/trade/orders-algo-pending?{query}")
        assert refused["code"] in ("50014", "51000"), query
    async with c.http.post(emu.url + "/_emulator/price", json={"exchange": "okx", "symbol": "BTC-USDT",
                                                               "price": "58000"}) as moved:
        assert (await moved.json())["filled"] == [algo_id]
    _, fired = await c.call("GET", f"/api/v5/trade/order-algo?algoId={algo_id}")
    [row] = fired["data"]
    assert (row["state"], row["actualSide"], len(row["ordIdList"])) == ("effective", "sl", 1)
    _, child = await c.call("GET", f"/api/v5/trade/order?instId=BTC-USDT&ordId={row['ordIdList'][0]}")
    assert (child["data"][0]["algoId"], child["data"][0]["algoClOrdId"], child["data"][0]["state"]) == (
        algo_id, "mystop", "filled")
    _, history = await c.call("GET", "/api/v5/trade/orders-algo-history?ordType=conditional&state=effective")
    assert [o["algoId"] for o in history["data"]] == [algo_id]
    _, both = await c.call("GET", f"/api/v5/trade/orders-algo-history?ordType=conditional&state=effective"
                                  f"&algoId={algo_id}")
    assert both["code"] == "51000"
    other = trigger["data"][0]["algoId"]
    _, cancelled = await c.call("POST", "/api/v5/trade/cancel-algos", [
        {"algoId": other, "instId": "BTC-USDT"}, {"algoId": algo_id, "instId": "BTC-USDT"}])
    assert cancelled["code"] == "2" and [d["sCode"] for d in cancelled["data"]] == ["0", "51400"]
    async with c.http.post(emu.url + "/_emulator/price", json={"exchange": "okx", "symbol": "BTC-USDT",
                                                               "price": "60000"}):
        pass
