"""Cancel-alls and the other bots' orders around them, kept in the order they came (per account).

A cancel-all cancels whatever rests in its scope when the exchange executes it. Two races would let one bot cancel
another's orders past the own-orders check (`OrderOwners.only_own`), which sees only what rests (the positions book,
the exchange's listing):
- another bot's order already on its way (sent, its answer not read) reaches the exchange before the cancel-all;
- another bot's order decided while the cancel-all is on its way reaches the exchange first, or is overtaken.

So, first come first served per account: a cancel-all waits until the other bots' orders on their way in its scope
are answered (then `only_own` sees them resting, and refuses), and another bot's order in its scope waits while the
cancel-all is pending (decided, or on its way: its answer not read). Both waits are bounded and never refuse the
neighbour: a bot that keeps orders on their way only delays another's cancel-alls by their answers, and a bot that
sends cancel-alls in a loop only delays another's orders by one of them each (an order that waited goes before any
cancel-all decided after it began waiting).

One instance's requests only: in a fleet, a cancel-all and an order through two instances are not ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.in_flight import InFlight
from keyproxy.proxy.refusal import Refused

QUIET_WAIT_S = 12.0  # a request waits this long at most for the other bots' requests before it
SWEEP_HOLD_S = 10.0  # a cancel-all whose answer is never read (timed out, socket gone) holds others no longer: an
# order waiting for it (QUIET_WAIT_S) is delayed, never refused


class NeedQuiet(Exception):  # noqa: N818 - a wait, not an error; never reaches a bot
    """The decision must wait for other bots' requests before it (`Sweeps.quiet`), then `resume()`."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__("waiting for other bots' requests")
        self.ready = ready
        self.deadline = time.monotonic() + QUIET_WAIT_S
        self.resume: Callable[[], object] = lambda: None  # set by the core: the same decision, once more


@dataclass(slots=True)
class _Entry:
    number: int  # arrival order on the account
    bot: str
    scopes: tuple[str, ...]
    sweep: bool  # a cancel-all; else an order waiting for one
    until: float  # the core's clock (s): held no longer than this
    waited: bool = False


class Sweeps:
    """The cancel-alls pending per account, and the orders waiting for them."""

    def __init__(self, in_flight: InFlight, account_of: Callable[[str], str | None],
                 clock: Callable[[], float]) -> None:
        self._in_flight = in_flight
        self._account_of = account_of  # bot -> its account (the registry's)
        self._clock = clock  # seconds
        self._pending: dict[str, dict[str, _Entry]] = {}  # account -> request id -> entry
        self._where: dict[str, str] = {}  # request id -> account
        self._count = 0
        self._waiters: list[asyncio.Future[None]] = []
        in_flight.landed = self.release  # a request answered or ended unsent: what waits for it may go

    def check(self, account: str, bot: str, request_id: str, facts: RequestFacts) -> None:
        """Before a cancel-all's or an order's own-orders check: raise `NeedQuiet` while a request of another bot
        before it must go first, `Refused` when it waited its longest and still must."""
        sweep = facts.cancels_all
        if not sweep and not self._pending.get(account):
            return  # no cancel-all pending on the account: an order goes (the usual case: one dict lookup)
        legs = facts.placed()
        if not sweep and not legs:
            return
        now = self._clock()
        entries = self._pending.setdefault(account, {})
        entry = entries.get(request_id)
        if entry is None:
            self._count += 1
            scopes = (facts.scope,) if sweep else tuple({leg.scope for leg in legs})
            entry = entries[request_id] = _Entry(self._count, bot, scopes, sweep, now + SWEEP_HOLD_S)
            self._where[request_id] = account
        blocker = self._blocker(account, entry, now)
        if blocker is None:
            if sweep:
                entry.until = now + SWEEP_HOLD_S  # held from now until its answer is read
            else:
                self.release(request_id)  # it goes: from here its in-flight record stands for it
            return
        if entry.waited:
            self.release(request_id)
            what = "a cancel-all" if blocker.sweep else "an order"
            raise Refused("unavailable", f"bot {bot!r}: {what} of bot {blocker.bot!r} in this scope is still waiting "
                          f"for the exchange's answer after {QUIET_WAIT_S:g} s; retry once it has one", 1.0)
        entry.waited = True
        raise NeedQuiet(lambda: self._blocker(account, entry, self._clock()) is None)

    def _blocker(self, account: str, entry: _Entry, now: float) -> _Entry | None:
        """Another bot's request before `entry` that must reach the exchange first (None: none)."""
        entries = self._pending.get(account, {})
        for request_id, other in list(entries.items()):
            if other.until <= now:
                self.release(request_id)
                continue
            if other.number < entry.number and other.bot != entry.bot and other.sweep != entry.sweep \
                    and _any_overlap(other.scopes, entry.scopes):
                return other
        if not entry.sweep:
            return None
        for bot in self._in_flight.bots():  # the orders decided before the cancel-all, not answered yet
            if bot == entry.bot or self._account_of(bot) != account:
                continue
            for legs in self._in_flight.legs(bot, now, placing=True):
                scopes = tuple(leg.scope for leg in legs)
                if _any_overlap(scopes, entry.scopes):
                    return _Entry(0, bot, scopes, False, now)
        return None

    def release(self, request_id: str) -> None:
        """The request's answer was read, or it ended unsent: the requests waiting for it may go."""
        account = self._where.pop(request_id, None)
        if account is None:  # an order (on its way since its check): a cancel-all may be waiting for it
            self.changed()
            return
        entries = self._pending.get(account)
        if entries is not None:
            entries.pop(request_id, None)
            if not entries:
                del self._pending[account]
        self.changed()

    def changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def quiet(self, need: NeedQuiet) -> None:
        """Until what `need` waits for went, or its deadline."""
        loop = asyncio.get_running_loop()
        while not need.ready():
            left = need.deadline - time.monotonic()
            if left <= 0:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 1.0)):  # and a look each second (an entry's hold running out)
                    await waiter


def _any_overlap(scopes: tuple[str, ...], others: tuple[str, ...]) -> bool:
    for scope in scopes:
        market, _, symbol = scope.partition(":")
        for other in others:
            m, _, s = other.partition(":")
            if (market == m or "*" in (market, m)) and (symbol == s or "*" in (symbol, s)):
                return True
    return False
