"""Coinbase emulator over raw HTTP: JWT verification, error shapes, orders, sends.

The JWTs here are built by a tiny signer written from Coinbase's "JWT
Authentication" page (docs.cdp.coinbase.com/get-started/authentication/
jwt-authentication): header {alg, kid, nonce, typ}, claims {sub, iss "cdp",
nbf, exp = nbf + 120, uri "METHOD api.coinbase.com/path"}; ES256 signatures
are the JWS raw r||s form. One test uses the official SDK's own generator.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from emulator_testlib import FakeClock

from keyproxy.emulator import coinbase
from keyproxy.emulator.accounts import parse_accounts

BROKERAGE = "/api/v3/brokerage"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _load_private(secret: str) -> Any:
    if secret.startswith("-----BEGIN"):
        return serialization.load_pem_private_key(secret.encode(), None)
    return ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret)[:32])


def make_jwt(cred: dict[str, str], method: str, path: str, now: float, *,
             host: str = "api.coinbase.com", lifetime: int = 120, kid: str | None = None,
             claims: dict[str, Any] | None = None) -> str:
    """A REST JWT exactly as the docs' Python sample builds one."""
    private = _load_private(cred["private_key"])
    alg = "EdDSA" if isinstance(private, ed25519.Ed25519PrivateKey) else "ES256"
    name = kid or cred["api_key"]
    header = {"alg": alg, "kid": name, "nonce": secrets.token_hex(), "typ": "JWT"}
    body = {"sub": name, "iss": "cdp", "nbf": int(now), "exp": int(now) + lifetime,
            "uri": f"{method} {host}{path}", **(claims or {})}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    if alg == "EdDSA":
        signature = private.sign(signing_input.encode())
    else:
        r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{_b64(signature)}"


async def start(emulator_factory, clock=None, **key_kwargs: Any):
    entry, cred = coinbase.new_key(**key_kwargs)
    extra = {"clock": clock} if clock else {}
    emu = await emulator_factory(parse_accounts({"keys": [entry]}), **extra)
    return emu, cred


async def call(http: aiohttp.ClientSession, emu, cred, method: str, path: str, *,
               query: str = "", body: Any = None, now: float, **jwt_kwargs: Any):
    token = make_jwt(cred, method, path, now, **jwt_kwargs)
    url = emu.url + path + (f"?{query}" if query else "")
    async with http.request(method, url, headers={"Authorization": f"Bearer {token}"},
                            data=None if body is None else json.dumps(body)) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text), resp.headers
        except ValueError:
            return resp.status, text, resp.headers


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
async def test_new_key_is_a_cdp_key(key_type):
    entry, cred = coinbase.new_key(key_type)
    assert entry["key_type"] == key_type and "BEGIN PUBLIC KEY" in entry["public_key"]
    assert "secret" not in entry and cred["api_key"] == entry["api_key"]
    if key_type == "ec":  # as CDP hands it out: SEC1 PEM, organizations/{org}/apiKeys/{id}
        assert cred["private_key"].startswith("-----BEGIN EC PRIVATE KEY-----\n")
        parts = entry["api_key"].split("/")
        assert parts[0] == "organizations" and parts[2] == "apiKeys" and len(parts) == 4
    else:  # base64 of seed || public key, 88 characters
        assert len(cred["private_key"]) == 88 and len(base64.b64decode(cred["private_key"])) == 64
    assert entry["permissions"] == {"can_view": True, "can_trade": True, "can_transfer": False}
    parse_accounts({"keys": [entry]})


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
async def test_valid_jwt_and_key_permissions(emulator_factory, http, key_type):
    emu, cred = await start(emulator_factory, key_type=key_type)
    status, body, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/key_permissions",
                                 now=time.time())
    assert status == 200
    assert body["can_view"] and body["can_trade"] and body["can_transfer"] is False
    entry = emu.journal.entries()[-1]
    assert entry["api_key"] == cred["api_key"] and entry["signature_verified"] is True


