"""Exchange adapters: one module per exchange behind `base.Adapter`.

The adapter modules are imported when `default_adapters()` is first called, not with this package: a CLI
command that never signs (most of them, with the daemon running) starts without them.
"""

from __future__ import annotations

from keyproxy.exchanges.base import Adapter


def default_adapters() -> dict[str, Adapter]:
    """Every exchange the proxy can serve in this version."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.exchanges.bybit import Bybit
    from keyproxy.exchanges.coinbase import Coinbase
    from keyproxy.exchanges.hyperliquid import Hyperliquid
    from keyproxy.exchanges.kraken import Kraken
    from keyproxy.exchanges.okx import Okx

    return {
        "binance": Binance(),
        "bybit": Bybit(),
        "coinbase": Coinbase(),
        "hyperliquid": Hyperliquid(),
        "kraken": Kraken(),
        "okx": Okx(),
    }
