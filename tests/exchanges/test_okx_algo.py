"""OKX algo orders read by the adapter (okx_algo.py): what a stop or trigger order would do, what its answers say,
what a halt's sweep lists and cancels. Shapes from OKX docs-v5 "Algo Trading" and what ccxt 4.5.90 sends."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from keyproxy.exchanges.base import IncomingRequest, OutboundRequest
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.open_orders import SWEEPS, ListingError, Resting
from keyproxy.policy.model import RequestFacts

ADAPTER = Okx()
ALGO = "/api/v5/trade/order-algo"
# what ccxt sends for create_order("BTC/USDT", "market", "sell", 0.5, None, {"stopLossPrice": 50000}) under freqtrade
STOP = {"instId": "BTC-USDT", "side": "sell", "ordType": "conditional", "sz": "0.5", "tdMode": "cash",
        "slTriggerPx": "50000", "slOrdPx": "-1", "slTriggerPxType": "last", "clOrdId": "ffb5405ad327SUDEa1",
        "tag": "ffb5405ad327SUDE"}


def facts(body: object, path: str = ALGO) -> RequestFacts:
    endpoint = ADAPTER.classify("POST", path)
    assert endpoint is not None
    return ADAPTER.facts(IncomingRequest("POST", path, "", {"content-type": "application/json"},
                                         json.dumps(body).encode()), endpoint)


def out(path: str, body: object = b"", method: str = "POST", query: str = "") -> OutboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return OutboundRequest(method, "https://www.okx.com", path, query, {}, raw)


def test_a_stop_is_valued_as_the_order_it_becomes_at_its_trigger() -> None:
    f = facts(STOP)
    assert (f.action, f.symbol, f.market, f.side, f.quantity, f.price, f.trigger_price, f.conditional) == (
        "order", "BTCUSDT", "spot", "SELL", Decimal("0.5"), None, Decimal("50000"), True)
    assert (f.untracked, f.conflict, f.scope) == (None, None, "spot:BTCUSDT")
    limit = facts({**STOP, "slOrdPx": "49500"})  # a stop-limit: its order price
    assert (limit.price, limit.trigger_price, limit.order_type) == (Decimal("49500"), Decimal("50000"), "LIMIT")
    profit = facts({k: v for k, v in STOP.items() if not k.startswith("sl")} | {"tpTriggerPx": "70000",
                                                                                "tpOrdPx": "-1"})
    assert (profit.trigger_price, profit.price, profit.conditional) == (Decimal("70000"), None, True)
    trigger = facts({"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "trigger", "sz": "3",
                     "triggerPx": "65000", "orderPx": "65100"})
    assert (trigger.contract, trigger.quantity, trigger.price, trigger.trigger_price, trigger.market) == (
        "linear", Decimal("3"), Decimal("65100"), Decimal("65000"), "swap")


def test_a_stops_size_and_flags_are_read_only_as_okx_documents_them() -> None:
    # a spot market buy: its unit is stated only by a conditional order's tgtCcy
    buy = {**STOP, "side": "buy", "slTriggerPx": "70000"}
    assert (facts(buy).quantity, facts(buy).quote_quantity) == (None, None)
    assert facts({**buy, "tgtCcy": "quote_ccy"}).quote_quantity == Decimal("0.5")
    assert facts({**buy, "tgtCcy": "base_ccy"}).quantity == Decimal("0.5")
    trigger_buy = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "trigger", "sz": "1",
                   "triggerPx": "70000", "orderPx": "-1", "tgtCcy": "base_ccy"}
    assert facts(trigger_buy).quantity is None  # tgtCcy is not a trigger order's parameter
    # reduceOnly: a conditional order's (net mode), never a trigger order's (not among its parameters)
    swap = {"instId": "BTC-USDT-SWAP", "tdMode": "isolated", "side": "sell", "sz": "1", "reduceOnly": True}
    assert facts({**swap, "ordType": "conditional", "slTriggerPx": "50000", "slOrdPx": "-1"}).reduce_only
    assert not facts({**swap, "ordType": "trigger", "triggerPx": "50000", "orderPx": "-1"}).reduce_only
    assert not facts({**swap, "ordType": "conditional", "slTriggerPx": "1", "posSide": "long"}).reduce_only
    # attached take-profits and a whole-position close become orders keyproxy cannot follow
    attached = facts({**swap, "ordType": "trigger", "triggerPx": "50000", "orderPx": "-1",
                      "attachAlgoOrds": [{"slTriggerPx": "40000", "slOrdPx": "-1"}]})
    assert attached.untracked and "attached" in attached.untracked
    whole = facts({k: v for k, v in swap.items() if k != "sz"} | {"ordType": "conditional", "closeFraction": "1",
                                                                  "slTriggerPx": "50000", "slOrdPx": "-1"})
    assert whole.quantity is None and whole.untracked and "whole position" in whole.untracked


@pytest.mark.parametrize("body", [
    {**STOP, "tpTriggerPx": "70000", "tpOrdPx": "-1"},  # two triggers: OKX runs the stop-loss only (net mode)
    {**STOP, "ordType": "oco", "tpTriggerPx": "70000", "tpOrdPx": "-1"},
    {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "move_order_stop", "sz": "1",
     "callbackRatio": "0.05"},
    {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "twap", "sz": "1"},
    {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "conditional", "sz": "1"},  # no trigger
    {"instId": "BTC-USDT", "side": "sell", "sz": "1"},
])
def test_other_algo_orders_are_not_read(body: dict[str, object]) -> None:
    assert facts(body).action is None  # refused to a bot with trading limits


def test_cancels_and_amends_name_algo_orders_by_their_own_ids() -> None:
    cancel = facts([{"algoId": "881", "instId": "BTC-USDT"}, {"algoId": "882", "instId": "BTC-USDT"}],
                   "/api/v5/trade/cancel-algos")
    assert (cancel.action, cancel.cancels, cancel.cancels_all) == ("cancel", ("algo#881", "algo#882"), False)
    by_client = facts([{"algoClOrdId": "mine", "instId": "BTC-USDT"}], "/api/v5/trade/cancel-algos")
    # whether OKX reads the instId of a cancel by algoClOrdId is not documented: every market's
    assert by_client.cancels_all and by_client.cancels_unlisted and by_client.scope == "*:*"
    for odd in ("-+5", "\u00b2", "9" * 5000):  # no number a reader takes: names, compared as written
        assert facts([{"algoId": odd, "instId": "BTC-USDT"}], "/api/v5/trade/cancel-algos").action == "cancel"
    amend = facts({"algoId": "881", "instId": "BTC-USDT", "newSz": "2"}, "/api/v5/trade/amend-algos")
    assert (amend.action, amend.touches) == (None, ("algo#881",))
    assert facts({"algoClOrdId": "x", "instId": "BTC-USDT"}, "/api/v5/trade/amend-algos").touches == (None,)


def test_answers_open_and_close_the_accounts_algo_count() -> None:
    placed = facts(STOP)
    took = {"code": "0", "msg": "", "data": [{"algoId": "881", "sCode": "0", "sMsg": ""}]}
    assert ADAPTER.order_book_change(out(ALGO, STOP), 200, json.dumps(took).encode(), placed).opened == ("algo:*",)
    refused = {"code": "1", "data": [{"algoId": "", "sCode": "51000", "sMsg": "Parameter tdMode error"}]}
    assert ADAPTER.order_book_change(out(ALGO, STOP), 200, json.dumps(refused).encode(), placed).opened == ()
    unknown = {"code": "50004", "msg": "API endpoint request timeout", "data": []}
    assert ADAPTER.order_book_change(out(ALGO, STOP), 200, json.dumps(unknown).encode(), placed).opened == (
        "algo:*",)
    assert ADAPTER.placed_order_ids(200, json.dumps(took).encode()) == ("algo#881",)
    body = [{"algoId": "881", "instId": "BTC-USDT"}, {"algoId": "882", "instId": "BTC-USDT"}]
    cancel = facts(body, "/api/v5/trade/cancel-algos")
    answer = {"code": "2", "data": [{"algoId": "881", "sCode": "0", "sMsg": ""},
                                    {"algoId": "882", "sCode": "51400", "sMsg": "does not exist"}]}
    request = out("/api/v5/trade/cancel-algos", body)
    assert ADAPTER.order_book_change(request, 200, json.dumps(answer).encode(), cancel).closed == ("algo:*",)
    assert ADAPTER.cancelled_ids(request) == (("algo#881", "algo#882"), False)
    assert ADAPTER.cancelled_ids(out("/api/v5/trade/cancel-algos", [{"algoClOrdId": "c", "instId": "X-Y"}])) == (
        (), True)
    [ended] = ADAPTER.order_updates(request, 200, json.dumps(answer).encode())
    assert (ended.order_id, ended.final) == ("algo#881", True)


def test_an_algo_order_read_names_what_it_became() -> None:
    row = {"algoId": "881", "instId": "BTC-USDT", "side": "sell", "sz": "0.5", "state": "live", "ordIdList": [],
           "ordId": "", "ordType": "conditional"}

    def read(**changes: object) -> tuple[object, ...]:
        doc = {"code": "0", "msg": "", "data": [{**row, **changes}]}
        return ADAPTER.order_updates(out(ALGO, method="GET", query="algoId=881"), 200, json.dumps(doc).encode())

    [live] = read()
    assert (live.order_id, live.scope, live.side, live.quantity, live.final, live.spawned) == (  # type: ignore[attr-defined]
        "algo#881", "spot:BTCUSDT", "sell", Decimal("0.5"), False, "")
    [fired] = read(state="effective", ordIdList=["700"], ordId="700")
    assert (fired.final, fired.spawned) == (True, "700")  # type: ignore[attr-defined]
    [old_field] = read(state="effective", ordIdList=None, ordId="701")  # `ordId` alone (deprecated, still sent)
    assert old_field.spawned == "701"  # type: ignore[attr-defined]
    [unnamed] = read(state="effective", ordIdList=[], ordId="")  # triggered, but which order it became is unsaid
    assert not unnamed.final  # type: ignore[attr-defined]
    for ended in ("canceled", "order_failed"):
        assert read(state=ended)[0].final  # type: ignore[attr-defined]
    [swap] = read(instId="BTC-USDT-SWAP", state="effective", ordIdList=["702"])  # for the record: contracts unread
    assert (swap.scope, swap.quantity, swap.spawned, swap.final) == (  # type: ignore[attr-defined]
        "swap:BTCUSDTSWAP", None, "702", True)
    split = read(state="effective", ordIdList=["703", "704"])  # a stop OKX split: each order it became
    assert [u.spawned for u in split] == ["703", "704"]  # type: ignore[attr-defined]
    assert read(tgtCcy="quote_ccy")[0].quantity is None  # type: ignore[attr-defined]
    assert ADAPTER.order_query_request("spot:BTCUSDT", "algo#881") == ("GET", ALGO, "algoId=881", b"")
    assert ADAPTER.order_query_request("spot:BTCUSDT", "700")[1] == "/api/v5/trade/order"  # type: ignore[index]


def test_a_halt_sweep_lists_and_cancels_algo_orders_too() -> None:
    sweep = SWEEPS["okx"]
    specs = sweep.listings(frozenset({"spot"}), None, {})  # type: ignore[arg-type]
    assert [(s[1], s[2]) for s in specs] == [
        ("/api/v5/trade/orders-pending", "limit=100"),
        ("/api/v5/trade/orders-algo-pending", "ordType=conditional,oco&limit=100"),
        ("/api/v5/trade/orders-algo-pending", "ordType=trigger&limit=100"),
        ("/api/v5/trade/orders-algo-pending", "ordType=move_order_stop&limit=100")]
    rows = [{"algoId": str(900 - n), "instId": "BTC-USDT", "instType": "SPOT"} for n in range(100)]
    page, more = sweep.resting(specs[1], 200, json.dumps({"code": "0", "data": rows}).encode())
    assert page[0] == Resting("spot", "BTC-USDT", "algo#900") and len(page) == 100
    assert more is not None and more[2] == "ordType=conditional,oco&limit=100&after=801"
    with pytest.raises(ListingError):
        sweep.resting(specs[2], 200, b'{"code":"51000","msg":"Parameter ordType error","data":[]}')
    orders = [Resting("spot", "BTC-USDT", f"algo#{n}") for n in range(12)] + [Resting("spot", "BTC-USDT", "5")]
    calls = sweep.cancels(orders, {})
    assert [(spec[1], len(batch)) for spec, batch in calls] == [
        ("/api/v5/trade/cancel-order", 1), ("/api/v5/trade/cancel-algos", 10), ("/api/v5/trade/cancel-algos", 2)]
    assert json.loads(calls[2][0][3]) == [{"algoId": "10", "instId": "BTC-USDT"},
                                          {"algoId": "11", "instId": "BTC-USDT"}]
    said = {"code": "2", "data": [{"algoId": "10", "sCode": "0"}, {"algoId": "11", "sCode": "51400", "sMsg": "gone"}]}
    assert sweep.cancelled(calls[2][1], 200, json.dumps(said).encode()) == {
        "algo#10": None, "algo#11": "sCode 51400: gone"}


def test_keyproxys_own_count_listings_show_every_kind_a_bounded_bot_may_place() -> None:
    assert ADAPTER.conditional_count_scopes == ("algo:*",)
    assert [s[2] for s in ADAPTER.conditional_count_listings("algo:*")] == [
        "ordType=conditional,oco&limit=100", "ordType=trigger&limit=100"]
    assert ADAPTER.conditional_count_listings("spot:*") == []


def test_the_orders_algo_channel_names_what_a_stop_became() -> None:
    event = {"arg": {"channel": "orders-algo", "instType": "ANY", "uid": "1"},
             "data": [{"algoId": "881", "instId": "BTC-USDT", "side": "sell", "sz": "0.5", "state": "effective",
                       "ordIdList": ["700"], "ordId": "700", "ordType": "conditional"}]}
    [fired] = ADAPTER.stream_order_updates(json.dumps(event))
    assert (fired.order_id, fired.spawned, fired.final) == ("algo#881", "700", True)
    assert ADAPTER.stream_order_updates(json.dumps({**event, "arg": {"channel": "algo-advance"}})) == ()


def test_an_order_a_stop_placed_names_it() -> None:
    """Session 30's review: another bot listing the account's orders could cancel the order a stop became before
    anyone read the stop. The order's own row names its algo order (`algoId`): read first, so it is the stop's
    placer's before the listing is relayed."""
    row = {"ordId": "700", "algoId": "881", "instId": "BTC-USDT-SWAP", "side": "sell", "sz": "1", "px": "59500",
           "accFillSz": "0", "avgPx": "", "state": "live"}
    doc = {"code": "0", "data": [row, {**row, "ordId": "701", "algoId": ""}]}
    updates = ADAPTER.order_updates(out("/api/v5/trade/orders-pending", method="GET"), 200, json.dumps(doc).encode())
    assert [(u.order_id, u.spawned, u.final, u.scope) for u in updates] == [
        ("algo#881", "700", True, "swap:BTCUSDTSWAP")]  # swap orders' own fills are not read
    spot = {**row, "instId": "BTC-USDT"}
    updates = ADAPTER.order_updates(out("/api/v5/trade/order", method="GET"), 200,
                                    json.dumps({"code": "0", "data": [spot]}).encode())
    assert [(u.order_id, u.spawned) for u in updates] == [("algo#881", "700"), ("700", "")]
