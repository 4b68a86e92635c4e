"""A fleet's part of one decision: what the core hands the gate (fleet/gate.py) to check and charge across
every instance, gathered from the decision this instance took on its own untouched counters.
Split from core.py."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import EndpointClass
from keyproxy.fleet.charges import SharedCharges
from keyproxy.policy.decide import Decision
from keyproxy.policy.model import BotPolicy, RequestFacts
from keyproxy.proxy.in_flight import IN_FLIGHT_S
from keyproxy.proxy.sweeps import fleet_member


def gather(shared: SharedCharges, decision: Decision, policy: BotPolicy, facts: RequestFacts, cls: EndpointClass,
           buckets: Mapping[str, Any], request_id: str, book_seq: int | None,
           exposure: list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]], account: str) -> None:
    """Fill `shared` with the decision's charges: buckets, daily caps, open orders and the order's place on
    its way, a position-capped bot's book number and legs (`book_seq`, `exposure`: RiskDesk.fleet_exposure),
    repeated orders."""
    # a reduce-only leg whose flag is not believed (another bot of the account may trade) is sized in `exposure`:
    # harmless when Redis cannot be asked only if it reduces the bot's own position on this instance's book (its
    # size within what the position leaves it: decide counted this instance's orders on their way), so a capped bot
    # still gets out during an outage (session 25's diff review)
    shared.harmless = cls in (EndpointClass.PUBLIC, EndpointClass.READ) or (
        way_out(facts) and all(size <= room for _, _, size, room, _, _ in exposure))
    shared.buckets = [(key, buckets[key].rate, buckets[key].capacity) for key in decision.charges]
    if decision.notional is not None and policy.daily_notional_cap:
        shared.caps.append(("notional", "", decision.notional, policy.daily_notional_cap, "daily_notional_exceeded"))
    if facts.action == "order" and policy.max_open_orders is not None:  # with every instance's in flight
        shared.open_orders = (max(1, len(facts.placed())), policy.max_open_orders)
        shared.in_flight = (request_id, IN_FLIGHT_S)
    if facts.action == "order" and facts.placed():  # the account's orders on their way, every bot's
        shared.pending = (account, fleet_member(shared.bot, request_id, tuple(leg.scope for leg in facts.placed())))
    if book_seq is not None:  # and every instance's orders of the bot on their way
        shared.book_seq, shared.exposure = book_seq, exposure
        shared.in_flight = (request_id, IN_FLIGHT_S)
    if decision.orders and policy.duplicate_orders is not None:  # the same shapes decide() looked at
        shared.duplicates = [(hashlib.sha256(repr((shared.bot, shape)).encode()).hexdigest()[:32],
                              float(policy.duplicate_window_seconds), policy.duplicate_orders, not leg.reduce_only)
                             for shape, leg in zip(decision.orders, facts.placed())]
    if decision.withdrawal is not None and policy.daily_withdrawal_cap:
        shared.caps.append(("withdraw", facts.withdrawn_asset, decision.withdrawal, policy.daily_withdrawal_cap,
                            "withdrawal_limit"))


def way_out(facts: RequestFacts | None) -> bool:
    """A request that only reduces risk (a cancel, reduce-only orders): it may use a budget's reserve."""
    if facts is None:
        return False
    if facts.action == "cancel":
        return True
    placed = facts.placed()
    return bool(placed) and all(leg.reduce_only for leg in placed)
