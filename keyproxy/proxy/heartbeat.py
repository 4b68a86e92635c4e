"""Bot heartbeats: a bot with `heartbeat_seconds` that sends nothing for that long has its resting orders
cancelled, and an incident lists them.

Anything the bot sends that keyproxy authenticates counts (a REST request, a WebSocket frame, or
`GET /<account>/_keyproxy/heartbeat` signed like any of its requests): a crashed, hung or cut-off bot
leaves no orders behind. The bot is not halted: when it comes back it trades again, and the next silence
cancels again. Off unless set.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from keyproxy.anomaly.respond import CHECKLIST
from keyproxy.audit.log import get_logger

log = get_logger("keyproxy.heartbeat")
TICK_S = 0.5
RULE = "heartbeat"


class HeartbeatWatch:
    def __init__(self, snapshot: Callable[[], Any], last_seen: dict[str, float], canceller: Any, store: Any,
                 audit: Callable[..., object], metrics: Any, clock: Callable[[], float] = time.time,
                 fleet_seen: Callable[[], dict[str, float]] = dict) -> None:
        self._snapshot = snapshot
        self._last_seen = last_seen  # the core's: bot -> its last authenticated request
        # in a fleet, every instance's (a bot talking to another instance is not silent); a second or two old
        self._fleet_seen = fleet_seen
        self._canceller = canceller
        self._store = store
        self._audit = audit
        self._metrics = metrics
        self._clock = clock
        self._started = clock()  # a bot silent since before a restart counts from the restart
        self._handled: dict[str, float] = {}  # bot -> the silence (its last_seen) already acted on
        self._watched_since: dict[str, float] = {}  # bot -> when it first had a heartbeat here (added, or set)
        self._tasks: set[asyncio.Task[None]] = set()

    def watched(self) -> dict[str, int]:
        """Active bots with a heartbeat: name -> seconds."""
        snap = self._snapshot()
        out = {}
        for bots in (snap.bots_by_key, snap.bots_by_token):
            for bot in bots.values():
                seconds = bot.policy.heartbeat_seconds
                if seconds and bot.info.status == "active":
                    out[bot.info.name] = seconds
        return out

    def check(self) -> list[str]:
        """The bots silent past their heartbeat now, each once per silence; their cancels are started."""
        now = self._clock()
        silent = []
        fleet = self._fleet_seen()
        for name, seconds in self.watched().items():
            # a bot added (or given a heartbeat) while keyproxy runs is silent from then on, not from the start
            since = self._watched_since.setdefault(name, now)
            last = max(self._last_seen.get(name, 0.0), fleet.get(name, 0.0), self._started, since)
            if now - last >= seconds and self._handled.get(name) != last:
                self._handled[name] = last
                silent.append(name)
                task = asyncio.get_running_loop().create_task(self._act(name, seconds, now - last))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return silent

    async def _act(self, bot: str, seconds: int, quiet: float) -> None:
        reason = f"bot {bot} sent nothing for {quiet:.0f} s (heartbeat_seconds = {seconds})"
        try:
            summaries = await self._canceller.cancel("bot", bot, reason)
        except Exception as e:  # a vanished bot or a bug: logged; the next silence tries again
            log.error("heartbeat cancel failed", bot=bot, kind=type(e).__name__)
            return
        evidence = [f"order {c['order_id']} {c['symbol']}: cancelled" for s in summaries for c in s["cancelled"]]
        evidence += [f"order {f['order_id']} {f['symbol']}: FAILED {f['error']}"
                     for s in summaries for f in s["failed"]]
        evidence += [f"account {s['account']}: {s['error']}" for s in summaries if s["error"]]
        steps = [CHECKLIST["heartbeat"].format(bot=bot)]
        incident = self._store.add_incident(self._clock(), RULE, f"bot:{bot}", ["cancel_orders"], reason, evidence,
                                            steps)
        self._audit("anomaly", rule=RULE, subject=f"bot:{bot}", actions=["cancel_orders"], reason=reason,
                    incident=incident, evidence=evidence[:50])
        self._metrics.anomalies.labels(RULE, "cancel_orders").inc()
        log.warning("silent bot: its resting orders were cancelled", bot=bot, incident=incident,
                    cancelled=sum(len(s["cancelled"]) for s in summaries))

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(TICK_S)
