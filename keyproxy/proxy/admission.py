"""Admission, the awaited part of a decision both edges share: the core's decision with the market data it
asks for (market_data.py), then, in a fleet, the fleet's part of it (fleet/gate.py): one atomic Redis check
of the version, replay ids, nonce sequence, rate buckets and daily caps; an order that finds another bot's cancel-all
pending on its account through another instance waits for it first (sweeps.py's order, across the fleet).

Redis unreachable: reads, cancels and reduce-only orders pass on this instance's own counters (so a bot gets out
of a blip), everything that trades, withdraws or transfers is refused `shared_state_unavailable`; once this
instance has not confirmed the fleet's version for `STALE_S` (3 s: its follower's poll, or a gate check that found
it current), every bot's request is refused: a revocation or a halt made through another instance may be waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from keyproxy.exchanges.base import IncomingRequest
from keyproxy.fleet.charges import STALE_S, SharedCharges, Verdict
from keyproxy.policy.model import scopes_overlap
from keyproxy.proxy.core import Core
from keyproxy.proxy.outcome import Outcome, Route
from keyproxy.proxy.market_data import MarketData
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.sweeps import FLEET_LOOK_S, QUIET_WAIT_S

log = logging.getLogger("keyproxy.fleet")
STALE_RETRIES = 3  # decisions taken again on newer fleet state before giving up for this request


class Admission:
    def __init__(self, core: Core, market_data: MarketData, gate: Any = None, sync: Any = None) -> None:
        self.core, self.market_data = core, market_data
        self.gate, self.sync = gate, sync  # fleet/gate.py FleetGate, fleet/sync.py FleetSync (None: one daemon)
        self.book: Any = None  # fleet/book.py FleetBook: the positions book's entries from the other instances
        self.usage: Any = None  # fleet/usage.py FleetUsage: what this instance learned, on its way to Redis

    async def admit(self, route: Route, incoming: IncomingRequest, peer: str, outcome: Outcome,
                    session: str | None = None) -> tuple[Route, IncomingRequest]:
        try:
            route, incoming = await self.market_data.admit(route, incoming, peer, outcome, session=session)
        except Refused:
            # an amend of an order placed through another instance moments ago, whose entry is not here yet
            if not (outcome.unheld and self.book is not None and await self.book.catch_up(outcome.bot or "")):
                raise
            outcome.unheld = False
            route, incoming = await self.market_data.settle(
                route, lambda: self.core.redecide(route, incoming, peer, outcome))
        shared = outcome.shared
        if self.gate is None or shared is None:
            return route, incoming
        for _ in range(STALE_RETRIES):
            if route.snap is not self.core.snapshot():
                # this instance caught up while the request waited (a reference price, a listing, an earlier stale
                # verdict): its decision was on an older snapshot than the version the gate is about to be shown,
                # so the gate would not call it stale. Decided again on this one (a rotated-out credential too).
                route, incoming = await self.market_data.settle(
                    route, lambda: self.core.redecide(route, incoming, peer, outcome))
                if route.snap is not self.core.snapshot():
                    continue
            if (shared.open_orders is not None or shared.book_seq is not None) and self.usage is not None \
                    and self.usage.stuck():  # the fleet's counts lack what this instance learned: not to be trusted
                verdict = Verdict("unavailable")
            else:
                verdict = await self.gate.check(shared, self.sync.applied)
            if verdict.kind == "ok":  # the gate found this instance on the fleet's version
                self.sync.confirm()
                return route, incoming
            if verdict.kind == "sweeping":  # another bot's cancel-all on the account, begun before this order
                await self._after_sweeps(shared, verdict.members)
                continue
            if verdict.kind == "stale":  # another instance changed something: decide again on it
                try:
                    await self.sync.catch_up()
                except Exception:  # noqa: BLE001 - Redis went away between the two calls
                    verdict = Verdict("unavailable")
                else:
                    log.debug("decided again on the fleet's newer state", extra={"bot": shared.bot})
                    route, incoming = await self.market_data.settle(
                        route, lambda: self.core.redecide(route, incoming, peer, outcome))
                    continue
            if verdict.kind == "book":  # the bot's positions moved on another instance: decide on them
                if self.book is not None and await self.book.reach(shared.bot, int(verdict.used or 0)):
                    route, incoming = await self.market_data.settle(
                        route, lambda: self.core.redecide(route, incoming, peer, outcome))
                    continue
                verdict = Verdict("unavailable")
            if verdict.kind == "back":  # the fleet's version went back: Redis lost data or was reset
                verdict = Verdict("unavailable")
            if verdict.kind == "unavailable":
                if self.sync.stale():  # a revocation or a halt made through another instance may be waiting
                    raise Refused("shared_state_unavailable", "this keyproxy has not reached the fleet's shared "
                                  f"state for over {STALE_S:g} s, so a change made through another instance (a "
                                  "revocation, a halt) may not be known here: nothing passes until it is back", 1.0)
                if shared.harmless:  # a read, a cancel, a reduce-only order: this instance's own counters
                    self.core.check_local_open_orders(shared)
                    shared.commit_local()
                    return route, incoming
                raise Refused("shared_state_unavailable", "the fleet's shared state cannot be reached, so limits "
                              "that hold across instances cannot be checked: only reads, cancels and reduce-only "
                              f"orders pass, and only for {STALE_S:g} s, until it is back", 1.0)
            raise refusal(verdict, shared.bot)
        raise Refused("unavailable", "the fleet's shared state kept changing while this request was decided; retry",
                      1.0)

    async def _after_sweeps(self, shared: SharedCharges, members: tuple[bytes, ...]) -> None:
        """An order waits for the other bots' cancel-alls pending on its account in its scopes, begun through any
        instance before it (sweeps.py: first come first served), until their answers are read or QUIET_WAIT_S; then
        it goes, whatever still waits. Its gate check is made again, now without this wait (nothing was charged)."""
        shared.sweeps_first = False
        assert shared.pending is not None
        account, scopes = shared.pending[0], tuple(shared.pending[1].split("|", 2)[2].split(","))
        before = tuple(m for m in members if not self.core.sweeps.ours(m)
                       and scopes_overlap(tuple(m.decode(errors="replace").split("|", 2)[-1].split(",")), scopes))
        deadline = time.monotonic() + QUIET_WAIT_S
        while before and time.monotonic() < deadline and await self.gate.still_sweeping(account, before):
            await asyncio.sleep(FLEET_LOOK_S)
            before = tuple(m for m in before if not self.core.sweeps.ours(m))


def refusal(verdict: Verdict, bot: str) -> Refused:
    """The fleet's no, worded as one daemon's own would be."""
    if verdict.kind == "replay":
        return Refused("replayed_request", "this signed request was already received")
    if verdict.kind == "sequence":
        return Refused("replayed_request", "nonce is not above this bot's previous one")
    if verdict.kind == "rate":
        name = (verdict.bucket or "").split(":")[-1]
        return Refused("rate_limited", f"bot {bot!r}: rate limit {name} reached (counted across the fleet)",
                       verdict.retry_after)
    if verdict.kind == "open":
        return Refused("open_orders_exceeded", f"bot {bot!r}: {verdict.used} open orders and more: the cap is "
                       "reached (counted across the fleet)")
    if verdict.kind == "position":
        return Refused("position_exceeded", f"bot {bot!r}: position and resting orders plus its orders on their way "
                       f"through every instance ({(verdict.used or 0).normalize():f} on that side) and this order "
                       "would pass its position cap (counted across the fleet)")
    if verdict.kind == "duplicate" and verdict.duplicate is not None:
        _, window, cap, _ = verdict.duplicate
        return Refused("duplicate_order", f"bot {bot!r}: the same order was already placed {verdict.used} times in "
                       f"{window:g} s across the fleet: the cap is {cap} (duplicate_orders)")
    if verdict.kind == "cap" and verdict.cap is not None:
        kind, asset, amount, cap, code = verdict.cap
        used = verdict.used or 0
        what = "traded notional" if kind == "notional" else f"withdrawals of {asset}"
        return Refused(code, f"bot {bot!r}: today's {what} would reach {(used + amount).normalize():f}, above "
                       f"the daily cap {cap.normalize():f} (counted across the fleet)")
    return Refused("internal_error", f"the fleet's gate answered {verdict.kind!r}")
