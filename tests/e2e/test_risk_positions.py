"""Positions from confirmed fills, end to end (docs/risk.md): max_position, the daily loss limit with its
cancels, no trading against another bot of the same account, and reconciliation after a restart.

Unmodified ccxt bots through a real daemon; the emulator fills orders and a test moves its price."""

from __future__ import annotations

import re
import signal
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import cancel_orders_of, cancel_own_orders, restart_with_fault
from tests.e2e.test_risk_binance import arrived, bot, set_price

CONFIG = """
[accounts.main]
reference_max_age = 1
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("positions"), extra_config=CONFIG)
    key = new_real_key(permissions={"enableReading": True, "enableSpotAndMarginTrading": True},
                       balances={"USDT": "100000", "BTC": "5"})
    try:
        stack.serve_account("main", key)
        set_price(stack, "60000")
        yield stack
    finally:
        stack.close()


def series(dev: DevStack, name: str, **labels: str) -> float | None:
    for line in dev.metrics().splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1).split(",") for k, v in labels.items()):
            return float(m.group(2))
    return None


def eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def position(dev: DevStack, name: str) -> float | None:
    return series(dev, "keyproxy_bot_position", bot=name, scope="spot:BTCUSDT")


def test_max_position_counts_fills_and_resting_orders_and_selling_always_passes(dev: DevStack) -> None:
    ex = bot(dev, "sized", "max_position=0.01")
    ex.create_order("BTC/USDT", "market", "buy", 0.006)  # filled at once: the answer says so
    assert eventually(lambda: position(dev, "sized") == 0.006), position(dev, "sized")
    resting = ex.create_order("BTC/USDT", "limit", "buy", 0.003, 50000)  # 0.006 + 0.003 <= 0.01
    start = len(dev.journal())
    with pytest.raises(ccxt.InvalidOrder) as refused:  # 0.006 held + 0.003 resting + 0.002 > 0.01
        ex.create_order("BTC/USDT", "limit", "buy", 0.002, 50000)
    assert '"error": "position_exceeded"' in str(refused.value) and "the cap is 0.01" in str(refused.value)
    assert ("POST", "/api/v3/order") not in arrived(dev, start)
    ex.cancel_order(resting["id"], "BTC/USDT")
    ex.create_order("BTC/USDT", "limit", "buy", 0.004, 50000)  # the cancel freed its room
    ex.create_order("BTC/USDT", "market", "sell", 0.006)  # reducing always passes
    assert eventually(lambda: position(dev, "sized") == 0.0)
    cancel_own_orders(ex, "BTC/USDT")


def test_buys_fired_at_once_cannot_all_pass_the_position_cap(dev: DevStack) -> None:
    """max_position = 0.01 and ten resting buys of 0.003 sent at once: each counts as resting from the moment
    keyproxy sends it, so at most three go through (0.009), not all ten (0.03)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.conftest import binance_limit_buy

    creds = dev.add_bot("sized-burst", "main", "read,trade", "--set", "max_position=0.01")

    def buy(i: int) -> int:
        return binance_limit_buy(creds, "0.003", 50000 + i)

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(buy, range(10)))
    assert statuses.count(200) <= 3 and statuses.count(200) + statuses.count(403) == 10, statuses
    cancel_orders_of(dev, "sized-burst")  # by the operator: no other bot may cancel them


