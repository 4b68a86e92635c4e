"""Cancel-alls and the other bots' orders around them, kept in the order they came (per account).

A cancel-all cancels whatever rests in its scope when the exchange executes it. Two races would let one bot cancel
another's orders past the own-orders check (`OrderOwners.only_own`), which sees only what rests (the positions book,
the exchange's listing):
- another bot's order already on its way (sent, its answer not read) reaches the exchange before the cancel-all;
- another bot's order decided while the cancel-all is on its way reaches the exchange first, or is overtaken.

So, first come first served per account: a cancel-all waits until the other bots' orders on their way in its scope
are answered (then `only_own` sees them resting, and refuses), and another bot's order in its scope waits while the
cancel-all is pending (decided, or on its way: its answer not read). A cancel naming an order keyproxy has no owner
for (by id or client id: the order may be another bot's still on its way, an id guessed from the sequence) is kept in
order the same way as a cancel-all: it waits for the other bots' orders on their way in its scope, then is decided on
their owners, and the other bots' orders in its scope wait while it is pending (an order sent after a guessed cancel
could otherwise be executed first and cancelled by it). A cancel naming several orders is scoped to every market.

The waits are bounded and refuse nothing: a request waits once, QUIET_WAIT_S at most, then is decided on what keyproxy
knows then (an order of another bot whose answer has not come in that time may be cancelled by a cancel-all: only an
exchange that slow, or a bot that stopped reading its own socket, leaves one so); a cancel holds others at most
SWEEP_HOLD_S from its decision, ORPHAN_HOLD_S once its answer can no longer come (its socket closed); an order whose
answer can no longer come holds nothing back (it still counts against its bot's caps).

In a fleet the same order holds across instances. A cancel-all (or an unowned cancel) takes its turn in Redis
(`sweeping:{account}`) with its first look at the other bots' orders on their way through any instance (the gate's
`pending:{account}`), in one atomic call, and waits for those, the same once and QUIET_WAIT_S at most; an order whose
gate check finds another bot's cancel-all pending on the account, begun through any instance before it, waits for it
(proxy/admission.py), once and QUIET_WAIT_S at most, as it would on one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keyproxy.policy.model import RequestFacts, scopes_overlap
from keyproxy.proxy.in_flight import InFlight
from keyproxy.proxy.refusal import Refused

# a request waits this long at most for the other bots' requests before it, then goes on what keyproxy knows: well
# inside the exchanges' default receive windows (5 s), and no bot can make another's request wait longer (session 22's
# fourth review: a bot whose socket stopped reading kept its order "on its way", and neighbours' cancels waited 12 s
# and were refused)
QUIET_WAIT_S = 2.0
# a cancel-all holds other bots' orders this long at most after its decision: its answer normally releases them within
# one round trip; the cap bounds what a bot whose answers keyproxy cannot read (its socket not reading) delays others
SWEEP_HOLD_S = 3.0
ORPHAN_HOLD_S = 1.0  # ... and this long once its answer can no longer be read (the frame's socket closed)
MAX_PENDING = 10_000  # entries per account: more is a flood, refused (each entry is a request still waiting)
MAX_PER_BOT = 64  # entries of one bot: a flood of waiting cancels costs the other bots nothing
FLEET_LOOK_S = 0.05  # a wait on the other instances' orders asks Redis this often at most

# fleet/gate.py `FleetGate.others_pending(account, bot, scopes, among, sweep)`: the other bots' orders on their way
# in these scopes through any instance (of those named, if any); `sweep` (member, seconds): the cancel-all's turn taken
FleetPending = Callable[[str, str, tuple[str, ...], list[bytes] | None, tuple[str, float] | None],
                        Awaitable[list[bytes]]]
SWEPT_MEMORY = 1024  # cancel-alls of this instance's whose turn in Redis ended, remembered (`gone`)


def fleet_member(bot: str, request_id: str, scopes: tuple[str, ...]) -> str:
    """A request as the fleet's `pending` and `sweeping` sets name it: "bot|request id|scope,scope" (a scope of the
    bot's own making with the separators in it stands for every market)."""
    return f"{bot}|{request_id}|" + ",".join(sorted({"*:*" if "," in s or "|" in s else s for s in scopes}))


