"""Acting on findings: suspend a bot, quarantine an account's key, record an incident, alert.

Every action is persisted (vault or state.db) before the request that
completed the finding has been answered, so the very next request sees it;
each is an audit event, a metric, and part of an incident record that
`keyproxy incidents show` prints. A human restores with `bot restore` /
`key restore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from keyproxy.anomaly.rules import Engine, Event, Finding
from keyproxy.audit.log import get_logger

log = get_logger("keyproxy.anomaly")

THROTTLE_SECONDS = 300.0
THROTTLE_RATE = 1.0  # requests per second while throttled

CHECKLIST = {
    "throttle": "the bot is limited to 1 request/s for 5 minutes: check whether its surge was intended "
                "(`keyproxy audit tail --bot {bot}`)",
    "suspend_bot": "the bot's credential may have leaked or the bot misbehaves: read "
                   "`keyproxy audit tail --bot {bot}`, check the bot's host, then `keyproxy bot restore {bot}` or "
                   "`bot rotate`/`bot revoke`",
    "quarantine_key": "no bot can use account {account}: audit its trading history at the exchange, check the key's "
                      "permissions and IP list, then `keyproxy key restore {account}` or rotate the key",
    "alert": "review the evidence requests in the audit trail",
    "cancel_orders": "keyproxy halted {scope} {target} and cancelled its resting orders at the exchange (the "
                     "order.cancel audit events list each); check what happened, then "
                     "`keyproxy resume --{scope} {target}`",
    "halt": "{scope} {target} is halted (only reads and cancels pass): read its trades and fills "
            "(`keyproxy audit tail`), then `keyproxy resume --{scope} {target}`",
    "loss_limit": "{subject} passed its daily loss limit: only orders that reduce a position pass until the UTC day "
                  "ends; read its trades (`keyproxy audit tail`) and positions (`keyproxy status`) before trading on",
    "heartbeat": "bot {bot} went silent past its heartbeat_seconds and keyproxy cancelled its resting orders "
                 "(listed here); find out why it stopped (its host, its log), then let it resume: it is not halted",
    "revoke_key": "keyproxy asked the exchange to delete account {account}'s key (see the key.revoke audit event); "
                  "create a new key at the exchange and `keyproxy key rotate {account}`",
}


class Responder:
    def __init__(self, engine: Engine, vault: Any, store: Any, audit: Callable[..., Any], metrics: Any,
                 on_change: Callable[[], None], clock: Callable[[], float] = time.time,
                 revoke: Callable[[str], Any] | None = None) -> None:
        self._revoke = revoke  # asks the exchange to delete the real key (scheduled, after the quarantine)
        self.engine = engine
        self._vault = vault
        self._store = store
        self._audit = audit
        self._metrics = metrics
        self._on_change = on_change
        self._clock = clock
        # (scope, target, reason) -> cancels that scope's resting orders after this request (the daemon's)
        self.cancel_orders: Callable[[str, str, str], Any] | None = None

    def observe(self, event: Event) -> list[Finding]:
        """Run every rule; a failing rule is logged and counted, and re-raised so the caller fails closed."""
        findings: list[Finding] = []
        for rule in self.engine.rules:
            try:
                findings += rule.observe(event)
            except Exception as e:
                self._metrics.anomalies.labels(rule.name, "error").inc()
                log.error("anomaly rule failed", rule=rule.name, kind=type(e).__name__)
                raise
        for finding in findings:
            self.act(finding)
        return findings

    def tick(self, now: float) -> None:
        """Findings held back by a rule's alert budget (anomaly/bounds.py), said once their window ended, on the
        daemon's timer: never left waiting for a next event of the rule (session 26's diff review)."""
        for rule in self.engine.rules:
            try:
                findings = rule.held(now)
            except Exception as e:  # noqa: BLE001 - a timer must not stop; counted and logged
                self._metrics.anomalies.labels(rule.name, "error").inc()
                log.error("anomaly rule failed", rule=rule.name, kind=type(e).__name__)
                continue
            for finding in findings:
                self.act(finding)

    def act(self, f: Finding) -> None:
        done = []
        for action in f.actions:
            if action == "suspend_bot" and f.bot:
                if self._vault.set_bot_status(f.bot, "suspended"):
                    done.append(action)
            elif action in ("quarantine_key", "revoke_key") and f.account:
                if self._vault.set_account_status(f.account, "quarantined"):
                    self._metrics.key_actions.labels(f.account, "quarantine").inc()
                    done.append("quarantine_key")
                if action == "revoke_key" and self._revoke is not None:
                    self._revoke(f.account)  # the exchange call runs after this request; the key is already unused
                    done.append(action)
            elif action == "halt" and (f.bot or f.account):
                scope, target = ("bot", f.bot) if f.bot else ("account", f.account)
                assert target is not None
                self._store.set_halt(scope, target, f"anomaly rule {f.rule}: {f.reason}"[:200], self._clock())
                done.append(action)
            elif action == "throttle" and f.bot:
                self._store.set_throttle(f.bot, self._clock() + THROTTLE_SECONDS, THROTTLE_RATE)
                done.append(action)
            elif action == "cancel_orders" and (f.bot or f.account):
                scope, target = ("bot", f.bot) if f.bot else ("account", f.account)
                assert target is not None
                # halted first (in force for the very next request), then the resting orders go
                self._store.set_halt(scope, target, f"anomaly rule {f.rule}: resting orders cancelled", self._clock())
                if self.cancel_orders is not None:
                    self.cancel_orders(scope, target, f"anomaly rule {f.rule}")
                done.append(action)
            elif action == "alert":
                done.append(action)
        for action in done or ["alert"]:
            self._metrics.anomalies.labels(f.rule, action).inc()
        scope, target = ("bot", f.bot) if f.bot else ("account", f.account)
        steps = [CHECKLIST[a].format(bot=f.bot, account=f.account, scope=scope, target=target)
                 for a in (done or ["alert"])]
        incident = self._store.add_incident(self._clock(), f.rule, f.subject, done or ["alert"], f.reason,
                                            list(f.evidence), steps)
        self._audit("anomaly", rule=f.rule, subject=f.subject, actions=done or ["alert"], reason=f.reason,
                    incident=incident, evidence=list(f.evidence))
        log.warning("anomaly", rule=f.rule, subject=f.subject, actions=done or ["alert"], incident=incident)
        if done:
            self._on_change()


def incident_json(row: tuple[Any, ...]) -> dict[str, Any]:
    id_, ts, rule, subject, actions, reason, evidence, steps = row
    return {"id": id_, "ts": ts, "rule": rule, "subject": subject, "actions": json.loads(actions),
            "reason": reason, "evidence": json.loads(evidence), "next_steps": json.loads(steps)}
