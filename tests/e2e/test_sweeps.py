"""A cancel-all and another bot's orders around it, through the real daemon to the emulator (proxy/sweeps.py).

The emulator holds chosen requests (`hold_before_containing`: before executing them, `hold_after_containing`: before
answering) so each race is won by the attacker every time without keyproxy's ordering; each test failed before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call, hmac_sign, now_ms

LIMIT = "side=BUY&type=LIMIT&timeInForce=GTC"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("sweeps"))
    try:
        stack.serve_account("main", new_real_key())
        yield stack
    finally:
        stack.close()


def send(creds: dict, method: str, path: str, params: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    ans = call(creds["base_url"], method, path, body=hmac_sign(creds["secret"], f"{params}&timestamp={now_ms()}"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    return ans.status, ans.body


def hold(dev: DevStack, **faults: object) -> None:
    requests.post(dev.emulator_url + "/_emulator/faults", json=faults, timeout=5).raise_for_status()


def resting(creds: dict, symbol: str) -> list[int]:  # type: ignore[type-arg]
    ans = call(creds["base_url"], "GET", "/api/v3/openOrders",
               query=hmac_sign(creds["secret"], f"symbol={symbol}&timestamp={now_ms()}"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    assert ans.status == 200, ans.body
    return [o["orderId"] for o in ans.body["list"]]


Call = tuple[dict, str, str, str]  # type: ignore[type-arg]  # (bot, method, path, params)


Answer = tuple[int, dict]  # type: ignore[type-arg]


def race(dev: DevStack, first: Call, second: Call, **faults: object) -> tuple[Answer, Answer, float]:
    """`first` sent, then `second` 0.5 s later while the emulator holds what `faults` name: both answers, and how
    long `second` took."""
    hold(dev, **faults)
    try:
        with ThreadPoolExecutor(1) as pool:
            earlier = pool.submit(send, *first)
            time.sleep(0.5)
            started = time.monotonic()
            later = send(*second)
            took = time.monotonic() - started
            return earlier.result(timeout=30), later, took
    finally:
        hold(dev)


@pytest.mark.parametrize("name, cancel", [
    ("all", ("/api/v3/openOrders", "symbol=LTCBTC")),
    # session 22's second review: client ids are recorded from answers, so this cancel found no owner on record
    ("cid", ("/api/v3/order", "symbol=LTCBTC&origClientOrderId=sw-on-its-way-cid")),
])
def test_a_cancel_waits_for_another_bots_order_on_its_way_and_is_refused_once_it_rests(
        dev: DevStack, name: str, cancel: tuple[str, str]) -> None:
    """The victim's order is executed at once but answered 1.5 s later; the attacker's cancel-all (or cancel by the
    order's client id) sent meanwhile used to pass (nothing of the victim's rested yet, as far as keyproxy knew) and
    cancel it. It now waits for the victim's answer, and is refused."""
    victim = dev.add_bot(f"sw-victim-{name}", "main", "read,trade")
    attacker = dev.add_bot(f"sw-attacker-{name}", "main", "read,trade")
    placed, (status, body), waited = race(  # the victim's order executed at the exchange, its answer held
        dev, (victim, "POST", "/api/v3/order",
              f"symbol=LTCBTC&{LIMIT}&quantity=1&price=0.001&newClientOrderId=sw-on-its-way-{name}"),
        (attacker, "DELETE", *cancel), hold_after_containing=[f"newClientOrderId=sw-on-its-way-{name}"],
        hold_seconds=1.5)
    assert placed[0] == 200, placed
    assert body.get("error") == "policy_denied" and "cancel" in body["message"], body
    assert waited >= 0.7  # it waited for the victim's answer
    assert resting(victim, "LTCBTC") == [placed[1]["orderId"]]  # the victim's order still rests
    assert send(victim, "DELETE", "/api/v3/order", f"symbol=LTCBTC&orderId={placed[1]['orderId']}")[0] == 200


def test_another_bots_order_waits_while_a_cancel_all_is_on_its_way(dev: DevStack) -> None:
    """The attacker's cancel-all reaches the exchange 1.5 s after it is sent; the victim's order sent meanwhile used
    to go at once, rest, and be cancelled by it. It now goes once the cancel-all's answer is read."""
    victim = dev.add_bot("sw-victim2", "main", "read,trade")
    attacker = dev.add_bot("sw-attacker2", "main", "read,trade")
    swept, (status, body), _ = race(dev, (attacker, "DELETE", "/api/v3/openOrders", "symbol=ETHBTC"),
                                    (victim, "POST", "/api/v3/order", f"symbol=ETHBTC&{LIMIT}&quantity=1&price=0.01"),
                                    hold_before_containing=["symbol=ETHBTC&timestamp"], hold_seconds=1.5)
    assert status == 200, body
    assert swept[1].get("code") == -2011, swept  # passed (nothing of another bot's rested), found nothing to cancel
    assert resting(victim, "ETHBTC") == [body["orderId"]]  # the order went after the cancel-all: it rests


def test_orders_of_the_same_bot_and_of_other_symbols_do_not_wait(dev: DevStack) -> None:
    """Only another bot's order in the cancel-all's scope waits: the sweeper's own, and orders elsewhere, go."""
    sweeper = dev.add_bot("sw-own", "main", "read,trade")
    other = dev.add_bot("sw-elsewhere", "main", "read,trade")
    swept, (status, body), elsewhere = race(  # the cancel-all: Binance's -2011 when nothing rested, never a refusal
        dev, (sweeper, "DELETE", "/api/v3/openOrders", "symbol=BTCUSDT"),
        (other, "POST", "/api/v3/order", f"symbol=ETHUSDT&{LIMIT}&quantity=0.01&price=1000"),
        hold_before_containing=["symbol=BTCUSDT&timestamp"], hold_seconds=1.5)
    assert status == 200 and elsewhere < 0.5, (body, elsewhere)
    assert "error" not in swept[1] or swept[1].get("code") == -2011, swept


