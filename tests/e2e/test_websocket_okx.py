"""OKX's private WebSocket through keyproxy (issue 16): the bot's login verified with its virtual credential,
the upstream logged in with the real key, every later frame decided as that bot's.

Real daemon, real emulator (its `/ws/v5/private` verifies the login apart from keyproxy's adapters), raw
frames and unmodified ccxt.pro pointed at keyproxy.
"""

from __future__ import annotations

import asyncio
import base64
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
    with exchange_stack(tmp_path_factory.mktemp("ws-okx"), "okx", "okx") as stack:
        yield stack


def login(creds: dict[str, str], ts: int | None = None, secret: str | None = None) -> dict[str, Any]:
    stamp = str(ts if ts is not None else int(time.time()))
    sign = base64.b64encode(hmac.new((secret or creds["secret"]).encode(), (stamp + "GET/users/self/verify").encode(),
                                     hashlib.sha256).digest()).decode()
    return {"op": "login", "args": [{"apiKey": creds["api_key"], "passphrase": creds["passphrase"],
                                     "timestamp": stamp, "sign": sign}]}


def url(creds: dict[str, str]) -> str:
    return creds["base_url"].replace("http://", "ws://") + "/ws/v5/private"


async def talk(creds: dict[str, str], *frames: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        out = []
        for f in frames:
            await ws.send_str(json.dumps(f))
            out.append(json.loads((await ws.receive(timeout=10)).data))
        return out


def pro_client(ccxtpro: Any, creds: dict[str, str]) -> Any:
    """Unmodified ccxt.pro okx with the bot's virtual credential, pointed at keyproxy."""
    return point_ccxt_at(ccxtpro.okx({"apiKey": creds["api_key"], "secret": creds["secret"],
                                      "password": creds["passphrase"]}), creds["base_url"])


ORDER = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "20000", "sz": "0.001"}


async def test_login_is_verified_and_replaced_by_the_real_one(dev: DevStack) -> None:
    creds = dev.add_bot("okxws", "okx", "read,trade", "--set", "max_order_notional=100")
    start = len(dev.journal())
    logged, placed, over = await talk(creds, login(creds), {"id": "1", "op": "order", "args": [ORDER]},
                                      {"id": "2", "op": "order", "args": [{**ORDER, "sz": "1"}]})
    assert logged["event"] == "login" and logged["code"] == "0", logged
    assert placed["code"] == "0" and placed["data"][0]["sCode"] == "0", placed
    assert over["keyproxy_error"] == "notional_exceeded" and over["id"] == "2" and over["code"] == "51005", over
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["login", "order"]
    real = dev.real_key.credentials  # type: ignore[attr-defined]
    assert seen[0]["api_key"] == real["api_key"] and seen[0]["signature_verified"]
    assert not any(creds["api_key"] in e["body"] or creds["passphrase"] in e["body"] for e in dev.journal())


@pytest.mark.parametrize("case", ["bad_signature", "stale_request", "not_logged_in"])
async def test_refused_logins_and_frames_never_go_upstream(dev: DevStack, case: str) -> None:
    creds = dev.add_bot(f"okxws-{case.replace('_', '-')}", "okx", "read,trade")
    frame = {"bad_signature": login(creds, secret="junk"), "stale_request": login(creds, int(time.time()) - 120),
             "not_logged_in": {"id": "9", "op": "order", "args": [ORDER]}}[case]
    start = len(dev.journal())
    [answer] = await talk(creds, frame)
    expected = "unknown_bot" if case == "not_logged_in" else case
    assert answer["keyproxy_error"] == expected, answer
    assert ("event" in answer) == (case != "not_logged_in"), answer  # OKX's shapes: login error event, op error
    assert ws_entries(dev, start) == []


async def test_ccxt_pro_watch_orders_and_create_order_ws(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("okxpro", "okx", "read,trade")
    ex = pro_client(ccxtpro, creds)
    start = len(dev.journal())
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        await asyncio.sleep(1.5)
        order = await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000)
        seen = await asyncio.wait_for(watcher, 15)
        assert any(o["id"] == order["id"] for o in seen)
    finally:
        await ex.close()
    methods = [e["method"] for e in ws_entries(dev, start)]
    assert {"login", "subscribe", "batch-orders"} <= set(methods), methods  # ccxt.pro orders over the socket
    logins = [e for e in ws_entries(dev, start) if e["method"] == "login"]
    assert logins and all(e["signature_verified"] for e in logins)


