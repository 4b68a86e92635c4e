"""The risk watch's read of one order by id (`Adapter.order_query_request`): the request each exchange answers
with that order, read by the same `order_updates` as a bot's own query; ids that could smuggle parameters into
the query are never sent (session 25's review: a page of the newest finished orders can be pushed past)."""

from __future__ import annotations

import pytest

from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.coinbase import Coinbase
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.okx import Okx

UUID = "8f2c1a7e-1f2b-4c3d-9e8f-0a1b2c3d4e5f"


@pytest.mark.parametrize(("adapter", "scope", "order_id", "expected"), [
    (Binance(), "spot:BTCUSDT", "12345@spot:BTCUSDT", ("GET", "/api/v3/order", "symbol=BTCUSDT&orderId=12345", b"")),
    (Binance(), "usdm:BTCUSDT", "77@usdm:BTCUSDT", ("GET", "/fapi/v1/order", "symbol=BTCUSDT&orderId=77", b"")),
    # no fills read on COIN-M, but an order of no owner there is asked about before a cancel of it (what a stop became
    # may be another bot's); a scope spells a contract bare, Binance with its underscore
    (Binance(), "coinm:BTCUSDPERP", "5@coinm:BTCUSDPERP",
     ("GET", "/dapi/v1/order", "symbol=BTCUSD_PERP&orderId=5", b"")),
    (Binance(), "usdm:BTCUSDT250328", "6", ("GET", "/fapi/v1/order", "symbol=BTCUSDT_250328&orderId=6", b"")),
    (Binance(), "isolated:BTCUSDT", "9@isolated:BTCUSDT",
     ("GET", "/sapi/v1/margin/order", "symbol=BTCUSDT&isIsolated=TRUE&orderId=9", b"")),
    (Okx(), "spot:BTCUSDT", "6123", ("GET", "/api/v5/trade/order", "instId=BTC-USDT&ordId=6123", b"")),
    (Okx(), "spot:ETHBTC", "6124", ("GET", "/api/v5/trade/order", "instId=ETH-BTC&ordId=6124", b"")),
    (Bybit(), "linear:BTCUSDT", UUID,
     ("GET", "/v5/order/history", f"category=linear&symbol=BTCUSDT&orderId={UUID}", b"")),
    (Kraken(), "spot:XBTUSD", "OQCLML-BW3P3-BUCMWZ",
     ("POST", "/0/private/QueryOrders", "", b"txid=OQCLML-BW3P3-BUCMWZ")),
    (Coinbase(), "spot:BTC-USD", UUID, ("GET", f"/api/v3/brokerage/orders/historical/{UUID}", "", b"")),
])
def test_one_order_is_asked_for_by_its_id(adapter: object, scope: str, order_id: str, expected: tuple) -> None:  # type: ignore[type-arg]
    assert adapter.order_query_request(scope, order_id) == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(("adapter", "scope", "order_id"), [
    (Binance(), "spot:BTCUSDT", "1&symbol=ETHUSDT@spot:BTCUSDT"),
    (Okx(), "spot:BTCUSDT", "1&instId=X"),
    (Okx(), "swap:BTCUSDT", "1"),
    (Bybit(), "linear:BTCUSDT", "a&category=spot"),
    (Kraken(), "spot:XBTUSD", "O1&txid=O2"),
    (Coinbase(), "spot:BTC-USD", "../accounts"),
    (Hyperliquid(), "perp:BTC", "123"),  # its fills come from the account's own fill list
])
def test_an_id_that_could_carry_other_parameters_is_never_asked(adapter: object, scope: str, order_id: str) -> None:
    assert adapter.order_query_request(scope, order_id) is None  # type: ignore[attr-defined]


def test_keyproxys_own_binance_reads_spell_a_contract_as_binance_does() -> None:
    """A scope spells a futures contract bare (`BTCUSDT250328`); every read keyproxy sends for it names the symbol with
    its underscore, as Binance lists it (the order query did, the reconciliation reads did not)."""
    binance = Binance()
    assert binance.reconcile_request("usdm:BTCUSDT250328", 5)[2].startswith("symbol=BTCUSDT_250328&")
    assert binance.conditional_reconcile_request("usdm:BTCUSDT250328", 5)[2].startswith("symbol=BTCUSDT_250328&")
    assert binance.reconcile_request("spot:BTCUSDT", 5)[2].startswith("symbol=BTCUSDT&")
