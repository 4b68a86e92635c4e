"""Pre-trade risk controls in the pure decision: price bands and repeated orders (docs/risk.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from keyproxy.policy.decide import Counters, Decision, decide
from keyproxy.policy.model import (
    AccountLimits, BotPolicy, PolicyError, RequestFacts, parse_account_limits, parse_policy,
)

D = Decimal
NOON = 1_795_608_000.0


def policy(**kw) -> BotPolicy:  # type: ignore[no-untyped-def]
    return parse_policy({"scopes": "read,trade", **kw})


def order(**kw) -> RequestFacts:  # type: ignore[no-untyped-def]
    return RequestFacts(**{"action": "order", "symbol": "BTCUSDT", "market": "spot", "side": "BUY",
                           "order_type": "LIMIT", "quantity": D("0.01"), "price": D("50000"), **kw})


def run(facts: RequestFacts, pol: BotPolicy, refs: dict[str, Decimal] | None = None, **kw) -> Decision:  # type: ignore[no-untyped-def]
    return decide(facts, "trade", pol, kw.pop("counters", Counters()), kw.pop("now", NOON), bot="b", account="a",
                  references=refs, **kw)


REF = {"BTCUSDT": D("50000")}


@pytest.mark.parametrize("facts, allow", [
    (order(price=D("52500")), True),  # exactly 5% above: the edge of the band
    (order(price=D("52500.01")), False),
    (order(price=D("60000")), False),  # the fat finger: 20% above
    (order(price=D("10000")), True),  # a buy far below the market never fills at a bad price
    (order(side="SELL", price=D("47500")), True),
    (order(side="SELL", price=D("47499.99")), False),
    (order(side="sell", price=D("90000")), True),
    (order(side=None, price=D("60000")), False),  # side unknown: both edges apply
    (order(side=None, price=D("40000")), False),
    (order(price=None, order_type="MARKET"), True),  # the exchange prices it: nothing to band
    (order(price=None, order_type="STOP_LOSS", trigger_price=D("46000")), False),  # a trigger 8% away
    (order(price=None, order_type="STOP_LOSS", trigger_price=D("48000")), True),
    (order(price=D("60000"), reduce_only=True), True),  # getting out always passes
])
def test_price_band(facts: RequestFacts, allow: bool) -> None:
    d = run(facts, policy(price_band_pct="5"), REF)
    assert d.allow is allow, d.detail
    if not allow:
        assert d.code == "price_out_of_band" and "reference price 50000" in d.detail


def test_band_without_a_reference_refuses_and_says_why() -> None:
    d = run(order(), policy(price_band_pct="5"), {})
    assert (d.allow, d.code) == (False, "reference_unavailable")
    assert "younger than 10 s" in d.detail


def test_account_default_band_and_the_bots_own_wins() -> None:
    limits = AccountLimits(price_band_pct=D("1"), reference_max_age=30)
    assert run(order(price=D("50600")), policy(), REF, account_limits=limits).code == "price_out_of_band"
    assert run(order(price=D("50600")), policy(price_band_pct="2"), REF, account_limits=limits).allow
    assert "younger than 30 s" in run(order(), policy(), {}, account_limits=limits).detail


def test_batch_legs_are_each_banded() -> None:
    batch = RequestFacts(action="order", orders=(order(), order(symbol="ETHUSDT", price=D("9000"))))
    d = run(batch, policy(price_band_pct="5"), {**REF, "ETHUSDT": D("3000")})
    assert d.code == "price_out_of_band" and "ETHUSDT" in d.detail


def test_no_band_no_reference_needed() -> None:
    assert run(order(price=D("1000000")), policy(), {}).allow


def test_duplicate_orders_refused_from_the_next_repeat_within_the_window() -> None:
    pol, counters = policy(duplicate_orders="3", duplicate_window_seconds="60"), Counters()
    results = []
    for i in range(5):
        d = run(order(), pol, counters=counters, now=NOON + i)
        if d.allow:
            counters.remember("b", d.orders, NOON + i)
        results.append(d.code or "ok")
    assert results == ["ok", "ok", "ok", "duplicate_order", "duplicate_order"]
    # another price, another order; trailing zeros do not make a new one
    assert run(order(price=D("50001")), pol, counters=counters, now=NOON + 5).allow
    assert run(order(quantity=D("0.0100")), pol, counters=counters, now=NOON + 5).code == "duplicate_order"
    # a reduce-only repeat (getting out) passes; the window passes and the order is allowed again
    assert run(order(reduce_only=True), pol, counters=counters, now=NOON + 5).allow
    assert run(order(), pol, counters=counters, now=NOON + 61).allow


def test_duplicates_are_per_bot() -> None:
    pol, counters = policy(duplicate_orders="1"), Counters()
    d = run(order(), pol, counters=counters)
    counters.remember("b", d.orders, NOON)
    assert run(order(), pol, counters=counters).code == "duplicate_order"
    assert decide(order(), "trade", pol, counters, NOON, bot="other", account="a").allow


@pytest.mark.parametrize("doc, message", [
    ({"price_band_pct": "0"}, "price_band_pct: must be a positive number"),
    ({"price_band_pct": "-3"}, "price_band_pct: must be a positive number"),
    ({"price_band_pct": "100"}, "price_band_pct: must be a percentage above 0 and below 100"),
    ({"price_band_pct": "five"}, "price_band_pct: must be a positive number"),
    ({"duplicate_orders": "0"}, "duplicate_orders: must be a positive number"),
    ({"duplicate_orders": "2000"}, "duplicate_orders: must be 1 to 1000"),
    ({"duplicate_window_seconds": "0"}, "duplicate_window_seconds: must be a positive number"),
    ({"duplicate_window_seconds": "90000"}, "duplicate_window_seconds: must be 1 to 86400 seconds"),
])
def test_bad_risk_limits_name_the_key(doc: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(doc)


@pytest.mark.parametrize("doc, message", [
    ({"price_band_pct": 0}, "price_band_pct: must be a positive number"),
    ({"reference_max_age": 0}, "reference_max_age: must be a positive number"),
    ({"reference_max_age": 301}, "reference_max_age: must be 1 to 300 seconds"),
])
def test_bad_account_risk_limits(doc: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_account_limits(doc)


def test_policy_round_trips_through_json() -> None:
    pol = policy(price_band_pct="2.5", duplicate_orders="4", duplicate_window_seconds="30")
    assert BotPolicy.from_json(pol.to_json()) == pol


def test_each_exchange_reads_the_trigger_price_the_band_checks() -> None:
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.bybit import Bybit
    from keyproxy.exchanges.kraken import Kraken

    def facts(adapter, method: str, path: str, query: str = "", body: str = "", ctype: str = "") -> RequestFacts:  # type: ignore[no-untyped-def]
        from keyproxy.exchanges.base import IncomingRequest
        req = IncomingRequest(method, path, query, {"content-type": ctype} if ctype else {}, body.encode())
        return adapter.facts(req, adapter.classify(method, path))  # type: ignore[no-any-return]

    binance = facts(Binance(), "POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&quantity=1"
                    "&price=40000&stopPrice=41000&timeInForce=GTC")
    assert (binance.price, binance.trigger_price) == (D("40000"), D("41000"))
    bybit = facts(Bybit(), "POST", "/v5/order/create", body='{"category":"linear","symbol":"BTCUSDT","side":"Buy",'
                  '"orderType":"Limit","qty":"1","price":"100","triggerPrice":"99"}', ctype="application/json")
    assert (bybit.price, bybit.trigger_price) == (D("100"), D("99"))
    form = "application/x-www-form-urlencoded"
    kraken = facts(Kraken(), "POST", "/0/private/AddOrder",
                   body="nonce=1&pair=XBTUSD&type=sell&ordertype=stop-loss-limit&volume=1&price=41000&price2=40000",
                   ctype=form)
    assert (kraken.price, kraken.trigger_price) == (D("40000"), D("41000"))
    relative = facts(Kraken(), "POST", "/0/private/AddOrder", body="nonce=1&pair=XBTUSD&type=buy&ordertype=limit"
                     "&volume=1&price=%2B20%25", ctype=form)  # price "+20%": set by the market
    assert relative.price is None and relative.conflict is not None
    d = run(relative, policy(price_band_pct="5"), {"XBTUSD": D("50000")})
    assert d.code == "price_out_of_band" and "relative price" in d.detail


def test_position_limit_counts_held_and_resting_and_lets_reductions_pass() -> None:
    from keyproxy.policy.decide import RiskView
    pol = policy(max_position="1")
    view = RiskView(positions={"spot:BTCUSDT": D("0.6")}, open_buy={"spot:BTCUSDT": D("0.3")})
    assert run(order(quantity=D("0.1")), pol, risk=view).allow  # 0.6 + 0.3 + 0.1 = 1
    d = run(order(quantity=D("0.2")), pol, risk=view)
    assert d.code == "position_exceeded" and "would reach 1.1" in d.detail
    assert run(order(side="SELL", quantity=D("0.6")), pol, risk=view).allow  # selling what it holds
    assert run(order(side="SELL", quantity=D("1.5")), pol, risk=view).allow  # short 0.9 <= 1
    assert run(order(side="SELL", quantity=D("1.7")), pol, risk=view).code == "position_exceeded"
    assert run(order(quantity=None, quote_quantity=D("10")), pol, risk=view).code == "position_exceeded"


def test_only_a_conflict_over_what_an_order_trades_is_refused_under_position_and_loss_limits() -> None:
    """Session 35 refused any order with a conflict under max_position or a loss limit; its regression review: a
    bot's market sell naming an ignored price (its size sure) could not close its position. Now only a conflict
    over the size (`size_unsure`: two sizes, a type whose size keyproxy does not read) is refused there."""
    from keyproxy.policy.decide import RiskView
    view = RiskView(positions={"spot:BTCUSDT": D("0.5")})
    priced = order(side="SELL", quantity=D("0.5"), order_type="MARKET", price=None,
                   conflict="a MARKET order's price is ignored by Binance")
    sized = order(quantity=D("0.1"), quote_quantity=D("100000"), conflict="both quantity and quoteOrderQty are given",
                  size_unsure=True)
    assert run(priced, policy(max_position="1"), risk=view).allow
    assert run(priced, policy(max_daily_loss="10"), risk=view).allow
    d = run(sized, policy(max_position="1"), risk=view)
    assert d.code == "position_exceeded" and "both quantity and quoteOrderQty" in d.detail
    assert run(replace(sized, side="SELL"), policy(max_daily_loss="10"), risk=view).code == "loss_limit"
    assert run(sized, policy(), risk=view).allow  # no such limit: nothing to hold
    assert run(priced, policy(max_order_notional="100000"), {"BTCUSDT": D("50000")},
               risk=view).code == "notional_unknown"  # its worth is still unsure


def test_a_sell_reduces_only_what_the_resting_sells_have_not_already_claimed() -> None:
    """Holding 1 with a cap of 1: a bot resting sells of 1 one after another. Each sell of at most what it holds
    used to "reduce" and pass every check; if all fill it is short by all but one. Now a sell reduces only what
    its resting sells leave, so the second is checked against the cap (short 1 if all fill: allowed) and the
    third refused; past a loss limit, only the first passes."""
    from keyproxy.policy.decide import RiskView
    held = {"spot:BTCUSDT": D("1")}
    sell = order(side="SELL", quantity=D("1"))
    for resting, allow in ((D("0"), True), (D("1"), True), (D("2"), False)):
        view = RiskView(positions=held, open_sell={"spot:BTCUSDT": resting})
        assert run(sell, policy(max_position="1"), risk=view).allow is allow, resting
    for resting, code in ((D("0"), ""), (D("1"), "loss_limit")):
        view = RiskView(positions=held, open_sell={"spot:BTCUSDT": resting}, loss="bot b is down 60 today")
        assert run(sell, policy(), risk=view).code == code
    assert run(order(side="BUY", quantity=D("1")), policy(), risk=RiskView(  # a short's buys likewise
        positions={"spot:BTCUSDT": D("-1")}, open_buy={"spot:BTCUSDT": D("0.5")}, loss="down")).code == "loss_limit"


def test_loss_limit_and_self_cross_refuse_only_what_adds_risk() -> None:
    from keyproxy.policy.decide import RiskView
    view = RiskView(positions={"spot:BTCUSDT": D("0.5")}, loss="bot b is down 60 today")
    d = run(order(), policy(), risk=view)
    assert d.code == "loss_limit" and "bot b is down 60" in d.detail
    assert run(order(side="SELL", quantity=D("0.5")), policy(), risk=view).allow
    assert run(order(side="SELL", quantity=D("0.6")), policy(), risk=view).code == "loss_limit"  # flips short
    crossing = RiskView(crossing=("123",))
    assert run(order(), policy(), risk=crossing).code == "self_cross"
    assert run(order(), policy(allow_self_cross="true"), risk=crossing).allow


@pytest.mark.parametrize("doc, message", [
    ({"max_daily_loss": "500 USDT"}, "max_daily_loss: a plain number"),
    ({"max_daily_loss": "-5"}, "max_daily_loss: must be a positive number"),
    ({"max_position": "0"}, "max_position: must be a positive number"),
    ({"on_loss_limit": "liquidate"}, "on_loss_limit: must be one of halt, cancel"),
    ({"allow_self_cross": "maybe"}, "allow_self_cross: must be true or false"),
])
def test_bad_position_and_loss_limits(doc: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(doc)
    with pytest.raises(PolicyError, match="max_daily_loss: a plain number"):
        parse_account_limits({"max_daily_loss": "500 EUR"})


def test_where_no_position_is_known_the_position_and_loss_limits_refuse_new_risk() -> None:
    from keyproxy.policy.decide import RiskView
    swap = order(symbol="BTCUSDTSWAP", market="swap")
    unread = RiskView(unread=frozenset({"swap:BTCUSDTSWAP"}))
    d = run(swap, policy(max_position="1"), risk=unread)
    assert d.code == "position_exceeded" and "does not read fills in swap markets" in d.detail
    assert run(swap, policy(max_daily_loss="10"), risk=RiskView(unread=unread.unread, loss_limited=True)).code == \
        "loss_limit"
    assert run(swap, policy(), risk=unread).allow  # no such limit: nothing to hold
    assert run(order(symbol="BTCUSDTSWAP", market="swap", reduce_only=True), policy(max_position="1"),
               risk=unread).allow  # getting out passes


def test_position_cap_in_quote_currency() -> None:
    from keyproxy.policy.decide import RiskView
    pol = policy(max_position_notional="1000")
    view = RiskView(positions={"spot:BTCUSDT": D("0.01")})
    assert run(order(quantity=D("0.01"), price=D("50000")), pol, risk=view).allow  # 0.02 x 50,000 = 1,000
    d = run(order(quantity=D("0.011"), price=D("50000")), pol, risk=view)
    assert d.code == "position_exceeded" and "worth 1050" in d.detail
    market = order(quantity=D("0.001"), price=None, order_type="MARKET")
    assert run(market, pol, risk=view).code == "position_exceeded"  # no price known: refused
    assert run(market, pol, prices={"BTCUSDT": D("60000")}, risk=view).allow  # 0.011 x 60,000 = 660


@pytest.mark.parametrize("keys, account", [
    ({"price_band_pct": "5"}, None), ({"max_position": "1"}, None), ({"max_position_notional": "100"}, None),
    ({"max_daily_loss": "50"}, None), ({"duplicate_orders": "3"}, None),
    ({}, AccountLimits(price_band_pct=D("5"))), ({}, AccountLimits(max_daily_loss=D("50"))),
])
def test_an_order_shape_keyproxy_cannot_read_is_refused_to_a_bot_with_a_risk_limit(
        keys: dict[str, str], account: AccountLimits | None) -> None:
    """Binance OCO lists, OKX algo orders, Coinbase conversions: action None. A bot whose only limit is a risk
    control would otherwise place them unchecked."""
    unreadable = RequestFacts(action=None, symbol="BTCUSDT")
    d = run(unreadable, policy(**keys), {}, account_limits=account)
    assert d.code == "notional_unknown" and "cannot read this endpoint's order details" in d.detail
    assert run(unreadable, policy(), {}).allow  # no limit of any kind: nothing to hold


def test_trigger_prices_a_bot_could_slip_past_the_band() -> None:
    from keyproxy.exchanges.base import BadRequest, IncomingRequest
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.exchanges.kraken import Kraken

    binance = Binance()
    twice = IncomingRequest("POST", "/api/v3/order", "stopPrice=41000", {"content-type":
                            "application/x-www-form-urlencoded"}, b"symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT"
                            b"&quantity=1&price=40000&stopPrice=1&timeInForce=GTC")
    with pytest.raises(BadRequest, match="stopPrice"):  # which one would Binance execute? refused
        binance.facts(twice, binance.classify("POST", "/api/v3/order"))
    kraken = Kraken()
    form = {"content-type": "application/x-www-form-urlencoded"}
    relative = kraken.facts(IncomingRequest("POST", "/0/private/AddOrder", "", form,
                                            b"nonce=1&pair=XBTUSD&type=sell&ordertype=stop-loss-limit&volume=1"
                                            b"&price=%2B20%25&price2=49000"),
                            kraken.classify("POST", "/0/private/AddOrder"))
    assert relative.trigger_relative and relative.price == D("49000")
    d = run(relative, policy(price_band_pct="5"), {"XBTUSD": D("50000")})
    assert d.code == "price_out_of_band" and "relative to the market" in d.detail
    coinbase = Coinbase()
    stop = {"client_order_id": "x", "product_id": "BTC-USD", "side": "SELL", "order_configuration": {
        "stop_limit_stop_limit_gtc": {"base_size": "0.1", "limit_price": "40000", "stop_price": "41000",
                                      "stop_direction": "STOP_DIRECTION_STOP_DOWN"}}}
    facts = coinbase.facts(IncomingRequest("POST", "/api/v3/brokerage/orders", "", {"content-type": "application/json"},
                                           json.dumps(stop).encode(), markets={"#BTCUSD": "BTCUSD"}),
                           coinbase.classify("POST", "/api/v3/brokerage/orders"))
    assert facts.trigger_price == D("41000")
    assert run(facts, policy(price_band_pct="5"), {"BTCUSD": D("50000")}).code == "price_out_of_band"


def amend(**kw) -> RequestFacts:  # type: ignore[no-untyped-def]
    """An amend as most exchanges word it: the order's id, its new whole size and price, no side."""
    return RequestFacts(**{"action": "amend", "symbol": "BTCUSDT", "market": "spot", "order_id": "7",
                           "quantity": D("0.5"), "price": D("50000"), **kw})