async def test_ccxt_pro_watch_balance(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("okxbalance", "okx", "read,trade")
    ex = pro_client(ccxtpro, creds)
    start = len(dev.journal())
    try:
        await ex.load_markets()
        first = await asyncio.wait_for(ex.watch_balance(), 15)  # the account channel's snapshot
        assert first["USDT"]["total"] > 0
        watcher = asyncio.create_task(ex.watch_balance())
        await asyncio.sleep(0.5)
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)  # an order change: an update
        update = await asyncio.wait_for(watcher, 15)
        assert update["USDT"]["used"] > first["USDT"]["used"]  # the order holds funds now
    finally:
        await ex.close()
    subscribes = [e for e in ws_entries(dev, start) if e["method"] == "subscribe"]
    assert any('"account"' in e["body"] for e in subscribes)


async def test_a_revoked_bot_socket_closes(dev: DevStack) -> None:
    creds = dev.add_bot("okxrevoked", "okx", "read")
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        await ws.send_str(json.dumps(login(creds)))
        assert json.loads((await ws.receive(timeout=10)).data)["code"] == "0"
        dev.cli("bot", "revoke", "okxrevoked")
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008


async def test_orders_by_instidcode_are_decided_as_the_instrument_it_names(dev: DevStack) -> None:
    """ccxt.pro sends `instIdCode` instead of `instId` once the instruments publish it (OKX executes the code):
    keyproxy decides the order as the instrument the exchange published for that code, refuses a code that
    contradicts `instId`, and a bot limited to BTC/USDT cannot reach ETH by its code."""
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("okxcodes", "okx", "read,trade", "--set", "symbols=BTC/USDT")
    ex = pro_client(ccxtpro, creds)
    start = len(dev.journal())
    try:
        markets = await ex.load_markets()
        btc, eth = markets["BTC/USDT"]["instIdCode"], markets["ETH/USDT"]["instIdCode"]
        assert isinstance(btc, int) and isinstance(eth, int)
        order = await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000)
        await ex.cancel_order_ws(order["id"], "BTC/USDT")
        with pytest.raises(ccxtpro.BaseError, match="symbol_denied"):
            await ex.create_order_ws("ETH/USDT", "limit", "buy", 0.01, 1000)
    finally:
        await ex.close()
    sent = [e for e in ws_entries(dev, start) if e["method"] in ("batch-orders", "order", "cancel-order")]
    assert [e["method"] for e in sent] == ["batch-orders", "cancel-order"], sent
    assert all('"instIdCode"' in e["body"] and '"instId"' not in e["body"] for e in sent)  # the code alone
    # a frame whose code names another instrument than its instId, and a code never published
    mixed = {**ORDER, "instIdCode": eth}
    unknown = {k: v for k, v in ORDER.items() if k != "instId"} | {"instIdCode": 99999}
    # another bot: a second login of the same bot within the same second would be refused as a replay
    raw = dev.add_bot("okxcodes-raw", "okx", "read,trade", "--set", "symbols=BTC/USDT")
    start = len(dev.journal())
    _, contradicted, unpublished = await talk(raw, login(raw), {"id": "m", "op": "order", "args": [mixed]},
                                              {"id": "u", "op": "order", "args": [unknown]})
    assert contradicted["keyproxy_error"] == "bad_request" and "is ETH-USDT, not BTC-USDT" in contradicted["msg"]
    assert unpublished["keyproxy_error"] == "bad_request" and "99999" in unpublished["msg"]
    assert [e["method"] for e in ws_entries(dev, start)] == ["login"]


