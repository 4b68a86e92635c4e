"""Coinbase's own rate budgets through keyproxy (session 34: Coinbase had none): Advanced Trade's private requests
per user a second, public ones per IP a second (coinbase_budget.py). The emulator enforces both, scaled down
(emulator/rate_limits.py `CoinbaseLimits`); keyproxy is told the same numbers. Bots hammering through keyproxy
never make the exchange refuse, and get Coinbase's own 429 (ccxt: RateLimitExceeded) from keyproxy; the same
bots straight at the emulator are refused (the limits are real). A 429 from Coinbase holds the request's budgets
for a second, not the minute the default holds for."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from keyproxy.emulator.devstack import DevStack, RealKey, new_real_key, point_ccxt_at
from tests.e2e.test_governor import limits
from tests.e2e.test_governor_venues import hammer

ccxt = pytest.importorskip("ccxt")

PRIVATE, PUBLIC, UNAUTHENTICATED = 6, 8, 4
CONFIG = f"""[governor]
reserve = 0.1
[governor.limits]
"coinbase.PRIVATE_REQUESTS" = {PRIVATE}
"coinbase.PUBLIC_REQUESTS" = {PUBLIC}
"coinbase.WS_UNAUTHENTICATED" = {UNAUTHENTICATED}
"""
PRODUCT = "/api/v3/brokerage/market/products/BTC-USD"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, RealKey]]:
    dev = DevStack(tmp_path_factory.mktemp("governor-coinbase"), extra_config=CONFIG)
    key = new_real_key("ec", exchange="coinbase")
    try:
        dev.serve_account("coinbase", key)
        yield dev, key
    finally:
        dev.close()


def refused_by_exchange(dev: DevStack) -> int:
    return int(limits(dev)["refused"]["coinbase"]["429"])


def bot(credentials: dict[str, Any], base_url: str) -> Any:
    """A ccxt coinbase client with a bot's virtual credentials (a JWT names its host: the real key's, signed for
    the emulator's loopback address, is refused there, so the direct checks read public data)."""
    return point_ccxt_at(ccxt.coinbase({"apiKey": credentials["api_key"], "secret": credentials["secret"],
                                        "enableRateLimit": False}), base_url)


def test_four_bots_reading_orders_never_make_coinbase_refuse(stack: tuple[DevStack, RealKey]) -> None:
    """Four bots reading their open orders as fast as they can share the account's 6 a second: Coinbase never
    refuses (that it would, at that rate, the last test shows: its 429 where keyproxy's budget had room)."""
    dev, _ = stack
    bots = [bot(dev.add_bot(f"cb-hammer{i}", "coinbase", "read"), dev.proxy_url + "/coinbase") for i in range(4)]
    bots[0].load_markets()  # once, before the limits: a market list is several requests and the bots share it
    for b in bots[1:]:
        b.set_markets(bots[0].markets, bots[0].currencies)
    limits(dev, coinbase_per_s={"private": PRIVATE, "public": PUBLIC})
    time.sleep(1.1)  # the market list's requests out of keyproxy's window
    before = refused_by_exchange(dev)
    tally = hammer(bots, lambda b: b.fetch_open_orders(), 3.0)
    assert refused_by_exchange(dev) == before, f"Coinbase had to refuse: {limits(dev)['refused']['coinbase']}"
    assert tally["ok"] > 0 and tally["limited"] > 0 and tally["errors"] == 0, tally  # reached, and told locally
    assert "budget_exhausted" in tally["first_limited"] and "PRIVATE_REQUESTS" in tally["first_limited"], tally
    assert tally["ok"] <= 3.0 * PRIVATE + PRIVATE, tally  # the account's second, however many bots ask
    assert 'keyproxy_exchange_budget_refusals_total{bot="cb-hammer' in dev.metrics()

    limits(dev, coinbase_per_s={})


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_unsigned_market_reads_share_the_ips_public_budget(stack: tuple[DevStack, RealKey]) -> None:
    """Public market data (no credential) spends the IP's 10 a second (here 8): a flood is answered 429 by keyproxy,
    never by Coinbase; straight at the emulator the same flood is refused."""
    dev, _ = stack
    limits(dev, coinbase_per_s={"public": PUBLIC})
    time.sleep(1.1)
    before = refused_by_exchange(dev)
    statuses = [_get(dev.proxy_url + "/coinbase" + PRODUCT) for _ in range(3 * PUBLIC)]
    assert statuses.count(200) >= PUBLIC // 2 and statuses.count(429) > 0, statuses
    assert set(statuses) == {200, 429}, statuses
    assert refused_by_exchange(dev) == before
    direct = [_get(dev.emulator_url + PRODUCT) for _ in range(3 * PUBLIC)]
    assert 429 in direct and refused_by_exchange(dev) > before
    limits(dev, coinbase_per_s={})


def test_a_coinbase_429_holds_the_budget_for_a_second_not_a_minute(stack: tuple[DevStack, RealKey]) -> None:
    """Coinbase's windows are a second: its 429 (no Retry-After) holds the request's budgets for a second, where the
    default holds a 429 for a minute (a bot would have been refused for a minute by keyproxy alone)."""
    dev, _ = stack
    b = bot(dev.add_bot("cb-held", "coinbase", "read"), dev.proxy_url + "/coinbase")
    time.sleep(1.1)  # the earlier tests' public reads out of the window
    b.load_markets()
    time.sleep(1.1)
    limits(dev, coinbase_per_s={"private": 1})
    b.fetch_open_orders()
    start = len(dev.journal())
    with pytest.raises(ccxt.RateLimitExceeded):
        b.fetch_open_orders()  # Coinbase's own 429: keyproxy's budget (6) had room
    assert len(dev.journal()) == start + 1
    with pytest.raises(ccxt.RateLimitExceeded, match="budget_exhausted"):
        b.fetch_open_orders()  # held locally, nothing upstream
    assert len(dev.journal()) == start + 1
    limits(dev, coinbase_per_s={})
    time.sleep(1.2)
    assert isinstance(b.fetch_open_orders(), list)  # a second later it goes again


async def test_unauthenticated_socket_messages_share_the_ips_eight_a_second(stack: tuple[DevStack, RealKey]) -> None:
    """Coinbase: 8 unauthenticated WebSocket messages a second per IP (here 4, of which 3 for ordinary messages: the
    reserve; session 33's review: public frames went unmetered). A subscribe with no JWT past it is answered with
    Coinbase's error frame by keyproxy, unsent."""
    import json

    import aiohttp

    dev, _ = stack
    # a junk `jwt` (no bot's) neither escapes the charge nor gets one minted with the real key (the regression review)
    for extra in ({}, {"jwt": "x"}):
        time.sleep(1.1)
        start = len(dev.journal())
        async with aiohttp.ClientSession() as session, session.ws_connect(
                dev.proxy_url.replace("http", "ws") + "/coinbase") as ws:
            for _ in range(5):
                await ws.send_str(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "heartbeats",
                                              **extra}))
            answers = []
            while len([a for a in answers if a.get("channel") == "subscriptions" or a.get("type") == "error"]) < 5:
                answers.append(json.loads((await ws.receive(timeout=10)).data))
        refused = [a for a in answers if a.get("type") == "error"]
        assert len(refused) == 5 - 3 and all("budget_exhausted" in json.dumps(a) for a in refused), (extra, answers)
        assert all('"jwt"' not in str(e.get("body")) for e in dev.journal()[start:]), extra
