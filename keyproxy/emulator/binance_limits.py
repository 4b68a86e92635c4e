"""Binance's request-weight limit per IP, as the exchange enforces it (emulator side).

Per Binance's "LIMITS" (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits):
every `/api/` answer carries `X-MBX-USED-WEIGHT-1M`, the weight the IP used in the current calendar
minute; a request over the limit is HTTP 429 code -1003 with `Retry-After`, and "repeatedly violating
rate limits and/or failing to back off after receiving 429s will result in an automated IP ban (HTTP
status 418)". Endpoint weights from the same documentation ("Weight: ..." of each endpoint), written
apart from keyproxy's adapter.

Off unless a test sets a limit (`POST /_emulator/limits {"binance_weight_per_minute": N,
"ban_seconds": S}`): the numbers are scaled down so a test can reach them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WEIGHTS = {
    ("GET", "/api/v3/account"): 20, ("GET", "/api/v3/exchangeInfo"): 20, ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): 20, ("GET", "/api/v3/order"): 4, ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/avgPrice"): 2, ("GET", "/api/v3/trades"): 25, ("GET", "/api/v3/aggTrades"): 4,
}


def weight(method: str, path: str, query: str) -> int:
    """The request weight Binance charges for one `/api/` request."""
    has_symbol = "symbol=" in query or "symbols=" in query
    if path == "/api/v3/openOrders" and method == "GET":
        return 6 if has_symbol else 80
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if "symbol=" in query and "symbols=" not in query else 4
    if path == "/api/v3/ticker/24hr":
        return 2 if "symbol=" in query and "symbols=" not in query else 80
    if path == "/api/v3/depth":
        limit = next((int(p[6:]) for p in query.split("&") if p.startswith("limit=") and p[6:].isdigit()), 100)
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return WEIGHTS.get((method, path), 1)


@dataclass
class WeightLimit:
    """One IP's weight in the current minute, its 429s and its ban (the emulator serves one IP: loopback)."""

    per_minute: int | None = None  # None: not enforced (the header is still sent)
    ban_seconds: float = 5.0
    minute: int = -1
    used: int = 0
    warned_minute: int = -1  # the minute a 429 was answered in: another request in it is a ban
    banned_until: float = 0.0
    answered: dict[int, int] = field(default_factory=lambda: {429: 0, 418: 0})

    def charge(self, cost: int, now: float) -> tuple[int, float] | None:
        """Count a request; (status, retry_after) when Binance would refuse it, else None."""
        minute = math.floor(now / 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        if now < self.banned_until:
            self.answered[418] += 1
            return 418, self.banned_until - now
        self.used += cost
        if self.per_minute is None or self.used <= self.per_minute:
            return None
        if self.warned_minute == minute:  # it did not back off after a 429: banned
            self.banned_until = now + self.ban_seconds
            self.answered[418] += 1
            return 418, self.ban_seconds
        self.warned_minute = minute
        self.answered[429] += 1
        return 429, (minute + 1) * 60 - now


# `/sapi/` (Binance's SAPI "LIMITS"): each IP-limited endpoint its own 12,000 a minute, reported in
# X-SAPI-USED-IP-WEIGHT-1M; over it, 429 (no 418 ban escalation on /sapi/). Weights: each endpoint's "Weight(IP)"
SAPI_WEIGHTS = {"/sapi/v1/accountSnapshot": 2400, "/sapi/v1/capital/config/getall": 10}


@dataclass
class SapiLimits:
    """The IP's `/sapi/` weight per endpoint (off until a test sets `binance_sapi_weight_per_minute`)."""

    per_minute: int | None = None
    used: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (minute, weight used in it)
    answered: int = 0  # 429s

    def charge(self, path: str, now: float) -> tuple[int, float | None]:
        """(the endpoint's weight used this minute, seconds to retry after when Binance would refuse it)."""
        minute = math.floor(now / 60)
        at, used = self.used.get(path, (minute, 0))
        used = (used if at == minute else 0) + SAPI_WEIGHTS.get(path, 1)
        self.used[path] = (minute, used)
        if self.per_minute is None or used <= self.per_minute:
            return used, None
        self.answered += 1
        return used, (minute + 1) * 60 - now
