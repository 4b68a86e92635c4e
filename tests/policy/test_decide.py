"""The policy decision, as a specification: a table per rule, and properties over the whole space."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproxy.policy.decide import Counters, Decision, decide
from keyproxy.policy.model import BotPolicy, PolicyError, RequestFacts, parse_policy

D = Decimal
NOON = 1_795_608_000.0  # 2026-11-25 12:00 UTC


def policy(**kw) -> BotPolicy:  # type: ignore[no-untyped-def]
    return parse_policy({"scopes": "read,trade,withdraw", **kw})


def order(**kw) -> RequestFacts:  # type: ignore[no-untyped-def]
    return RequestFacts(**{"action": "order", "symbol": "BTCUSDT", "side": "BUY", "quantity": D("0.01"),
                           "price": D("50000"), **kw})


def run(facts: RequestFacts, pol: BotPolicy, cls: str = "trade", **kw) -> Decision:  # type: ignore[no-untyped-def]
    return decide(facts, cls, pol, kw.pop("counters", Counters()), kw.pop("now", NOON), bot="b", account="a", **kw)


def test_an_empty_decision_denies() -> None:
    assert Decision().allow is False and Decision().code == "policy_denied"


@pytest.mark.parametrize("facts, pol, cls, kw, code", [
    (RequestFacts(action="other"), policy(scopes="read"), "trade", {}, "scope_denied"),
    (RequestFacts(action="withdraw"), policy(scopes="read,trade"), "withdraw", {}, "scope_denied"),
    (RequestFacts(action="other"), policy(), "transfer", {}, "scope_denied"),
    (RequestFacts(action="other"), policy(), "admin", {}, "scope_denied"),
    (order(), policy(), "trade", {"halted": "incident 42"}, "halted"),
    (order(symbol="ETHUSDT"), policy(symbols="BTCUSDT"), "trade", {}, "symbol_denied"),
    (order(symbol=None), policy(symbols="BTCUSDT"), "trade", {}, "symbol_denied"),
    (order(quantity=D("1")), policy(max_order_notional=1000), "trade", {}, "notional_exceeded"),
    (order(price=None, quantity=D("1")), policy(max_order_notional=1000), "trade", {}, "notional_unknown"),
    (order(price=None, quantity=D("1")), policy(max_order_notional=1000), "trade", {"last_price": D("5000")},
     "notional_exceeded"),
    (order(price=None, quantity=None, quote_quantity=D("2000")), policy(max_order_notional=1000), "trade", {},
     "notional_exceeded"),
    (RequestFacts(action=None), policy(max_order_notional=1000), "trade", {}, "notional_unknown"),
    (RequestFacts(action=None), policy(symbols="BTCUSDT"), "trade", {}, "symbol_denied"),
    (order(), policy(reduce_only=True), "trade", {}, "reduce_only"),
    (RequestFacts(action="leverage", symbol="BTCUSDT", leverage=D("20")), policy(max_leverage=10), "trade", {},
     "leverage_exceeded"),
    (RequestFacts(action="leverage", symbol="BTCUSDT"), policy(max_leverage=10), "trade", {}, "leverage_exceeded"),
    (RequestFacts(action="withdraw", asset="USDT", network="BSC", address="0xbad", amount=D("1")),
     policy(withdraw_addresses="USDT:BSC:0xgood"), "withdraw", {}, "address_denied"),
    (RequestFacts(action="withdraw", asset="USDT", network="ETH", address="0xgood", amount=D("1")),
     policy(withdraw_addresses="USDT:BSC:0xgood"), "withdraw", {}, "address_denied"),
    (RequestFacts(action="withdraw", asset="USDT", network="BSC", address="0xgood", amount=D("500")),
     policy(max_withdrawal=100), "withdraw", {}, "withdrawal_limit"),
    (order(), policy(active_hours="13:00-14:00"), "trade", {}, "outside_hours"),
])
def test_each_deny_code(facts: RequestFacts, pol: BotPolicy, cls: str, kw: dict, code: str) -> None:  # type: ignore[type-arg]
    d = run(facts, pol, cls, **kw)
    assert (d.allow, d.code) == (False, code), d


@pytest.mark.parametrize("facts, pol, cls, kw", [
    (order(), policy(), "trade", {}),
    (RequestFacts(action="other"), policy(scopes="read"), "read", {}),
    (RequestFacts(action="other"), policy(scopes="read"), "public", {}),
    (RequestFacts(action="cancel", symbol="ETHUSDT"), policy(symbols="BTCUSDT"), "trade", {"halted": "x"}),
    (RequestFacts(action="other"), policy(scopes="read"), "read", {"halted": "x"}),
    (order(reduce_only=True), policy(reduce_only=True), "trade", {"halted": "x"}),
    (order(quantity=D("0.02")), policy(max_order_notional=1000), "trade", {}),  # exactly at the cap
    (order(), policy(active_hours="11:00-13:00,20:00-02:00"), "trade", {}),
    (RequestFacts(action="cancel"), policy(active_hours="13:00-14:00"), "trade", {}),
    (RequestFacts(action="other", symbol=None), policy(symbols="BTCUSDT"), "trade", {}),
    (RequestFacts(action="withdraw", asset="USDT", network="BSC", address="0xgood", amount=D("100")),
     policy(withdraw_addresses="USDT:*:0xgood", max_withdrawal=100), "withdraw", {}),
])
def test_allowed(facts: RequestFacts, pol: BotPolicy, cls: str, kw: dict) -> None:  # type: ignore[type-arg]
    assert run(facts, pol, cls, **kw).allow


def test_active_hours_wrap_midnight() -> None:
    pol = policy(active_hours="22:00-02:00")
    assert run(order(), pol, now=NOON - 12 * 3600 + 3600).allow  # 01:00
    assert not run(order(), pol, now=NOON).allow  # 12:00


def test_request_rate_limit_with_burst_and_retry_after() -> None:
    pol, counters = policy(requests_per_second=2, burst=3), Counters()
    results = []
    for _ in range(5):
        d = run(RequestFacts(action="other"), pol, "read", counters=counters, now=NOON)
        results.append(d.code or "ok")
        if d.allow:
            counters.apply(d.charges, NOON)
    assert results == ["ok", "ok", "ok", "rate_limited", "rate_limited"]
    d = run(RequestFacts(action="other"), pol, "read", counters=counters, now=NOON)
    assert d.retry_after == pytest.approx(0.5)
    assert run(RequestFacts(action="other"), pol, "read", counters=counters, now=NOON + 0.5).allow


def test_order_and_cancel_buckets_are_separate() -> None:
    pol, counters = policy(orders_per_minute=2, cancels_per_minute=1), Counters()
    for facts, expected in ((order(), True), (order(), True), (order(), False),
                            (RequestFacts(action="cancel"), True), (RequestFacts(action="cancel"), False)):
        d = run(facts, pol, counters=counters)
        assert d.allow is expected
        if d.allow:
            counters.apply(d.charges, NOON)


def test_decide_does_not_touch_counters() -> None:
    counters = Counters()
    run(order(), policy(requests_per_second=1, orders_per_minute=1), counters=counters)
    assert all(b.tokens == b.capacity for b in counters.buckets.values())


@pytest.mark.parametrize("doc, message", [
    ({"scopes": "read,admin"}, "never granted"),
    ({"scopes": "read,fly"}, "unknown scope"),
    ({"allow_ips": "10.0.0.0/33"}, "invalid CIDR"),
    ({"max_order_notional": "-5"}, "positive number"),
    ({"max_order_notional": "lots"}, "positive number"),
    ({"orders_per_minute": "1.5"}, "whole number"),
    ({"max_leverage": True}, "positive number"),
    ({"reduce_only": "maybe"}, "true or false"),
    ({"active_hours": "25:00-26:00"}, "HH:MM-HH:MM"),
    ({"withdraw_addresses": "USDT-0xabc"}, "ASSET:NETWORK:ADDRESS"),
    ({"max_notional": "5"}, "unknown policy key"),
    # session 35's review: a float past its range is inf or 0, and a rate of 0 was no limit at all
    ({"requests_per_second": "1e-400"}, "between 1E-12 and 1E"),
    ({"requests_per_second": "1e999"}, "between 1E-12 and 1E"),
    ({"burst": "1e5000"}, "between 1E-12 and 1E"),
    ({"max_position": "9" * 80}, "between 1E-12 and 1E"),
    ({"max_position": "1" * 58 + "e-63"}, "at most 30 significant digits"),  # typed short, stored long
    ({"symbols": ","}, "empty list; clear it with none"),
    ({"withdraw_addresses": []}, "empty list"),
])
def test_bad_policy_values_name_the_key(doc: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(PolicyError, match=message):
        parse_policy(doc)


def test_every_policy_written_reads_back_and_a_stored_empty_list_is_none() -> None:
    """What `to_json` writes `from_json` reads (a value it could not read kept a revocation from the daemon), and
    an empty list an older keyproxy stored reads as cleared, as it acted then."""
    pol = policy(requests_per_second="1e-12", burst="1e15", symbols="BTCUSDT", max_position="0.001")
    assert BotPolicy.from_json(pol.to_json()) == pol
    widest = policy(max_position="1" * 27 + "e-38", max_order_notional="9" * 15 + "." + "9" * 15)
    assert BotPolicy.from_json(widest.to_json()) == widest
    assert BotPolicy.from_json({"scopes": ["read"], "symbols": []}).symbols is None


def test_policy_json_round_trip() -> None:
    pol = policy(symbols="BTC/USDT,eth-usdt", max_order_notional="1000.5", max_leverage=5, active_hours="08:00-20:00",
                 withdraw_addresses="usdt:bsc:0xabc", requests_per_second=2.5)
    assert pol.symbols == ("BTCUSDT", "ETHUSDT")
    assert BotPolicy.from_json(pol.to_json()) == pol


# --- properties -----------------------------------------------------------------

classes = st.sampled_from(["public", "read", "trade", "withdraw", "transfer", "admin"])
scope_sets = st.sets(st.sampled_from(["read", "trade", "withdraw", "transfer"]), min_size=1)
amounts = st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), allow_nan=False, places=8)
actions = st.sampled_from([None, "order", "cancel", "leverage", "withdraw", "other"])


@given(cls=classes, scopes=scope_sets, action=actions)
def test_no_request_outside_the_scopes_is_ever_allowed(cls: str, scopes: set[str], action: str | None) -> None:
    d = run(RequestFacts(action=action), policy(scopes=",".join(sorted(scopes))), cls)
    if cls not in scopes and cls != "public":
        assert not d.allow and d.code == "scope_denied"


@given(qty=amounts, price=amounts, cap=amounts, quote=st.none() | amounts)
@settings(max_examples=300)
def test_no_order_above_the_notional_cap_is_ever_allowed(qty: Decimal, price: Decimal, cap: Decimal,
                                                         quote: Decimal | None) -> None:
    facts = order(quantity=qty, price=price, quote_quantity=quote)
    d = run(facts, policy(max_order_notional=cap))
    value = quote if quote is not None else qty * price
    assert d.allow == (value <= cap)


@given(qty=amounts, price=st.none() | amounts, trigger=st.none() | amounts, market=st.none() | amounts, cap=amounts,
       side=st.sampled_from(["BUY", "SELL", "buy", "sell", None]))
@settings(max_examples=400)
def test_no_order_is_allowed_that_can_execute_above_the_cap(qty: Decimal, price: Decimal | None,
                                                           trigger: Decimal | None, market: Decimal | None,
                                                           cap: Decimal, side: str | None) -> None:
    """What executes bounds the value: a buy at most its limit (with none, the market or its trigger), a sell at
    least its limit, and the market when that is higher (a sell priced under the market sells at the market)."""
    facts = order(side=side, quantity=qty, price=price, trigger_price=trigger)
    d = run(facts, policy(max_order_notional=cap), last_price=market)
    if (side or "").lower() == "buy" and price is not None:
        worst = price
    else:
        known = [p for p in (price, trigger, market) if p is not None]
        worst = max(known) if market is not None else None
    if worst is None:
        assert (d.allow, d.code) == (False, "notional_unknown")
    else:
        assert d.allow == (qty * worst <= cap)


@pytest.mark.parametrize("facts, market, code", [
    # 10 BTC offered at 0.01 sells at the market: a million, not ten cents
    (order(side="SELL", quantity=D("10"), price=D("0.01")), D("100000"), "notional_exceeded"),
    (order(side="SELL", quantity=D("10"), price=D("0.01")), None, "notional_unknown"),
    (order(side="SELL", quantity=D("0.001"), price=D("0.01")), D("100000"), None),  # 100: under the cap
    # a stop buy triggered at 200 pays about 200, not the 100 the market is at now
    (order(side="BUY", quantity=D("6"), price=None, trigger_price=D("200"), order_type="STOP_LOSS"), D("100"),
     "notional_exceeded"),
    (order(side="BUY", quantity=D("6"), price=None, trigger_price=D("150")), D("100"), None),
    (order(side="BUY", quantity=D("0.01"), price=D("50000")), None, None),  # a buy's limit bounds it: no market
    (order(side="SELL", quantity=D("0.01"), price=D("50000")), D("40000"), None),  # over the market: at its price
])
def test_an_order_is_valued_at_the_most_it_can_execute_at(facts: RequestFacts, market: Decimal | None,
                                                         code: str | None) -> None:
    d = run(facts, policy(max_order_notional=1000), last_price=market)
    assert (d.allow, d.code or None) == (code is None, code)
    if code is None:
        assert run(facts, policy(daily_notional_cap=1000), last_price=market).allow
    else:
        assert run(facts, policy(daily_notional_cap=1000), last_price=market).code == \
            ("daily_notional_exceeded" if code == "notional_exceeded" else code)


@given(facts=st.builds(RequestFacts, action=actions, reduce_only=st.booleans()), cls=classes)
def test_a_halted_bot_never_places_an_order(facts: RequestFacts, cls: str) -> None:
    d = run(facts, policy(scopes="read,trade,withdraw,transfer"), cls, halted="kill switch")
    if d.allow:
        assert cls in ("public", "read") or facts.action == "cancel" or (facts.action == "order" and facts.reduce_only)


@given(symbol=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-:", min_size=0, max_size=12))
def test_symbol_allowlist_is_exact(symbol: str) -> None:
    from keyproxy.policy.model import normalize_symbol

    facts = order(symbol=normalize_symbol(symbol) or None)
    d = run(facts, policy(symbols="BTCUSDT"))
    assert d.allow == (facts.symbol == "BTCUSDT")


def test_replace_keeps_policy_frozen() -> None:
    pol = policy()
    with pytest.raises(AttributeError):
        pol.scopes = ("admin",)  # type: ignore[misc]
    assert replace(pol, reduce_only=True).reduce_only


def test_open_order_cap() -> None:
    from keyproxy.policy.model import Usage

    pol = policy(max_open_orders=2)
    assert run(order(), pol, usage=Usage(open_orders=1)).allow
    d = run(order(), pol, usage=Usage(open_orders=2))
    assert (d.allow, d.code) == (False, "open_orders_exceeded")
    assert run(RequestFacts(action="cancel"), pol, usage=Usage(open_orders=5)).allow


def test_daily_notional_cap_and_charge() -> None:
    from keyproxy.policy.model import Usage

    pol = policy(daily_notional_cap=1000)
    d = run(order(), pol, usage=Usage(daily_notional=D("400")))  # 0.01 x 50000 = 500
    assert d.allow and d.notional == D("500.00")
    d = run(order(), pol, usage=Usage(daily_notional=D("600")))
    assert (d.allow, d.code) == (False, "daily_notional_exceeded")
    assert run(order(price=None), pol).code == "notional_unknown"


def test_daily_withdrawal_cap() -> None:
    from keyproxy.policy.model import Usage

    w = RequestFacts(action="withdraw", asset="USDT", network="BSC", address="0x", amount=D("60"))
    pol = policy(daily_withdrawal_cap=100)
    d = run(w, pol, "withdraw", usage=Usage(daily_withdrawn=D("30")))
    assert d.allow and d.withdrawal == D("60")
    assert run(w, pol, "withdraw", usage=Usage(daily_withdrawn=D("50"))).code == "withdrawal_limit"


def test_account_rate_limits_are_shared_by_its_bots() -> None:
    from keyproxy.policy.model import parse_account_limits

    limits, counters = parse_account_limits({"requests_per_second": 1, "burst": 2}), Counters()
    seen = []
    for bot in ("a", "b", "c"):
        d = decide(RequestFacts(action="other"), "read", policy(), counters, NOON, bot=bot, account="acct",
                   account_limits=limits)
        seen.append(d.allow)
        if d.allow:
            counters.apply(d.charges, NOON)
    assert seen == [True, True, False]


# --- issue 14: what a bot's limits allow must be what the exchange executes -------------------------

from keyproxy.policy.model import Usage  # noqa: E402


def batch(*legs: RequestFacts) -> RequestFacts:
    return RequestFacts(action="order", orders=legs)


@pytest.mark.parametrize("facts, pol, kw, code", [
    # every trading limit counts (or refuses) an order shape keyproxy cannot read
    (RequestFacts(action=None), policy(daily_notional_cap=1000), {}, "notional_unknown"),
    (RequestFacts(action=None), policy(max_open_orders=2), {}, "notional_unknown"),
    (RequestFacts(action=None), policy(orders_per_minute=60), {}, "notional_unknown"),
    # a batch is every one of its orders
    (batch(order(), order(symbol="ETHUSDT")), policy(symbols="BTCUSDT"), {}, "symbol_denied"),
    (batch(order(), order(quantity=D("1"))), policy(max_order_notional=1000), {}, "notional_exceeded"),
    (batch(order(), order(), order()), policy(max_open_orders=4), {"usage": Usage(open_orders=2)},
     "open_orders_exceeded"),
    (batch(*[order()] * 3), policy(orders_per_minute=2), {}, "rate_limited"),
    (batch(order(), order()), policy(daily_notional_cap=900), {"usage": Usage(daily_notional=D("100"))},
     "daily_notional_exceeded"),
    (batch(order(reduce_only=True), order()), policy(), {"halted": "x"}, "halted"),
    # an ignored or conflicting valuation field under a notional limit
    (order(conflict="price is ignored by market orders"), policy(max_order_notional=10**6), {}, "notional_unknown"),
    (order(conflict="two sizes"), policy(daily_notional_cap=10**6), {}, "notional_unknown"),
    # contracts: valued by the size the exchange published, unknown size refused
    (order(contract="linear", quantity=D("10")), policy(max_order_notional=10**6), {}, "notional_unknown"),
    (order(contract="linear", contract_size=D("10000"), quantity=D("1"), price=D("0.5")),
     policy(max_order_notional=1000), {}, "notional_exceeded"),
    (order(contract="inverse", contract_size=D("100"), quantity=D("1000"), price=None),
     policy(max_order_notional=1000), {}, "notional_exceeded"),
    # borrowing through a trade needs the transfer scope
    (order(borrows=True), policy(), {}, "scope_denied"),
    # an amend is valued like an order
    (order(action="amend", quantity=D("1"), order_id="7"), policy(max_order_notional=1000), {}, "notional_exceeded"),
    # a memo the allowlist entry does not name is someone else's account
    (RequestFacts(action="withdraw", asset="XRP", network="XRP", address="rShared", memo="666", amount=D("1")),
     policy(withdraw_addresses="XRP:XRP:rShared"), {}, "address_denied"),
    (RequestFacts(action="withdraw", asset="XRP", network="XRP", address="rShared", memo="666", amount=D("1")),
     policy(withdraw_addresses="XRP:XRP:rShared;memo=123"), {}, "address_denied"),
    (RequestFacts(action="withdraw", asset="XRP", network="XRP", address="rShared", amount=D("1")),
     policy(withdraw_addresses="XRP:XRP:rShared;memo=123"), {}, "address_denied"),
])
def test_policy_holes_closed(facts: RequestFacts, pol: BotPolicy, kw: dict, code: str) -> None:  # type: ignore[type-arg]
    cls = "withdraw" if facts.action == "withdraw" else "trade"
    d = run(facts, pol, cls, **kw)
    assert (d.allow, d.code) == (False, code), d


@pytest.mark.parametrize("facts, pol, kw", [
    (batch(order(), order()), policy(max_order_notional=1000, max_open_orders=2, orders_per_minute=2), {}),
    (batch(order(reduce_only=True), order(reduce_only=True)), policy(), {"halted": "x"}),
    (order(contract="linear", contract_size=D("10"), quantity=D("2"), price=D("40")),
     policy(max_order_notional=1000), {}),
    (order(contract="inverse", contract_size=D("100"), quantity=D("10"), price=None),
     policy(max_order_notional=1000), {}),
    (order(borrows=True), policy(scopes="read,trade,transfer"), {}),
    (order(conflict="price ignored"), policy(), {}),  # no notional limit: nothing to value
    (RequestFacts(action="withdraw", asset="XRP", network="XRP", address="rShared", memo="123", amount=D("1")),
     policy(withdraw_addresses="XRP:XRP:rShared;memo=123"), {}),
    (RequestFacts(action="withdraw", asset="XRP", network="XRP", address="rShared", memo="9", amount=D("1")),
     policy(withdraw_addresses="XRP:XRP:rShared;memo=*"), {}),
    (RequestFacts(action="withdraw", asset="USDT", network="BSC", address="0xgood", amount=D("1")),
     policy(withdraw_addresses="USDT:BSC:0xgood"), {}),
])
def test_policy_holes_closed_still_allow_the_honest(facts: RequestFacts, pol: BotPolicy, kw: dict) -> None:  # type: ignore[type-arg]
    cls = "withdraw" if facts.action == "withdraw" else "trade"
    d = run(facts, pol, cls, **kw)
    assert d.allow, d


def test_a_batch_takes_one_order_token_per_leg() -> None:
    counters, pol = Counters(), policy(orders_per_minute=3)
    d = run(batch(order(), order()), pol, counters=counters)
    assert d.allow and d.charges.count("bot:b:orders") == 2
    counters.apply(d.charges, NOON)
    assert run(batch(order(), order()), pol, counters=counters).code == "rate_limited"
    assert run(order(), pol, counters=counters).allow


def test_a_batch_adds_every_leg_to_the_daily_notional() -> None:
    d = run(batch(order(), order(quantity=D("0.02"))), policy(daily_notional_cap=10_000))
    assert d.allow and d.notional == D("1500")


@pytest.mark.parametrize("entry", ["XRP:XRP:r1;memo=", "XRP:XRP;memo=1", "XRP:XRP:r1;memo=1;x"])
def test_bad_withdraw_address_entries(entry: str) -> None:
    with pytest.raises(PolicyError, match="withdraw_addresses"):
        parse_policy({"withdraw_addresses": entry})
