"""Binance futures conditional orders (the Algo Service, `POST /fapi/v1/algoOrder`) through keyproxy.

Since December 2025 ccxt sends every futures stop, take-profit and trailing order there (and freqtrade's stoploss on
exchange with it). keyproxy reads them as the orders they become: valued by their trigger, counted under
max_open_orders, attributed to the bot by their algoId and client id (the account's ids: a cancel names no symbol),
cancelled only by their owner and swept by a halt, counted as resting orders against a position cap; the order a
triggered one becomes is the bot's, followed in the positions book. Unmodified ccxt against the emulator,
and raw signed requests for what ccxt would not send.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import ccxt
import pytest

from keyproxy.emulator.devstack import DevStack, point_ccxt_at
from tests.e2e.conftest import call, hmac_sign, now_ms, one_account_stack

SYMBOL = "BTC/USDT:USDT"
STOP = {"stopLossPrice": 19000, "reduceOnly": True}  # what freqtrade's stoploss sends, in ccxt's words


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    yield from one_account_stack(tmp_path_factory, "algo-binance", enableReading=True, enableFutures=True)


def futures(creds: dict) -> ccxt.binance:  # type: ignore[type-arg]
    ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"]}), creds["base_url"])
    ex.load_markets()
    return ex


def send(dev: DevStack, creds: dict, method: str, path: str, params: str) -> tuple[int, dict, list]:  # type: ignore[type-arg]
    start = len(dev.journal())
    ans = call(creds["base_url"], method, path, body=hmac_sign(creds["secret"], f"{params}&timestamp={now_ms()}"),
               headers={"X-MBX-APIKEY": creds["api_key"]})
    return ans.status, ans.body, [e for e in dev.journal()[start:] if e["path"] == path]


def algo_status(dev: DevStack, algo_id: str) -> str:
    with urllib.request.urlopen(f"{dev.emulator_url}/_emulator/state", timeout=10) as r:
        state = json.loads(r.read())  # the emulator's own view
    for account in state["binance"].values():
        for order in account.get("algo_orders", []):
            if str(order["algoId"]) == algo_id:
                return str(order["algoStatus"])
    raise AssertionError(f"no algo order {algo_id}")


def refused(action: object, code: str) -> None:
    with pytest.raises(ccxt.BaseError) as err:
        action()  # type: ignore[operator]
    assert code in str(err.value), err.value


def test_ccxts_stop_orders_are_valued_counted_and_cancelled_by_their_owner(dev: DevStack) -> None:
    creds = dev.add_bot("stops", "main", "read,trade", "--set", "symbols=BTC/USDT", "--set",
                        "max_order_notional=5000", "--set", "max_open_orders=2")
    ex = futures(creds)
    start = len(dev.journal())
    first = ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)
    sent = [e for e in dev.journal()[start:] if e["method"] == "POST"]
    assert [(e["path"], e["signature_verified"], e["status"]) for e in sent] == [("/fapi/v1/algoOrder", True, 200)]
    assert "triggerPrice=19000" in sent[0]["body"] and "clientAlgoId=" in sent[0]["body"]
    # valued at its trigger: 1 BTC stopped at 19,000 is over the 5,000 cap, and nothing is sent
    start = len(dev.journal())
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 1, None, STOP), "notional_exceeded")
    status, body, arrived = send(dev, creds, "POST", "/fapi/v1/algoOrder", "algoType=CONDITIONAL&symbol=ETHUSDT"
                                 "&side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=1000&reduceOnly=true")
    assert (status, body.get("error"), arrived) == (403, "symbol_denied", []), body
    # a limit stop, once triggered, rests as an order keyproxy does not follow: uncountable under max_open_orders
    refused(lambda: ex.create_order(SYMBOL, "limit", "sell", 0.01, 18900, STOP), "a conditional limit order rests")
    second = ex.create_order(SYMBOL, "market", "sell", 0.01, None, {"takeProfitPrice": 21000, "reduceOnly": True})
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP), "open_orders_exceeded")
    assert [e["path"] for e in dev.journal()[start:] if e["method"] == "POST"] == ["/fapi/v1/algoOrder"]
    # the owner's cancel passes and frees its place; naming another symbol than the order's frees no more than one
    status, body, _ = send(dev, creds, "DELETE", "/fapi/v1/algoOrder", f"algoId={first['id']}&symbol=ETHUSDT")
    assert status == 200, body
    assert algo_status(dev, first["id"]) == "CANCELED"
    third = ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)
    refused(lambda: ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP), "open_orders_exceeded")
    for placed in (second, third):
        ex.cancel_order(placed["id"], SYMBOL, {"trigger": True})


def test_another_bot_cannot_cancel_a_stop_by_its_algo_id_or_client_id_whatever_symbol_it_names(
        dev: DevStack) -> None:
    """An algo order's ids are the account's and Binance's cancel reads no symbol: naming another symbol than the
    stop's must not make it look like nobody's."""
    owner = futures(dev.add_bot("stop-owner", "main", "read,trade"))
    placed = owner.create_order(SYMBOL, "market", "sell", 0.01, None, {**STOP, "clientOrderId": "owner-stop-1"})
    other = dev.add_bot("stop-thief", "main", "read,trade")
    for params in (f"algoId={placed['id']}&symbol=ETHUSDT", f"algoId={placed['id']}", f"algoId=000{placed['id']}",
                   "clientAlgoId=owner-stop-1&symbol=ETHUSDT", "clientAlgoId=owner-stop-1"):
        status, body, arrived = send(dev, other, "DELETE", "/fapi/v1/algoOrder", params)
        assert (status, body.get("error"), arrived) == (403, "policy_denied", []), (params, body)
    assert algo_status(dev, placed["id"]) == "NEW"
    owner.cancel_order(placed["id"], SYMBOL, {"trigger": True})


def set_futures_price(dev: DevStack, price: str) -> None:
    req = urllib.request.Request(f"{dev.emulator_url}/_emulator/price", method="POST", data=json.dumps(
        {"exchange": "binance", "symbol": "BTCUSDT", "price": price, "venue": "fapi"}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_a_stop_counts_against_the_position_cap_and_what_it_becomes_is_the_bots(dev: DevStack) -> None:
    """An untriggered stop that would open a position counts as a resting order of its size; triggered, the order
    it became (`actualOrderId`, read from the stop's own query) is the bot's: its fill moves the bot's position, a
    halt would sweep it and another bot cannot cancel it."""
    from tests.e2e.test_risk_positions import eventually, series

    creds = dev.add_bot("stop-capped", "main", "read,trade", "--set", "max_position=0.02", "--set",
                        "max_daily_loss=1000")
    ex = futures(creds)
    set_futures_price(dev, "20000")
    stop = ex.create_order(SYMBOL, "market", "buy", 0.015, None, {"stopPrice": 21000})  # a breakout buy
    start = len(dev.journal())
    refused(lambda: ex.create_order(SYMBOL, "market", "buy", 0.01, None, {"stopPrice": 21500}), "position_exceeded")
    refused(lambda: ex.create_order(SYMBOL, "limit", "buy", 0.01, 19000), "position_exceeded")
    assert [e for e in dev.journal()[start:] if e["method"] == "POST"] == []
    set_futures_price(dev, "21000")  # triggers it: a market buy of 0.015, filled at once
    seen = ex.fetch_order(stop["id"], SYMBOL, {"trigger": True})  # GET algoOrder names the order it became
    actual = seen["info"]["actualOrderId"]
    assert actual and seen["info"]["algoStatus"] == "FINISHED", seen["info"]
    ex.fetch_order(actual, SYMBOL)  # its fill, as freqtrade reads it next
    assert eventually(lambda: series(dev, "keyproxy_bot_position", bot="stop-capped", scope="usdm:BTCUSDT")
                      == 0.015, timeout=5)
    refused(lambda: ex.create_order(SYMBOL, "limit", "buy", 0.01, 19000), "position_exceeded")
    other = dev.add_bot("stop-bystander", "main", "read,trade")
    status, body, arrived = send(dev, other, "DELETE", "/fapi/v1/order", f"symbol=BTCUSDT&orderId={actual}")
    assert (status, body.get("error"), arrived) == (403, "policy_denied", []), body
    ex.create_order(SYMBOL, "market", "sell", 0.015, None, {"reduceOnly": True})  # flat again
    set_futures_price(dev, "20000")


def test_an_algo_type_keyproxy_does_not_read_is_refused_to_a_bounded_bot(dev: DevStack) -> None:
    creds = dev.add_bot("stop-odd", "main", "read,trade", "--set", "max_order_notional=5000")
    status, body, arrived = send(dev, creds, "POST", "/fapi/v1/algoOrder",
                                 "algoType=VP&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=1&triggerPrice=19000")
    assert (status, body.get("error"), arrived) == (403, "notional_unknown", []), body


def test_a_halt_sweeps_the_bots_stops_and_leaves_the_other_bots(dev: DevStack) -> None:
    halted = futures(dev.add_bot("stop-halted", "main", "read,trade"))
    kept = futures(dev.add_bot("stop-kept", "main", "read,trade"))
    mine = [halted.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)["id"] for _ in range(2)]
    theirs = kept.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)["id"]
    done = json.loads(dev.cli("halt", "--bot", "stop-halted", "--cancel-orders", "--json", "--reason", "test").stdout)
    swept = {o["order_id"] for entry in done["accounts"] for o in entry["cancelled"]}
    assert swept == {f"algo#{i}" for i in mine}, done
    assert [algo_status(dev, i) for i in mine] == ["CANCELED", "CANCELED"]
    assert algo_status(dev, theirs) == "NEW"
    kept.cancel_order(theirs, SYMBOL, {"trigger": True})


def test_keyproxys_own_reconciliation_learns_what_a_stop_became(dev: DevStack) -> None:
    """The stop triggers while keyproxy is down and no bot asks about it: at start keyproxy asks for the stop by its
    algoId, or lists the symbol's algo orders (`allAlgoOrders`; each names the order it became), books that order
    as the bot's, and learns its fill from the symbol's order listing it read the same minute."""
    import signal

    from tests.e2e.test_risk_positions import eventually, series

    ex = futures(dev.add_bot("stop-sleeper", "main", "read,trade", "--set", "max_position=0.05"))
    set_futures_price(dev, "20000")
    ex.create_order(SYMBOL, "market", "buy", 0.01, None, {"stopPrice": 21000})
    time.sleep(2.5)  # older than BY_ID_AFTER_S: its own answer has long been read
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    start = len(dev.journal())
    set_futures_price(dev, "21000")  # it triggers and fills while keyproxy is down
    dev.start_daemon()
    assert eventually(lambda: series(dev, "keyproxy_bot_position", bot="stop-sleeper", scope="usdm:BTCUSDT")
                      == 0.01, timeout=15)
    asked = {e["path"] for e in dev.journal()[start:] if e["method"] == "GET"}
    assert asked & {"/fapi/v1/allAlgoOrders", "/fapi/v1/algoOrder"}, asked  # the listing, or the stop by its id
    futures(dev.add_bot("stop-sleeper-tidy", "main", "read,trade")).create_order(
        SYMBOL, "market", "sell", 0.01, None, {"reduceOnly": True})
    set_futures_price(dev, "20000")


def test_a_bot_cannot_take_another_bots_client_id_to_reach_the_order_its_stop_becomes(dev: DevStack) -> None:
    """A stop-limit's clientAlgoId is the client id of the order it becomes. Another bot placing (then cancelling) an
    order under that client id made keyproxy's record name it, and its cancel by `origClientOrderId` then reached the
    triggered order. A bot's client ids are its own, in either form."""
    owner = futures(dev.add_bot("cid-owner", "main", "read,trade"))
    stop = owner.create_order(SYMBOL, "market", "sell", 0.01, None, {**STOP, "clientOrderId": "cid-owner-stop"})
    thief = dev.add_bot("cid-thief", "main", "read,trade")
    for path, params in (("/fapi/v1/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01"
                                            "&price=15000&newClientOrderId=cid-owner-stop"),
                         ("/fapi/v1/algoOrder", "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET"
                                                "&quantity=0.01&triggerPrice=18000&clientAlgoId=cid-owner-stop")):
        status, body, arrived = send(dev, thief, "POST", path, params)
        assert (status, body.get("error"), arrived) == (403, "policy_denied", []), body
    owner.cancel_order(stop["id"], SYMBOL, {"trigger": True})


def test_a_halt_sweeps_the_order_a_stop_became_before_keyproxy_read_which(dev: DevStack) -> None:
    """A stop-limit buy triggers (its limit below the market, so the order it becomes rests) and the bot is halted
    before keyproxy has read what it became: the sweep knows that order by its client id, the stop's, on record as
    the bot's, and cancels it."""
    creds = dev.add_bot("stop-swept", "main", "read,trade")
    ex = futures(creds)
    set_futures_price(dev, "20000")
    ex.create_order(SYMBOL, "limit", "buy", 0.01, 20500, {"stopPrice": 21000, "clientOrderId": "swept-stop-1"})
    set_futures_price(dev, "21000")  # triggered: a limit buy at 20,500 rests
    with urllib.request.urlopen(f"{dev.emulator_url}/_emulator/state", timeout=10) as r:
        state = json.loads(r.read())
    resting = [o for a in state["binance"].values() for o in a["orders"]
               if o["clientOrderId"] == "swept-stop-1" and o["status"] == "NEW"]
    assert len(resting) == 1, resting
    done = json.loads(dev.cli("halt", "--bot", "stop-swept", "--cancel-orders", "--json", "--reason", "test").stdout)
    swept = {o["order_id"] for entry in done["accounts"] for o in entry["cancelled"]}
    assert str(resting[0]["orderId"]) in swept, done
    dev.cli("resume", "--bot", "stop-swept")
    set_futures_price(dev, "20000")


def test_a_triggered_stop_frees_its_place_under_max_open_orders(dev: DevStack) -> None:
    """A stop that triggered ends in no answer to its bot (freqtrade reads its stop by id, never lists every algo
    order), so its place under max_open_orders stayed taken: after max_open_orders stop-outs the bot could place
    nothing (session 30). keyproxy's own listing of the market's algo orders (each minute, and at start) frees it."""
    old = dev.proxy_url
    creds = dev.add_bot("stop-freed", "main", "read,trade", "--set", "max_open_orders=1")
    ex = futures(creds)
    set_futures_price(dev, "20000")
    ex.create_order(SYMBOL, "market", "sell", 0.01, None, {"stopLossPrice": 19900})
    try:
        set_futures_price(dev, "19800")  # it triggers: a market sell
        refused(lambda: ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP), "open_orders_exceeded")
        dev.stop_daemon()
        dev.start_daemon()  # the risk watch's first pass lists the algo orders: the triggered one is not among them
        ex = futures({**creds, "base_url": creds["base_url"].replace(old, dev.proxy_url)})
        again = ex.create_order(SYMBOL, "market", "sell", 0.01, None, STOP)
        ex.cancel_order(again["id"], SYMBOL, {"trigger": True})
        ex.create_order(SYMBOL, "market", "buy", 0.01, None, {"reduceOnly": True})  # the short it opened, closed
    finally:
        set_futures_price(dev, "20000")


