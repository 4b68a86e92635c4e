"""Anomaly rules over the request event stream: pure, bounded sliding windows, findings out.

A rule sees every `Event` (the same facts the audit trail records) and may
return a `Finding`: which rule, about whom, the actions configured for it,
and the request ids that are its evidence. Rules never act; the engine's
caller does, and records what it did.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keyproxy.anomaly.bounds import AlertBudget, source_subject

# a replayed request is refused, never counted here: it is the bot's own request sent twice (two identical reads
# signed in one millisecond) or a copy whoever sniffed it sends again, and suspending the bot for it would let
# that one stop a healthy bot; a wrong signature or an unknown key id needs no copy of anything
AUTH_FAILURES = frozenset({"unknown_bot", "bad_signature", "stale_request"})
POLICY_DENIALS = frozenset({"symbol_denied", "notional_exceeded", "notional_unknown", "open_orders_exceeded",
                            "daily_notional_exceeded", "leverage_exceeded", "reduce_only", "address_denied",
                            "withdrawal_limit", "outside_hours", "rate_limited", "halted", "scope_denied",
                            "price_out_of_band", "reference_unavailable", "duplicate_order",
                            "position_exceeded", "loss_limit", "self_cross"})
ACTIONS = ("alert", "throttle", "halt", "suspend_bot", "quarantine_key", "revoke_key", "cancel_orders")
MAX_KEYS = 10_000  # per rule: subjects tracked at once (oldest forgotten first)
MAX_EVIDENCE = 20
# what each action needs to change anything (anomaly/respond.py acts only then): a finding whose configured
# actions find neither changes nothing, and is an alert
BOT_ACTIONS = frozenset({"suspend_bot", "throttle", "halt", "cancel_orders"})
ACCOUNT_ACTIONS = frozenset({"quarantine_key", "revoke_key", "halt", "cancel_orders"})


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
    key_rejected: bool = False  # the exchange answered that the real key is invalid, revoked or IP-restricted
    phase: str = "done"  # "forward": about to go upstream (allowed); "done": answered
    action: str | None = None  # order | cancel | leverage | withdraw | other (from the request's facts)
    notional: Decimal | None = None  # an order's value in quote currency, when known
    withdraw_to: str | None = None  # "ASSET:NETWORK:ADDRESS" of a withdrawal
    key_denied: bool = False  # the exchange answered that the real key lacks a permission this bot's request needs


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    subject: str  # "bot:NAME", "account:NAME", "ip:loopback" / "ip:NETWORK" (bounds.source_subject), or a
    # summary's "ip:*" / "*" (bounds.Suppressed)
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
    learn_seconds: float = 300.0  # rate_spike: no alarm during a bot's first minutes


DEFAULTS: dict[str, RuleConfig] = {
    "auth_failures": RuleConfig(10, 60, ("suspend_bot",)),
    "foreign_ip": RuleConfig(1, 3600, ("suspend_bot",)),
    "forbidden_scope": RuleConfig(1, 3600, ("suspend_bot",)),
    "deny_burst": RuleConfig(20, 60, ("alert",)),
    "exchange_rejects_key": RuleConfig(1, 3600, ("quarantine_key",)),
    # threshold: how many times the bot's own baseline; window: the bucket the rate is counted in
    "rate_spike": RuleConfig(10, 10, ("throttle",)),
    "new_withdrawal_address": RuleConfig(1, 86400, ("alert",)),
    "off_hours": RuleConfig(3, 3600, ("alert",)),
    # threshold: how many times the median of the bot's recent orders
    "notional_spike": RuleConfig(10, 86400, ("alert",)),
    # a bot repeating one order past its duplicate_orders cap (policy refuses each repeat; this acts on the bot)
    "runaway_orders": RuleConfig(1, 3600, ("alert",)),
    # a bot with more fills in 60 s than its max_fills_per_minute (the risk watch counts the fills the exchange
    # confirmed; threshold and window are the bot's, so only `actions` and `enabled` are configured)
    "fill_burst": RuleConfig(1, 60, ("halt",)),
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
        self._quiet_until: dict[str, float] = {}  # subject -> end of its alert's quiet window
        self._alerts = AlertBudget()  # alerts about all subjects together, a minute at a time

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        """(subject, bot, account) this event counts against; empty when it does not count."""
        raise NotImplementedError  # pragma: no cover - every windowed rule defines it

    def describe(self, count: int) -> str:
        return f"{count} events in {self.config.window_seconds:g} s"

    def observe(self, e: Event) -> list[Finding]:
        findings = self._summary(e.ts)
        for subject, bot, account in self.matches(e):
            q = self._windows.add(subject, e.ts, e.request_id, self.config.threshold)
            if len(q) >= self.config.threshold and e.ts >= self._quiet_until.get(subject, 0.0):
                evidence = tuple(rid for _, rid in list(q)[-MAX_EVIDENCE:])
                self._windows.clear(subject)  # fire once per threshold crossing
                if self._alert_only(subject):
                    self._quiet(subject, e.ts + self.config.window_seconds)
                if self._changes_nothing(bot, account) and not self._alerts.admit(e.ts, subject, evidence):
                    continue  # counted for the summary: a flood of subjects makes no flood of incidents
                findings.append(Finding(self.name, subject, self.config.actions, self.describe(len(q)), evidence,
                                        bot, account))
        return findings

    def held(self, ts: float) -> list[Finding]:
        """The summary of the findings held back in a budget window that has ended, if any: asked on a timer too,
        so a held finding is said within a minute or so whether or not another event of the rule comes."""
        return self._summary(ts) if hasattr(self, "_alerts") else []

    def _summary(self, ts: float) -> list[Finding]:
        """The alerts the budget held back in its window that ended, as one finding (an alert)."""
        held = self._alerts.flush(ts)
        if held is None:
            return []
        return [Finding(self.name, held.subject, ("alert",), held.reason(self._alerts.limit), held.evidence)]

    def _changes_nothing(self, bot: str | None, account: str | None) -> bool:
        """No configured action applies to this finding (an alert; an address alone with bot actions): only
        such findings are capped overall, so a suspension, a quarantine, a throttle or a halt is never held."""
        actions = set(self.config.actions)
        return not ((bot and actions & BOT_ACTIONS) or (account and actions & ACCOUNT_ACTIONS))

    def _alert_only(self, subject: str) -> bool:
        """A finding that changes nothing (an alert; anything about a source address) is repeated at most
        once a window: a bot stuck on a limit must not flood incidents. Findings that suspend, throttle or
        quarantine fire at every crossing, so a restored bot or key that misbehaves again is acted on."""
        return subject.startswith("ip:") or set(self.config.actions) <= {"alert"}

    def _quiet(self, subject: str, until: float) -> None:
        self._quiet_until.pop(subject, None)
        self._quiet_until[subject] = until  # re-inserted: oldest first, bounded like the windows
        while len(self._quiet_until) > MAX_KEYS:
            self._quiet_until.pop(next(iter(self._quiet_until)))


class AuthFailures(Rule):
    """Failed authentications for one bot key or from one source network (brute force, leaked key id)."""

    name = "auth_failures"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        if e.code not in AUTH_FAILURES:
            return []
        out: list[tuple[str, str | None, str | None]] = []
        if e.bot:
            out.append((f"bot:{e.bot}", e.bot, e.account))
        if e.source_ip:  # per network, loopback as one: a sender choosing its address is still one subject
            out.append((source_subject(e.source_ip), None, e.account if e.account_known else None))
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
        # a permission the real key lacks is this bot's miss (it asked for something the key may not do)
        return [(f"bot:{e.bot}", e.bot, e.account)] if (e.code in POLICY_DENIALS or e.key_denied) and e.bot else []

    def describe(self, count: int) -> str:
        return f"{count} policy denials in {self.config.window_seconds:g} s"


class ExchangeRejectsKey(Rule):
    """The exchange says the real key is invalid, expired, revoked or IP-restricted (not: lacks one permission)."""

    name = "exchange_rejects_key"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"account:{e.account}", e.bot, e.account)] if e.key_rejected and e.account_known else []

    def describe(self, count: int) -> str:
        return "the exchange rejected the account's real key"


class OffHours(Rule):
    """Trading attempts outside the bot's active hours: a bot (or whoever holds its key) awake at the wrong time."""

    name = "off_hours"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"bot:{e.bot}", e.bot, e.account)] if e.code == "outside_hours" and e.bot else []

    def describe(self, count: int) -> str:
        return f"{count} trading attempts outside the bot's active hours in {self.config.window_seconds:g} s"


