"""Sweeps: a cancel-all and another bot's orders in its scope, first come first served, waits bounded."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace

import pytest

from keyproxy.policy.model import RequestFacts
from keyproxy.proxy import sweeps as sweeps_module
from keyproxy.proxy.in_flight import InFlight
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.sweeps import NeedQuiet, Sweeps

ORDER = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", order_type="LIMIT",
                     quantity=Decimal(1), price=Decimal(1))
ELSEWHERE = RequestFacts(action="order", symbol="ETHUSDT", market="spot", side="BUY", order_type="LIMIT",
                         quantity=Decimal(1), price=Decimal(1))
SWEEP = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels_all=True)


def desk() -> tuple[Sweeps, InFlight]:
    flights = InFlight()
    return Sweeps(flights, lambda bot: "acct" if bot != "stranger" else "other", lambda: 100.0), flights


def sent(flights: InFlight, bot: str, request_id: str, facts: RequestFacts = ORDER) -> SimpleNamespace:
    flights.sent(bot, request_id, (facts,), 100.0)
    return SimpleNamespace(placed_by=(bot, facts), request_id=request_id, shared=None)


def test_a_cancel_all_waits_for_another_bots_order_on_its_way_then_goes() -> None:
    sweeps, flights = desk()
    order = sent(flights, "b", "o1")
    sent(flights, "a", "mine")  # the sweeper's own order: never waited for
    sent(flights, "stranger", "s1")  # a bot of another account
    sent(flights, "b", "e1", ELSEWHERE)  # another symbol
    with pytest.raises(NeedQuiet) as wait:
        sweeps.check("acct", "a", "c1", SWEEP)
    assert not wait.value.ready()
    flights.land(order)  # its answer read
    assert wait.value.ready()
    sweeps.check("acct", "a", "c1", SWEEP)  # decided again: goes, and now holds b's next order
    with pytest.raises(NeedQuiet) as held:
        sweeps.check("acct", "b", "o2", ORDER)
    sweeps.check("acct", "b", "o3", ELSEWHERE)  # not in its scope
    sweeps.check("acct", "a", "o4", ORDER)  # the sweeper's own
    flights.land(SimpleNamespace(placed_by=None, request_id="c1", shared=None))  # the cancel-all answered
    assert held.value.ready()
    sweeps.check("acct", "b", "o2", ORDER)


def test_an_order_that_waited_goes_before_a_cancel_all_decided_after_it() -> None:
    """A bot sending cancel-alls in a loop delays another's order by one of them, never starves it."""
    sweeps, flights = desk()
    sweeps.check("acct", "a", "c1", SWEEP)
    with pytest.raises(NeedQuiet) as order_waits:
        sweeps.check("acct", "b", "o1", ORDER)
    with pytest.raises(NeedQuiet) as second_waits:  # decided after the order began waiting: it waits for the order
        sweeps.check("acct", "a", "c2", SWEEP)
    sweeps.release("c1")
    assert order_waits.value.ready() and not second_waits.value.ready()
    sweeps.check("acct", "b", "o1", ORDER)
    sent(flights, "b", "o1")  # on its way from its decision: the second cancel-all waits for its answer
    assert not second_waits.value.ready()


