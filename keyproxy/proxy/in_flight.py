"""Orders on their way to the exchange: sent, answer not yet read.

`max_open_orders` and the position caps count them as resting from the moment keyproxy sends them until
their answer is read, so orders fired at once cannot all pass a cap that each of them alone would meet (an
answer that never comes stops counting after IN_FLIGHT_S, longer than any upstream timeout). In a fleet the
gate also reserves each order's place across every instance (fleet/gate.py); `land` releases it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keyproxy.policy.decide import RiskView
from keyproxy.policy.model import RequestFacts

IN_FLIGHT_S = 60.0  # an order sent whose answer never came stops counting against the caps after this


class InFlight:
    """Per bot: request id -> (the order's legs, counted until)."""

    def __init__(self) -> None:
        self._placing: dict[str, dict[str, tuple[tuple[RequestFacts, ...], float]]] = {}
        self.flights: Any = None  # fleet/usage.py FleetUsage: releases the gate's in-flight reservations

    def sent(self, bot: str, request_id: str, facts: RequestFacts, now: float) -> None:
        """An order of `bot` went upstream."""
        self.legs(bot, now)  # what never got an answer stops counting (and is forgotten)
        self._placing.setdefault(bot, {})[request_id] = (facts.placed() or (facts,), now + IN_FLIGHT_S)

    def legs(self, bot: str, now: float) -> list[tuple[RequestFacts, ...]]:
        """The legs of the bot's orders sent and not yet answered."""
        mine = self._placing.get(bot)
        if not mine:
            return []
        for request_id, (_, until) in list(mine.items()):
            if until <= now:
                del mine[request_id]
        return [legs for legs, _ in mine.values()]

    def count(self, bot: str, now: float) -> int:
        return sum(len(legs) for legs in self.legs(bot, now))

    def with_sent(self, risk: RiskView, bot: str, now: float) -> RiskView:
        """The risk view with the sizes of the bot's orders on their way added to its resting ones."""
        sent = [leg for legs in self.legs(bot, now) for leg in legs if leg.quantity is not None and leg.side]
        if not sent or not (risk.open_buy or risk.open_sell):
            return risk
        buy, sell = dict(risk.open_buy), dict(risk.open_sell)
        for leg in sent:
            side = buy if leg.side.lower() == "buy" else sell
            if leg.scope in side:
                side[leg.scope] += leg.quantity
        return replace(risk, open_buy=buy, open_sell=sell)

    def answered(self, outcome: Any) -> None:
        """The request's answer was read: its order counts from that answer now, no longer as on its way."""
        self.land(outcome)
        if outcome.placed_by is not None:
            mine = self._placing.get(outcome.placed_by[0])
            if mine is not None and mine.pop(outcome.request_id, None) is not None and not mine:
                del self._placing[outcome.placed_by[0]]

    def land(self, outcome: Any) -> None:
        """A fleet: the order's in-flight reservation (made by the gate) goes, once its answer is read or when
        it was never sent; an order sent and never answered keeps it until it expires (IN_FLIGHT_S)."""
        shared = outcome.shared
        if shared is None or self.flights is None or shared.in_flight is None:
            return
        if (member := shared.flight_member()) is not None:
            self.flights.land(shared.bot, member)
        for name, sized in shared.exposure_members():  # a position-capped bot's sizes on their way
            self.flights.release(name, sized)
        shared.in_flight = None  # once
