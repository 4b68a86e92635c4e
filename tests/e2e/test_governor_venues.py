"""The exchange's own budget for Bybit, OKX and Kraken (issue 19): bots hammering through keyproxy never make
the exchange refuse, a quiet bot keeps its fair share next to a flooding one, and the same bots straight at
the emulator are refused (the limits are real).

The emulator enforces each exchange's rules, scaled down (emulator/rate_limits.py): Bybit's 600 requests per
5 s per IP (403 and a ban) and its per-UID endpoint limit (retCode 10006), OKX's per-endpoint limit per 2 s
(429 50011), Kraken's decaying call counter (`EAPI:Rate limit exceeded`). keyproxy is told the same numbers
(`[governor.limits]`, `[governor.tiers]`) and answers bots itself with the exchange's own rate-limit error,
which each ccxt raises as RateLimitExceeded (Bybit, OKX) or DDoSProtection (Kraken).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack, RealKey, new_real_key, point_ccxt_at
from tests.e2e.test_governor import limits

ccxt = pytest.importorskip("ccxt")

BYBIT_IP, BYBIT_UID, OKX_BALANCE, KRAKEN_COUNTER = 40, 5, 6, 8
CONFIG = f"""[governor]
reserve = 0.1
[governor.limits]
"bybit.IP_REQUESTS" = {BYBIT_IP}
"bybit.UID_ENDPOINT" = {BYBIT_UID}
"okx.GET /api/v5/account/balance" = {OKX_BALANCE}
"okx.POST /api/v5/trade/order" = 4
"okx.GET /api/v5/trade/orders-pending" = 1
"kraken.CALL_COUNTER" = {KRAKEN_COUNTER}
[governor.tiers]
kraken = "pro"
"""
KEY_TYPES = {"bybit": "hmac", "okx": "hmac", "kraken": "hmac"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, dict[str, RealKey]]]:
    dev = DevStack(tmp_path_factory.mktemp("venues"), extra_config=CONFIG)
    keys = {ex: new_real_key(kind, exchange=ex) for ex, kind in KEY_TYPES.items()}
    try:
        dev.serve_accounts(keys)
        limits(dev, bybit_ip_per_5s=BYBIT_IP, bybit_uid_per_s=BYBIT_UID, bybit_ban_seconds=30,
               okx_per_2s={"/api/v5/account/balance": OKX_BALANCE},
               kraken_counter={"limit": KRAKEN_COUNTER, "seconds_per_unit": 1.0})
        yield dev, keys
    finally:
        dev.close()


def client(ex: str, credentials: dict[str, Any], base_url: str) -> Any:
    config = {"apiKey": credentials["api_key"], "secret": credentials["secret"], "enableRateLimit": False}
    if "passphrase" in credentials:
        config["password"] = credentials["passphrase"]
    return point_ccxt_at(getattr(ccxt, ex)(config), base_url)


def hammer(bots: list[Any], call: Callable[[Any], Any], seconds: float, pause: float = 0.0) -> dict[str, Any]:
    """Every bot calls `call` as fast as it can (or every `pause` s) for `seconds`: answers and refusals."""
    tally: dict[str, Any] = {"ok": 0, "limited": 0, "errors": 0}
    first_error: list[str] = []
    first_limited: list[str] = []
    lock = threading.Lock()

    def run(bot: Any) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                call(bot)
                kind = "ok"
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as e:  # ccxt's two "back off" errors
                kind = "limited"
                first_limited.append(str(e)[:400])
            except ccxt.BaseError as e:  # straight at the exchange, bots sharing a Kraken key collide on nonces
                kind = "errors"
                first_error.append(f"{type(e).__name__}: {str(e)[:300]}")
            with lock:
                tally[kind] += 1
            time.sleep(pause or 0.005)

    threads = [threading.Thread(target=run, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    if first_error:
        tally["first_error"] = first_error[0]
    if first_limited:
        tally["first_limited"] = first_limited[0]
    return tally


def refused_by_exchange(dev: DevStack, ex: str) -> int:
    return sum(limits(dev)["refused"][ex].values())


CASES = {  # exchange -> the call each bot hammers (a private read: the account's budgets and the IP's)
    "bybit": lambda b: b.fetch_balance(),
    "okx": lambda b: b.fetch_balance(),
    "kraken": lambda b: b.fetch_balance(),
}


async def test_bybit_websocket_orders_spend_the_rest_order_budget(stack: tuple[DevStack, dict[str, RealKey]]) -> None:
    """Bybit answers a trade op with its X-Bapi-Limit "for this op type": `order.create` on the socket spends the
    per-UID limit of `POST /v5/order/create` (5 a second here, the emulator counting both in one window) with the
    bot's REST orders. Frames over it are answered locally, retCode 10006 and never upstream; Bybit never refuses
    (without the shared count, three REST orders and five frames in a second were eight against a limit of five)."""
    from tests.e2e.test_websocket_bybit import ORDER, auth, talk, trade
    from tests.e2e.wsstack import ws_entries

    dev, _ = stack
    creds = dev.add_bot("bybit-ws-orders", "bybit", "read,trade")
    before, start = refused_by_exchange(dev, "bybit"), len(dev.journal())
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # signed as pybit signs (the module's other tests share the IP budget: no market list)
            body, stamp = json.dumps(ORDER), str(int(time.time() * 1000))
            sign = hmac.new(creds["secret"].encode(), f"{stamp}{creds['api_key']}5000{body}".encode(),
                            hashlib.sha256).hexdigest()
            headers = {"X-BAPI-API-KEY": creds["api_key"], "X-BAPI-TIMESTAMP": stamp, "X-BAPI-RECV-WINDOW": "5000",
                       "X-BAPI-SIGN": sign, "Content-Type": "application/json"}
            async with session.post(creds["base_url"] + "/v5/order/create", data=body, headers=headers) as r:
                assert (await r.json())["retCode"] == 0
    answers = (await talk(creds, auth(creds), *(trade(str(i), ORDER) for i in range(5))))[1:]
    placed = [a for a in answers if a["retCode"] == 0]
    local = [a for a in answers if a.get("keyproxy_error") == "budget_exhausted"]
    assert local and len(placed) + len(local) == 5 and 3 + len(placed) <= BYBIT_UID, answers
    assert local[0]["retCode"] == 10006 and local[0]["reqId"] == str(len(placed)), local
    assert [e["method"] for e in ws_entries(dev, start)] == ["auth"] + ["order.create"] * len(placed)
    assert refused_by_exchange(dev, "bybit") == before


@pytest.mark.parametrize("ex", list(CASES))
def test_four_bots_through_keyproxy_never_make_the_exchange_refuse(stack: tuple[DevStack, dict[str, RealKey]],
                                                                   ex: str) -> None:
    dev, keys = stack
    bots = []
    for i in range(4):
        creds = dev.add_bot(f"{ex}-hammer{i}", ex, "read")
        bots.append(client(ex, creds, creds["base_url"]))
    bots[0].load_markets()  # once: a market list costs several requests, and the bots share it
    for bot in bots[1:]:
        bot.set_markets(bots[0].markets, bots[0].currencies)
    before = refused_by_exchange(dev, ex)
    tally = hammer(bots, CASES[ex], 3.0)
    assert refused_by_exchange(dev, ex) == before, f"{ex} had to refuse: {limits(dev)['refused'][ex]}"
    assert tally["ok"] > 0 and tally["limited"] > 0 and tally["errors"] == 0, tally  # reached, and told locally
    assert f'keyproxy_exchange_budget_refusals_total{{bot="{ex}-hammer' in dev.metrics()

    # the same four bots straight at the exchange: it refuses them (the limit is real)
    direct = [client(ex, keys[ex].credentials, dev.emulator_url) for _ in range(4)]
    hammer(direct, CASES[ex], 1.5)
    assert refused_by_exchange(dev, ex) > before


async def test_okx_websocket_orders_spend_the_rest_order_budget(stack: tuple[DevStack, dict[str, RealKey]]) -> None:
    """OKX counts WebSocket order ops with REST order entry: the `order` op spends `POST /api/v5/trade/order`
    (4 per 2 s here, 3 for ordinary orders); the fourth and fifth frames are answered locally, 50011."""
    from tests.e2e.test_websocket_okx import ORDER, login, talk
    from tests.e2e.wsstack import ws_entries

    dev, _ = stack
    creds = dev.add_bot("okx-ws-orders", "okx", "read,trade")
    start = len(dev.journal())
    answers = await talk(creds, login(creds), *({"id": str(i), "op": "order", "args": [ORDER]} for i in range(5)))
    assert [a.get("code") for a in answers[1:]] == ["0", "0", "0", "50011", "50011"], answers
    assert answers[4]["keyproxy_error"] == "budget_exhausted"
    assert [e["method"] for e in ws_entries(dev, start)] == ["login", "order", "order", "order"]


def test_a_cancel_alls_listing_spends_the_exchanges_budget(stack: tuple[DevStack, dict[str, RealKey]]) -> None:
    """Session 28: the listing keyproxy makes to see whose orders a cancel-all would cancel (here of OKX swaps, which
    the positions book does not hold) went out unbudgeted, and in a fleet a cancel-all lists anew every time: a bot's
    cancel-alls in a loop spent the account's weight for every bot. Each listing now spends the endpoint's budget in
    the asking bot's share (a way out, it may use the reserve, as the cancel-all itself may): here one listing per
    2 s, so a second cancel-all that needs a new listing within the window is refused with OKX's rate-limit answer
    and nothing is listed."""
    from tests.e2e.test_holes_okx import send

    dev, _ = stack
    dev.cli("halt", "--account", "okx", "--cancel-orders", "--reason", "test tidy-up")  # earlier tests' orders
    dev.cli("resume", "--account", "okx")
    owner = dev.add_bot("okx-list-owner", "okx", "read,trade")
    lister = dev.add_bot("okx-list-loop", "okx", "read,trade")
    order = {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "limit", "px": "20000", "sz": "1"}
    mass_cancel = {"instType": "SWAP", "instFamily": "BTC-USDT"}
    time.sleep(2.1)  # the earlier tests' order entries out of the window
    status, body, _ = send(dev, owner, "POST", "/api/v5/trade/order", order)
    assert body.get("code") == "0", body
    start = len(dev.journal())
    status, body, _ = send(dev, lister, "POST", "/api/v5/trade/mass-cancel", mass_cancel)
    assert body.get("error") == "policy_denied" and "okx-list-owner" in body["message"], body  # listed: not its own
    listing = ["/api/v5/trade/orders-pending"] + ["/api/v5/trade/orders-algo-pending"] * 3  # and each algo kind
    assert [e["path"] for e in dev.journal()[start:]] == listing
    status, body, _ = send(dev, owner, "POST", "/api/v5/trade/order", order)  # an order changed: listed anew
    assert body.get("code") == "0", body
    start = len(dev.journal())
    status, body, _ = send(dev, lister, "POST", "/api/v5/trade/mass-cancel", mass_cancel)
    assert body.get("error") == "budget_exhausted" and "orders-pending" in body["message"], body
    assert dev.journal()[start:] == []  # neither the listing nor the cancel-all went
    time.sleep(2.1)
    status, body, _ = send(dev, lister, "POST", "/api/v5/trade/mass-cancel", mass_cancel)
    assert body.get("error") == "policy_denied", body
    assert [e["path"] for e in dev.journal()[start:]] == listing


def test_a_bybit_ip_ban_holds_every_bybit_request_locally(stack: tuple[DevStack, dict[str, RealKey]]) -> None:
    """Bybit bans the IP with HTTP 403 ("at least 10 minutes"): keyproxy sends nothing more on its budgets."""
    dev, _ = stack
    limits(dev, bybit_reset=True)  # the ban the direct bots earned earlier
    creds = dev.add_bot("bybit-banned", "bybit", "read")
    bot = client("bybit", creds, creds["base_url"])
    bot.load_markets()
    limits(dev, bybit_ban_now=600)
    start = len(dev.journal())
    with pytest.raises(ccxt.BaseError):
        bot.fetch_balance()  # the exchange's 403
    for _ in range(3):
        time.sleep(0.002)  # a local refusal is sub-millisecond: the same read signed in the same ms is a replay
        with pytest.raises(ccxt.RateLimitExceeded, match="budget_exhausted"):
            bot.fetch_balance()  # held locally: retCode 10006, nothing upstream
    assert len([e for e in dev.journal()[start:] if e["path"].startswith("/v5/")]) == 1
    assert 'keyproxy_exchange_rate_limit_answers_total{account="bybit",kind="ban",status="403"} 1.0' in dev.metrics()
    status = dev.cli("status").stdout
    assert any(x.startswith("budget bybit@") and "IP_REQUESTS" in x and "CLOSED for" in x for x in status.splitlines())
    limits(dev, bybit_reset=True)


def test_a_quiet_bot_keeps_its_share_next_to_a_flooding_one(tmp_path: Path) -> None:
    """Bybit's per-IP budget (36 a 5 s for ordinary requests, two bots: 18 each): a bot reading its balance every
    0.4 s (about 12 a 5 s) is never refused while another floods; the flooder borrows what the quiet one leaves.
    The endpoint's own limit is lifted here, so the IP's is the one shared."""
    config = f'[governor.limits]\n"bybit.IP_REQUESTS" = {BYBIT_IP}\n"bybit.UID_ENDPOINT" = 100000\n'
    with DevStack(tmp_path, extra_config=config) as dev:
        dev.serve_account("bybit", new_real_key("hmac", exchange="bybit"))
        limits(dev, bybit_ip_per_5s=BYBIT_IP, bybit_ban_seconds=30)
        flood_creds, quiet_creds = dev.add_bot("flood", "bybit", "read"), dev.add_bot("quiet", "bybit", "read")
        flood = client("bybit", flood_creds, flood_creds["base_url"])
        quiet = client("bybit", quiet_creds, quiet_creds["base_url"])
        flood.load_markets()
        quiet.set_markets(flood.markets, flood.currencies)
        for bot in (flood, quiet):
            bot.fetch_balance()  # ccxt asks once which account type the key has
        time.sleep(5.0)  # the market lists' requests leave the window: the quiet bot starts quiet
        results: dict[str, dict[str, Any]] = {}
        quiet_thread = threading.Thread(target=lambda: results.update(quiet=hammer([quiet], lambda b: b.fetch_balance(),
                                                                                    7.0, pause=0.4)))
        quiet_thread.start()
        time.sleep(1.0)  # the quiet bot is running (an idle bot's share is lent: it may wait up to a window)
        results["flood"] = hammer([flood], lambda b: b.fetch_balance(), 6.0)
        status = dev.cli("status").stdout  # the budget as the operator sees it, while in use
        quiet_thread.join(70)
        assert results["flood"]["limited"] > 0, results  # the flooder reached the budget ...
        assert results["quiet"]["ok"] > 10 and results["quiet"]["limited"] == results["quiet"]["errors"] == 0, \
            results  # ... and was the one held
        assert refused_by_exchange(dev, "bybit") == 0
        assert 'keyproxy_exchange_budget_refusals_total{bot="flood"}' in dev.metrics()
        line = next(x for x in status.splitlines() if x.startswith("budget bybit@") and " IP_REQUESTS: " in x)
        assert f"of {BYBIT_IP} (" in line and "flood" in line, status
