"""Positions from fills on Kraken, OKX and Coinbase (docs/risk.md): their create answers name the order
only, so the order counts as resting until the exchange reports its fill; an unmodified ccxt bot's own
order query is enough, and keyproxy's own reconciliation read settles a fill after a restart."""

from __future__ import annotations

import re
import time
import signal
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.test_risk_positions import eventually

VENUES = {"kraken": ("hmac", "BTC/USD"), "okx": ("hmac", "BTC/USDT"), "coinbase": ("ec", "BTC/USD")}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("risk-venues"))
    try:
        stack.serve_accounts({ex: new_real_key(kind, exchange=ex) for ex, (kind, _) in VENUES.items()})
        yield stack
    finally:
        stack.close()


def bot(dev: DevStack, ex: str, name: str, *settings: str) -> Any:
    creds = dev.add_bot(name, ex, "read,trade", *[x for s in settings for x in ("--set", s)])
    config = {"apiKey": creds["api_key"], "secret": creds["secret"], "enableRateLimit": False}
    if "passphrase" in creds:
        config["password"] = creds["passphrase"]
    client = point_ccxt_at(getattr(ccxt, ex)(config), creds["base_url"])
    client.load_markets()
    return client


def last_price(client: Any, symbol: str) -> float:
    if client.id == "coinbase":  # the emulator serves Coinbase prices in its product list, not a ticker
        return float(client.market(symbol)["info"]["price"])
    return float(client.fetch_ticker(symbol)["last"])


def position(dev: DevStack, name: str) -> float | None:
    for line in dev.metrics().splitlines():
        m = re.fullmatch(r'keyproxy_bot_position\{(.*)\} (\S+)', line)
        if m and f'bot="{name}"' in m.group(1).split(","):
            return float(m.group(2))
    return None


@pytest.mark.parametrize("ex", list(VENUES))
def test_a_fill_moves_the_position_once_the_exchange_reports_it(dev: DevStack, ex: str) -> None:
    symbol = VENUES[ex][1]
    client = bot(dev, ex, f"{ex}-sized", "max_position=0.01")
    last = last_price(client, symbol)
    order = client.create_order(symbol, "limit", "buy", 0.006, round(last * 1.02, 1))  # marketable: fills
    with pytest.raises(ccxt.BaseError) as refused:  # not yet known filled: it rests, and it counts
        client.create_order(symbol, "limit", "buy", 0.005, round(last * 0.5, 1))
    assert "position_exceeded" in str(refused.value)
    assert position(dev, f"{ex}-sized") is None
    client.fetch_order(order["id"], symbol)  # the exchange reports the fill
    assert eventually(lambda: position(dev, f"{ex}-sized") == 0.006), position(dev, f"{ex}-sized")


def test_a_fill_on_a_product_trading_on_anothers_book_moves_that_books_position(dev: DevStack) -> None:
    """Coinbase trades BTC-USDC on BTC-USD's book: an order on it is booked as BTC-USD's, and the exchange's report
    of it (a REST read names it BTC-USDC, the user channel BTC-USD) moves that one position (session 31)."""
    client = bot(dev, "coinbase", "coinbase-usdc", "max_position=0.01")
    last = last_price(client, "BTC/USDC")
    order = client.create_order("BTC/USDC", "limit", "buy", 0.006, round(last * 1.02, 1))  # marketable: fills
    assert client.fetch_order(order["id"], "BTC/USDC")["filled"] == 0.006
    assert eventually(lambda: position(dev, "coinbase-usdc") == 0.006), position(dev, "coinbase-usdc")
    with pytest.raises(ccxt.BaseError) as refused:  # the same book's position, whichever product
        client.create_order("BTC/USD", "limit", "buy", 0.005, round(last * 0.5, 1))
    assert "position_exceeded" in str(refused.value)


def test_reconciliation_settles_fills_on_every_venue_after_a_restart(dev: DevStack) -> None:
    """Also a Coinbase order on BTC-USDC, booked as BTC-USD's book: after a restart keyproxy holds no product names
    until it fetches them, and a report under BTC-USDC was dropped as another market's (session 31's review)."""
    sleepers = {}
    venues = {**{ex: symbol for ex, (_, symbol) in VENUES.items()}, "coinbase-usdc": "BTC/USDC"}
    for name, symbol in venues.items():
        ex = name.partition("-")[0]
        client = bot(dev, ex, f"{name}-sleeper")
        last = last_price(client, symbol)
        client.create_order(symbol, "limit", "buy", 0.002, round(last * 1.02, 1))
        sleepers[name] = client
        assert position(dev, f"{name}-sleeper") is None
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    dev.start_daemon()
    for name in venues:
        assert eventually(lambda n=name: position(dev, f"{n}-sleeper") == 0.002), \
            (name, position(dev, f"{name}-sleeper"))


def test_where_keyproxy_reads_no_fills_a_position_limit_refuses_rather_than_guesses(dev: DevStack) -> None:
    client = bot(dev, "okx", "okx-swapper", "max_position=5")
    start = len(dev.journal())
    with pytest.raises(ccxt.BaseError) as refused:  # OKX swaps count contracts: not read yet, so not allowed
        client.create_order("BTC/USDT:USDT", "limit", "buy", 1, 20000)
    assert "position_exceeded" in str(refused.value) and "does not read fills in swap markets" in str(refused.value)
    assert not [e for e in dev.journal()[start:] if e["path"] == "/api/v5/trade/order"]


def test_a_fill_pushed_off_the_reconciliation_page_is_still_found(dev: DevStack) -> None:
    """Session 25's review (high): reconciliation read one page of the newest finished orders (OKX's 100). A bot that
    never asked about its filled order, then finished a page of throwaway orders (IOC far under the market, cancelled
    at once), kept the fill out of the book for good, so its loss limit never saw it. The orders the book still holds
    live are asked for by id."""
    client = bot(dev, "okx", "okx-drowner", "max_daily_loss=50")
    last = last_price(client, "BTC/USDT")
    client.create_order("BTC/USDT", "limit", "buy", 0.002, round(last * 1.02, 1))  # fills; never asked about
    finished = 0
    while finished < 101:  # the page's 100 and one
        try:
            client.create_order("BTC/USDT", "limit", "buy", 0.0001, round(last * 0.5, 1), {"timeInForce": "IOC"})
            finished += 1
        except ccxt.RateLimitExceeded:  # keyproxy's governor: OKX's 60 orders per 2 s
            time.sleep(1)
    time.sleep(2.5)  # older than an order whose own answer may still be read (BY_ID_AFTER_S)
    assert position(dev, "okx-drowner") is None
    dev.stop_daemon(signal.SIGTERM)
    dev.start_daemon()  # a start reconciles every scope with live orders at once
    assert eventually(lambda: position(dev, "okx-drowner") == 0.002), position(dev, "okx-drowner")
