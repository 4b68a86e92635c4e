"""Exchange-side dead-man's switches (issue 21): keyproxy keeps Kraken's CancelAllOrdersAfter, OKX's
cancel-all-after and Hyperliquid's scheduleCancel armed while it runs, and holds the private socket
Bybit's disconnect-cancel-all (DCP) watches; killed with -9, nobody re-arms, the socket drops, and the
exchange (the emulator, running each timer as documented) cancels every resting order by itself.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.test_cancel_orders import VENUES, open_at_emulator, rest_order, trader

ccxt = pytest.importorskip("ccxt")

SECONDS = {"kr": 30, "ok": 10, "hl": 6, "by": 6}  # Kraken's re-arms spend its call counter: 30 s at the least
# "by-off": a Bybit account Bybit has not switched DCP on for (it does so on request): keyproxy says so
CONFIG = "".join(f"[accounts.{a}]\ndead_man_seconds = {s}\n" for a, s in {**SECONDS, "by-off": 6}.items())


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("dead-man"), extra_config=CONFIG)
    exchange = {**{a: a for a in (*SECONDS, "bn")}, "by-off": "by"}
    accounts = {a: new_real_key(VENUES[v][1], exchange=VENUES[v][0]) for a, v in exchange.items()}
    try:
        stack.start_emulator(list(accounts.values()))
        enabled = requests.post(stack.emulator_url + "/_emulator/dcp", timeout=10,  # Bybit's account manager
                                json={"api_key": accounts["by"].credentials["api_key"],
                                      "products": ["SPOT", "DERIVATIVES"]})
        assert enabled.status_code == 200, enabled.text
        stack.init()
        for name, key in accounts.items():
            stack.add_account(name, key)
        stack.start_daemon()
        yield stack
    finally:
        stack.close()


_readers: dict[str, Any] = {}


def dcp_windows(dev: DevStack) -> dict[str, str]:
    """What Bybit (the emulator) holds as the DCP window of each product switched on for account `by`."""
    if "by" not in _readers:
        _readers["by"] = trader(dev, "by-reads-dcp", "by")
    answer = _readers["by"].private_get_v5_account_query_dcp_info()
    return {i["product"]: i["timeWindow"] for i in answer["result"]["dcpInfos"]}


def arms(dev: DevStack, start: int = 0) -> list[dict[str, Any]]:
    return [e for e in dev.journal()[start:] if e.get("path") in ("/0/private/CancelAllOrdersAfter",
                                                                  "/api/v5/trade/cancel-all-after")
            or '"scheduleCancel"' in str(e.get("body"))]


def test_while_keyproxy_runs_the_switches_stay_armed_and_never_fire(dev: DevStack) -> None:
    """Also when Bybit drops keyproxy's socket (as it may at any time): it is reopened inside the window."""
    placed = {rest_order(trader(dev, f"{a}-rests", a), a) for a in SECONDS}
    start = len(dev.journal())
    dropped = requests.post(dev.emulator_url + "/_emulator/dcp", json={"drop_sockets": True}, timeout=10).json()
    assert dropped["dropped"] >= 1
    time.sleep(max(SECONDS.values()) + 3)  # longer than any window: only re-arming keeps the orders
    assert placed <= open_at_emulator(dev)
    seen = arms(dev, start)
    assert {e["path"] for e in seen} == {"/0/private/CancelAllOrdersAfter", "/api/v5/trade/cancel-all-after",
                                         "/exchange"}, seen
    assert all(e.get("signature_verified") for e in seen)
    status = json.loads(dev.cli("status", "--json").stdout)
    assert sorted((d["account"], d["seconds"], d["error"]) for d in status["dead_man"] if d["account"] in SECONDS) \
        == sorted((a, s, None) for a, s in SECONDS.items())
    assert "dead-man's switch kr: 30 s, last armed" in dev.cli("status").stdout
    assert 'keyproxy_dead_man_armed_timestamp_seconds{account="ok"}' in dev.metrics()
    # Bybit: each product's window set to 6 s, and keyproxy's own socket logged in (real key) and watching
    assert dcp_windows(dev) == {"SPOT": "6", "DERIVATIVES": "6"}
    frames = [e for e in dev.journal() if e.get("path") == "/v5/private"]
    logins = [e for e in frames if e.get("method") == "auth"]
    assert logins and all(e.get("signature_verified") for e in logins)
    assert any(e.get("method") == "subscribe" and "dcp" in str(e.get("body")) for e in frames), frames[:5]
    assert any(e.get("method") == "ping" for e in dev.journal()[start:] if e.get("path") == "/v5/private")
    again = [e for e in dev.journal()[start:] if e.get("path") == "/v5/private" and e.get("method") == "auth"]
    assert again and all(e.get("signature_verified") for e in again)  # reopened after the drop


