"""Durable per-bot usage behind the daily caps and the open-order cap, in state.db (a fleet's in Redis too)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from keyproxy.state import StateStore


class UsageBook:
    """Durable per-bot usage behind the daily caps and the open-order cap.

    Daily totals are keyed by UTC day; open orders by symbol, so a bot's own
    open-orders query for one symbol can correct the count for that symbol.
    Every change is committed before the request it belongs to goes on.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._cache: dict[str, str] = {}
        self.mirror: Any = None  # a fleet's open-order counts (fleet/gate.py FleetUsage): every change there too

    def _get(self, key: str) -> str | None:
        if key not in self._cache:
            value = self._store.usage_value(key)
            if value is None:
                return None
            self._cache[key] = value
        return self._cache[key]

    def _set(self, key: str, value: str) -> None:
        self._store.set_usage(key, value)
        self._cache[key] = value

    def forget_cached(self) -> None:
        """A transaction that wrote through this book was rolled back: what it cached is read from state.db again
        (a cancel's decrement kept here while state.db lost it would undercount the bot's open orders)."""
        self._cache.clear()

    @staticmethod
    def day(now: float) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(now))

    def daily(self, kind: str, bot: str, now: float, asset: str = "") -> Decimal:
        return Decimal(self._get(f"daily:{kind}:{bot}:{asset}:{self.day(now)}") or "0")

    def add_daily(self, kind: str, bot: str, amount: Decimal, now: float, asset: str = "") -> None:
        key = f"daily:{kind}:{bot}:{asset}:{self.day(now)}"
        self._set(key, str(Decimal(self._get(key) or "0") + amount))

    def open_orders(self, bot: str) -> int:
        items = self._store.usage_items(f"open:{bot}:")
        return sum(int(v) for v in items.values())

    def scope_open_orders(self, bot: str, scope: str) -> int:
        return int(self._get(f"open:{bot}:{scope}") or "0")

    def change_open_orders(self, bot: str, symbol: str, delta: int) -> None:
        """`symbol` is a scope (`market:SYMBOL`); `market:*` with a negative delta takes from whichever of
        the market's scopes still count orders (a cancel answer that names no symbol)."""
        if self.mirror is not None:
            self.mirror.change_open_orders(bot, symbol, delta)
        market, _, name = symbol.partition(":")
        if name == "*" and delta < 0:
            for key, value in self._store.usage_items(f"open:{bot}:{market}:").items():
                while delta < 0 and int(value) > 0:
                    value, delta = str(int(value) - 1), delta + 1
                self._set(key, value)
            return
        key = f"open:{bot}:{symbol}"
        self._set(key, str(max(0, int(self._get(key) or "0") + delta)))

    def reset_open_orders(self, bot: str, market: str, since_ms: int | None = None) -> None:
        """Every scope of `market` to 0 (an answer that covered all of them); in a fleet, plus the bot's orders
        other instances learned open since `since_ms` (when it was decided: this one adds its own)."""
        if self.mirror is not None:
            self.mirror.reset_open_orders(bot, market, since_ms)
        for key in self._store.usage_items(f"open:{bot}:{market}:"):
            self._set(key, "0")

    def set_open_orders(self, bot: str, symbol: str, count: int, since_ms: int | None = None) -> None:
        """`count`: the listing's, plus this instance's own orders learned open since it was decided; in a fleet
        plus what other instances learned open since `since_ms` (added in Redis)."""
        if self.mirror is not None:
            self.mirror.set_open_orders(bot, symbol, count, since_ms)
        self._set(f"open:{bot}:{symbol}", str(max(0, count)))