class NeedQuiet(Exception):  # noqa: N818 - a wait, not an error; never reaches a bot
    """The decision must wait for other bots' requests before it (`Sweeps.quiet`), then `resume()`."""

    def __init__(self, account: str, ready: Callable[[], bool],
                 elsewhere: Callable[[], Awaitable[bool]] | None = None) -> None:
        super().__init__("waiting for other bots' requests")
        self.account = account
        self.ready = ready
        self.elsewhere = elsewhere  # in a fleet: whether another instance's request still goes first
        self.deadline = time.monotonic() + QUIET_WAIT_S
        self.resume: Callable[[], object] = lambda: None  # set by the core: the same decision, once more
        self.settle: Callable[[], Awaitable[None]] | None = None  # run when the wait ends, however it ends


@dataclass(slots=True)
class _Entry:
    number: int  # arrival order on the account
    bot: str
    scopes: tuple[str, ...]
    kind: str  # "sweep" (a cancel-all or an unowned cancel: holds others' orders), "order" (waiting for one)
    until: float  # the core's clock (s): forgotten then, whatever happened
    waited: bool = False
    passed: bool = False
    behind: bool = False  # in a fleet: the book did not take in the stream's entries within the wait


class Sweeps:
    """The cancel-alls (and cancels of unowned orders) pending per account, and the orders waiting for them."""

    def __init__(self, in_flight: InFlight, account_of: Callable[[str], str | None],
                 clock: Callable[[], float]) -> None:
        self._in_flight = in_flight
        self._account_of = account_of  # bot -> its account (the registry's)
        self._clock = clock  # seconds
        self._pending: dict[str, dict[str, _Entry]] = {}  # account -> request id -> entry
        self._where: dict[str, str] = {}  # request id -> account
        self._per_bot: dict[tuple[str, str], int] = {}  # (account, bot) -> its entries
        self._count = 0
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}  # account -> requests waiting there
        self.fleet_pending: FleetPending | None = None  # in a fleet: cancel-alls and unowned cancels wait for those
        # in a fleet (fleet/usage.py `FleetUsage.release`): a cancel-all's turn in `sweeping:{account}` ends
        self.fleet_release: Callable[[str, str], None] = lambda name, member: None
        self._turns: dict[str, tuple[str, str]] = {}  # request id -> (account, member): turns taken in Redis
        self._ended: dict[str, None] = {}  # members whose turn ended here, newest last (SWEPT_MEMORY at most)
        # in a fleet: whether the positions book holds the stream's entries as of the call, waiting a moment for its
        # follower (fleet/book.py `FleetBook.holds_newest`): a cancel-all is judged by the book after its wait
        self.fleet_book: Callable[[], Awaitable[bool]] | None = None
        in_flight.landed = self.release  # a request answered or ended unsent: what waits for it may go
        in_flight.unheard = self.unheard

    def check(self, account: str, bot: str, request_id: str, facts: RequestFacts, shared_book: bool = False) -> None:
        """Before a cancel-all's or an order's own-orders check: raise `NeedQuiet` while a request of another bot
        before it must go first (once: then it goes, whatever still waits). `shared_book`: a cancel-all judged by
        the positions book on an account other bots trade: in a fleet its wait ends with the book brought up to
        the fleet's newest entries (`book_behind` says if it could not be)."""
        sweep = facts.cancels_all
        if not sweep and not self._pending.get(account):
            return  # no cancel-all pending on the account: an order goes (the usual case: one dict lookup)
        legs = facts.placed()
        if not sweep and not legs:
            return
        self._gate(account, bot, request_id, (facts.scope,) if sweep else tuple({leg.scope for leg in legs}),
                   "sweep" if sweep else "order", sweep and shared_book)

    def check_unowned(self, account: str, bot: str, request_id: str, facts: RequestFacts) -> None:
        """A cancel (or amend) naming an order keyproxy has no owner for, kept in order as a cancel-all: it waits for
        the other bots' orders on their way in its scope (their answers name their owners: decided again on them),
        and holds their orders sent after it until its answer is read."""
        named = len(facts.cancels) + len(facts.cancels_by_client) + len(facts.touches) \
            + (len(facts.placed()) if facts.action == "amend" else 0)
        self._gate(account, bot, request_id, (facts.scope if named <= 1 else "*:*",), "sweep")

    def _gate(self, account: str, bot: str, request_id: str, scopes: tuple[str, ...], kind: str,
              shared_book: bool = False) -> None:
        entry = self._entry(account, bot, request_id, scopes, kind)
        if kind == "sweep" and not entry.waited and self.fleet_pending is not None:  # the other instances' too
            entry.waited = True
            member = fleet_member(bot, request_id, scopes)
            self._turns[request_id] = (account, member)
            wait = NeedQuiet(account, lambda: self._blocker(account, entry, self._clock()) is None,
                             self._elsewhere(self.fleet_pending, account, bot, scopes, member))
            if shared_book and self.fleet_book is not None:
                wait.settle = self._settle(self.fleet_book, entry)
            raise wait
        now = self._clock()
        blocker = self._blocker(account, entry, now)
        if blocker is None or entry.waited:  # a request waits once, at most QUIET_WAIT_S, never to be refused
            if kind == "sweep":
                if not entry.passed:  # held from now until its answer is read, SWEEP_HOLD_S at most
                    entry.passed, entry.until = True, now + SWEEP_HOLD_S
            else:
                self.release(request_id, account)  # it goes: from here its in-flight record stands for it
            return
        entry.waited = True
        raise NeedQuiet(account, lambda: self._blocker(account, entry, self._clock()) is None)

    @staticmethod
    def _elsewhere(fleet: FleetPending, account: str, bot: str, scopes: tuple[str, ...], member: str
                   ) -> Callable[[], Awaitable[bool]]:
        """A wait on the other instances: its first look takes the cancel-all's turn in Redis (`member`: the orders
        after it, through any instance, wait for it) and fixes which orders on their way it waits for (those placed
        after it cannot keep it waiting: session 23's review, a stream of orders through one instance held every
        cancel-all through another its full 2 s), later looks ask only whether those are still on their way,
        FLEET_LOOK_S apart at most."""
        waiting: list[bytes] | None = None
        looked = 0.0

        async def elsewhere() -> bool:
            nonlocal waiting, looked
            if waiting is not None and (not waiting or time.monotonic() - looked < FLEET_LOOK_S):
                return bool(waiting)
            looked = time.monotonic()
            first = waiting is None
            waiting = await fleet(account, bot, scopes, waiting, (member, QUIET_WAIT_S + SWEEP_HOLD_S) if first
                                  else None)
            return bool(waiting)
        return elsewhere

    @staticmethod
    def _settle(book: Callable[[], Awaitable[bool]], entry: _Entry) -> Callable[[], Awaitable[None]]:
        """The end of a cancel-all's wait, however it ended: the positions book brought up to what the other
        instances wrote to the stream by now (an order answered there a moment ago is no longer on its way, and
        is in this book only once its entry is read: session 25's review saw 3 in 30 such orders cancelled by
        another bot's cancel-all through this instance). `entry.behind` when it could not be (Redis out of reach,
        a follower behind): the decision then refuses rather than trust the book."""
        async def settle() -> None:
            entry.behind = not await book()
        return settle

    def book_behind(self, account: str, request_id: str) -> bool:
        """A cancel-all whose wait ended before this instance's book held the fleet's newest entries (Redis
        unreachable, or a follower that fell behind): its own-orders check cannot trust the book."""
        entry = self._pending.get(account, {}).get(request_id)
        return entry is not None and entry.behind

    def _entry(self, account: str, bot: str, request_id: str, scopes: tuple[str, ...], kind: str) -> _Entry:
        entries = self._pending.setdefault(account, {})
        entry = entries.get(request_id)
        if entry is None:
            if len(entries) >= MAX_PENDING or self._per_bot.get((account, bot), 0) >= MAX_PER_BOT:
                self._expire(account, self._clock())
                if len(entries) >= MAX_PENDING or self._per_bot.get((account, bot), 0) >= MAX_PER_BOT:
                    raise Refused("unavailable", f"bot {bot!r}: too many of its requests wait on this account's "
                                  "cancels; retry", 1.0)
            self._count += 1
            entry = entries[request_id] = _Entry(self._count, bot, scopes, kind,
                                                 self._clock() + QUIET_WAIT_S + SWEEP_HOLD_S)
            self._where[request_id] = account
            self._per_bot[(account, bot)] = self._per_bot.get((account, bot), 0) + 1
        return entry

    def _expire(self, account: str, now: float) -> None:
        for request_id, other in list(self._pending.get(account, {}).items()):
            if other.until <= now:
                self.release(request_id, account)

    def _blocker(self, account: str, entry: _Entry, now: float) -> _Entry | None:
        """Another bot's request before `entry` that must reach the exchange first (None: none)."""
        for request_id, other in list(self._pending.get(account, {}).items()):
            if other is entry:
                continue
            if other.until <= now:
                self.release(request_id, account)
                continue
            # an order waits for the cancels before it; a cancel, for the orders waiting before it
            if other.kind != entry.kind and other.number < entry.number and other.bot != entry.bot \
                    and scopes_overlap(other.scopes, entry.scopes):
                return other
        if entry.kind == "order":
            return None
        for bot in self._in_flight.bots():  # the orders decided before it, answers not read yet
            if bot == entry.bot or self._account_of(bot) != account:
                continue
            for legs in self._in_flight.awaited(bot, now):
                scopes = tuple(leg.scope for leg in legs)
                if scopes_overlap(scopes, entry.scopes):
                    return _Entry(0, bot, scopes, "order", now)
        return None

    def release(self, request_id: str, account: str | None = None) -> None:
        """The request's answer was read, or it ended unsent: the requests waiting for it may go. `account`: where
        (an order's, whose request id has no entry: a cancel may be waiting for its answer)."""
        where = self._where.pop(request_id, None)
        if (turn := self._turns.pop(request_id, None)) is not None:  # its turn in Redis ends too
            self.fleet_release(f"sweeping:{turn[0]}", turn[1])
            self._ended[turn[1]] = None
            if len(self._ended) > SWEPT_MEMORY:
                del self._ended[next(iter(self._ended))]
        if where is not None:
            entries = self._pending.get(where)
            entry = entries.pop(request_id, None) if entries is not None else None
            if entries is not None and not entries:
                del self._pending[where]
            if entry is not None:
                key = (where, entry.bot)
                if self._per_bot.get(key, 0) <= 1:
                    self._per_bot.pop(key, None)
                else:
                    self._per_bot[key] -= 1
        self.changed(where or account)

    def ours(self, member: bytes) -> bool:
        """Whether a cancel-all the fleet's `sweeping` set names is one of this instance's: its turn ended here (its
        removal from Redis is queued), or it is still pending here, where an order was kept in turn with it already
        (`check`): the order does not wait for it a second time."""
        text = member.decode(errors="replace")
        return text in self._ended or any(turn[1] == text for turn in self._turns.values())

    def unheard(self, request_id: str, account: str | None = None) -> None:
        """The request's answer will never be read (its socket closed, its upstream call failed): a cancel-all holds
        others ORPHAN_HOLD_S more at most (sent: the exchange may still be executing it), an order none."""
        where = self._where.get(request_id)
        entry = self._pending.get(where, {}).get(request_id) if where is not None else None
        if entry is not None:
            entry.until = min(entry.until, self._clock() + ORPHAN_HOLD_S)
        self.changed(where or account)

    def changed(self, account: str | None = None) -> None:
        """Wake the requests waiting on `account` (None: on every account) to look again."""
        if not self._waiters:
            return
        for name in (account,) if account is not None else tuple(self._waiters):
            waiters = self._waiters.pop(name, None) or []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def quiet(self, need: NeedQuiet) -> None:
        """Until what `need` waits for went, or its deadline; then its `settle`."""
        await self._quiet(need)
        if need.settle is not None:
            await need.settle()

    async def _quiet(self, need: NeedQuiet) -> None:
        loop = asyncio.get_running_loop()
        if need.elsewhere is not None:  # the first look takes the cancel-all's turn in the fleet at once, not only
            await need.elsewhere()  # once this instance's own orders before it are answered (session 26's diff review)
        while not need.ready() or (need.elsewhere is not None and await need.elsewhere()):
            left = need.deadline - time.monotonic()
            if left <= 0:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(need.account, []).append(waiter)
            try:  # and a look each second (an entry's hold running out), each 50 ms at the other instances
                async with asyncio.timeout(min(left, 1.0 if need.elsewhere is None else FLEET_LOOK_S)):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
                    waiting = self._waiters.get(need.account, [])
                    with contextlib.suppress(ValueError):
                        waiting.remove(waiter)
                    if not waiting:
                        self._waiters.pop(need.account, None)
