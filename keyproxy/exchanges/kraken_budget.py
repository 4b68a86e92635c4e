"""Kraken's REST call counter (issue 19): per key, decaying, its size set by the account's tier.

Source: Kraken "Spot REST API rate limits" (https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits).
Every private call adds 1 to the key's counter, ledger and trade-history queries 2; order placement and
cancellation do not (they have their own per-pair trading counter, which keyproxy does not model). The
counter may reach 15 (Starter), 20 (Intermediate, Pro) and falls by 0.33, 0.5 and 1 a second; a call
above it is answered `EAPI:Rate limit exceeded`, and continuing leads to `EGeneral:Temporary lockout`.
keyproxy assumes Starter unless `[governor.tiers]` names the account's tier. WebSocket: "Cloudflare imposes a
connection/re-connection rate limit (per IP address) of approximately 150 attempts per rolling 10 minutes. If this
is exceeded, the IP is banned for 10 minutes" (Kraken's WebSocket API documentation), every path alike.
"""

from __future__ import annotations

import json

from keyproxy.policy.budget import Budget

CALL_COUNTER = Budget("CALL_COUNTER", "account", 15, 3.0, kind="decay")  # Starter: -0.33 a second
TIERS = {
    "starter": (CALL_COUNTER,),
    "intermediate": (Budget("CALL_COUNTER", "account", 20, 2.0, kind="decay"),),
    "pro": (Budget("CALL_COUNTER", "account", 20, 1.0, kind="decay"),),
}
WS_CONNECTIONS = Budget("WS_CONNECTIONS", "ip", 150, 600.0, kind="rolling")
BUDGETS = (CALL_COUNTER, WS_CONNECTIONS)
# "All other API calls increase this counter by 1 (except AddOrder, CancelOrder which operate on a different
# limiter)" (Kraken, Spot REST Rate Limits): the order operations go to the trading engine's per-pair counter (a
# batch and an edit as ccxt prices them, 0), but CancelAll and CancelAllOrdersAfter count (ccxt: 1; session 33's
# review: 40 of them in 0.2 s spent nothing)
_FREE = frozenset({"AddOrder", "AddOrderBatch", "EditOrder", "AmendOrder", "CancelOrder", "CancelOrderBatch"})
_TWO = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
LOCKOUT_S = 900.0  # "a temporary lockout of 15 minutes" (guess: the documented upper range)


def kraken_costs(private_method: str | None) -> tuple[tuple[Budget, int], ...]:
    if private_method is None or private_method in _FREE:
        return ()
    return ((CALL_COUNTER, 2 if private_method in _TWO else 1),)


def kraken_errors(body: bytes | None) -> list[str]:
    """The `error` list of a Kraken answer (`{"error": [...], "result": ...}`), never any other text in it: an
    answer echoes what a bot wrote (an order's `cl_ord_id`), which must not read as Kraken's own error."""
    if not body or body.startswith(b'{"error":[]'):
        return []
    try:
        errors = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return []
    return [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []


def kraken_rate_limit_hold(body: bytes | None) -> tuple[float, str | None] | None:
    """`EAPI:Rate limit exceeded`: one call's decay (3 s at Starter); a lockout: everything, 15 minutes."""
    errors = kraken_errors(body)
    if any(e.startswith("EGeneral:Temporary lockout") for e in errors):
        return LOCKOUT_S, None
    if any(e.startswith("EAPI:Rate limit exceeded") for e in errors):
        return 3.0, CALL_COUNTER.name
    return None
