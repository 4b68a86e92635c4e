"""Binance's `/sapi/` budgets (session 36's review): `/sapi/`, `/papi/`, `/eapi/` and other paths spent no budget, so
a bot looped a heavy wallet read past the exchange's limit and keyproxy, never charged, never held on its 429s.
Each `/sapi/` endpoint has its own 12,000 a minute per IP (X-SAPI-USED-IP-WEIGHT-1M); the emulator enforces it,
scaled down, per endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call, hmac_sign, now_ms
from tests.e2e.test_governor import limits

SAPI_LIMIT = 25  # the emulator's, per endpoint: getall weighs 10, so the third in a minute is over it


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("governor-sapi"))
    try:
        stack.serve_account("main", new_real_key("hmac"))
        yield stack
    finally:
        stack.close()


def test_the_exchanges_429_on_a_sapi_endpoint_holds_it_and_only_it(dev: DevStack) -> None:
    """keyproxy's table is not the exchange's count (another program on the host spends the same IP's weight):
    the exchange's 429 on an endpoint holds that endpoint's budget, so the bot's next requests are refused locally
    (never sent on into the exchange's limit), while the account's other endpoints still go."""
    creds = dev.add_bot("sapi-reader", "main", "read")
    limits(dev, binance_sapi_weight_per_minute=SAPI_LIMIT)
    if time.time() % 60 > 50:  # the emulator counts calendar minutes: all four requests in one
        time.sleep(61 - time.time() % 60)

    def getall() -> Any:
        q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
        return call(creds["base_url"], "GET", "/sapi/v1/capital/config/getall", q,
                    headers={"X-MBX-APIKEY": creds["api_key"]})

    start = len(dev.journal())
    assert [getall().status for _ in range(2)] == [200, 200]
    over = getall()
    assert over.status == 429 and over.body["code"] == -1003  # the exchange's own refusal, relayed
    held = getall()
    assert held.status == 429 and held.body["error"] == "budget_exhausted"  # keyproxy's: nothing sent
    assert "SAPI_IP_WEIGHT" in held.body["msg"]
    sent = [e for e in dev.journal()[start:] if e["path"] == "/sapi/v1/capital/config/getall"]
    assert len(sent) == 3 and limits(dev)["sapi_answered_429"] == 1
    q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
    assert call(creds["base_url"], "GET", "/sapi/v1/margin/allPairs", q,
                headers={"X-MBX-APIKEY": creds["api_key"]}).status == 200  # another endpoint: its own budget
    assert call(creds["base_url"], "GET", "/api/v3/time").status == 200  # and the spot weight


def test_every_binance_path_spends_a_budget() -> None:
    from keyproxy.exchanges.binance_budget import (
        EAPI_WEIGHT, OTHER_WEIGHT, PAPI_WEIGHT, SAPI_WEIGHT, binance_costs,
    )

    assert binance_costs("GET", "/sapi/v1/accountSnapshot", "type=SPOT") == ((SAPI_WEIGHT, 2400),)
    assert binance_costs("GET", "/sapi/v1/margin/allPairs", "") == ((SAPI_WEIGHT, 1),)
    assert binance_costs("POST", "/papi/v1/um/order", "") == ((PAPI_WEIGHT, 1),)
    assert binance_costs("GET", "/eapi/v1/account", "") == ((EAPI_WEIGHT, 1),)
    assert binance_costs("GET", "/futures/data/openInterestHist", "") == ((OTHER_WEIGHT, 1),)
