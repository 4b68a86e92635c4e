"""An account's nonce order: requests that carry keyproxy's own nonce for one real key go one at a time.

Split from core.py, which hands one out per request (`Core.turn`, `Core.account_turn`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Any

from keyproxy.errors import KeyproxyError

log = logging.getLogger("keyproxy.proxy")


OWN = "(keyproxy)"  # keyproxy's own safety calls (a halt's cancels, the dead man's switch re-armed): served first
FOR_BOTS = "(keyproxy, for bots)"  # keyproxy's calls made for bots' decisions: one more asker in the round


class FairTurn:
    """An account's turn, one holder at a time, its waiters served round-robin by who asks, keyproxy's own calls
    first. A FIFO lock let one bot with 50 requests queued (Kraken's CancelOrder costs no call counter) hold every
    other bot's request 13 s and a halt's cancels 45 s behind it (session 36's review); now another bot's request
    waits for at most one of each asker's, and keyproxy's own for the one that holds the turn."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}  # who -> their waiters, oldest first
        self._order: deque[str] = deque()  # whose waiter is served next (each who once)

    def locked(self) -> bool:
        return self._held

    async def acquire(self, who: str) -> None:
        if not self._held and not self._order:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._waiting.get(who)
        if line is None:
            line = self._waiting[who] = deque()
            self._queue(who)
        line.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed the turn, then cancelled: it passes on
                self.release()
            elif self._waiting.get(who) is line and waiter in line:  # `release` may have passed it by already
                line.remove(waiter)
                if not line:
                    del self._waiting[who]
                    self._order.remove(who)
            raise

    def _queue(self, who: str) -> None:
        """`who` in line for the turn: after every other asker, keyproxy's own safety calls before them all."""
        if who == OWN:
            self._order.appendleft(who)
        else:
            self._order.append(who)

    def release(self) -> None:
        """The turn to the next asker in order (its oldest waiter), or free."""
        while self._order:
            who = self._order.popleft()
            line = self._waiting[who]
            waiter = line.popleft()
            if line:  # its next waiter after every other asker's (keyproxy's own calls stay first)
                self._queue(who)
            else:
                del self._waiting[who]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held = False


class NonceTurn:
    """An account's nonce order, held from the nonce's issue until the exchange has answered.

    Kraken refuses a nonce below one it has already seen, so a request must not overtake the one
    issued before it (on another connection, say): requests that carry keyproxy's nonce for one
    key go to the exchange one at a time, as a single client's would. In a fleet the turn is also the
    key's lease across every instance (fleet/nonces.py), which brings the highest nonce any instance used
    (`floor`); for exchanges that only need unused nonces (Hyperliquid) the fleet hands out the nonce itself.
    """

    def __init__(self, lock: FairTurn | None, shared: Any = None, account: str = "", ordered: bool = False,
                 per_ms: bool = False, who: str = OWN) -> None:
        self._lock, self._who = lock, who
        self._shared, self._account, self._ordered, self._per_ms = shared, account, ordered, per_ms
        self._token: str | None = None
        self.floor = 0  # every nonce issued in this turn is above it
        self.nonce: int | None = None  # issued by the fleet (unordered exchanges)
        self.issued: int | None = None  # the nonce used in this turn, recorded for the fleet when it ends

    async def __aenter__(self) -> NonceTurn:
        if self._lock is not None:
            try:
                await self._lock.acquire(self._who)
            except BaseException:
                self._lock = None  # never held: nothing to release
                raise
        if self._shared is not None:
            try:
                if self._ordered:
                    self._token, self.floor = await self._shared.acquire(self._account)
                else:
                    self.nonce = await self._shared.next(self._account, self._per_ms)
            except KeyproxyError as e:  # Redis out of reach: this instance's own sequence (a rare nonce error)
                global _nonce_warned
                if time.monotonic() - _nonce_warned > 60:  # once a minute, not once a request
                    _nonce_warned = time.monotonic()
                    log.warning("nonces from this instance's own sequence while the fleet's cannot be had: %s", e)
            except BaseException:
                self.release()
                raise
        return self

    def release(self) -> None:
        if self._token is not None:
            task = asyncio.get_running_loop().create_task(self._shared.release(self._account, self._token, self.issued))
            _RELEASES.add(task)
            task.add_done_callback(_RELEASES.discard)
            self._token = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def __aexit__(self, *exc: object) -> None:
        self.release()


_nonce_warned = -math.inf  # when the fleet's nonces last could not be had (logged once a minute)
_RELEASES: set[asyncio.Task[None]] = set()  # fleet lease releases in flight (held: a task is otherwise collectable)