def test_an_order_whose_socket_closed_holds_no_cancel_all_back(dev: DevStack) -> None:
    """Session 22's second review: an order frame sent on the WebSocket API with the socket closed right behind it
    stayed "on its way" for 60 s (its answer never read); a neighbour's cancel-all waited for it, expired its own
    wait entry, and ended after 48 s in internal_error. Such an order still counts against its bot's caps, but
    nothing waits for an answer that cannot come."""
    import asyncio
    import hashlib
    import hmac
    import json

    import aiohttp

    victim = dev.add_bot("sw-close-victim", "main", "read,trade")
    attacker = dev.add_bot("sw-close-attacker", "main", "read,trade")
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.001",
              "price": "20000", "apiKey": attacker["api_key"], "timestamp": now_ms()}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(attacker["secret"].encode(), payload.encode(), hashlib.sha256).hexdigest()

    async def send_then_close() -> None:
        url = attacker["base_url"].replace("http://", "ws://") + "/ws-api/v3"
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url)
            await ws.send_str(json.dumps({"id": "a1", "method": "order.place", "params": params}))
            await ws.close()

    hold(dev, hold_after_containing=['"id":"a1"', "IOC"], hold_seconds=2.0)  # its answer comes after the close
    try:
        asyncio.run(send_then_close())
        time.sleep(0.3)
        started = time.monotonic()
        status, body = send(victim, "DELETE", "/api/v3/openOrders", "symbol=BTCUSDT")
        took = time.monotonic() - started
    finally:
        hold(dev)
    assert status != 500 and body.get("error") != "internal_error", body
    assert took < 3.0, took  # at most until the attacker's socket closed, never its order's 60 s


def test_a_cancel_of_a_guessed_order_id_sent_before_the_order_cannot_cancel_it(dev: DevStack) -> None:
    """Session 22's third review: a cancel naming the next order id (Binance's ids are sequential) or a client id
    another bot will use, decided before that bot's order existed, held nothing back: the order, sent after it, could
    be executed first and cancelled by it. Such a cancel now holds the other bots' orders in its scope until its
    answer is read, as a cancel-all does."""
    victim = dev.add_bot("sw-guess-victim", "main", "read,trade")
    attacker = dev.add_bot("sw-guess-attacker", "main", "read,trade")
    status, own = send(attacker, "POST", "/api/v3/order", f"symbol=LTCBTC&{LIMIT}&quantity=1&price=0.001")
    assert status == 200, own
    guess = own["orderId"] + 1
    for cancel, client_id in ((f"orderId={guess}", "sw-guess-1"), ("origClientOrderId=sw-guess-2", "sw-guess-2")):
        cancelled, (status, placed), _ = race(
            dev, (attacker, "DELETE", "/api/v3/order", f"symbol=LTCBTC&{cancel}"),
            (victim, "POST", "/api/v3/order",
             f"symbol=LTCBTC&{LIMIT}&quantity=1&price=0.0012&newClientOrderId={client_id}"),
            hold_before_containing=[f"{cancel}&"], hold_seconds=1.0)
        assert status == 200, placed
        assert cancelled[1].get("code") == -2011, cancelled  # reached the exchange first: found nothing
        assert placed["orderId"] in resting(victim, "LTCBTC")


def test_an_order_whose_bot_closed_its_socket_at_once_is_still_learned(dev: DevStack) -> None:
    """Session 23's review (high): a bot that closed its WebSocket right after an order frame had the exchange's
    socket closed with it, the answer thrown away: the order rested unlearned, counted on its way for 60 s, then
    belonged to no one (past max_open_orders and max_position, a cap's worth a minute; and any bot could cancel
    it). The answers to a gone bot's frames are now still read and learned (websocket.py `_drain`)."""
    import asyncio
    import hashlib
    import hmac
    import json

    import aiohttp

    closer = dev.add_bot("sw-closer", "main", "read,trade")
    neighbour = dev.add_bot("sw-closer-neighbour", "main", "read,trade")
    params = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
              "price": "0.0011", "newClientOrderId": "sw-closed-1", "apiKey": closer["api_key"], "timestamp": now_ms()}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(closer["secret"].encode(), payload.encode(), hashlib.sha256).hexdigest()

    async def send_then_close() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(closer["base_url"].replace("http://", "ws://") + "/ws-api/v3")
            await ws.send_str(json.dumps({"id": "c1", "method": "order.place", "params": params}))
            await ws.close()  # never reads the answer

    hold(dev, hold_after_containing=["sw-closed-1"], hold_seconds=1.0)  # the order rests; its answer comes late
    try:
        asyncio.run(send_then_close())
        time.sleep(1.8)
    finally:
        hold(dev)
    listed = call(neighbour["base_url"], "GET", "/api/v3/openOrders",
                  query=hmac_sign(neighbour["secret"], f"symbol=LTCBTC&timestamp={now_ms()}"),
                  headers={"X-MBX-APIKEY": neighbour["api_key"]}).body
    [oid] = [o["orderId"] for o in listed["list"] if o.get("clientOrderId") == "sw-closed-1"]
    status, body = send(neighbour, "DELETE", "/api/v3/order", f"symbol=LTCBTC&orderId={oid}")
    assert body.get("error") == "policy_denied", body  # its owner is known: learned from the answer
    status, body = send(closer, "DELETE", "/api/v3/order", f"symbol=LTCBTC&orderId={oid}")
    assert status == 200 and body["status"] == "CANCELED", body