def test_an_amend_is_checked_as_the_order_it_leaves_behind() -> None:
    """The review's hole: a bot with a cap of 1 placed a buy of 0.1 and amended it to 100, and the amend passed
    (only new orders met the position check). Now an amend is the order it leaves resting: the book's side,
    the new size less what already filled, the resting orders without the old size."""
    from keyproxy.policy.decide import Amended, RiskView
    pol = policy(max_position="1")
    mine = Amended(True, "spot:BTCUSDT", "buy", D("50000"), remaining=D("0.1"), filled=D("0"))
    view = RiskView(positions={"spot:BTCUSDT": D("0.5")}, open_buy={"spot:BTCUSDT": D("0.2")}, amended=(mine,))
    d = run(amend(quantity=D("100")), pol, risk=view)
    assert d.code == "position_exceeded" and "would reach 100.7" in d.detail
    assert run(amend(quantity=D("0.3")), pol, risk=view).allow  # 0.5 held + 0.2 other + 0.3 = 1
    assert run(amend(quantity=D("0.31")), pol, risk=view).code == "position_exceeded"
    half_filled = Amended(True, "spot:BTCUSDT", "buy", D("50000"), remaining=D("0.1"), filled=D("0.2"))
    assert run(amend(quantity=D("0.5")), pol, risk=RiskView(  # 0.5 - 0.2 filled = 0.3 left to fill
        positions={"spot:BTCUSDT": D("0.5")}, open_buy={"spot:BTCUSDT": D("0.2")}, amended=(half_filled,))).allow
    over = RiskView(positions={"spot:BTCUSDT": D("2")}, amended=(mine,))  # already past a lowered cap
    assert run(amend(quantity=D("0.05"), price=None), pol, risk=over).allow  # smaller at its price: always
    assert run(amend(quantity=D("0.05"), price=D("51000")), pol, risk=over).code == "position_exceeded"
    turned = amend(side="SELL", quantity=D("1.6"))  # a modify may name a side (Hyperliquid's): short 1.1 > 1
    turns = Amended(True, "spot:BTCUSDT", "buy", D("50000"), remaining=D("0.1"), filled=D("0"), may_turn=True)
    assert run(turned, pol, risk=RiskView(positions={"spot:BTCUSDT": D("0.5")}, amended=(turns,))).code == \
        "position_exceeded"
    assert run(amend(side="SELL", quantity=D("0.05"), price=None), pol, risk=RiskView(
        positions={"spot:BTCUSDT": D("2")}, amended=(turns,))).allow  # sells what it holds
    # session 35's review: elsewhere (Binance futures' modify requires a side) the exchange keeps the order's side:
    # a "sell" naming a resting buy was checked as a sell, so it passed the cap while the exchange raised the buy
    d = run(amend(side="SELL", quantity=D("0.05"), price=None), pol, risk=over)
    assert d.code == "policy_denied" and "does not turn an order" in d.detail, d
    assert run(amend(side="BUY", quantity=D("0.05"), price=None), pol, risk=over).allow  # its own side: as before
    sell = Amended(True, "spot:BTCUSDT", "sell", D("50000"), remaining=D("0.1"), filled=D("0"))
    assert run(amend(quantity=D("0.5")), pol, risk=RiskView(  # a sell of what it holds reduces
        positions={"spot:BTCUSDT": D("0.5")}, amended=(sell,), loss="down")).allow


