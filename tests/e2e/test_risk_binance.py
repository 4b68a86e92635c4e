"""Pre-trade risk through keyproxy, end to end (docs/risk.md): price bands against keyproxy's own reference
price, and a runaway loop of one order, for unmodified ccxt over REST and raw frames over Binance's
WebSocket API: the same core decides both. The emulator's journal shows what reached the exchange."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.test_websocket_binance import ORDER, exchange, signed, ws_url
from tests.e2e.wsstack import ws_entries

MAX_AGE = 2  # seconds: short, so a moved market is asked for again within the test
CONFIG = f"""
[accounts.main]
reference_max_age = {MAX_AGE}

[anomaly.runaway_orders]
actions = ["suspend_bot"]
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("risk"), extra_config=CONFIG)
    key = new_real_key(permissions={"enableReading": True, "enableSpotAndMarginTrading": True})
    try:
        stack.serve_account("main", key)
        yield stack
    finally:
        stack.close()


def bot(dev: DevStack, name: str, *settings: str) -> ccxt.binance:
    creds = dev.add_bot(name, "main", "read,trade", *[x for s in settings for x in ("--set", s)])
    ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                     "options": {"defaultType": "spot"}}), creds["base_url"])
    ex.load_markets()
    ex.creds = creds  # type: ignore[attr-defined]
    return ex


def set_price(dev: DevStack, price: str) -> None:
    req = urllib.request.Request(f"{dev.emulator_url}/_emulator/price", method="POST", data=json.dumps(
        {"exchange": "binance", "symbol": "BTCUSDT", "price": price}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def arrived(dev: DevStack, start: int) -> list[tuple[str, str]]:
    return [(e["method"], e["path"]) for e in dev.journal()[start:] if "exchangeInfo" not in e["path"]]


def metric(dev: DevStack, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in dev.metrics().splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def test_a_fat_finger_buy_is_refused_by_keyproxys_own_reference_price(dev: DevStack) -> None:
    set_price(dev, "60000")
    ex = bot(dev, "banded", "price_band_pct=5")
    start = len(dev.journal())
    with pytest.raises(ccxt.InvalidOrder) as refused:  # 20% above the market: nothing reaches the exchange
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 72000)
    assert '"error": "price_out_of_band"' in str(refused.value)
    assert "reference price 60000" in str(refused.value)
    # the bot never asked for a price: keyproxy did, once, and sent no order
    assert arrived(dev, start) == [("GET", "/api/v3/ticker/price")]
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 61000)  # within 5%: placed (and it fills)
    assert order["id"]
    with pytest.raises(ccxt.InvalidOrder, match="price_out_of_band"):  # a sell far below the market
        ex.create_order("BTC/USDT", "limit", "sell", 0.001, 50000)
    with pytest.raises(ccxt.InvalidOrder, match="price_out_of_band"):  # a stop triggered far from the market
        ex.create_order("BTC/USDT", "STOP_LOSS_LIMIT", "sell", 0.001, 40000, {"stopPrice": 41000})
    assert ("GET", "/api/v3/ticker/price") not in arrived(dev, start)[1:]  # the reference was still fresh
    assert metric(dev, "keyproxy_risk_refusals_total", rule="price_band") >= 3


def test_the_reference_follows_the_market(dev: DevStack) -> None:
    set_price(dev, "60000")
    ex = bot(dev, "follower", "price_band_pct=5")
    ex.fetch_ticker("BTC/USDT")  # a price a bot fetched through keyproxy is a reference too
    set_price(dev, "78000")  # the market moves 30%
    time.sleep(MAX_AGE + 0.5)  # the reference keyproxy holds is now too old: it asks again
    start = len(dev.journal())
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 77000)  # 20% above the old price: fine now
    ex.cancel_order(order["id"], "BTC/USDT")
    assert arrived(dev, start)[0] == ("GET", "/api/v3/ticker/price")
    with pytest.raises(ccxt.InvalidOrder, match="price_out_of_band"):  # the old price is now far below
        ex.create_order("BTC/USDT", "limit", "sell", 0.001, 60000)
    set_price(dev, "60000")


