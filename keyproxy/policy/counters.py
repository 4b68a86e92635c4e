"""The live counters `decide` reads and the core charges once a request is allowed: token buckets for the rate
limits, and each bot's recent orders for `duplicate_orders`."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from keyproxy.policy.model import AccountLimits, BotPolicy, RequestFacts, minutes_of_day

# what makes two orders "the same order" for duplicate_orders: Decimal equality ignores trailing zeros
OrderShape = tuple[str | None, str | None, str | None, Decimal | None, Decimal | None, Decimal | None, Decimal | None]


MAX_REMEMBERED_ORDERS = 1024  # per bot: distinct orders remembered, and repeats of one (more than any cap)


def order_shape(leg: RequestFacts) -> OrderShape:
    return (leg.scope, (leg.side or "").lower() or None, leg.order_type, leg.quantity, leg.quote_quantity,
            leg.price, leg.trigger_price)


@dataclass
class Bucket:
    """A token bucket: `rate` tokens per second up to `capacity`."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def level(self, now: float) -> float:
        return min(self.capacity, self.tokens + (now - self.updated) * self.rate)

    def wait(self, now: float, tokens: int = 1) -> float:
        """Seconds until `tokens` tokens are available (0 if they are)."""
        missing = tokens - self.level(now)
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, now: float) -> None:
        self.tokens = self.level(now) - 1.0
        self.updated = now


@dataclass
class Counters:
    """Live counters the pipeline owns; `decide` only reads them."""

    buckets: dict[str, Bucket] = field(default_factory=dict)
    # bot -> order shape -> when the bot placed it, oldest first (duplicate_orders); the shapes of one bot
    # are bounded (the least recently placed forgotten first), and so are the times of one shape
    recent_orders: dict[str, dict[OrderShape, deque[float]]] = field(default_factory=dict)

    def repeats(self, bot: str, shape: OrderShape, window: float, now: float) -> int:
        """How many times the bot placed this same order in the last `window` seconds."""
        times = self.recent_orders.get(bot, {}).get(shape)
        if not times:
            return 0
        while times and times[0] <= now - window:
            times.popleft()
        return len(times)

    def remember(self, bot: str, shapes: tuple[OrderShape, ...], now: float) -> None:
        shapes_of = self.recent_orders.setdefault(bot, {})
        for shape in shapes:
            times = shapes_of.pop(shape, None) or deque(maxlen=MAX_REMEMBERED_ORDERS)
            times.append(now)
            shapes_of[shape] = times  # re-inserted: the most recently placed last
            while len(shapes_of) > MAX_REMEMBERED_ORDERS:
                shapes_of.pop(next(iter(shapes_of)))

    # when this process started (s; None: buckets start full): a bucket first used since starts with what it could
    # have refilled since then, never full (session 34's crash review: a kill -9 gave a bot a new minute's orders)
    started: float | None = None

    def bucket(self, key: str, rate: float, capacity: float, now: float) -> Bucket:
        b = self.buckets.get(key)
        if b is None or b.rate != rate or b.capacity != capacity:
            tokens = capacity if self.started is None else min(capacity, max(0.0, now - self.started) * rate)
            b = self.buckets[key] = Bucket(rate, capacity, tokens, now)
        return b

    def apply(self, charges: tuple[str, ...], now: float) -> None:
        for key in charges:
            self.buckets[key].take(now)

    def forget(self, bot: str) -> None:
        self.recent_orders.pop(bot, None)


def in_hours(windows: tuple[str, ...], now: float) -> bool:
    minute = int(now // 60) % 1440
    for w in windows:
        start, end = minutes_of_day(w)
        if (start <= minute < end) if start <= end else (minute >= start or minute < end):
            return True
    return False


def rate_limits(owner: str, limits: BotPolicy | AccountLimits, action: str | None
                 ) -> list[tuple[str, float, float]]:
    """(bucket key, tokens per second, capacity) for every rate limit of `limits` that applies."""
    out = []
    if limits.requests_per_second is not None:  # a rate of 0 would be no limit here: parse_policy refuses it
        rate = limits.requests_per_second
        out.append((f"{owner}:requests", rate, float(limits.burst or max(1, math.ceil(rate)))))
    if action in ("order", "amend") and limits.orders_per_minute is not None:
        out.append((f"{owner}:orders", limits.orders_per_minute / 60, float(limits.orders_per_minute)))
    if action == "cancel" and limits.cancels_per_minute is not None:
        out.append((f"{owner}:cancels", limits.cancels_per_minute / 60, float(limits.cancels_per_minute)))
    return out
