"""OKX's rate budgets (issue 19): per-endpoint limits and the sub-account order rate.

Source: OKX API v5 (https://www.okx.com/docs-v5/en/), each endpoint's "Rate Limit" and "Rate limit rule"
lines, and "Sub-account rate limit" under Trading. OKX counts every limit in a rolling window (2 s for
almost all) per User ID for private endpoints, per IP for public ones, and sends no usage headers: over a
limit the answer is HTTP 429 code 50011 ("Too Many Requests"), over the sub-account order rate 50061.
Order endpoints are counted by OKX per User ID and instrument; keyproxy counts them per account over all
instruments, the stricter. New and amended orders also spend ORDERS_2S, 1,000 per 2 s per sub-account
(each order of a batch counts). Endpoints not listed here spend no budget keyproxy models. WebSocket: "Connection
limit: 3 requests per second (based on IP)" (Overview, WebSocket, Connect), every path alike.
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
              GET_trade__orders_algo_pending=20, GET_trade__order_algo=20, GET_trade__orders_algo_history=20,
              GET_account__balance=10, GET_account__positions=10,
              GET_account__config=5, POST_account__set_leverage=20, GET_account__leverage_info=20,
              GET_account__max_size=20, GET_account__trade_fee=5, POST_account__set_position_mode=5),
    **_per_2s("ip",
              GET_public__instruments=20, GET_market__tickers=20, GET_market__ticker=20, GET_market__books=40,
              GET_market__candles=40, GET_public__time=10, GET_public__funding_rate=20),
}
WS_CONNECTIONS = Budget("WS_CONNECTIONS", "ip", 3, 1.0, kind="rolling")
BUDGETS = (ORDERS_2S, *ENDPOINT_BUDGETS.values(), WS_CONNECTIONS)
# new and amended orders: they spend the sub-account order rate too (cancels do not)
_ORDER_RATE_PATHS = frozenset({"/api/v5/trade/order", "/api/v5/trade/amend-order", "/api/v5/trade/batch-orders",
                               "/api/v5/trade/amend-batch-orders"})
# batches: OKX counts their orders ("the rate limit of this endpoint is determined by the number of orders"), and a
# batch of one order against its single twin's limit ("it will consume the rate limit of Place order")
_BATCH_TWINS = {"/api/v5/trade/batch-orders": "POST /api/v5/trade/order",
                "/api/v5/trade/amend-batch-orders": "POST /api/v5/trade/amend-order",
                "/api/v5/trade/cancel-batch-orders": "POST /api/v5/trade/cancel-order"}
_BATCH_MAX = 20  # OKX takes at most 20 orders a batch: one it cannot read costs that many
HOLD_S = 2.0  # OKX's windows are 2 s and it gives no Retry-After


def okx_costs(method: str, path: str, body: bytes) -> tuple[tuple[Budget, int], ...]:
    """The endpoint's own budget (a batch costs one per order, a batch of one its single twin's) and, for new and
    amended orders, the sub-account order rate."""
    key = f"{method} {path}"
    orders = 1
    if method == "POST" and path in _BATCH_TWINS:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        orders = min(len(doc), _BATCH_MAX) if isinstance(doc, list) and doc else _BATCH_MAX
        if orders == 1:
            key = _BATCH_TWINS[path]
    endpoint = ENDPOINT_BUDGETS.get(key)
    costs = ((endpoint, orders),) if endpoint is not None else ()
    if method == "POST" and path in _ORDER_RATE_PATHS:
        costs = (*costs, (ORDERS_2S, orders))
    return costs


def okx_rate_limit_hold(status: int, headers: Mapping[str, str], body: bytes | None) -> tuple[float, str | None] | None:
    """HTTP 429: nothing on the refused budget for one window (OKX gives no Retry-After). 50061 names the
    sub-account order rate; any other (50011: the endpoint's own limit, which OKX counts per instrument) holds the
    request's endpoint budget, never the account's order rate: one bot's 429 on its instrument must not stop every
    bot's orders on every instrument (session 24's review)."""
    if status != 429:
        return None
    try:
        code = json.loads(body).get("code") if body else None
    except (ValueError, AttributeError, RecursionError):
        code = None
    only = ORDERS_2S.name if code == "50061" else "!" + ORDERS_2S.name
    try:
        return max(1.0, float(headers.get("retry-after", ""))), only
    except ValueError:
        return HOLD_S, only
