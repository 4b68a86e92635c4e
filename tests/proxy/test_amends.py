"""Amends as the exchange settled them: a leg it refused inside a 2xx answer changes nothing in the book, a leg
it took moves the order, and an order ended by keyproxy's own reckoning rests again when the exchange took a
larger size (the session-14 review's open findings 1-3)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import pytest

from keyproxy.exchanges.base import OrderUpdate, OutboundRequest
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.binance_ws import BinanceWsApi
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.bybit_ws import BybitWsApi
from keyproxy.exchanges.coinbase import Coinbase
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.exchanges.hyperliquid_facts import hyperliquid_facts
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.kraken_ws import KrakenWsApi
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.okx_ws import OkxWsApi
from keyproxy.policy.decide import Counters, decide
from keyproxy.policy.model import RequestFacts, parse_policy
from keyproxy.proxy.markets import MarketBook
from keyproxy.proxy.positions import PositionBook
from keyproxy.proxy.risk import RiskDesk
from keyproxy.state import StateStore

D = Decimal
OUT = OutboundRequest("POST", "https://upstream", "/", "", {})


class Clock:
    now = 1_796_385_600.0

    def __call__(self) -> float:
        return self.now


def doc(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("adapter, answer, legs, expected", [
    (Binance(), {"orderId": 7, "origQty": "2"}, 1, (True,)),  # PUT /fapi/v1/order
    (Binance(), [{"orderId": 7}, {"code": -2013, "msg": "Order does not exist."}], 2, (True, False)),  # batchOrders
    (Binance(), {"transactTime": 1, "amendedOrder": {"orderId": 7, "origQty": "0.5"}}, 1, (True,)),  # keepPriority
    (Bybit(), {"retCode": 0, "result": {"orderId": "7"}}, 1, (True,)),
    (Bybit(), {"retCode": 110001, "retMsg": "order not exists or too late to replace", "result": {}}, 1, (False,)),
    (Bybit(), {"retCode": 0, "result": {"list": [{"orderId": "7"}, {"orderId": ""}]},
               "retExtInfo": {"list": [{"code": 0, "msg": "OK"}, {"code": 110001, "msg": "order not exists"}]}},
     2, (True, False)),
    (Okx(), {"code": "0", "data": [{"ordId": "7", "sCode": "0", "sMsg": ""}]}, 1, (True,)),
    (Okx(), {"code": "1", "data": [{"ordId": "7", "sCode": "51503", "sMsg": "Order modification failed"}]}, 1,
     (False,)),
    (Okx(), {"code": "2", "data": [{"ordId": "7", "sCode": "51503"}, {"ordId": "8", "sCode": "0"}]}, 2,
     (False, True)),
    (Kraken(), {"error": [], "result": {"status": "ok", "txid": "NEW", "originaltxid": "OLD"}}, 1, (True,)),
    (Kraken(), {"error": ["EOrder:Unknown order"]}, 1, (False,)),
    (Coinbase(), {"success": True, "errors": []}, 1, (True,)),
    (Coinbase(), {"success": False, "errors": [{"edit_failure_reason": "ORDER_NOT_FOUND"}]}, 1, (False,)),
    (Hyperliquid(), {"status": "ok", "response": {"type": "default"}}, 1, (True,)),
    (Hyperliquid(), {"status": "err", "response": "Cannot modify canceled or filled order"}, 1, (False,)),
    (Hyperliquid(), {"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"resting": {"oid": 7}}, {"error": "Order has invalid price."}]}}}, 2, (True, False)),
])
def test_each_exchange_says_which_amend_legs_it_took(adapter: object, answer: object, legs: int,
                                                     expected: tuple[bool, ...]) -> None:
    assert adapter.amend_verdicts(OUT, 200, doc(answer), legs) == expected  # type: ignore[attr-defined]


def test_websocket_answers_carry_the_same_verdicts() -> None:
    assert BybitWsApi(Bybit()).amend_verdicts(OUT, 200, doc(
        {"reqId": "1", "retCode": 0, "op": "order.amend", "data": {"orderId": "7"}}), 1) == (True,)
    assert BybitWsApi(Bybit()).amend_verdicts(OUT, 200, doc(
        {"reqId": "1", "retCode": 10001, "op": "order.amend", "data": {}}), 1) == (False,)
    assert OkxWsApi(Okx()).amend_verdicts(OUT, 200, doc(
        {"id": "1", "op": "amend-order", "code": "1", "data": [{"ordId": "7", "sCode": "51503"}]}), 1) == (False,)
    assert KrakenWsApi(Kraken()).amend_verdicts(OUT, 200, doc(
        {"method": "edit_order", "success": True, "result": {"order_id": "NEW", "original_order_id": "OLD"}}),
        1) == (True,)
    assert KrakenWsApi(Kraken()).amend_verdicts(OUT, 400, doc(
        {"method": "edit_order", "success": False, "error": "EOrder:Unknown order"}), 1) == (False,)
    ws = BinanceWsApi(Binance())
    assert ws.amend_verdicts(OUT, 200, doc({"id": "1", "status": 200, "result": {
        "amendedOrder": {"orderId": 7}}}), 1) == (True,)
    assert ws.amend_verdicts(OUT, 400, doc({"id": "1", "status": 400, "error": {"code": -2013}}), 1) == (False,)


def test_okx_websocket_partial_batches_are_answers_keyproxy_learns_from() -> None:
    """OKX answers a batch some of whose legs it placed with code "2" (partial success), over REST in a 200
    answer: the WebSocket read it as a refusal, so the legs it placed never entered the book and a bot could
    rest past its position cap by adding one bad leg to each batch."""
    okx = OkxWsApi(Okx())
    assert okx.ws_answer({"id": "1", "op": "batch-orders", "code": "2", "data": []})[1] == 200  # type: ignore[index]
    assert okx.ws_answer({"id": "1", "op": "batch-orders", "code": "1", "data": []})[1] == 400  # type: ignore[index]


SCOPE = "perp:BTC"


def hl_desk() -> tuple[RiskDesk, Hyperliquid]:
    desk = RiskDesk(None, MarketBook(Clock()), Clock())
    desk.book.placed("a", "bot", (RequestFacts(action="order", symbol="BTC", market="perp", side="buy",
                                               quantity=D("1"), price=D("60")),), ("4",))
    return desk, Hyperliquid()


def modify(side: str = "sell", size: str = "3", price: str = "120", oid: str = "4") -> tuple[str, RequestFacts]:
    return "bot", RequestFacts(action="amend", symbol="BTC", market="perp", side=side, quantity=D(size),
                               price=D(price), order_id=oid)


def test_a_modify_refused_inside_a_2xx_answer_leaves_the_order_as_it_was() -> None:
    """The review's finding 1: a turning Hyperliquid modify the exchange refused ("status": "err" in a 200)
    booked the buy as a sell at the new price, and the buy's fills were then dropped as the wrong side."""
    desk, hl = hl_desk()
    refused = doc({"status": "err", "response": "Cannot modify canceled or filled order"})
    desk.learn("a", hl, modify(), OUT, 200, refused, hl.placed_order_ids(200, refused))
    order = desk.book.orders["a"]["4"]
    assert (order.side, order.quantity, order.price) == ("buy", 1, 60)
    assert desk.book.open_quantity("a", "bot", SCOPE, "sell") == 0
    desk.book.apply("a", [OrderUpdate("4", "", "buy", None, None, D("0.5"), D("30"), False)])
    assert desk.book.position("bot", SCOPE) == D("0.5")


