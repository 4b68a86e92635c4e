"""Static market data for the Bybit emulator.

A small market: spot BTCUSDT / ETHUSDT, USDT perpetuals BTCUSDT / ETHUSDT
(category ``linear``), the inverse perpetual BTCUSD, and no options. Shapes
follow Bybit's v5 "Get Instruments Info" and "Get Coin Info" response
examples (bybit-exchange/docs ``docs/v5/market/instrument.mdx``,
``docs/v5/asset/coin-info.mdx``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CATEGORIES = ("spot", "linear", "inverse", "option")


@dataclass(frozen=True)
class Market:
    """Trading rules the order handlers enforce for one symbol."""

    category: str
    symbol: str
    base: str
    quote: str
    settle: str
    tick: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    last: Decimal

    @property
    def contract(self) -> bool:
        return self.category in ("linear", "inverse")


def _m(cat: str, sym: str, base: str, quote: str, tick: str, step: str, min_qty: str,
       notional: str, last: str) -> Market:
    settle = base if cat == "inverse" else quote
    return Market(cat, sym, base, quote, settle, Decimal(tick), Decimal(step), Decimal(min_qty),
                  Decimal(1000000) if cat == "inverse" else Decimal(1000),
                  Decimal(notional), Decimal(last))


MARKETS: dict[str, dict[str, Market]] = {c: {} for c in CATEGORIES}
for _market in (
    _m("spot", "BTCUSDT", "BTC", "USDT", "0.1", "0.000001", "0.000011", "5", "60000"),
    _m("spot", "ETHUSDT", "ETH", "USDT", "0.01", "0.00001", "0.00062", "5", "3000"),
    _m("linear", "BTCUSDT", "BTC", "USDT", "0.10", "0.001", "0.001", "5", "60000"),
    _m("linear", "ETHUSDT", "ETH", "USDT", "0.01", "0.01", "0.01", "5", "3000"),
    _m("inverse", "BTCUSD", "BTC", "USD", "0.50", "1", "1", "0", "60000"),
):
    MARKETS[_market.category][_market.symbol] = _market


def fmt(value: Decimal) -> str:
    """Bybit sends decimals as plain strings."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def instrument(m: Market) -> dict[str, Any]:
    """One ``list`` entry of ``GET /v5/market/instruments-info``."""
    if m.category == "spot":
        return {
            "symbol": m.symbol, "baseCoin": m.base, "quoteCoin": m.quote, "innovation": "0",
            "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": fmt(m.qty_step), "quotePrecision": "0.0000001",
                "minOrderQty": fmt(m.min_qty), "maxOrderQty": fmt(m.max_qty),
                "minOrderAmt": fmt(m.min_notional), "maxOrderAmt": "8000000",
                "maxLimitOrderQty": fmt(m.max_qty), "maxMarketOrderQty": fmt(m.max_qty / 2),
                "postOnlyMaxLimitOrderSize": "60000",
            },
            "priceFilter": {"tickSize": fmt(m.tick)},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            "symbolType": "",
        }
    return {
        "symbol": m.symbol,
        "contractType": "LinearPerpetual" if m.category == "linear" else "InversePerpetual",
        "status": "Trading", "baseCoin": m.base, "quoteCoin": m.quote,
        "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": str(len(format(m.tick, "f").partition(".")[2])),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": fmt(m.tick), "maxPrice": "1999999.80", "tickSize": fmt(m.tick)},
        "lotSizeFilter": {
            "maxOrderQty": fmt(m.max_qty), "minOrderQty": fmt(m.min_qty),
            "qtyStep": fmt(m.qty_step), "postOnlyMaxOrderQty": fmt(m.max_qty),
            "maxMktOrderQty": fmt(m.max_qty / 2), "minNotionalValue": fmt(m.min_notional),
        },
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": m.settle,
        "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
        "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "",
    }


def instruments(category: str, symbol: str | None, base_coin: str | None,
                status: str | None) -> dict[str, Any]:
    """Every emulated instrument is ``Trading``; a ``status=PreLaunch`` query finds none."""
    items = [m for m in MARKETS[category].values()
             if symbol in (None, m.symbol) and base_coin in (None, m.base)
             and status in (None, "Trading")]
    return {"category": category, "list": [instrument(m) for m in items], "nextPageCursor": ""}


def ticker(m: Market) -> dict[str, Any]:
    """One entry of ``GET /v5/market/tickers`` (the fields every category shares)."""
    p = fmt(m.last)
    return {"symbol": m.symbol, "bid1Price": fmt(m.last - m.tick), "bid1Size": "1",
            "ask1Price": fmt(m.last + m.tick), "ask1Size": "1", "lastPrice": p,
            "prevPrice24h": p, "price24hPcnt": "0", "highPrice24h": p, "lowPrice24h": p,
            "turnover24h": fmt(m.last * 1000), "volume24h": "1000"}


# coin -> [(chain, chainType, withdrawFee, withdrawMin, minAccuracy)]
CHAINS: dict[str, list[tuple[str, str, str, str, str]]] = {
    "USDT": [("ETH", "ERC20", "4", "10", "6"), ("TRX", "TRC20", "1", "2", "6")],
    "USDC": [("ETH", "ERC20", "4", "10", "6")],
    "BTC": [("BTC", "BTC", "0.0001", "0.001", "8")],
    "ETH": [("ETH", "ERC20", "0.0012", "0.002", "8")],
}


def coin_info(coin: str | None) -> dict[str, Any]:
    """``GET /v5/asset/coin/query-info``."""
    rows = []
    for name, chains in CHAINS.items():
        if coin is not None and coin != name:
            continue
        rows.append({
            "name": name, "coin": name, "remainAmount": "10000000",
            "chains": [{"chainType": kind, "confirmation": "6", "withdrawFee": fee,
                        "depositMin": "0", "withdrawMin": wmin, "chain": chain,
                        "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": acc,
                        "withdrawPercentageFee": "0", "contractAddress": "",
                        "safeConfirmNumber": "12", "withdrawMax": "10000000"}
                       for chain, kind, fee, wmin, acc in chains],
        })
    return {"rows": rows}