def test_an_amend_keyproxy_cannot_place_or_of_another_bot_is_refused_where_it_matters() -> None:
    from keyproxy.policy.decide import Amended, RiskView
    unknown = RiskView(amended=(None,))
    d = run(amend(), policy(max_position="1"), risk=unknown)
    assert d.code == "position_exceeded" and "does not hold order 7" in d.detail
    assert run(amend(quantity=None), policy(max_position="1"), risk=unknown).allow  # a new price only
    assert run(amend(), policy(max_daily_loss="10"), risk=RiskView(amended=(None,), loss="down")).code == \
        "loss_limit"
    assert run(amend(), policy(), risk=unknown).allow  # no position or loss limit: nothing to hold it to
    theirs = RiskView(amended=(Amended(False, "spot:BTCUSDT", "buy", D("1"), D("0.1"), D("0")),))
    d = run(amend(quantity=D("0.01")), policy(), risk=theirs)
    assert not d.allow and "placed by another bot" in d.detail
    crossing = RiskView(amended=(Amended(True, "spot:BTCUSDT", "buy", D("1"), D("0.1"), D("0")),),
                        crossing=("99",))
    assert run(amend(), policy(), risk=crossing).code == "self_cross"


def test_the_legs_of_one_batch_add_up() -> None:
    """The review's hole: three buys of 0.9 in one batch at a cap of 1 passed (each alone fits), and holding 1,
    three sells of 1 each "reduced"."""
    from keyproxy.policy.decide import RiskView
    batch = RequestFacts(action="order", symbol="BTCUSDT", market="spot", orders=(order(quantity=D("0.9")),) * 3)
    d = run(batch, policy(max_position="1"), risk=RiskView())
    assert d.code == "position_exceeded" and "would reach 1.8" in d.detail
    assert run(RequestFacts(action="order", orders=(order(quantity=D("0.5")),) * 2), policy(max_position="1"),
               risk=RiskView()).allow
    sells = RequestFacts(action="order", orders=(order(side="SELL", quantity=D("1")),) * 3)
    held = {"spot:BTCUSDT": D("1")}
    assert run(sells, policy(max_position="1"), risk=RiskView(positions=held)).code == "position_exceeded"
    assert run(RequestFacts(action="order", orders=(order(side="SELL", quantity=D("1")),) * 2), policy(),
               risk=RiskView(positions=held, loss="down")).code == "loss_limit"  # only the first reduces
    quoted = RequestFacts(action="order", orders=(order(quantity=None, quote_quantity=D("30000")),) * 2)
    assert run(quoted, policy(max_position="1"), risk=RiskView(), prices={"BTCUSDT": D("50000")}).code == \
        "position_exceeded"  # 0.6 + 0.6 at the last price


