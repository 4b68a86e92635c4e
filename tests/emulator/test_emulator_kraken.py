"""Kraken emulator: published API-Sign example, auth errors, nonces, permissions,
order round trips and withdrawals, over real HTTP on loopback.

Sources: docs.kraken.com/api/docs/guides/spot-rest-auth (API-Sign algorithm and
the worked example), docs.kraken.com/api/docs/guides/spot-rest-intro (JSON or
form payloads; errors as HTTP 200 + ``{"error": [...]}``), support.kraken.com
"API error messages" (EAPI:Invalid key / signature / nonce, EGeneral:Permission
denied, EQuery:Unknown asset pair, EOrder:Insufficient funds). The signer below
is test-local, written from the docs, and shares no code with the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from emulator_testlib import FakeClock

from keyproxy.emulator.accounts import EmulatedKey, parse_key
from keyproxy.emulator.kraken import new_key
from keyproxy.emulator.kraken_auth import Verifier, api_sign

DOC_SECRET = (
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)
DOC_NONCE = "1616492376594"
DOC_PATH = "/0/private/AddOrder"
DOC_PAYLOAD = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
DOC_SIGN = (
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
)


def sign(secret: str, path: str, nonce: str, data: bytes) -> str:
    """API-Sign exactly as the docs spell it out (test-local)."""
    inner = hashlib.sha256(nonce.encode() + data).digest()
    mac = hmac.new(base64.b64decode(secret), path.encode() + inner, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def make_key(permissions: dict[str, Any] | None = None, **balances: str) -> tuple[EmulatedKey, str]:
    entry, creds = new_key(permissions=permissions, balances=balances or None)
    return parse_key(0, entry), creds["secret"]


class Client:
    """Minimal Kraken client for one key, nonces from a counter (test-local)."""

    def __init__(self, http, emu, key: EmulatedKey, secret: str) -> None:
        self.http, self.emu, self.key, self.secret = http, emu, key, secret
        self.nonce = int(time.time() * 1000)

    async def private(self, method: str, params: dict[str, Any] | None = None, *,
                      nonce: int | str | None = None, as_json: bool = False,
                      api_key: str | None = None, api_sign: str | None = None) -> dict[str, Any]:
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        fields = {"nonce": nonce, **(params or {})}
        if as_json:
            data, ctype = json.dumps(fields).encode(), "application/json"
        else:
            data, ctype = urlencode(fields).encode(), "application/x-www-form-urlencoded"
        path = f"/0/private/{method}"
        headers = {
            "API-Key": self.key.api_key if api_key is None else api_key,
            "API-Sign": sign(self.secret, path, str(nonce), data) if api_sign is None else api_sign,
            "Content-Type": ctype,
        }
        async with self.http.post(self.emu.url + path, data=data, headers=headers) as resp:
            assert resp.status == 200  # Kraken reports errors in the body, not the status
            return await resp.json()

    async def public(self, method: str, **query: str) -> dict[str, Any]:
        async with self.http.get(f"{self.emu.url}/0/public/{method}", params=query) as resp:
            assert resp.status == 200
            return await resp.json()


@pytest.fixture
async def kraken(emulator_factory, http):
    async def _make(permissions=None, **balances):
        key, secret = make_key(permissions, **balances)
        emu = await emulator_factory([key])
        return emu, Client(http, emu, key, secret)
    return _make


def test_published_api_sign_example():
    """The worked example of the Spot REST Authentication guide, byte for byte."""
    assert api_sign(DOC_SECRET, DOC_PATH, DOC_NONCE, DOC_PAYLOAD.encode()) == DOC_SIGN
    assert sign(DOC_SECRET, DOC_PATH, DOC_NONCE, DOC_PAYLOAD.encode()) == DOC_SIGN
    verifier = Verifier(EmulatedKey("kraken", "doc", "hmac", secret=DOC_SECRET))
    assert verifier.verify(DOC_PATH, DOC_NONCE, DOC_PAYLOAD.encode(), DOC_SIGN)
    assert not verifier.verify(DOC_PATH, DOC_NONCE, DOC_PAYLOAD.encode() + b"0", DOC_SIGN)
    assert not verifier.verify("/0/private/Balance", DOC_NONCE, DOC_PAYLOAD.encode(), DOC_SIGN)


async def test_published_example_request_is_accepted(emulator_factory, http):
    key = EmulatedKey("kraken", "DOCKEY", "hmac", secret=DOC_SECRET,
                      balances={"ZUSD": Decimal(50000)})
    emu = await emulator_factory([key])
    headers = {"API-Key": "DOCKEY", "API-Sign": DOC_SIGN,
               "Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(emu.url + DOC_PATH, data=DOC_PAYLOAD.encode(), headers=headers) as resp:
        body = await resp.json()
    assert body["error"] == []
    assert body["result"]["descr"] == {"order": "buy 1.25000000 XBTUSD @ limit 37500.0"}
    [entry] = emu.journal.entries()
    assert entry["signature_verified"] is True and entry["api_key"] == "DOCKEY"
    async with http.post(emu.url + DOC_PATH, data=DOC_PAYLOAD.encode(), headers=headers) as resp:
        assert await resp.json() == {"error": ["EAPI:Invalid nonce"]}  # a replay


async def test_auth_errors(kraken):
    emu, c = await kraken()
    assert await c.private("Balance", api_key="nope") == {"error": ["EAPI:Invalid key"]}
    assert await c.private("Balance", api_key="") == {"error": ["EAPI:Invalid key"]}
    bad = base64.b64encode(b"\0" * 64).decode()
    assert await c.private("Balance", api_sign=bad) == {"error": ["EAPI:Invalid signature"]}
    assert await c.private("Balance", api_sign="not base64!") == {
        "error": ["EAPI:Invalid signature"]}
    wrong_secret = base64.b64encode(b"k" * 64).decode()
    c2 = Client(c.http, emu, c.key, wrong_secret)
    assert await c2.private("Balance") == {"error": ["EAPI:Invalid signature"]}
    ok = await c.private("Balance")
    assert ok["error"] == [] and ok["result"]["ZUSD"] == "100000.0000"
    journal = emu.journal.entries()
    assert [e["signature_verified"] for e in journal] == [None, None, False, False, False, True]
    assert journal[2]["error_code"] == "EAPI:Invalid signature"


async def test_nonce_must_increase_per_key(kraken):
    emu, c = await kraken()
    assert (await c.private("Balance", nonce=1000))["error"] == []
    for stale in (1000, 999, 0):
        assert await c.private("Balance", nonce=stale) == {"error": ["EAPI:Invalid nonce"]}
    assert await c.private("Balance", nonce="") == {"error": ["EAPI:Invalid nonce"]}
    assert await c.private("Balance", nonce="12a") == {"error": ["EAPI:Invalid nonce"]}
    assert await c.private("Balance", nonce=2**64) == {"error": ["EAPI:Invalid nonce"]}
    # a bad signature does not move the nonce forward
    assert (await c.private("Balance", nonce=5000, api_sign="AAAA"))["error"] == [
        "EAPI:Invalid signature"]
    assert (await c.private("Balance", nonce=2000))["error"] == []
    assert (await c.private("Balance", nonce=2**64 - 1))["error"] == []
    # reset (balances, orders) keeps the nonce: an exchange never forgets one
    async with c.http.post(emu.url + "/_emulator/reset") as resp:
        assert resp.status == 200
    assert await c.private("Balance", nonce=2**64 - 1) == {"error": ["EAPI:Invalid nonce"]}


async def test_nonce_window_accepts_late_unused_nonces(kraken):
    _, c = await kraken({"nonce_window": 10})
    assert (await c.private("Balance", nonce=100))["error"] == []
    assert (await c.private("Balance", nonce=95))["error"] == []
    assert (await c.private("Balance", nonce=95))["error"] == ["EAPI:Invalid nonce"]
    assert (await c.private("Balance", nonce=90))["error"] == ["EAPI:Invalid nonce"]


async def test_json_body_is_signed_as_sent(kraken):
    _, c = await kraken()
    body = await c.private("BalanceEx", as_json=True)
    assert body["result"]["XXBT"] == {"balance": "10.0000000000", "hold_trade": "0.0000000000"}
    placed = await c.private("AddOrder", {"pair": "XBTUSD", "type": "sell", "ordertype": "limit",
                                          "price": "70000.0", "volume": "0.5"}, as_json=True)
    assert placed["error"] == [] and len(placed["result"]["txid"]) == 1


async def test_permissions_and_key_info(kraken):
    _, c = await kraken({"funds_query": False, "trades_modify": False})
    assert await c.private("Balance") == {"error": ["EGeneral:Permission denied"]}
    order = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000", "volume": "1"}
    assert await c.private("AddOrder", order) == {"error": ["EGeneral:Permission denied"]}
    info = (await c.private("GetApiKeyInfo"))["result"]
    assert info["apiKey"] == c.key.api_key
    assert "query-funds" not in info["permissions"] and "query-open-trades" in info["permissions"]
    assert "withdraw-funds" not in info["permissions"] and info["nonce"] == str(c.nonce)


async def test_order_round_trip(kraken):
    emu, c = await kraken()
    order = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "50000",
             "volume": "0.1", "cl_ord_id": "bot-1"}
    placed = await c.private("AddOrder", order)
    assert placed["result"]["descr"]["order"] == "buy 0.10000000 XBTUSD @ limit 50000.0"
    [txid] = placed["result"]["txid"]
    opened = (await c.private("OpenOrders"))["result"]["open"]
    assert list(opened) == [txid] and opened[txid]["status"] == "open"
    assert opened[txid]["descr"]["pair"] == "XBTUSD" and opened[txid]["cl_ord_id"] == "bot-1"
    held = (await c.private("BalanceEx"))["result"]["ZUSD"]
    assert held == {"balance": "100000.0000", "hold_trade": "5000.0000"}
    queried = (await c.private("QueryOrders", {"txid": txid, "trades": "true"}))["result"]
    assert queried[txid]["vol"] == "0.10000000" and queried[txid]["vol_exec"] == "0.00000000"
    assert await c.private("CancelOrder", {"txid": txid}) == {"error": [], "result": {"count": 1}}
    assert (await c.private("OpenOrders"))["result"]["open"] == {}
    assert await c.private("CancelOrder", {"txid": txid}) == {"error": ["EOrder:Unknown order"]}
    closed = (await c.private("ClosedOrders"))["result"]
    assert closed["count"] == 1 and closed["closed"][txid]["status"] == "canceled"
    assert (await c.private("BalanceEx"))["result"]["ZUSD"]["hold_trade"] == "0.0000"
    # market order: fills at the emulator's last price (60000) and moves balances
    market = await c.private("AddOrder", {"pair": "XXBTZUSD", "type": "buy",
                                          "ordertype": "market", "volume": "1"})
    [mtx] = market["result"]["txid"]
    filled = (await c.private("QueryOrders", {"txid": mtx}))["result"][mtx]
    assert filled["status"] == "closed" and filled["cost"] == "60000.00000"
    balance = (await c.private("Balance"))["result"]
    assert balance["ZUSD"] == "40000.0000" and balance["XXBT"] == "11.0000000000"
    state = (await (await c.http.get(emu.url + "/_emulator/state")).json())["kraken"]
    assert {o["txid"]: o["status"] for o in state[c.key.api_key]["orders"]} == {
        txid: "canceled", mtx: "closed"}


@pytest.mark.parametrize("params, error", [
    ({"pair": "DOGEUSD"}, "EQuery:Unknown asset pair"),
    ({"type": "hold"}, "EGeneral:Invalid arguments:type"),
    ({"ordertype": "stop-loss"}, "EGeneral:Invalid arguments:ordertype"),
    ({"volume": "abc"}, "EGeneral:Invalid arguments:volume"),
    ({"price": "50000.05"}, "EGeneral:Invalid arguments:price"),
    ({"volume": "0.00001"}, "EOrder:Order minimum not met"),
    ({"volume": "3"}, "EOrder:Insufficient funds"),
])
async def test_order_rejections(kraken, params, error):
    _, c = await kraken(ZUSD="100000")
    order = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "50000",
             "volume": "0.1", **params}
    assert await c.private("AddOrder", order) == {"error": [error]}


async def test_withdrawal_needs_permission(kraken):
    _, c = await kraken()
    request = {"asset": "XBT", "key": "cold-wallet", "amount": "0.5"}
    assert await c.private("Withdraw", request) == {"error": ["EGeneral:Permission denied"]}
    _, c = await kraken({"funds_withdraw": True, "withdraw_keys": {"cold-wallet": "bc1q..."}})
    done = await c.private("Withdraw", request)
    assert done["error"] == [] and done["result"]["refid"].startswith("F")
    assert (await c.private("Balance"))["result"]["XXBT"] == "9.5000000000"
    assert await c.private("Withdraw", {**request, "key": "other"}) == {
        "error": ["EFunding:Unknown withdraw key"]}
    assert await c.private("Withdraw", {**request, "amount": "100"}) == {
        "error": ["EFunding:Insufficient funds"]}


async def test_public_endpoints_and_unknown_methods(kraken):
    _, c = await kraken()
    pairs = (await c.public("AssetPairs", pair="XBTUSD,ETHXBT"))["result"]
    assert set(pairs) == {"XXBTZUSD", "XETHXXBT"} and pairs["XXBTZUSD"]["ordermin"] == "0.0001"
    assert await c.public("AssetPairs", pair="NOPE") == {"error": ["EQuery:Unknown asset pair"]}
    assets = (await c.public("Assets"))["result"]
    assert assets["XXBT"]["altname"] == "XBT" and assets["ZUSD"]["decimals"] == 4
    assert await c.public("Nope") == {"error": ["EGeneral:Unknown method"]}
    assert await c.private("Nope") == {"error": ["EGeneral:Unknown method"]}
    async with c.http.get(c.emu.url + "/0/private/Balance") as resp:
        assert await resp.json() == {"error": ["EGeneral:Unknown method"]}


async def test_clock_drives_time_endpoint(emulator_factory, http):
    key, _ = make_key()
    emu = await emulator_factory([key], clock=FakeClock(1688669448.0))
    async with http.get(emu.url + "/0/public/Time") as resp:
        body = await resp.json()
    # the example of the spec's /public/Time: 1688669448 = "Thu, 06 Jul 23 18:50:48 +0000"
    assert body == {"error": [], "result": {"unixtime": 1688669448,
                                            "rfc1123": "Thu, 06 Jul 23 18:50:48 +0000"}}


def test_new_key_shape():
    entry, creds = new_key(permissions={"funds_withdraw": True}, balances={"ZUSD": "5"})
    assert entry["exchange"] == "kraken" and entry["key_type"] == "hmac"
    assert len(entry["api_key"]) == 56 and len(base64.b64decode(entry["secret"])) == 64
    assert entry["permissions"]["funds_withdraw"] is True and entry["balances"] == {"ZUSD": "5"}
    assert creds == {"api_key": entry["api_key"], "secret": entry["secret"]}
    with pytest.raises(ValueError):
        new_key("ed25519")
