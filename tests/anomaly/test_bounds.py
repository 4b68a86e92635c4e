"""Findings stay bounded when subjects cost nothing: source addresses per network, alerts capped per rule
(the review's PoC: 20,000 loopback addresses, ten failed authentications each, made 20,000 incidents)."""

from __future__ import annotations

import re

import pytest

from keyproxy.anomaly.bounds import ALERTS_PER_WINDOW, source_subject
from keyproxy.anomaly.rules import DEFAULTS, Engine, Event, Finding, RuleConfig


def failed(ts: float, ip: str, bot: str | None = None, rid: str = "r") -> Event:
    return Event(ts, rid, bot, "acct", True, ip, "read", "deny", "unknown_bot" if bot is None else "bad_signature")


def run(engine: Engine, events: list[Event]) -> list[Finding]:
    return [f for e in events for f in engine.observe(e)]


@pytest.mark.parametrize("address, subject", [
    ("127.0.0.1", "ip:loopback"),
    ("127.45.3.200", "ip:loopback"),  # any of 127.0.0.0/8: every local process may bind it
    ("::1", "ip:loopback"),
    ("::ffff:127.9.9.9", "ip:loopback"),  # IPv4-mapped, as a dual-stack listener reports it
    ("203.0.113.9", "ip:203.0.113.0/24"),
    ("203.0.113.250", "ip:203.0.113.0/24"),
    ("::ffff:203.0.113.7", "ip:203.0.113.0/24"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:1", "ip:2001:db8:1:2::/64"),
    ("fe80::1%eth0", "ip:fe80::/64"),
    ("not an address", "ip:unknown"),
])
def test_source_addresses_are_subjects_per_network(address: str, subject: str) -> None:
    assert source_subject(address) == subject
    engine = Engine({"auth_failures": RuleConfig(2, 60, ("alert",))})
    assert [f.subject for f in run(engine, [failed(0, address), failed(1, address)])] == [subject]


def test_a_loopback_flood_from_thousands_of_addresses_is_one_subject() -> None:
    """The PoC in small: 2,000 loopback addresses, ten failures each, in one minute: one incident, not 2,000."""
    engine = Engine({"auth_failures": DEFAULTS["auth_failures"]})
    events = [failed(i * 0.003, f"127.{1 + i // 62500}.{i // 250 % 250}.{1 + i % 250}", rid=f"r{i}")
              for i in range(2_000) for _ in range(10)]
    events.sort(key=lambda e: e.ts)
    found = run(engine, events)
    assert [(f.subject, f.actions, f.bot) for f in found] == [("ip:loopback", ("suspend_bot",), None)]
    ipv6 = Engine({"auth_failures": DEFAULTS["auth_failures"]})  # a /64's 2^64 addresses are one subject too
    found = run(ipv6, [failed(i * 0.01, f"2001:db8:0:7::{i:x}") for i in range(1, 1_000)])
    assert [f.subject for f in found] == ["ip:2001:db8:0:7::/64"]


def test_alerts_about_many_networks_are_capped_per_rule_and_summarised() -> None:
    """3,000 /24s (or /64s) failing within two minutes: at most ALERTS_PER_WINDOW incidents a minute, and once a
    minute is over one summary whose reason counts every finding it held back; none is lost, none floods."""
    engine = Engine({"auth_failures": DEFAULTS["auth_failures"]})
    networks = 3_000
    events = [failed(n * 0.04 + k * 0.001, f"10.{n // 250}.{n % 250}.{1 + k}", rid=f"n{n}k{k}")
              for n in range(networks) for k in range(10)]  # 120 s, each network's 10 failures within 10 ms
    found = [(e.ts, f) for e in events + [Event(400, "later", None, None, False, "192.0.2.1", None, "allow", None)]
             for f in engine.observe(e)]
    for minute in (0, 1):  # 1,500 crossings a minute
        assert len([f for ts, f in found if minute * 60 <= ts < (minute + 1) * 60]) <= ALERTS_PER_WINDOW
    one_by_one = [f for _, f in found if not f.subject.endswith("*")]
    summaries = [f for _, f in found if f.subject.endswith("*")]
    assert len(summaries) == 2  # one at the first event after each minute that held findings back
    held = sum(int(re.match(r"(\d+) more finding", f.reason).group(1)) for f in summaries)  # type: ignore[union-attr]
    assert held + len(one_by_one) == networks  # every crossing is an incident or counted in a summary
    assert all(f.subject == "ip:*" and f.actions == ("alert",) and len(f.evidence) == 20 for f in summaries)
    assert "ip:10." in summaries[0].reason and "subject(s)" in summaries[0].reason  # names some held back


def test_findings_that_act_are_never_capped() -> None:
    """A suspension, a quarantine or a halt is never held back by the alert budget, however many subjects."""
    suspend = Engine({"auth_failures": RuleConfig(3, 60, ("suspend_bot",))})
    found = run(suspend, [failed(b * 0.01 + k * 0.001, "127.0.0.1", bot=f"bot{b}")
                          for b in range(50) for k in range(3)])
    assert sorted(f.subject for f in found if f.subject.startswith("bot:")) == sorted(f"bot:bot{b}" for b in range(50))
    rejects = Engine({"exchange_rejects_key": DEFAULTS["exchange_rejects_key"]})
    events = [Event(i * 0.01, f"r{i}", None, f"acct{i}", True, "127.0.0.1", "read", "allow", None, True)
              for i in range(40)]
    assert [f.subject for f in run(rejects, events)] == [f"account:acct{i}" for i in range(40)]
    halt = Engine({"auth_failures": RuleConfig(1, 60, ("halt",))})  # an address's finding halts its account
    events = [Event(i * 0.01, f"r{i}", None, f"acct{i}", True, f"10.0.{i}.1", "read", "deny", "unknown_bot")
              for i in range(40)]
    assert len(run(halt, events)) == 40


def test_alerts_about_bots_still_come_one_by_one_below_the_budget() -> None:
    """The budget is a flood's bound, not a bot's: a few bots each stuck on a limit each get their alert."""
    engine = Engine({"deny_burst": DEFAULTS["deny_burst"]})
    events = [Event(b + i * 0.01, f"r{b}-{i}", f"bot{b}", "acct", True, "127.0.0.1", "trade", "deny",
                    "notional_exceeded") for b in range(ALERTS_PER_WINDOW) for i in range(20)]
    assert [f.subject for f in run(engine, events)] == [f"bot:bot{b}" for b in range(ALERTS_PER_WINDOW)]


def test_a_held_back_finding_is_said_once_its_window_ends_without_another_event() -> None:
    """Session 26's diff review: a finding over the budget was said only at the rule's next event, however late
    (six hours in the review's run). The daemon asks each rule on a timer (`Responder.tick` -> `Rule.held`)."""
    engine = Engine({"auth_failures": DEFAULTS["auth_failures"]})
    events = [failed(n * 0.1 + k * 0.001, f"10.0.{n}.1", rid=f"n{n}k{k}") for n in range(ALERTS_PER_WINDOW + 3)
              for k in range(10)]
    assert len(run(engine, events)) == ALERTS_PER_WINDOW
    [rule] = engine.rules
    assert rule.held(30.0) == []  # its window still lasts
    [summary] = rule.held(61.0)
    assert summary.subject == "ip:*" and summary.reason.startswith("3 more finding")
    assert rule.held(200.0) == []  # said once