async def test_official_sdk_jwt_generator_verifies(emulator_factory, http):
    jwt_generator = pytest.importorskip("coinbase.jwt_generator")
    emu, cred = await start(emulator_factory)
    path = f"{BROKERAGE}/accounts"
    uri = jwt_generator.format_jwt_uri("GET", path)
    assert uri == f"GET api.coinbase.com{path}"
    token = jwt_generator.build_rest_jwt(uri, cred["api_key"], cred["private_key"])
    async with http.get(emu.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        assert {a["currency"] for a in (await resp.json())["accounts"]} >= {"BTC", "USD"}


@pytest.mark.parametrize(
    "tamper, reason",
    [
        ({"kid": "organizations/x/apiKeys/unknown"}, "kid names no known API key"),
        ({"path": f"{BROKERAGE}/orders/historical/batch"}, "uri claim does not match"),
        ({"method": "POST"}, "uri claim does not match"),
        ({"host": "api.coinbase.com:443"}, "uri claim does not match"),
        ({"lifetime": 121}, "lifetime"),
        ({"claims": {"iss": "someone"}}, "'iss'"),
        ({"claims": {"sub": "organizations/x/apiKeys/other"}}, "'sub'"),
        ({"claims": {"uri": None}}, "'uri'"),
    ],
)
async def test_refused_jwts_get_401_unauthorized(emulator_factory, http, tamper, reason):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock=clock)
    path, method = f"{BROKERAGE}/accounts", "GET"
    sign_path, sign_method = tamper.pop("path", path), tamper.pop("method", method)
    token = make_jwt(cred, sign_method, sign_path, clock.now, **tamper)
    async with http.get(emu.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401
        assert await resp.text() == "Unauthorized"  # Advanced Trade's plain 401 body
        assert reason in resp.headers[coinbase.REASON_HEADER]


async def test_bad_signature_expired_and_not_yet_valid(emulator_factory, http):
    clock = FakeClock(float(int(time.time())))  # whole second: nbf = now, exp = now + 120
    emu, cred = await start(emulator_factory, clock=clock)
    _, other = coinbase.new_key()
    path = f"{BROKERAGE}/accounts"
    forged = make_jwt({**other, "api_key": cred["api_key"]}, "GET", path, clock.now)
    async with http.get(emu.url + path, headers={"Authorization": f"Bearer {forged}"}) as resp:
        assert resp.status == 401
    assert emu.journal.entries()[-1]["signature_verified"] is False
    token = make_jwt(cred, "GET", path, clock.now)
    clock.now += 119.9
    status, _, _ = await call(http, emu, cred, "GET", path, now=clock.now - 119.9)
    assert status == 200
    clock.now += 0.1  # exp reached
    async with http.get(emu.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401 and "expired" in resp.headers[coinbase.REASON_HEADER]
    status, _, headers = await call(http, emu, cred, "GET", path, now=clock.now + 5)
    assert status == 401 and "not valid yet" in headers[coinbase.REASON_HEADER]
    async with http.get(emu.url + path) as resp:
        assert resp.status == 401 and await resp.text() == "Unauthorized"


async def test_v2_errors_use_the_v2_shape(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock=clock)
    status, body, _ = await call(http, emu, cred, "GET", "/v2/accounts", now=clock.now,
                                 host="127.0.0.1")
    assert status == 401 and body["errors"][0]["id"] == "authentication_error"
    status, body, _ = await call(http, emu, cred, "GET", "/v2/accounts", now=clock.now)
    assert status == 200 and {a["balance"]["currency"] for a in body["data"]} >= {"BTC", "USD"}


async def test_order_round_trip_moves_holds(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock=clock, balances={"USD": "1000", "BTC": "0"})
    order = {"client_order_id": "c-1", "product_id": "BTC-USD", "side": "BUY",
             "order_configuration": {"limit_limit_gtc": {"base_size": "0.01",
                                                         "limit_price": "50000"}}}
    status, body, _ = await call(http, emu, cred, "POST", f"{BROKERAGE}/orders", body=order,
                                 now=clock.now)
    assert status == 200 and body["success"] is True
    order_id = body["success_response"]["order_id"]
    _, again, _ = await call(http, emu, cred, "POST", f"{BROKERAGE}/orders", body=order,
                             now=clock.now)
    assert again["success_response"]["order_id"] == order_id  # client_order_id is idempotent
    _, listed, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/orders/historical/batch",
                              query="order_status=OPEN", now=clock.now)
    assert [o["order_id"] for o in listed["orders"]] == [order_id]
    assert listed["orders"][0]["status"] == "OPEN"
    _, accounts, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/accounts", now=clock.now)
    usd = next(a for a in accounts["accounts"] if a["currency"] == "USD")
    assert usd["available_balance"]["value"] == "500" and usd["hold"]["value"] == "500"
    _, cancelled, _ = await call(http, emu, cred, "POST", f"{BROKERAGE}/orders/batch_cancel",
                                 body={"order_ids": [order_id, "nope"]}, now=clock.now)
    assert [r["success"] for r in cancelled["results"]] == [True, False]
    _, listed, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/orders/historical/batch",
                              query="order_status=OPEN", now=clock.now)
    assert listed["orders"] == []
    too_big = {**order, "client_order_id": "c-2",
               "order_configuration": {"market_market_ioc": {"quote_size": "5000"}}}
    _, refused, _ = await call(http, emu, cred, "POST", f"{BROKERAGE}/orders", body=too_big,
                               now=clock.now)
    assert refused["success"] is False
    assert refused["error_response"]["error"] == "INSUFFICIENT_FUND"
    async with http.get(emu.url + "/_emulator/state") as resp:
        balances = (await resp.json())["coinbase"][cred["api_key"]]["balances"]
    assert Decimal(balances["USD"]["available"]) == 1000