def test_the_daily_loss_limit_halts_new_risk_cancels_resting_orders_and_alerts(dev: DevStack) -> None:
    set_price(dev, "60000")
    ex = bot(dev, "loser", "max_daily_loss=50", "on_loss_limit=cancel")
    ex.create_order("BTC/USDT", "market", "buy", 0.01)  # 600 USDT of BTC
    resting = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    set_price(dev, "54000")  # down 60 on the position: past 50
    # keyproxy values the position at the market by itself (no bot asked for a price) and acts
    assert eventually(lambda: series(dev, "keyproxy_anomalies_total", rule="loss_limit", action="halt") == 1)
    assert series(dev, "keyproxy_bot_daily_pnl", bot="loser") == pytest.approx(-60)
    assert eventually(lambda: series(dev, "keyproxy_anomalies_total", rule="loss_limit", action="cancel_orders") == 1)
    assert eventually(lambda: ex.fetch_order(resting["id"], "BTC/USDT")["status"] == "canceled")
    with pytest.raises(ccxt.InvalidOrder) as refused:  # new risk: refused
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 53000)
    assert '"error": "loss_limit"' in str(refused.value) and "daily loss limit 50" in str(refused.value)
    set_price(dev, "60000")  # the market comes back: the limit holds for the rest of the day
    with pytest.raises(ccxt.InvalidOrder, match="loss_limit"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 53000)
    ex.create_order("BTC/USDT", "market", "sell", 0.005)  # getting out passes
    incidents = dev.cli("incidents", "list").stdout
    assert "loss_limit" in incidents and "bot:loser" in incidents
    status = dev.cli("status").stdout
    assert "risk bot loser: spot:BTCUSDT 0.005" in status and "of limit -50" in status, status
    assert "LOSS LIMIT HIT" in status
    shown = dev.cli("bot", "show", "loser").stdout
    assert "spot:BTCUSDT 0.005" in shown and "(LOSS LIMIT HIT)" in shown, shown


def test_a_bot_cannot_trade_against_another_bots_resting_order(dev: DevStack) -> None:
    set_price(dev, "60000")
    seller, buyer = bot(dev, "seller"), bot(dev, "buyer")
    ask = seller.create_order("BTC/USDT", "limit", "sell", 0.001, 62000)  # rests above the market
    start = len(dev.journal())
    for call in (lambda: buyer.create_order("BTC/USDT", "limit", "buy", 0.001, 63000),
                 lambda: buyer.create_order("BTC/USDT", "market", "buy", 0.001)):
        with pytest.raises(ccxt.InvalidOrder) as refused:
            call()
        assert '"error": "self_cross"' in str(refused.value) and ask["id"] in str(refused.value)
    bid = buyer.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)  # below the ask: no cross; it rests
    with pytest.raises(ccxt.InvalidOrder, match="self_cross"):  # now the seller would hit the buyer's bid
        seller.create_order("BTC/USDT", "limit", "sell", 0.001, 58000)
    assert arrived(dev, start).count(("POST", "/api/v3/order")) == 1
    seller.cancel_order(ask["id"], "BTC/USDT")
    buyer.create_order("BTC/USDT", "limit", "buy", 0.001, 63000)  # the ask is gone: it fills at the market
    buyer.cancel_order(bid["id"], "BTC/USDT")


def test_more_fills_a_minute_than_allowed_halts_the_bot(dev: DevStack) -> None:
    set_price(dev, "60000")
    ex = bot(dev, "filler", "max_fills_per_minute=3")
    resting = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
    for _ in range(4):  # four fills the exchange confirmed within the minute
        ex.create_order("BTC/USDT", "market", "buy", 0.001)
    assert eventually(lambda: series(dev, "keyproxy_anomalies_total", rule="fill_burst", action="halt") == 1)
    with pytest.raises(ccxt.InvalidOrder) as refused:
        ex.create_order("BTC/USDT", "market", "buy", 0.001)
    assert '"error": "halted"' in str(refused.value) and "4 fills in 60 s" in str(refused.value)
    ex.cancel_order(resting["id"], "BTC/USDT")  # a halted bot can still get out
    assert "HALT bot filler" in dev.cli("status").stdout
    dev.cli("resume", "--bot", "filler")