def test_a_modify_the_exchange_took_turns_the_order_and_its_size_is_what_rests() -> None:
    """Taken: the order is a sell at the new price; a modify's size is what rests after it (finding 3: read so,
    keyproxy never counts less than rests), so 0.5 filled and a modify to 3 leaves 3 to fill, not 2.5."""
    desk, hl = hl_desk()
    desk.book.apply("a", [OrderUpdate("4", "", "buy", None, None, D("0.5"), D("30"), False)])
    took = doc({"status": "ok", "response": {"type": "default"}})
    desk.learn("a", hl, modify(), OUT, 200, took, hl.placed_order_ids(200, took))
    assert desk.book.open_quantity("a", "bot", SCOPE, "buy") == 0
    assert desk.book.open_quantity("a", "bot", SCOPE, "sell") == 3
    view = desk.amended("a", "bot", modify(size="2")[1], hl)
    assert view[0] is not None and view[0].filled == 0  # the check reads a new size as all still to fill


def test_an_update_on_the_other_side_is_the_exchanges_word_on_where_the_order_rests() -> None:
    """A book that holds an order on the wrong side (an answer keyproxy could not read) drops no fill: the
    exchange's side wins, the resting size moves with it and the fill moves the position the right way."""
    book = PositionBook(None, Clock())
    book.placed("a", "bot", (RequestFacts(action="order", symbol="BTC", market="perp", side="buy",
                                          quantity=D("2"), price=D("60")),), ("4",))
    book.apply("a", [OrderUpdate("4", "", "sell", None, None, D("0.5"), D("60"), False)])
    assert book.position("bot", SCOPE) == D("-0.5")
    assert (book.open_quantity("a", "bot", SCOPE, "buy"), book.open_quantity("a", "bot", SCOPE, "sell")) == (0, 1.5)