async def test_scopes_trade_and_transfer(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock=clock,
                            permissions={"can_trade": False, "can_transfer": False})
    order = {"client_order_id": "c-1", "product_id": "BTC-USD", "side": "BUY",
             "order_configuration": {"limit_limit_gtc": {"base_size": "0.01",
                                                         "limit_price": "50000"}}}
    status, body, _ = await call(http, emu, cred, "POST", f"{BROKERAGE}/orders", body=order,
                                 now=clock.now)
    assert status == 403 and body["error_details"] == "Missing required scopes"
    _, accounts, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/accounts", now=clock.now)
    btc = next(a["uuid"] for a in accounts["accounts"] if a["currency"] == "BTC")
    send = {"type": "send", "to": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "amount": "0.1",
            "currency": "BTC"}
    path = f"/v2/accounts/{btc}/transactions"
    status, body, _ = await call(http, emu, cred, "POST", path, body=send, now=clock.now)
    assert status == 403
    assert body == {"errors": [{"id": "invalid_scope", "message": "Invalid scope"}]}
    assert emu.journal.entries()[-1]["error_code"] == "invalid_scope"
    async with http.get(emu.url + "/_emulator/state") as resp:
        assert (await resp.json())["coinbase"][cred["api_key"]]["sends"] == []


async def test_send_with_transfer_scope(emulator_factory, http):
    clock = FakeClock()
    emu, cred = await start(emulator_factory, clock=clock, permissions={"can_transfer": True},
                            balances={"BTC": "1"})
    _, accounts, _ = await call(http, emu, cred, "GET", "/v2/accounts", now=clock.now)
    btc = accounts["data"][0]["id"]
    send = {"type": "send", "to": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "amount": "0.25",
            "currency": "BTC", "idem": "x"}
    status, body, _ = await call(http, emu, cred, "POST", f"/v2/accounts/{btc}/transactions",
                                 body=send, now=clock.now)
    assert status == 200 and body["data"]["type"] == "send"
    assert body["data"]["amount"] == {"amount": "-0.25", "currency": "BTC"}
    _, after, _ = await call(http, emu, cred, "GET", f"/v2/accounts/{btc}", now=clock.now)
    assert after["data"]["balance"]["amount"] == "0.75"


async def test_shares_a_port_with_binance(emulator_factory, http):
    from keyproxy.emulator.keys import new_emulated_key

    binance_key, _ = new_emulated_key()
    entry, cred = coinbase.new_key()
    keys = [binance_key, *parse_accounts({"keys": [entry]})]
    emu = await emulator_factory(keys)
    status, _, _ = await call(http, emu, cred, "GET", f"{BROKERAGE}/accounts",
                              now=time.time())
    assert status == 200 and emu.journal.entries()[-1]["exchange"] == "coinbase"
    async with http.get(emu.url + "/api/v3/exchangeInfo") as resp:
        assert resp.status == 200
    assert emu.journal.entries()[-1]["exchange"] == "binance"