def test_a_wait_is_bounded_and_then_the_request_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 22's fourth review: a bot that stopped reading its socket kept its order "on its way" (its answer never
    read), and a neighbour's cancel-all waited 12 s and was refused. A request waits QUIET_WAIT_S (2 s) at most, then
    goes on what keyproxy knows; no wait refuses anything."""
    monkeypatch.setattr(sweeps_module, "QUIET_WAIT_S", 0.05)
    sweeps, flights = desk()
    sent(flights, "b", "o1")  # never answered

    async def run() -> float:
        with pytest.raises(NeedQuiet) as wait:
            sweeps.check("acct", "a", "c1", SWEEP)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(sweeps.quiet(wait.value), 2)
        sweeps.check("acct", "a", "c1", SWEEP)  # decided again: goes
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(run()) < 0.5


def test_a_waiter_wakes_when_what_it_waits_for_goes() -> None:
    sweeps, flights = desk()
    sweeps.check("acct", "a", "c1", SWEEP)

    async def run() -> float:
        with pytest.raises(NeedQuiet) as wait:
            sweeps.check("acct", "b", "o1", ORDER)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, sweeps.release, "c1")
        started = loop.time()
        await sweeps.quiet(wait.value)
        return loop.time() - started

    assert asyncio.run(run()) < 0.5  # woken by the release, not by the once-a-second look


def test_an_order_waits_for_a_cancel_all_once_and_then_goes_never_refused() -> None:
    """Session 22's second review: colluding bots chained cancel-alls so a neighbour's order waited its longest and
    was refused. An order that waited goes, whatever is still pending."""
    sweeps, _ = desk()
    sweeps.check("acct", "a", "c1", SWEEP)
    with pytest.raises(NeedQuiet):
        sweeps.check("acct", "b", "o1", ORDER)
    sweeps.check("acct", "b", "o1", ORDER)  # still pending: it goes all the same


def test_a_cancel_all_whose_answer_cannot_come_holds_others_a_moment_only() -> None:
    now = [100.0]
    flights = InFlight()
    sweeps = Sweeps(flights, lambda bot: "acct", lambda: now[0])
    sweeps.check("acct", "a", "c1", SWEEP)
    flights.unanswered(SimpleNamespace(placed_by=None, request_id="c1", shared=None))  # its socket closed
    now[0] += sweeps_module.ORPHAN_HOLD_S
    sweeps.check("acct", "b", "o1", ORDER)  # no wait


def test_an_order_whose_answer_cannot_come_holds_no_cancel_all_back_but_still_counts() -> None:
    sweeps, flights = desk()
    order = sent(flights, "b", "o1")
    flights.unanswered(order)
    sweeps.check("acct", "a", "c1", SWEEP)
    assert flights.count("b", 100.0) == 1


def test_a_cancel_of_an_order_of_no_known_owner_waits_for_other_bots_orders_on_their_way() -> None:
    sweeps, flights = desk()
    order = sent(flights, "b", "o1")
    cancel = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels=("1000001",))
    with pytest.raises(NeedQuiet) as wait:
        sweeps.check_unowned("acct", "a", "x1", cancel)
    assert not wait.value.ready()
    flights.land(order)
    assert wait.value.ready()
    sweeps.check_unowned("acct", "a", "x1", cancel)  # decided again: goes (its owner is on record by now)
    with pytest.raises(NeedQuiet):  # and holds another bot's order sent after it (the id may be that order's)
        sweeps.check("acct", "b", "o3", ORDER)
    sweeps.release("x1")
    sweeps.check("acct", "b", "o3", ORDER)
    sent(flights, "b", "o2")
    with pytest.raises(NeedQuiet):
        sweeps.check_unowned("acct", "a", "x2", cancel)
    sweeps.check_unowned("acct", "a", "x2", cancel)  # waited its longest: goes on what keyproxy knows then


def test_a_cancel_naming_several_orders_waits_for_every_market() -> None:
    """Session 22's third review: a batch cancel was scoped by its first leg's symbol, so a later leg naming another
    bot's order on its way in another symbol passed at once."""
    sweeps, flights = desk()
    sent(flights, "b", "o1", ELSEWHERE)
    batch = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels_by_client=("mine", "theirs"))
    with pytest.raises(NeedQuiet):
        sweeps.check_unowned("acct", "a", "x1", batch)


def test_one_bot_cannot_fill_the_account_with_waiting_requests() -> None:
    sweeps, flights = desk()
    sent(flights, "b", "o1")
    cancel = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels=("1",))
    for i in range(sweeps_module.MAX_PER_BOT):
        with pytest.raises(NeedQuiet):
            sweeps.check_unowned("acct", "a", f"x{i}", cancel)
    with pytest.raises(Refused, match="too many"):
        sweeps.check_unowned("acct", "a", "x-more", cancel)
    with pytest.raises(NeedQuiet):  # another bot is not held by a's flood
        sweeps.check_unowned("acct", "c", "c1", cancel)


