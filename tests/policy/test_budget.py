"""The exchange-budget governor: spend before forwarding, a reserve for the way out, the exchange's count and
bans believed."""

from __future__ import annotations

from keyproxy.policy.budget import Budget, Charge, Governor

WEIGHT = Budget("REQUEST_WEIGHT", "ip", 100, 60.0, "x-mbx-used-weight-1m")
T0 = 6000.0  # the start of a minute


def _charge(cost: int = 10) -> tuple[Charge, ...]:
    return (Charge(WEIGHT, "https://api.binance.com", cost),)


def test_spends_up_to_the_budget_less_the_reserve_then_waits_for_the_next_window() -> None:
    g = Governor(reserve=0.1)
    assert [g.spend(_charge(), False, T0 + i) for i in range(9)] == [None] * 9  # 90 of 100
    assert g.spend(_charge(), False, T0 + 20) == 40.0  # the reserve is not for ordinary requests
    assert g.spend(_charge(), True, T0 + 20) is None  # a cancel may use it
    assert g.spend(_charge(1), True, T0 + 21) == 39.0  # the whole budget is spent
    assert g.spend(_charge(), False, T0 + 60) is None  # a new window


def test_the_exchanges_count_corrects_ours_upwards_only() -> None:
    g = Governor(reserve=0.0)
    g.spend(_charge(), False, T0)
    g.observe(_charge(), {"x-mbx-used-weight-1m": "95"}, T0 + 1)  # others spent it too
    assert g.spend(_charge(), False, T0 + 2) is not None
    g.observe(_charge(), {"x-mbx-used-weight-1m": "3"}, T0 + 3)  # a lower count: keep ours
    assert g.usage(T0 + 3)["https://api.binance.com|REQUEST_WEIGHT"] == 0.95


def test_a_malformed_usage_header_keeps_our_count() -> None:
    g = Governor(reserve=0.0)
    g.spend(_charge(), False, T0)
    assert g.observe(_charge(), {"x-mbx-used-weight-1m": "lots"}, T0 + 1) == "x-mbx-used-weight-1m"  # logged ...
    assert g.observe(_charge(), {"x-mbx-used-weight-1m": "lots"}, T0 + 1) is None  # ... once
    assert g.usage(T0 + 1)["https://api.binance.com|REQUEST_WEIGHT"] == 0.1


def test_after_a_429_or_418_nothing_goes_until_retry_after_not_even_a_cancel() -> None:
    g = Governor(reserve=0.1)
    g.observe(_charge(), {}, T0, hold=120.0)
    assert g.spend(_charge(1), True, T0 + 60) == 60.0
    assert g.spend(_charge(1), True, T0 + 121) is None
    g.observe(_charge(), {}, T0 + 200, hold=60.0)
    assert g.spend(_charge(1), False, T0 + 230) == 30.0


def test_a_request_charges_all_its_budgets_or_none() -> None:
    orders = Budget("ORDERS_10S", "account", 2, 10.0)
    g = Governor(reserve=0.0)
    both = (*_charge(1), Charge(orders, "main", 1))
    assert g.spend(both, False, T0) is None and g.spend(both, False, T0) is None
    assert g.spend(both, False, T0) == 10.0  # the order budget is spent ...
    assert g.usage(T0)["https://api.binance.com|REQUEST_WEIGHT"] == 0.02  # ... and no weight was charged for it


def test_a_rolling_window_never_holds_more_than_the_limit_in_any_span() -> None:
    rolling = Budget("IP_REQUESTS", "ip", 10, 5.0, kind="rolling")
    g, admitted = Governor(reserve=0.0), []
    for i in range(400):  # a request every 50 ms for 20 s, across window edges
        t = T0 + i * 0.05
        if g.spend((Charge(rolling, "bybit@production", 1),), False, t) is None:
            admitted.append(t)
    assert max(sum(1 for u in admitted if t <= u < t + 5.0) for t in admitted) == 10
    assert len(admitted) >= 40  # and the budget is used: 10 per 5 s
    wait = g.spend((Charge(rolling, "bybit@production", 1),), False, admitted[-1])
    assert wait is not None and 0 < wait <= 5.0


def test_a_decaying_counter_refills_at_its_rate() -> None:
    counter = Budget("CALL_COUNTER", "account", 15, 3.0, kind="decay")  # Kraken Starter: -1 every 3 s
    g = Governor(reserve=0.0)
    assert all(g.spend((Charge(counter, "k", 1),), False, T0) is None for _ in range(15))
    wait = g.spend((Charge(counter, "k", 1),), False, T0)
    assert wait is not None and abs(wait - 3.0) < 1e-9  # one call's worth decays in 3 s
    assert g.spend((Charge(counter, "k", 1),), False, T0 + 3.0) is None
    assert g.spend((Charge(counter, "k", 2),), False, T0 + 3.0) is not None


