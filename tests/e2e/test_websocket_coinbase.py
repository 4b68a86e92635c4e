"""Coinbase Advanced Trade's WebSocket through keyproxy (issue 16): each subscribe's JWT is verified with the
bot's virtual CDP key and replaced by one minted with the real key.

Real daemon, real emulator (its `/` checks JWTs apart from keyproxy's adapters), raw frames, unmodified
ccxt.pro and coinbase-advanced-py's WSUserClient pointed at keyproxy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import ccxt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.wsstack import exchange_stack, ws_entries


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with exchange_stack(tmp_path_factory.mktemp("ws-coinbase"), "cb", "coinbase", "ec") as stack:
        yield stack


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ws_jwt(creds: dict[str, str], nbf: int | None = None, pem: str | None = None, **extra: Any) -> str:
    """A WebSocket JWT as coinbase-advanced-py's build_ws_jwt makes it (ES256, no uri)."""
    now = nbf if nbf is not None else int(time.time())
    header = {"alg": "ES256", "kid": creds["api_key"], "nonce": secrets.token_hex(), "typ": "JWT"}
    claims = {"sub": creds["api_key"], "iss": "cdp", "nbf": now, "exp": now + 120, **extra}
    signing_input = ".".join(b64url(json.dumps(p).encode()) for p in (header, claims))
    key = serialization.load_pem_private_key((pem or creds["secret"]).encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def url(creds: dict[str, str], path: str = "") -> str:
    return creds["base_url"].replace("http://", "ws://") + path


async def talk(creds: dict[str, str], *frames: dict[str, Any], path: str = "") -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds, path)) as ws:
        out = []
        for f in frames:
            await ws.send_str(json.dumps(f))
            while True:
                doc = json.loads((await ws.receive(timeout=10)).data)
                if doc.get("channel") in ("subscriptions", None):
                    out.append(doc)
                    break
        return out


def user(creds: dict[str, str], **jwt: Any) -> dict[str, Any]:
    return {"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"], "jwt": ws_jwt(creds, **jwt)}


@pytest.mark.parametrize("path", ["", "/user"])
async def test_the_jwt_is_verified_and_replaced_by_a_real_one(dev: DevStack, path: str) -> None:
    creds = dev.add_bot(f"cbws{path.strip('/')}", "cb", "read")
    start = len(dev.journal())
    [answer] = await talk(creds, user(creds), path=path)
    assert answer["channel"] == "subscriptions" and answer["events"][0]["subscriptions"] == {"user": ["BTC-USD"]}
    [seen] = ws_entries(dev, start)
    real = dev.real_key.credentials  # type: ignore[attr-defined]
    assert seen["api_key"] == real["api_key"] and seen["signature_verified"]
    assert creds["api_key"] not in seen["body"]


@pytest.mark.parametrize("case", ["bad_signature", "stale_request", "uri_claim", "no_jwt", "unknown_channel"])
async def test_refused_subscriptions_never_go_upstream(dev: DevStack, case: str) -> None:
    creds = dev.add_bot(f"cbws-{case.replace('_', '-')}", "cb", "read")
    other = new_real_key("ec", exchange="coinbase").credentials["private_key"]
    frame = {"bad_signature": lambda: user(creds, pem=other),
             "stale_request": lambda: user(creds, nbf=int(time.time()) - 300),
             "uri_claim": lambda: user(creds, uri="GET api.coinbase.com/api/v3/brokerage/orders"),
             "no_jwt": lambda: {"type": "subscribe", "channel": "user", "product_ids": []},
             "unknown_channel": lambda: {"type": "subscribe", "channel": "orders", "product_ids": []}}[case]()
    start = len(dev.journal())
    [answer] = await talk(creds, frame)
    expected = {"uri_claim": "bad_request", "no_jwt": "unknown_bot", "unknown_channel": "bad_request"}.get(case, case)
    assert answer["type"] == "error" and answer["keyproxy_error"] == expected, answer
    assert ws_entries(dev, start) == []


async def test_market_channels_need_no_jwt(dev: DevStack) -> None:
    creds = dev.add_bot("cbpublic", "cb", "read")
    start = len(dev.journal())
    [answer] = await talk(creds, {"type": "subscribe", "channel": "heartbeats", "product_ids": []})
    assert answer["channel"] == "subscriptions", answer
    [seen] = ws_entries(dev, start)
    assert "jwt" not in json.loads(seen["body"])


async def test_ccxt_pro_watch_orders_hears_an_order_placed_through_keyproxy(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("cbpro", "cb", "read,trade")
    config = {"apiKey": creds["api_key"], "secret": creds["secret"]}
    ex = point_ccxt_at(ccxtpro.coinbase(config), creds["base_url"])
    rest = point_ccxt_at(ccxt.coinbase(config), creds["base_url"])
    start = len(dev.journal())
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USD"))
        await asyncio.sleep(1.5)
        placed = await asyncio.to_thread(rest.create_order, "BTC/USD", "limit", "buy", 0.001, 20000)
        seen = await asyncio.wait_for(watcher, 15)
        assert any(o["id"] == placed["id"] for o in seen), seen
    finally:
        await ex.close()
    subscribed = [e for e in ws_entries(dev, start) if e["method"] == "subscribe"]
    assert subscribed and all(e["signature_verified"] for e in subscribed)


async def test_coinbase_advanced_py_ws_user_client(dev: DevStack) -> None:
    from coinbase.websocket import WSUserClient

    creds = dev.add_bot("cbsdk", "cb", "read")
    got: list[dict[str, Any]] = []
    client = WSUserClient(api_key=creds["api_key"], api_secret=creds["secret"], base_url=url(creds, "/user"),
                          on_message=lambda m: got.append(json.loads(m)), retry=False)
    start = len(dev.journal())
    await client.open_async()
    try:
        await client.user_async(product_ids=["BTC-USD"])
        for _ in range(50):
            if any(m.get("channel") == "subscriptions" for m in got):
                break
            await asyncio.sleep(0.1)
    finally:
        await client.close_async()
    assert any(m.get("channel") == "subscriptions" for m in got), got
    assert not any(m.get("type") == "error" for m in got), got
    [seen] = [e for e in ws_entries(dev, start) if e["method"] == "subscribe"]
    assert seen["signature_verified"]


async def test_a_revoked_bot_socket_closes(dev: DevStack) -> None:
    creds = dev.add_bot("cbrevoked", "cb", "read")
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        await ws.send_str(json.dumps(user(creds)))
        assert json.loads((await ws.receive(timeout=10)).data)["channel"] == "subscriptions"
        dev.cli("bot", "revoke", "cbrevoked")
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008
