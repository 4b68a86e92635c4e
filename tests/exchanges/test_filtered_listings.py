"""An open-orders listing sets a bot's open-order count only when it shows every open order of its scope.

Session 27's reviews: a listing filtered by something the exchange honours (Kraken `userref`, OKX `ordType`/`state`/
`after`, Bybit `orderFilter`/`cursor`, Coinbase `order_side`/dates, Binance anything but the symbol) answered
empty and set the bot's count to 0, so a bot capped at two open orders rested eight. Each adapter's reader counts
only a whole listing; a filtered one sets nothing.
"""

from __future__ import annotations

import json

import pytest

from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import Endpoint, EndpointClass, IncomingRequest, OutboundRequest
from keyproxy.policy.model import RequestFacts

ADAPTERS = default_adapters()
LISTING = RequestFacts(action="other")
EMPTY = {
    "binance": b"[]",
    "okx": json.dumps({"code": "0", "msg": "", "data": []}).encode(),
    "bybit": json.dumps({"retCode": 0, "result": {"list": [], "nextPageCursor": ""}}).encode(),
    "coinbase": json.dumps({"orders": [], "has_next": False}).encode(),
    "kraken": json.dumps({"error": [], "result": {"open": {}}}).encode(),
}
CASES = [  # (exchange, method, path, whole query or body, the same filtered)
    ("binance", "GET", "/api/v3/openOrders", "symbol=BTCUSDT&timestamp=1&signature=x",
     "symbol=BTCUSDT&orderId=5&timestamp=1&signature=x"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT", "instId=BTC-USDT&ordType=post_only"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT", "instId=BTC-USDT&state=partially_filled"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT&limit=100", "instId=BTC-USDT&after=123"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT", "instId=BTC-USDT&instType=SWAP"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT", "instId=ETH-USDT&instId=BTC-USDT"),
    ("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT&limit=100", "instId=BTC-USDT&limit=100&limit=1"),
    ("bybit", "GET", "/v5/order/realtime", "category=linear&symbol=BTCUSDT",
     "category=linear&symbol=BTCUSDT&orderFilter=StopOrder"),
    ("bybit", "GET", "/v5/order/realtime", "category=linear&symbol=BTCUSDT&openOnly=0",
     "category=linear&symbol=BTCUSDT&openOnly=1&openOnly=0"),
    ("coinbase", "GET", "/api/v3/brokerage/orders/historical/batch", "order_status=OPEN&product_ids=ETH-USD",
     "order_status=OPEN&product_ids=ETH-USD&order_side="),
    ("binance", "GET", "/api/v3/openOrders", "symbol=BTCUSDT&timestamp=1&signature=x",
     "symbol=ETHUSDT&symbol=BTCUSDT&timestamp=1&signature=x"),
    ("bybit", "GET", "/v5/order/realtime", "category=linear&symbol=BTCUSDT&limit=50",
     "category=linear&symbol=BTCUSDT&cursor=abc"),
    ("coinbase", "GET", "/api/v3/brokerage/orders/historical/batch", "order_status=OPEN&product_ids=ETH-USD",
     "order_status=OPEN&product_ids=ETH-USD&order_side=SELL"),
    ("kraken", "POST", "/0/private/OpenOrders", "nonce=1&trades=false", "nonce=1&userref=424242"),
    ("kraken", "POST", "/0/private/OpenOrders", '{"nonce": 1}', '{"nonce": 1, "cl_ord_id": "x"}'),
]


def _change(exchange: str, method: str, path: str, params: str):  # type: ignore[no-untyped-def]
    adapter = ADAPTERS[exchange]
    query, body = (params, b"") if method == "GET" else ("", params.encode())
    out = OutboundRequest(method, "https://x", path, query, {}, body)
    endpoint = adapter.classify(method, path) or Endpoint(EndpointClass.READ, path)
    markets = {"#ETHUSD": "ETHUSD"}  # Coinbase: a product listed by its order book's name (ETH-USD has one)
    facts = adapter.facts(IncomingRequest(method, path, query, {}, body, markets=markets), endpoint) \
        if exchange in ("binance", "coinbase") else LISTING
    return adapter.order_book_change(out, 200, EMPTY[exchange], facts)


@pytest.mark.parametrize("exchange,method,path,whole,filtered", CASES, ids=[f"{c[0]}-{c[4][-20:]}" for c in CASES])
def test_only_a_whole_listing_sets_the_count(exchange: str, method: str, path: str, whole: str,
                                             filtered: str) -> None:
    counted = _change(exchange, method, path, whole)
    assert counted.counted or counted.reset, counted  # the whole listing sets the scope's count (here 0)
    assert not _change(exchange, method, path, filtered).counted
    assert not _change(exchange, method, path, filtered).reset


def test_an_okx_listing_is_whole_only_below_okxs_own_page_and_as_okx_spells_the_instrument() -> None:
    """Session 32's review: OKX pages its pending orders at 100 whatever `limit` asks, so a page of 100 under
    `limit=1000` was read as whole; and an instId spelled in lower case may list nothing while the orders rest."""
    from keyproxy.exchanges.okx_facts import okx_order_book_change
    def page(n: int) -> bytes:
        return json.dumps({"code": "0", "msg": "", "data": [{"ordId": str(i)} for i in range(n)]}).encode()

    listing, query = "/api/v5/trade/orders-pending", "instId=BTC-USDT&limit=1000"
    assert not okx_order_book_change("GET", listing, query, b"", 200, page(100), LISTING).counted
    assert okx_order_book_change("GET", listing, query, b"", 200, page(99), LISTING).counted == (("spot:BTCUSDT", 99),)
    assert _change("okx", "GET", "/api/v5/trade/orders-pending", "instId=BTC-USDT&limit=1000").counted
    assert not _change("okx", "GET", "/api/v5/trade/orders-pending", "instId=btc-usdt").counted
