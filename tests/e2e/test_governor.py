"""The exchange's own budget, shared by every bot (issue 19): eight bots never trip Binance's IP weight limit.

The emulator enforces Binance's request weight per IP (scaled down to 400 a minute, emulator/binance_limits.py):
429 -1003 over it, then a 418 ban for a client that does not back off. keyproxy is told the same limit
(`[governor.limits]`), spends it before forwarding and answers bots locally with Binance's own 429 -1003
(ccxt's binance raises DDoSProtection for every 429, Binance's own included: its signal to back off); a tenth
of the budget stays free for cancels.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at

ccxt = pytest.importorskip("ccxt")
LIMIT = 400
CONFIG = (f'[governor]\nreserve = 0.1\n[governor.limits]\n"binance.REQUEST_WEIGHT" = {LIMIT}\n'
          '[governor.cache]\n"binance:/api/v3/ticker/price" = 5\n')


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("governor"), extra_config=CONFIG)
    key = new_real_key("hmac", balances={"USDT": "1000000", "BTC": "100"})
    try:
        stack.serve_account("main", key)
        stack.real_key = key  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.close()


def limits(dev: DevStack, **change: Any) -> dict[str, Any]:
    request = urllib.request.Request(f"{dev.emulator_url}/_emulator/limits", data=json.dumps(change).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _bot(api_key: str, secret: str, base_url: str) -> Any:
    ex = point_ccxt_at(ccxt.binance({"apiKey": api_key, "secret": secret, "enableRateLimit": False,
                                     "options": {"defaultType": "spot", "fetchCurrencies": False}}), base_url)
    return ex


def _hammer(ex: Any, seconds: float, markets: dict[str, Any], tally: dict[str, Any], lock: threading.Lock) -> None:
    ex.set_markets(markets)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        try:
            if i % 3 == 0:
                ex.fetch_balance()  # weight 20
            elif i % 3 == 1:
                ex.fetch_ticker("BTC/USDT")  # weight 2
            else:
                order = ex.create_order("BTC/USDT", "limit", "sell", 0.001, 200000)  # rests
                try:
                    ex.cancel_order(order["id"], "BTC/USDT")
                    with lock:
                        tally["cancels"] += 1
                except Exception as e:  # noqa: BLE001 - every failed cancel is the finding
                    with lock:
                        tally["cancel_failures"].append(repr(e)[:200])
        except ccxt.DDoSProtection as e:  # RateLimitExceeded (429) and the 418 ban both derive from it
            with lock:
                tally["limited"] += 1
                tally["kinds"].add(type(e).__name__)
            time.sleep(0.01)


def _run(bots: list[Any], seconds: float, markets: dict[str, Any]) -> dict[str, Any]:
    tally: dict[str, Any] = {"cancels": 0, "cancel_failures": [], "limited": 0, "kinds": set()}
    lock = threading.Lock()
    threads = [threading.Thread(target=_hammer, args=(b, seconds, markets, tally, lock)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return tally


def _markets(dev: DevStack) -> dict[str, Any]:
    creds = dev.add_bot("loader", "main", "read")
    ex = _bot(creds["api_key"], creds["secret"], creds["base_url"])
    ex.load_markets()
    return ex.markets  # type: ignore[no-any-return]


def test_a_public_request_naming_a_bot_by_its_key_id_alone_spends_no_bots_share(dev: DevStack) -> None:
    """Session 33's review: a key id is no secret, and public requests carrying another bot's `X-MBX-APIKEY` (no
    signature) spent that bot's share until its own signed requests were refused. Unproven, they spend a share of
    their own (in the unsigned one, an anonymous flood starved the bot's listenKey creation: the regression review)."""
    creds = dev.add_bot("govkeyid", "main", "read")
    for _ in range(3):
        req = urllib.request.Request(f"{dev.proxy_url}/main/api/v3/depth?symbol=BTCUSDT&limit=100",
                                     headers={"X-MBX-APIKEY": creds["api_key"]})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert b"bids" in r.read()
    budgets = json.loads(dev.cli("status", "--json").stdout)["budgets"]
    spenders = {b for entry in budgets if entry["budget"] == "REQUEST_WEIGHT" for b in entry["bots"]}
    assert "govkeyid" not in spenders and "govkeyid (key id)" in spenders, budgets  # (first: the others spend)


def test_ten_bots_loading_markets_at_once_cost_the_exchange_one_request_per_market_list(dev: DevStack) -> None:
    bots = []
    for i in range(10):
        creds = dev.add_bot(f"loader{i}", "main", "read")
        bots.append(_bot(creds["api_key"], creds["secret"], creds["base_url"]))
    start = len(dev.journal())
    loaded: list[int] = []
    threads = [threading.Thread(target=lambda b=b: loaded.append(len(b.load_markets()))) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(loaded) == 10 and len(set(loaded)) == 1
    lists = [e["path"] for e in dev.journal()[start:] if e["path"].endswith("/exchangeInfo")]
    assert sorted(lists) == sorted(set(lists)) and "/api/v3/exchangeInfo" in lists  # each list fetched once
    # every bot gets the same bytes (cache hits), the exchange's answer of the moment it was asked
    shared = []
    for _ in range(2):
        with urllib.request.urlopen(f"{dev.proxy_url}/main/api/v3/exchangeInfo", timeout=10) as r:
            shared.append(r.read())
    with urllib.request.urlopen(f"{dev.emulator_url}/api/v3/exchangeInfo", timeout=10) as r:
        own = json.loads(r.read())
    assert shared[0] == shared[1]
    assert {**json.loads(shared[0]), "serverTime": 0} == {**own, "serverTime": 0}  # only its clock moved on
    assert len([e for e in dev.journal()[start:] if e["path"] == "/api/v3/exchangeInfo"]) == 2  # ours + direct


def test_a_public_endpoint_the_config_shares_is_asked_once_for_every_bot(dev: DevStack) -> None:
    start = len(dev.journal())
    answers = []
    for _ in range(5):
        with urllib.request.urlopen(f"{dev.proxy_url}/main/api/v3/ticker/price?symbol=BTCUSDT", timeout=10) as r:
            answers.append(r.read())
    with urllib.request.urlopen(f"{dev.proxy_url}/main/api/v3/ticker/price?symbol=ETHUSDT", timeout=10) as r:
        assert b"ETHUSDT" in r.read()  # another query is another answer
    asked = [e["query"] for e in dev.journal()[start:] if e["path"] == "/api/v3/ticker/price"]
    assert asked == ["symbol=BTCUSDT", "symbol=ETHUSDT"] and len(set(answers)) == 1


@pytest.fixture(scope="module")
def markets(dev: DevStack) -> dict[str, Any]:
    return _markets(dev)


def test_an_injected_418_stops_all_traffic_on_the_budget_until_retry_after(dev: DevStack,
                                                                           markets: dict[str, Any]) -> None:
    creds = dev.add_bot("watcher", "main", "read")
    ex = _bot(creds["api_key"], creds["secret"], creds["base_url"])
    ex.set_markets(markets)
    limits(dev, ban_now=3)
    start = len(dev.journal())
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_ticker("BTC/USDT")  # the exchange answers 418 with Retry-After: 3
    for _ in range(5):
        with pytest.raises(ccxt.DDoSProtection, match="budget_exhausted"):
            ex.fetch_ticker("BTC/USDT")  # keyproxy holds the budget: nothing goes upstream
    assert len([e for e in dev.journal()[start:] if e["path"].startswith("/api/")]) == 1
    time.sleep(3.2)
    assert ex.fetch_ticker("BTC/USDT")["symbol"] == "BTC/USDT"  # then traffic resumes
    assert 'keyproxy_exchange_rate_limit_answers_total{account="main",kind="ban",status="418"} 1.0' in dev.metrics()


async def test_the_websocket_api_spends_the_same_ip_budget(dev: DevStack) -> None:
    """Binance's WebSocket API shares the REST API's IP weight: a held budget refuses frames too, locally."""
    from tests.e2e.test_websocket_binance import exchange, signed, ws_url
    from tests.e2e.wsstack import ws_entries

    creds = dev.add_bot("ws-spender", "main", "read,trade")
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(creds)) as ws:
        await ws.send_str(json.dumps(signed(creds, "account.status", {}, "a1")))
        assert json.loads((await ws.receive(timeout=10)).data)["status"] == 200
        limits(dev, ban_now=2)
        with pytest.raises(ccxt.DDoSProtection):  # a REST request meets the exchange's 418 ...
            bot = _bot(creds["api_key"], creds["secret"], creds["base_url"])
            bot.publicGetTime()
        start = len(dev.journal())
        await ws.send_str(json.dumps(signed(creds, "account.status", {}, "a2")))  # ... then the socket waits
        held = json.loads((await ws.receive(timeout=10)).data)
        assert held["keyproxy_error"] == "budget_exhausted" and held["status"] == 429
        assert held["error"]["code"] == -1003
        # a new socket costs weight too (Binance: 2 a WebSocket API connection): refused before the upgrade
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await exchange(ws_url(creds), signed(creds, "account.status", {}, "a3"))
        assert refused.value.status == 429
        assert ws_entries(dev, start) == []
    time.sleep(2.2)


def test_eight_bots_through_keyproxy_never_trip_the_limit_and_every_cancel_goes_through(
        dev: DevStack, markets: dict[str, Any]) -> None:
    limits(dev, binance_weight_per_minute=LIMIT, ban_seconds=30)
    before = limits(dev)["answered"]
    bots = []
    for i in range(8):
        creds = dev.add_bot(f"hammer{i}", "main", "read,trade")
        bots.append(_bot(creds["api_key"], creds["secret"], creds["base_url"]))
    tally = _run(bots, 8.0, markets)
    after = limits(dev)["answered"]
    assert (after["429"], after["418"]) == (before["429"], before["418"]), "the exchange had to refuse"
    assert tally["limited"] > 0 and tally["kinds"] == {"DDoSProtection"}  # each bot was told locally (429 -1003)
    assert tally["cancel_failures"] == [] and tally["cancels"] > 0
    text = dev.metrics()
    assert "keyproxy_exchange_budget_used_ratio{" in text and 'code="budget_exhausted"' in text

    # the same eight bots straight at the exchange: it refuses them, then bans the IP (the limit is real)
    key = dev.real_key.credentials  # type: ignore[attr-defined]
    direct = [_bot(key["api_key"], key["secret"], dev.emulator_url) for _ in range(8)]  # type: ignore[arg-type]
    _run(direct, 3.0, markets)
    banned = limits(dev, binance_weight_per_minute=None)["answered"]
    assert banned["429"] > after["429"] and banned["418"] > after["418"]



def test_an_order_whose_reference_fetch_the_bots_share_cannot_pay_is_refused_for_it(tmp_path: Any) -> None:
    """Session 28's review: a price fetch for a bot's order is charged to that bot's share of the exchange's budget,
    and when the share was spent the fetch was dropped and the order decided on the older price keyproxy held (a
    notional cap valued a sell at a price the bot kept keyproxy from renewing). The order is refused for the budget
    now, nothing sent, and the next one asks again."""
    config = '[governor]\nreserve = 0.1\n[governor.limits]\n"binance.REQUEST_WEIGHT" = 200\n'
    with DevStack(tmp_path, extra_config=config) as dev:
        dev.serve_account("main", new_real_key("hmac"))
        creds = dev.add_bot("spender", "main", "read,trade", "--set", "price_band_pct=5")
        ex = _bot(creds["api_key"], creds["secret"], creds["base_url"])
        for weight, spend in ((20, ex.fetch_balance), (2, lambda: ex.private_get_mypreventedmatches(
                {"symbol": "BTCUSDT", "preventedMatchId": 1}))):  # its own share spent, to less than a price call
            for _ in range(200 // weight):
                try:
                    spend()
                except ccxt.DDoSProtection:
                    break
                except ccxt.BaseError:  # what the exchange answered does not matter, only what it cost
                    pass
            else:
                pytest.fail(f"the bot's share was never spent by calls of weight {weight}")
        start = len(dev.journal())
        for _ in range(2):
            with pytest.raises(ccxt.DDoSProtection, match="budget_exhausted"):  # not reference_unavailable
                ex.create_order("BTC/USDT", "limit", "sell", 0.001, 60000)
        assert dev.journal()[start:] == []  # neither a price call nor the order went

