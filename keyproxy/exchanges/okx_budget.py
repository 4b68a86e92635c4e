"""OKX's rate budgets (issue 19): per-endpoint limits and the sub-account order rate.

Source: OKX API v5 (https://www.okx.com/docs-v5/en/), each endpoint's "Rate Limit" and "Rate limit rule"
lines, and "Sub-account rate limit" under Trading. OKX counts every limit in a rolling window (2 s for
almost all) per User ID for private endpoints, per IP for public ones, and sends no usage headers: over a
limit the answer is HTTP 429 code 50011 ("Too Many Requests"), over the sub-account order rate 50061.
Order endpoints are counted by OKX per User ID and instrument; keyproxy counts them per account over all
instruments, the stricter. New and amended orders also spend ORDERS_2S, 1,000 per 2 s per sub-account
(each order of a batch counts). Endpoints not listed here spend no budget keyproxy models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from keyproxy.policy.budget import Budget

ORDERS_2S = Budget("ORDERS_2S", "account", 1000, 2.0, kind="rolling")


def _per_2s(per: str, **limits: int) -> dict[str, Budget]:
    out = {}
    for key, limit in limits.items():
        method, _, tail = key.partition("_")
        name = f"{method} /api/v5/{tail.replace('__', '/').replace('_', '-')}"
        out[name] = Budget(name, per, limit, 2.0, kind="rolling")
    return out


# "METHOD /path" -> budget; keyword names spell the path: "__" a slash, "_" a hyphen
ENDPOINT_BUDGETS: dict[str, Budget] = {
    **_per_2s("account",
              POST_trade__order=60, POST_trade__batch_orders=300, POST_trade__cancel_order=60,
              POST_trade__cancel_batch_orders=300, POST_trade__amend_order=60, POST_trade__amend_batch_orders=300,
              POST_trade__close_position=20, GET_trade__order=60, GET_trade__orders_pending=60,
              GET_trade__orders_history=40, GET_trade__orders_history_archive=20, GET_trade__fills=60,
              GET_trade__fills_history=10, POST_trade__order_algo=20, POST_trade__cancel_algos=20,
              GET_trade__orders_algo_pending=20, GET_account__balance=10, GET_account__positions=10,
              GET_account__config=5, POST_account__set_leverage=20, GET_account__leverage_info=20,
              GET_account__max_size=20, GET_account__trade_fee=5, POST_account__set_position_mode=5),
    **_per_2s("ip",
              GET_public__instruments=20, GET_market__tickers=20, GET_market__ticker=20, GET_market__books=40,
              GET_market__candles=40, GET_public__time=10, GET_public__funding_rate=20),
}
BUDGETS = (ORDERS_2S, *ENDPOINT_BUDGETS.values())
_ORDER_PATHS = {"/api/v5/trade/order": False, "/api/v5/trade/amend-order": False,
                "/api/v5/trade/batch-orders": True, "/api/v5/trade/amend-batch-orders": True}
HOLD_S = 2.0  # OKX's windows are 2 s and it gives no Retry-After


def okx_costs(method: str, path: str, body: bytes) -> tuple[tuple[Budget, int], ...]:
    """The endpoint's own budget (a batch costs one per order) and, for new and amended orders, the
    sub-account order rate."""
    endpoint = ENDPOINT_BUDGETS.get(f"{method} {path}")
    batch = _ORDER_PATHS.get(path) if method == "POST" else None
    if batch is None:
        return ((endpoint, 1),) if endpoint is not None else ()
    orders = 1
    if batch:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        orders = max(1, len(doc)) if isinstance(doc, list) else 1
    costs = ((ORDERS_2S, orders),)
    return ((endpoint, orders), *costs) if endpoint is not None else costs


def okx_rate_limit_hold(status: int, headers: Mapping[str, str], body: bytes | None) -> tuple[float, str | None] | None:
    """HTTP 429 (50011, 50061): nothing on the request's budgets for one window (OKX gives no Retry-After)."""
    if status != 429:
        return None
    try:
        return max(1.0, float(headers.get("retry-after", ""))), None
    except ValueError:
        return HOLD_S, None
