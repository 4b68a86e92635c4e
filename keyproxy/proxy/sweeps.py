"""Cancel-alls and the other bots' orders around them, kept in the order they came (per account).

A cancel-all cancels whatever rests in its scope when the exchange executes it. Two races would let one bot cancel
another's orders past the own-orders check (`OrderOwners.only_own`), which sees only what rests (the positions book,
the exchange's listing):
- another bot's order already on its way (sent, its answer not read) reaches the exchange before the cancel-all;
- another bot's order decided while the cancel-all is on its way reaches the exchange first, or is overtaken.

So, first come first served per account: a cancel-all waits until the other bots' orders on their way in its scope
are answered (then `only_own` sees them resting, and refuses), and another bot's order in its scope waits while the
cancel-all is pending (decided, or on its way: its answer not read). A cancel naming an order keyproxy has no owner
for (by id or client id: the order may be another bot's still on its way, an id guessed from the sequence) waits for
the other bots' orders on their way in its scope the same way, then is decided on their owners.

The waits are bounded and never refuse the neighbour: an order waits for a cancel-all at most once (then goes); a
cancel-all holds others at most SWEEP_HOLD_S from its decision, ORPHAN_HOLD_S once its answer can no longer come (its
socket closed); an order whose answer can no longer come holds no cancel-all back (it still counts against its bot's
caps). A request that waits for itself is refused only where it is the requester's own cancel: `unavailable`, retry.

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
SWEEP_HOLD_S = 10.0  # a cancel-all holds other bots' orders this long at most after its decision
ORPHAN_HOLD_S = 1.0  # ... and this long once its answer can no longer be read (the frame's socket closed)
MAX_PENDING = 10_000  # entries per account: more is a flood, refused (each entry is a request still waiting)


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
    kind: str  # "sweep" (a cancel-all: holds others' orders), "order" (waiting for one), "wait" (an unowned cancel)
    until: float  # the core's clock (s): forgotten then, whatever happened
    waited: bool = False
    passed: bool = False


class Sweeps:
    """The cancel-alls pending per account, and the requests waiting for them or for orders on their way."""

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
        in_flight.unheard = self.unheard

    def check(self, account: str, bot: str, request_id: str, facts: RequestFacts) -> None:
        """Before a cancel-all's or an order's own-orders check: raise `NeedQuiet` while a request of another bot
        before it must go first. A cancel-all that waited its longest is refused (`unavailable`); an order goes."""
        sweep = facts.cancels_all
        if not sweep and not self._pending.get(account):
            return  # no cancel-all pending on the account: an order goes (the usual case: one dict lookup)
        legs = facts.placed()
        if not sweep and not legs:
            return
        scopes = (facts.scope,) if sweep else tuple({leg.scope for leg in legs})
        entry = self._entry(account, bot, request_id, scopes, "sweep" if sweep else "order")
        now = self._clock()
        blocker = self._blocker(account, entry, now)
        if blocker is None or entry.waited and not sweep:  # an order waits once, never to be refused
            if sweep:
                if not entry.passed:  # held from now until its answer is read, SWEEP_HOLD_S at most
                    entry.passed, entry.until = True, now + SWEEP_HOLD_S
            else:
                self.release(request_id)  # it goes: from here its in-flight record stands for it
            return
        self._wait(entry, account, bot, request_id, blocker)

    def check_unowned(self, account: str, bot: str, request_id: str, facts: RequestFacts) -> None:
        """A cancel naming an order keyproxy has no owner for: `NeedQuiet` while another bot's order is on its way in
        its scope (its answer names its owner), `Refused` if one still is after the wait."""
        entry = self._entry(account, bot, request_id, (facts.scope,), "wait")
        blocker = self._blocker(account, entry, self._clock())
        if blocker is None:
            self.release(request_id)
            return
        self._wait(entry, account, bot, request_id, blocker)

    def _entry(self, account: str, bot: str, request_id: str, scopes: tuple[str, ...], kind: str) -> _Entry:
        entries = self._pending.setdefault(account, {})
        entry = entries.get(request_id)
        if entry is None:
            if len(entries) >= MAX_PENDING:
                self._expire(account, self._clock())
                if len(entries) >= MAX_PENDING:
                    raise Refused("unavailable", "too many requests waiting on this account's cancel-alls; retry", 1.0)
            self._count += 1
            entry = entries[request_id] = _Entry(self._count, bot, scopes, kind,
                                                 self._clock() + QUIET_WAIT_S + SWEEP_HOLD_S)
            self._where[request_id] = account
        return entry

    def _wait(self, entry: _Entry, account: str, bot: str, request_id: str, blocker: _Entry) -> None:
        if entry.waited:
            self.release(request_id)
            what = "a cancel-all" if blocker.kind == "sweep" else "an order"
            raise Refused("unavailable", f"bot {bot!r}: {what} of bot {blocker.bot!r} in this scope is still waiting "
                          f"for the exchange's answer after {QUIET_WAIT_S:g} s; retry once it has one", 1.0)
        entry.waited = True
        raise NeedQuiet(lambda: self._blocker(account, entry, self._clock()) is None)

    def _expire(self, account: str, now: float) -> None:
        for request_id, other in list(self._pending.get(account, {}).items()):
            if other.until <= now:
                self.release(request_id)

    def _blocker(self, account: str, entry: _Entry, now: float) -> _Entry | None:
        """Another bot's request before `entry` that must reach the exchange first (None: none)."""
        for request_id, other in list(self._pending.get(account, {}).items()):
            if other is entry:
                continue
            if other.until <= now:
                self.release(request_id)
                continue
            # an order waits for the cancel-alls before it; a cancel-all, for the orders waiting before it
            before = entry.kind == "order" and other.kind == "sweep" or entry.kind == "sweep" and other.kind == "order"
            if before and other.number < entry.number and other.bot != entry.bot \
                    and _any_overlap(other.scopes, entry.scopes):
                return other
        if entry.kind == "order":
            return None
        for bot in self._in_flight.bots():  # the orders decided before it, answers not read yet
            if bot == entry.bot or self._account_of(bot) != account:
                continue
            for legs in self._in_flight.awaited(bot, now):
                scopes = tuple(leg.scope for leg in legs)
                if _any_overlap(scopes, entry.scopes):
                    return _Entry(0, bot, scopes, "order", now)
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

    def unheard(self, request_id: str) -> None:
        """The request's answer will never be read (its socket closed, its upstream call failed): a cancel-all holds
        others ORPHAN_HOLD_S more at most (sent: the exchange may still be executing it), an order none."""
        account = self._where.get(request_id)
        entry = self._pending.get(account, {}).get(request_id) if account is not None else None
        if entry is not None:
            entry.until = min(entry.until, self._clock() + ORPHAN_HOLD_S)
        self.changed()

    def changed(self) -> None:
        if not self._waiters:
            return
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
            try:
                async with asyncio.timeout(min(left, 1.0)):  # and a look each second (an entry's hold running out)
                    await waiter
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)


def _any_overlap(scopes: tuple[str, ...], others: tuple[str, ...]) -> bool:
    for scope in scopes:
        market, _, symbol = scope.partition(":")
        for other in others:
            m, _, s = other.partition(":")
            if (market == m or "*" in (market, m)) and (symbol == s or "*" in (symbol, s)):
                return True
    return False
