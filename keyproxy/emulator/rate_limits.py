"""Bybit's, OKX's, Kraken's and Coinbase's rate limits, as the exchanges enforce them (emulator side, issue 19).

Written apart from keyproxy's adapters, from each exchange's documentation:
- Bybit V5 "Rate Limit Rules": 600 requests in any 5 s per IP, over it HTTP 403 "access too frequent" and
  a ban; per UID and endpoint a rolling one-second limit, reported as X-Bapi-Limit / X-Bapi-Limit-Status /
  X-Bapi-Limit-Reset-Timestamp, over it retCode 10006 "Too many visits!".
- OKX v5: per endpoint and User ID, N requests per 2 s; over it HTTP 429 code 50011.
- Kraken "Spot REST API rate limits": a call counter per key (+1 a call, +2 for ledger and trade history,
  orders and cancels free), falling at the tier's rate; over it `EAPI:Rate limit exceeded`.
- Coinbase Advanced Trade: private requests per user (30 a second), public ones per IP (10 a second); over
  either HTTP 429 (ccxt's coinbase cites the REST rate-limit page so).

Off unless a test sets them (`POST /_emulator/limits`), in numbers scaled down so a test reaches them.
The emulator serves one IP (loopback).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Rolling:
    """At most `limit` requests in any `span` seconds (None: not enforced)."""

    limit: int | None = None
    span: float = 1.0
    log: deque[float] = field(default_factory=deque)

    def hit(self, now: float) -> bool:
        """Count a request; True when the exchange refuses it (a refused request is not counted)."""
        while self.log and self.log[0] <= now - self.span:
            self.log.popleft()
        if self.limit is not None and len(self.log) >= self.limit:
            return True
        self.log.append(now)
        return False

    def remaining(self) -> int:
        return max(0, (self.limit or 0) - len(self.log))

    def reset_at(self, now: float) -> float:
        """When the oldest counted request leaves the window."""
        return self.log[0] + self.span if self.log else now


@dataclass
class Decaying:
    """Kraken's call counter: refused above `limit`, falling by one every `seconds_per_unit`."""

    limit: float | None = None
    seconds_per_unit: float = 3.0
    level: float = 0.0
    at: float = 0.0

    def hit(self, cost: float, now: float) -> bool:
        self.level = max(0.0, self.level - (now - self.at) / self.seconds_per_unit)
        self.at = now
        if self.limit is not None and cost and self.level + cost > self.limit:
            return True
        self.level += cost
        return False


@dataclass
class BybitLimits:
    ip: Rolling = field(default_factory=lambda: Rolling(None, 5.0))
    uid_per_s: int | None = None  # every private endpoint's limit per UID (None: not enforced)
    ban_seconds: float = 10.0
    banned_until: float = 0.0
    uid: dict[tuple[str, str], Rolling] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=lambda: {"403": 0, "10006": 0})

    def ip_refused(self, now: float) -> bool:
        if now < self.banned_until:
            self.answered["403"] += 1
            return True
        if self.ip.hit(now):
            self.banned_until = now + self.ban_seconds
            self.answered["403"] += 1
            return True
        return False

    def endpoint(self, api_key: str, path: str) -> Rolling | None:
        if self.uid_per_s is None:
            return None
        window = self.uid.setdefault((api_key, path), Rolling(self.uid_per_s, 1.0))
        window.limit = self.uid_per_s
        return window


@dataclass
class OkxLimits:
    per_2s: dict[str, int] = field(default_factory=dict)  # "/api/v5/account/balance" -> limit per 2 s
    uid: dict[tuple[str, str], Rolling] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=lambda: {"50011": 0})

    def refused(self, api_key: str, path: str, now: float) -> bool:
        limit = self.per_2s.get(path)
        if limit is None:
            return False
        window = self.uid.setdefault((api_key, path), Rolling(limit, 2.0))
        window.limit = limit
        if window.hit(now):
            self.answered["50011"] += 1
            return True
        return False


# "All other API calls increase this counter by 1 (except AddOrder, CancelOrder which operate on a different
# limiter)" (Kraken, Spot REST Rate Limits): the order operations go to the trading engine's per-pair counter (a
# batch and an edit as ccxt prices them, 0), but CancelAll and CancelAllOrdersAfter count (ccxt: 1; session 33's
# review: 40 of them in 0.2 s spent nothing)
_KRAKEN_FREE = frozenset({"AddOrder", "AddOrderBatch", "EditOrder", "AmendOrder", "CancelOrder", "CancelOrderBatch"})
_KRAKEN_TWO = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})


@dataclass
class KrakenLimits:
    limit: float | None = None
    seconds_per_unit: float = 3.0
    counters: dict[str, Decaying] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=lambda: {"EAPI:Rate limit exceeded": 0})

    def refused(self, api_key: str, method: str, now: float) -> bool:
        if self.limit is None:
            return False
        counter = self.counters.setdefault(api_key, Decaying())
        counter.limit, counter.seconds_per_unit = self.limit, self.seconds_per_unit
        cost = 0 if method in _KRAKEN_FREE else 2 if method in _KRAKEN_TWO else 1
        if counter.hit(cost, now):
            self.answered["EAPI:Rate limit exceeded"] += 1
            return True
        return False


@dataclass
class CoinbaseLimits:
    """Requests a second: every private one per key, every public one for the IP (None: not enforced)."""

    private_per_s: int | None = None
    public: Rolling = field(default_factory=lambda: Rolling(None, 1.0))
    private: dict[str, Rolling] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=lambda: {"429": 0})

    def refused(self, api_key: str | None, now: float) -> bool:
        """`api_key` None: a public request."""
        if api_key is None:
            window: Rolling | None = self.public
        elif self.private_per_s is None:
            window = None
        else:
            window = self.private.setdefault(api_key, Rolling(self.private_per_s, 1.0))
            window.limit = self.private_per_s
        if window is None or not window.hit(now):
            return False
        self.answered["429"] += 1
        return True
