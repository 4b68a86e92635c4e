"""Binance's WebSocket API through keyproxy: every request frame through the same core as REST.

Real daemon, real emulator (its `/ws-api/v3` verifies signatures apart from keyproxy's adapters),
raw signed frames and unmodified ccxt.pro pointed at keyproxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests
from yarl import URL

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.wsstack import exchange_stack, ws_entries


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with exchange_stack(tmp_path_factory.mktemp("ws-binance"), "main") as stack:
        yield stack


def ws_url(creds: dict[str, str]) -> str:
    return creds["base_url"].replace("http://", "ws://") + "/ws-api/v3"


def payload(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "signature")


def signed(creds: dict[str, str], method: str, params: dict[str, Any], frame_id: Any = 1,
           secret: str | None = None) -> dict[str, Any]:
    p = {**params, "apiKey": creds["api_key"], "timestamp": int(time.time() * 1000)}
    p["signature"] = hmac.new((secret or creds["secret"]).encode(), payload(p).encode(), hashlib.sha256).hexdigest()
    return {"id": frame_id, "method": method, "params": p}


ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
         "price": "20000"}


async def exchange(url: str, *frames: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        answers = []
        for f in frames:
            await ws.send_str(json.dumps(f))
            answers.append(json.loads((await ws.receive(timeout=10)).data))
        return answers


async def test_signed_order_frames_are_resigned_with_the_real_key(dev: DevStack) -> None:
    creds = dev.add_bot("wsbot", "main", "read,trade")
    start = len(dev.journal())
    [placed, status] = await exchange(ws_url(creds), signed(creds, "order.place", ORDER, 1),
                                      signed(creds, "account.status", {}, 2))
    assert placed["status"] == 200 and placed["result"]["status"] == "NEW", placed
    assert status["status"] == 200 and "balances" in status["result"]
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["order.place", "account.status"]
    real = dev.real_key.credentials["api_key"]  # type: ignore[attr-defined]
    assert all(e["api_key"] == real and e["signature_verified"] for e in seen)
    assert not any(creds["api_key"] in e["body"] or creds["secret"] in e["body"] for e in dev.journal())


@pytest.mark.parametrize("case", ["bad_signature", "stale_request", "unknown_endpoint", "bad_request"])
async def test_refused_frames_get_an_error_frame_and_nothing_goes_upstream(dev: DevStack, case: str) -> None:
    creds = dev.add_bot(f"ws-{case.replace('_', '-')}", "main", "read,trade")
    frame: Any = signed(creds, "order.place", ORDER, "x1", secret="junk" if case == "bad_signature" else None)
    if case == "stale_request":
        frame["params"]["timestamp"] -= 120_000
        frame = signed(creds, "order.place", {**ORDER, "timestamp": frame["params"]["timestamp"]}, "x1")
        frame["params"]["timestamp"] = int(time.time() * 1000) - 120_000
        frame["params"]["signature"] = hmac.new(creds["secret"].encode(), payload(frame["params"]).encode(),
                                                hashlib.sha256).hexdigest()
    elif case == "unknown_endpoint":
        frame = signed(creds, "order.teleport", ORDER, "x1")
    elif case == "bad_request":
        frame = {"method": "order.place"}  # no id
    start = len(dev.journal())
    [answer] = await exchange(ws_url(creds), frame)
    assert answer["keyproxy_error"] == case and answer["status"] >= 400 and "code" in answer["error"], answer
    assert ws_entries(dev, start) == []


async def test_replay_notional_and_halt_are_decided_like_rest(dev: DevStack) -> None:
    creds = dev.add_bot("wslimited", "main", "read,trade", "--set", "max_order_notional=100")
    frame = signed(creds, "order.place", ORDER, 7)  # 0.001 x 20000 = 20
    big = signed(creds, "order.place", {**ORDER, "quantity": "1"}, 8)
    start = len(dev.journal())
    first, again, over = await exchange(ws_url(creds), frame, {**frame, "id": 9}, big)
    assert first["status"] == 200
    assert again["keyproxy_error"] == "replayed_request"
    assert over["keyproxy_error"] == "notional_exceeded" and over["error"]["code"] == -2010
    assert [e["method"] for e in ws_entries(dev, start)] == ["order.place"]
    dev.cli("halt", "--bot", "wslimited", "--reason", "test")
    try:
        [halted] = await exchange(ws_url(creds), signed(creds, "order.place", ORDER, 10))
        assert halted["keyproxy_error"] == "halted"
    finally:
        dev.cli("resume", "--bot", "wslimited")


async def test_a_revoked_bot_socket_closes_and_others_keep_working(dev: DevStack) -> None:
    doomed, other = dev.add_bot("wsdoomed", "main", "read"), dev.add_bot("wsother", "main", "read")
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(doomed)) as ws, \
            s.ws_connect(ws_url(other)) as ws2:
        await ws.send_str(json.dumps(signed(doomed, "account.status", {}, 1)))
        assert json.loads((await ws.receive(timeout=10)).data)["status"] == 200
        dev.cli("bot", "revoke", "wsdoomed")
        msg = await ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.TEXT:  # a frame raced the watcher: refused, then closed
            assert json.loads(msg.data)["keyproxy_error"] == "unknown_bot"
            msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        await ws2.send_str(json.dumps(signed(other, "account.status", {}, 1)))
        assert json.loads((await ws2.receive(timeout=10)).data)["status"] == 200


async def test_ccxt_pro_watch_orders_and_ws_orders_through_keyproxy(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("ccxtpro", "main", "read,trade")
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "spot"}}), creds["base_url"])
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        balance = asyncio.create_task(ex.watch_balance())
        await asyncio.sleep(1.0)  # the user data stream subscription is up
        order = await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000)
        seen = await asyncio.wait_for(watcher, 15)
        assert any(o["id"] == order["id"] for o in seen)
        assert (await asyncio.wait_for(balance, 15))["USDT"]["used"] > 0  # 20 USDT locked by the order
        cancelled = await ex.cancel_order_ws(order["id"], "BTC/USDT")
        assert cancelled["status"] == "canceled"
    finally:
        await ex.close()


@pytest.fixture(scope="module")
def futures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("ws-futures"))
    key = new_real_key(permissions={"enableReading": True, "enableFutures": True})
    try:
        stack.serve_account("fut", key)
        yield stack
    finally:
        stack.close()


async def test_ccxt_pro_futures_watch_balance_through_keyproxy(futures: DevStack) -> None:
    """USD-M: the listenKey comes through keyproxy (REST), the stream `/private/ws?listenKey=` too."""
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = futures.add_bot("futwatch", "fut", "read,trade")
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "swap"}}), creds["base_url"])
    try:
        await ex.load_markets()
        balance = asyncio.create_task(ex.watch_balance())
        orders = asyncio.create_task(ex.watch_orders("BTC/USDT:USDT"))
        await asyncio.sleep(1.5)  # the stream is up
        placed = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.005, 20000)
        seen = await asyncio.wait_for(orders, 15)
        assert any(o["id"] == placed["id"] for o in seen)
        assert "USDT" in (await asyncio.wait_for(balance, 15))
    finally:
        await ex.close()
    handshakes = [e for e in futures.journal() if e["path"] == "/private/ws"]
    assert handshakes and all(creds["api_key"] not in json.dumps(e) for e in futures.journal())
    logs = "".join(p.read_text(errors="replace") for d in (futures.logs, futures.audit_dir)  # type: ignore[attr-defined]
                   for p in d.glob("*") if p.is_file())
    key = handshakes[0]["query"].partition("listenKey=")[2] if isinstance(handshakes[0].get("query"), str) else ""
    assert key and key not in logs  # the listenKey is a read credential: never logged


async def test_a_private_stream_needs_a_listen_key_obtained_through_keyproxy(futures: DevStack) -> None:
    """A listenKey keyproxy never relayed opens nothing; a revoked bot's stream closes (its key was its own)."""
    creds = futures.add_bot("futstranger", "fut", "read")
    base = creds["base_url"].replace("http://", "ws://")
    async with aiohttp.ClientSession() as s:
        for query, code in (("listenKey=" + "A" * 64, "unknown_bot"), ("listenKey=a&listenKey=b", "bad_request"),
                            ("", "bad_request")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(f"{base}/private/ws?{query}")
            assert err.value.status in (400, 401, 403), (query, err.value.status)
    other = futures.add_bot("futrevoked", "fut", "read")
    req = urllib.request.Request(other["base_url"] + "/fapi/v1/listenKey", method="POST",
                                 headers={"X-MBX-APIKEY": other["api_key"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        key = json.loads(r.read())["listenKey"]
    async with aiohttp.ClientSession() as s, s.ws_connect(
            other["base_url"].replace("http://", "ws://") + f"/private/ws?listenKey={key}") as ws:
        futures.cli("bot", "revoke", "futrevoked")
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008


def listen_key(creds: dict[str, str], method: str = "POST", path: str = "/fapi/v1/listenKey") -> str:
    req = urllib.request.Request(creds["base_url"] + path, method=method, headers={"X-MBX-APIKEY": creds["api_key"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(json.loads(r.read())["listenKey"])


async def test_a_revoked_bot_cannot_read_the_stream_again_once_another_bot_renews_the_listen_key(
        futures: DevStack) -> None:
    """Session 26's review (high): Binance hands every bot of an account the same listenKey, and keyproxy relayed it,
    bound to whichever bot asked last. A revoked bot that kept it opened `/private/ws` again (as the other bot's)
    once the other bot renewed it, and read the account's orders and balances. Each bot now gets a virtual
    listenKey of its own, bound to its credential: the real one never reaches a bot (nor the exchange's
    keepalive answer, nor an event naming it), and a revoked bot's token opens nothing whoever renews."""
    evil = futures.add_bot("lkevil", "fut", "read")
    victim = futures.add_bot("lkvictim", "fut", "read,trade")
    mine = listen_key(evil)
    futures.cli("bot", "revoke", "lkevil")
    theirs = listen_key(victim)
    assert listen_key(victim, "PUT") == theirs  # a keepalive answers the bot's own virtual key again
    assert theirs != mine and len(theirs) == 64 and theirs.isalnum()
    base = futures.proxy_url.replace("http://", "ws://") + "/fut/private/ws?listenKey="
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(base + mine)
        assert err.value.status == 401
        async with s.ws_connect(base + theirs) as ws:  # the victim's own stream works
            await asyncio.sleep(0.3)
            assert not ws.closed
    handshakes = [e for e in futures.journal() if e["path"] == "/private/ws"]
    real = handshakes[-1]["query"].partition("listenKey=")[2]
    assert real and real not in (mine, theirs)  # the exchange saw its own key; the bots never did
    for body in (f"listenKey={theirs}".encode(), b'{"a":1}'):  # a virtual key is no credential on REST
        req = urllib.request.Request(victim["base_url"] + "/fapi/v1/listenKey", method="DELETE", data=body)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401


@pytest.fixture
def futures_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A futures account no other test's bot holds a listenKey of."""
    stack = DevStack(tmp_path_factory.mktemp("ws-futures-alone"))
    try:
        stack.serve_account("fut", new_real_key(permissions={"enableReading": True, "enableFutures": True}))
        yield stack
    finally:
        stack.close()


async def test_one_bots_listen_key_close_leaves_the_other_bots_stream_open(futures_alone: DevStack) -> None:
    """Session 26's review: Binance hands every bot of an account the same listenKey, so one bot's `DELETE
    /fapi/v1/listenKey` closed every bot's user stream. While another bot holds the key keyproxy answers the close
    itself (`{}`, as Binance does), nothing sent, and releases only the closing bot's virtual key; the last
    holder's close reaches the exchange."""
    futures = futures_alone
    closer = futures.add_bot("lkcloser", "fut", "read")
    reader = futures.add_bot("lkreader", "fut", "read")
    mine, theirs = listen_key(closer), listen_key(reader)
    sent = len([e for e in futures.journal() if e["method"] == "DELETE"])
    url = futures.proxy_url.replace("http://", "ws://") + "/fut/private/ws?listenKey="
    async with aiohttp.ClientSession() as s, s.ws_connect(url + theirs) as ws:
        assert listen_key_closed(closer) == {}
        assert len([e for e in futures.journal() if e["method"] == "DELETE"]) == sent  # nothing reached Binance
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=1.0)  # the reader's stream stays open: no close, no frame
        assert not ws.closed
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:  # the closer's virtual key opens nothing now
            await s.ws_connect(url + mine)
        assert err.value.status == 401
        assert listen_key_closed(reader) == {}  # the last holder: its close goes to the exchange
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert len([e for e in futures.journal() if e["method"] == "DELETE"]) == sent + 1
    done = [doc for f in sorted(futures.audit_dir.rglob("audit-*.jsonl")) for line in f.read_text().splitlines()
            if (doc := json.loads(line)).get("event") == "request.done" and doc.get("bot") == "lkcloser"
            and doc.get("method") == "DELETE"]
    assert done and done[-1]["cache"] == "local" and done[-1]["upstream_status"] is None


def listen_key_closed(creds: dict[str, str]) -> Any:
    req = urllib.request.Request(creds["base_url"] + "/fapi/v1/listenKey", method="DELETE",
                                 headers={"X-MBX-APIKEY": creds["api_key"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


async def test_a_bot_that_may_not_read_opens_no_private_stream_and_loses_an_open_one(futures: DevStack) -> None:
    """Session 26's review: a private stream checked the bot's standing and address, never its `read` scope, so a
    bot whose reads were taken away (`bot set scopes=trade`) still opened one and read on."""
    creds = futures.add_bot("lkscope", "fut", "read,trade")
    key = listen_key(creds)
    url = futures.proxy_url.replace("http://", "ws://") + f"/fut/private/ws?listenKey={key}"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        futures.cli("bot", "set", "lkscope", "scopes=trade")
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(url)
        assert err.value.status == 403


async def test_python_binance_futures_user_socket_through_keyproxy(futures: DevStack) -> None:
    """python-binance's `futures_user_socket` (`<FSTREAM_URL>private/ws/<listenKey>`) with its futures URLs pointed at
    keyproxy: the bot holds a virtual listenKey, so its user stream must come through keyproxy (it could not open
    one at Binance), and an order's update arrives."""
    async_client = pytest.importorskip("binance.async_client")
    streams = pytest.importorskip("binance.ws.streams")
    creds = futures.add_bot("pbfut", "fut", "read,trade")
    base = creds["base_url"]

    class KeyproxyAsyncClient(async_client.AsyncClient):  # type: ignore[misc,name-defined]
        API_URL, FUTURES_URL = base + "/api", base + "/fapi"

    class KeyproxySockets(streams.BinanceSocketManager):  # type: ignore[misc,name-defined]
        FSTREAM_URL = base.replace("http://", "ws://") + "/"

    client = await KeyproxyAsyncClient.create(creds["api_key"], creds["secret"])
    try:
        async with KeyproxySockets(client).futures_user_socket() as socket:
            await asyncio.sleep(0.5)
            placed = await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                                       quantity="0.005", price="20000")
            event = await asyncio.wait_for(socket.recv(), 15)
            assert event["e"] == "ORDER_TRADE_UPDATE" and event["o"]["i"] == placed["orderId"], event
    finally:
        await client.close_connection()


async def test_a_burst_of_stream_handshakes_cannot_pass_the_per_bot_cap_together(futures: DevStack) -> None:
    """Session 15's review: the socket caps were checked before the handshake awaited the exchange's socket and
    counted only after it, so 20 handshakes at once all passed a cap of 16. Each now holds its place meanwhile."""
    creds = futures.add_bot("futburst", "fut", "read")
    req = urllib.request.Request(creds["base_url"] + "/fapi/v1/listenKey", method="POST",
                                 headers={"X-MBX-APIKEY": creds["api_key"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        key = json.loads(r.read())["listenKey"]
    url = creds["base_url"].replace("http://", "ws://") + f"/private/ws?listenKey={key}"
    async with aiohttp.ClientSession() as s:
        tried = await asyncio.gather(*(s.ws_connect(url) for _ in range(20)), return_exceptions=True)
        opened = [ws for ws in tried if isinstance(ws, aiohttp.ClientWebSocketResponse)]
        refused = [e for e in tried if isinstance(e, aiohttp.WSServerHandshakeError)]
        try:
            assert len(opened) == 16 and len(refused) == 4 and all(e.status == 429 for e in refused), tried
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))


async def test_frames_are_counted_by_transport_and_sockets_per_bot_are_bounded(dev: DevStack) -> None:
    """keyproxy_requests_total{transport="ws"} per frame, a connection gauge, and at most 16 sockets per bot."""
    creds = dev.add_bot("wsmany", "main", "read")
    before = dev.metrics()
    async with aiohttp.ClientSession() as s:
        sockets = [await s.ws_connect(ws_url(creds)) for _ in range(17)]
        try:
            answers = []
            for n, ws in enumerate(sockets):
                # a distinct recvWindow per frame: two frames signed in the same millisecond would otherwise be
                # byte-identical, and keyproxy rightly refuses the second as a replay
                await ws.send_str(json.dumps(signed(creds, "account.status", {"recvWindow": 5000 + n}, n)))
                answers.append(json.loads((await ws.receive(timeout=10)).data))
            assert all(a["status"] == 200 for a in answers[:16]), answers[:16]
            assert answers[16].get("keyproxy_error") == "rate_limited", answers[16]
            text = dev.metrics()
            assert 'keyproxy_websocket_connections{account="main"} 17.0' in text
        finally:
            for ws in sockets:
                await ws.close()
    after = dev.metrics()

    def count(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("keyproxy_requests_total{") and 'bot="wsmany"' in line
                   and 'transport="ws"' in line and 'decision="allow"' in line)
    assert count(after) - count(before) == 16


async def test_session_logon_with_an_ed25519_virtual_key(dev: DevStack) -> None:
    """session.logon proves the virtual Ed25519 key once; keyproxy answers it and signs each of the session's
    requests with the real key (an HMAC key here: any type), so the exchange never sees a virtual credential."""
    import base64

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    creds = dev.add_bot("wslogon", "main", "read,trade", "--key-type", "ed25519")
    private = load_pem_private_key(creds["secret"].encode(), None)

    def logon(frame_id: int) -> dict[str, Any]:
        p: dict[str, Any] = {"apiKey": creds["api_key"], "timestamp": int(time.time() * 1000)}
        p["signature"] = base64.b64encode(private.sign(payload(p).encode())).decode()  # type: ignore[union-attr]
        return {"id": frame_id, "method": "session.logon", "params": p}

    start = len(dev.journal())
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(creds)) as ws:
        async def ask(frame: dict[str, Any]) -> dict[str, Any]:
            await ws.send_str(json.dumps(frame))
            while True:  # skip user data events
                doc = json.loads((await ws.receive(timeout=10)).data)
                if doc.get("id") == frame["id"]:
                    return doc

        answer = await ask(logon(1))
        assert answer["status"] == 200 and answer["result"]["apiKey"] == creds["api_key"], answer
        status = await ask({"id": 2, "method": "session.status"})
        assert status["result"]["apiKey"] == creds["api_key"] and status["result"]["authorizedSince"]
        sub = await ask({"id": 3, "method": "userDataStream.subscribe"})
        assert sub["status"] == 200, sub
        placed = await ask({"id": 4, "method": "order.place",
                            "params": {**ORDER, "timestamp": int(time.time() * 1000)}})
        assert placed["status"] == 200 and placed["result"]["status"] == "NEW", placed
        event = json.loads((await ws.receive(timeout=10)).data)
        assert event.get("event", {}).get("e") == "executionReport", event
        assert (await ask({"id": 5, "method": "session.logout"}))["result"]["apiKey"] is None
        refused = await ask({"id": 6, "method": "order.place",
                             "params": {**ORDER, "timestamp": int(time.time() * 1000)}})
        assert refused.get("keyproxy_error") == "unknown_bot", refused
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["userDataStream.subscribe.signature", "order.place"]
    assert all(e["signature_verified"] for e in seen)
    assert not any(creds["api_key"] in e["body"] for e in dev.journal())
    hmac_bot = dev.add_bot("wslogonhmac", "main", "read")
    [answer] = await exchange(ws_url(hmac_bot), {**signed(hmac_bot, "session.logon", {}), "id": 7})
    assert answer.get("keyproxy_error") == "bad_request" and "Ed25519" in answer["error"]["msg"], answer


@pytest.fixture(scope="module")
def keytypes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """One account per real key type (HMAC, Ed25519, RSA) on one emulator."""
    stack = DevStack(tmp_path_factory.mktemp("ws-keytypes"))
    keys = {t: new_real_key(t) for t in ("hmac", "ed25519", "rsa")}
    try:
        stack.start_emulator(list(keys.values()))
        stack.init()
        for t, key in keys.items():
            stack.add_account(f"real{t}", key)
        stack.start_daemon()
        stack.real_keys = keys  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.close()


@pytest.mark.parametrize(("real", "virtual"), [("hmac", "ed25519"), ("ed25519", "rsa"), ("rsa", "hmac")])
async def test_ccxt_pro_with_each_real_and_virtual_key_type(keytypes: DevStack, real: str, virtual: str) -> None:
    """Unmodified ccxt.pro signs frames with the bot's virtual key of any type; keyproxy re-signs with the real
    key of any type, and the emulator verified the real signature of every private frame."""
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = keytypes.add_bot(f"kt{real}{virtual}", f"real{real}", "read,trade", "--key-type", virtual)
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "spot"}}), creds["base_url"])
    start = len(keytypes.journal())
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        await asyncio.sleep(1.0)
        order = await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000)
        assert any(o["id"] == order["id"] for o in await asyncio.wait_for(watcher, 15))
        assert (await ex.cancel_order_ws(order["id"], "BTC/USDT"))["status"] == "canceled"
    finally:
        await ex.close()
    frames = [e for e in ws_entries(keytypes, start) if e["method"] != "ping"]
    real_key = keytypes.real_keys[real].credentials["api_key"]  # type: ignore[attr-defined]
    assert {"userDataStream.subscribe.signature", "order.place", "order.cancel"} <= {e["method"] for e in frames}
    assert all(e["api_key"] == real_key and e["signature_verified"] for e in frames), frames


async def test_binance_sdk_spot_websocket_api_through_keyproxy(dev: DevStack) -> None:
    """The official binance-sdk-spot WebSocket API client, only its `stream_url` changed."""
    pytest.importorskip("binance_sdk_spot")
    from binance_common.configuration import ConfigurationWebSocketAPI
    from binance_sdk_spot.spot import Spot
    from binance_sdk_spot.websocket_api.models import (
        OrderPlaceSideEnum,
        OrderPlaceTimeInForceEnum,
        OrderPlaceTypeEnum,
    )

    creds = dev.add_bot("sdkspot", "main", "read,trade")
    start = len(dev.journal())
    client = Spot(config_ws_api=ConfigurationWebSocketAPI(api_key=creds["api_key"], api_secret=creds["secret"],
                                                          stream_url=ws_url(creds)))
    conn = await client.websocket_api.create_connection()
    try:
        assert (await conn.account_status()).data().result.balances
        placed = (await conn.order_place(symbol="BTCUSDT", side=OrderPlaceSideEnum["BUY"],
                                         type=OrderPlaceTypeEnum["LIMIT"],
                                         time_in_force=OrderPlaceTimeInForceEnum["GTC"], quantity=0.001,
                                         price=20000)).data().result
        assert placed.status == "NEW"
        await conn.user_data_stream_subscribe_signature()
    finally:
        await conn.close_connection(close_session=True)
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["account.status", "order.place", "userDataStream.subscribe.signature"]
    assert all(e["signature_verified"] for e in seen)


async def test_python_binance_websocket_api_through_keyproxy(dev: DevStack) -> None:
    """python-binance's `ws_*` methods, its `WS_API_URL` (and REST URLs) pointed at keyproxy as docs/clients.md
    shows."""
    async_client = pytest.importorskip("binance.async_client")
    creds = dev.add_bot("pbws", "main", "read,trade")
    base = creds["base_url"]

    class KeyproxyAsyncClient(async_client.AsyncClient):  # type: ignore[misc,name-defined]
        API_URL = base + "/api"
        WS_API_URL = ws_url(creds)

    start = len(dev.journal())
    client = await KeyproxyAsyncClient.create(creds["api_key"], creds["secret"])
    try:
        account = await client.ws_get_account()
        assert any(b["asset"] == "USDT" for b in account["balances"])
        order = await client.ws_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                             quantity="0.001", price="20000")
        assert order["status"] == "NEW"
        assert (await client.ws_cancel_order(symbol="BTCUSDT", orderId=order["orderId"]))["status"] == "CANCELED"
    finally:
        await client.close_connection()
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["account.status", "order.place", "order.cancel"]
    assert all(e["signature_verified"] for e in seen)


async def test_a_browser_cannot_open_a_socket(dev: DevStack) -> None:
    """The front door's Host/Origin guards hold for the WebSocket upgrade too (a web page must not trade)."""
    creds = dev.add_bot("wsbrowser", "main", "read")
    async with aiohttp.ClientSession() as s:
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(ws_url(creds), headers=headers)
            assert err.value.status == 403, headers
        own = "http://" + creds["base_url"].split("://", 1)[1].split("/", 1)[0]  # keyproxy's own origin:
        async with s.ws_connect(ws_url(creds), headers={"Origin": own}) as ws:  # websocket-client sends it
            await ws.send_str(json.dumps(signed(creds, "account.status", {}, 1)))
            assert json.loads((await ws.receive(timeout=10)).data)["status"] == 200


async def test_margin_listen_token_subscribes_only_for_the_bot_it_was_given_to(dev: DevStack) -> None:
    """Margin: POST /sapi/v1/userListenToken through keyproxy, then userDataStream.subscribe.listenToken on the
    WebSocket API; a token keyproxy never relayed is refused, and a revoked bot's token stops working."""
    creds = dev.add_bot("margintoken", "main", "read")
    body = f"timestamp={int(time.time() * 1000)}"
    body += "&signature=" + hmac.new(creds["secret"].encode(), body.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(creds["base_url"] + "/sapi/v1/userListenToken", data=body.encode(), method="POST",
                                 headers={"X-MBX-APIKEY": creds["api_key"],
                                          "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        token = json.loads(r.read())["token"]
    subscribe = {"id": 1, "method": "userDataStream.subscribe.listenToken", "params": {"listenToken": token}}
    start = len(dev.journal())
    [answer] = await exchange(ws_url(creds), subscribe)
    assert answer["status"] == 200 and "subscriptionId" in answer["result"], answer
    assert [e["method"] for e in ws_entries(dev, start)] == ["userDataStream.subscribe.listenToken"]
    [stranger] = await exchange(ws_url(creds), {**subscribe, "params": {"listenToken": "x" * 70}})
    assert stranger.get("keyproxy_error") == "unknown_bot", stranger
    dev.cli("bot", "revoke", "margintoken")
    [revoked] = await exchange(ws_url(creds), subscribe)
    assert revoked.get("keyproxy_error") == "unknown_bot", revoked
    assert len(ws_entries(dev, start)) == 1  # neither refused frame reached the exchange
    logs = "".join(p.read_text(errors="replace") for d in (dev.logs, dev.audit_dir)  # type: ignore[attr-defined]
                   for p in d.glob("*") if p.is_file())
    assert token not in logs


async def test_ccxt_pro_coin_m_watch_orders_through_keyproxy(futures: DevStack) -> None:
    """COIN-M: `/ws/<listenKey>` (dstream) shares spot's `/ws/...` path; keyproxy tells them apart by the
    listenKey it relayed from `/dapi/v1/listenKey`."""
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = futures.add_bot("coinmwatch", "fut", "read,trade")
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "delivery"}}), creds["base_url"])
    start = len(futures.journal())
    try:
        await ex.load_markets()
        orders = asyncio.create_task(ex.watch_orders("BTC/USD:BTC"))
        await asyncio.sleep(1.5)
        placed = await ex.create_order("BTC/USD:BTC", "limit", "buy", 1, 20000)
        seen = await asyncio.wait_for(orders, 15)
        assert any(o["id"] == placed["id"] for o in seen)
    finally:
        await ex.close()
    streams = [e for e in futures.journal()[start:] if e["path"].startswith("/ws/")]
    assert len(streams) == 1, streams  # the handshake reached the emulator's dstream


async def test_a_socket_asking_for_answers_keyproxy_cannot_read_is_refused(dev: DevStack) -> None:
    """Session 28's review: `?responseFormat=sbe` made Binance answer every frame in binary SBE, which keyproxy relayed
    unread, so an order placed on that socket was never learned (a bot capped at one open order rested one more every
    minute). Such a handshake is refused before anything opens upstream; the defaults spelled out still open."""
    creds = dev.add_bot("wssbe", "main", "read,trade")
    start = len(dev.journal())
    async with aiohttp.ClientSession() as s:
        for query in ("responseFormat=sbe&sbeSchemaId=3&sbeSchemaVersion=5", "sbeSchemaId=3", "timeUnit=MICROSECOND",
                      "responseformat=sbe", "nosuch=1"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(f"{ws_url(creds)}?{query}")
            assert err.value.status == 400, query
        async with s.ws_connect(f"{ws_url(creds)}?responseFormat=json&timeUnit=MILLISECOND&returnRateLimits=false") \
                as ws:
            await ws.send_str(json.dumps(signed(creds, "order.place", ORDER)))
            answer = json.loads((await ws.receive(timeout=10)).data)
            assert answer["status"] == 200, answer
    assert [e["method"] for e in ws_entries(dev, start)] == ["order.place"]


async def test_a_binary_answer_ends_the_socket_and_its_order_still_counts(dev: DevStack) -> None:
    """A binary frame from the exchange on a signed socket (what an SBE answer would be) is never relayed unread:
    keyproxy cannot learn the order it answers, so the socket ends, and the order still holds the bot's one place."""
    creds = dev.add_bot("wsbinary", "main", "read,trade", "--set", "max_open_orders=1")
    requests.post(dev.emulator_url + "/_emulator/faults", json={"binary_containing": ["wsbinmark"]},
                  timeout=5).raise_for_status()
    try:
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(creds)) as ws:
            await ws.send_str(json.dumps(signed(creds, "order.place", {**ORDER, "newClientOrderId": "wsbinmark"})))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg  # never the binary frame
            assert ws.close_code == 1008, ws.close_code
    finally:
        requests.post(dev.emulator_url + "/_emulator/faults", json={}, timeout=5).raise_for_status()
    [answer] = await exchange(ws_url(creds), signed(creds, "order.place", ORDER, frame_id=2))
    assert answer.get("keyproxy_error") == "open_orders_exceeded", answer
    # tidy up: the sweep cancels it, and reports (non-zero) the order whose answer it never read
    dev.cli("halt", "--bot", "wsbinary", "--cancel-orders", "--reason", "test tidy-up", check=False)
    dev.cli("resume", "--bot", "wsbinary")


async def test_bad_input_gets_an_error_frame_or_a_close_with_a_reason(dev: DevStack) -> None:
    creds = dev.add_bot("wsbadinput", "main", "read")
    start = len(dev.journal())
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(ws_url(creds)) as ws:
            for junk in ("not json", "[1, 2]", '{"id": 1}', '{"id": true, "method": "ping"}'):
                await ws.send_str(junk)
                answer = json.loads((await ws.receive(timeout=10)).data)
                assert answer["keyproxy_error"] == "bad_request" and answer["status"] == 400, (junk, answer)
            await ws.send_bytes(b"\x00\x01")
            assert json.loads((await ws.receive(timeout=10)).data)["keyproxy_error"] == "bad_request"
            await ws.send_str("x" * (70 << 10))  # over the 64 KiB frame limit
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert ws.close_code in (1008, 1009), ws.close_code
        base = creds["base_url"].replace("http://", "ws://")
        for url, status in ((base.rsplit("/", 1)[0] + "/nosuchaccount/ws-api/v3", 404), (base + "/ws-api/v9", 400)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(url)
            assert err.value.status == status, url
    assert ws_entries(dev, start) == []


async def test_sigterm_closes_sockets_with_going_away(tmp_path: Any) -> None:
    stack = DevStack(tmp_path)
    try:
        stack.serve_account("main", new_real_key())
        creds = stack.add_bot("wsterm", "main", "read")
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(creds)) as ws:
            await ws.send_str(json.dumps(signed(creds, "account.status", {}, 1)))
            assert json.loads((await ws.receive(timeout=10)).data)["status"] == 200
            assert stack.stop_daemon() == 0
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert ws.close_code == 1001
    finally:
        stack.close()


async def test_a_frame_sent_while_keyproxy_stops_is_refused_and_the_one_before_answered(tmp_path: Any) -> None:
    """SIGTERM waits for the frames in flight to be answered; one sent during that wait went upstream too and its
    answer could come after the socket closed: an order with no owner after the restart (session 27's review). It
    is refused (`unavailable`, nothing sent); the frame already in flight is answered."""
    import signal

    import requests

    stack = DevStack(tmp_path)
    try:
        stack.serve_account("main", new_real_key())
        creds = stack.add_bot("wsstop", "main", "read,trade")
        requests.post(stack.emulator_url + "/_emulator/faults", json={
            "hold_after_containing": ['"quantity": "0.002"', '"quantity":"0.002"'], "hold_seconds": 2.0},
            timeout=5).raise_for_status()
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(creds)) as ws:
            await ws.send_str(json.dumps(signed(creds, "order.place", {**ORDER, "quantity": "0.002"}, 1)))
            await asyncio.sleep(0.5)
            stack.daemon().send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            await ws.send_str(json.dumps(signed(creds, "order.place", {**ORDER, "quantity": "0.001"}, 2)))
            answers = {}
            while len(answers) < 2:
                doc = json.loads((await ws.receive(timeout=10)).data)
                answers[doc["id"]] = doc
        assert answers[1]["status"] == 200, answers[1]
        assert answers[2]["keyproxy_error"] == "unavailable", answers[2]
        sent = [json.loads(e["body"]) for e in stack.journal() if e.get("transport") == "ws"
                and "order.place" in str(e.get("body"))]
        assert [f["params"]["quantity"] for f in sent] == ["0.002"]
        assert stack.daemon().wait(20) == 0
    finally:
        stack.close()


