"""An account's nonce turn is shared fairly (session 36's review: a FIFO lock let one bot's 50 queued Kraken cancels
hold every other bot's request 13 s and a halt's cancels 45 s behind them)."""

from __future__ import annotations

import asyncio

import pytest

from keyproxy.proxy.nonce_turn import OWN, FairTurn, NonceTurn


async def _served(turn: FairTurn, asks: list[str]) -> list[str]:
    """Who gets the turn, in order, when `asks` queue up (in that order) behind a holder."""
    order: list[str] = []
    await turn.acquire("holder")

    async def one(who: str) -> None:
        await turn.acquire(who)
        order.append(who)
        await asyncio.sleep(0)
        turn.release()

    tasks = []
    for who in asks:
        tasks.append(asyncio.create_task(one(who)))
        await asyncio.sleep(0)  # queued in this order
    turn.release()
    await asyncio.gather(*tasks)
    assert not turn.locked()
    return order


async def test_askers_take_turns_round_robin_and_keyproxys_own_calls_go_first() -> None:
    order = await _served(FairTurn(), ["flood"] * 5 + ["victim", OWN, "victim"])
    assert order == [OWN, "flood", "victim", "flood", "victim", "flood", "flood", "flood"]


async def test_a_waiter_cancelled_leaves_the_line_and_one_handed_the_turn_passes_it_on() -> None:
    turn = FairTurn()
    await turn.acquire("a")
    gone = asyncio.create_task(turn.acquire("b"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    turn.release()
    assert not turn.locked()  # nobody was left in line
    await turn.acquire("a")
    handed = asyncio.create_task(turn.acquire("b"))
    after = asyncio.create_task(turn.acquire("c"))
    await asyncio.sleep(0)
    turn.release()  # b is handed the turn ...
    handed.cancel()  # ... and cancelled before it runs: c gets it
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 1)
    turn.release()
    assert not turn.locked()


async def test_a_waiter_cancelled_as_the_turn_is_released_raises_cancelled_error() -> None:
    """Session 36's regression review: a waiter cancelled in the loop turn the holder released in (a bot's socket
    closing while the answer before its frame came) raised ValueError, not CancelledError: the frame was logged as an
    internal error and stayed counted on its way."""
    turn = FairTurn()
    await turn.acquire("holder")

    async def ask() -> None:
        async with NonceTurn(turn, who="bot"):
            pass

    waiting = asyncio.create_task(ask())
    await asyncio.sleep(0)
    waiting.cancel()
    turn.release()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not turn.locked()
