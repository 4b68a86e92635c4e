"""Orders on their way to the exchange: sent, answer not yet read.

`max_open_orders` and the position caps count them as resting from the moment keyproxy sends them until
their answer is read, so orders fired at once cannot all pass a cap that each of them alone would meet (an
answer that never comes stops counting after IN_FLIGHT_S, longer than any upstream timeout). In a fleet the
gate also reserves each order's place across every instance (fleet/gate.py); `land` releases it.
"""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from keyproxy.policy.decide import RiskView
from keyproxy.policy.valuation import order_size
from keyproxy.policy.model import RequestFacts

IN_FLIGHT_S = 60.0  # an order sent whose answer never came stops counting against the caps after this


class InFlight:
    """Per bot: request id -> (the legs it may add, counted until, whether it places orders)."""

    def __init__(self) -> None:
        self._placing: dict[str, dict[str, tuple[tuple[RequestFacts, ...], float, bool]]] = {}
        self.flights: Any = None  # fleet/usage.py FleetUsage: releases the gate's in-flight reservations
        # sweeps.py, told (request id, account): a request's answer was read or it ended unsent; its answer will never
        # be read
        self.landed: Callable[[str, str | None], None] = lambda request_id, account: None
        self.unheard: Callable[[str, str | None], None] = lambda request_id, account: None
        self._unheard: set[str] = set()  # orders whose answer will never be read (still counted till they lapse)

    def bots(self) -> list[str]:
        """The bots with requests on their way."""
        return list(self._placing)

    def sent(self, bot: str, request_id: str, legs: tuple[RequestFacts, ...], now: float, places: bool = True
             ) -> None:
        """A request of `bot` that may add to its positions went upstream: an order (`places`: it also holds
        open-order places), or an amend raising orders' sizes (`legs`: what each adds)."""
        self.legs(bot, now)  # what never got an answer stops counting (and is forgotten)
        self._placing.setdefault(bot, {})[request_id] = (legs, now + IN_FLIGHT_S, places)

    def hold(self, outcome: Any, until: float = float("inf")) -> None:
        """The request's answer is read and written to the answers journal, its learning still to come (after the
        answer is relayed, which waits on a bot slow to read): it counts until learned, not only IN_FLIGHT_S."""
        if outcome.placed_by is not None:
            mine = self._placing.get(outcome.placed_by[0], {})
            if (held := mine.get(outcome.request_id)) is not None:
                mine[outcome.request_id] = (held[0], until, held[2])

    def held_for_learning(self, outcome: Any, status: int) -> None:
        """An answer journalled, to be learned once relayed: counted until learned, however long the bot takes to
        read it; a "status unknown" answer (5xx: it may rest or fill) keeps counting only until it lapses, as
        `Core.learn` leaves it on its way."""
        if status < 500:
            self.hold(outcome)

    def legs(self, bot: str, now: float, placing: bool = False) -> list[tuple[RequestFacts, ...]]:
        """The legs of the bot's requests sent and not yet answered (`placing`: of its orders only)."""
        mine = self._lapsed(bot, now)
        return [legs for legs, _, places in mine.values() if places or not placing]

    def _lapsed(self, bot: str, now: float) -> dict[str, tuple[tuple[RequestFacts, ...], float, bool]]:
        """The bot's requests on their way, those whose answer never came within IN_FLIGHT_S forgotten."""
        mine = self._placing.get(bot, {})
        for request_id, (_, until, _places) in list(mine.items()):
            if until <= now:
                del mine[request_id]
                self._unheard.discard(request_id)
        return mine

    def awaited(self, bot: str, now: float) -> list[tuple[RequestFacts, ...]]:
        """The legs of the bot's orders on their way whose answer may still be read (what a cancel-all can wait
        for: not one whose socket closed, whose upstream call failed, or whose answer said nothing of its fate)."""
        return [legs for request_id, (legs, _, places) in self._lapsed(bot, now).items()
                if places and request_id not in self._unheard]

    def unanswered(self, outcome: Any) -> None:
        """The request went upstream and its answer will never be read (the bot's socket closed, the upstream call
        timed out or failed, a 5xx said nothing): its order keeps counting until it lapses; nothing waits for it."""
        if outcome.placed_by is not None and outcome.request_id in self._placing.get(outcome.placed_by[0], {}):
            self._unheard.add(outcome.request_id)
        self.unheard(outcome.request_id, getattr(outcome, "account", None))

    def counted_open(self, outcome: Any) -> None:
        """The order's places are counted open in state.db now (its fate unknown): they go from here (never counted
        twice), its sizes stay for the position caps till it lapses (it may fill meanwhile)."""
        if outcome.placed_by is not None:
            mine = self._placing.get(outcome.placed_by[0], {})
            if (held := mine.get(outcome.request_id)) is not None:
                mine[outcome.request_id] = (held[0], held[1], False)

    def count(self, bot: str, now: float) -> int:
        """The bot's orders on their way: they hold open-order places."""
        return sum(len(legs) for legs in self.legs(bot, now, placing=True))

    def with_sent(self, risk: RiskView, bot: str, now: float, prices: dict[str, Decimal] | None = None
                  ) -> RiskView:
        """The risk view with the sizes of the bot's orders on their way added to its resting ones (a quote-sized
        order's at the last price seen, `prices` by symbol; one keyproxy cannot size adds nothing here, and
        decide refuses it to a capped bot)."""
        sent = [leg for legs in self.legs(bot, now) for leg in legs if leg.side]
        if not sent or not (risk.open_buy or risk.open_sell):
            return risk
        buy, sell = dict(risk.open_buy), dict(risk.open_sell)
        for leg in sent:
            size = order_size(leg, prices.get(leg.symbol or "") if prices else None)
            side = buy if leg.side.lower() == "buy" else sell
            if size is not None and leg.scope in side:
                side[leg.scope] += size
        return replace(risk, open_buy=buy, open_sell=sell)

    def answered(self, outcome: Any) -> None:
        """The request's answer was read: its order counts from that answer now, no longer as on its way."""
        self.land(outcome)

    def land(self, outcome: Any) -> None:
        """The order's places on its way go, once its answer is read or when it was never sent (refused after its
        decision, or failed before it went); an order sent and never answered keeps them until it expires
        (IN_FLIGHT_S). In a fleet, the gate's reservation goes with them."""
        if outcome.placed_by is not None:
            mine = self._placing.get(outcome.placed_by[0])
            if mine is not None and mine.pop(outcome.request_id, None) is not None and not mine:
                del self._placing[outcome.placed_by[0]]
            self._unheard.discard(outcome.request_id)
        self.landed(outcome.request_id, getattr(outcome, "account", None))
        shared = outcome.shared
        if shared is None or self.flights is None:
            return
        if shared.pending is not None:  # after its owner record in the writer's queue
            self.flights.release(f"pending:{shared.pending[0]}", shared.pending[1])
            shared.pending = None  # once
        if shared.in_flight is None:
            return
        if (member := shared.flight_member()) is not None:
            self.flights.land(shared.bot, member)
        for name, sized in shared.exposure_members():  # a position-capped bot's sizes on their way
            self.flights.release(name, sized)
        shared.in_flight = None  # once
