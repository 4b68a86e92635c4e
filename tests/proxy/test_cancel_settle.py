"""A halt's sweep and the orders on their way when it came (proxy/cancel_orders.py `_settled`)."""

from __future__ import annotations

import asyncio

import pytest

from keyproxy.proxy import cancel_orders


def test_the_sweep_waits_for_answers_and_counts_orders_of_unknown_fate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 26's reviews: orders on their way are waited for (their answers then name them to the sweep); one whose
    answer will never be read (its call timed out, a 5xx) is of unknown fate at once, and counted: the summary says
    so (an error, a non-zero exit) instead of reporting nothing left."""
    monkeypatch.setattr(cancel_orders, "SETTLE_S", 0.3)
    answered = {"at": 0}

    def on_their_way(account: str, bot: str | None) -> tuple[int, int]:
        answered["at"] += 1
        return (1 if answered["at"] < 3 else 0), 0

    assert asyncio.run(cancel_orders._settled(on_their_way, "acct", "bot")) == 0 and answered["at"] == 3
    assert asyncio.run(cancel_orders._settled(lambda a, b: (0, 2), "acct", None)) == 2  # timed out: unknown fate
    assert asyncio.run(cancel_orders._settled(lambda a, b: (1, 0), "acct", None)) == 1  # never answered in time


def test_in_a_fleet_the_sweep_waits_for_orders_through_the_other_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 26's diff review: a sweep on A did not wait for the bot's orders on their way through B (an order
    through B rested after A's clean sweep). It waits for the fleet's `pending:{account}` too; Redis out of reach is
    an order of unknown fate (the summary's error)."""
    monkeypatch.setattr(cancel_orders, "SETTLE_S", 0.3)
    looks = {"n": 0}

    async def fleet(account: str, bot: str | None) -> int | None:
        looks["n"] += 1
        return 1 if looks["n"] < 3 else 0

    assert asyncio.run(cancel_orders._settled(lambda a, b: (0, 0), "acct", "bot", fleet)) == 0 and looks["n"] == 3

    async def unreachable(account: str, bot: str | None) -> int | None:
        return None

    async def stuck(account: str, bot: str | None) -> int | None:
        return 2

    assert asyncio.run(cancel_orders._settled(lambda a, b: (0, 0), "acct", None, unreachable)) == 1
    assert asyncio.run(cancel_orders._settled(lambda a, b: (0, 0), "acct", None, stuck)) == 2
