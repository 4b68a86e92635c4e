"""Anomaly rules over the request event stream: pure, bounded sliding windows, findings out.

A rule sees every `Event` (the same facts the audit trail records) and may
return a `Finding`: which rule, about whom, the actions configured for it,
and the request ids that are its evidence. Rules never act; the engine's
caller does, and records what it did.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

AUTH_FAILURES = frozenset({"unknown_bot", "bad_signature", "stale_request", "replayed_request"})
POLICY_DENIALS = frozenset({"symbol_denied", "notional_exceeded", "notional_unknown", "open_orders_exceeded",
                            "daily_notional_exceeded", "leverage_exceeded", "reduce_only", "address_denied",
                            "withdrawal_limit", "outside_hours", "rate_limited", "halted", "scope_denied"})
ACTIONS = ("alert", "suspend_bot", "quarantine_key")
MAX_KEYS = 10_000  # per rule: subjects tracked at once (oldest forgotten first)
MAX_EVIDENCE = 20


@dataclass(frozen=True, slots=True)
class Event:
    ts: float
    request_id: str
    bot: str | None
    account: str | None
    account_known: bool
    source_ip: str | None
    endpoint_class: str | None
    decision: str
    code: str | None
    key_rejected: bool = False  # the exchange answered that the real key is invalid or not allowed


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    subject: str  # "bot:NAME", "account:NAME" or "ip:ADDRESS"
    actions: tuple[str, ...]
    reason: str
    evidence: tuple[str, ...]
    bot: str | None = None
    account: str | None = None


@dataclass(frozen=True, slots=True)
class RuleConfig:
    threshold: int
    window_seconds: float
    actions: tuple[str, ...]


DEFAULTS: dict[str, RuleConfig] = {
    "auth_failures": RuleConfig(10, 60, ("suspend_bot",)),
    "foreign_ip": RuleConfig(1, 3600, ("suspend_bot",)),
    "forbidden_scope": RuleConfig(1, 3600, ("suspend_bot",)),
    "deny_burst": RuleConfig(20, 60, ("alert",)),
    "exchange_rejects_key": RuleConfig(1, 3600, ("quarantine_key",)),
}


@dataclass
class _Windows:
    """Timestamps and evidence per subject, bounded in subjects and in entries."""

    window: float
    hits: dict[str, deque[tuple[float, str]]] = field(default_factory=dict)

    def add(self, subject: str, ts: float, request_id: str, keep: int) -> deque[tuple[float, str]]:
        q = self.hits.pop(subject, None) or deque(maxlen=max(keep, 1))
        self.hits[subject] = q  # re-inserted: dict order is least recently used first
        q.append((ts, request_id))
        while q and q[0][0] < ts - self.window:
            q.popleft()
        while len(self.hits) > MAX_KEYS:
            self.hits.pop(next(iter(self.hits)))
        return q

    def clear(self, subject: str) -> None:
        self.hits.pop(subject, None)


class Rule:
    name = "rule"

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self._windows = _Windows(config.window_seconds)

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        """(subject, bot, account) this event counts against; empty when it does not count."""
        raise NotImplementedError

    def describe(self, count: int) -> str:
        return f"{count} events in {self.config.window_seconds:g} s"

    def observe(self, e: Event) -> list[Finding]:
        findings = []
        for subject, bot, account in self.matches(e):
            q = self._windows.add(subject, e.ts, e.request_id, self.config.threshold)
            if len(q) >= self.config.threshold:
                evidence = tuple(rid for _, rid in list(q)[-MAX_EVIDENCE:])
                findings.append(Finding(self.name, subject, self.config.actions, self.describe(len(q)), evidence,
                                        bot, account))
                self._windows.clear(subject)  # fire once per threshold crossing
        return findings


class AuthFailures(Rule):
    """Failed authentications for one bot key or from one source address (brute force, leaked key id)."""

    name = "auth_failures"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        if e.code not in AUTH_FAILURES:
            return []
        out: list[tuple[str, str | None, str | None]] = []
        if e.bot:
            out.append((f"bot:{e.bot}", e.bot, e.account))
        if e.source_ip:
            out.append((f"ip:{e.source_ip}", None, e.account if e.account_known else None))
        return out

    def describe(self, count: int) -> str:
        return f"{count} failed authentications in {self.config.window_seconds:g} s"


class ForeignIp(Rule):
    """A valid bot credential used from outside its allowlist: the credential has leaked."""

    name = "foreign_ip"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"bot:{e.bot}", e.bot, e.account)] if e.code == "ip_denied" and e.bot else []

    def describe(self, count: int) -> str:
        return "a valid credential was used from an address outside the bot's allowlist"


class ForbiddenScope(Rule):
    """A bot reaching for withdraw, transfer or admin endpoints it was never granted."""

    name = "forbidden_scope"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        if e.code == "scope_denied" and e.bot and e.endpoint_class in ("withdraw", "transfer", "admin"):
            return [(f"bot:{e.bot}", e.bot, e.account)]
        return []

    def describe(self, count: int) -> str:
        return "the bot attempted a withdraw, transfer or admin endpoint it was never granted"


class DenyBurst(Rule):
    """Many policy denials for one bot: a bot gone wrong."""

    name = "deny_burst"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"bot:{e.bot}", e.bot, e.account)] if e.code in POLICY_DENIALS and e.bot else []

    def describe(self, count: int) -> str:
        return f"{count} policy denials in {self.config.window_seconds:g} s"


class ExchangeRejectsKey(Rule):
    """The exchange says the real key is invalid, expired, lacks permission or is IP-restricted."""

    name = "exchange_rejects_key"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"account:{e.account}", e.bot, e.account)] if e.key_rejected and e.account_known else []

    def describe(self, count: int) -> str:
        return "the exchange rejected the account's real key"


RULES: dict[str, type[Rule]] = {r.name: r for r in (AuthFailures, ForeignIp, ForbiddenScope, DenyBurst,
                                                     ExchangeRejectsKey)}


class RuleError(ValueError):
    """Anomaly config is invalid; the message names the key."""


def parse_rules(doc: dict[str, Any]) -> dict[str, RuleConfig]:
    """`[anomaly.NAME]` tables over the defaults: threshold, window_seconds, actions; `enabled = false`."""
    configs = dict(DEFAULTS)
    for name, table in doc.items():
        if name not in RULES:
            raise RuleError(f"{name}: unknown rule (known: {', '.join(sorted(RULES))})")
        if not isinstance(table, dict):
            raise RuleError(f"{name}: must be a table")
        unknown = set(table) - {"threshold", "window_seconds", "actions", "enabled"}
        if unknown:
            raise RuleError(f"{name}.{sorted(unknown)[0]}: unknown key (threshold, window_seconds, actions, enabled)")
        base = configs[name]
        threshold = table.get("threshold", base.threshold)
        window = table.get("window_seconds", base.window_seconds)
        actions = table.get("actions", list(base.actions))
        if type(threshold) is not int or threshold < 1:
            raise RuleError(f"{name}.threshold: must be a whole number of at least 1, not {threshold!r}")
        if type(window) not in (int, float) or window <= 0:
            raise RuleError(f"{name}.window_seconds: must be a positive number, not {window!r}")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise RuleError(f"{name}.actions: must be a list of action names")
        for action in actions:
            if action not in ACTIONS:
                raise RuleError(f"{name}.actions: unknown action {action!r} (known: {', '.join(ACTIONS)})")
        if table.get("enabled", True) is False:
            configs.pop(name)
            continue
        configs[name] = RuleConfig(threshold, float(window), tuple(actions) or ("alert",))
    return configs


class Engine:
    """All enabled rules; `observe` returns every finding an event completes."""

    def __init__(self, configs: dict[str, RuleConfig] | None = None) -> None:
        self.rules = [RULES[name](config) for name, config in (configs or DEFAULTS).items()]

    def observe(self, e: Event) -> list[Finding]:
        findings: list[Finding] = []
        for rule in self.rules:
            findings += rule.observe(e)
        return findings