def test_a_fill_of_the_larger_size_before_the_amends_answer_leaves_the_rest_resting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Finding 2: a buy of 1 amended to 2; the stream's fill of 1.5 came before the amend's answer, so the order
    ended at the 1 keyproxy held and the answer, finding it ended, changed nothing: 0.5 rested uncounted.
    An order ended only by keyproxy's reckoning now rests again when the exchange took a larger size, also
    after a restart; one the exchange said ended stays ended."""
    store = StateStore(tmp_path / "s.db")
    desk = RiskDesk(store, MarketBook(Clock()), Clock())
    spot = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=D("1"), price=D("100"))
    desk.book.placed("a", "bot", (spot, spot), ("1", "2"))
    fills = [OrderUpdate(oid, "spot:BTCUSDT", "buy", None, None, D("1.5"), D("150"), False) for oid in ("1", "2")]
    desk.book.apply("a", fills)
    assert desk.book.orders["a"]["1"].final and desk.book.open_quantity("a", "bot", "spot:BTCUSDT", "buy") == 0
    store.close()
    store = StateStore(tmp_path / "s.db")
    desk = RiskDesk(store, MarketBook(Clock()), Clock())  # the ended-by-reckoning mark survives a restart
    okx = Okx()
    took = doc({"code": "0", "data": [{"ordId": "1", "sCode": "0"}]})
    grow = RequestFacts(action="amend", symbol="BTCUSDT", market="spot", quantity=D("2"), order_id="1")
    desk.learn("a", okx, ("bot", grow), OUT, 200, took, okx.placed_order_ids(200, took))
    assert not desk.book.orders["a"]["1"].final
    assert desk.book.open_quantity("a", "bot", "spot:BTCUSDT", "buy") == D("0.5")
    # the stream states the larger size itself: the order is not ended by the fill in the first place
    desk.book.apply("a", [OrderUpdate("2", "spot:BTCUSDT", "buy", None, D("3"), D("1.5"), D("150"), False)])
    assert desk.book.open_quantity("a", "bot", "spot:BTCUSDT", "buy") == D("2")
    desk.book.apply("a", [OrderUpdate("1", "spot:BTCUSDT", "buy", None, None, D("1.5"), D("150"), True)])  # cancelled
    assert desk.book.open_quantity("a", "bot", "spot:BTCUSDT", "buy") == D("1.5")
    desk.learn("a", okx, ("bot", grow), OUT, 200, took, ())  # the exchange said it ended: it stays ended
    assert desk.book.orders["a"]["1"].final and desk.book.position("bot", "spot:BTCUSDT") == 3
    store.close()


# session 17's review: what an amend may not claim, and what a modify's answer says at once
NOW = 1_796_385_600.0


def _policy_bot(name: str, **policy: str):  # type: ignore[no-untyped-def]
    return SimpleNamespace(info=SimpleNamespace(name=name), policy=parse_policy({"scopes": "read,trade", **policy}))


def _decided(desk: RiskDesk, bot, facts: RequestFacts, adapter: object):  # type: ignore[no-untyped-def]
    risk = desk.view("a", bot, None, facts, NOW, adapter)
    return decide(facts, "trade", bot.policy, Counters(), NOW, bot=bot.info.name, account="a", risk=risk, prices={})


def _hl_modify(oid: int, size: str) -> dict[str, object]:
    return {"type": "batchModify", "modifies": [{"oid": oid, "order": {
        "a": 0, "b": True, "p": "70000", "s": size, "r": False, "t": {"limit": {"tif": "Gtc"}}}}]}


def test_an_order_keyproxy_does_not_hold_is_not_amended_by_a_bot_with_a_loss_limit() -> None:
    """Its fills would be nobody's, so the loss limit would never see them: refused as to a capped bot (a loss
    limit not yet reached used to let it pass), a new price alone too (a price moves a loss, not a size)."""
    clock = Clock()
    desk, bot = RiskDesk(None, MarketBook(clock), clock), _policy_bot("lossy", max_daily_loss="10")
    resize = hyperliquid_facts({"action": _hl_modify(9999, "50"), "nonce": 1})
    decision = _decided(desk, bot, resize, Hyperliquid())
    assert not decision.allow and decision.code == "loss_limit" and "does not hold order 9999" in decision.detail
    assert not _decided(desk, bot, _price_only(resize), Hyperliquid()).allow
    free = _policy_bot("free")
    assert _decided(desk, free, resize, Hyperliquid()).allow  # nothing binds a bot without limits


def _price_only(facts: RequestFacts) -> RequestFacts:
    return replace(facts, orders=tuple(replace(o, quantity=None) for o in facts.placed()))


def test_a_batch_modify_that_filled_under_a_new_oid_books_the_fill() -> None:
    """A Hyperliquid modify answered `filled` under a new oid: the fill moves the position at once (it used to
    be booked as resting, its fill waiting for a stream event or a reconciliation)."""
    clock = Clock()
    desk, hl = RiskDesk(None, MarketBook(clock), clock), Hyperliquid()
    leg = RequestFacts(action="order", symbol="#0", market="perp", side="buy", quantity=D("0.5"), price=D("60"))
    desk.book.placed("a", "capped", (leg,), ("1",))
    action = _hl_modify(1, "0.5")
    facts = hyperliquid_facts({"action": action, "nonce": 1})
    answer = doc({"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"filled": {"oid": 2, "totalSz": "0.5", "avgPx": "80"}}]}}})
    out = OutboundRequest("POST", "https://h", "/exchange", "", {}, doc({"action": action}))
    desk.learn("a", hl, ("capped", facts), out, 200, answer, hl.placed_order_ids(200, answer))
    assert desk.book.orders["a"]["1"].final
    new = desk.book.orders["a"]["2"]
    assert new.final and new.filled == D("0.5")
    assert desk.book.position("capped", "perp:#0") == D("0.5")


@pytest.mark.parametrize("adapter, sets", [(Binance(), False), (BinanceWsApi(Binance()), False), (Bybit(), False),
                                           (Okx(), False), (Kraken(), False), (Hyperliquid(), True)])
def test_only_an_amend_that_restates_the_whole_order_may_make_it_reduce_only(adapter: object, sets: bool) -> None:
    assert adapter.amend_sets_reduce_only is sets  # type: ignore[attr-defined]
    facts = RequestFacts(action="amend", orders=(RequestFacts(action="amend", reduce_only=True),), reduce_only=True)
    assert not any(f.reduce_only for f in (facts.not_reduce_only(), *facts.not_reduce_only().orders))


@pytest.mark.parametrize("move, code", [("price=20100", "self_cross"), ("priceMatch=OPPONENT", "self_cross"),
                                        ("price=20000", None)])
def test_an_amend_the_book_prices_is_checked_as_a_market_order(move: str, code: str | None) -> None:
    """Session 18's third review: a Binance Modify Order with `priceMatch` names no price, so it was checked at the
    price the book held: the same size passed as a shrink and skipped the crossing check, and Binance moved the
    bid onto another bot's ask. A price the book sets is a market order's: it may cross anything."""
    from keyproxy.exchanges.base import IncomingRequest
    from keyproxy.proxy.positions import book_id
    now, scope, rest = 1_796_385_600.0, "usdm:BTCUSDT", Binance()
    desk = RiskDesk(None, MarketBook(lambda: now), lambda: now)
    def leg(side: str, price: str) -> RequestFacts:
        return RequestFacts(action="order", symbol="BTCUSDT", market="usdm", side=side, quantity=Decimal("0.01"),
                            price=Decimal(price))
    desk.book.placed("a", "maker", (leg("sell", "20100"),), (book_id("1", scope),))  # another bot's ask
    desk.book.placed("a", "taker", (leg("buy", "20000"),), (book_id("9", scope),))
    facts = rest.facts(IncomingRequest("PUT", "/fapi/v1/order", f"symbol=BTCUSDT&orderId=9&side=BUY&quantity=0.01"
                                       f"&{move}", {}), rest.classify("PUT", "/fapi/v1/order"))
    taker = SimpleNamespace(info=SimpleNamespace(name="taker"), policy=parse_policy({"scopes": "read,trade"}))
    risk = desk.view("a", taker, None, facts, now, rest)  # type: ignore[arg-type]
    d = decide(facts, "trade", taker.policy, Counters(), now, bot="taker", account="a", risk=risk,
               prices={"BTCUSDT": Decimal("20050")})
    assert (d.allow, d.code or None) == (code is None, code)
