"""Bybit's private WebSockets through keyproxy (issue 16): the bot's auth verified with its virtual key, the
upstream authenticated with the real key, every later frame decided as that bot's.

Real daemon, real emulator (its `/v5/private` and `/v5/trade` verify the auth apart from keyproxy's
adapters), raw frames and unmodified ccxt.pro pointed at keyproxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack, point_ccxt_at
from tests.e2e.wsstack import exchange_stack, ws_entries


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with exchange_stack(tmp_path_factory.mktemp("ws-bybit"), "bb", "bybit") as stack:
        yield stack


def auth(creds: dict[str, str], expires: int | None = None, secret: str | None = None) -> dict[str, Any]:
    exp = expires if expires is not None else int(time.time() * 1000) + 10_000
    sig = hmac.new((secret or creds["secret"]).encode(), f"GET/realtime{exp}".encode(), hashlib.sha256).hexdigest()
    return {"req_id": "a1", "op": "auth", "args": [creds["api_key"], exp, sig]}


def url(creds: dict[str, str], path: str = "/v5/trade") -> str:
    return creds["base_url"].replace("http://", "ws://") + path


async def talk(creds: dict[str, str], *frames: dict[str, Any], path: str = "/v5/trade") -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds, path)) as ws:
        out = []
        for f in frames:
            await ws.send_str(json.dumps(f))
            out.append(json.loads((await ws.receive(timeout=10)).data))
        return out


ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
         "price": "20000"}


def trade(req_id: str, order: dict[str, Any]) -> dict[str, Any]:
    return {"reqId": req_id, "header": {"X-BAPI-TIMESTAMP": str(int(time.time() * 1000))}, "op": "order.create",
            "args": [order]}


async def test_auth_is_verified_and_replaced_by_the_real_one(dev: DevStack) -> None:
    creds = dev.add_bot("bbws", "bb", "read,trade", "--set", "max_order_notional=100")
    start = len(dev.journal())
    authed, placed, over = await talk(creds, auth(creds), trade("1", ORDER), trade("2", {**ORDER, "qty": "1"}))
    assert authed["success"] is True and authed["op"] == "auth", authed
    assert placed["retCode"] == 0 and placed["data"]["orderId"], placed
    assert over["keyproxy_error"] == "notional_exceeded" and over["reqId"] == "2" and over["retCode"], over
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["auth", "order.create"]
    real = dev.real_key.credentials  # type: ignore[attr-defined]
    assert seen[0]["api_key"] == real["api_key"] and seen[0]["signature_verified"]
    assert not any(creds["api_key"] in e["body"] for e in dev.journal())


@pytest.mark.parametrize("case", ["bad_signature", "stale_request", "not_authenticated"])
async def test_refused_auths_and_frames_never_go_upstream(dev: DevStack, case: str) -> None:
    creds = dev.add_bot(f"bbws-{case.replace('_', '-')}", "bb", "read,trade")
    frame = {"bad_signature": auth(creds, secret="junk"), "stale_request": auth(creds, int(time.time() * 1000) - 1),
             "not_authenticated": trade("9", ORDER)}[case]
    start = len(dev.journal())
    [answer] = await talk(creds, frame)
    assert answer["keyproxy_error"] == ("unknown_bot" if case == "not_authenticated" else case), answer
    assert ws_entries(dev, start) == []


async def test_ccxt_pro_watch_orders_and_create_order_ws(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("bbpro", "bb", "read,trade")
    ex = point_ccxt_at(ccxtpro.bybit({"apiKey": creds["api_key"], "secret": creds["secret"],
                                      "options": {"defaultType": "swap"}}), creds["base_url"])
    start = len(dev.journal())
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USDT:USDT"))
        await asyncio.sleep(1.5)
        order = await ex.create_order_ws("BTC/USDT:USDT", "limit", "buy", 0.001, 20000)
        seen = await asyncio.wait_for(watcher, 15)
        assert any(o["id"] == order["id"] for o in seen)
        await ex.cancel_order_ws(order["id"], "BTC/USDT:USDT")
        assert order["id"] not in [o["id"] for o in await ex.fetch_open_orders("BTC/USDT:USDT")]
    finally:
        await ex.close()
    methods = [e["method"] for e in ws_entries(dev, start)]
    assert {"auth", "subscribe", "order.create", "order.cancel"} <= set(methods), methods
    assert all(e["signature_verified"] for e in ws_entries(dev, start) if e["method"] == "auth")


async def test_ccxt_pro_watch_balance(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("bbbalance", "bb", "read,trade")
    ex = point_ccxt_at(ccxtpro.bybit({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])
    start = len(dev.journal())
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_balance())
        await asyncio.sleep(1.5)
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)  # an order change: a wallet push
        balance = await asyncio.wait_for(watcher, 15)
        assert balance["USDT"]["total"] > 0 and balance["USDT"]["used"] > 0  # the order holds funds
    finally:
        await ex.close()
    subscribes = [e for e in ws_entries(dev, start) if e["method"] == "subscribe"]
    assert any('"wallet"' in e["body"] for e in subscribes)

async def test_a_revoked_bot_socket_closes(dev: DevStack) -> None:
    creds = dev.add_bot("bbrevoked", "bb", "read")
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds, "/v5/private")) as ws:
        await ws.send_str(json.dumps(auth(creds)))
        assert json.loads((await ws.receive(timeout=10)).data)["success"] is True
        dev.cli("bot", "revoke", "bbrevoked")
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008


def test_pybit_websocket_order_stream_through_keyproxy(dev: DevStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The official pybit WebSocket client, its module's PRIVATE_WSS pointed at keyproxy (docs/clients.md):
    its auth is verified and replaced, and an order placed through keyproxy arrives on its order stream."""
    unified = pytest.importorskip("pybit.unified_trading")
    creds = dev.add_bot("bbpybit", "bb", "read,trade")
    monkeypatch.setattr(unified, "PRIVATE_WSS", url(creds, "/v5/private"))
    events: list[dict[str, Any]] = []

    def subscribed() -> Any:
        socket = unified.WebSocket(testnet=False, channel_type="private", api_key=creds["api_key"],
                                   api_secret=creds["secret"])
        socket.order_stream(events.append)
        time.sleep(1.0)
        return socket

    # pybit stores a subscription's req_id only after sending it: an answer quicker than that (loopback) fails its
    # callback with a KeyError, and it closes the socket for good. Its own race, not keyproxy's: set up again.
    ws = subscribed()
    try:
        for _ in range(2):
            if ws.is_connected():
                break
            ws.exit()
            ws = subscribed()
        session = unified.HTTP(api_key=creds["api_key"], api_secret=creds["secret"])
        session.endpoint = creds["base_url"]
        placed = session.place_order(**ORDER)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not events:
            time.sleep(0.1)
        assert any(o["orderId"] == placed["result"]["orderId"] for e in events for o in e["data"]), events
    finally:
        ws.exit()


