"""Binance's rate budgets (issue 19): what it counts, per what, and what each request costs.

Source: Binance's "LIMITS" (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits)
and each endpoint's "Weight:" line in the Spot REST API documentation; USD-M and COIN-M futures
("General Info", "LIMITS"). Request weight is counted per IP per calendar minute and reported in
`X-MBX-USED-WEIGHT-1M`; spot orders per account per 10 s in `X-MBX-ORDER-COUNT-10S`. Endpoints not in the
table cost 1 here; the exchange's header corrects keyproxy's count after every answer.
"""

from __future__ import annotations

from keyproxy.policy.budget import Budget

SPOT_WEIGHT = Budget("REQUEST_WEIGHT", "ip", 6000, 60.0, "x-mbx-used-weight-1m")
FUTURES_WEIGHT = Budget("FUTURES_REQUEST_WEIGHT", "ip", 2400, 60.0, "x-mbx-used-weight-1m")
COINM_WEIGHT = Budget("COINM_REQUEST_WEIGHT", "ip", 2400, 60.0, "x-mbx-used-weight-1m")
SPOT_ORDERS = Budget("ORDERS_10S", "account", 100, 10.0, "x-mbx-order-count-10s")  # exchangeInfo's rateLimits
SPOT_ORDERS_DAY = Budget("ORDERS_1D", "account", 200000, 86400.0, "x-mbx-order-count-1d")
# RAW_REQUESTS (61,000 per 5 minutes) is not modelled: every request weighs at least 1, so REQUEST_WEIGHT
# (6,000 a minute, 30,000 per 5 minutes) always binds first
BUDGETS = (SPOT_WEIGHT, FUTURES_WEIGHT, COINM_WEIGHT, SPOT_ORDERS, SPOT_ORDERS_DAY)
# public answers every bot asks for at start, shared for MARKET_LIST_TTL seconds (public_cache.py)
MARKET_LISTS = frozenset({"/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"})
MARKET_LIST_TTL = 30.0

_SPOT_WEIGHTS = {
    ("GET", "/api/v3/account"): 20, ("GET", "/api/v3/exchangeInfo"): 20, ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): 20, ("GET", "/api/v3/order"): 4, ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/uiKlines"): 2, ("GET", "/api/v3/avgPrice"): 2, ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/historicalTrades"): 25, ("GET", "/api/v3/aggTrades"): 4, ("GET", "/api/v3/allOrderList"): 20,
    ("GET", "/api/v3/openOrderList"): 6, ("GET", "/api/v3/account/commission"): 20,
}
_SPOT_ORDER_PATHS = frozenset({"/api/v3/order", "/api/v3/order/oco", "/api/v3/orderList/oco", "/api/v3/orderList/oto",
                               "/api/v3/orderList/otoco", "/api/v3/sor/order", "/api/v3/order/cancelReplace"})


def _spot_weight(method: str, path: str, query: str) -> int:
    one_symbol = "symbol=" in query and "symbols=" not in query
    if path == "/api/v3/openOrders" and method == "GET":
        return 6 if one_symbol else 80
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if one_symbol else 4
    if path == "/api/v3/ticker/24hr":
        return 2 if one_symbol else 80
    if path == "/api/v3/depth":
        limit = next((int(p[6:]) for p in query.split("&") if p.startswith("limit=") and p[6:].isdigit()), 100)
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return _SPOT_WEIGHTS.get((method, path), 1)


def binance_costs(method: str, path: str, query: str) -> tuple[tuple[Budget, int], ...]:
    """(budget, cost) for one request; () for what no budget here counts (`/sapi/` has its own limits)."""
    if path.startswith("/api/"):
        weight = ((SPOT_WEIGHT, _spot_weight(method, path, query)),)
        if method == "POST" and path in _SPOT_ORDER_PATHS and not path.endswith("cancelReplace"):
            return (*weight, (SPOT_ORDERS, 1), (SPOT_ORDERS_DAY, 1))
        return weight
    if path.startswith("/fapi/"):
        return ((FUTURES_WEIGHT, 1),)
    if path.startswith("/dapi/"):
        return ((COINM_WEIGHT, 1),)
    return ()
