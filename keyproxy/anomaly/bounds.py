"""What keeps anomaly findings bounded when their subjects cost an attacker nothing (pure, stdlib only).

A source address is no identity: any local process can bind every address in 127.0.0.0/8, and whoever holds
an IPv6 prefix has 2^64 addresses in each /64. Counted per address, each one would be a new subject with its
own window and its own alert, so an unauthenticated sender could make one incident per address. Addresses
are therefore counted per network (`source_subject`), and the alerts a rule makes about all its subjects
together are capped (`AlertBudget`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

ALERTS_PER_WINDOW = 10  # per rule: alert-only findings recorded one by one a budget window, across subjects
BUDGET_SECONDS = 60.0  # the budget's window, whatever the rule's: a bound per minute, a summary at most this late
MAX_SUBJECTS = 10_000  # distinct suppressed subjects counted exactly (beyond: "at least")
SAMPLE_SUBJECTS = 5  # suppressed subjects named in the summary
MAX_EVIDENCE = 20


def source_subject(address: str) -> str:
    """`ip:loopback` for every loopback address (127.0.0.0/8, ::1, their IPv4-mapped forms), else the
    address's /24 (IPv4) or /64 (IPv6): one sender spreading over its network stays one subject."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "ip:unknown"  # not an address (the edges pass the socket's peer): one subject for all such
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "ip:loopback"
    if isinstance(ip, ipaddress.IPv4Address):
        return f"ip:{ipaddress.IPv4Network((int(ip), 24), strict=False)}"
    return f"ip:{ipaddress.IPv6Network((int(ip), 64), strict=False)}"  # int(): a %scope id is no network


@dataclass(frozen=True, slots=True)
class Suppressed:
    """What a rule did not record one by one in its last budget window: the summary incident's content."""

    findings: int
    subjects: int
    more_subjects: bool  # past MAX_SUBJECTS: `subjects` is a lower bound
    samples: tuple[str, ...]
    evidence: tuple[str, ...]
    seconds: float

    @property
    def subject(self) -> str:
        """One subject when there was one; else its kind (`ip:*`), or `*` for mixed kinds."""
        if self.subjects == 1 and not self.more_subjects:
            return self.samples[0]
        kinds = {s.partition(":")[0] for s in self.samples}
        return f"{kinds.pop()}:*" if len(kinds) == 1 else "*"

    def reason(self, limit: int) -> str:
        subjects = f"{'at least ' if self.more_subjects else ''}{self.subjects} subject(s)"
        return (f"{self.findings} more finding(s) about {subjects} in {self.seconds:g} s were not recorded one by "
                f"one (at most {limit} alerts of a rule a window); among them: {', '.join(self.samples)}")


@dataclass
class AlertBudget:
    """At most `limit` alert-only findings of one rule a window, across all its subjects; the rest counted
    and reported together by `flush` once the window is over. Findings that act are never given to it."""

    seconds: float = BUDGET_SECONDS
    limit: int = ALERTS_PER_WINDOW
    until: float = 0.0  # end of the current window
    left: int = 0
    started: float = 0.0
    findings: int = 0
    subjects: dict[str, None] = field(default_factory=dict)
    more_subjects: bool = False
    evidence: list[str] = field(default_factory=list)

    def admit(self, ts: float, subject: str, evidence: tuple[str, ...]) -> bool:
        """True: record this finding; False: it was counted for the window's summary instead."""
        self._roll(ts)
        if self.left > 0:
            self.left -= 1
            return True
        self.findings += 1
        if subject in self.subjects or len(self.subjects) < MAX_SUBJECTS:
            self.subjects[subject] = None
        else:
            self.more_subjects = True
        self.evidence = (self.evidence + list(evidence))[-MAX_EVIDENCE:]
        return False

    def flush(self, ts: float) -> Suppressed | None:
        """Once the window that suppressed findings is over: what it suppressed (the summary takes one
        place in the next window's budget). None while the window lasts or when nothing was suppressed."""
        if not self.findings or ts < self.until:
            return None
        out = Suppressed(self.findings, len(self.subjects), self.more_subjects,
                         tuple(s[:80] for s in list(self.subjects)[:SAMPLE_SUBJECTS]), tuple(self.evidence),
                         self.until - self.started)
        self.findings, self.subjects, self.more_subjects, self.evidence = 0, {}, False, []
        self._roll(ts)
        self.left -= 1
        return out

    def _roll(self, ts: float) -> None:
        if ts >= self.until:
            self.started, self.until, self.left = ts, ts + self.seconds, self.limit