def test_a_remaining_count_header_and_a_limit_header_correct_the_meter() -> None:
    endpoint = Budget("UID_ENDPOINT", "endpoint", 10, 1.0, "x-bapi-limit-status", kind="rolling",
                      header_counts="remaining", limit_header="x-bapi-limit")
    g, c = Governor(reserve=0.0), (Charge(endpoint, "main /v5/order/create", 1),)
    assert g.spend(c, False, T0) is None
    g.observe(c, {"x-bapi-limit-status": "2", "x-bapi-limit": "5"}, T0)  # 3 of 5 used elsewhere too
    assert g.usage(T0)["main /v5/order/create|UID_ENDPOINT"] == 0.6
    assert [g.spend(c, False, T0) is None for _ in range(3)] == [True, True, False]
    g.observe(c, {"x-bapi-limit-status": "-3", "x-bapi-limit": "five"}, T0)  # malformed: ignored
    assert g.meters["main /v5/order/create|UID_ENDPOINT"].limit == 5


def test_a_bot_over_its_share_waits_while_another_active_bot_still_has_share_coming() -> None:
    g = Governor(reserve=0.0)
    c = _charge(1)  # 100 a minute
    assert g.spend(c, False, T0, "quiet") is None  # quiet is active: 1 used
    flood = [g.spend(c, False, T0 + 1, "flood") is None for _ in range(100)]
    assert sum(flood) == 50  # flood gets its half; quiet's 49 still to come are kept for it
    assert all(g.spend(c, False, T0 + 2, "quiet") is None for _ in range(49))
    assert g.spend(c, False, T0 + 2, "quiet") is not None  # the budget is spent


def test_an_idle_bots_share_is_lent_and_weights_divide_the_budget() -> None:
    g = Governor(reserve=0.0, shares={"big": 3.0})
    c = _charge(1)
    assert g.spend(c, False, T0 + 50, "idle") is None  # spent within the last minute ...
    assert sum(g.spend(c, False, T0 + 61, "flood") is None for _ in range(120)) == 50  # ... so still active
    assert sum(g.spend(c, False, T0 + 125, "flood") is None for _ in range(120)) == 100  # idle for a window: lent
    g2 = Governor(reserve=0.0, shares={"big": 3.0})
    assert g2.spend(c, False, T0, "small") is None
    assert sum(g2.spend(c, False, T0, "big") is None for _ in range(100)) == 75  # 3 of 4 shares


def test_the_shares_only_a_key_id_claims_weigh_one_together() -> None:
    """Session 36's review: each bot's key-id share weighed a bot's whole 1, so a bot spending as itself, as
    `(unsigned)`, as its own key id and as the victim's held 4 of 5 shares (the victim 1/5). The key-id shares weigh 1
    together: the victim keeps 1 of 4. One SDK that sends its key id with public reads (python-binance) alone keeps a
    whole share beside a ccxt bot's unsigned reads (its regression review: a quarter weight each gave it 1/5)."""
    from keyproxy.policy.budget import KEY_ONLY, UNSIGNED

    def run(names: tuple[str, ...]) -> dict[str, int]:
        g = Governor(reserve=0.0)
        c = (Charge(Budget("REQUEST_WEIGHT", "ip", 1200, 60.0), "https://api.binance.com", 1),)
        taken = dict.fromkeys(names, 0)
        for i in range(1200):  # every name asking all the time, in turn
            for n in names:
                taken[n] += g.spend(c, False, T0 + i * 0.01, n) is None
        return taken

    taken = run(("victim", "attacker", UNSIGNED, f"attacker {KEY_ONLY}", f"victim {KEY_ONLY}"))
    assert taken["victim"] >= 1200 / 4 - 2, taken  # 300 of 1,200: its share
    assert taken[f"attacker {KEY_ONLY}"] + taken[f"victim {KEY_ONLY}"] <= 300 + 2, taken
    taken = run((UNSIGNED, f"sdk-bot {KEY_ONLY}"))
    assert abs(taken[UNSIGNED] - taken[f"sdk-bot {KEY_ONLY}"]) <= 2, taken


def test_sweep_forgets_idle_bots_and_empty_meters() -> None:
    g = Governor(reserve=0.0)
    g.spend(_charge(1), False, T0, "a")
    g.observe(_charge(1), {}, T0, hold=5.0)
    g.sweep(T0 + 600)
    assert not g.meters and not g.pools and not g.banned_until


