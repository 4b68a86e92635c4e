"""Exchange-side dead-man's switches, kept armed while keyproxy is healthy.

`[accounts.NAME] dead_man_seconds = 60` asks the exchange to cancel every resting order of the account's
key unless keyproxy re-arms the timer within 60 s (Kraken CancelAllOrdersAfter, OKX cancel-all-after,
Hyperliquid scheduleCancel). keyproxy re-arms every third of the window, so two arms may fail in a row
before the exchange acts. When keyproxy cannot run (host lost, daemon killed, network cut) nobody re-arms
and the exchange cancels: a bot that can no longer be stopped leaves nothing on the book. A clean stop
leaves the timer armed too: with keyproxy down no bot can manage its orders.

While keyproxy holds an account's timer, a bot may not set or clear it (the core refuses the call).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keyproxy.audit.log import get_logger
from keyproxy.errors import ConfigError
from keyproxy.exchanges.open_orders import NO_SWITCH, SWITCHES
from keyproxy.proxy.own_calls import SEND_ERRORS, OwnCalls, what_failed
from keyproxy.proxy.registry import AccountEntry

log = get_logger("keyproxy.dead_man")
TICK_S = 1.0


@dataclass(slots=True)
class SwitchState:
    seconds: int
    armed_at: float | None = None  # the last time the exchange confirmed the timer
    attempted_at: float = 0.0
    error: str | None = None  # what the exchange (or the network) said on the last failed arm
    failures: int = 0


def switch_problem(exchange: str, seconds: int) -> str | None:
    """Why `dead_man_seconds = seconds` cannot be honoured on `exchange`, or None."""
    switch = SWITCHES.get(exchange)
    if switch is None:
        return NO_SWITCH.get(exchange, f"{exchange} has no cancel-on-silence timer keyproxy can arm")
    low, high = switch.bounds
    if not low <= seconds <= high:
        return f"{exchange}'s {switch.name} accepts {low} to {high} seconds, not {seconds}"
    return None


def check_switches(account_limits: Mapping[str, Any], exchanges: Mapping[str, str]) -> None:
    """ConfigError for a `dead_man_seconds` an account's exchange cannot honour (`exchanges`: account -> exchange;
    a config naming an account that does not exist is not this check's business)."""
    for name, limits in sorted(account_limits.items()):
        seconds = getattr(limits, "dead_man_seconds", None)
        problem = switch_problem(exchanges[name], seconds) if seconds is not None and name in exchanges else None
        if problem:
            raise ConfigError(f"[accounts.{name}] dead_man_seconds: {problem}")


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

    def _configured(self) -> dict[str, tuple[AccountEntry, int]]:
        snap = self._snapshot()
        limits: Mapping[str, Any] = snap.account_limits
        out = {}
        for name, entry in snap.accounts.items():
            seconds = getattr(limits.get(name), "dead_man_seconds", None)
            if seconds is not None and entry.adapter is not None and entry.info.exchange in SWITCHES:
                out[name] = (entry, seconds)
        return out

    async def arm(self, entry: AccountEntry, state: SwitchState) -> None:
        name = entry.info.name
        switch = SWITCHES[entry.info.exchange]
        now = self._clock()
        state.attempted_at = now
        try:
            status, body = await self._calls.send(entry, switch.arm(state.seconds, int(now * 1000)))
            error = switch.armed(status, body)
        except SEND_ERRORS as e:
            error = f"not sent or no answer: {what_failed(e)}"
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

    async def run(self) -> None:
        """Forever: arm what is due. An account whose timer was dropped from the config is left to expire."""
        while True:
            configured = self._configured()
            for gone in set(self.states) - set(configured):
                del self.states[gone]
            due = []
            now = self._clock()
            for name, (entry, seconds) in configured.items():
                state = self.states.get(name)
                if state is None or state.seconds != seconds:
                    state = self.states[name] = SwitchState(seconds)
                if now - state.attempted_at >= max(1.0, seconds / 3):
                    due.append(self.arm(entry, state))
            if due:
                await asyncio.gather(*due)
            await asyncio.sleep(TICK_S)

    def report(self) -> list[dict[str, Any]]:
        """For `keyproxy status`: each switch, when the exchange last confirmed it and the last error."""
        return [{"account": name, "seconds": s.seconds, "armed_at": s.armed_at, "error": s.error,
                 "failures": s.failures} for name, s in sorted(self.states.items())]
