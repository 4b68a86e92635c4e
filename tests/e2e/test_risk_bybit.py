"""Positions on Bybit (docs/risk.md): its create answers name the order only, so keyproxy counts it as
resting until Bybit reports the fill (a bot's order query, the `order` topic, keyproxy's own history read).
Unmodified ccxt on USDT perpetuals through a real daemon to the emulator."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.test_risk_positions import eventually, series

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("risk-bybit"))
    try:
        stack.serve_account("bb", new_real_key(exchange="bybit"))
        yield stack
    finally:
        stack.close()


def bot(dev: DevStack, name: str, *settings: str) -> ccxt.bybit:
    creds = dev.add_bot(name, "bb", "read,trade", *[x for s in settings for x in ("--set", s)])
    ex = point_ccxt_at(ccxt.bybit({"apiKey": creds["api_key"], "secret": creds["secret"],
                                   "options": {"defaultType": "swap"}}), creds["base_url"])
    ex.load_markets()
    return ex


def position(dev: DevStack, name: str) -> float | None:
    return series(dev, "keyproxy_bot_position", bot=name, scope="linear:BTCUSDT")


def test_an_order_counts_as_resting_until_bybit_reports_its_fill(dev: DevStack) -> None:
    ex = bot(dev, "bbsized", "max_position=0.01")
    ex.create_order(SYMBOL, "market", "buy", 0.006)  # Bybit answers with the order id only
    with pytest.raises(ccxt.ExchangeError) as refused:  # 0.006 not known filled: resting, and it counts
        ex.create_order(SYMBOL, "limit", "buy", 0.005, 20000)
    assert '"error": "position_exceeded"' in str(refused.value)
    assert position(dev, "bbsized") is None
    ex.fetch_closed_orders(SYMBOL)  # Bybit's history reports it filled: now it is a position
    assert eventually(lambda: position(dev, "bbsized") == 0.006), position(dev, "bbsized")
    resting = ex.create_order(SYMBOL, "limit", "buy", 0.004, 20000)  # 0.006 + 0.004 <= 0.01
    with pytest.raises(ccxt.ExchangeError, match="position_exceeded"):
        ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000)
    ex.cancel_order(resting["id"], SYMBOL)
    ex.create_order(SYMBOL, "market", "sell", 0.006, params={"reduceOnly": True})  # getting out passes


def test_a_fill_keyproxy_never_saw_is_settled_by_its_own_history_read(dev: DevStack) -> None:
    ex = bot(dev, "bbsleeper")
    ex.create_order(SYMBOL, "market", "buy", 0.002)
    assert position(dev, "bbsleeper") is None  # the answer named the order, not its fill
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    dev.start_daemon()
    assert eventually(lambda: position(dev, "bbsleeper") == 0.002), position(dev, "bbsleeper")
    # and bbsized's closing sell, which no answer had reported either
    assert position(dev, "bbsized") == 0.0
    assert series(dev, "keyproxy_reconciled_fills_total", account="bb") == 2
    assert any(e["path"] == "/v5/order/history" for e in dev.journal())


def test_a_hedge_legs_reduce_only_flag_never_passes_the_net_position_cap(dev: DevStack) -> None:
    """Session 23's review (high): in hedge mode (positionIdx 1 = the long leg, 2 = the short) reduceOnly closes one
    leg, which can grow the net position: long 0.01 and short 0.02 held together (net -0.01, within the cap), the
    long closed reduce-only left the bot net short 0.02 on max_position=0.01. A hedge leg's flag is now judged by
    the net position; a reduce-only order that shrinks the net position still passes."""
    ex = bot(dev, "bbhedger", "max_position=0.01")

    def place(side: str, qty: str, **extra: object) -> dict[str, object]:
        return ex.privatePostV5OrderCreate({"category": "linear", "symbol": "BTCUSDT", "side": side,
                                            "orderType": "Market", "qty": qty, **extra})

    def settled(want: float) -> None:
        ex.fetch_closed_orders(SYMBOL)
        assert eventually(lambda: position(dev, "bbhedger") == want), position(dev, "bbhedger")

    place("Buy", "0.01", positionIdx=1)  # the long leg: net +0.01, the cap
    settled(0.01)
    place("Sell", "0.01", positionIdx=2)  # the short leg opened: net 0
    settled(0.0)
    place("Sell", "0.01", positionIdx=2)  # net -0.01, still within the cap
    settled(-0.01)
    with pytest.raises(ccxt.ExchangeError, match="position_exceeded"):  # the long leg closed: net -0.02
        place("Sell", "0.01", positionIdx=1, reduceOnly=True)
    place("Buy", "0.01", positionIdx=2, reduceOnly=True)  # closing the short leg shrinks the net: it passes
    settled(0.0)
