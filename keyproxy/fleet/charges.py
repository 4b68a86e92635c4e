"""What one request spends of a fleet's shared state, and the fleet's answer (no Redis here: the core imports it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class SharedCharges:
    """What one request spends of the fleet's shared state, gathered by the core while it decides."""

    bot: str
    harmless: bool = False  # a read, a cancel or a reduce-only order: may pass on local counters alone
    replays: list[tuple[str, int, bool]] = field(default_factory=list)  # (replay id, ttl ms, checked)
    sequence: int | None = None  # the bot's own nonce (Kraken): must exceed every one the fleet has seen
    buckets: list[tuple[str, float, float]] = field(default_factory=list)  # (bucket key, rate/s, capacity)
    caps: list[tuple[str, str, Decimal, Decimal, str]] = field(default_factory=list)  # (kind, asset, amount, cap, code)
    open_orders: tuple[int, int] | None = None  # (orders this request places, the bot's max_open_orders)
    # the order's place among the bot's orders on their way, fleet-wide: (an id of this request, seconds it
    # counts unless its answer is read first). Made with the check, so two instances never both fill the last
    # slot; released when the answer is read (after what it confirmed is counted) or it is never sent
    in_flight: tuple[str, float] | None = None
    # duplicate_orders: (the order's shape, hashed with the bot; window s; cap; checked: not reduce-only), each
    # placement counted across the fleet
    duplicates: list[tuple[str, float, int, bool]] = field(default_factory=list)
    # the same charges on this instance's own counters: what a harmless request spends when Redis cannot be asked
    commit_local: Callable[[], None] = lambda: None

    def flight_member(self) -> str | None:
        """The reservation as the gate stores it and releases it: the id and the orders it holds (the gate sums
        the number after the last colon)."""
        if self.in_flight is None or self.open_orders is None:
            return None
        return f"{self.in_flight[0]}:{self.open_orders[0]}"

    def reset_policy(self) -> None:
        """Before the decision is taken again on newer state: its charges are the new decision's."""
        self.buckets.clear()
        self.caps.clear()
        self.duplicates.clear()
        self.open_orders = None
        self.in_flight = None
        self.commit_local = lambda: None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The script's answer: "ok", "stale" (the fleet moved on), "back" (its version went back), "replay",
    "sequence", "rate", "cap", "open", "duplicate", or "unavailable" (Redis could not be asked)."""

    kind: str
    bucket: str | None = None
    retry_after: float | None = None
    cap: tuple[str, str, Decimal, Decimal, str] | None = None
    used: Decimal | None = None
    duplicate: tuple[str, float, int, bool] | None = None
