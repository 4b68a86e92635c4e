"""Static market data for the Binance emulator.

A deliberately small market: spot BTCUSDT, ETHUSDT, ETHBTC and LTCBTC (the
symbol of Binance's own signing examples), USD-M perpetual BTCUSDT and COIN-M
perpetual BTCUSD_PERP. Shapes follow Binance's documented exchangeInfo /
capital-config responses and carry every field ccxt's ``parse_market`` and
``parse_currency`` read (filters, precisions, contract fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Market:
    """Trading rules the order handlers enforce for one symbol."""

    venue: str  # "spot" | "fapi" | "dapi"
    symbol: str
    base: str
    quote: str
    margin_asset: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    last: Decimal
    contract_size: Decimal = Decimal(1)


def _m(
    venue: str,
    symbol: str,
    base: str,
    quote: str,
    tick: str,
    step: str,
    min_qty: str,
    max_qty: str,
    notional: str,
    last: str,
    margin: str | None = None,
    size: str = "1",
) -> Market:
    return Market(
        venue,
        symbol,
        base,
        quote,
        margin or quote,
        Decimal(tick),
        Decimal(step),
        Decimal(min_qty),
        Decimal(max_qty),
        Decimal(notional),
        Decimal(last),
        Decimal(size),
    )


SPOT = {
    m.symbol: m
    for m in (
        _m("spot", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "0.00001", "9000", "5", "60000"),
        _m("spot", "ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "0.0001", "9000", "5", "3000"),
        _m(
            "spot",
            "ETHBTC",
            "ETH",
            "BTC",
            "0.00001",
            "0.0001",
            "0.0001",
            "100000",
            "0.0001",
            "0.05",
        ),
        _m(
            "spot",
            "LTCBTC",
            "LTC",
            "BTC",
            "0.000001",
            "0.001",
            "0.001",
            "100000",
            "0.0001",
            "0.0015",
        ),
    )
}
FAPI = {
    "BTCUSDT": _m(
        "fapi", "BTCUSDT", "BTC", "USDT", "0.10", "0.001", "0.001", "1000", "100", "60000"
    )
}
DAPI = {
    "BTCUSD_PERP": _m(
        "dapi",
        "BTCUSD_PERP",
        "BTC",
        "USD",
        "0.1",
        "1",
        "1",
        "1000000",
        "0",
        "60000",
        margin="BTC",
        size="100",
    )
}
MARKETS = {"spot": SPOT, "fapi": FAPI, "dapi": DAPI}
PERPETUAL_DELIVERY = 4133404800000  # what Binance reports as deliveryDate of perpetuals


def fmt(value: Decimal, places: int = 8) -> str:
    """Binance-style fixed-point string (spot uses 8 decimals)."""
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


SPOT_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
FUTURES_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
SPOT_ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
FUTURES_ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
STP_MODES = ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"]


def _spot_symbol(m: Market) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": SPOT_ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "opoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(m.tick),
                "maxPrice": "1000000.00000000",
                "tickSize": fmt(m.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(m.min_qty),
                "maxQty": fmt(m.max_qty),
                "stepSize": fmt(m.step),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": fmt(m.max_qty),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(m.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": STP_MODES,
    }


def _futures_symbol(m: Market) -> dict[str, Any]:
    out: dict[str, Any] = {
        "symbol": m.symbol,
        "pair": m.base + m.quote,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY,
        "onboardDate": 1569398400000,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": m.base,
        "quoteAsset": m.quote,
        "marginAsset": m.margin_asset,
        "pricePrecision": _places(m.tick),
        "quantityPrecision": _places(m.step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ["PoW"],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "556.80",
                "maxPrice": "4529764",
                "tickSize": str(m.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": str(m.min_qty),
                "maxQty": str(m.max_qty),
                "stepSize": str(m.step),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": str(m.min_qty),
                "maxQty": "120",
                "stepSize": str(m.step),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": FUTURES_ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }
    if m.venue == "fapi":
        out["status"] = "TRADING"
        out["filters"].append({"filterType": "MIN_NOTIONAL", "notional": str(m.min_notional)})
        out["permissionSets"] = ["GRID", "COPY"]
    else:
        out["contractStatus"] = "TRADING"
        out["contractSize"] = int(m.contract_size)
        out["equalQtyPrecision"] = 4
        out["underlyingSubType"] = []
    return out


def exchange_info(venue: str, server_time: int, symbols: list[str] | None = None) -> dict[str, Any]:
    """The ``exchangeInfo`` document of one venue, optionally filtered."""
    markets = [m for s, m in MARKETS[venue].items() if symbols is None or s in symbols]
    if venue == "spot":
        return {
            "timezone": "UTC",
            "serverTime": server_time,
            "rateLimits": SPOT_RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": [_spot_symbol(m) for m in markets],
        }
    info: dict[str, Any] = {
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": FUTURES_RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [_futures_symbol(m) for m in markets],
    }
    if venue == "fapi":
        info["futuresType"] = "U_MARGINED"
        info["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}]
    return info
