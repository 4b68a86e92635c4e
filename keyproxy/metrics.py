"""Every Prometheus metric keyproxy exports, in one catalogue, on one registry.

Labels carry only bounded values chosen by the operator or by keyproxy:
account and bot names, endpoint classes, decisions, deny codes, status
classes, rule and action names. Never paths, IPs, symbols, request ids or
anything a request can invent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from keyproxy import __version__

LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the _created series double the output and carry no signal here
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("keyproxy_requests", "Requests (REST requests and WebSocket request frames) by "
                                "account, bot, endpoint class, decision and transport",
                                ["account", "bot", "endpoint_class", "decision", "transport"], registry=r)
        self.websockets = Gauge("keyproxy_websocket_connections", "Open bot WebSocket connections by account",
                                ["account"], registry=r)
        self.denials = Counter("keyproxy_denials", "Refused requests by deny code", ["account", "code"], registry=r)
        self.risk_refusals = Counter("keyproxy_risk_refusals", "Orders refused by a pre-trade risk control "
                                     "(docs/risk.md) by rule", ["rule"], registry=r)
        self.reconciled_fills = Counter("keyproxy_reconciled_fills", "Fills keyproxy learned only from its own "
                                        "reconciliation read (no answer or stream had shown them)", ["account"],
                                        registry=r)
        self.bot_position = Gauge("keyproxy_bot_position", "A bot's position per market and symbol, from fills the "
                                  "exchange confirmed (base units, or contracts)", ["bot", "scope"], registry=r)
        self.bot_daily_pnl = Gauge("keyproxy_bot_daily_pnl", "A bot's P&L today (UTC), realized and at the last "
                                   "price, in the quote currency", ["bot"], registry=r)
        self.auth_failures = Counter("keyproxy_auth_failures", "Failed bot authentications by reason",
                                     ["account", "reason"], registry=r)
        self.overhead = Histogram("keyproxy_proxy_overhead_seconds", "Time spent in keyproxy itself per request",
                                  ["account"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_time = Histogram("keyproxy_upstream_seconds", "Time the exchange took per forwarded request",
                                       ["account"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_responses = Counter("keyproxy_upstream_responses", "Exchange answers by status class",
                                          ["account", "status_class"], registry=r)
        self.rate_limit_answers = Counter("keyproxy_exchange_rate_limit_answers", "The exchange's own refusals for "
                                          "rate by HTTP status and kind: limit (429, Bybit 10006, Kraken EAPI) or "
                                          "ban (418, Bybit 403, Kraken lockout); keyproxy then holds the budget",
                                          ["account", "status", "kind"], registry=r)
        self.anomalies = Counter("keyproxy_anomalies", "Anomaly rule firings by rule and action",
                                 ["rule", "action"], registry=r)
        self.key_actions = Counter("keyproxy_key_actions", "Quarantines and revocations of real keys",
                                   ["account", "action"], registry=r)
        self.dead_man_armed = Gauge("keyproxy_dead_man_armed_timestamp_seconds", "When the exchange last confirmed "
                                    "the account's cancel-on-silence timer (dead_man_seconds)", ["account"], registry=r)
        self.dead_man_failures = Counter("keyproxy_dead_man_arm_failures", "Failed attempts to arm an account's "
                                         "cancel-on-silence timer at the exchange", ["account"], registry=r)
        self.halts_active = Gauge("keyproxy_halts_active", "Kill-switch halts in force", registry=r)
        self.shared_state_up = Gauge("keyproxy_shared_state_up", "1 while the fleet's shared state ([shared_state] "
                                     "Redis) answers, 0 while it does not; absent without [shared_state]", registry=r)
        self.shared_state_version = Gauge("keyproxy_shared_state_applied_version", "The fleet version whose changes "
                                          "this instance serves", registry=r)
        self.loop_lag = Histogram("keyproxy_event_loop_lag_seconds", "How late the event loop woke a timer: the "
                                  "time something held it (a synchronous write, a long callback) or its queue of work",
                                  buckets=LAG_BUCKETS, registry=r)
        self.audit_write_errors = Counter("keyproxy_audit_write_errors", "Failed audit trail writes", registry=r)
        self.build = Info("keyproxy_build", "keyproxy build information", registry=r)
        self.build.info({"version": __version__})

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Metrics computed at scrape time (key ages, bot counts) from the daemon's current state."""

        class _Collector:
            def collect(self) -> Iterable[Metric]:
                return collect()

            def describe(self) -> list[Any]:
                return []

        self.registry.register(_Collector())  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)


def rotation_due(account: Any, now: float, default_every: int | None, warn_before: int) -> tuple[float | None, bool]:
    """(the date the key should be rotated by, whether it is due: within warn_before of that date or past it)."""
    every = account.rotate_every or default_every
    if not every:
        return None, False
    due_at = account.rotated_at + every
    return due_at, now >= due_at - warn_before


def key_age_families(accounts: Iterable[Any], now: float | None = None, default_every: int | None = None,
                     warn_before: int = 7 * 86400) -> list[Metric]:
    """keyproxy_key_age_seconds and keyproxy_key_rotation_due per account (due: 1 from warn_before before the date)."""
    now = time.time() if now is None else now
    age = GaugeMetricFamily("keyproxy_key_age_seconds", "Seconds since the account's key was added or rotated",
                            labels=["account"])
    due = GaugeMetricFamily("keyproxy_key_rotation_due", "1 when the account's key is due for rotation",
                            labels=["account"])
    for a in accounts:
        age.add_metric([a.name], now - a.rotated_at)
        due.add_metric([a.name], 1.0 if rotation_due(a, now, default_every, warn_before)[1] else 0.0)
    return [age, due]


def budget_families(governor: Any, now: float) -> list[Metric]:
    """keyproxy_exchange_budget_used_ratio and keyproxy_exchange_budget_closed per budget (scope: the exchange
    host for per-IP budgets, the account for per-account ones)."""
    used = GaugeMetricFamily("keyproxy_exchange_budget_used_ratio", "Share of the exchange's own rate budget "
                             "used in its current window", labels=["scope", "budget"])
    closed = GaugeMetricFamily("keyproxy_exchange_budget_closed", "1 while the exchange's 429/418 keeps keyproxy "
                               "from sending on the budget", labels=["scope", "budget"])
    for key, ratio in governor.usage(now).items():
        scope, _, name = key.rpartition("|")
        used.add_metric([scope, name], ratio)
        closed.add_metric([scope, name], 1.0 if governor.banned_until.get(key, 0) > now else 0.0)
    refused = CounterMetricFamily("keyproxy_exchange_budget_refusals", "Requests keyproxy answered itself with the "
                                  "exchange's rate-limit error, to keep a shared budget, by bot", labels=["bot"])
    for bot, count in sorted(governor.refused_by_bot.items()):
        refused.add_metric([bot or "-"], count)
    return [used, closed, refused]
