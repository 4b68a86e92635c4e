"""Static market data for the Kraken spot emulator.

A small market: XBT/USD, ETH/USD, XBT/USDT, ETH/USDT and ETH/XBT. Field
names, asset ids (``XXBT``, ``ZUSD``...) and the example values come from
Kraken's own spec (krakenfx/api-specs ``spot-rest/openapi_v3.yaml``,
``/public/Assets`` and ``examples/responses/public/assets/pairs.yaml``):
pair ``XXBTZUSD`` has altname ``XBTUSD``, wsname ``XBT/USD``,
``pair_decimals`` 1, ``lot_decimals`` 8, ``ordermin`` 0.0001, ``costmin`` 0.5,
``tick_size`` 0.1. Every pair has a fixed last price (no matching engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Asset:
    """One Kraken asset (``/0/public/Assets`` entry)."""

    id: str
    altname: str
    decimals: int
    display_decimals: int

    def doc(self) -> dict[str, Any]:
        return {
            "aclass": "currency",
            "altname": self.altname,
            "decimals": self.decimals,
            "display_decimals": self.display_decimals,
            "collateral_value": 1,
            "status": "enabled",
        }


ASSETS: dict[str, Asset] = {
    a.id: a
    for a in (
        Asset("XXBT", "XBT", 10, 5),
        Asset("XETH", "ETH", 10, 5),
        Asset("ZUSD", "USD", 4, 2),
        Asset("ZEUR", "EUR", 4, 2),
        Asset("USDT", "USDT", 8, 4),
    )
}
# Names a caller may use for an asset: id, altname, and the common ticker.
_ALIASES = {"BTC": "XXBT"} | {a.altname: a.id for a in ASSETS.values()} | {i: i for i in ASSETS}


def asset_id(name: str) -> str | None:
    """Kraken asset id for ``XXBT``/``XBT``/``BTC``-style names, None if unknown."""
    return _ALIASES.get(name.upper())


@dataclass(frozen=True)
class Pair:
    """Trading rules of one pair (``/0/public/AssetPairs`` entry)."""

    id: str
    altname: str
    wsname: str
    base: str
    quote: str
    pair_decimals: int
    cost_decimals: int
    ordermin: Decimal
    costmin: Decimal
    tick: Decimal
    last: Decimal
    lot_decimals: int = 8

    def doc(self) -> dict[str, Any]:
        return {
            "altname": self.altname,
            "wsname": self.wsname,
            "aclass_base": "currency",
            "base": self.base,
            "aclass_quote": "currency",
            "quote": self.quote,
            "lot": "unit",
            "cost_decimals": self.cost_decimals,
            "pair_decimals": self.pair_decimals,
            "lot_decimals": self.lot_decimals,
            "lot_multiplier": 1,
            "leverage_buy": [],
            "leverage_sell": [],
            "fees": [[v, f] for v, f in TAKER_FEES],
            "fees_maker": [[v, f] for v, f in MAKER_FEES],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": str(self.ordermin),
            "costmin": str(self.costmin),
            "tick_size": str(self.tick),
            "status": "online",
        }

    def price(self, value: Decimal) -> str:
        return fmt(value, self.pair_decimals)

    def volume(self, value: Decimal) -> str:
        return fmt(value, self.lot_decimals)


# Fee schedule as published in the AssetPairs example (percent).
TAKER_FEES = [(0, 0.26), (50000, 0.24), (100000, 0.22), (250000, 0.2), (500000, 0.18),
              (1000000, 0.16), (2500000, 0.14), (5000000, 0.12), (10000000, 0.1)]
MAKER_FEES = [(0, 0.16), (50000, 0.14), (100000, 0.12), (250000, 0.1), (500000, 0.08),
              (1000000, 0.06), (2500000, 0.04), (5000000, 0.02), (10000000, 0)]


def _p(pid: str, alt: str, ws: str, base: str, quote: str, pdec: int, cdec: int,
       omin: str, cmin: str, tick: str, last: str) -> Pair:
    return Pair(pid, alt, ws, base, quote, pdec, cdec, Decimal(omin), Decimal(cmin),
                Decimal(tick), Decimal(last))


PAIRS: dict[str, Pair] = {
    p.id: p
    for p in (
        _p("XXBTZUSD", "XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, 5, "0.0001", "0.5", "0.1", "60000"),
        _p("XETHZUSD", "ETHUSD", "ETH/USD", "XETH", "ZUSD", 2, 5, "0.002", "0.5", "0.01", "3000"),
        _p("XBTUSDT", "XBTUSDT", "XBT/USDT", "XXBT", "USDT", 1, 5, "0.0001", "0.5", "0.1", "60000"),
        _p("ETHUSDT", "ETHUSDT", "ETH/USDT", "XETH", "USDT", 2, 5, "0.002", "0.5", "0.01", "3000"),
        _p("XETHXXBT", "ETHXBT", "ETH/XBT", "XETH", "XXBT", 5, 6, "0.01", "0.00002", "0.00001",
           "0.05"),
    )
}
_PAIR_NAMES = {n: p for p in PAIRS.values() for n in (p.id, p.altname, p.wsname)}


def find_pair(name: str) -> Pair | None:
    """Look a pair up by id (``XXBTZUSD``), altname (``XBTUSD``) or wsname (``XBT/USD``)."""
    return _PAIR_NAMES.get(name)


def fmt(value: Decimal, places: int) -> str:
    """Fixed-point string with exactly ``places`` decimals, as Kraken prints amounts."""
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def places_of(value: Decimal) -> int:
    """Number of decimals actually used by ``value`` (``1.250`` -> 2)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