async def test_a_fill_pushed_on_the_user_stream_moves_the_position(dev: DevStack) -> None:
    """ccxt.pro places over the WebSocket API and watches its orders; the fill reaches keyproxy only as an
    `executionReport` event on that socket (no answer, no reconciliation within the test)."""
    import asyncio

    ccxtpro = pytest.importorskip("ccxt.pro")
    from keyproxy.emulator.devstack import point_ccxt_at

    set_price(dev, "60000")
    creds = dev.add_bot("streamer", "main", "read,trade")
    ex = point_ccxt_at(ccxtpro.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                        "options": {"defaultType": "spot"}}), creds["base_url"])
    try:
        await ex.load_markets()
        watcher = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        await asyncio.sleep(1.0)  # the user data stream subscription is up
        await ex.create_order_ws("BTC/USDT", "limit", "buy", 0.003, 59000)  # rests
        await asyncio.wait_for(watcher, 15)
        assert position(dev, "streamer") is None  # nothing filled yet
        set_price(dev, "58500")  # the exchange fills it and pushes the event
        assert await asyncio.to_thread(eventually, lambda: position(dev, "streamer") == 0.003)
    finally:
        await ex.close()
    set_price(dev, "60000")


def test_positions_agree_with_the_exchange_after_a_restart(dev: DevStack) -> None:
    set_price(dev, "60000")
    ex = bot(dev, "sleeper")
    ex.create_order("BTC/USDT", "limit", "buy", 0.002, 55000)  # rests
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    set_price(dev, "54000")  # the order fills while keyproxy is down
    dev.start_daemon()
    # no bot has asked anything since: only keyproxy's own reconciliation can know
    assert eventually(lambda: position(dev, "sleeper") == 0.002), position(dev, "sleeper")
    assert series(dev, "keyproxy_reconciled_fills_total", account="main") == 1
    assert ("GET", "/api/v3/allOrders") in arrived(dev, 0)
    set_price(dev, "60000")


def test_an_order_answered_status_unknown_keeps_counting_against_the_cap(dev: DevStack) -> None:
    """The review's hole (session 13): a 5xx answer to an order ("execution status unknown": it may rest or
    fill) released its size at once, so the next buy passed a cap the first may already fill. It now counts as
    on its way until it lapses (IN_FLIGHT_S)."""
    import requests

    ex = bot(dev, "sized-unknown", "max_position=0.01")
    requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": ["quantity=0.007"]}, timeout=5)
    try:
        with pytest.raises(ccxt.ExchangeNotAvailable):  # the emulator's 503, as Binance's "status unknown"
            ex.create_order("BTC/USDT", "limit", "buy", 0.007, 50000)
    finally:
        requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": []}, timeout=5)
    with pytest.raises(ccxt.InvalidOrder, match="position_exceeded"):  # 0.007 may rest + 0.004 > 0.01
        ex.create_order("BTC/USDT", "limit", "buy", 0.004, 50000)
    ex.create_order("BTC/USDT", "limit", "buy", 0.003, 50000)
    cancel_own_orders(ex, "BTC/USDT")


def test_a_position_keyproxy_cannot_price_holds_back_new_risk_under_a_loss_limit(dev: DevStack) -> None:
    """Session 27's review: a position keyproxy held no price for counted as nothing towards the daily loss limit,
    so a bot that kept keyproxy's price calls from getting through (it spent the account's weight) traded on past
    its loss. keyproxy now asks for the price of such a position before the bot may add risk; if it still has none,
    new risk is refused (`loss_limit`), getting out passes."""
    import requests

    ex = bot(dev, "unpriced", "max_daily_loss=50")
    start = len(dev.journal())
    ex.create_order("ETH/USDT", "market", "buy", 0.01)  # a position in ETH; no ETH price asked for (no band, no cap)
    requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": ["symbol=ETHUSDT"]}, timeout=5)
    try:
        with pytest.raises(ccxt.InvalidOrder) as refused:  # ETH's price cannot be had: BTC risk is refused
            ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
        assert '"error": "loss_limit"' in str(refused.value) and "no price" in str(refused.value)
    finally:
        requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": []}, timeout=5)
    time.sleep(1.5)  # keyproxy asks the same call again after a second (REFERENCE_PAUSE)
    placed = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)  # the price fetched now: it passes
    assert ("GET", "/api/v3/ticker/price") in arrived(dev, start)
    ex.cancel_order(placed["id"], "BTC/USDT")
    ex.create_order("ETH/USDT", "market", "sell", 0.01)