def test_a_decision_that_keeps_asking_to_wait_is_refused_never_a_500() -> None:
    from keyproxy.proxy.market_data import MarketData

    sweeps, _ = desk()
    data = MarketData.__new__(MarketData)
    data.core = SimpleNamespace(sweeps=sweeps)  # type: ignore[assignment]

    def decide() -> tuple[object, object]:
        wait = NeedQuiet("acct", lambda: True)
        wait.resume = decide
        raise wait

    route = SimpleNamespace(account=None)
    with pytest.raises(Refused) as refused:
        asyncio.run(data.settle(route, decide))  # type: ignore[arg-type]
    assert refused.value.code == "unavailable"


@pytest.mark.parametrize("case", ["local order held", "another instance's order held", "nothing on its way"])
def test_a_fleet_cancel_all_is_behind_only_when_the_book_is(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """In a fleet a cancel-all the positions book judges ends its wait by bringing the book up to the stream's newest
    entries; it is `behind` (and refused on a shared account) only when the book cannot get there, never because
    another bot's order kept it waiting its full time (the first version of session 25's fix refused then)."""
    monkeypatch.setattr(sweeps_module, "QUIET_WAIT_S", 0.2)
    sweeps, flights = desk()
    current = {"book": True}

    async def pending(account: str, bot: str, scopes: tuple[str, ...], among: list[bytes] | None,
                      sweep: tuple[str, float] | None = None) -> list[bytes]:
        return [b"b|x|spot:BTCUSDT"] if case == "another instance's order held" else []

    async def holds_newest() -> bool:
        return current["book"]

    sweeps.fleet_pending, sweeps.fleet_book = pending, holds_newest
    if case == "local order held":
        sent(flights, "b", "o1")  # another bot's order through this instance, its answer never read

    def decide(request_id: str) -> bool:
        async def run() -> None:
            try:
                sweeps.check("acct", "a", request_id, SWEEP, shared_book=True)
            except NeedQuiet as wait:
                await sweeps.quiet(wait)
            sweeps.check("acct", "a", request_id, SWEEP, shared_book=True)
        asyncio.run(run())
        return sweeps.book_behind("acct", request_id)

    assert not decide("c1")
    current["book"] = False  # Redis out of reach, or the follower behind: the book cannot be trusted
    assert decide("c2")


def test_a_fleet_cancel_all_takes_its_turn_at_once_even_while_a_local_order_holds_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 26's diff review: the turn in Redis was taken by the first look at the other instances, which came only
    once this instance's own orders before the cancel-all were answered: held by a slow local order its full wait,
    the cancel-all went without a turn, and orders through other instances did not wait for it. The turn is taken
    when the wait begins; an order through this instance does not wait for it a second time (`ours`)."""
    monkeypatch.setattr(sweeps_module, "QUIET_WAIT_S", 0.2)
    sweeps, flights = desk()
    turns: list[tuple[str, float] | None] = []

    async def pending(account: str, bot: str, scopes: tuple[str, ...], among: list[bytes] | None,
                      sweep: tuple[str, float] | None = None) -> list[bytes]:
        turns.append(sweep)
        return []

    sweeps.fleet_pending = pending
    sent(flights, "b", "o1")  # another bot's order through this instance, its answer not read

    async def run() -> None:
        try:
            sweeps.check("acct", "a", "c1", SWEEP)
        except NeedQuiet as wait:
            waiting = asyncio.ensure_future(sweeps.quiet(wait))
            await asyncio.sleep(0.05)
            assert turns and turns[0] is not None  # taken while the local order still holds it
            assert sweeps.ours(turns[0][0].encode())
            await waiting
    asyncio.run(run())
    sweeps.release("c1", "acct")
    assert sweeps.ours(turns[0][0].encode())  # ended here: its removal from Redis is queued
    assert not sweeps.ours(b"b|x|spot:BTCUSDT")