async def test_a_dcp_subscription_is_decided_as_the_rest_disconnect_cancel_all(dev: DevStack) -> None:
    """Session 27's review: subscribing to `dcp` on `/v5/private` arms Bybit's disconnect-cancel-all, which cancels
    every order of the account once the socket is gone; it passed as a read, so a read-only bot subscribed, closed
    its socket and another bot's orders were cancelled. It is now a trade request decided as its REST twin: no
    `trade` scope, refused; on an account other bots trade, refused as a timer that cancels their orders."""
    dev.add_bot("dcp-other", "bb", "read,trade")  # another bot trades on this account
    reader = dev.add_bot("dcp-reader", "bb", "read")
    trader = dev.add_bot("dcp-trader", "bb", "read,trade")
    for creds, code in ((reader, "scope_denied"), (trader, "policy_denied")):
        for topic in ("dcp", " DCP.future"):
            authed, sub = await talk(creds, auth(creds), {"op": "subscribe", "req_id": "d", "args": [topic]},
                                     path="/v5/private")
            assert authed["success"] is True, authed
            assert sub["success"] is False and sub["keyproxy_error"] == code, sub
    assert not [e for e in dev.journal() if "dcp" in str(e.get("body", "")).lower()]  # never subscribed upstream
    authed, sub = await talk(reader, auth(reader), {"op": "subscribe", "req_id": "o", "args": ["order"]},
                             path="/v5/private")
    assert sub["success"] is True, sub  # other topics stay a read
