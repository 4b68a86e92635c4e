"""Which order each leg of a request became, as the exchange said it (session 15's review): an id never slides
onto another leg's order, a cancel-replace books the order it placed and not the one it cancelled (also when
refused in part), an amend is read as replacing its order only where the exchange replaces, and every leg of a
Bybit amend-batch meets its own verdict."""

from __future__ import annotations

import json
from types import SimpleNamespace
from decimal import Decimal

import pytest

from keyproxy.exchanges.base import BadRequest, OutboundRequest
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.binance_ws import BinanceWsApi
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.bybit_ws import BybitWsApi
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.okx_ws import OkxWsApi
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.markets import MarketBook
from keyproxy.proxy.risk import RiskDesk

D = Decimal


class Clock:
    def __call__(self) -> float:
        return 1_796_385_600.0


def doc(value: object) -> bytes:
    return json.dumps(value).encode()


def leg(symbol: str, market: str, side: str = "BUY", quantity: str = "1", price: str = "100") -> RequestFacts:
    return RequestFacts(action="order", symbol=symbol, market=market, side=side, quantity=D(quantity), price=D(price))


def desk() -> RiskDesk:
    return RiskDesk(None, MarketBook(Clock()), Clock())


def test_a_refused_batch_leg_keeps_its_place_so_no_id_lands_on_another_legs_order() -> None:
    """OKX answers a batch refused in part with `code` "2" and the refused leg's empty `ordId`; Bybit with a
    `retExtInfo.list` code per leg. Read as found, leg 3's id became leg 2's: order 3 was booked as a 5 BTC sell."""
    okx = {"code": "2", "data": [{"ordId": "1", "sCode": "0"}, {"ordId": "", "sCode": "51008"},
                                 {"ordId": "3", "sCode": "0"}]}
    assert Okx().placed_order_ids(200, doc(okx)) == ("1", "", "3")
    assert OkxWsApi(Okx()).placed_order_ids(200, doc({"id": "9", "op": "batch-orders", **okx})) == ("1", "", "3")
    bybit = {"retCode": 0, "result": {"list": [{"orderId": "1"}, {"orderId": "2"}, {"orderId": "3"}]},
             "retExtInfo": {"list": [{"code": 0}, {"code": 170131}, {"code": 0}]}}
    assert Bybit().placed_order_ids(200, doc(bybit)) == ("1", "", "3")
    ws = {"reqId": "9", "retCode": 0, "op": "order.create-batch", "data": bybit["result"],
          "retExtInfo": bybit["retExtInfo"]}
    assert BybitWsApi(Bybit()).placed_order_ids(200, doc(ws)) == ("1", "", "3")
    assert Bybit().placed_order_ids(200, doc({"retCode": 0, "result": {"orderId": "7"}})) == ("7",)
    kraken = {"error": [], "result": {"orders": [{"txid": "A", "descr": {}}, {"error": "EOrder:Insufficient funds"},
                                                 {"txid": "C", "descr": {}}]}}
    assert Kraken().placed_order_ids(200, doc(kraken)) == ("A", "", "C")
    assert Kraken().placed_order_ids(200, doc({"error": [], "result": {"txid": ["A"], "descr": {}}})) == ("A",)
    assert Binance().placed_order_ids(200, doc([{"orderId": 1}, {"code": -2019, "msg": "Margin is insufficient."},
                                                {"orderId": 3}])) == ("1", "", "3")
    binance = desk()  # every leg answered with its order: matched on scope and side, order 3 fell on leg 2
    futures = [leg("BTCUSDT", "usdm", quantity="1"), leg("BTCUSDT", "usdm", quantity="5"),
               leg("BTCUSDT", "usdm", quantity="2")]
    answer = [{"orderId": 1, "symbol": "BTCUSDT", "side": "BUY", "executedQty": "0", "cumQuote": "0", "origQty": "1",
               "price": "100", "status": "NEW"}, {"code": -2019, "msg": "Margin is insufficient."},
              {"orderId": 3, "symbol": "BTCUSDT", "side": "BUY", "executedQty": "0", "cumQuote": "0", "origQty": "2",
               "price": "100", "status": "NEW"}]
    binance.learn("a", Binance(), ("bot", RequestFacts(action="order", orders=tuple(futures))),
                  OutboundRequest("POST", "https://f", "/fapi/v1/batchOrders", "", {}), 200, doc(answer),
                  Binance().placed_order_ids(200, doc(answer)))
    assert binance.book.open_quantity("a", "bot", "usdm:BTCUSDT", "buy") == 3
    book = desk()
    legs = (leg("BTC-USDT", "spot"), leg("BTC-USDT", "spot", "SELL", "5"), leg("BTC-USDT", "spot", "BUY", "2"))
    batch = RequestFacts(action="order", orders=legs)
    book.learn("a", Okx(), ("bot", batch), OutboundRequest("POST", "https://o", "/api/v5/trade/batch-orders", "", {}),
               200, doc(okx), Okx().placed_order_ids(200, doc(okx)))
    orders = book.book.orders["a"]
    assert set(orders) == {"1", "3"} and (orders["3"].side, orders["3"].quantity) == ("buy", 2)


