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
    g.observe(_charge(), 200, {"x-mbx-used-weight-1m": "95"}, None, T0 + 1)  # others spent it too
    assert g.spend(_charge(), False, T0 + 2) is not None
    g.observe(_charge(), 200, {"x-mbx-used-weight-1m": "3"}, None, T0 + 3)  # a lower count: keep ours
    assert g.usage(T0 + 3)["https://api.binance.com|REQUEST_WEIGHT"] == 0.95


def test_a_malformed_usage_header_keeps_our_count() -> None:
    g = Governor(reserve=0.0)
    g.spend(_charge(), False, T0)
    g.observe(_charge(), 200, {"x-mbx-used-weight-1m": "lots"}, None, T0 + 1)
    assert g.usage(T0 + 1)["https://api.binance.com|REQUEST_WEIGHT"] == 0.1


def test_after_a_429_or_418_nothing_goes_until_retry_after_not_even_a_cancel() -> None:
    g = Governor(reserve=0.1)
    g.observe(_charge(), 418, {}, 120.0, T0)
    assert g.spend(_charge(1), True, T0 + 60) == 60.0
    assert g.spend(_charge(1), True, T0 + 121) is None
    g.observe(_charge(), 429, {}, None, T0 + 200)  # no Retry-After: a minute
    assert g.spend(_charge(1), False, T0 + 230) == 30.0


def test_a_request_charges_all_its_budgets_or_none() -> None:
    orders = Budget("ORDERS_10S", "account", 2, 10.0)
    g = Governor(reserve=0.0)
    both = (*_charge(1), Charge(orders, "main", 1))
    assert g.spend(both, False, T0) is None and g.spend(both, False, T0) is None
    assert g.spend(both, False, T0) == 10.0  # the order budget is spent ...
    assert g.usage(T0)["https://api.binance.com|REQUEST_WEIGHT"] == 0.02  # ... and no weight was charged for it