async def test_market_data_streams_are_relayed(dev: DevStack) -> None:
    """Every URL at keyproxy: market data (no credential) is relayed unchanged, spot (`/ws/...`) and USD-M
    (`/market/ws`, here with unmodified ccxt.pro)."""
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("wsticker", "main", "read")
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "swap"}}), creds["base_url"])
    try:
        ticker = await asyncio.wait_for(ex.watch_ticker("BTC/USDT:USDT"), 15)
        assert ticker["symbol"] == "BTC/USDT:USDT" and ticker["last"] > 0
    finally:
        await ex.close()
    async with aiohttp.ClientSession() as s, s.ws_connect(
            creds["base_url"].replace("http://", "ws://") + "/ws/btcusdt@ticker") as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["s"] == "BTCUSDT"
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@ticker"], "id": 3}))
        assert json.loads((await ws.receive(timeout=10)).data) == {"result": None, "id": 3}
        assert json.loads((await ws.receive(timeout=10)).data)["s"] == "ETHUSDT"
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["rdkKG5" + "a1" * 29], "id": 4}))
        refused = json.loads((await ws.receive(timeout=10)).data)  # a listenKey's name: not relayed
        assert refused["keyproxy_error"] == "bad_request", refused
    base = creds["base_url"].replace("http://", "ws://")
    async with aiohttp.ClientSession() as s:  # a market data stream's URL naming a listenKey opens nothing
        for path in ("/public/ws/" + "rdkKG5" + "a1" * 29, "/ws/%72dkKG5" + "a1" * 29):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(URL(base + path, encoded=True))  # sent as written
            assert err.value.status == 400, path


