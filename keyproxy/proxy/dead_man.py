"""Exchange-side dead-man's switches, kept armed while keyproxy is healthy.

`[accounts.NAME] dead_man_seconds = 60` asks the exchange to cancel every resting order of the account's
key unless keyproxy re-arms the timer within 60 s (Kraken CancelAllOrdersAfter, OKX cancel-all-after,
Hyperliquid scheduleCancel), or once keyproxy's own private socket has been gone for 60 s (Bybit's
disconnect-cancel-all: a `SocketHolder` keeps it open, logged in and pinged). keyproxy re-arms every third
of the window, so two arms may fail in a row before the exchange acts. When keyproxy cannot run (host lost,
daemon killed, network cut) nobody re-arms and the exchange cancels: a bot that can no longer be stopped
leaves nothing on the book. A clean stop leaves the timer armed too: with keyproxy down no bot can manage
its orders.

While keyproxy holds an account's timer, a bot may not set or clear it (the core refuses the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from keyproxy.audit.log import get_logger
from keyproxy.errors import ConfigError
from keyproxy.exchanges.open_orders import NO_SWITCH, SWITCHES, HeldSocketSpec, Spec
from keyproxy.proxy.own_calls import SEND_ERRORS, OwnCalls, what_failed
from keyproxy.proxy.registry import AccountEntry

log = get_logger("keyproxy.dead_man")
TICK_S = 1.0
REOPEN_S = 1.0  # after a held socket drops or cannot be opened: well inside any window the exchange accepts
GRACE_S = 3.0  # a held socket down this long is a failure (exchanges drop sockets now and then; it reopens)
# TypeError: a frame that is not the JSON text expected; OSError: a connection reset mid-send
SOCKET_ERRORS = (*SEND_ERRORS, TypeError, OSError)


@dataclass(slots=True)
class SwitchState:
    seconds: int
    armed_at: float | None = None  # the last time the exchange confirmed the timer
    attempted_at: float = 0.0
    error: str | None = None  # what the exchange (or the network) said on the last failed arm
    failures: int = 0
    socket_down: bool = False  # the last failure was the held socket's (Bybit DCP), not the exchange's answer


def switch_problem(exchange: str, seconds: int) -> str | None:
    """Why `dead_man_seconds = seconds` cannot be honoured on `exchange`, or None."""
    switch = SWITCHES.get(exchange)
    if switch is None:
        return NO_SWITCH.get(exchange, f"{exchange} has no cancel-on-silence timer keyproxy can arm")
    low, high = switch.bounds
    if not low <= seconds <= high:
        return f"{exchange}'s {switch.name} accepts {low} to {high} seconds, not {seconds}{getattr(switch, 'why', '')}"
    return None


def check_switches(account_limits: Mapping[str, Any], exchanges: Mapping[str, str]) -> None:
    """ConfigError for a `dead_man_seconds` an account's exchange cannot honour (`exchanges`: account -> exchange;
    a config naming an account that does not exist is not this check's business)."""
    for name, limits in sorted(account_limits.items()):
        seconds = getattr(limits, "dead_man_seconds", None)
        problem = switch_problem(exchanges[name], seconds) if seconds is not None and name in exchanges else None
        if problem:
            raise ConfigError(f"[accounts.{name}] dead_man_seconds: {problem}")


def _key_of(entry: AccountEntry) -> tuple[object, ...]:
    """What makes a held socket stale: another key version (rotation) or another host; not a new snapshot."""
    info = entry.info
    return info.version, info.fingerprint, info.base_url, info.environment, info.insecure_upstream