def test_a_hold_for_one_budget_leaves_the_others_open() -> None:
    endpoint = Budget("UID_ENDPOINT", "endpoint", 10, 1.0, kind="rolling")
    both = (*_charge(1), Charge(endpoint, "main /v5/order/create", 1))
    g = Governor(reserve=0.0)
    g.observe(both, {}, T0, hold=2.0, only="UID_ENDPOINT")
    assert g.spend(both, False, T0 + 1) == 1.0
    assert g.spend(_charge(1), False, T0 + 1) is None


def test_a_budget_is_resolved_once_per_account_and_again_after_a_reload() -> None:
    pro = Budget("CALL_COUNTER", "account", 20, 1.0, kind="decay")
    starter = Budget("CALL_COUNTER", "account", 15, 3.0, kind="decay")
    g = Governor(tiers={"kr": "pro"}, limits={"kraken.CALL_COUNTER": 8})
    first = g.resolve("kraken", "kr", starter, {"pro": (pro,)})
    assert (first.limit, first.window_s) == (8, 1.0)  # the tier's rate, the config's limit
    assert g.resolve("kraken", "kr", starter, {"pro": (pro,)}) is first  # the same object every request
    other = g.resolve("kraken", "other", starter, {"pro": (pro,)})
    assert (other.limit, other.window_s) == (8, 3.0)  # no tier: Starter's rate, the exchange-wide limit
    g.configure(0.1, {}, {}, {"kr": "pro"})
    assert g.resolve("kraken", "kr", starter, {"pro": (pro,)}) is pro


def test_a_fleet_splits_each_budget_between_its_live_instances() -> None:
    """Two instances on two hosts: a key's budget in halves, each host's IP budget whole; two on one host:
    the IP's in halves too. Together they never exceed the exchange's limit."""
    orders = Budget("ORDERS_10S", "account", 100, 10.0, "x-mbx-order-count-10s")
    g = Governor(reserve=0.0)
    g.set_fleet(instances=2, on_this_host=1)
    key = g.resolve("binance", "main", orders, {})
    ip = g.resolve("binance", "main", WEIGHT, {})
    assert (key.limit, key.share, ip.limit) == (50, 0.5, 100)
    c = (Charge(key, "main", 1),)
    assert [g.spend(c, False, T0) is None for _ in range(51)].count(True) == 50
    g.set_fleet(instances=2, on_this_host=2)
    assert g.resolve("binance", "main", WEIGHT, {}).limit == 50
    g.set_fleet(instances=1, on_this_host=1)  # the other died: its part comes back
    assert g.resolve("binance", "main", orders, {}).limit == 100


def test_in_a_fleet_the_exchanges_whole_count_leaves_this_instance_only_what_is_left() -> None:
    orders = Budget("ORDERS_10S", "account", 100, 10.0, "x-mbx-order-count-10s")
    g = Governor(reserve=0.0)
    g.set_fleet(instances=2, on_this_host=1)
    c = (Charge(g.resolve("binance", "main", orders, {}), "main", 1),)
    g.spend(c, False, T0)
    g.observe(c, {"x-mbx-order-count-10s": "40"}, T0)  # 40 of 100 used by the key: this one may still use 50
    assert g.usage(T0)["main|ORDERS_10S"] == 0.02
    g.observe(c, {"x-mbx-order-count-10s": "95"}, T0)  # 95 of 100 used: only 5 left for this instance
    assert [g.spend(c, False, T0) is None for _ in range(10)].count(True) == 5
    remaining = Budget("UID_ENDPOINT", "endpoint", 10, 1.0, "x-bapi-limit-status", kind="rolling",
                       header_counts="remaining", limit_header="x-bapi-limit")
    r = (Charge(g.resolve("bybit", "main", remaining, {}), "main /v5/order/create", 1),)
    g.observe(r, {"x-bapi-limit-status": "18", "x-bapi-limit": "20"}, T0)  # the key's limit is 20: 10 here
    assert g.meters["main /v5/order/create|UID_ENDPOINT"].limit == 10
    assert [g.spend(r, False, T0) is None for _ in range(12)].count(True) == 10


def test_the_exchanges_extra_count_corrects_the_shared_meter_never_the_observing_bots_share() -> None:
    """The gap between the exchange's count and ours is nobody's in particular (a neighbour's heavy request, a
    program keyproxy does not front): charged to the bot whose answer carried it, one bot could starve another."""
    g = Governor(reserve=0.0)
    assert g.spend(_charge(10), False, T0, bot="a") is None
    assert g.spend(_charge(10), False, T0, bot="b") is None
    g.observe(_charge(10), {"x-mbx-used-weight-1m": "60"}, T0 + 1)  # b's answer: 40 more than keyproxy sent
    key = "https://api.binance.com|REQUEST_WEIGHT"
    assert g.usage(T0 + 1)[key] == 0.6
    assert g.pools[key].bots["b"][0].used(T0 + 1) == 10  # b's share still holds only b's own requests
    assert g.spend(_charge(30), False, T0 + 2, bot="b") is None  # within b's half: 40 of 50
    assert g.spend(_charge(20), False, T0 + 3, bot="b") is not None  # over its half while a is active