def test_an_amend_that_only_shrinks_still_counts_in_its_batch_and_one_keyproxy_cannot_place_may_not_cross() -> None:
    """Review of session 14: in a batch, a leg that keeps (or shrinks) its order at its price passed unchecked and
    left its size out of the batch's count, so the next leg was measured as if it did not rest; and an amend of
    an order keyproxy does not hold skipped the self-cross check the view had found."""
    from keyproxy.policy.decide import Amended, RiskView
    first = Amended(True, "spot:BTCUSDT", "buy", D("100"), remaining=D("1"), filled=D("0"))
    second = Amended(True, "spot:BTCUSDT", "buy", D("99"), remaining=D("1"), filled=D("0"))
    batch = RequestFacts(action="amend", symbol="BTCUSDT", market="spot", orders=(
        amend(order_id="1", quantity=D("1"), price=D("100")), amend(order_id="2", quantity=D("2"), price=D("99"))))
    view = RiskView(open_buy={"spot:BTCUSDT": D("0")}, amended=(first, second))  # both left out of the resting
    d = run(batch, policy(max_position="2"), risk=view)  # 1 keeps resting + 2 = 3 > 2
    assert d.code == "position_exceeded" and "would reach 3" in d.detail
    assert run(RequestFacts(action="amend", orders=batch.orders[:1]), policy(max_position="2"), risk=view).allow
    unknown = amend(order_id="X9", side="BUY", price=D("101"))
    assert run(unknown, policy(), risk=RiskView(amended=(None,), crossing=("Y1",))).code == "self_cross"
    by_client_id = run(replace(unknown, order_id=None), policy(), risk=RiskView(amended=(None,)))
    assert by_client_id.code == "policy_denied" and "client id" in by_client_id.detail  # whose order it is, unknown
    assert run(unknown, policy(allow_self_cross="true"), risk=RiskView(amended=(None,), crossing=("Y1",))).allow