def test_another_bot_listing_the_open_orders_cannot_cancel_what_a_stop_became(dev: DevStack) -> None:
    """The order a stop-limit became rests under the stop's client id. A bot polling the account's open orders found
    it before keyproxy had read what the stop became (no owner on record), and could cancel it. The listing names
    its client id, on record as the stop's bot's: read before it reaches the bot, so the order is that bot's."""
    owner = futures(dev.add_bot("became-owner", "main", "read,trade"))
    other = futures(dev.add_bot("became-other", "main", "read,trade"))
    set_futures_price(dev, "20000")
    owner.create_order(SYMBOL, "limit", "buy", 0.01, 20500, {"stopPrice": 21000, "clientOrderId": "became-1"})
    try:
        set_futures_price(dev, "21000")  # triggered: a limit buy at 20,500 rests
        [child] = [o for o in other.fetch_open_orders(SYMBOL) if o["clientOrderId"] == "became-1"]
        refused(lambda: other.cancel_order(child["id"], SYMBOL), "placed by another bot")
        owner.cancel_order(child["id"], SYMBOL)
    finally:
        set_futures_price(dev, "20000")


def resting_child(dev: DevStack, client_id: str) -> str:
    """The order id of the order a stop became, from the emulator's own view (what a bot could guess: Binance's ids
    are sequential)."""
    with urllib.request.urlopen(f"{dev.emulator_url}/_emulator/state", timeout=10) as r:
        state = json.loads(r.read())
    [child] = [o for a in state["binance"].values() for o in a["orders"]
               if o["clientOrderId"] == client_id and o["status"] == "NEW"]
    return str(child["orderId"])


