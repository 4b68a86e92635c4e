"""Exchange adapters: one module per exchange behind `base.Adapter`."""

from __future__ import annotations

from keyproxy.exchanges.base import Adapter
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.coinbase import Coinbase
from keyproxy.exchanges.hyperliquid import Hyperliquid
from keyproxy.exchanges.kraken import Kraken
from keyproxy.exchanges.okx import Okx


def default_adapters() -> dict[str, Adapter]:
    """Every exchange the proxy can serve in this version."""
    return {
        "binance": Binance(),
        "bybit": Bybit(),
        "coinbase": Coinbase(),
        "hyperliquid": Hyperliquid(),
        "kraken": Kraken(),
        "okx": Okx(),
    }