def test_a_request_spent_at_a_windows_edge_counts_in_the_next_window_too() -> None:
    """The exchange counts a request in the window it arrives in: one spent in the last second of keyproxy's minute
    may land in the exchange's next, which would then take a whole budget more (session 33's review: a burst at
    second 59.75 and another after the minute turned, Binance's 429 then a 418 ban)."""
    g = Governor(reserve=0.1)
    assert [g.spend(_charge(), False, T0 + 59.5) for _ in range(5)] == [None] * 5  # 50 at the edge
    assert [g.spend(_charge(), False, T0 + 60.2) for _ in range(4)] == [None] * 4  # 50 + 40 of 90 in the next
    assert round(g.spend(_charge(), False, T0 + 60.3) or 0, 3) == 59.7  # not another 90: the edge's 50 count here too
    assert g.spend(_charge(), False, T0 + 120) is None  # the minute after: a fresh window
    assert [g.spend(_charge(), False, T0 + 130) for _ in range(8)] == [None] * 8  # away from the edges: all of it


def test_the_wait_asked_at_a_windows_edge_counts_what_is_carried_into_the_next() -> None:
    """A request refused in the last second of a window that the carry would refuse in the next too is told to wait
    for the window after, not for the next one's start (where it would be refused again: session 33's review)."""
    g = Governor(reserve=0.1)
    assert [g.spend(_charge(), False, T0 + 59.2) for _ in range(9)] == [None] * 9  # 90 of 90, all carried
    assert round(g.spend(_charge(), False, T0 + 59.5) or 0, 3) == 60.5  # to T0 + 120, not T0 + 60
    assert g.spend(_charge(), False, T0 + 60.5) == 59.5  # at the next window's start: still full (the carry)
    g2 = Governor(reserve=0.1)
    assert [g2.spend(_charge(), False, T0 + 30) for _ in range(9)] == [None] * 9  # spent away from the edge
    assert g2.spend(_charge(), False, T0 + 59.5) == 0.5  # nothing carried: the next window's start


def test_the_exchanges_count_read_at_a_windows_edge_is_that_windows_only() -> None:
    """A correction from the exchange's own count is the window it counted in: read in the last second, it was
    carried whole into the next minute (the regression review of the edge rule)."""
    g = Governor(reserve=0.1)
    charge = _charge(1)
    assert g.spend(charge, False, T0 + 59.5) is None
    g.observe(charge, {"x-mbx-used-weight-1m": "80"}, T0 + 59.6)
    assert [g.spend(_charge(), False, T0 + 60.5) for _ in range(8)] == [None] * 8  # 1 carried, not 80: 81 of 90


def test_a_budget_of_a_few_split_between_workers_keeps_one_for_ordinary_requests() -> None:
    """OKX allows 3 socket opens a second per IP: two workers on one host get 1 each, and the reserve's floor left 0,
    so every handshake was refused for good (session 34's regression review)."""
    g = Governor(reserve=0.1)
    g.set_fleet(2, 2)
    sockets = Budget("WS_CONNECTIONS", "ip", 3, 1.0, kind="rolling")
    one = g.resolve("okx", "main", sockets, {})
    assert one.limit == 1
    charge = (Charge(one, "okx@live", 1),)
    assert g.spend(charge, False, 100.0) is None
    assert g.spend(charge, False, 100.5) is not None  # its one a second
    assert g.spend(charge, False, 101.1) is None


def test_a_lone_bot_borrows_what_its_own_key_ids_share_has_coming() -> None:
    """Session 36's regression review: python-binance sends its key id with public reads; alone on the account, one
    such read (`sdk (key id)`) was owed half the budget for the window, and the bot's own signed requests were refused
    at 600 of 1,199. A bot may borrow its own key id's share; another bot's key id's stays kept for it."""
    from keyproxy.policy.budget import KEY_ONLY

    c = (Charge(Budget("REQUEST_WEIGHT", "ip", 1200, 60.0), "https://api.binance.com", 1),)
    g = Governor(reserve=0.0)
    assert g.spend(c, False, T0, f"sdk {KEY_ONLY}") is None
    assert sum(g.spend(c, False, T0 + 1 + i * 0.01, "sdk") is None for i in range(1199)) == 1199
    g = Governor(reserve=0.0)
    assert g.spend(c, False, T0, f"victim {KEY_ONLY}") is None
    assert sum(g.spend(c, False, T0 + 1 + i * 0.01, "flood") is None for i in range(1199)) == 600  # half kept