def test_an_order_loop_is_stopped_at_the_configured_count_and_the_bot_suspended(dev: DevStack) -> None:
    ex = bot(dev, "looper", "duplicate_orders=5", "duplicate_window_seconds=60")
    start = len(dev.journal())
    placed, refusals = [], []
    for _ in range(20):
        try:
            placed.append(ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30000)["id"])
        except ccxt.ExchangeError as e:
            refusals.append(str(e))
    assert len(placed) == 5
    # the first repeat past the cap is refused as duplicate_order; the runaway rule then suspends the bot
    assert '"error": "duplicate_order"' in refusals[0]
    assert all('"error": "bot_suspended"' in r for r in refusals[1:]), refusals[1:3]
    assert arrived(dev, start).count(("POST", "/api/v3/order")) == 5
    assert metric(dev, "keyproxy_risk_refusals_total", rule="duplicate_orders") == 1
    assert metric(dev, "keyproxy_anomalies_total", rule="runaway_orders", action="suspend_bot") == 1
    dev.cli("bot", "restore", "looper")
    for order_id in placed:  # cancels always pass
        ex.cancel_order(order_id, "BTC/USDT")
    other = ex.create_order("BTC/USDT", "limit", "buy", 0.002, 30000)  # another order is not a repeat
    ex.cancel_order(other["id"], "BTC/USDT")


async def test_websocket_frames_are_banded_by_the_same_core(dev: DevStack) -> None:
    set_price(dev, "60000")
    creds = dev.add_bot("wsbanded", "main", "read,trade", "--set", "price_band_pct=5")
    start = len(dev.journal())
    fat = signed(creds, "order.place", {**ORDER, "price": "90000"}, 1)
    fine = signed(creds, "order.place", {**ORDER, "price": "59000"}, 2)
    [refused, placed] = await exchange(ws_url(creds), fat, fine)
    assert refused["keyproxy_error"] == "price_out_of_band" and refused["error"]["code"] == -2010, refused
    assert placed["status"] == 200, placed
    sent = ws_entries(dev, start)
    assert [e["method"] for e in sent] == ["order.place"] and "59000" in sent[0]["body"], sent


def test_bad_risk_limits_are_refused_with_the_field_and_the_reason(dev: DevStack) -> None:
    done = dev.cli("bot", "add", "fat", "--account", "main", "--scope", "read,trade", "--set", "price_band_pct=0",
                   check=False)
    assert done.returncode != 0 and "price_band_pct: must be a positive number" in done.stderr
    assert "Traceback" not in done.stderr
    config = dev.root / "keyproxy.toml"
    good = config.read_text()
    try:
        for bad, said in (("reference_max_age = 0", "accounts.main.reference_max_age: must be a positive number"),
                          ("reference_max_age = 2\nprice_band_pct = 150",
                           "accounts.main.price_band_pct: must be a percentage above 0 and below 100")):
            config.write_text(good.replace(f"reference_max_age = {MAX_AGE}", bad))
            checked = dev.cli("config", "check", check=False)
            assert checked.returncode != 0 and said in checked.stderr, checked.stderr
    finally:
        config.write_text(good)


def test_a_request_refused_whatever_the_price_makes_keyproxy_ask_the_exchange_nothing(dev: DevStack) -> None:
    """Session 27's review: the reference prices a banded or capped order needs were fetched before its scope,
    symbols and rate were checked, in keyproxy's own share of the exchange's budget: a read-only bot's orders for
    made-up symbols spent the account's weight and starved another bot's banded order. Refused whatever the price,
    a request now makes keyproxy fetch nothing; one that needs a price pays for it from its bot's share."""
    reader = bot(dev, "refs-reader", "price_band_pct=5", "symbols=ETHUSDT")
    dev.cli("bot", "set", "refs-reader", "scopes=read")
    start = len(dev.journal())
    for i in range(5):
        with pytest.raises(ccxt.BaseError, match="scope_denied"):
            reader.create_order("ETH/USDT", "limit", "buy", 0.01, 1000 + i)
    capped = bot(dev, "refs-capped", "price_band_pct=5", "symbols=ETHUSDT")
    for symbol in ("BTC/USDT",):  # not in its allowlist: refused before any price is asked for
        with pytest.raises(ccxt.BaseError, match="symbol_denied"):
            capped.create_order(symbol, "limit", "buy", 0.01, 1000)
    assert not [p for _, p in arrived(dev, start) if "ticker" in p], arrived(dev, start)