def test_an_account_bybit_has_not_switched_dcp_on_for_is_reported_failing(dev: DevStack) -> None:
    status = json.loads(dev.cli("status", "--json").stdout)
    off = next(d for d in status["dead_man"] if d["account"] == "by-off")
    assert off["armed_at"] is None and "has not switched disconnect-cancel-all (DCP) on" in off["error"]
    assert "dead-man's switch by-off: 6 s, never armed; FAILING" in dev.cli("status").stdout
    assert 'keyproxy_dead_man_arm_failures_total{account="by-off"}' in dev.metrics()


def test_a_bot_may_not_set_or_clear_a_switch_keyproxy_holds(dev: DevStack) -> None:
    ex = trader(dev, "kr-clears", "kr")
    start = len(dev.journal())
    with pytest.raises(ccxt.ExchangeError, match="dead_man_seconds"):
        ex.private_post_cancelallordersafter({"timeout": 0})
    assert arms(dev, start) == [] or all(e.get("signature_verified") for e in arms(dev, start))  # keyproxy's own only
    okx = trader(dev, "ok-clears", "ok")
    with pytest.raises(ccxt.ExchangeError, match="dead_man_seconds"):
        okx.private_post_trade_cancel_all_after({"timeOut": "0"})
    bybit = trader(dev, "by-widens", "by")  # a window of 300 s would leave a dead keyproxy's orders 5 minutes
    with pytest.raises(ccxt.ExchangeError, match="dead_man_seconds"):
        bybit.private_post_v5_order_disconnected_cancel_all({"product": "SPOT", "timeWindow": 300})
    assert dcp_windows(dev) == {"SPOT": "6", "DERIVATIVES": "6"}


def test_a_switch_the_exchange_cannot_honour_is_refused_at_reload(dev: DevStack) -> None:
    config = dev.root / "keyproxy.toml"
    good = config.read_text()
    try:
        for extra, said in (("[accounts.bn]\ndead_man_seconds = 60\n", "Binance spot has no cancel-on-silence timer"),
                            ("", "okx's cancel-all-after accepts 10 to 120 seconds, not 5"),
                            ("kr", "kraken's CancelAllOrdersAfter accepts 30 to 86400 seconds, not 6 (each re-arm "
                                   "spends Kraken's call counter)")):
            shorter = good.replace("[accounts.ok]\ndead_man_seconds = 10", "[accounts.ok]\ndead_man_seconds = 5") \
                if extra != "kr" else good.replace("[accounts.kr]\ndead_man_seconds = 30",
                                                   "[accounts.kr]\ndead_man_seconds = 6")
            extra = "" if extra == "kr" else extra
            config.write_text(shorter if not extra else good + extra)
            done = dev.cli("reload", check=False)
            assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
            checked = dev.cli("config", "check", check=False)
            assert checked.returncode == 1 and said in checked.stderr, checked.stderr
        config.write_text(good + "[accounts.kr2]\ndead_man_seconds = 3\n")
        done = dev.cli("reload", check=False)
        assert done.returncode == 1
        assert "accounts.kr2.dead_man_seconds: must be 5 to 86400 seconds, not 3" in done.stderr
    finally:
        config.write_text(good)
    dev.cli("reload")


def test_killed_with_minus_9_the_exchange_cancels_every_resting_order(dev: DevStack) -> None:
    placed = {a: rest_order(trader(dev, f"{a}-orphan", a), a) for a in SECONDS}
    kept = rest_order(trader(dev, "bn-no-switch", "bn"), "bn")  # Binance spot has no switch: its order stays
    creds = dev.add_bot("by-off-rests", "by-off", "read,trade")  # DCP off for this Bybit account: its order stays
    by_off = point_ccxt_at(ccxt.bybit({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])
    kept_off = str(by_off.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"])
    time.sleep(1.5)  # armed since the orders were placed
    dev.stop_daemon(signal.SIGKILL)
    killed = time.monotonic()
    while set(placed.values()) & open_at_emulator(dev) and time.monotonic() - killed < max(SECONDS.values()) + 5:
        time.sleep(0.25)
    left = open_at_emulator(dev)
    assert not set(placed.values()) & left and {kept, kept_off} <= left
    assert time.monotonic() - killed > min(SECONDS.values()) - 4  # the exchange waited for its window
