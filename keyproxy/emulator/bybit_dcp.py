"""Bybit's disconnect-cancel-all (DCP) on the emulator, written from Bybit's v5 docs ("Set Disconnect Cancel
All", "Get DCP Info", the private `dcp` topic), independently of keyproxy's adapters.

Bybit switches DCP on per product (SPOT, DERIVATIVES, OPTIONS) when an account manager is asked; the
emulator's account manager is `POST /_emulator/dcp {"api_key", "products": [...]}`. `GET
/v5/account/query-dcp-info` lists the products switched on (nothing for an account without DCP) with their
windows; `POST /v5/order/disconnected-cancel-all {"product" (default OPTIONS), "timeWindow": 3..300}` sets a
switched-on product's window. A private socket subscribed to `dcp` (every product) or `dcp.spot`,
`dcp.future`, `dcp.option` watches its products while it is open; once every such socket of the account is
gone for a product's window, all of the account's open orders of that product are cancelled, and the timer
waits for the next subscription ("the timing will be reset and restarted at the next disconnection").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRODUCTS = ("SPOT", "DERIVATIVES", "OPTIONS")
CATEGORIES = {"SPOT": ("spot",), "DERIVATIVES": ("linear", "inverse"), "OPTIONS": ("option",)}
TOPICS = {"dcp": PRODUCTS, "dcp.spot": ("SPOT",), "dcp.future": ("DERIVATIVES",), "dcp.option": ("OPTIONS",)}
WINDOW = (3, 300)


@dataclass
class Dcp:
    """One account's DCP: the products switched on (with windows), which are watched, since when not."""

    windows: dict[str, int] = field(default_factory=dict)  # product -> seconds; absent: DCP is off for it
    watched: set[str] = field(default_factory=set)  # products a subscribed socket has watched since firing
    lost_at: dict[str, float] = field(default_factory=dict)  # product -> when its last socket went away

    def infos(self) -> list[dict[str, str]]:
        return [{"product": p, "dcpStatus": "ON", "timeWindow": str(w)} for p, w in self.windows.items()]

    def set_window(self, product: str, seconds: Any) -> str | None:
        """None, or why Bybit would refuse the setting."""
        if product not in PRODUCTS:
            return f"product must be one of {', '.join(PRODUCTS)}"
        if isinstance(seconds, bool) or not isinstance(seconds, int | str) or not str(seconds).isdigit() \
                or not WINDOW[0] <= int(seconds) <= WINDOW[1]:
            return f"timeWindow must be {WINDOW[0]} to {WINDOW[1]} seconds"
        if product not in self.windows:
            return f"DCP is not enabled for {product} on this account"
        self.windows[product] = int(seconds)
        return None

    def due(self, active: set[str], now: float) -> list[str]:
        """Given the products an open subscribed socket watches now: the products whose orders go now."""
        fired = []
        for product in list(self.windows):
            if product in active:
                self.watched.add(product)
                self.lost_at.pop(product, None)
            elif product in self.watched:
                lost = self.lost_at.setdefault(product, now)
                if now - lost >= self.windows[product]:
                    self.watched.discard(product)
                    self.lost_at.pop(product, None)
                    fired.append(product)
        return fired


def watched_products(topics: set[str]) -> set[str]:
    return {p for t in topics for p in TOPICS.get(t, ())}
