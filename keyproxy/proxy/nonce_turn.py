"""An account's nonce order: requests that carry keyproxy's own nonce for one real key go one at a time.

Split from core.py, which hands one out per request (`Core.turn`, `Core.account_turn`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from keyproxy.errors import KeyproxyError

log = logging.getLogger("keyproxy.proxy")


class NonceTurn:
    """An account's nonce order, held from the nonce's issue until the exchange has answered.

    Kraken refuses a nonce below one it has already seen, so a request must not overtake the one
    issued before it (on another connection, say): requests that carry keyproxy's nonce for one
    key go to the exchange one at a time, as a single client's would. In a fleet the turn is also the
    key's lease across every instance (fleet/nonces.py), which brings the highest nonce any instance used
    (`floor`); for exchanges that only need unused nonces (Hyperliquid) the fleet hands out the nonce itself.
    """

    def __init__(self, lock: asyncio.Lock | None, shared: Any = None, account: str = "", ordered: bool = False,
                 per_ms: bool = False) -> None:
        self._lock = lock
        self._shared, self._account, self._ordered, self._per_ms = shared, account, ordered, per_ms
        self._token: str | None = None
        self.floor = 0  # every nonce issued in this turn is above it
        self.nonce: int | None = None  # issued by the fleet (unordered exchanges)
        self.issued: int | None = None  # the nonce used in this turn, recorded for the fleet when it ends

    async def __aenter__(self) -> NonceTurn:
        if self._lock is not None:
            await self._lock.acquire()
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
