"""Kraken's WebSocket v2 through keyproxy (issue 16): a bot's REST GetWebSocketsToken answers a virtual token
bound to it; frames presenting it are decided as that bot's and go upstream with a real token keyproxy
fetched itself. The bearer token that trades the account never reaches the bot.

Real daemon, real emulator (its `/v2` checks tokens apart from keyproxy's adapters), raw frames, ccxt's REST
client for the token, and unmodified ccxt.pro pointed at keyproxy.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import ccxt
import pytest

from keyproxy.emulator.devstack import HANDLED_SECRETS, DevStack, point_ccxt_at
from tests.e2e.wsstack import exchange_stack, ws_entries


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with exchange_stack(tmp_path_factory.mktemp("ws-kraken"), "kr", "kraken") as stack:
        yield stack


def rest(creds: dict[str, str]) -> Any:
    return point_ccxt_at(ccxt.kraken({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])


def token_of(creds: dict[str, str]) -> str:
    """A virtual WebSocket token; asked again while keyproxy's Kraken call counter (each token costs a call, and
    this module asks for many) says to retry in a second."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return rest(creds).privatePostGetWebSocketsToken()["result"]["token"]  # type: ignore[no-any-return]
        except ccxt.DDoSProtection:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def real_tokens(dev: DevStack) -> list[str]:
    with urllib.request.urlopen(f"{dev.emulator_url}/_emulator/state", timeout=10) as r:
        state = json.loads(r.read())["kraken"]
    tokens = [t for acct in state.values() for t in acct["ws_tokens"]]
    HANDLED_SECRETS.update(tokens)  # the leak scan: no real token in keyproxy's logs or audit trail
    return tokens


def url(creds: dict[str, str], path: str = "/v2") -> str:
    return creds["base_url"].replace("http://", "ws://") + path


async def talk(creds: dict[str, str], *frames: dict[str, Any]) -> list[dict[str, Any]]:
    """Send each frame and read its answer (events and the balances snapshot are skipped)."""
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        out = []
        for f in frames:
            await ws.send_str(json.dumps(f))
            while True:
                doc = json.loads((await ws.receive(timeout=10)).data)
                if "channel" not in doc:
                    out.append(doc)
                    break
        return out


def add_order(token: str, qty: str, req_id: int) -> dict[str, Any]:
    return {"method": "add_order", "req_id": req_id, "params": {
        "order_type": "limit", "side": "buy", "order_qty": float(qty), "limit_price": 20000.0, "symbol": "BTC/USD",
        "token": token}}


async def test_the_bot_gets_a_virtual_token_and_kraken_sees_only_the_real_one(dev: DevStack) -> None:
    creds = dev.add_bot("krws", "kr", "read,trade", "--set", "max_order_notional=100")  # limits: a token all the same
    token = token_of(creds)
    assert token.startswith("kpv-") and token not in real_tokens(dev) and real_tokens(dev)
    start = len(dev.journal())
    subscribed, placed, over = await talk(
        creds, {"method": "subscribe", "req_id": 1, "params": {"channel": "executions", "token": token}},
        add_order(token, "0.001", 2), add_order(token, "1", 3))
    assert subscribed["success"] is True, subscribed
    assert placed["success"] is True and placed["result"]["order_id"], placed
    assert over["success"] is False and over["keyproxy_error"] == "notional_exceeded", over
    assert over["error"] == "EOrder:Invalid order" and over["req_id"] == 3 and over["method"] == "add_order", over
    seen = ws_entries(dev, start)
    assert [e["method"] for e in seen] == ["subscribe", "add_order"]  # the refused order never went upstream
    real = dev.real_key.credentials  # type: ignore[attr-defined]
    assert all(e["signature_verified"] and e["api_key"] == real["api_key"] for e in seen)
    assert not any(token in e["body"] for e in dev.journal())


async def test_a_virtual_token_is_useless_at_the_exchange(dev: DevStack) -> None:
    creds = dev.add_bot("krdirect", "kr", "read,trade")
    token = token_of(creds)
    async with aiohttp.ClientSession() as s, s.ws_connect(dev.emulator_url.replace("http", "ws") + "/v2") as ws:
        await ws.send_str(json.dumps({"method": "subscribe", "req_id": 1,
                                      "params": {"channel": "executions", "token": token}}))
        answer = json.loads((await ws.receive(timeout=10)).data)
    assert answer["success"] is False and answer["error"] == "ESession:Invalid session", answer


