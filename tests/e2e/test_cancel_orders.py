"""Incident response on the exchange (issue 21): `keyproxy halt ... --cancel-orders` cancels the halted
scope's resting orders with keyproxy's own signed calls, and says per account what it cancelled, what
failed and what is still open.

Unmodified ccxt bots place resting limit orders through keyproxy on five emulated exchanges; the emulator
is the judge of what is still open (its own state, read over its control API, not keyproxy's view).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at

ccxt = pytest.importorskip("ccxt")

VENUES = {  # account -> (exchange, key type, symbol, a buy price far under the market: the order rests)
    "bn": ("binance", "hmac", "BTC/USDT", 20000),
    "ok": ("okx", "hmac", "BTC/USDT", 20000),
    "by": ("bybit", "hmac", "BTC/USDT", 20000),
    "kr": ("kraken", "hmac", "BTC/USD", 20000),
    "cb": ("coinbase", "ec", "BTC/USD", 20000),
    "hl": ("hyperliquid", "eth", "BTC/USDC:USDC", 60000),
}

CONFIG = """
[anomaly.deny_burst]
threshold = 3
window_seconds = 60
actions = ["cancel_orders"]
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("cancel-orders"), extra_config=CONFIG)
    try:
        stack.serve_accounts({acct: new_real_key(kind, exchange=ex) for acct, (ex, kind, _, _) in VENUES.items()})
        yield stack
    finally:
        stack.close()


def trader(dev: DevStack, name: str, account: str) -> Any:
    creds = dev.add_bot(name, account, "read,trade")
    exchange = VENUES[account][0]
    if exchange == "hyperliquid":  # a virtual agent key; every API URL is keyproxy's
        ex = ccxt.hyperliquid({"walletAddress": creds["wallet_address"], "privateKey": creds["private_key"]})
        for name in ex.urls["api"]:
            ex.urls["api"][name] = creds["base_url"]
        ex.load_markets()
        return ex
    config: dict[str, Any] = {"apiKey": creds["api_key"], "secret": creds["secret"], "enableRateLimit": False}
    if creds.get("passphrase"):
        config["password"] = creds["passphrase"]
    ex = point_ccxt_at(getattr(ccxt, exchange)(config), creds["base_url"])
    ex.load_markets()
    ex.creds = creds
    return ex


def rest_order(ex: Any, account: str) -> str:
    _, _, symbol, price = VENUES[account]
    return str(ex.create_order(symbol, "limit", "buy", 0.001, price)["id"])


def open_at_emulator(dev: DevStack) -> set[str]:
    """Every order id the emulator holds open, whatever the exchange (its own state, not keyproxy's)."""
    state = requests.get(dev.emulator_url + "/_emulator/state", timeout=10).json()
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            status = str(node.get("status") or node.get("state") or node.get("orderStatus") or "").lower()
            oid = next((node[k] for k in ("orderId", "ordId", "txid", "order_id", "id", "oid") if k in node), None)
            if oid is not None and status in ("new", "live", "open", "partially_filled", "partiallyfilled"):
                found.add(str(oid))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(state)
    return found


def halt(dev: DevStack, *scope: str, check: bool = True) -> tuple[int, Any]:
    done = dev.cli("halt", *scope, "--cancel-orders", "--json", "--reason", "test incident", check=check)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


@pytest.mark.parametrize("account", list(VENUES))
def test_halting_one_bot_cancels_only_its_orders(dev: DevStack, account: str) -> None:
    mine, other = trader(dev, f"{account}-a", account), trader(dev, f"{account}-b", account)
    placed = [rest_order(mine, account), rest_order(mine, account)]
    kept = rest_order(other, account)
    before = open_at_emulator(dev)
    assert set(placed) | {kept} <= before, (placed, kept, before)

    rc, out = halt(dev, "--bot", f"{account}-a")
    [summary] = out["accounts"]
    assert rc == 0 and summary["error"] is None, out
    assert sorted(c["order_id"] for c in summary["cancelled"]) == sorted(placed), summary
    assert all(c["bot"] == f"{account}-a" for c in summary["cancelled"])
    assert not summary["failed"] and not summary["left"]
    after = open_at_emulator(dev)
    assert not set(placed) & after and kept in after
    dev.cli("resume", "--bot", f"{account}-a")
    dev.cli("halt", "--bot", f"{account}-b")  # tidy for the next test: b's order goes with an account halt
    rc, out = halt(dev, "--account", account)
    assert rc == 0 and [c["order_id"] for c in out["accounts"][0]["cancelled"]] == [kept], out
    dev.cli("resume", "--bot", f"{account}-b")
    dev.cli("resume", "--account", account)


