"""OKX algo orders (stops, take-profits, trigger orders: `POST /api/v5/trade/order-algo`) through keyproxy.

ccxt sends every OKX order with `stopLossPrice`, `takeProfitPrice` or `triggerPrice` there, and freqtrade's stoploss
on exchange with it. keyproxy reads a stop as the order it becomes: valued at its trigger, counted under
max_open_orders (a place freed when it is cancelled, or when keyproxy's own listing no longer shows it: triggered),
attributed to the bot by its algoId, cancelled only by its owner and swept by a halt; the order a triggered spot stop
becomes is the bot's. Unmodified ccxt against the emulator.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at

SYMBOL = "BTC/USDT"
STOP = {"stopLossPrice": 50000, "tdMode": "cash"}  # what freqtrade's spot stoploss sends, in ccxt's words


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("algo-okx"))
    try:
        stack.serve_account("okx", new_real_key(exchange="okx"))
        yield stack
    finally:
        stack.close()


def okx(creds: dict[str, Any]) -> ccxt.okx:
    ex = point_ccxt_at(ccxt.okx({"apiKey": creds["api_key"], "secret": creds["secret"],
                                 "password": creds["passphrase"]}), creds["base_url"])
    ex.load_markets()
    return ex


def emulated(dev: DevStack) -> dict[str, Any]:
    with urllib.request.urlopen(f"{dev.emulator_url}/_emulator/state", timeout=10) as r:
        state: dict[str, Any] = json.loads(r.read())
    return next(iter(state["okx"].values()))


def algo_state(dev: DevStack, algo_id: str) -> str:
    return next(str(o["state"]) for o in emulated(dev)["algo_orders"] if o["algoId"] == algo_id)


def set_price(dev: DevStack, price: str, inst: str = "BTC-USDT") -> list[str]:
    req = urllib.request.Request(f"{dev.emulator_url}/_emulator/price", method="POST", data=json.dumps(
        {"exchange": "okx", "symbol": inst, "price": price}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        fired: list[str] = json.loads(r.read())["filled"]
    return fired


def refused(action: object, code: str) -> None:
    with pytest.raises(ccxt.BaseError) as err:
        action()  # type: ignore[operator]
    assert code in str(err.value), err.value


def test_ccxts_stops_are_valued_counted_and_cancelled_by_their_owner(dev: DevStack) -> None:
    ex = okx(dev.add_bot("stops", "okx", "read,trade", "--set", "symbols=BTC/USDT", "--set",
                         "max_order_notional=30000", "--set", "max_open_orders=2"))
    start = len(dev.journal())
    first = ex.create_order(SYMBOL, "market", "sell", 0.5, None, STOP)
    sent = [e for e in dev.journal()[start:] if e["method"] == "POST"]
    assert [(e["path"], e["signature_verified"], e["status"]) for e in sent] == [
        ("/api/v5/trade/order-algo", True, 200)]
    assert algo_state(dev, first["id"]) == "live"
    start = len(dev.journal())
    # valued at its trigger: 1 BTC stopped at 50,000 is over the 30,000 cap; another symbol is not the bot's
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 1, None, STOP), "notional")
    refused(lambda: ex.create_order("ETH/USDT", "market", "sell", 1, None, {**STOP, "stopLossPrice": 2000}),
            "symbol")
    # ccxt's own default trade mode for a spot stop is cross: a margin order, which may borrow (the transfer scope)
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 0.1, None, {"stopLossPrice": 50000}), "transfer scope")
    # a stop-limit, once triggered, rests as an order of its own no answer counts: refused under max_open_orders
    refused(lambda: ex.create_order(SYMBOL, "limit", "sell", 0.1, 49000, STOP), "conditional limit order")
    assert [e for e in dev.journal()[start:] if e["method"] == "POST"] == []
    second = ex.create_order(SYMBOL, "market", "sell", 0.1, None, {"takeProfitPrice": 70000, "tdMode": "cash"})
    # the bot's own listing (ccxt writes `conditional%2Coco`), signed and sent as written
    listed = ex.fetch_open_orders(SYMBOL, None, None, {"stop": True, "ordType": "conditional,oco"})
    assert {o["id"] for o in listed} == {first["id"], second["id"]}
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 0.1, None, STOP), "open orders")
    ex.cancel_order(first["id"], SYMBOL, {"stop": True})  # its place is free again
    assert algo_state(dev, first["id"]) == "canceled"
    third = ex.create_order(SYMBOL, "market", "sell", 0.1, None, STOP)
    for done in (second, third):
        ex.cancel_order(done["id"], SYMBOL, {"stop": True})


def test_another_bot_cannot_cancel_a_stop_and_a_halt_sweeps_only_the_halted_bots(dev: DevStack) -> None:
    halted = okx(dev.add_bot("stop-halted", "okx", "read,trade"))
    kept = okx(dev.add_bot("stop-kept", "okx", "read,trade"))
    mine = [halted.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)["id"] for _ in range(2)]
    mine.append(halted.create_order(SYMBOL, "market", "buy", 0.01, None, {"triggerPrice": 70000})["id"])
    theirs = kept.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)["id"]
    start = len(dev.journal())
    refused(lambda: kept.cancel_order(mine[0], SYMBOL, {"stop": True}), "placed by another bot")
    assert [e for e in dev.journal()[start:] if e["path"] == "/api/v5/trade/cancel-algos"] == []
    proc = dev.cli("halt", "--bot", "stop-halted", "--cancel-orders", "--json", "--reason", "test", check=False)
    done = json.loads(proc.stdout)
    swept = {o["order_id"] for entry in done["accounts"] for o in entry["cancelled"]}
    assert swept == {f"algo#{i}" for i in mine}, done
    assert [algo_state(dev, i) for i in mine] == ["canceled"] * 3
    assert algo_state(dev, theirs) == "live"
    kept.cancel_order(theirs, SYMBOL, {"stop": True})
    dev.cli("resume", "--bot", "stop-halted")


def test_a_triggered_stop_frees_its_place_and_what_it_became_is_the_bots(dev: DevStack) -> None:
    """A stop that triggered ends in no answer to its bot: keyproxy's own listing of the account's algo orders (each
    minute, and at start) frees its place. The order a stop-limit became rests as its bot's: another bot's cancel
    of it is refused once keyproxy has read what the stop became (the bot's read of it, or keyproxy's own)."""
    old = dev.proxy_url
    creds = dev.add_bot("stop-fired", "okx", "read,trade", "--set", "max_open_orders=1")
    bounded = okx(creds)
    bounded.create_order(SYMBOL, "market", "sell", 0.01, None, {**STOP, "stopLossPrice": 59000})
    free_creds = dev.add_bot("stop-limit", "okx", "read,trade")
    free = okx(free_creds)
    stop = free.create_order(SYMBOL, "limit", "sell", 0.01, 59500, {**STOP, "stopLossPrice": 59000})
    try:
        assert len(set_price(dev, "58000")) == 2  # both fire: a market sell fills, a limit sell at 59,500 rests
        [child] = next(o["ordIdList"] for o in emulated(dev)["algo_orders"] if o["algoId"] == stop["id"])
        refused(lambda: bounded.create_order(SYMBOL, "market", "sell", 0.01, None, STOP), "open orders")
        assert free.fetch_order(stop["id"], SYMBOL, {"stop": True})["status"] == "closed"  # triggered
        refused(lambda: bounded.cancel_order(child, SYMBOL), "placed by another bot")
        dev.stop_daemon()
        dev.start_daemon()  # the risk watch's first pass lists the algo orders: the fired one is not among them
        bounded = okx({**creds, "base_url": creds["base_url"].replace(old, dev.proxy_url)})
        again = bounded.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)
        bounded.cancel_order(again["id"], SYMBOL, {"stop": True})
        refused(lambda: bounded.cancel_order(child, SYMBOL), "placed by another bot")
        okx({**free_creds, "base_url": free_creds["base_url"].replace(old, dev.proxy_url)}).cancel_order(child, SYMBOL)
    finally:
        set_price(dev, "60000")


def test_what_a_swap_stop_became_is_its_bots_whether_keyproxy_read_it_or_not(dev: DevStack) -> None:
    """The positions book holds no swap order (their fills are not read), so what a swap stop-limit became was
    nobody's: any bot could cancel it, a halt of its bot missed it. Now the stop's read (the bot's or keyproxy's)
    puts it on record as the bot's, and a halt's sweep knows an unread one by the `algoId` OKX lists it with."""
    swap = "BTC/USDT:USDT"
    owner = okx(dev.add_bot("swap-stop", "okx", "read,trade"))
    other = okx(dev.add_bot("swap-other", "okx", "read,trade"))
    stops = [owner.create_order(swap, "limit", "sell", 1, 59500, {"stopLossPrice": 59000})["id"] for _ in range(3)]
    try:
        assert len(set_price(dev, "58000", "BTC-USDT-SWAP")) == 3  # all fire: each a limit sell at 59,500 rests
        children = [next(o["ordIdList"][0] for o in emulated(dev)["algo_orders"] if o["algoId"] == i) for i in stops]
        assert owner.fetch_order(stops[0], swap, {"stop": True})["status"] == "closed"
        refused(lambda: other.cancel_order(children[0], swap), "placed by another bot")
        # the other bot lists the account's orders to find one nobody read yet: the listing names its stop
        assert children[1] in {o["info"]["ordId"] for o in other.fetch_open_orders(swap)}
        refused(lambda: other.cancel_order(children[1], swap), "placed by another bot")
        proc = dev.cli("halt", "--bot", "swap-stop", "--cancel-orders", "--json", "--reason", "test", check=False)
        swept = {o["order_id"] for entry in json.loads(proc.stdout)["accounts"] for o in entry["cancelled"]}
        assert set(children) <= swept, proc.stdout  # those read, and the one keyproxy had not read
        states = {o["ordId"]: o["state"] for o in emulated(dev)["orders"]}
        assert [states[c] for c in children] == ["canceled"] * 3
    finally:
        dev.cli("resume", "--bot", "swap-stop", check=False)
        set_price(dev, "60000", "BTC-USDT-SWAP")


@pytest.mark.parametrize(("symbol", "inst"), [(SYMBOL, "BTC-USDT"), ("BTC/USDT:USDT", "BTC-USDT-SWAP")])
def test_what_a_stop_became_is_its_bots_before_anything_read_it(dev: DevStack, symbol: str, inst: str) -> None:
    """Nothing has read what the stop became, so no owner is on record for its ordId: another bot's cancel by that
    id (guessed) went through as a cancel of an order placed outside keyproxy (session 31). keyproxy asks OKX first
    (the order, or the account's pending orders): OKX names the algo order it came from, the stop's bot's."""
    owner = okx(dev.add_bot(f"unread-{inst.lower()}", "okx", "read,trade"))
    other = okx(dev.add_bot(f"unread-other-{inst.lower()}", "okx", "read,trade"))
    spot = symbol == SYMBOL
    stop = owner.create_order(symbol, "limit", "sell", 0.01 if spot else 1, 59500,
                              {**(STOP if spot else {}), "stopLossPrice": 59000})
    try:
        assert len(set_price(dev, "58000", inst)) == 1  # fired: a limit sell at 59,500 rests
        [child] = next(o["ordIdList"] for o in emulated(dev)["algo_orders"] if o["algoId"] == stop["id"])
        start = len(dev.journal())
        refused(lambda: other.cancel_order(child, symbol), "placed by another bot")
        asked = [e["path"] for e in dev.journal()[start:]]
        # a spot order asked about by its id; a swap's, by the account's pending orders (no query by id for swaps)
        assert ("/api/v5/trade/order" if spot else "/api/v5/trade/orders-pending") in asked, asked
        assert "/api/v5/trade/cancel-order" not in asked, asked
        owner.cancel_order(child, symbol)
    finally:
        set_price(dev, "60000", inst)


async def test_a_socket_cancel_or_a_batch_across_markets_reaches_no_unread_stop_order(dev: DevStack) -> None:
    """The same guessed ordId, sent as a `cancel-order` frame on the private socket (the socket's dialect said no
    stop becomes an order there) or as the second leg of a REST `cancel-batch-orders` whose first leg names an
    option (the batch's scope): keyproxy asks OKX first either way, and the stop's bot's order stays."""
    import aiohttp

    from tests.e2e.test_websocket_okx import login, url

    owner = okx(dev.add_bot("unread-socket-owner", "okx", "read,trade"))
    creds = dev.add_bot("unread-socket-other", "okx", "read,trade")
    stop = owner.create_order(SYMBOL, "limit", "sell", 0.01, 59500, {**STOP, "stopLossPrice": 59000})
    try:
        assert len(set_price(dev, "58000")) == 1  # fired: a limit sell at 59,500 rests
        [child] = next(o["ordIdList"] for o in emulated(dev)["algo_orders"] if o["algoId"] == stop["id"])
        async with aiohttp.ClientSession() as s, s.ws_connect(url(creds)) as ws:
            await ws.send_str(json.dumps(login(creds)))
            assert json.loads((await ws.receive(timeout=10)).data)["code"] == "0"
            await ws.send_str(json.dumps({"id": "1", "op": "cancel-order",
                                          "args": [{"instId": "BTC-USDT", "ordId": child}]}))
            answer = json.loads((await ws.receive(timeout=10)).data)
        assert answer.get("keyproxy_error") == "policy_denied" and "another bot" in json.dumps(answer), answer
        other = okx(creds)
        batch = [{"instId": "BTC-USD-250328-60000-C", "ordId": "1"}, {"instId": "BTC-USDT-SWAP", "ordId": child}]
        with pytest.raises(ccxt.BaseError) as err:
            other.privatePostTradeCancelBatchOrders(batch)  # type: ignore[attr-defined]
        assert "placed by another bot" in str(err.value), err.value
        states = {o["ordId"]: o["state"] for o in emulated(dev)["orders"]}
        assert states[child] == "live"
        owner.cancel_order(child, SYMBOL)
    finally:
        set_price(dev, "60000")
