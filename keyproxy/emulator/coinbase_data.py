"""Static market data for the Coinbase emulator.

A small market: spot BTC-USD, ETH-USD, BTC-USDC and ETH-BTC at fixed prices,
no futures. BTC-USDC is an alias of BTC-USD (Coinbase's USD and USDC books are one: the
product list says so in `alias` / `alias_to`, and the user channel names an order placed on
the alias by the product it trades as). Shapes follow Coinbase's documented responses (Advanced Trade
"List Public Products", Coinbase App "Get Currencies" / "Get Exchange
Rates") and carry every field ccxt's ``parse_spot_market`` /
``fetch_currencies`` reads (ccxt names each field in its comments).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Product:
    """Trading rules the order handlers enforce for one product."""

    product_id: str
    base: str
    quote: str
    base_increment: Decimal
    quote_increment: Decimal
    base_min: Decimal
    base_max: Decimal
    quote_min: Decimal
    last: Decimal
    alias: str = ""  # the product whose order book this one trades on (Coinbase's USD/USDC books are one)


ALIASES = {"BTC-USDC": "BTC-USD"}  # alias -> the product it trades as ("alias" / "alias_to" in product answers)


def _p(pid: str, base_inc: str, quote_inc: str, base_min: str, quote_min: str,
       last: str) -> Product:
    base, quote = pid.split("-")
    return Product(
        pid, base, quote, Decimal(base_inc), Decimal(quote_inc), Decimal(base_min),
        Decimal(10000), Decimal(quote_min), Decimal(last), ALIASES.get(pid, ""),
    )


PRODUCTS: dict[str, Product] = {
    p.product_id: p
    for p in (
        _p("BTC-USD", "0.00000001", "0.01", "0.00000001", "1", "60000"),
        _p("ETH-USD", "0.00000001", "0.01", "0.00000001", "1", "3000"),
        _p("BTC-USDC", "0.00000001", "0.01", "0.00000001", "1", "60000"),
        _p("ETH-BTC", "0.00000001", "0.00001", "0.00000001", "0.00001", "0.05"),
    )
}

NAMES = {
    "BTC": "Bitcoin", "ETH": "Ethereum", "USDC": "USDC", "USD": "US Dollar",
    "EUR": "Euro", "GBP": "British Pound",
}
FIAT = ("USD", "EUR", "GBP")
CRYPTO = {  # code -> (exponent, address_regex)
    "BTC": (8, "^([13][a-km-zA-HJ-NP-Z1-9]{25,34})|^(bc1[02-9ac-hj-np-z]{11,71})$"),
    "ETH": (8, "^(?:0x)?[0-9a-fA-F]{40}$"),
    "USDC": (6, "^(?:0x)?[0-9a-fA-F]{40}$"),
}
USD_PRICE = {"BTC": Decimal(60000), "ETH": Decimal(3000), "USDC": Decimal(1), "USD": Decimal(1),
             "EUR": Decimal("1.1"), "GBP": Decimal("1.25")}


def fmt(value: Decimal) -> str:
    """Coinbase sends decimals as plain strings without exponent."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def asset_id(code: str) -> str:
    """A stable UUID per currency, like Coinbase's ``asset_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coinbase-emulator/asset/{code}"))


def public_product(p: Product) -> dict[str, Any]:
    """One entry of ``GET /api/v3/brokerage/market/products``."""
    return {
        "product_id": p.product_id,
        "price": fmt(p.last),
        "price_percentage_change_24h": "0",
        "volume_24h": "1000",
        "volume_percentage_change_24h": "0",
        "base_increment": fmt(p.base_increment),
        "quote_increment": fmt(p.quote_increment),
        "quote_min_size": fmt(p.quote_min),
        "quote_max_size": "150000000",
        "base_min_size": fmt(p.base_min),
        "base_max_size": fmt(p.base_max),
        "base_name": NAMES.get(p.base, p.base),
        "quote_name": NAMES.get(p.quote, p.quote),
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": False,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": p.quote,
        "base_currency_id": p.base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": p.alias,
        "alias_to": sorted(a for a, to in ALIASES.items() if to == p.product_id),
        "base_display_symbol": p.base,
        "quote_display_symbol": p.quote,
        "view_only": False,
        "price_increment": fmt(p.quote_increment),
        "display_name": p.product_id,
        "product_venue": "CBE",
    }


def products_doc(product_type: str | None) -> dict[str, Any]:
    """Spot only: a FUTURE/PERPETUAL listing is empty, as for an account without them."""
    items = [] if product_type not in (None, "", "SPOT") else list(PRODUCTS.values())
    return {"products": [public_product(p) for p in items], "num_products": len(items)}


def fiat_currencies() -> dict[str, Any]:
    """``GET /v2/currencies`` (fiat only, as the docs describe)."""
    return {"data": [{"id": c, "name": NAMES[c], "min_size": "0.01"} for c in FIAT]}


def crypto_currencies() -> dict[str, Any]:
    """``GET /v2/currencies/crypto``."""
    return {
        "data": [
            {
                "asset_id": asset_id(code),
                "code": code,
                "name": NAMES[code],
                "color": "#0052FF",
                "sort_index": index,
                "exponent": exponent,
                "type": "crypto",
                "address_regex": regex,
            }
            for index, (code, (exponent, regex)) in enumerate(CRYPTO.items())
        ]
    }


def exchange_rates(currency: str | None) -> dict[str, Any]:
    """``GET /v2/exchange-rates?currency=`` (default USD): units of X per 1 currency."""
    base = (currency or "USD").upper()
    price = USD_PRICE.get(base, Decimal(1))
    rates = {c: fmt((price / v).quantize(Decimal("0.00000001"))) for c, v in USD_PRICE.items()}
    return {"data": {"currency": base, "rates": rates}}