class RunawayOrders(Rule):
    """A bot sending the same order again past its `duplicate_orders` cap: a loop, not a strategy (the FIA's
    repeated-execution throttle). Each repeat is refused by policy; this rule acts on the bot."""

    name = "runaway_orders"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return [(f"bot:{e.bot}", e.bot, e.account)] if e.code == "duplicate_order" and e.bot else []

    def describe(self, count: int) -> str:
        return f"{count} refused repeats of the same order in {self.config.window_seconds:g} s"


class FillBurst(Rule):
    """Fills, not requests: fed by the risk watch (proxy/risk_watch.py), never by request events."""

    name = "fill_burst"

    def matches(self, e: Event) -> list[tuple[str, str | None, str | None]]:
        return []


class _Baseline:
    """A bot's learned request rate: an EWMA over fixed buckets, silent while it is still learning."""

    ALPHA = 0.2
    MIN_REQUESTS = 20  # a bucket with fewer requests than this never counts as a spike

    def __init__(self, start: float) -> None:
        self.start = start
        self.bucket_start = start
        self.count = 0
        self.ewma: float | None = None


class RateSpike(Rule):
    """A bot's request rate far above its own learned baseline (a runaway loop, or a stolen credential)."""

    name = "rate_spike"

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        self._bots: dict[str, _Baseline] = {}

    def observe(self, e: Event) -> list[Finding]:
        if e.phase != "forward" or not e.bot:
            return []
        bucket = self.config.window_seconds
        b = self._bots.pop(e.bot, None) or _Baseline(e.ts)
        self._bots[e.bot] = b
        while len(self._bots) > MAX_KEYS:
            self._bots.pop(next(iter(self._bots)))
        while e.ts >= b.bucket_start + bucket:  # close finished buckets (empty ones count as zero)
            b.ewma = b.count if b.ewma is None else _Baseline.ALPHA * b.count + (1 - _Baseline.ALPHA) * b.ewma
            b.count, b.bucket_start = 0, b.bucket_start + bucket
            if e.ts - b.bucket_start > 100 * bucket:  # long idle: skip ahead, decaying the baseline once
                b.ewma *= (1 - _Baseline.ALPHA) ** 10
                b.bucket_start = e.ts - (e.ts - b.bucket_start) % bucket
        b.count += 1
        learning = e.ts - b.start < self.config.learn_seconds or b.ewma is None
        limit = self.config.threshold * max(b.ewma or 0.0, 1.0)
        if not learning and b.count >= _Baseline.MIN_REQUESTS and b.count > limit:
            b.count = 0  # fire once per bucket
            return [Finding(self.name, f"bot:{e.bot}", self.config.actions,
                            f"{int(limit / self.config.threshold * 10) / 10} requests per {bucket:g} s is the bot's "
                            f"baseline; this bucket passed {self.config.threshold}x that", (e.request_id,), e.bot,
                            e.account)]
        return []