class SocketHolder:
    """keyproxy's own private socket for an account's switch (Bybit DCP), reopened whenever it drops and
    when the account's key changes; `error` says why it is not up."""

    def __init__(self, calls: OwnCalls, entry_of: Callable[[], AccountEntry | None], spec: HeldSocketSpec,
                 seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._calls, self._entry_of, self._spec, self._clock = calls, entry_of, spec, clock
        self.seconds = seconds
        # a ping well inside the window, so a hung keyproxy (no pings) is told from a live one
        self.ping_s = min(spec.ping_seconds, max(1.0, seconds / 3))
        self.up_since: float | None = None
        self.ever_up = False
        self.down_since = time.monotonic()
        self.error: str | None = "private socket not open yet"
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while (entry := self._entry_of()) is not None:
            try:
                ws = await asyncio.wait_for(self._calls.open_socket(entry, self._spec), 15)
            except SOCKET_ERRORS as e:
                self.error = f"private socket not opened: {what_failed(e)}"
                await asyncio.sleep(REOPEN_S)
                continue
            self.up_since, self.error, self.ever_up = self._clock(), None, True
            try:
                self.error = await self._hold(ws, entry)
            except SOCKET_ERRORS as e:
                self.error = f"private socket lost: {what_failed(e)}"
            finally:
                self.up_since, self.down_since = None, time.monotonic()
                with contextlib.suppress(Exception):
                    await ws.close()
            await asyncio.sleep(REOPEN_S)

    async def _hold(self, ws: aiohttp.ClientWebSocketResponse, entry: AccountEntry) -> str:
        """Pings until the socket closes, goes quiet or the key changes; why it stopped."""
        heard = next_ping = time.monotonic()
        while True:
            current = self._entry_of()
            if current is None or _key_of(current) != _key_of(entry):
                return "private socket reopened: the account's key or host changed"
            now = time.monotonic()
            if now >= next_ping:
                await ws.send_str(json.dumps(self._spec.ping))
                next_ping = now + self.ping_s
            if now - heard > 2 * self.ping_s + 5:
                return "private socket went quiet (no answer to pings)"
            try:
                msg = await ws.receive(timeout=min(1.0, self.ping_s))
            except TimeoutError:
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                return "private socket closed by the exchange"
            heard = time.monotonic()

    def down(self) -> bool:
        """Not up, and not just reopening after a drop (never opened yet: down)."""
        return self.up_since is None and (not self.ever_up or time.monotonic() - self.down_since >= GRACE_S)

    def opening(self) -> bool:
        """Being opened for the first time, for less than the grace: too soon to call the switch failing."""
        return not self.ever_up and time.monotonic() - self.down_since < GRACE_S

    def stop(self) -> None:
        self.task.cancel()


class DeadManKeeper:
    """Re-arms each configured account's timer every third of its window; reports what it last managed."""

    def __init__(self, snapshot: Callable[[], Any], calls: OwnCalls, audit: Callable[..., object],
                 metrics: Any, clock: Callable[[], float] = time.time) -> None:
        self._snapshot = snapshot
        self._calls = calls
        self._audit = audit
        self._metrics = metrics
        self._clock = clock
        self.states: dict[str, SwitchState] = {}
        self.sockets: dict[str, SocketHolder] = {}

    def _configured(self) -> dict[str, tuple[AccountEntry, int]]:
        snap = self._snapshot()
        limits: Mapping[str, Any] = snap.account_limits
        out = {}
        for name, entry in snap.accounts.items():
            seconds = getattr(limits.get(name), "dead_man_seconds", None)
            if seconds is not None and entry.adapter is not None and entry.key is not None \
                    and entry.info.exchange in SWITCHES:
                out[name] = (entry, seconds)
        return out

    def _live_entry(self, name: str) -> AccountEntry | None:
        return self._configured().get(name, (None, 0))[0]

    async def _steps(self, entry: AccountEntry, seconds: int, now: float) -> str | None:
        """The switch's calls, each answer read by the switch (which may ask for more); what failed, or None."""
        switch = SWITCHES[entry.info.exchange]
        todo: list[Spec] = [switch.arm(seconds, int(now * 1000))]
        for _ in range(8):  # a switch asks for a few calls at most (Bybit: one per product)
            if not todo:
                return None
            spec = todo.pop(0)
            status, body = await self._calls.send(entry, spec)
            verdict = switch.armed(spec, status, body, seconds)
            if isinstance(verdict, str):
                return verdict
            todo.extend(verdict or [])
        return "the exchange kept asking for more calls"

    async def arm(self, entry: AccountEntry, state: SwitchState) -> None:
        name = entry.info.name
        switch = SWITCHES[entry.info.exchange]
        holder = self.sockets.get(name)
        if holder is not None and holder.opening():
            return  # armed once the socket is open (tried again next tick)
        state.attempted_at = now = self._clock()
        try:
            error = await self._steps(entry, state.seconds, now)
        except SEND_ERRORS as e:
            error = f"not sent or no answer: {what_failed(e)}"
        state.socket_down = error is None and holder is not None and holder.down()
        if state.socket_down:
            error = (holder.error if holder is not None else None) or "private socket not open"
        if error is None:
            if state.error is not None or state.armed_at is None:  # a change: armed (again)
                self._audit("deadman.arm", account=name, seconds=state.seconds, result="armed")
                log.info("dead-man's switch armed", account=name, seconds=state.seconds, switch=switch.name)
            state.armed_at, state.error, state.failures = self._clock(), None, 0
            self._metrics.dead_man_armed.labels(name).set(state.armed_at)
            return
        state.failures += 1
        self._metrics.dead_man_failures.labels(name).inc()
        if state.error is None:  # a change: failing now (logged once, counted every time)
            self._audit("deadman.arm", account=name, seconds=state.seconds, result=f"failed: {error}"[:300])
            log.error("dead-man's switch could not be armed", account=name, switch=switch.name, error=error[:200])
        state.error = error

    def _hold_sockets(self, configured: Mapping[str, tuple[AccountEntry, int]]) -> None:
        """A held socket for each configured switch that needs one; dropped with its account's switch."""
        for name in set(self.sockets):
            held = configured.get(name)
            if held is None or held[1] != self.sockets[name].seconds or self.sockets[name].task.done():
                self.sockets.pop(name).stop()
        for name, (entry, seconds) in configured.items():
            spec = SWITCHES[entry.info.exchange].held_socket
            if spec is not None and name not in self.sockets:
                self.sockets[name] = SocketHolder(self._calls, lambda n=name: self._live_entry(n), spec,  # type: ignore[misc]
                                                  seconds, self._clock)

    async def run(self) -> None:
        """Forever: arm what is due. An account whose timer was dropped from the config is left to expire."""
        try:
            while True:
                configured = self._configured()
                for gone in set(self.states) - set(configured):
                    del self.states[gone]
                self._hold_sockets(configured)
                due = []
                now = self._clock()
                for name, (entry, seconds) in configured.items():
                    state = self.states.get(name)
                    if state is None or state.seconds != seconds:
                        state = self.states[name] = SwitchState(seconds)
                    holder = self.sockets.get(name)
                    # a held socket that went down or came back: say so now, not at the next third
                    changed = holder is not None and holder.down() != state.socket_down \
                        and (state.error is None or state.socket_down)
                    if now - state.attempted_at >= (REOPEN_S if changed else max(1.0, seconds / 3)):
                        due.append(self.arm(entry, state))
                if due:
                    await asyncio.gather(*due)
                await asyncio.sleep(TICK_S)
        finally:
            for holder in self.sockets.values():
                holder.stop()

    def report(self) -> list[dict[str, Any]]:
        """For `keyproxy status`: each switch, when the exchange last confirmed it and the last error."""
        return [{"account": name, "seconds": s.seconds, "armed_at": s.armed_at, "error": s.error,
                 "failures": s.failures} for name, s in sorted(self.states.items())]
