"""The market book: reference prices with their age, and the calls each exchange answers them with."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.coinbase import Coinbase
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.okx import Okx
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.markets import MAX_REFERENCES, MarketBook, NeedReference

D = Decimal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def order(**kw) -> RequestFacts:  # type: ignore[no-untyped-def]
    return RequestFacts(**{"action": "order", "symbol": "BTCUSDT", "market": "spot", "side": "BUY",
                           "quantity": D("1"), "price": D("100"), **kw})


def test_a_reference_is_fresh_for_max_age_then_asked_for_again() -> None:
    clock, binance = Clock(), Binance()
    book = MarketBook(clock)
    with pytest.raises(NeedReference) as need:
        book.references("a", binance, order(), 10, fetched=False)
    assert need.value.calls == (("BTCUSDT", ("GET", "/api/v3/ticker/price", "symbol=BTCUSDT", b"")),)
    assert book.references("a", binance, order(), 10, fetched=True) == {}  # asked already: refused, not asked again
    book.learn_reference("a", binance, "BTCUSDT", "/api/v3/ticker/price",
                         json.dumps({"symbol": "BTCUSDT", "price": "101.5"}).encode())
    assert book.references("a", binance, order(), 10, fetched=False) == {"BTCUSDT": D("101.5")}
    clock.now += 10
    assert book.references("a", binance, order(), 10, fetched=False) == {"BTCUSDT": D("101.5")}
    clock.now += 0.1
    with pytest.raises(NeedReference):
        book.references("a", binance, order(), 10, fetched=False)
    assert book.age("a", "BTCUSDT") == pytest.approx(10.1)
    assert book.references("b", binance, order(), 10, fetched=True) == {}  # per account


def test_an_order_valued_at_the_market_needs_a_price_seen_within_a_minute() -> None:
    """A bot with a notional limit: a sell (or a buy without a limit) is valued at the market, so keyproxy asks for a
    price it has never seen, or saw more than VALUATION_MAX_AGE ago; a buy's limit needs none."""
    from keyproxy.proxy.markets import VALUATION_MAX_AGE
    clock, binance = Clock(), Binance()
    book = MarketBook(clock)
    sell = order(side="SELL", price=D("0.01"))
    assert book.references("a", binance, order(), None, fetched=False, valued=True) == {}  # a buy's limit bounds it
    with pytest.raises(NeedReference):
        book.references("a", binance, sell, None, fetched=False, valued=True)
    assert book.references("a", binance, sell, None, fetched=False) == {}  # no notional limit: nothing asked
    book.learn_prices("a", {"BTCUSDT": D("100")})
    assert book.references("a", binance, sell, None, fetched=False, valued=True) == {}
    clock.now += VALUATION_MAX_AGE + 1
    with pytest.raises(NeedReference):
        book.references("a", binance, sell, None, fetched=False, valued=True)
    assert book.references("a", binance, sell, None, fetched=True, valued=True) == {}  # asked: the old one serves
    # session 18's fourth review: a quote-sized market buy is sized quote / price against max_position: sized at an
    # hour-old price it bought twice the cap (the bot chose when keyproxy's price went stale)
    quoted = order(price=None, quantity=None, quote_quantity=D("100000"))
    assert book.references("a", binance, quoted, None, fetched=False, valued=True) == {}  # its value is the quote
    with pytest.raises(NeedReference):
        book.references("a", binance, quoted, None, fetched=False, sized=True)


def test_orders_the_band_does_not_check_need_no_reference() -> None:
    book = MarketBook(Clock())
    for leg in (order(price=None), order(reduce_only=True), RequestFacts(action="cancel", symbol="BTCUSDT")):
        assert book.references("a", Binance(), leg, 10, fetched=False) == {}


def test_a_single_answer_is_filed_under_the_orders_spelling() -> None:
    book = MarketBook(Clock())
    kraken = Kraken()
    answer = {"error": [], "result": {"XXBTZUSD": {"c": ["64000.1", "0.1"]}}}
    book.learn_reference("a", kraken, "XBTUSD", "/0/public/Ticker", json.dumps(answer).encode())
    assert book.prices[("a", "XBTUSD")] == D("64000.1")


def test_the_book_is_bounded() -> None:
    book = MarketBook(Clock())
    book.learn_prices("a", {f"S{i}": D(1) for i in range(MAX_REFERENCES + 5)})
    assert len(book.prices) == MAX_REFERENCES and ("a", "S0") not in book.prices


@pytest.mark.parametrize("adapter, leg, call", [
    (Binance(), order(market="usdm"), ("GET", "/fapi/v1/ticker/price", "symbol=BTCUSDT", b"")),
    (Binance(), order(market="coinm"), None),
    (Bybit(), order(market="linear"), ("GET", "/v5/market/tickers", "category=linear&symbol=BTCUSDT", b"")),
    (Bybit(), order(market="option"), None),
    (Okx(), order(symbol="BTCUSDTSWAP", market="swap"), ("GET", "/api/v5/market/tickers", "instType=SWAP", b"")),
    (Kraken(), order(symbol="XBTUSD"), ("GET", "/0/public/Ticker", "pair=XBTUSD", b"")),
    (Coinbase(), order(symbol="BTCUSD"), ("GET", "/api/v3/brokerage/market/products", "", b"")),
    (Hyperliquid(), order(symbol="BTC", market="perp"), ("POST", "/info", "", b'{"type":"allMids"}')),
])
def test_each_exchange_names_its_reference_call(adapter, leg, call) -> None:  # type: ignore[no-untyped-def]
    assert adapter.reference_request(leg) == call
    if call is not None:
        method, path, _, _ = call
        endpoint = adapter.classify(method, path)
        assert endpoint is not None and endpoint.cls.value == "public"  # a call keyproxy may make on its own
