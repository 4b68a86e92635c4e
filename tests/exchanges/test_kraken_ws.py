"""Kraken WebSocket v2 frames are valued like the REST calls they mirror, and a token answer never relays a
real token (kraken_ws.py, Kraken.swap_stream_token)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from keyproxy.exchanges.base import BadRequest, IncomingRequest, OutboundRequest, RealKey, SignContext
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.kraken_facts import kraken_market_names
from keyproxy.exchanges.kraken_ws import KrakenWsApi
from keyproxy.policy.model import RequestFacts
from keyproxy.secret import Secret

REST = Kraken()
WS = KrakenWsApi(REST)


def frame(method: str, **params: Any) -> IncomingRequest:
    return IncomingRequest(method, "/v2", "", {},
                           json.dumps({"method": method, "params": params, "req_id": 1}).encode())


PAIRS = kraken_market_names("/0/public/AssetPairs", json.dumps({"result": {
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD"}}}).encode())


def facts(method: str, **params: Any) -> RequestFacts:
    req = frame(method, **params).replace(markets=PAIRS)
    endpoint = WS.classify_request(req) or WS.classify(method, "/v2")
    assert endpoint is not None
    return WS.facts(req, endpoint)


def test_add_order_is_valued_by_what_kraken_executes() -> None:
    limit = facts("add_order", order_type="limit", side="buy", order_qty=0.5, limit_price=30000, symbol="BTC/USD")
    assert (limit.action, limit.side, limit.quantity, limit.price) == ("order", "BUY", Decimal("0.5"), Decimal("30000"))
    market = facts("add_order", order_type="market", side="buy", order_qty=1, limit_price=1, symbol="BTC/USD")
    assert market.price is None and market.conflict  # a decoy price on a market order is not believed
    cash = facts("add_order", order_type="market", side="buy", cash_order_qty=250, symbol="BTC/USD")
    assert (cash.quantity, cash.quote_quantity) == (None, Decimal("250"))
    stop = facts("add_order", order_type="stop-loss-limit", side="sell", order_qty=1, limit_price=90,
                 triggers={"price": 100}, symbol="BTC/USD")
    assert stop.price == Decimal("90")
    trailing = facts("add_order", order_type="trailing-stop", side="sell", order_qty=1, symbol="BTC/USD",
                     triggers={"price": 2, "price_type": "pct"})
    assert trailing.price is None and trailing.conflict  # an offset: unvalued, so refused under a notional cap
    for limit_type in ({}, {"limit_price_type": "static"}):  # a trailing stop's limit is an offset however typed
        zero = facts("add_order", order_type="trailing-stop-limit", side="buy", order_qty=50, limit_price=0,
                     triggers={"price": 100, "price_type": "quote"}, symbol="BTC/USD", **limit_type)
        assert zero.price is None and zero.conflict, zero  # session 25's review: valued at 0 under a cap of 100
    buy_stop = facts("add_order", order_type="stop-loss", side="buy", order_qty=10, triggers={"price": 1},
                     symbol="BTC/USD")
    assert (buy_stop.price, buy_stop.trigger_price) == (None, Decimal("1"))  # market once triggered: no limit
    both = facts("add_order", order_type="market", side="buy", order_qty=100, cash_order_qty=1, symbol="BTC/USD")
    assert both.conflict  # which size Kraken executes is undocumented: valued by neither
    legs = facts("batch_add", symbol="BTC/USD", orders=[
        {"order_type": "limit", "side": "buy", "order_qty": 1, "limit_price": 10},
        {"order_type": "limit", "side": "buy", "order_qty": 50, "cash_order_qty": 1, "limit_price": 10}]).orders
    assert legs[0].conflict is None and legs[1].conflict
    margin = facts("add_order", order_type="limit", side="buy", order_qty=1, limit_price=5, symbol="BTC/USD",
                   margin=True, reduce_only=True)
    assert margin.borrows and margin.leverage == Decimal("5") and margin.reduce_only


def test_batches_cancels_and_reads() -> None:
    batch = facts("batch_add", symbol="BTC/USD", orders=[
        {"order_type": "limit", "side": "buy", "order_qty": 1, "limit_price": 10},
        {"order_type": "limit", "side": "sell", "order_qty": 2, "limit_price": 20}])
    assert [(o.quantity, o.price) for o in batch.orders] == [(Decimal(1), Decimal(10)), (Decimal(2), Decimal(20))]
    with pytest.raises(BadRequest):
        facts("batch_add", symbol="BTC/USD", orders=[{"order_type": "limit"}])  # Kraken: 2 to 15 orders
    assert facts("cancel_order", order_id=["O1"]).action == "cancel"
    assert facts("cancel_all").action == "cancel"
    assert facts("amend_order", order_id="O1", order_qty=100).order_id == "O1"  # AmendOrder's, as on REST
    edit = facts("edit_order", order_id="O1", symbol="BTC/USD", order_qty=1, limit_price=7,
                 side="buy")
    assert (edit.action, edit.order_id) == ("amend", "O1")
    assert facts("subscribe", channel="executions").action == "other"
    assert WS.classify_request(frame("subscribe", channel="ticker", symbol=["BTC/USD"])).cls.value == "public"
    assert WS.classify_request(frame("subscribe", channel="balances")) is None  # read: a bot's token needed
    assert WS.classify("withdraw", "/v2") is None


def test_the_virtual_token_is_swapped_byte_for_byte() -> None:
    req = frame("add_order", order_type="limit", side="buy", order_qty=0.1, limit_price=10, symbol="BTC/USD",
                token="kpv-abc")
    key = RealKey("k", "hmac", secret=Secret("c2VjcmV0"))
    ctx = SignContext("wss://ws-auth.kraken.com", "production", 0, None, "REAL/token+1")
    out = WS.sign(req, key, WS.classify("add_order", "/v2"), ctx)  # type: ignore[arg-type]
    assert out.body == req.body.replace(b'"kpv-abc"', b'"REAL/token+1"')
    with pytest.raises(BadRequest):  # the token twice (once as a decoy elsewhere): refused
        WS.sign(frame("add_order", token="kpv-abc", cl_ord_id="kpv-abc"), key, WS.classify("add_order", "/v2"),
                ctx)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        WS.presented_stream_token(frame("subscribe", channel="executions", token=5))
    # the token escaped in params.token and plain elsewhere: the one plain copy is not the credential's place
    escaped = IncomingRequest("add_order", "/v2", "", {}, b'{"method":"add_order","req_id":1,"params":'
                              b'{"token":"kpv\\u002dabc","cl_ord_id":"kpv-abc"}}')
    assert WS.presented_stream_token(escaped) == "kpv-abc"
    with pytest.raises(BadRequest):
        WS.sign(escaped, key, WS.classify("add_order", "/v2"), ctx)  # type: ignore[arg-type]


def test_a_token_answer_relays_only_a_virtual_token() -> None:
    minted: list[str] = []

    def mint(real: str) -> str:
        minted.append(real)
        return "kpv-1"
    answer = b'{"error":[],"result":{"token":"REAL","expires":900}}'
    swapped = REST.swap_stream_token(answer, mint)
    assert json.loads(swapped) == {"error": [], "result": {"token": "kpv-1", "expires": 900}} and minted == ["REAL"]
    assert REST.swap_stream_token(b'{"error":["EGeneral:Permission denied"]}', mint) == \
        b'{"error":["EGeneral:Permission denied"]}'
    for unreadable in (b"REAL", b'{"result":"REAL"}', b'{"result":{"token":"REAL"},"x":'):
        assert b"REAL" not in REST.swap_stream_token(unreadable, mint)
    assert REST.grants_stream_token("/0/private/GetWebSocketsToken")
    assert not REST.grants_stream_token("/0/private/Balance")


def test_answers_confirm_open_orders() -> None:
    placed = facts("add_order", order_type="limit", side="buy", order_qty=1, limit_price=10, symbol="BTC/USD")
    out = OutboundRequest("add_order", "", "/v2", "", {}, json.dumps({"method": "add_order", "params": {}}).encode())
    ok = json.dumps({"method": "add_order", "success": True, "result": {"order_id": "O1"}}).encode()
    assert WS.order_book_change(out, 200, ok, placed).opened == (placed.scope,)
    assert WS.order_book_change(out, 400, b'{"success":false}', placed).opened == ()
    # no answer read (the socket ended with the frame on its way: `Core.fate_unknown`): counted, never understated
    assert WS.order_book_change(out, 200, b"", placed).opened == (placed.scope,)
    cancel_all = OutboundRequest("cancel_all", "", "/v2", "", {}, b'{"method":"cancel_all"}')
    assert WS.order_book_change(cancel_all, 200, b'{"result":{"count":3}}', RequestFacts(action="cancel")).reset


def _frame_facts(method: str, params: dict):  # type: ignore[no-untyped-def,type-arg]
    from keyproxy.exchanges.base import Endpoint, EndpointClass, IncomingRequest
    from keyproxy.exchanges.kraken import Kraken
    from keyproxy.exchanges.kraken_ws import KrakenWsApi

    body = json.dumps({"method": method, "req_id": 1, "params": {**params, "token": "kpv-x"}}).encode()
    return KrakenWsApi(Kraken()).facts(IncomingRequest(method, "/v2", "", {}, body),
                                       Endpoint(EndpointClass.TRADE, f"ws {method}"))


def test_what_session_27s_review_found_unread_in_a_frame_is_read_or_refused() -> None:
    """An edit_order's new trigger (it names no order type) went unread and passed the band; an order type with
    capitals dropped its trigger; an amend naming its own order_id and another bot's cl_ord_id was checked by the
    first; `margin: 1` read as false."""
    edited = _frame_facts("edit_order", {"order_id": "OAAAAA-BBBBB-CCCCCC", "symbol": "BTC/USD", "order_qty": 1,
                                         "triggers": {"price": 600000}})
    assert edited.action == "amend" and edited.trigger_price == 600000
    # without a limit it trades at market once it fires: no limit read from its trigger (session 32's review)
    assert edited.price is None
    limited = _frame_facts("edit_order", {"order_id": "OAAAAA-BBBBB-CCCCCC", "symbol": "BTC/USD", "order_qty": 1,
                                          "triggers": {"price": 600000}, "limit_price": 600100})
    assert (limited.trigger_price, limited.price) == (600000, 600100)
    stop = {"order_type": "Stop-Loss", "side": "buy", "order_qty": 1, "symbol": "BTC/USD", "triggers": {"price": 1}}
    assert _frame_facts("add_order", stop).trigger_price == 1
    with pytest.raises(BadRequest, match="not both"):
        _frame_facts("amend_order", {"order_id": "OMINE1-AAAAA-BBBBBB", "cl_ord_id": "theirs", "order_qty": 50})
    with pytest.raises(BadRequest, match="no order_type"):
        _frame_facts("edit_order", {"order_id": "OAAAAA-BBBBB-CCCCCC", "order_type": "limit", "symbol": "BTC/USD",
                                    "order_qty": 1, "triggers": {"price": 600000}})
    for flag in ("margin", "reduce_only", "post_only"):
        with pytest.raises(BadRequest, match=flag):
            _frame_facts("add_order", {"order_type": "limit", "side": "buy", "order_qty": 1, "limit_price": 100,
                                       "symbol": "BTC/USD", flag: 1})


def test_frame_ids_are_bounded() -> None:
    """An id the exchange could echo otherwise (rounded, cut) would never find its answer, and the order's count and
    owner would lapse (session 27's review): integers to 2^53, strings to 64 characters; larger is refused."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.binance_ws import BinanceWsApi
    from keyproxy.exchanges.kraken_ws import parse

    assert parse(json.dumps({"method": "ping", "req_id": 2 ** 53}))["req_id"] == 2 ** 53
    huge = "9" * 5000  # past Python's own limit on reading an integer: a clear refusal, not a 500
    for bad in (str(2 ** 53 + 1), str(-(2 ** 53) - 1), huge):
        with pytest.raises(BadRequest):
            parse('{"method": "ping", "req_id": %s}' % bad)
    ws = BinanceWsApi(Binance())
    assert ws.ws_frame(json.dumps({"id": "x" * 64, "method": "ping"})) == ("x" * 64, "ping")
    for bad_id in (json.dumps("x" * 65), str(2 ** 53 + 1), huge):
        with pytest.raises(BadRequest):
            ws.ws_frame('{"id": %s, "method": "ping"}' % bad_id)


def test_self_trade_prevention_that_cancels_the_resting_order_is_marked() -> None:
    """Session 32's review: `stp_type` cancel_oldest / cancel_both make Kraken cancel the resting order the new one
    meets, which may be another bot's (the default, cancel_newest, cancels the bot's own new order)."""
    base = {"order_type": "limit", "side": "buy", "order_qty": 0.5, "limit_price": 30000, "symbol": "BTC/USD"}
    assert not facts("add_order", **base).cancels_met
    assert not facts("add_order", **base, stp_type="cancel_newest").cancels_met
    assert facts("add_order", **base, stp_type="cancel_oldest").cancels_met
    assert facts("add_order", **base, stp_type="cancel_both").cancels_met


def test_every_dialect_refuses_a_lone_surrogate_and_unbounded_or_unknown_members() -> None:
    """Session 36's review: a `\\ud800` escape alone (valid JSON, no character) in a frame's client id passed the
    decision and failed encoding the frame again (an internal error, over and over); a Bybit reqId had no integer
    bound (Binance's and Kraken's ids do: an id a float reader rounds never finds its answer); a Coinbase frame's
    unknown members went upstream beside the real key's JWT. Each is now a clear BadRequest; escaped characters
    that are characters (a surrogate pair) still pass."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.binance_ws import BinanceWsApi
    from keyproxy.exchanges.bybit import Bybit
    from keyproxy.exchanges.bybit_ws import BybitWsApi
    from keyproxy.exchanges.coinbase_ws import parse as coinbase_parse
    from keyproxy.exchanges.hyperliquid_facts import parse_exchange_body
    from keyproxy.exchanges.kraken_ws import parse as kraken_parse
    from keyproxy.exchanges.okx_ws import parse as okx_parse

    lone, pair = "\\ud800a", "\\ud83d\\ude00"
    kraken = '{"method": "add_order", "req_id": 1, "params": {"cl_ord_id": "%s"}}'
    okx = '{"id": "1", "op": "order", "args": [{"clOrdId": "%s"}]}'
    binance = '{"id": "1", "method": "order.place", "params": {"newClientOrderId": "%s"}}'
    bybit = '{"reqId": "1", "op": "order.create", "args": [{"orderLinkId": "%s"}]}'
    hyperliquid = b'{"action": {"type": "order", "orders": [{"c": "%s"}]}, "nonce": 1}'
    for text in (kraken % pair, okx % pair):
        (kraken_parse if "req_id" in text else okx_parse)(text)  # an escaped character passes
    assert BinanceWsApi(Binance()).ws_frame(binance % pair) == ("1", "order.place")
    for refuse in (lambda: kraken_parse(kraken % lone), lambda: okx_parse(okx % lone.upper().replace("\\U", "\\u")),
                   lambda: BinanceWsApi(Binance()).ws_frame(binance % lone),
                   lambda: BybitWsApi(Bybit()).ws_frame(bybit % lone),
                   lambda: parse_exchange_body(hyperliquid.replace(b"%s", lone.encode()))):
        with pytest.raises(BadRequest, match="lone UTF-16 surrogate"):
            refuse()
    bybit_ws = BybitWsApi(Bybit())
    assert bybit_ws.ws_frame(json.dumps({"reqId": 2 ** 53, "op": "order.create", "args": []}))[1] == "order.create"
    for bad in (2 ** 53 + 1, -(2 ** 53) - 1):
        with pytest.raises(BadRequest, match="at most 2\\^53"):
            bybit_ws.ws_frame(json.dumps({"reqId": bad, "op": "order.create", "args": []}))
    frame = {"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"], "jwt": "x"}
    assert coinbase_parse(json.dumps(frame))["channel"] == "user"
    for extra in ({"api_key": "k"}, {"signature": "s"}, {"Channel": "level2"}):
        with pytest.raises(BadRequest):
            coinbase_parse(json.dumps(frame | extra))


def test_no_form_of_the_real_token_reaches_the_bot() -> None:
    """Session 36's review: the real token was taken out of the exchange's messages as written only; JSON may write
    a base64 token's `/` as `\\/`, and that form went on to the bot."""
    from keyproxy.proxy.ws_connection import without_token

    real = "Ab/cD+ef/GH="
    echoed = '{"token": "%s", "escaped": "%s"}' % (real, real.replace("/", "\\/"))  # as an exchange may write it
    assert json.loads(echoed)["escaped"] == real
    scrubbed = without_token(echoed, real)
    assert "cD+ef" not in scrubbed and "Ab" not in scrubbed
    assert without_token('{"channel": "executions"}', real) == '{"channel": "executions"}'



@pytest.mark.parametrize("body", [
    b'{"action": {"type": "order", "orders": [{"c": "\\ud800a"}]}, "nonce": 1}',
    '{"action": {"type": "order", "orders": [{"c": "\udcffa"}]}, "nonce": 1}'.encode("utf-8", "surrogatepass"),
    '{"action": {"type": "order", "orders": [{"c": "a"}]}, "nonce": 1}'.encode("utf-16-le"),
])
def test_a_hyperliquid_body_with_a_surrogate_in_any_form_is_refused(body: bytes) -> None:
    """Session 36's regression review: raw surrogate bytes and a UTF-16 body passed the escape check (json.loads reads
    both from bytes); the body is decoded strictly as UTF-8 first, and the pipeline refuses non-UTF-8 bodies."""
    from keyproxy.exchanges.hyperliquid_facts import parse_exchange_body

    with pytest.raises(BadRequest):
        parse_exchange_body(body)


def test_a_request_body_or_query_must_be_text_every_step_can_carry() -> None:
    from keyproxy.exchanges.base import text_problem

    assert text_problem(b'{"c": "\\ud83d\\ude00"}') is None  # an escaped pair is a character
    assert text_problem("symbol=BTCUSDT&price=1") is None
    for bad in (b'{"c": "x\\ud800"}', b'{"c": "\\uDC00x"}', b'{"c": "\\ud800\\ud800"}', b"\xed\xa0\x80",
                "batchOrders=%5B%7B%22c%22%3A%22%5Cud800%22%7D%5D", "batchOrders=%5b%7b%22c%22%3a%22%5cud800%22%7d%5d"):
        assert text_problem(bad) is not None, bad