@pytest.mark.parametrize("token", ["kpv-not-issued", "none-of-ours", "other-bot"])
async def test_a_token_keyproxy_did_not_give_this_bot_is_refused(dev: DevStack, token: str) -> None:
    creds = dev.add_bot(f"krbad-{token}", "kr", "read,trade")
    if token == "other-bot":
        other = dev.add_bot("krother", "kr", "read")
        token = token_of(other)
        frame = add_order(token, "0.001", 7)  # the other bot's token: it may only read
        expected = "scope_denied"
    else:
        frame = {"method": "subscribe", "req_id": 7, "params": {"channel": "balances", "token": token}}
        expected = "unknown_bot"
    start = len(dev.journal())
    [answer] = await talk(creds, frame)
    assert answer["keyproxy_error"] == expected and answer["success"] is False and answer["req_id"] == 7, answer
    assert ws_entries(dev, start) == []


async def test_public_channels_need_no_token_and_private_ones_do(dev: DevStack) -> None:
    creds = dev.add_bot("krpublic", "kr", "read")
    ticker, private, ping = await talk(
        creds, {"method": "subscribe", "req_id": 1, "params": {"channel": "ticker", "symbol": ["BTC/USD"]}},
        {"method": "subscribe", "req_id": 2, "params": {"channel": "executions"}},
        {"method": "ping", "req_id": 3})
    assert ticker["success"] is True, ticker
    assert private["keyproxy_error"] == "unknown_bot", private
    assert ping["method"] == "pong" and ping["req_id"] == 3, ping
    [unknown] = await talk(creds, {"method": "withdraw", "req_id": 4, "params": {}})
    assert unknown["keyproxy_error"] == "unknown_endpoint" and unknown["error"] == "EGeneral:Unknown method", unknown