def test_a_cancel_replace_answered_ack_books_the_new_order_not_the_cancelled_one() -> None:
    """ACK: the new order's answer has no side or fill, so the one order report in the answer (the cancelled
    one) was taken for it: the new order never entered the book and the old one ended."""
    answer = {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
              "cancelResponse": {"symbol": "BTCUSDT", "orderId": 5, "side": "BUY", "status": "CANCELED",
                                 "executedQty": "0", "cummulativeQuoteQty": "0", "origQty": "1", "price": "100"},
              "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 6, "transactTime": 1}}
    assert Binance().placed_order_ids(200, doc(answer)) == ("6",)
    book = desk()
    old = leg("BTCUSDT", "spot")
    book.book.placed("a", "bot", (old,), ("5",))
    out = OutboundRequest("POST", "https://b", "/api/v3/order/cancelReplace", "", {})
    book.learn("a", Binance(), ("bot", leg("BTCUSDT", "spot", quantity="2")), out, 200, doc(answer),
               Binance().placed_order_ids(200, doc(answer)))
    old_order, new_order = (book.book.find("a", i, "spot:BTCUSDT", True) for i in ("5", "6"))
    assert old_order is not None and old_order.final  # booked by its bare id (before `book_id`): still found
    assert new_order is not None and not new_order.final and new_order.quantity == 2


@pytest.mark.parametrize("status, data, settled", [
    (409, {"cancelResult": "FAILURE", "newOrderResult": "SUCCESS",  # ALLOW_FAILURE: placed though not cancelled
           "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
           "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 6, "side": "BUY", "status": "NEW"}},
     {"newOrderResponse": {"symbol": "BTCUSDT", "orderId": 6, "side": "BUY", "status": "NEW"}}),
    (409, {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE",  # cancelled, the new order refused
           "cancelResponse": {"symbol": "BTCUSDT", "orderId": 5, "status": "CANCELED"},
           "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance."}},
     {"cancelResponse": {"symbol": "BTCUSDT", "orderId": 5, "status": "CANCELED"}}),
    (400, {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
           "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
           "newOrderResponse": {"code": -2021, "msg": "Order cancel-replace partially failed."}}, None),
])
def test_a_cancel_replace_refused_in_part_is_read_as_what_it_did(status: int, data: dict, settled: object) -> None:  # type: ignore[type-arg]
    """409 (-2021) and 400 (-2022) carry `data`: the halves that succeeded are what keyproxy books, REST and
    WebSocket API alike; anything else refused stays as it came."""
    code = -2021 if status == 409 else -2022
    rest, out = Binance(), OutboundRequest("POST", "https://b", "/api/v3/order/cancelReplace", "", {})
    body = doc({"code": code, "msg": "Order cancel-replace partially failed.", "data": data})
    assert rest.settled_answer(out, status, body) == ((200, doc(settled)) if settled else (status, body))
    ws = BinanceWsApi(rest)
    frame = OutboundRequest("POST", "wss://b", "/ws-api/v3", "", {}, doc(
        {"id": "r1", "method": "order.cancelReplace", "params": {"symbol": "BTCUSDT"}}))
    answer = doc({"id": "r1", "status": status, "error": {"code": code, "msg": "failed", "data": data}})
    got = ws.settled_answer(frame, status, answer)
    assert got == ((200, doc({"id": "r1", "status": 200, "result": settled})) if settled else (status, answer))
    if settled is not None:  # what keyproxy books: the new order's id, or none ("") when only the cancel went in
        placed = data["newOrderResponse"].get("orderId")
        assert rest.placed_order_ids(200, doc(settled)) == (str(placed) if placed else "",)
    other = OutboundRequest("POST", "https://b", "/api/v3/order", "", {})
    assert rest.settled_answer(other, 409, body) == (409, body)


def test_only_an_exchange_that_replaces_on_amend_has_its_answers_id_read_as_a_new_order() -> None:
    """A Bybit amend answers the amended order's id; an answer naming another id (a client that amends by
    orderLinkId, a malformed answer) ended the held order and booked an order that does not exist."""
    assert Kraken().amend_replaces and not Bybit().amend_replaces and not Okx().amend_replaces
    book = desk()
    book.book.placed("a", "bot", (leg("BTCUSDT", "linear"),), ("7",))
    amend = RequestFacts(action="amend", symbol="BTCUSDT", market="linear", quantity=D("2"), price=D("100"),
                         order_id="7")
    answer = doc({"retCode": 0, "result": {"orderId": "8", "orderLinkId": ""}})
    book.learn("a", Bybit(), ("bot", amend), OutboundRequest("POST", "https://y", "/v5/order/amend", "", {}), 200,
               answer, Bybit().placed_order_ids(200, answer))
    assert set(book.book.orders["a"]) == {"7"} and book.book.orders["a"]["7"].quantity == 2


def test_each_leg_of_a_bybit_amend_batch_meets_its_own_verdict() -> None:
    """A take-profit-only item changes no size and is no leg keyproxy checks, but Bybit answers it in its place:
    read by position, the verdict of item 2 fell on leg 1 (item 3)."""
    sent = doc({"category": "linear", "request": [
        {"symbol": "BTCUSDT", "orderId": "1", "takeProfit": "70000"},
        {"symbol": "BTCUSDT", "orderId": "2", "qty": "1"},
        {"symbol": "BTCUSDT", "orderId": "3", "price": "100"}]})
    answer = doc({"retCode": 0, "result": {"list": [{"orderId": "1"}, {"orderId": "2"}, {"orderId": "3"}]},
                  "retExtInfo": {"list": [{"code": 0}, {"code": 110001}, {"code": 0}]}})
    out = OutboundRequest("POST", "https://y", "/v5/order/amend-batch", "", {}, sent)
    assert Bybit().amend_verdicts(out, 200, answer, 2) == (False, True)
    frame = OutboundRequest("POST", "wss://y", "/v5/trade", "", {}, doc(
        {"reqId": "1", "op": "order.amend-batch", "args": [json.loads(sent)]}))
    assert BybitWsApi(Bybit()).amend_verdicts(frame, 200, answer, 2) == (False, True)


def test_a_bybit_trade_op_needs_a_req_id_and_a_failed_trade_auth_is_a_refusal() -> None:
    """Bybit names a trade op's answer only by the reqId it came with: without one the order never reached the
    books. And `/v5/trade` answers auth with `retCode`, no `success`: a failed one was read as a success."""
    ws = BybitWsApi(Bybit())
    with pytest.raises(BadRequest, match="reqId"):
        ws.ws_frame(json.dumps({"op": "order.create", "args": [{"symbol": "BTCUSDT"}]}))
    assert ws.ws_frame(json.dumps({"op": "order.create", "reqId": "a1", "args": [{}]}))[1] == "order.create"
    assert ws.ws_frame(json.dumps({"op": "ping"}))[1] == "ping"  # no trade op: no reqId needed
    failed = {"op": "auth", "retCode": 10004, "retMsg": "Invalid sign", "connId": "c"}
    assert ws.ws_answer(failed) == (("auth", ""), 401)
    assert ws.ws_answer({"op": "auth", "retCode": 0, "retMsg": "OK", "connId": "c"}) == (("auth", ""), 200)
    assert ws.ws_answer({"op": "auth", "success": True, "ret_msg": "", "req_id": "x"}) == (("auth", "x"), 200)
    assert ws.ws_answer({"op": "auth", "success": False, "ret_msg": "bad", "req_id": "x"}) == (("auth", "x"), 401)


def test_a_hyperliquid_batch_modify_that_rests_under_a_new_oid_books_that_oid() -> None:
    """The review of this change: a modified Hyperliquid order may rest under a new oid (batchModify's statuses
    name it); with replacement read on Kraken only, its fills came under an oid the book did not hold."""
    hl, book = Hyperliquid(), desk()
    book.book.placed("a", "bot", (RequestFacts(action="order", symbol="BTC", market="perp", side="buy",
                                               quantity=D("0.5"), price=D("60")),), ("1",))
    answer = doc({"status": "ok", "response": {"type": "order", "data": {"statuses": [{"resting": {"oid": 2}}]}}})
    assert hl.placed_order_ids(200, answer) == ("2",)
    modify = RequestFacts(action="amend", symbol="BTC", market="perp", side="buy", quantity=D("0.5"),
                          price=D("70"), order_id="1")
    book.learn("a", hl, ("bot", RequestFacts(action="amend", orders=(modify,))),
               OutboundRequest("POST", "https://h", "/exchange", "", {}), 200, answer, hl.placed_order_ids(200, answer))
    orders = book.book.orders["a"]
    assert orders["1"].final and not orders["2"].final and orders["2"].quantity == D("0.5")
    assert hl.placed_order_ids(200, doc({"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"error": "Order has invalid price."}, {"filled": {"oid": 9, "totalSz": "1", "avgPx": "2"}}]}}})) == ("", "9")


def test_binance_order_ids_are_per_symbol_so_the_book_keys_them_with_their_market() -> None:
    """Session 17's review: Binance numbers each symbol's orders apart, and the book keyed orders by id alone, so
    an ETHUSDT order answered with the id of a BTCUSDT order the book held never entered it: its fills were
    dropped and the position cap never bound on ETHUSDT."""
    book, ad = desk(), Binance()
    out = OutboundRequest("POST", "https://f", "/fapi/v1/order", "", {})
    for symbol, size in (("BTCUSDT", "0.1"), ("ETHUSDT", "1")):
        answer = doc({"orderId": 500, "symbol": symbol, "side": "BUY", "status": "NEW", "executedQty": "0",
                      "cumQuote": "0", "origQty": size, "price": "100"})
        book.learn("a", ad, ("bot", leg(symbol, "usdm", quantity=size)), out, 200, answer,
                   ad.placed_order_ids(200, answer))
    assert book.book.open_quantity("a", "bot", "usdm:ETHUSDT", "buy") == 1
    assert book.book.open_quantity("a", "bot", "usdm:BTCUSDT", "buy") == D("0.1")
    fill = ('{"e":"ORDER_TRADE_UPDATE","o":{"s":"ETHUSDT","i":500,"S":"BUY","X":"FILLED","p":"100","q":"1",'
            '"z":"1","ap":"100"}}')
    book.learn_stream("a", ad, fill)
    assert book.book.position("bot", "usdm:ETHUSDT") == 1 and book.book.position("bot", "usdm:BTCUSDT") == 0
    amend = RequestFacts(action="amend", symbol="BTCUSDT", market="usdm", side="BUY", quantity=D("0.2"),
                         price=D("100"), order_id="500")
    found = book.amended("a", "bot", amend, ad)
    assert found[0] is not None and found[0].scope == "usdm:BTCUSDT" and found[0].remaining == D("0.1")
    assert book.amended("a", "bot", RequestFacts(action="amend", symbol="SOLUSDT", market="usdm", order_id="500"),
                        ad) == (None,)


def test_a_fill_before_its_placement_is_held_though_an_older_bare_id_order_shares_its_id() -> None:
    """An order booked by its bare id before keys carried the scope (500 on BTCUSDT) is found in its own scope
    only: a stream fill of the new ETHUSDT order 500 that beats the order's answer is held for it, not dropped."""
    book, ad = desk(), Binance()
    book.book.placed("a", "bot", (leg("BTCUSDT", "usdm", quantity="0.1"),), ("500",))  # booked before `book_id`
    fill = ('{"e":"ORDER_TRADE_UPDATE","o":{"s":"ETHUSDT","i":500,"S":"BUY","X":"FILLED","p":"100","q":"1",'
            '"z":"1","ap":"100"}}')
    book.learn_stream("a", ad, fill)
    answer = doc({"orderId": 500, "symbol": "ETHUSDT", "side": "BUY", "status": "NEW", "executedQty": "0",
                  "cumQuote": "0", "origQty": "1", "price": "100"})
    out = OutboundRequest("POST", "https://f", "/fapi/v1/order", "", {})
    book.learn("a", ad, ("bot", leg("ETHUSDT", "usdm")), out, 200, answer, ad.placed_order_ids(200, answer))
    assert book.book.position("bot", "usdm:ETHUSDT") == 1 and book.book.position("bot", "usdm:BTCUSDT") == 0
    btc = book.book.find("a", "500", "usdm:BTCUSDT", True)
    assert btc is not None and not btc.final and btc.filled == 0


@pytest.mark.parametrize("path, market, event", [
    ("/sapi/v1/margin/order", "margin", {"subscriptionId": 0, "event": {
        "e": "executionReport", "s": "BTCUSDT", "i": 7, "S": "BUY", "X": "FILLED", "p": "0", "q": "1", "z": "1",
        "Z": "60000"}}),
    ("/papi/v1/margin/order", "papi-margin", {"e": "executionReport", "s": "BTCUSDT", "i": 7, "S": "BUY",
                                              "X": "FILLED", "p": "0", "q": "1", "z": "1", "Z": "60000"}),
    ("/papi/v1/um/order", "papi-um", {"e": "ORDER_TRADE_UPDATE", "o": {
        "s": "BTCUSDT", "i": 7, "S": "BUY", "X": "FILLED", "p": "0", "q": "1", "z": "1", "ap": "60000"}}),
])
def test_a_margin_or_portfolio_margin_fill_on_the_user_stream_reaches_its_order(path: str, market: str,
                                                                                event: dict) -> None:  # type: ignore[type-arg]
    """Session 18's review: a user-data event names the engine, not the market (a cross margin order's fills come as
    a spot `executionReport`), so fills of margin and portfolio-margin orders were dropped and the day's P&L of a
    loss-limited bot stayed 0; nor did reconciliation read those markets. A spot order keeps its own fills."""
    book, rest = desk(), Binance()
    ack = doc({"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "x", "transactTime": 1})
    out = OutboundRequest("POST", "https://api.binance.com", path, "", {})
    book.learn("acct", rest, ("bot", leg("BTCUSDT", market)), out, 200, ack, rest.placed_order_ids(200, ack))
    assert book.book.open_quantity("acct", "bot", f"{market}:BTCUSDT", "buy") == 1
    book.learn_stream("acct", BinanceWsApi(rest), json.dumps(event))
    assert book.book.position("bot", f"{market}:BTCUSDT") == 1
    method, reconcile, query, _ = rest.reconcile_request(f"{market}:BTCUSDT", 0) or ("", "", "", b"")
    assert method == "GET" and reconcile.startswith(path.rsplit("/", 1)[0]) and reconcile.endswith("/allOrders")
    assert rest.classify("GET", reconcile) is not None  # in the endpoint table keyproxy's own calls go through


def test_a_spot_fill_stays_with_the_spot_order() -> None:
    book, rest = desk(), Binance()
    for path, market, oid in (("/api/v3/order", "spot", 8), ("/sapi/v1/margin/order", "margin", 9)):
        ack = doc({"symbol": "BTCUSDT", "orderId": oid, "clientOrderId": "x", "transactTime": 1})
        out = OutboundRequest("POST", "https://api.binance.com", path, "", {})
        book.learn("acct", rest, ("bot", leg("BTCUSDT", market)), out, 200, ack, rest.placed_order_ids(200, ack))
    book.learn_stream("acct", rest, json.dumps({"e": "executionReport", "s": "BTCUSDT", "i": 8, "S": "BUY",
                                                "X": "FILLED", "p": "0", "q": "1", "z": "1", "Z": "100"}))
    assert book.book.position("bot", "spot:BTCUSDT") == 1 and book.book.position("bot", "margin:BTCUSDT") == 0


def test_an_isolated_margin_order_is_a_market_of_its_own() -> None:
    """Session 18's second review: an isolated margin order (`isIsolated=TRUE`) was booked as cross margin, and
    Binance lists and reconciles isolated orders only with that flag and a symbol: its fills were never read."""
    from keyproxy.exchanges.base import IncomingRequest
    rest = Binance()
    body = b"symbol=BTCUSDT&isIsolated=TRUE&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100"
    req = IncomingRequest("POST", "/sapi/v1/margin/order", "", {"content-type": "application/x-www-form-urlencoded"},
                          body)
    facts = rest.facts(req, rest.classify("POST", "/sapi/v1/margin/order"))
    assert facts.scope == "isolated:BTCUSDT"
    cancel = rest.facts(IncomingRequest("DELETE", "/sapi/v1/margin/order", "symbol=BTCUSDT&orderId=41&isIsolated=TRUE",
                                        {}, b""), rest.classify("DELETE", "/sapi/v1/margin/order"))
    assert cancel.scope == "isolated:BTCUSDT"
    book = desk()
    ack = doc({"symbol": "BTCUSDT", "orderId": 41, "clientOrderId": "x", "transactTime": 1, "isIsolated": True})
    out = OutboundRequest("POST", "https://api.binance.com", "/sapi/v1/margin/order", "", {})
    book.learn("acct", rest, ("bot", facts), out, 200, ack, rest.placed_order_ids(200, ack))
    assert book.book.open_quantity("acct", "bot", "isolated:BTCUSDT", "buy") == 1
    book.learn_stream("acct", rest, json.dumps({"e": "executionReport", "s": "BTCUSDT", "i": 41, "S": "BUY",
                                                "X": "FILLED", "p": "100", "q": "1", "z": "1", "Z": "100"}))
    assert book.book.position("bot", "isolated:BTCUSDT") == 1
    assert rest.reconcile_request("isolated:BTCUSDT", 0) == (
        "GET", "/sapi/v1/margin/allOrders", "symbol=BTCUSDT&isIsolated=TRUE&startTime=0&limit=1000", b"")
    listed = rest.order_updates(OutboundRequest("GET", "https://api.binance.com", "/sapi/v1/margin/allOrders",
                                                "symbol=BTCUSDT&isIsolated=TRUE", {}), 200, doc([{
        "symbol": "BTCUSDT", "orderId": 41, "side": "BUY", "status": "FILLED", "executedQty": "1",
        "cummulativeQuoteQty": "100", "origQty": "1", "price": "100", "isIsolated": True}]))
    assert [u.scope for u in listed] == ["isolated:BTCUSDT"]


def test_the_orders_of_an_order_list_are_the_bot_that_sent_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Session 18's fifth review: an order list (OCO/OTO/OTOCO: a shape keyproxy does not read, allowed to a bot
    without trading limits) was never attributed, so `halt --bot B --cancel-orders` left its legs resting. The orders
    any 2xx answer to such a trade request names are the sending bot's now."""
    from keyproxy.exchanges.base import IncomingRequest
    from keyproxy.proxy.core import Core
    from keyproxy.proxy.outcome import Outcome
    from keyproxy.state import StateStore, client_key, placed_key
    store, rest = StateStore(tmp_path / "state.db"), Binance()
    core = Core(lambda: None, sequences=store)  # type: ignore[arg-type,return-value]
    path = "/api/v3/orderList/oco"
    body = b"symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=90000&belowType=STOP_LOSS" \
           b"&belowStopPrice=50000"
    facts = rest.facts(IncomingRequest("POST", path, "", {"content-type": "application/x-www-form-urlencoded"}, body),
                       rest.classify("POST", path))
    assert facts.action is None and facts.scope == "spot:BTCUSDT"
    legs = [{"symbol": "BTCUSDT", "orderId": 11, "clientOrderId": "a"}, {"symbol": "BTCUSDT", "orderId": 12,
                                                                          "clientOrderId": "b"}]
    answer = doc({"orderListId": 1, "symbol": "BTCUSDT", "orders": legs, "orderReports": [
        {**leg, "status": "NEW", "side": "SELL", "executedQty": "0", "cummulativeQuoteQty": "0"} for leg in legs]})
    outcome = Outcome(request_id="r1", unread_by=("lister", facts))
    route = SimpleNamespace(account=SimpleNamespace(info=SimpleNamespace(name="acct")),
                            endpoint=rest.classify("POST", path), adapter=rest)
    core.learn(route, OutboundRequest("POST", "https://api.binance.com", path, "", {}), 200, answer, outcome)  # type: ignore[arg-type]
    # its legs' client ids too (session 32's review: any bot cancelled a leg by its client id)
    assert store.placed_orders("acct") == {placed_key(k, "spot:BTCUSDT"): ("lister", "spot")
                                           for k in ("11", "12", client_key("a"), client_key("b"))}
    # an unread answer naming another bot's order (a keepPriority amend's) never makes it the sender's
    amended = doc({"amendedOrder": {"symbol": "BTCUSDT", "orderId": 11, "origQty": "0.5"}})
    outcome = Outcome(request_id="r2", unread_by=("other", facts))
    core.learn(route, OutboundRequest("PUT", "https://api.binance.com", path, "", {}), 200, amended, outcome)  # type: ignore[arg-type]
    assert store.placed_orders("acct")[placed_key("11", "spot:BTCUSDT")] == ("lister", "spot")
    store.record_placed_orders("acct", "older", "spot", ("21@BTCUSDT",), 1.0)  # as session 17 keyed it
    outcome = Outcome(request_id="r3", unread_by=("other", facts))
    core.learn(route, OutboundRequest("PUT", "https://api.binance.com", path, "", {}), 200,  # type: ignore[arg-type]
               doc({"amendedOrder": {"symbol": "BTCUSDT", "orderId": 21}}), outcome)
    assert placed_key("21", "spot:BTCUSDT") not in store.placed_orders("acct")  # an older key's owner keeps it
    store.close()


KRAKEN_CANCELLED = b'{"error":[],"result":{"count":1}}'


@pytest.mark.parametrize("adapter, path, sent, answer, freed", [
    (Kraken(), "/0/private/CancelOrder", b"nonce=1&txid=OYYYYY-AAAAA-BBBBBB", KRAKEN_CANCELLED, 0),
    (Kraken(), "/0/private/CancelOrder", b"nonce=1&txid=OXXXXX-AAAAA-BBBBBB", KRAKEN_CANCELLED, 1),
    (Kraken(), "/0/private/CancelOrder", b"nonce=1&cl_ord_id=y-1", KRAKEN_CANCELLED, 0),
    (Hyperliquid(), "/exchange", json.dumps({"action": {"type": "cancel", "cancels": [{"a": 0, "o": 77}]}}).encode(),
     b'{"status":"ok","response":{"type":"cancel","data":{"statuses":["success"]}}}', 0),
])
def test_a_cancel_whose_answer_names_no_order_is_checked_by_the_ids_it_sent(  # type: ignore[no-untyped-def]
        tmp_path, adapter, path: str, sent: bytes, answer: bytes, freed: int) -> None:
    """Session 18's sixth review: Kraken's and Hyperliquid's cancel answers name no order, so a cancel of another
    bot's order still freed a place under the canceller's max_open_orders. Read from the ids the cancel sent; a cancel
    by client id frees none (whose orders it cancelled is unknown)."""
    from keyproxy.proxy.core import Core
    from keyproxy.state import StateStore
    from keyproxy.usage import UsageBook
    store = StateStore(tmp_path / "state.db")
    usage = UsageBook(store)
    core = Core(lambda: None, sequences=store, usage=usage)  # type: ignore[arg-type,return-value]
    store.record_placed_orders("acct", "Y", "spot", ("OYYYYY-AAAAA-BBBBBB", "77"), 0.0)
    store.record_placed_orders("acct", "X", "spot", ("OXXXXX-AAAAA-BBBBBB",), 0.0)
    from keyproxy.exchanges.base import IncomingRequest
    form = {"content-type": "application/x-www-form-urlencoded"}
    facts = adapter.facts(IncomingRequest("POST", path, "", form, sent), adapter.classify("POST", path)) \
        if path.startswith("/0/") else RequestFacts(action="cancel", market="perp", symbol="BTC")
    before = usage.open_orders("X")
    usage.change_open_orders("X", facts.scope, +1)
    out = OutboundRequest("POST", "https://x", path, "", {"Content-Type": "application/x-www-form-urlencoded"
                                                          if path.startswith("/0/") else "application/json"}, sent)
    core.owners.track_open_orders("acct", adapter, ("X", facts), out, 200, answer)
    assert usage.open_orders("X") - before == 1 - freed
    store.close()
