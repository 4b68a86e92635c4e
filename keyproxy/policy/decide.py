"""The policy decision: a pure function of the request's facts, the bot's policy, counters and time.

`decide` returns a `Decision`; it never mutates the counters but lists the
charges to apply when the request is allowed. `Decision()` built with no
arguments denies, so a forgotten branch cannot allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from keyproxy.policy.model import AccountLimits, BotPolicy, RequestFacts, Usage, minutes_of_day


class DenyCode(StrEnum):
    SCOPE = "scope_denied"
    RATE = "rate_limited"
    SYMBOL = "symbol_denied"
    NOTIONAL = "notional_exceeded"
    NOTIONAL_UNKNOWN = "notional_unknown"
    OPEN_ORDERS = "open_orders_exceeded"
    DAILY_NOTIONAL = "daily_notional_exceeded"
    LEVERAGE = "leverage_exceeded"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"
    ADDRESS = "address_denied"
    WITHDRAWAL = "withdrawal_limit"
    HOURS = "outside_hours"
    UNDECIDED = "policy_denied"


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool = False
    code: str = DenyCode.UNDECIDED.value
    detail: str = "no rule allowed this request"
    charges: tuple[str, ...] = ()  # token buckets to take one token from
    retry_after: float | None = None
    notional: Decimal | None = None  # to add to the bot's daily traded notional
    withdrawal: Decimal | None = None  # to add to the bot's daily withdrawn amount of the asset


def allowed(charges: tuple[str, ...], notional: Decimal | None = None, withdrawal: Decimal | None = None
            ) -> Decision:
    return Decision(True, "", "", charges, None, notional, withdrawal)


def deny(code: DenyCode, detail: str, retry_after: float | None = None) -> Decision:
    return Decision(False, code.value, detail, (), retry_after)


@dataclass
class Bucket:
    """A token bucket: `rate` tokens per second up to `capacity`."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def level(self, now: float) -> float:
        return min(self.capacity, self.tokens + (now - self.updated) * self.rate)

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0 if one is)."""
        missing = 1.0 - self.level(now)
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, now: float) -> None:
        self.tokens = self.level(now) - 1.0
        self.updated = now


@dataclass
class Counters:
    """Live counters the pipeline owns; `decide` only reads them."""

    buckets: dict[str, Bucket] = field(default_factory=dict)

    def bucket(self, key: str, rate: float, capacity: float, now: float) -> Bucket:
        b = self.buckets.get(key)
        if b is None or b.rate != rate or b.capacity != capacity:
            b = self.buckets[key] = Bucket(rate, capacity, capacity, now)
        return b

    def apply(self, charges: tuple[str, ...], now: float) -> None:
        for key in charges:
            self.buckets[key].take(now)


def _in_hours(windows: tuple[str, ...], now: float) -> bool:
    minute = int(now // 60) % 1440
    for w in windows:
        start, end = minutes_of_day(w)
        if (start <= minute < end) if start <= end else (minute >= start or minute < end):
            return True
    return False


def notional(facts: RequestFacts, last_price: Decimal | None) -> Decimal | None:
    """Quote-currency value of an order: quantity x price, else quote quantity, else x the last seen price."""
    if facts.quote_quantity is not None:
        return facts.quote_quantity
    if facts.quantity is not None and facts.price is not None:
        return facts.quantity * facts.price
    if facts.quantity is not None and last_price is not None:
        return facts.quantity * last_price
    return None


def _rate_limits(owner: str, limits: BotPolicy | AccountLimits, action: str | None
                 ) -> list[tuple[str, float, float]]:
    """(bucket key, tokens per second, capacity) for every rate limit of `limits` that applies."""
    out = []
    if limits.requests_per_second:
        rate = limits.requests_per_second
        out.append((f"{owner}:requests", rate, float(limits.burst or max(1, math.ceil(rate)))))
    if action == "order" and limits.orders_per_minute:
        out.append((f"{owner}:orders", limits.orders_per_minute / 60, float(limits.orders_per_minute)))
    if action == "cancel" and limits.cancels_per_minute:
        out.append((f"{owner}:cancels", limits.cancels_per_minute / 60, float(limits.cancels_per_minute)))
    return out


def decide(facts: RequestFacts, endpoint_class: str, policy: BotPolicy, counters: Counters, now: float, *,
           bot: str, account: str, halted: str | None = None, last_price: Decimal | None = None,
           account_limits: AccountLimits | None = None, usage: Usage = Usage(),
           throttle: float | None = None) -> Decision:
    """Allow or deny one request. `halted` is the reason of a kill switch covering this bot, if any."""
    if endpoint_class != "public" and endpoint_class not in policy.scopes:
        return deny(DenyCode.SCOPE, f"the bot lacks the {endpoint_class} scope")
    harmless = endpoint_class in ("public", "read") or facts.action == "cancel"
    if halted is not None and not harmless and not (facts.action == "order" and facts.reduce_only):
        return deny(DenyCode.HALTED, f"trading is halted: {halted}; only reads and cancels pass")
    if policy.active_hours and not harmless and not _in_hours(policy.active_hours, now):
        return deny(DenyCode.HOURS, f"outside the bot's active hours ({', '.join(policy.active_hours)} UTC)")

    charges: list[str] = []
    limits = _rate_limits(f"bot:{bot}", policy, facts.action)
    if account_limits is not None:
        limits += _rate_limits(f"account:{account}", account_limits, facts.action)
    if throttle is not None:  # a temporary limit set by the rate_spike anomaly rule
        limits.append((f"throttle:{bot}", throttle, max(1.0, throttle)))
    for key, rate, capacity in limits:
        wait = counters.bucket(key, rate, capacity, now).wait(now)
        if wait > 0:
            return deny(DenyCode.RATE, f"rate limit {key.split(':')[-1]} reached", retry_after=wait)
        charges.append(key)

    value = None
    if endpoint_class == "trade":
        trade = _trade_checks(facts, policy, last_price)
        if trade is not None:
            return trade
        if facts.action == "order":
            if policy.max_open_orders is not None and usage.open_orders >= policy.max_open_orders:
                return deny(DenyCode.OPEN_ORDERS, f"{usage.open_orders} open orders: the cap is {policy.max_open_orders}")
            value = notional(facts, last_price)
            if policy.daily_notional_cap is not None:
                if value is None:
                    return deny(DenyCode.NOTIONAL_UNKNOWN, "cannot value this order against the daily cap")
                if usage.daily_notional + value > policy.daily_notional_cap:
                    return deny(DenyCode.DAILY_NOTIONAL, f"today's traded notional would reach "
                                f"{(usage.daily_notional + value).normalize():f}, above the daily cap "
                                f"{policy.daily_notional_cap.normalize():f}")
    if endpoint_class == "withdraw":
        withdrawal = _withdraw_checks(facts, policy, usage)
        if withdrawal is not None:
            return withdrawal
    return allowed(tuple(charges), value, facts.amount if facts.action == "withdraw" else None)


def _trade_checks(facts: RequestFacts, policy: BotPolicy, last_price: Decimal | None) -> Decision | None:
    limited = policy.symbols is not None or policy.max_order_notional is not None or policy.reduce_only \
        or policy.max_leverage is not None
    if facts.action is None and limited:  # an endpoint that may place orders in a shape keyproxy cannot read
        return deny(DenyCode.SYMBOL if policy.symbols is not None else DenyCode.NOTIONAL_UNKNOWN,
                    "keyproxy cannot read this endpoint's order details, and the bot has trading limits")
    if policy.symbols is not None and facts.action in ("order", "leverage", "other"):
        if (facts.symbol is None and facts.action != "other") or (
                facts.symbol is not None and facts.symbol not in policy.symbols):
            return deny(DenyCode.SYMBOL, f"symbol {facts.symbol or '(none)'} is not in the bot's allowlist")
    if facts.action == "order":
        if policy.reduce_only and not facts.reduce_only:
            return deny(DenyCode.REDUCE_ONLY, "the bot may only place reduce-only orders")
        if policy.max_order_notional is not None:
            value = notional(facts, last_price)
            if value is None:
                return deny(DenyCode.NOTIONAL_UNKNOWN, "cannot value this order (no price, quote quantity or "
                            "recent price for the symbol)")
            if value > policy.max_order_notional:
                return deny(DenyCode.NOTIONAL, f"order notional {value.normalize():f} is above the cap "
                            f"{policy.max_order_notional.normalize():f}")
    if facts.leverage is not None and policy.max_leverage is not None and facts.leverage > policy.max_leverage:
        return deny(DenyCode.LEVERAGE, f"leverage {facts.leverage.normalize():f} is above the cap "
                    f"{policy.max_leverage.normalize():f}")
    if facts.action == "leverage" and facts.leverage is None and policy.max_leverage is not None:
        return deny(DenyCode.LEVERAGE, "cannot read the requested leverage")
    return None


def _withdraw_checks(facts: RequestFacts, policy: BotPolicy, usage: Usage) -> Decision | None:
    if policy.withdraw_addresses is not None:
        ok = False
        for entry in policy.withdraw_addresses:
            asset, network, address = entry.split(":", 2)
            if (facts.asset or "").upper() == asset and (network == "*" or (facts.network or "").upper() == network) \
                    and facts.address == address:
                ok = True
        if not ok:
            return deny(DenyCode.ADDRESS, "destination address is not in the bot's allowlist for this asset and network")
    if policy.max_withdrawal is not None:
        if facts.amount is None:
            return deny(DenyCode.WITHDRAWAL, "cannot read the withdrawal amount")
        if facts.amount > policy.max_withdrawal:
            return deny(DenyCode.WITHDRAWAL, f"amount {facts.amount.normalize():f} is above the cap "
                        f"{policy.max_withdrawal.normalize():f}")
    if policy.daily_withdrawal_cap is not None:
        if facts.amount is None:
            return deny(DenyCode.WITHDRAWAL, "cannot read the withdrawal amount")
        if usage.daily_withdrawn + facts.amount > policy.daily_withdrawal_cap:
            return deny(DenyCode.WITHDRAWAL, f"today's withdrawals of {facts.asset} would exceed the daily cap "
                        f"{policy.daily_withdrawal_cap.normalize():f}")
    return None