async def test_ccxt_pro_watch_balance_watch_orders_and_orders_over_the_socket(dev: DevStack) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    creds = dev.add_bot("krpro", "kr", "read,trade")
    ex = point_ccxt_at(ccxtpro.kraken({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])
    start = len(dev.journal())
    try:
        await ex.load_markets()
        balance = await asyncio.wait_for(ex.watch_balance(), 15)
        assert balance["USD"]["total"] > 0, balance
        watcher = asyncio.create_task(ex.watch_orders())
        await asyncio.sleep(1.0)
        placed = await ex.create_order("BTC/USD", "limit", "buy", 0.001, 20000)  # REST, through keyproxy
        seen = await asyncio.wait_for(watcher, 15)
        assert any(o["id"] == placed["id"] for o in seen), seen
        by_ws = await ex.create_order_ws("BTC/USD", "limit", "buy", 0.001, 20000)
        assert by_ws["id"]
        await ex.cancel_order_ws(by_ws["id"])
    finally:
        await ex.close()
    methods = [e["method"] for e in ws_entries(dev, start)]
    assert {"subscribe", "add_order", "cancel_order"} <= set(methods), methods
    private = [e for e in ws_entries(dev, start) if e["method"] != "ping"]
    assert private and all(e["signature_verified"] for e in private), private
    fetched = [e for e in dev.journal()[start:] if e.get("path") == "/0/private/GetWebSocketsToken"]
    assert len(fetched) == 1  # the bot's own REST call; keyproxy reused its fresh real token


async def test_a_revoked_bot_socket_closes(dev: DevStack) -> None:
    creds = dev.add_bot("krrevoked", "kr", "read")
    token = token_of(creds)
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        await ws.send_str(json.dumps({"method": "subscribe", "req_id": 1,
                                      "params": {"channel": "executions", "token": token}}))
        assert json.loads((await ws.receive(timeout=10)).data)["success"] is True
        dev.cli("bot", "revoke", "krrevoked")
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008


def test_an_old_real_token_is_renewed_by_keyproxy_itself(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Past `stream_token_reuse` a new connection's frame goes out with a token keyproxy fetched with its own
    signed GetWebSocketsToken (in the account's nonce order); the bot's virtual token stays the same."""
    with exchange_stack(tmp_path_factory.mktemp("ws-kraken-renew"), "kr", "kraken",
                        extra_config="[proxy]\nstream_token_reuse = 1\n") as stack:
        creds = stack.add_bot("krrenew", "kr", "read,trade")
        token = token_of(creds)
        first = real_tokens(stack)
        time.sleep(1.5)
        start = len(stack.journal())
        [answer] = asyncio.run(talk(creds, {"method": "subscribe", "req_id": 1,
                                            "params": {"channel": "executions", "token": token}}))
        assert answer["success"] is True, answer
        renewed = [t for t in real_tokens(stack) if t not in first]
        assert len(renewed) == 1
        fetched = [e for e in stack.journal()[start:] if e.get("path") == "/0/private/GetWebSocketsToken"]
        assert len(fetched) == 1 and fetched[0]["signature_verified"]
        [frame] = ws_entries(stack, start)
        assert renewed[0] in frame["body"] and token not in frame["body"]
        # keyproxy's own fetch counts on the key's call counter (session 33's review: its own calls went uncounted):
        # the bot's call 1.5 s ago has decayed below 0.5 (Starter: -1 every 3 s), so more than 0.75 is keyproxy's
        metrics = stack.metrics()
        [ratio] = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("keyproxy_exchange_budget_used_ratio{") and 'scope="kr"' in line
                   and 'budget="CALL_COUNTER"' in line]
        assert ratio * 15 > 0.75, ratio


async def test_a_virtual_token_dies_with_the_credential_that_asked_for_it(dev: DevStack) -> None:
    """Session 15's review: a virtual token outlived a rotation of the bot's credential (a stolen one kept
    trading through its token). Now the socket that used it closes once the credential is rotated out, and the
    token opens nothing more; the new credential's own token works."""
    creds = dev.add_bot("krrotated", "kr", "read")
    token = token_of(creds)
    subscribe = {"method": "subscribe", "req_id": 1, "params": {"channel": "executions", "token": token}}
    async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
        await ws.send_str(json.dumps(subscribe))
        assert json.loads((await ws.receive(timeout=10)).data)["success"] is True
        new = json.loads(dev.cli("bot", "rotate", "krrotated", "--grace", "0").stdout)
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1008
    [answer] = await talk(creds, subscribe)
    assert answer["success"] is False and answer["keyproxy_error"] == "expired_credential", answer
    fresh = {**creds, "api_key": new["api_key"], "secret": new["secret"]}
    [answer] = await talk(fresh, {**subscribe, "params": {"channel": "executions", "token": token_of(fresh)}})
    assert answer["success"] is True, answer


async def test_a_bot_cancels_only_its_own_orders_over_the_websocket(dev: DevStack) -> None:
    """`cancel_order` by another bot's order_id or cl_ord_id, and `cancel_all` while its orders rest, are refused
    as their REST twins are, nothing upstream; the bot's own order it cancels."""
    victim, attacker = dev.add_bot("krwscxv", "kr", "read,trade"), dev.add_bot("krwscxa", "kr", "read,trade")
    vtoken, atoken = token_of(victim), token_of(attacker)
    [placed] = await talk(victim, {**add_order(vtoken, "0.001", 1),
                                   "params": {**add_order(vtoken, "0.001", 1)["params"], "cl_ord_id": "krwscx-v"}})
    oid = placed["result"]["order_id"]
    start = len(dev.journal())
    answers = await talk(
        attacker, {"method": "cancel_order", "req_id": 2, "params": {"order_id": [oid], "token": atoken}},
        {"method": "cancel_order", "req_id": 3, "params": {"cl_ord_id": ["krwscx-v"], "token": atoken}},
        {"method": "cancel_all", "req_id": 4, "params": {"token": atoken}})
    assert [a.get("keyproxy_error") for a in answers] == ["policy_denied"] * 3, answers
    assert ws_entries(dev, start) == []
    [own] = await talk(victim, {"method": "cancel_order", "req_id": 5, "params": {"order_id": [oid], "token": vtoken}})
    assert own["success"] is True, own


def order_frame(token: str, symbol: str, qty: float, price: float, side: str, req_id: int) -> dict[str, Any]:
    return {"method": "add_order", "req_id": req_id, "params": {
        "order_type": "limit", "side": side, "order_qty": qty, "limit_price": price, "symbol": symbol, "token": token}}


async def test_every_spelling_of_a_pair_is_one_order_book_for_the_limits(dev: DevStack) -> None:
    """Session 26's review (high): Kraken executes `XBTUSD`, `XXBTZUSD`, `XBT/USD` and WebSocket v2's `BTC/USD` on one
    order book, and keyproxy kept each spelling as a symbol of its own: a bot capped at 0.001 BTC rested three times
    that, a repeated order passed `duplicate_orders=1` three times, and a sell respelled past the self-cross check
    traded against another bot's resting buy. Every spelling is the pair's one name (Kraken's AssetPairs)."""
    capped = dev.add_bot("spell-capped", "kr", "read,trade", "--set", "max_position=0.001")
    first = rest(capped).privatePostAddOrder({"pair": "XBTUSD", "type": "buy", "ordertype": "limit",
                                              "volume": "0.001", "price": "20000"})
    assert first["result"]["txid"]
    token = token_of(capped)
    answers = await talk(capped, *(order_frame(token, symbol, 0.001, 20000.0, "buy", i)
                                   for i, symbol in enumerate(("XBT/USD", "BTC/USD", "XXBTZUSD"), 1)))
    assert [a.get("keyproxy_error") for a in answers] == ["position_exceeded"] * 3, answers
    dup = dev.add_bot("spell-dup", "kr", "read,trade", "--set", "duplicate_orders=1")
    token = token_of(dup)
    answers = await talk(dup, *(order_frame(token, symbol, 0.0002, 21000.0, "buy", i)
                                for i, symbol in enumerate(("BTC/USD", "XBT/USD", "XXBTZUSD"), 1)))
    assert answers[0]["success"] and [a.get("keyproxy_error") for a in answers[1:]] == ["duplicate_order"] * 2
    maker, taker = dev.add_bot("spell-maker", "kr", "read,trade"), dev.add_bot("spell-taker", "kr", "read,trade")
    [made] = await talk(maker, order_frame(token_of(maker), "BTC/USD", 0.0002, 25000.0, "buy", 1))
    assert made["success"], made
    token = token_of(taker)
    answers = await talk(taker, *(order_frame(token, symbol, 0.0002, 24000.0, "sell", i)
                                  for i, symbol in enumerate(("XBT/USD", "XBTUSD"), 1)))
    assert [a.get("keyproxy_error") for a in answers] == ["self_cross"] * 2, answers


async def test_a_trigger_is_checked_against_the_band_whatever_carries_it(dev: DevStack) -> None:
    """Session 27's review: `edit_order` names no order type, so its new trigger went unread and a stop edited to
    ten times the market went to Kraken past `price_band_pct=5`; so did an `add_order` whose type had capitals.
    Both are refused now, as `add_order` and `amend_order` with that trigger were; nothing goes upstream."""
    creds = dev.add_bot("kr-band", "kr", "read,trade", "--set", "price_band_pct=5")
    ex = rest(creds)
    last = float(ex.fetch_ticker("BTC/USD")["last"])
    token = ex.privatePostGetWebSocketsToken()["result"]["token"]
    far = round(last * 10, 1)
    [placed] = await talk(creds, {"method": "add_order", "req_id": 1, "params": {
        "order_type": "limit", "side": "buy", "order_qty": 0.001, "limit_price": round(last * 0.99, 1),
        "symbol": "BTC/USD", "token": token}})
    assert placed["success"] is True, placed
    start = len(dev.journal())
    stop = {"side": "buy", "order_qty": 0.001, "symbol": "BTC/USD", "triggers": {"price": far}, "token": token}
    answers = await talk(
        creds,
        {"method": "add_order", "req_id": 2, "params": {**stop, "order_type": "stop-loss"}},
        {"method": "edit_order", "req_id": 4, "params": {**stop, "order_id": placed["result"]["order_id"]}},
        {"method": "add_order", "req_id": 5, "params": {**stop, "order_type": "Stop-Loss"}})
    assert [a.get("keyproxy_error") for a in answers] == ["price_out_of_band"] * 3, answers
    assert ws_entries(dev, start) == []


async def test_an_order_naming_both_sizes_is_refused_under_a_position_cap(dev: DevStack) -> None:
    """Session 35's review: an add_order with both `order_qty` and `cash_order_qty` (which one Kraken executes is
    not documented) was refused only under a notional limit; under max_position it was sized by the cash amount
    (10 USD) and executed 0.5 BTC at a cap of 0.01. Refused now under a position cap or loss limit too."""
    capped = dev.add_bot("both-sizes", "kr", "read,trade", "--set", "max_position=0.01")
    token = token_of(capped)
    start = len(dev.journal())
    frame = {"method": "add_order", "req_id": 1, "params": {
        "order_type": "market", "side": "buy", "symbol": "BTC/USD", "token": token, "order_qty": 0.5,
        "cash_order_qty": 10.0}}
    [answer] = await talk(capped, frame)
    assert answer.get("keyproxy_error") == "position_exceeded", answer
    assert not [e for e in dev.journal()[start:] if "add_order" in str(e.get("body", ""))]