class NewWithdrawalAddress(Rule):
    """A withdrawal to an address the bot has not used before (in this daemon's memory)."""

    name = "new_withdrawal_address"

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        self._seen: dict[str, None] = {}

    def observe(self, e: Event) -> list[Finding]:
        if e.phase != "forward" or e.action != "withdraw" or not e.bot or not e.withdraw_to:
            return []
        key = f"{e.bot}|{e.withdraw_to}"
        if key in self._seen:
            return []
        self._seen[key] = None
        while len(self._seen) > MAX_KEYS:
            self._seen.pop(next(iter(self._seen)))
        return [Finding(self.name, f"bot:{e.bot}", self.config.actions,
                        f"first withdrawal to {e.withdraw_to}", (e.request_id,), e.bot, e.account)]


class NotionalSpike(Rule):
    """An order far larger than the bot's recent ones (a fat finger, or a bot gone wrong)."""

    name = "notional_spike"
    HISTORY = 50
    MIN_HISTORY = 5

    def __init__(self, config: RuleConfig) -> None:
        super().__init__(config)
        self._recent: dict[str, deque[Decimal]] = {}

    def observe(self, e: Event) -> list[Finding]:
        if e.phase != "forward" or e.action != "order" or not e.bot or e.notional is None:
            return []
        recent = self._recent.pop(e.bot, None) or deque(maxlen=self.HISTORY)
        self._recent[e.bot] = recent
        while len(self._recent) > MAX_KEYS:
            self._recent.pop(next(iter(self._recent)))
        finding = []
        if len(recent) >= self.MIN_HISTORY:
            median = sorted(recent)[len(recent) // 2]
            if median > 0 and e.notional > median * self.config.threshold:
                finding = [Finding(self.name, f"bot:{e.bot}", self.config.actions,
                                   f"order notional {e.notional.normalize():f} is over {self.config.threshold}x the "
                                   f"median {median.normalize():f} of the bot's recent orders", (e.request_id,),
                                   e.bot, e.account)]
        recent.append(e.notional)
        return finding


RULES: dict[str, type[Rule]] = {r.name: r for r in (AuthFailures, ForeignIp, ForbiddenScope, DenyBurst,
                                                     ExchangeRejectsKey, RateSpike, NewWithdrawalAddress,
                                                     OffHours, NotionalSpike, RunawayOrders, FillBurst)}


WINDOW_RANGE = (1, 30 * 86_400)  # seconds a rule's window (and rate_spike's learning) may span


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
        allowed = ({"actions", "enabled"} if name == "fill_burst" else
                   {"threshold", "window_seconds", "actions", "enabled"}
                   | ({"learn_seconds"} if name == "rate_spike" else set()))
        unknown = set(table) - allowed
        if unknown:
            raise RuleError(f"{name}.{sorted(unknown)[0]}: unknown key ({', '.join(sorted(allowed))})")
        base = configs[name]
        threshold = table.get("threshold", base.threshold)
        window = table.get("window_seconds", base.window_seconds)
        actions = table.get("actions", list(base.actions))
        if type(threshold) is not int or threshold < 1:
            raise RuleError(f"{name}.threshold: must be a whole number of at least 1, not {threshold!r}")
        # at least a second: a bucket below a float step of the clock never ends (session 35's review: 1e-7 s
        # spun the daemon's event loop for good); a NaN or an infinity is no window
        if type(window) not in (int, float) or not WINDOW_RANGE[0] <= window <= WINDOW_RANGE[1]:
            raise RuleError(f"{name}.window_seconds: must be {WINDOW_RANGE[0]} to {WINDOW_RANGE[1]} seconds, "
                            f"not {window!r}")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise RuleError(f"{name}.actions: must be a list of action names")
        for action in actions:
            if action not in ACTIONS:
                raise RuleError(f"{name}.actions: unknown action {action!r} (known: {', '.join(ACTIONS)})")
        enabled = table.get("enabled", True)
        if type(enabled) is not bool:  # "no" left the rule on
            raise RuleError(f"{name}.enabled: must be true or false, not {enabled!r}")
        if not enabled:
            configs.pop(name)
            continue
        learn = table.get("learn_seconds", base.learn_seconds)
        if type(learn) not in (int, float) or not 0 <= learn <= WINDOW_RANGE[1]:
            raise RuleError(f"{name}.learn_seconds: must be 0 to {WINDOW_RANGE[1]} seconds, not {learn!r}")
        configs[name] = RuleConfig(threshold, float(window), tuple(actions) or ("alert",), float(learn))
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