async def test_a_code_named_before_any_bot_loaded_markets_makes_keyproxy_fetch_them(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """After a restart keyproxy knows no codes; a frame naming one makes keyproxy fetch public/instruments
    itself (once), then decide the order as usual."""
    from keyproxy.emulator.okx_data import INST_ID_CODES

    with exchange_stack(tmp_path_factory.mktemp("ws-okx-codes"), "okx", "okx") as fresh:
        creds = fresh.add_bot("okxfresh", "okx", "read,trade", "--set", "max_order_notional=100")
        by_code = {k: v for k, v in ORDER.items() if k != "instId"} | {"instIdCode": INST_ID_CODES["BTC-USDT"]}
        start = len(fresh.journal())
        _, placed, over = await talk(creds, login(creds), {"id": "1", "op": "order", "args": [by_code]},
                                     {"id": "2", "op": "order", "args": [{**by_code, "sz": "1"}]})
        assert placed["code"] == "0", placed
        assert over["keyproxy_error"] == "notional_exceeded", over  # valued as BTC-USDT at its price
        fetched = [e["query"] for e in fresh.journal()[start:] if e["path"] == "/api/v5/public/instruments"]
        assert sorted(fetched) == ["instType=FUTURES", "instType=SPOT", "instType=SWAP"]


async def test_a_batch_okx_placed_in_part_counts_its_placed_legs_against_the_cap(dev: DevStack) -> None:
    """OKX answers a batch it placed in part with code "2"; the socket read it as a refusal, so the placed legs
    never entered the book and a capped bot could rest past its cap by adding a leg OKX refuses to each batch.
    Here the second leg reuses the first's client id: the emulator places the first and refuses the second."""
    creds = dev.add_bot("okxws-partial", "okx", "read,trade", "--set", "max_position=0.003")
    legs = [{**ORDER, "sz": "0.002", "clOrdId": "partial1"}, {**ORDER, "sz": "0.0005", "clOrdId": "partial1"}]
    logged, partial, more = await talk(creds, login(creds), {"id": "1", "op": "batch-orders", "args": legs},
                                       {"id": "2", "op": "order", "args": [{**ORDER, "sz": "0.002"}]})
    assert partial["code"] == "2" and [d["sCode"] for d in partial["data"]] == ["0", "51016"], partial
    assert more.get("keyproxy_error") == "position_exceeded", more  # 0.002 rests: another 0.002 passes 0.003


async def test_socket_opens_spend_okxs_connection_limit(tmp_path: Any) -> None:
    """OKX allows 3 connections a second per IP (session 34's WebSocket review: keyproxy let 40 open in 0.34 s): a
    handshake over the IP's budget is refused before anything opens upstream (429), and goes once the second passed.
    A socket may be a bot's way out (its cancels go over it): handshakes may use the whole budget, the reserve too."""
    with exchange_stack(tmp_path, "okx", "okx", extra_config='[governor.limits]\n"okx.WS_CONNECTIONS" = 3\n') as dev:
        creds = dev.add_bot("okx-conns", "okx", "read")
        start = len(dev.journal())
        async with aiohttp.ClientSession() as session:
            opened = [await session.ws_connect(url(creds)) for _ in range(3)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url(creds))
            assert refused.value.status == 429
            handshakes = [e for e in dev.journal()[start:] if e.get("path") == "/ws/v5/private"]
            await asyncio.sleep(1.1)
            opened.append(await session.ws_connect(url(creds)))
            for ws in opened:
                await ws.close()
        assert 'keyproxy_exchange_budget_refusals_total{' in dev.metrics()
        assert len(handshakes) <= 3, handshakes


async def test_candles_on_the_business_socket_need_no_login(dev: DevStack) -> None:
    """ccxt.pro's `watch_ohlcv` subscribes to `candle1m` on /ws/v5/business without logging in (OKX serves
    candlesticks there to anyone): keyproxy refused it as `unknown_bot` (session 34's regression review). Market data
    channels pass with no credential; the account's own channels still need the bot's login."""
    creds = dev.add_bot("okx-candles", "okx", "read")
    business = url(creds).replace("/ws/v5/private", "/ws/v5/business")
    async with aiohttp.ClientSession() as session, session.ws_connect(business) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT"}]}))
        answer = json.loads((await ws.receive(timeout=10)).data)
        assert answer.get("event") == "subscribe" and answer["arg"]["channel"] == "candle1m", answer
        await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "orders-algo", "instType": "ANY"}]}))
        refused = json.loads((await ws.receive(timeout=10)).data)
        assert refused.get("event") == "error" and refused.get("keyproxy_error") == "unknown_bot", refused