def test_a_size_only_amend_is_valued_at_its_orders_own_price() -> None:
    """Session 22's review: an amend naming a new size and no price (OKX `newSz` alone, Bybit `qty` alone) was valued
    at the market, though the order goes on resting at its own price: a sell resting at 5x the market, grown by such
    an amend, passed a notional cap a fresh order of the same size and price is refused by."""
    from keyproxy.policy.decide import Amended, RiskView
    pol = policy(max_order_notional="1000")
    far = Amended(True, "spot:BTCUSDT", "sell", D("300000"), remaining=D("0.0027"), filled=D("0"))
    grown = amend(quantity=D("0.015"), price=None)
    last = {"BTCUSDT": D("60000")}
    d = run(grown, pol, prices=last, risk=RiskView(amended=(far,)))
    assert d.code == "notional_exceeded" and "4500" in d.detail, d.detail  # 0.015 x 300,000
    assert run(amend(quantity=D("0.003"), price=None), pol, prices=last, risk=RiskView(amended=(far,))).allow
    d = run(grown, pol, prices=last, risk=RiskView(amended=(None,)))  # the book does not hold it: not valued
    assert d.code == "notional_unknown" and "new price" in d.detail
    assert run(grown, policy(), prices=last, risk=RiskView(amended=(None,))).allow  # no notional limit: no matter


