"""What one request spends of a fleet's shared state, and the fleet's answer (no Redis here: the core imports it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

# an instance that has not confirmed the fleet's version for this long serves no bot at all (proxy/admission.py): a
# change made through another instance (a revocation, a halt) may be waiting for it (session 34's fleet review: an
# instance cut off from Redis served a revoked bot's reads and cancels for as long as the cut lasted). Three polls.
STALE_S = 3.0


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
    # a position-capped bot's order (max_position, max_position_notional): the bot's book entries this instance has
    # applied (fleet/book.py; the gate refuses to charge against an older book) and, per leg, (scope, side, size,
    # room, base, limit): the leg passes if it, with every instance's orders of the bot on their way on that side,
    # stays within `room` (what the position lets it reduce; -1: nothing) or keeps `base` (position and resting
    # orders, signed for the side) within `limit`; its size is then reserved until its answer is read
    book_seq: int | None = None
    exposure: list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]] = field(default_factory=list)
    # an order of any bot: (its account, "bot|request id|scope,scope") in the account's orders on their way
    # (`pending:{account}`, PENDING_S at most) until its answer is read and its owner recorded: a cancel naming an
    # order of no known owner, or a cancel-all, on another instance waits for it (proxy/sweeps.py)
    pending: tuple[str, str] | None = None
    # whether the order still waits for the other bots' cancel-alls pending on the account (`sweeping:{account}`,
    # begun through any instance before it): once, then it goes (proxy/admission.py)
    sweeps_first: bool = True
    # the same charges on this instance's own counters: what a harmless request spends when Redis cannot be asked
    commit_local: Callable[[], None] = lambda: None

    def flight_member(self) -> str | None:
        """The reservation as the gate stores it and releases it: the id and the orders it holds (the gate sums
        the number after the last colon)."""
        if self.in_flight is None or self.open_orders is None:
            return None
        return f"{self.in_flight[0]}:{self.open_orders[0]}"

    def exposure_members(self) -> list[tuple[str, str]]:
        """(key name, member) of each leg's size reserved on its way, as the gate stores them and releases them
        (the gate sums the number after the last colon)."""
        if self.in_flight is None:
            return []
        return [(f"exposure:{self.bot}:{scope}:{side}", f"{self.in_flight[0]}.{i}:{size}")
                for i, (scope, side, size, *_rest) in enumerate(self.exposure)]

    def reset_policy(self) -> None:
        """Before the decision is taken again on newer state: its charges are the new decision's."""
        self.buckets.clear()
        self.caps.clear()
        self.duplicates.clear()
        self.open_orders = None
        self.in_flight = None
        self.book_seq = None
        self.exposure.clear()
        self.pending = None
        self.commit_local = lambda: None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The script's answer: "ok", "stale" (the fleet moved on), "back" (its version went back), "replay",
    "sequence", "rate", "cap", "open", "duplicate", "book" (the bot's book moved on: `used` is its newest
    entry), "position" (`used`: base and every instance's orders on their way, of leg `leg`), "sweeping" (another bot's
    cancel-all is pending on the account: `members`; nothing was charged), or "unavailable" (Redis could not be
    asked)."""

    kind: str
    bucket: str | None = None
    retry_after: float | None = None
    cap: tuple[str, str, Decimal, Decimal, str] | None = None
    used: Decimal | None = None
    duplicate: tuple[str, float, int, bool] | None = None
    leg: int | None = None
    members: tuple[bytes, ...] = ()  # "sweeping": the other bots' cancel-alls pending on the account