def test_a_bots_cross_margin_orders_are_cancelled_with_its_spot_orders(dev: DevStack) -> None:
    """Binance: a margin order rests on the margin account's own book, which GET /api/v3/openOrders never
    lists; keyproxy lists /sapi/v1/margin/openOrders too once a bot placed a margin order there."""
    bot = trader(dev, "bn-margin", "bn")
    spot = rest_order(bot, "bn")
    margin = str(bot.create_order("BTC/USDT", "limit", "buy", 0.001, 20000, {"marginMode": "cross"})["id"])
    journal = dev.journal()
    assert any(e.get("path") == "/sapi/v1/margin/order" and e.get("method") == "POST" for e in journal)
    assert {spot, margin} <= open_at_emulator(dev)
    rc, out = halt(dev, "--bot", "bn-margin")
    [summary] = out["accounts"]
    assert rc == 0 and summary["error"] is None and not summary["failed"] and not summary["left"], out
    assert sorted(c["order_id"] for c in summary["cancelled"]) == sorted([spot, margin]), summary
    assert not {spot, margin} & open_at_emulator(dev)
    cancels = [e for e in dev.journal()[len(journal):] if e.get("method") == "DELETE"]
    assert {e["path"] for e in cancels} == {"/api/v3/order", "/sapi/v1/margin/order"}, cancels
    dev.cli("resume", "--bot", "bn-margin")


def test_halt_all_leaves_no_open_order_anywhere_and_reports_each(dev: DevStack) -> None:
    bots = [("bn", trader(dev, "all-1", "bn")), ("bn", trader(dev, "all-2", "bn")), ("kr", trader(dev, "all-3", "kr"))]
    placed = {rest_order(ex, acct) for acct, ex in bots}
    assert placed <= open_at_emulator(dev)
    try:
        done = dev.cli("halt", "--all", "--cancel-orders", "--reason", "leaked key")
        check_all_cancelled(dev, done.stdout, placed, bots[0][1])
    finally:
        dev.cli("resume", "--all")


