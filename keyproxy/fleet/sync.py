"""An instance's follower: what another keyproxy of the fleet changed takes effect here.

It blocks on the fleet's change stream (a notice arrives within milliseconds of a change) and, after every
notice and at least once a second, compares the fleet's version with the one it has applied: a notice
missed across a reconnect is never a missed revocation, because the version says a change exists. Applying
means adopting the newer vault copy, taking the fleet's halts and throttles, and rebuilding the snapshot
every request is decided on. Each instance writes a heartbeat with the version it has applied, which is
how an admin command waits until every live instance has its change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from keyproxy.fleet.charges import STALE_S
from keyproxy.fleet.replica import VaultReplica
from keyproxy.fleet.store import FleetStore, FleetTampered, SharedStateUnavailable
from keyproxy.state import StateStore

log = logging.getLogger("keyproxy.fleet")
CONTROL_SEQ = "fleet|control_seq"  # state.db usage key: the newest halts document seen (never gone back from)
POLL_S = 1.0  # the longest a change waits for a follower that missed its notice
HEARTBEAT_S = 1.0


class FleetSync:
    def __init__(self, fleet: FleetStore, vault: Any, replica: VaultReplica, store: StateStore,
                 reload: Callable[[], None], instance: str, listen: str,
                 up: Callable[[bool], None] = lambda ok: None,
                 audit_seq: Callable[[], int] = lambda: 0,
                 instances: Callable[[int, int], None] = lambda fleet, on_this_host: None,
                 last_seen: dict[str, float] | None = None,
                 latched: Callable[[dict[str, str]], None] = lambda latches: None) -> None:
        self.fleet, self.vault, self.replica, self.store = fleet, vault, replica, store
        self._reload, self.instance, self.listen, self._up = reload, instance, listen, up
        self.applied = 0  # the fleet version whose state this instance serves
        self.confirmed = -STALE_S  # monotonic time this instance last saw the fleet's version and had applied it
        self._built = vault.changes()  # the vault the snapshot was built from (workers share one vault file)
        self.available = False
        self._beat = 0.0
        self._audit_seq = audit_seq  # this instance's newest audit line, published so `audit verify` sees a cut
        self._instances = instances  # told how many instances are live (all, on this host): budgets are split
        self._last_seen = last_seen if last_seen is not None else {}  # the core's: bot -> last authenticated request
        self._published: dict[str, float] = {}
        self.fleet_last_seen: dict[str, float] = {}  # every instance's, as of the last heartbeat (bot heartbeats)
        self._lock = asyncio.Lock()
        self._latched = latched  # the risk desk's: daily loss limits another instance found crossed

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def catch_up(self) -> bool:
        """Apply the fleet's newer state, if any; True when this instance's snapshot changed."""
        async with self._lock:
            version = await self._io(self.fleet.version)
            if version < self.applied:  # Redis lost writes, or someone reset it: no change may go unseen
                raise FleetTampered(f"the fleet's version at {self.fleet.where} went back ({version} after "
                                    f"{self.applied}): Redis lost data or was written by someone else; requests "
                                    "that need the fleet are refused until the instances restart and re-align")
            await self._share_unshared()
            if version == self.applied:
                self.confirm()
                return False
            halts, throttles = await self._io(self.fleet.halts_and_throttles)
            self._latched(await self._io(self.fleet.latches))
            got = await self._io(self.replica.newer_image, self.vault.changes())
            changed = got is not None and self.replica.adopt(self.vault, got)
            changed = self.store.replace_halts(halts, throttles) or changed
            self.store.set_usage(CONTROL_SEQ, str(self.fleet.control_seq))  # a restart never goes back
            changed = changed or self.vault.changes() != self._built  # another worker wrote our own file
            if changed:
                self._reload()
                self._built = self.vault.changes()
            self.applied = version
            self.confirm()
            return changed

    def confirm(self) -> None:
        """The fleet's version was seen equal to the one applied here (the follower, or a gate check)."""
        self.confirmed = time.monotonic()

    def stale(self) -> bool:
        """Whether this instance's state may lack a change made through another (not confirmed for STALE_S)."""
        return time.monotonic() - self.confirmed > STALE_S

    async def _share_unshared(self) -> None:
        """Halts set here while Redis was out of reach: shared now (they stayed in force here meanwhile)."""
        while self.store.unshared_halts:
            scope, target, reason, since = self.store.unshared_halts[0]
            await self._io(self.fleet.set_halt, scope, target, reason, since)
            self.store.unshared_halts.pop(0)

    async def heartbeat(self) -> None:
        await self._io(self.fleet.heartbeat, self.instance, self.applied, self.listen, self._audit_seq())
        self._beat = time.monotonic()
        fresh = {bot: ts for bot, ts in list(self._last_seen.items()) if ts > self._published.get(bot, 0.0)}
        self.fleet_last_seen = await self._io(self.fleet.share_last_seen, fresh)
        self._published.update(fresh)
        live = await self._io(self.fleet.instances)
        host = socket.gethostname()
        self._instances(max(1, len(live)), max(1, sum(1 for v in live.values() if v.get("host") == host)))

    def _set_available(self, ok: bool) -> None:
        if ok != self.available:
            (log.info if ok else log.error)("shared state " + ("reachable" if ok else "unreachable"),
                                            extra={"where": self.fleet.where})
        self.available = ok
        self._up(ok)

    async def run(self) -> None:
        """Follow the change stream until cancelled; reconnects by itself."""
        client = self.fleet.aio()
        stream, last = self.fleet.key("changes"), "$"
        try:
            while True:
                try:
                    got = await client.xread({stream: last}, block=int(POLL_S * 1000), count=100)
                    if got:
                        last = got[0][1][-1][0]
                    applied = self.applied
                    await self.catch_up()
                    # at once after applying: an admin command elsewhere is waiting to hear it
                    if self.applied != applied or time.monotonic() - self._beat >= HEARTBEAT_S:
                        await self.heartbeat()
                    self._set_available(True)
                except FleetTampered as e:  # never adopted: requests that need the fleet are refused meanwhile
                    log.error("%s", e)
                    self._set_available(False)
                    await asyncio.sleep(1.0)
                except (redis.RedisError, SharedStateUnavailable, OSError) as e:
                    if self.available:
                        log.error("shared state unreachable", extra={"where": self.fleet.where,
                                                                      "kind": type(e).__name__})
                    self._set_available(False)
                    last = "$"  # what was missed meanwhile is found by the version
                    await asyncio.sleep(0.5)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - junk in Redis, a vault that cannot adopt: never die
                    log.error("fleet follower: %s", type(e).__name__, extra={"where": self.fleet.where})
                    self._set_available(False)
                    await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def report(self) -> dict[str, Any]:
        """`keyproxy status`'s fleet lines, from this instance's point of view."""
        return self.fleet.report(self.instance, self.applied)

    async def wait_others(self, version: int, timeout: float = 1.0) -> list[str]:
        """Until every other live instance has applied `version`: the ones still behind after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            instances = await self._io(self.fleet.instances)
            lagging = sorted(k for k, v in instances.items()
                             if k != self.instance and int(v.get("version", 0)) < version)
            if not lagging or time.monotonic() > deadline:
                return lagging
            await asyncio.sleep(0.01)
