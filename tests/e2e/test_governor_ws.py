"""Binance's WebSocket API answers teach the governor what they say (issue 19, session review): each answer's
`rateLimits` count corrects keyproxy's shared meter as REST's `X-MBX-USED-WEIGHT-1M` does, and a 418/429 answer
holds the IP's budget until its `retryAfter` for every bot and both transports. The emulator's WebSocket API
shares its REST weight and answers as web-socket-api.md says (emulator/binance_ws.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at
from tests.e2e.test_governor import limits
from tests.e2e.test_websocket_binance import exchange, signed, ws_url

ccxt = pytest.importorskip("ccxt")
LIMIT = 400
CONFIG = f'[governor]\nreserve = 0.1\n[governor.limits]\n"binance.REQUEST_WEIGHT" = {LIMIT}\n'


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("governor-ws"), extra_config=CONFIG)
    try:
        stack.serve_account("main", new_real_key("hmac", balances={"USDT": "1000"}))
        yield stack
    finally:
        stack.close()


def _rest_bot(creds: dict[str, str]) -> Any:
    return point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                       "enableRateLimit": False, "options": {"defaultType": "spot"}}),
                         creds["base_url"])


async def test_a_418_answered_on_the_socket_holds_the_ip_budget_for_rest_too(dev: DevStack) -> None:
    creds = dev.add_bot("ws-banned", "main", "read")
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(creds)) as ws:
        limits(dev, ban_now=3)
        start = len(dev.journal())
        await ws.send_str(json.dumps(signed(creds, "account.status", {}, "b1")))
        banned = json.loads((await ws.receive(timeout=10)).data)
        assert banned["status"] == 418 and banned["error"]["code"] == -1003  # relayed as the exchange said it
        with pytest.raises(ccxt.DDoSProtection, match="budget_exhausted"):
            _rest_bot(creds).publicGetTime()  # held by keyproxy: never sent
        await ws.send_str(json.dumps(signed(creds, "account.status", {}, "b2")))
        held = json.loads((await ws.receive(timeout=10)).data)
        assert held["keyproxy_error"] == "budget_exhausted"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # a new socket (weight 2) waits too
            await exchange(ws_url(creds), {"id": "t0", "method": "time", "params": {}})
        assert refused.value.status == 429
        sent = [e for e in dev.journal()[start:] if e.get("transport") == "ws" or e["path"].startswith("/api/")]
        assert len(sent) == 1  # only the first frame reached the exchange
    time.sleep(3.2)
    assert _rest_bot(creds).publicGetTime()["serverTime"] > 0  # then traffic resumes


async def test_the_count_in_a_socket_answer_corrects_the_shared_meter(dev: DevStack) -> None:
    """Weight keyproxy did not send (another program on the host) shows in the next WebSocket answer's
    `rateLimits`: keyproxy believes it, and stops its bots before the exchange would."""
    if time.time() % 60 > 40:  # the exchange's and keyproxy's minutes are calendar minutes: stay in one
        time.sleep(61 - time.time() % 60)
    creds = dev.add_bot("ws-counted", "main", "read")
    for _ in range(19):  # 380 of the 400 (keyproxy keeps 40 for the way out), straight to the exchange
        with urllib.request.urlopen(f"{dev.emulator_url}/api/v3/exchangeInfo", timeout=10) as r:
            r.read()
    [answer] = await exchange(ws_url(creds), {"id": "t1", "method": "time", "params": {}})
    weight = next(e for e in answer["rateLimits"] if e["rateLimitType"] == "REQUEST_WEIGHT")
    assert answer["status"] == 200 and weight["count"] >= 381
    with pytest.raises(ccxt.DDoSProtection, match="budget_exhausted"):
        _rest_bot(creds).publicGetTime()
