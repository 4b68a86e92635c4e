"""Anomaly rules as specifications: thresholds, windows, subjects, bounded state, config errors."""

from __future__ import annotations

import pytest

from keyproxy.anomaly.rules import DEFAULTS, MAX_KEYS, Engine, Event, RuleConfig, RuleError, parse_rules


def ev(ts: float, code: str | None, bot: str | None = "b", ip: str = "127.0.0.1", cls: str = "read",
       key_rejected: bool = False, rid: str = "r") -> Event:
    return Event(ts, rid, bot, "acct", True, ip, cls, "deny" if code else "allow", code, key_rejected)


def fire(engine: Engine, events: list[Event]) -> list[tuple[int, str, str, tuple[str, ...]]]:
    out = []
    for i, e in enumerate(events):
        out += [(i, f.rule, f.subject, f.actions) for f in engine.observe(e)]
    return out


def test_auth_failures_fire_at_the_threshold_per_bot_and_per_ip() -> None:
    engine = Engine({"auth_failures": RuleConfig(3, 60, ("suspend_bot",))})
    got = fire(engine, [ev(i, "bad_signature", rid=f"r{i}") for i in range(3)])
    assert got == [(2, "auth_failures", "bot:b", ("suspend_bot",)),
                   (2, "auth_failures", "ip:loopback", ("suspend_bot",))]


def test_replays_are_refused_but_never_suspend_the_bot_whose_request_was_copied() -> None:
    """Ten copies of one signed request: each is refused (`replayed_request`), none counts toward suspending
    the bot: whoever holds a copy of its traffic could otherwise stop a healthy bot."""
    engine = Engine({"auth_failures": RuleConfig(3, 60, ("suspend_bot",))})
    assert fire(engine, [ev(i, "replayed_request", rid=f"r{i}") for i in range(10)]) == []


def test_window_forgets_old_failures() -> None:
    engine = Engine({"auth_failures": RuleConfig(3, 10, ("alert",))})
    assert fire(engine, [ev(0, "bad_signature", bot=None), ev(5, "bad_signature", bot=None),
                         ev(20, "bad_signature", bot=None)]) == []


def test_unknown_bot_failures_count_by_source_address() -> None:
    engine = Engine({"auth_failures": RuleConfig(2, 60, ("alert",))})
    got = fire(engine, [ev(0, "unknown_bot", bot=None, ip="203.0.113.9"),
                        ev(1, "unknown_bot", bot=None, ip="203.0.113.9")])
    assert got == [(1, "auth_failures", "ip:203.0.113.0/24", ("alert",))]


@pytest.mark.parametrize("rule, events, fires_at", [
    ("foreign_ip", [ev(0, "ip_denied")], 0),
    ("forbidden_scope", [ev(0, "scope_denied", cls="trade"), ev(1, "scope_denied", cls="withdraw")], 1),
    ("deny_burst", [ev(i, "notional_exceeded") for i in range(20)], 19),
    ("exchange_rejects_key", [ev(0, None), ev(1, None, key_rejected=True)], 1),
])
def test_each_rule_with_its_defaults(rule: str, events: list[Event], fires_at: int) -> None:
    got = fire(Engine({rule: DEFAULTS[rule]}), events)
    assert [g[0] for g in got] == [fires_at] and got[0][1] == rule


def test_allowed_traffic_never_fires() -> None:
    engine = Engine()
    assert fire(engine, [ev(i * 0.01, None, rid=f"r{i}") for i in range(10_000)]) == []


def test_state_stays_bounded() -> None:
    engine = Engine({"auth_failures": RuleConfig(5, 3600, ("alert",))})
    for i in range(MAX_KEYS + 500):
        engine.observe(ev(i, "bad_signature", bot=None, ip=f"10.{i // 256}.{i % 256}.1"))  # a /24 each
    assert len(engine.rules[0]._windows.hits) <= MAX_KEYS


