"""InFlight: an order counts from its decision until its answer is learned (or IN_FLIGHT_S without an answer)."""

from __future__ import annotations

from types import SimpleNamespace

from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.in_flight import IN_FLIGHT_S, InFlight

LEG = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY")


def test_an_answer_held_for_learning_counts_until_learned_however_long_the_relay_takes() -> None:
    """Session 20's review: an order answer is journalled, relayed, then learned; a bot slow to read its WebSocket
    kept the learning waiting past IN_FLIGHT_S, and the order stopped counting against its caps meanwhile."""
    flights = InFlight()
    outcome = SimpleNamespace(placed_by=("bot", LEG), request_id="r1", shared=None)
    unanswered = SimpleNamespace(placed_by=("bot", LEG), request_id="r2", shared=None)
    flights.sent("bot", "r1", (LEG,), 0.0)
    flights.sent("bot", "r2", (LEG,), 0.0)
    flights.held_for_learning(outcome, 200)
    flights.held_for_learning(unanswered, 503)  # "status unknown": it lapses as if unanswered, never held for ever
    assert flights.count("bot", IN_FLIGHT_S + 1) == 1  # r2 lapsed; r1 is held
    flights.land(outcome)
    assert flights.count("bot", IN_FLIGHT_S + 1) == 0
    flights.sent("bot", "r3", (LEG,), 100.0)
    failed = SimpleNamespace(placed_by=("bot", LEG), request_id="r3", shared=None)
    flights.hold(failed, 110.0)  # its learning failed: it lapses as an unanswered order
    assert flights.count("bot", 109.0) == 1 and flights.count("bot", 111.0) == 0
    flights.hold(unanswered)  # no longer on its way: nothing to hold
    assert flights.count("bot", 0.0) == 0