KILL_IN_ACT = '''
import os
import signal

from keyproxy.proxy import risk_watch


async def _act(self, *args, **kwargs):  # the loss limit is latched in state.db: die before its actions
    os.kill(os.getpid(), signal.SIGKILL)


risk_watch.RiskWatch._act = _act
'''


def test_a_kill_between_the_loss_limits_latch_and_its_actions_loses_no_action(tmp_path: Path) -> None:
    """Session 34's crash review: the daily loss limit's latch was written before its actions ran, and a kill in
    between left the bot's resting orders to fill (`on_loss_limit = cancel`), with no incident, audit line or metric:
    after the restart the latch said "done". The actions owed are written with the latch and done at the restart."""
    with DevStack(tmp_path / "stack", extra_config=CONFIG) as dev:
        dev.serve_account("main", new_real_key(permissions={"enableReading": True, "enableSpotAndMarginTrading": True},
                                               balances={"USDT": "100000", "BTC": "5"}))
        port = urllib.parse.urlsplit(dev.proxy_url).port
        restart_with_fault(dev, KILL_IN_ACT, tmp_path / "hook")
        set_price(dev, "60000")
        ex = bot(dev, "crash-loser", "max_daily_loss=50", "on_loss_limit=cancel")
        ex.create_order("BTC/USDT", "market", "buy", 0.01)
        resting = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
        set_price(dev, "54000")  # down 60: past 50, and the watch's first action kills the daemon
        assert dev.daemon().wait(30) == -signal.SIGKILL
        dev._procs.pop("daemon")
        dev.start_daemon(port)  # without the hook
        assert eventually(lambda: ex.fetch_order(resting["id"], "BTC/USDT")["status"] == "canceled")
        assert "loss_limit" in dev.cli("incidents", "list").stdout
        assert eventually(lambda: series(dev, "keyproxy_anomalies_total", rule="loss_limit", action="cancel_orders")
                          == 1)


def test_a_loss_limits_actions_owed_from_an_earlier_day_are_dropped(dev: DevStack) -> None:
    """The regression review: owed actions were resumed at any later start, whatever their day, so a restart a week
    on cancelled the bot's orders of that day and raised a false "down 60 today" incident. Only today's are done."""
    import json as _json
    import sqlite3

    set_price(dev, "60000")
    ex = bot(dev, "old-loser", "max_daily_loss=50", "on_loss_limit=cancel")
    resting = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    port = urllib.parse.urlsplit(dev.proxy_url).port
    dev.stop_daemon()
    owed = {"day": "2026-01-01", "account": "main", "limit": "50", "pnl": "-60", "action": "cancel"}
    with sqlite3.connect(dev.root / "state" / "state.db") as db:
        db.execute("INSERT OR REPLACE INTO usage VALUES (?, ?)", ("loss_hit|bot:old-loser", "2026-01-01"))
        db.execute("INSERT OR REPLACE INTO usage VALUES (?, ?)", ("loss_act|bot:old-loser", _json.dumps(owed)))
    dev.start_daemon(port)
    time.sleep(3)  # a few of the watch's ticks
    assert ex.fetch_order(resting["id"], "BTC/USDT")["status"] == "open"
    assert "bot:old-loser" not in dev.cli("incidents", "list").stdout
    with sqlite3.connect(dev.root / "state" / "state.db") as db:
        assert db.execute("SELECT value FROM usage WHERE key = 'loss_act|bot:old-loser'").fetchall() == []
    cancel_orders_of(dev, "old-loser")