@pytest.mark.parametrize("doc, message", [
    ({"brute": {}}, "brute: unknown rule"),
    ({"auth_failures": {"window_seconds": 0}}, "auth_failures.window_seconds: must be 1 to 2592000 seconds"),
    ({"auth_failures": {"window_seconds": -5}}, "auth_failures.window_seconds: must be 1 to 2592000 seconds"),
    # session 35's review: a bucket below a float step of the clock never closed, and the daemon spun for good
    ({"rate_spike": {"window_seconds": 1e-7}}, "rate_spike.window_seconds: must be 1 to"),
    ({"rate_spike": {"window_seconds": float("nan")}}, "rate_spike.window_seconds: must be 1 to"),
    ({"rate_spike": {"window_seconds": float("inf")}}, "rate_spike.window_seconds: must be 1 to"),
    ({"rate_spike": {"learn_seconds": float("nan")}}, "rate_spike.learn_seconds: must be 0 to"),
    ({"rate_spike": {"enabled": "no"}}, "rate_spike.enabled: must be true or false"),
    ({"auth_failures": {"threshold": 0}}, "auth_failures.threshold: must be a whole number"),
    ({"auth_failures": {"actions": ["nuke"]}}, "auth_failures.actions: unknown action 'nuke'"),
    ({"auth_failures": {"windw": 5}}, "auth_failures.windw: unknown key"),
])
def test_bad_config(doc: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(RuleError, match=message):
        parse_rules(doc)


def test_config_overrides_and_disables() -> None:
    configs = parse_rules({"deny_burst": {"threshold": 5, "actions": ["suspend_bot"]},
                           "foreign_ip": {"enabled": False}})
    assert configs["deny_burst"] == RuleConfig(5, 60.0, ("suspend_bot",)) and "foreign_ip" not in configs


from decimal import Decimal  # noqa: E402


def fwd(ts: float, bot: str = "b", action: str = "other", notional: Decimal | None = None,
        withdraw_to: str | None = None, rid: str = "r") -> Event:
    return Event(ts, rid, bot, "acct", True, "127.0.0.1", "trade", "allow", None, False, "forward", action,
                 notional, withdraw_to)


def test_steady_bot_for_ten_simulated_minutes_triggers_nothing() -> None:
    """A ccxt-like bot: a burst of load_markets calls, then a steady 2-5 requests/s for 10 minutes."""
    engine = Engine()
    events = [fwd(i * 0.01, rid=f"boot{i}") for i in range(8)]  # load_markets at start
    t, i = 1.0, 0
    while t < 600:
        events.append(fwd(t, action="order" if i % 5 == 0 else "other", notional=Decimal("100") + i % 7, rid=f"s{i}"))
        t += 0.2 + (i % 3) * 0.1
        i += 1
    assert fire(engine, events) == []


def test_rate_spike_fires_on_a_tenfold_burst_after_the_baseline() -> None:
    engine = Engine({"rate_spike": DEFAULTS["rate_spike"]})
    steady = [fwd(t * 0.5) for t in range(0, 1200)]  # 2 requests/s for 600 s: baseline 20 per 10 s bucket
    assert fire(engine, steady) == []
    burst = [fwd(600 + k * 0.04, rid=f"x{k}") for k in range(250)]  # 25/s: 250 in one bucket, 12x baseline
    got = fire(engine, burst)
    assert got and got[0][1] == "rate_spike" and got[0][3] == ("throttle",)


def test_rate_spike_is_silent_while_learning() -> None:
    engine = Engine({"rate_spike": DEFAULTS["rate_spike"]})
    assert fire(engine, [fwd(k * 0.01) for k in range(2000)]) == []  # 100/s from the first second: still learning


def test_notional_spike() -> None:
    engine = Engine({"notional_spike": DEFAULTS["notional_spike"]})
    orders = [fwd(i, action="order", notional=Decimal(100)) for i in range(6)]
    orders.append(fwd(10, action="order", notional=Decimal(5000), rid="big"))
    got = fire(engine, orders)
    assert [(g[0], g[1]) for g in got] == [(6, "notional_spike")]


def test_new_withdrawal_address_alerts_once_per_address() -> None:
    engine = Engine({"new_withdrawal_address": DEFAULTS["new_withdrawal_address"]})
    ws = [fwd(0, action="withdraw", withdraw_to="USDT:BSC:0xa"), fwd(1, action="withdraw", withdraw_to="USDT:BSC:0xa"),
          fwd(2, action="withdraw", withdraw_to="USDT:BSC:0xb")]
    assert [g[0] for g in fire(engine, ws)] == [0, 2]


def test_off_hours_counts_refusals_outside_active_hours() -> None:
    engine = Engine({"off_hours": DEFAULTS["off_hours"]})
    assert [g[0] for g in fire(engine, [ev(i, "outside_hours") for i in range(3)])] == [2]


def test_throttle_limits_the_bot() -> None:
    from keyproxy.policy.decide import Counters, decide
    from keyproxy.policy.model import RequestFacts, parse_policy

    counters, allowed = Counters(), []
    for k in range(3):
        d = decide(RequestFacts(action="other"), "read", parse_policy({"scopes": "read"}), counters, 100.0,
                   bot="b", account="a", throttle=1.0)
        allowed.append(d.allow)
        if d.allow:
            counters.apply(d.charges, 100.0)
    assert allowed == [True, False, False]


def test_a_failing_rule_fails_the_request_closed() -> None:
    """The anomaly engine can never wave a request through: an exception in a rule refuses it."""
    from keyproxy.anomaly.respond import Responder
    from keyproxy.metrics import Metrics
    from keyproxy.proxy.pipeline import Outcome
    from keyproxy.proxy.recorder import Recorder
    from keyproxy.proxy.refusal import Refused

    class Broken:
        name = "broken"

        def observe(self, e: Event) -> list:  # type: ignore[type-arg]
            raise ZeroDivisionError("bug in a rule")

    engine = Engine({})
    engine.rules = [Broken()]  # type: ignore[list-item]
    metrics = Metrics()
    recorder = Recorder(None, metrics, responder=Responder(engine, None, None, lambda *a, **k: None, metrics,
                                                           lambda: None))
    with pytest.raises(Refused) as e:
        recorder.before_forward(Outcome(request_id="r1", bot="b", account="a"))
    assert e.value.code == "internal_error"
    assert 'keyproxy_anomalies_total{action="error",rule="broken"} 1.0' in metrics.render().decode()


def test_an_alert_repeats_at_most_once_a_window_per_subject() -> None:
    """A bot stuck on a limit at 100 refusals a second makes one deny_burst alert a minute, not five a
    second (each alert is an incident, an audit line and a log line)."""
    engine = Engine({"deny_burst": DEFAULTS["deny_burst"]})
    got = fire(engine, [ev(i / 100, "notional_exceeded", rid=f"r{i}") for i in range(100 * 150)])  # 150 s
    assert [(i / 100, subject) for i, _, subject, _ in got] == [(0.19, "bot:b"), (60.19, "bot:b"), (120.19, "bot:b")]
    other = fire(engine, [ev(150 + i / 100, "notional_exceeded", bot="other") for i in range(20)])
    assert len(other) == 1  # per subject: another bot is not silenced


def test_actions_that_change_state_fire_at_every_crossing() -> None:
    """A quarantine or a suspension is never silenced: after an operator restores the key, the next
    rejection by the exchange quarantines it again at once."""
    engine = Engine({"exchange_rejects_key": DEFAULTS["exchange_rejects_key"]})
    got = fire(engine, [ev(0, None, key_rejected=True), ev(10, None, key_rejected=True)])
    assert [g[0] for g in got] == [0, 1]
    ips = Engine({"auth_failures": RuleConfig(2, 60, ("suspend_bot",))})
    got = fire(ips, [ev(i, "unknown_bot", bot=None, ip="127.0.0.9") for i in range(10)])
    assert [g[0] for g in got] == [1]  # an address alone only alerts: once a window