@pytest.mark.parametrize("named_by", ["client id", "guessed id"])
def test_another_bot_cannot_cancel_what_a_stop_became_before_any_read_of_it(dev: DevStack, named_by: str) -> None:
    """The order a stop-limit became carries the stop's clientAlgoId as its clientOrderId, on record as the stop's
    bot's when the stop was placed: another bot's cancel by `origClientOrderId` is refused before any read of it. By
    its order id (guessed: Binance's ids are sequential) no owner was on record, and the cancel went through as one of
    an order placed outside keyproxy (session 31): keyproxy now asks the exchange about that order first (a GET with
    the real key), and it carries the stop's client id, the stop's bot's."""
    tag = named_by.split()[0]
    owner = futures(dev.add_bot(f"{tag}-became-owner", "main", "read,trade"))
    other = dev.add_bot(f"{tag}-became-other", "main", "read,trade")
    set_futures_price(dev, "20000")
    owner.create_order(SYMBOL, "limit", "buy", 0.01, 20500, {"stopPrice": 21000, "clientOrderId": f"{tag}-became-1"})
    try:
        set_futures_price(dev, "21000")  # triggered: a limit buy at 20,500 rests
        child = resting_child(dev, f"{tag}-became-1")
        named, asked = (f"origClientOrderId={tag}-became-1", []) if tag == "client" else (f"orderId={child}", ["GET"])
        status, body, arrived = send(dev, other, "DELETE", "/fapi/v1/order", f"symbol=BTCUSDT&{named}")
        # nothing cancelled (by its id, keyproxy asked about it first)
        assert (status, body.get("error"), [e["method"] for e in arrived]) == (403, "policy_denied", asked), body
        owner.cancel_order(child, SYMBOL)
    finally:
        set_futures_price(dev, "20000")
