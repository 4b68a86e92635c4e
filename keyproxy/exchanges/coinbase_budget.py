"""Coinbase's rate budgets (session 34: Coinbase had none, so one bot could spend the account's and the IP's).

Sources: Coinbase Advanced Trade's REST rate limits as ccxt's coinbase cites them ("max 30 req/second for private
data, 10 req/s for public data"; private endpoints are throttled per user, public ones per IP), the App API's
(v2, "Sign In With Coinbase": 10,000 requests an hour per key, HTTP 429 `rate_limit_exceeded`) and Advanced Trade's
WebSocket rate limits (docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-rate-limits: 750
connections a second per IP, 8 unauthenticated messages a second per IP). keyproxy counts a user's requests per
account (an account is one key of one user) and takes each window as a rolling one (Coinbase does not say which).
Over a limit Coinbase answers HTTP 429.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyproxy.policy.budget import Budget

PRIVATE_REQUESTS = Budget("PRIVATE_REQUESTS", "account", 30, 1.0, kind="rolling")
PUBLIC_REQUESTS = Budget("PUBLIC_REQUESTS", "ip", 10, 1.0, kind="rolling")
APP_REQUESTS = Budget("APP_REQUESTS", "account", 10_000, 3600.0, kind="rolling")  # the v2 App API's hour
WS_CONNECTIONS = Budget("WS_CONNECTIONS", "ip", 750, 1.0, kind="rolling")
# "Advanced Trade API WebSocket unauthenticated messages are rate-limited at 8 per second per IP address"
WS_UNAUTHENTICATED = Budget("WS_UNAUTHENTICATED", "ip", 8, 1.0, kind="rolling")
BUDGETS = (PRIVATE_REQUESTS, PUBLIC_REQUESTS, APP_REQUESTS, WS_CONNECTIONS, WS_UNAUTHENTICATED)
HOLD_S = 1.0  # a 429 with no Retry-After: Coinbase's windows are a second (its hour's is the App API's own count)


def coinbase_costs(path: str, public: bool) -> tuple[tuple[Budget, int], ...]:
    """A public Advanced Trade request spends the IP's public budget, a signed one the account's per second, a
    signed v2 one the App API's hour; v2's public data (currencies, prices, time) none keyproxy models (the App
    API counts by the hour and documents no per-IP limit: session 34's regression review)."""
    v2 = path.startswith("/v2/")
    if public:
        return () if v2 else ((PUBLIC_REQUESTS, 1),)
    return ((APP_REQUESTS, 1),) if v2 else ((PRIVATE_REQUESTS, 1),)


def coinbase_rate_limit_hold(status: int, headers: Mapping[str, str]) -> tuple[float, str | None] | None:
    """HTTP 429 holds the request's budgets for its Retry-After, else a second (never the minute the default
    holds for: Coinbase counts per second)."""
    if status != 429:
        return None
    try:
        return max(HOLD_S, float(headers.get("retry-after", ""))), None
    except ValueError:
        return HOLD_S, None