def test_a_hedge_legs_reduce_only_flag_is_judged_by_the_net_position() -> None:
    """Session 23's review (high): in hedge mode a reduce-only order closes one leg (Bybit positionIdx 1/2, Binance
    positionSide LONG/SHORT with closePosition, OKX close-position with posSide long/short), which can grow the net
    position keyproxy caps. Each adapter marks such a leg; its flag still satisfies a reduce-only bot and a halt
    (the exchange lets it only close), never a position cap or a loss limit."""
    from keyproxy.exchanges.base import IncomingRequest
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.bybit import Bybit
    from keyproxy.exchanges.okx import Okx
    from keyproxy.policy.decide import RiskView

    def facts(adapter, path: str, query: str = "", body: str = "") -> RequestFacts:  # type: ignore[no-untyped-def]
        req = IncomingRequest("POST", path, query, {"content-type": "application/json"} if body else {}, body.encode())
        return adapter.facts(req, adapter.classify("POST", path))  # type: ignore[no-any-return]

    bybit = '{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"1","reduceOnly":true'
    assert facts(Bybit(), "/v5/order/create", body=bybit + ',"positionIdx":1}').hedged
    assert not facts(Bybit(), "/v5/order/create", body=bybit + ',"positionIdx":0}').hedged
    assert facts(Bybit(), "/v5/order/create", body=bybit + ',"positionIdx":"01"}').hedged  # a spelling Bybit may read
    binance = "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&stopPrice=50000&closePosition=true"
    assert facts(Binance(), "/fapi/v1/order", binance + "&positionSide=LONG").hedged
    assert not facts(Binance(), "/fapi/v1/order", binance).hedged
    assert not facts(Binance(), "/fapi/v1/order", binance + "&positionSide=BOTH").hedged
    assert facts(Binance(), "/fapi/v1/order", binance + "&positionSide=long").hedged
    okx = '{"instId":"BTC-USDT-SWAP","mgnMode":"cross"'
    assert facts(Okx(), "/api/v5/trade/close-position", body=okx + ',"posSide":"long"}').hedged
    assert not facts(Okx(), "/api/v5/trade/close-position", body=okx + "}").hedged

    leg = order(side="SELL", quantity=D("0.01"), reduce_only=True, hedged=True)
    short = RiskView(positions={"spot:BTCUSDT": D("-0.01")})
    assert run(leg, policy(max_position="0.01"), risk=short).code == "position_exceeded"  # net -0.02
    assert run(leg, policy(), risk=RiskView(positions={"spot:BTCUSDT": D("-0.01")}, loss="down")).code == "loss_limit"
    assert run(leg, policy(max_position="0.01"), risk=RiskView(positions={"spot:BTCUSDT": D("0.01")})).allow
    assert run(leg, policy(reduce_only="true")).allow  # the exchange lets it only close a leg


