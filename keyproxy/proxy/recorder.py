"""Where every request outcome goes: the audit trail, the metrics, the log.

`before_forward` runs after every check and before any byte goes upstream:
if the audit line cannot be written the request is refused with 503
`audit_unavailable` (fail closed), unless the operator chose fail-open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from keyproxy.anomaly.respond import Responder
from keyproxy.anomaly.rules import Event
from keyproxy.audit.events import AUTH_FAILURE_CODES
from keyproxy.audit.log import get_logger
from keyproxy.audit.trail import AuditTrail, AuditUnavailable
from keyproxy.metrics import Metrics
from keyproxy.policy.decide import RISK_RULES
from keyproxy.proxy.outcome import Outcome
from keyproxy.proxy.refusal import Refused

log = get_logger("keyproxy.request")
_debugging = logging.getLogger("keyproxy.request").isEnabledFor  # the stdlib's cached level check
MAX_BOUND = 10_000  # metric children kept bound; more label sets than this (never in practice) start over


class Recorder:
    def __init__(self, trail: AuditTrail | None, metrics: Metrics, *, fail_open: bool = False,
                 responder: Responder | None = None) -> None:
        self._trail = trail
        self._metrics = metrics
        self._fail_open = fail_open
        self._was_failing = False
        self.responder = responder
        self._bound: dict[tuple[object, tuple[str, ...]], Any] = {}
        self.unsent: Callable[[Outcome], None] = lambda o: None  # the core's InFlight.land (see `react`)

    def _child(self, metric: Any, *labels: str) -> Any:
        """A metric's child for these labels, bound once: prometheus-client's labels() validates and locks
        on every call."""
        key = (metric, labels)
        child = self._bound.get(key)
        if child is None:
            if len(self._bound) >= MAX_BOUND:
                self._bound.clear()
            child = self._bound[key] = metric.labels(*labels)
        return child

    @staticmethod
    def event(o: Outcome, phase: str = "done", now: float | None = None) -> Event:
        f = o.facts
        withdraw_to = (f"{f.asset}:{f.network or '*'}:{f.address}" if f is not None and f.action == "withdraw"
                       and f.address else None)
        # a bot named by a request whose signature did not check out is a claim: findings never act on it
        bot = o.bot if o.authenticated and o.proven else None  # a key id alone proves nothing of the bot
        return Event(ts=time.time() if now is None else now, request_id=o.request_id, bot=bot, account=o.account,
                     account_known=o.account_known, source_ip=o.source_ip, endpoint_class=o.endpoint_class,
                     decision=o.decision, code=o.code, key_rejected=o.key_rejected, key_denied=o.key_denied,
                     phase=phase,
                     action=f.action if f is not None else None, notional=o.notional, withdraw_to=withdraw_to)

    def _append(self, event: str, fields: dict[str, Any]) -> None:
        if self._trail is None:
            return
        try:
            self._trail.append(event, **fields)
            if self._was_failing:
                self._was_failing = False
                self._trail.append("trail.resumed")
                log.warning("audit trail writable again")
        except AuditUnavailable as e:
            self._metrics.audit_write_errors.inc()
            self._was_failing = True
            if self._fail_open:
                log.error("audit write failed; continuing (audit.fail_open = true)", reason=str(e))
                return
            log.error("audit write failed; refusing requests until it is writable", reason=str(e))
            raise

    @staticmethod
    def _fields(o: Outcome) -> dict[str, Any]:
        who = {"bot": o.bot} if o.authenticated or o.bot is None else {"bot": None, "claimed_bot": o.bot}
        return {"request_id": o.request_id, **who, "account": o.account, "source_ip": o.source_ip,
                "method": o.method, "path": o.path, "endpoint": o.endpoint, "endpoint_class": o.endpoint_class,
                "transport": o.transport}

    def before_forward(self, o: Outcome) -> None:
        fields = self._fields(o)
        if o.replay is not None:  # read back at a restart: the request's replay is refused within its window
            fields["replay"] = o.replay
        try:
            self._append("request.forward", fields)
        except AuditUnavailable:
            raise Refused("audit_unavailable", "the audit trail cannot be written; nothing was sent") from None
        if self.responder is not None:
            try:
                self.responder.observe(self.event(o, "forward"))
            except Exception:  # a broken rule must not wave a request through
                raise Refused("internal_error", "the anomaly engine failed; nothing was sent") from None

    def react(self, o: Outcome) -> None:
        """Anomaly rules over a finished request; actions persist before the next request is read. A request
        that ended refused before it was signed gives back the places its order held on its way (`unsent`:
        the core's InFlight.land; idempotent, so the paths that already did are not counted twice)."""
        if o.decision != "allow" and not o.signed:  # signed, then failed on its way: it may be live, keep its places
            self.unsent(o)
        if self.responder is not None and (o.decision == "deny" or o.key_rejected or o.key_denied):
            try:
                self.responder.observe(self.event(o))
            except Exception:
                pass  # logged and counted by the responder; this answer is already decided

    def finish(self, o: Outcome, status: int) -> None:
        total = time.perf_counter() - o.started
        upstream = (o.upstream_ms or 0) / 1000
        account, bot = o.account or "-", o.bot or "-"
        fields = {**self._fields(o), "decision": o.decision, "code": o.code, "status": status,
                  "upstream_status": o.upstream_status, "proxy_ms": round((total - upstream) * 1000, 3),
                  "upstream_ms": round(o.upstream_ms, 3) if o.upstream_ms is not None else None}
        if o.cache is not None:  # answered from the shared cache, or by keyproxy itself ("local")
            fields["cache"] = o.cache
        if o.replay is not None and not o.signed:  # answered by keyproxy itself (a session.logon): read at start
            fields["replay"] = o.replay
        m, child = self._metrics, self._child
        if o.account_known:
            child(m.requests, account, bot, o.endpoint_class or "-", o.decision, o.transport).inc()
            if o.code:
                child(m.denials, account, o.code).inc()
                if o.code in RISK_RULES:
                    child(m.risk_refusals, RISK_RULES[o.code]).inc()
                if o.code in AUTH_FAILURE_CODES:
                    child(m.auth_failures, account, o.code).inc()
            child(m.overhead, account).observe(max(total - upstream, 0.0))
            if o.upstream_status is not None:
                child(m.upstream_time, account).observe(upstream)
                child(m.upstream_responses, account, f"{o.upstream_status // 100}xx").inc()
                if o.rate_limit is not None:
                    child(m.rate_limit_answers, account, str(o.upstream_status), o.rate_limit).inc()
        else:  # unknown account names come from requests: never a label
            child(m.requests, "-", bot, "-", o.decision, o.transport).inc()
            if o.code:
                child(m.denials, "-", o.code).inc()
        event = "request.done" if o.decision == "allow" else "request.deny"
        if o.decision == "deny" or status >= 500:
            log.info("request", **fields)
        elif _debugging(logging.DEBUG):  # production runs at info: no call into structlog for an allowed request
            log.debug("request", **fields)
        if o.code != "audit_unavailable":
            try:
                self._append(event, fields)
            except AuditUnavailable:
                pass  # already counted and logged; the answer has been decided

