"""Orders the exchange places on a bot's behalf under ids no answer names (take-profit / stop-loss attached to an
order or a position, Kraken's conditional close, Hyperliquid's TWAP slices): their fills would move the bot's
position unseen, so a bot with a position or loss limit is refused the request that sets them up, reduce-only
too (docs/risk.md), and so is one whose notional is capped (what they trade is valued nowhere); a bot with none of
those sends it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from keyproxy.policy.decide import Counters, decide
from keyproxy.policy.model import RequestFacts, parse_account_limits, parse_policy
from tests.exchanges import test_bybit, test_coinbase, test_hyperliquid, test_kraken, test_okx


def bybit(path: str, body: dict) -> RequestFacts:  # type: ignore[type-arg]
    return test_bybit.facts(path, body)  # type: ignore[no-any-return]


BYBIT_ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01",
               "price": "20000"}
OKX_ORDER = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "20000", "sz": "0.5"}
COINBASE_ORDER = {"client_order_id": "1", "product_id": "BTC-USD", "side": "BUY", "order_configuration": {
    "limit_limit_gtc": {"base_size": "0.01", "limit_price": "20000"}}}
HL_ORDER = {"a": 0, "b": True, "p": "20000", "s": "0.01", "r": False, "t": {"limit": {"tif": "Gtc"}}}
KRAKEN_ORDER = "nonce=1&ordertype=limit&type=buy&volume=0.01&pair=XBTUSD&price=20000"


@pytest.mark.parametrize("facts, untracked", [
    (lambda: bybit("/v5/order/create", BYBIT_ORDER), False),
    (lambda: bybit("/v5/order/create", {**BYBIT_ORDER, "takeProfit": "25000"}), True),
    (lambda: bybit("/v5/order/create", {**BYBIT_ORDER, "stopLoss": "18000", "takeProfit": ""}), True),
    (lambda: bybit("/v5/order/create", {**BYBIT_ORDER, "takeProfit": "0"}), False),  # "0": none
    # an amend may set them too (ccxt edit_order with params stopLoss), alone or in a batch's item
    (lambda: bybit("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": "1", "stopLoss": "1"}),
     True),
    (lambda: bybit("/v5/order/amend-batch", {"category": "linear", "request": [
        {"symbol": "BTCUSDT", "orderId": "1", "qty": "0.01"},
        {"symbol": "BTCUSDT", "orderId": "2", "takeProfit": "9"}]}),
     True),
    (lambda: bybit("/v5/order/amend", {"category": "linear", "symbol": "BTCUSDT", "orderId": "1", "qty": "0.02"}),
     False),
    (lambda: test_okx.facts_of("/api/v5/trade/amend-order", json.dumps(
        {"instId": "BTC-USDT", "ordId": "1", "newSz": "0.5", "newSlTriggerPx": "18000"})), True),
    # Hyperliquid: a TWAP, children grouped with an order (ccxt's stopLoss/takeProfit: normalTpsl), a single
    # modify (answered without the oid it leaves); batchModify names it
    (lambda: test_hyperliquid._facts({"type": "order", "orders": [HL_ORDER], "grouping": "normalTpsl"}), True),
    (lambda: test_hyperliquid._facts({"type": "order", "orders": [HL_ORDER], "grouping": "na"}), False),
    (lambda: test_hyperliquid._facts({"type": "batchModify", "modifies": [{"oid": 7, "order": HL_ORDER}]}), False),
    (lambda: bybit("/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT", "stopLoss": "1"}), True),
    (lambda: bybit("/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT", "stopLoss": "0",
                                                  "takeProfit": "0"}), False),  # clears them: places none
    (lambda: bybit("/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT", "trailingStop": "50"}),
     True),
    (lambda: test_okx.facts_of("/api/v5/trade/order", json.dumps(OKX_ORDER)), False),
    (lambda: test_okx.facts_of("/api/v5/trade/order", json.dumps(
        {**OKX_ORDER, "attachAlgoOrds": [{"tpTriggerPx": "25000", "tpOrdPx": "-1"}]})), True),
    (lambda: test_okx.facts_of("/api/v5/trade/order", json.dumps({**OKX_ORDER, "slTriggerPx": "18000"})), True),
    (lambda: test_kraken.facts_of("/0/private/AddOrder", KRAKEN_ORDER), False),
    (lambda: test_kraken.facts_of("/0/private/AddOrder", KRAKEN_ORDER + "&close%5Bordertype%5D=limit"
                                  "&close%5Bprice%5D=25000"), True),
    (lambda: test_coinbase.facts("/api/v3/brokerage/orders", COINBASE_ORDER), False),
    (lambda: test_coinbase.facts("/api/v3/brokerage/orders", {**COINBASE_ORDER, "attached_order_configuration": {
        "trigger_bracket_gtc": {"limit_price": "25000", "stop_trigger_price": "18000"}}}), True),
])
def test_each_exchange_marks_the_orders_it_places_itself(facts, untracked: bool) -> None:  # type: ignore[no-untyped-def]
    got = facts()
    legs = got.placed() or (got,)
    assert any(leg.untracked for leg in (got, *legs)) is untracked, got


@pytest.mark.parametrize("settings, limits, code", [
    ({"max_position": "1"}, None, "position_exceeded"),
    ({"max_position_notional": "1000"}, None, "position_exceeded"),
    ({"max_daily_loss": "50"}, None, "loss_limit"),
    ({}, {"max_daily_loss": "50"}, "loss_limit"),
    # what they trade is valued nowhere (a position-wide stop closes every bot's share): session 27's review
    ({"max_order_notional": "100000"}, None, "notional_unknown"),
    ({"daily_notional_cap": "100000"}, None, "notional_unknown"),
    ({"orders_per_minute": "100"}, None, None),  # no limit that needs the position or a value
    ({"max_open_orders": "3"}, None, "open_orders_exceeded"),  # the children rest uncounted (session 22's review)
])
def test_a_bot_whose_position_keyproxy_follows_is_refused_them(settings: dict, limits: dict | None,  # type: ignore[type-arg]
                                                               code: str | None) -> None:
    pol = parse_policy({"scopes": "read,trade", **settings})
    account = parse_account_limits(limits) if limits else None
    for facts in (RequestFacts(action="order", symbol="BTCUSDT", market="linear", side="SELL", order_type="LIMIT",
                               quantity=Decimal("0.01"), price=Decimal("20000"), reduce_only=True,
                               untracked="Bybit places a take-profit or stop-loss as orders of its own"),
                  RequestFacts(action="other", symbol="BTCUSDT", untracked="a take-profit on the position")):
        d = decide(facts, "trade", pol, Counters(), 1_795_608_000.0, bot="b", account="a", account_limits=account,
                   prices={"BTCUSDT": Decimal("20000")})
        # a position's tp/sl places no order of the bot's, but orders of Bybit's own all the same: refused under
        # max_open_orders too (session 32's review)
        assert (d.allow, d.code if not d.allow else None) == (code is None, code), d.detail