def test_a_binance_trailing_stop_is_valued_at_its_activation_and_never_passes_a_band() -> None:
    """Session 23's review (medium): TRAILING_STOP_MARKET's activationPrice was not read, so a sell activating at
    three times the market was valued at the market and passed max_order_notional; and a trailing stop (futures
    callbackRate, spot trailingDelta) has no trigger a band can check, so one trailing 10% passed a 5% band."""
    from keyproxy.exchanges.base import IncomingRequest
    from keyproxy.exchanges.binance import Binance

    def facts(path: str, query: str) -> RequestFacts:
        adapter = Binance()
        return adapter.facts(IncomingRequest("POST", path, query, {}, b""), adapter.classify("POST", path))

    far = facts("/fapi/v1/order", "symbol=BTCUSDT&side=SELL&type=TRAILING_STOP_MARKET&quantity=0.015"
                "&activationPrice=180000&callbackRate=0.1")
    assert (far.trigger_price, far.trigger_relative) == (D("180000"), True)
    market = {"BTCUSDT": D("60000")}
    assert run(far, policy(max_order_notional="1000"), prices=market).code == "notional_exceeded"  # 2,700
    trailing = facts("/fapi/v1/order", "symbol=BTCUSDT&side=SELL&type=TRAILING_STOP_MARKET&quantity=0.01"
                     "&callbackRate=10")
    assert run(trailing, policy(price_band_pct="5"), market).code == "price_out_of_band"
    spot = facts("/api/v3/order", "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=0.01&trailingDelta=1000")
    assert spot.trigger_relative and run(spot, policy(price_band_pct="5"), market).code == "price_out_of_band"
    plain = facts("/fapi/v1/order", "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01&stopPrice=59000")
    assert not plain.trigger_relative and run(plain, policy(price_band_pct="5"), market).allow