def check_all_cancelled(dev: DevStack, stdout: str, placed: set[str], halted_bot: Any) -> None:
    done_stdout = stdout
    assert "halted all *" in done_stdout and "bn [binance]: cancelled 2, failed 0, left 0" in done_stdout, done_stdout
    assert "kr [kraken]: cancelled 1, failed 0, left 0" in done_stdout
    assert not open_at_emulator(dev)
    events = [json.loads(line) for f in sorted(dev.audit_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    cancels = [e for e in events if e.get("event") == "order.cancel" and e.get("order_id") in placed]
    assert sorted(e["order_id"] for e in cancels) == sorted(placed) and {e["result"] for e in cancels} == {"cancelled"}
    with pytest.raises(ccxt.ExchangeError, match="halted"):
        rest_order(halted_bot, "bn")  # the halt is in force


def test_a_cancel_the_exchange_fails_is_reported_and_the_others_are_done(dev: DevStack) -> None:
    ex = trader(dev, "flaky", "bn")
    first, second, third = (rest_order(ex, "bn") for _ in range(3))
    requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": [f"orderId={second}"]}, timeout=5)
    try:
        done = dev.cli("halt", "--bot", "flaky", "--cancel-orders", check=False)
    finally:
        requests.post(dev.emulator_url + "/_emulator/faults", json={"fail_containing": []}, timeout=5)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cancelled 2, failed 1, left 1" in done.stdout and f"FAILED BTCUSDT {second}: HTTP 503" in done.stdout
    assert f"STILL OPEN BTCUSDT {second}" in done.stdout
    still = open_at_emulator(dev)
    assert second in still and first not in still and third not in still
    # run again once the exchange works: the one left is cancelled
    rc, out = halt(dev, "--bot", "flaky")
    assert rc == 0 and [c["order_id"] for c in out["accounts"][0]["cancelled"]] == [second]
    dev.cli("resume", "--bot", "flaky")


def test_bad_input_gets_one_line(dev: DevStack) -> None:
    done = dev.cli("halt", "--cancel-orders", check=False)
    assert done.returncode != 0 and "name exactly one of --all, --account ACCOUNT, --bot BOT" in done.stderr
    assert "Traceback" not in done.stderr
    done = dev.cli("halt", "--bot", "nobody", "--cancel-orders", check=False)
    assert done.returncode != 0 and "nobody" in done.stderr and "Traceback" not in done.stderr


def test_the_cancel_orders_anomaly_action_halts_the_bot_and_cancels_its_orders(dev: DevStack) -> None:
    """`[anomaly.deny_burst] actions = ["cancel_orders"]` (this module's config): a bot whose requests keep
    being refused is halted and its resting orders cancelled; another bot's order on the account stays."""
    ex, other = trader(dev, "runaway", "ok"), trader(dev, "calm", "ok")
    dev.cli("bot", "set", "runaway", "symbols=BTCUSDT")
    resting, kept = rest_order(ex, "ok"), rest_order(other, "ok")
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeError):
            ex.create_order("ETH/USDT", "limit", "buy", 0.01, 100)  # symbol refused: a deny each
    deadline = time.monotonic() + 10
    while resting in open_at_emulator(dev) and time.monotonic() < deadline:
        time.sleep(0.1)
    still = open_at_emulator(dev)
    assert resting not in still and kept in still
    [incident] = [i for i in json.loads(dev.cli("incidents", "list", "--json").stdout) if i["subject"] == "bot:runaway"]
    assert incident["actions"] == ["cancel_orders"] and "resume --bot runaway" in " ".join(incident["next_steps"])
    status = json.loads(dev.cli("status", "--json").stdout)
    assert {"scope": "bot", "target": "runaway"}.items() <= status["halts"][0].items()
    with pytest.raises(ccxt.ExchangeError, match="halted"):
        rest_order(ex, "ok")
    dev.cli("resume", "--bot", "runaway")
    dev.cli("halt", "--account", "ok", "--cancel-orders")
    dev.cli("resume", "--account", "ok")


def heartbeat(creds: dict[str, Any], secret: str | None = None) -> tuple[int, dict[str, Any]]:
    """A drop-in Binance bot's heartbeat: signed with its virtual key the way it signs any request."""
    from tests.e2e.conftest import call, hmac_sign, now_ms

    answer = call(creds["base_url"], "GET", "/_keyproxy/heartbeat",
                  hmac_sign(secret or creds["secret"], f"timestamp={now_ms()}"),
                  headers={"X-MBX-APIKEY": creds["api_key"]})
    return answer.status, answer.body


def test_a_silent_bot_has_its_orders_cancelled_and_an_incident_lists_them(dev: DevStack) -> None:
    ex, other = trader(dev, "quiet", "bn"), trader(dev, "chatty", "bn")
    dev.cli("bot", "set", "quiet", "heartbeat_seconds=3")
    resting, kept = rest_order(ex, "bn"), rest_order(other, "bn")
    start = len(dev.journal())
    for _ in range(5):  # alive: heartbeats (answered by keyproxy, never forwarded) keep its orders
        time.sleep(1)
        status, body = heartbeat(ex.creds)
        assert (status, body) == (200, {"bot": "quiet", "heartbeat_seconds": 3})
    silent_from = time.monotonic()
    assert resting in open_at_emulator(dev)
    assert not any("_keyproxy" in str(e.get("path")) for e in dev.journal()[start:])
    assert heartbeat(ex.creds, secret="wrong")[1]["error"] == "bad_signature"  # a forged one does not count
    while resting in open_at_emulator(dev) and time.monotonic() - silent_from < 10:
        # nor a request carrying its key id alone (a public read, which Binance serves on the key header): its
        # market data thread alive while its trading loop hangs, or anyone who knows the key id (session 26)
        from tests.e2e.conftest import call
        assert call(ex.creds["base_url"], "GET", "/api/v3/ticker/price", "symbol=BTCUSDT",
                    headers={"X-MBX-APIKEY": ex.creds["api_key"]}).status == 200
        time.sleep(0.2)
    assert 2.5 < time.monotonic() - silent_from < 7
    assert kept in open_at_emulator(dev)
    [incident] = [i for i in json.loads(dev.cli("incidents", "list", "--json").stdout) if i["subject"] == "bot:quiet"]
    assert incident["rule"] == "heartbeat" and incident["actions"] == ["cancel_orders"]
    assert any(resting in line and "cancelled" in line for line in incident["evidence"]), incident
    again = rest_order(ex, "bn")  # not halted: it trades again when it comes back
    dev.cli("bot", "set", "quiet", "heartbeat_seconds=none")
    dev.cli("halt", "--account", "bn", "--cancel-orders")
    dev.cli("resume", "--account", "bn")
    assert again not in open_at_emulator(dev)


def test_a_halts_sweep_waits_for_the_bots_orders_on_their_way(dev: DevStack) -> None:
    """Session 26's review (high): `halt --cancel-orders` listed the exchange's open orders at once, so an order the
    bot had sent a moment before (the exchange still executing it) rested after a sweep that reported nothing left.
    The sweep waits for the scope's orders on their way to be answered (SETTLE_S at most), then lists."""
    ex = trader(dev, "racer", "bn")
    requests.post(dev.emulator_url + "/_emulator/faults", json={"hold_before_containing": ["side=BUY"],
                                                               "hold_seconds": 1.0}, timeout=5).raise_for_status()
    try:
        with ThreadPoolExecutor(1) as pool:
            placing = pool.submit(rest_order, ex, "bn")
            time.sleep(0.3)  # sent: the exchange has not executed it yet
            halted = dev.cli("halt", "--bot", "racer", "--cancel-orders", "--json", check=False)
            order_id = placing.result(timeout=30)
    finally:
        requests.post(dev.emulator_url + "/_emulator/faults", json={}, timeout=5).raise_for_status()
        dev.cli("resume", "--bot", "racer")
    [summary] = json.loads(halted.stdout)["accounts"]
    assert order_id not in open_at_emulator(dev)
    assert [c["order_id"] for c in summary["cancelled"]] == [order_id] and not summary["left"], summary


KILL_IN_CANCEL = '''
import os
import signal

from keyproxy.proxy import cancel_orders


async def cancel(self, *args, **kwargs):  # the halt and the incident are saved: die before the sweep
    os.kill(os.getpid(), signal.SIGKILL)


cancel_orders.Canceller.cancel = cancel
'''


def test_an_anomaly_actions_cancels_killed_before_they_ran_are_done_at_the_restart(tmp_path: Any) -> None:
    """Session 34's crash review: `cancel_orders` saved the halt and an incident saying the orders were cancelled,
    then swept in the background; a kill before the sweep left the orders resting for good. The cancels owed are in
    state.db until done, and the next start does them."""
    import signal
    import urllib.parse

    from tests.e2e.conftest import restart_with_fault

    with DevStack(tmp_path / "stack", extra_config=CONFIG) as dev:
        dev.serve_account("bn", new_real_key("hmac", exchange="binance"))
        port = urllib.parse.urlsplit(dev.proxy_url).port
        ex = trader(dev, "crash-runaway", "bn")
        dev.cli("bot", "set", "crash-runaway", "symbols=BTCUSDT")
        resting = rest_order(ex, "bn")
        restart_with_fault(dev, KILL_IN_CANCEL, tmp_path / "hook")
        for _ in range(3):
            with pytest.raises(ccxt.BaseError):
                ex.create_order("ETH/USDT", "limit", "buy", 0.01, 100)  # a deny each: the third fires the rule
        assert dev.daemon().wait(30) == -signal.SIGKILL
        dev._procs.pop("daemon")
        assert resting in open_at_emulator(dev)  # the kill came before the sweep
        dev.start_daemon(port)  # without the hook
        deadline = time.monotonic() + 15
        while resting in open_at_emulator(dev) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert resting not in open_at_emulator(dev)