async def test_a_bot_cancels_only_its_own_orders_over_the_websocket_api(dev: DevStack) -> None:
    """`order.cancel` (by id or client id), `openOrders.cancelAll` and `order.cancelReplace` of another bot's order
    are decided as their REST twins are: refused, nothing upstream; the bot's own order it cancels."""
    victim, attacker = dev.add_bot("ws-victim", "main", "read,trade"), dev.add_bot("ws-attacker", "main", "read,trade")
    [placed] = await exchange(ws_url(victim), signed(victim, "order.place", {**ORDER, "newClientOrderId": "wsv-1"}))
    oid = placed["result"]["orderId"]
    start = len(dev.journal())
    answers = await exchange(
        ws_url(attacker), signed(attacker, "order.cancel", {"symbol": "BTCUSDT", "orderId": oid}, 1),
        signed(attacker, "order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "wsv-1"}, 2),
        signed(attacker, "openOrders.cancelAll", {"symbol": "BTCUSDT"}, 3),
        signed(attacker, "order.cancelReplace", {**ORDER, "cancelReplaceMode": "STOP_ON_FAILURE",
                                                 "cancelOrderId": oid}, 4))
    assert [a.get("keyproxy_error") for a in answers] == ["policy_denied"] * 4, answers
    assert ws_entries(dev, start) == []
    [own] = await exchange(ws_url(victim), signed(victim, "order.cancel", {"symbol": "BTCUSDT", "orderId": oid}))
    assert own["status"] == 200 and own["result"]["status"] == "CANCELED", own


async def test_a_frames_method_reaches_the_audit_trail_as_visible_text(dev: DevStack) -> None:
    """Session 26's review: a frame's `method` went into the audit line as sent, before any credential was checked,
    so anyone reaching the listener wrote terminal escapes into the trail (`audit export --format csv` replayed
    them on the operator's terminal). It is recorded as visible text."""
    url = dev.proxy_url.replace("http://", "ws://") + "/main/ws-api/v3"
    [answer] = await exchange(url, {"id": 1, "method": "\x1b[1A\x1b[2K\x1b[31mALL CLEAR\x1b[0m", "params": {}})
    assert answer["keyproxy_error"] == "unknown_endpoint"
    await asyncio.sleep(0.5)
    trail = "".join(p.read_text() for p in dev.audit_dir.glob("audit-*.jsonl"))
    assert "\\u001b" not in trail and "\x1b" not in trail and "\\\\x1b[31mALL CLEAR" in trail


async def test_market_data_sockets_take_half_of_max_sockets_at_most(tmp_path: Any) -> None:
    """Session 33's review: market data sockets need no credential, and 512 of them refused every bot's WebSocket
    API handshake. They take half of `[proxy] max_sockets` at most: the next is refused (503 `unavailable`), and a
    bot's signed socket still opens."""
    with exchange_stack(tmp_path, "main", extra_config="[proxy]\nmax_sockets = 4\n") as stack:
        creds = stack.add_bot("wscap", "main", "read")
        base = creds["base_url"].replace("http://", "ws://")
        async with aiohttp.ClientSession() as s:
            opened = [await s.ws_connect(base + "/ws/btcusdt@ticker") for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(base + "/ws/ethusdt@ticker")
            assert refused.value.status == 503
            signed = await s.ws_connect(base + "/ws-api/v3")  # a bot's: room kept for it
            await signed.send_str(json.dumps({"id": 1, "method": "ping"}))
            assert json.loads((await signed.receive(timeout=10)).data)["status"] == 200
            for ws in (*opened, signed):
                await ws.close()


async def test_sockets_no_bot_logged_in_on_cannot_lock_bots_out(tmp_path: Any) -> None:
    """Session 34's review: a socket on a signed path needs no credential to open, and sockets that never sent a
    signed frame filled `[proxy] max_sockets` for good: every bot's handshake was refused 503. At the cap, a handshake
    that passes its own checks closes the oldest socket no bot authenticated on within ANONYMOUS_GRACE_S that never
    sent a frame (a socket used for public requests only while anonymous sockets hold over half of max_sockets); a
    socket a bot signed on is never closed so."""
    from keyproxy.proxy.websocket import ANONYMOUS_GRACE_S

    with exchange_stack(tmp_path, "main", extra_config="[proxy]\nmax_sockets = 4\n") as stack:
        creds = stack.add_bot("wslock", "main", "read")
        async with aiohttp.ClientSession() as s:
            signed_on = await s.ws_connect(ws_url(creds))
            await signed_on.send_str(json.dumps(signed(creds, "account.status", {})))
            assert json.loads((await signed_on.receive(timeout=10)).data)["status"] == 200
            squatters = [await s.ws_connect(ws_url(creds)) for _ in range(3)]
            await squatters[0].send_str(json.dumps({"id": 9, "method": "ping"}))  # public use: no signature
            assert json.loads((await squatters[0].receive(timeout=10)).data)["status"] == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(ws_url(creds))  # within the grace: a bot may be about to log in on them
            assert refused.value.status == 503
            await asyncio.sleep(ANONYMOUS_GRACE_S + 0.5)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # refused for itself: closes nothing
                await s.ws_connect(creds["base_url"].replace("http://", "ws://") + "/no-such-socket")
            assert refused.value.status in (400, 404)
            bot = await s.ws_connect(ws_url(creds))  # room made: the oldest squatter that never sent a frame closed
            await bot.send_str(json.dumps(signed(creds, "account.status", {}, frame_id=2)))
            assert json.loads((await bot.receive(timeout=10)).data)["status"] == 200
            closed = await squatters[1].receive(timeout=10)
            assert closed.type == aiohttp.WSMsgType.CLOSE and "no bot authenticated" in closed.extra, closed
            for i in (0, 2):  # the one in public use stays, and the refused handshake closed none
                await squatters[i].send_str(json.dumps({"id": 10 + i, "method": "ping"}))
                assert json.loads((await squatters[i].receive(timeout=10)).data)["status"] == 200, i
            await signed_on.send_str(json.dumps(signed(creds, "account.status", {}, frame_id=3)))
            assert json.loads((await signed_on.receive(timeout=10)).data)["status"] == 200  # never the bot's
            for ws in (signed_on, bot, *squatters):
                await ws.close()


async def test_a_market_data_socket_past_binances_message_limit_ends_here(dev: DevStack) -> None:
    """Binance: 5 incoming messages a second per spot connection (pings included; keyproxy pings the exchange
    itself, so a bot has 4); over it the socket is dropped, and "IPs that are repeatedly disconnected may be banned"
    (session 34's review: 200 frames in 9 ms were relayed, so one bot could get the shared IP banned). The fifth
    message in a second ends the bot's socket here, unsent."""
    creds = dev.add_bot("wsflood", "main", "read")
    async with aiohttp.ClientSession() as s, s.ws_connect(
            creds["base_url"].replace("http://", "ws://") + "/ws/btcusdt@ticker") as ws:
        for i in range(8):
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        answers: list[dict[str, Any]] = []
        closed = None
        deadline = time.monotonic() + 5
        while closed is None and time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                answers.append(json.loads(msg.data))
            else:
                closed = msg
    assert closed is not None and closed.type == aiohttp.WSMsgType.CLOSE, answers[-3:]
    assert "more than 4 messages in 1 s" in closed.extra, closed
    assert {a["id"] for a in answers if "result" in a and "id" in a} <= {0, 1, 2, 3}, answers  # none sent on