def test_a_reduce_only_flag_is_believed_only_where_no_other_bot_holds_a_position() -> None:
    """Session 23's reviews: believed everywhere, a reduce-only sell closed another bot's long on a shared account
    (the exchange measures the flag against the account's position) and booked the bot short by all of it; judged
    everywhere like a spot sell, a close at the cap was refused while the bot's take-profit and stop-loss rested, and
    Binance's closePosition stop always. The flag alone passes where the position in the scope is the bot's own;
    where another bot holds one, it reduces only the bot's own position. A size of 0 (Bybit's qty 0, Kraken's margin
    volume 0: "the whole position") is no size."""
    from keyproxy.policy.decide import RiskView
    from keyproxy.policy.valuation import notional, order_size
    scope, cap = "usdm:BTCUSDT", policy(max_position="1")
    close = order(market="usdm", side="SELL", quantity=D("1"), price=None, order_type="MARKET", reduce_only=True)
    protected = {"positions": {scope: D("1")}, "open_sell": {scope: D("2")}}  # its take-profit and stop-loss rest
    assert run(close, cap, prices=REF, risk=RiskView(**protected)).allow
    assert run(close, cap, prices=REF, risk=RiskView(**protected, shared=frozenset({scope}))).code == \
        "position_exceeded"
    everything = order(market="usdm", side="SELL", quantity=None, price=None, order_type="STOP_MARKET",
                       trigger_price=D("49000"), reduce_only=True)  # closePosition=true
    assert run(everything, cap, prices=REF, risk=RiskView(positions={scope: D("1")})).allow
    assert run(everything, cap, prices=REF, risk=RiskView(positions={scope: D("1")}, shared=frozenset({scope}))
               ).code == "position_exceeded"
    whole = replace(close, quantity=D("0"))
    assert order_size(whole, D("50000")) is None and notional(whole, D("50000")) is None
    assert run(whole, cap, prices=REF, risk=RiskView(shared=frozenset({scope}))).code == "position_exceeded"
    assert run(close, cap, prices=REF, risk=RiskView(unread=frozenset({scope}), shared=frozenset({scope}))).allow


def test_a_quote_sized_order_is_sized_at_the_lowest_price_it_may_execute_at() -> None:
    """Session 32's review: a quote-sized stop buy was sized at the last price, though one that triggers below it buys
    more; its limit bounds it the same way."""
    from keyproxy.policy.valuation import order_size
    stop = order(market="spot", side="BUY", quantity=None, quote_quantity=D("500"), price=None,
                 order_type="MARKET", trigger_price=D("50000"))
    assert order_size(stop, D("62500")) == D("0.01")
    assert order_size(replace(stop, trigger_price=None), D("62500")) == D("0.008")
    assert order_size(replace(stop, trigger_price=None, price=D("40000")), D("62500")) == D("0.0125")


def test_an_amends_one_price_of_a_stop_is_its_trigger() -> None:
    """Session 32's review: Kraken's EditOrder names no order type, and the `price` of an edit of a stop-loss is its
    trigger; read as a limit, a stop buy edited to trigger at 1 (it fires at once and buys at market) crossed no sell
    and was worth 1 USD a coin. An order the book holds with no price is a stop: its amend's one price is the trigger,
    and a new trigger is never a shrink at its price."""
    from keyproxy.policy.decide import Amended, RiskView, amended_leg
    stop = Amended(True, "spot:BTCUSDT", "buy", None, remaining=D("0.01"), filled=D("0"))
    edit = amend(price=D("1"), quantity=D("0.01"), order_type=None, side=None, price_or_trigger=True)
    # an amend's price that is its limit whatever the order (a Binance futures modify of a priceMatch order, booked
    # with no price): a limit (the session's regression review)
    assert amended_leg(replace(edit, price_or_trigger=False), stop).price == D("1")
    after = amended_leg(edit, stop)
    assert after is not None and (after.price, after.trigger_price, after.side) == (None, D("1"), "buy")
    limit = Amended(True, "spot:BTCUSDT", "buy", D("49000"), remaining=D("0.01"), filled=D("0"))
    assert amended_leg(edit, limit).price == D("1")  # a limit order's new price is its limit
    crossing = RiskView(amended=(stop,), crossing=("OTHER-SELL",))
    assert run(edit, policy(), risk=crossing).code == "self_cross"
    assert run(replace(edit, quantity=D("10")), policy(max_order_notional="1000"), refs=REF,
               prices=REF, risk=RiskView(amended=(stop,))).code == "notional_exceeded"


def test_a_market_close_keyproxy_cannot_follow_is_refused_only_under_a_position_or_loss_limit() -> None:
    """An OKX spot margin close-position (`unfollowed`): nothing of it rests, so `max_open_orders` lets it pass (the
    session's regression review); a position cap does not."""
    close = order(quantity=None, price=None, order_type=None, side=None, reduce_only=True,
                  unfollowed="OKX closes a margin position by an order no answer names")
    assert run(close, policy(max_open_orders="5")).allow
    assert run(close, policy(max_position="1")).code == "position_exceeded"
