"""Bybit's rate budgets (issue 19): what it counts, per what, and how it says a limit was hit.

Source: Bybit V5 "Rate Limit Rules" (https://bybit-exchange.github.io/docs/v5/rate-limit). Per IP: 600
requests in any 5-second window across every host of the environment; over it Bybit answers HTTP 403
("access too frequent") and bans the IP for at least 10 minutes. Per UID and endpoint: a rolling
one-second limit (default 10/s for futures and options, 20/s for spot; higher for VIP and PRO accounts),
reported on every private answer as `X-Bapi-Limit` (the limit), `X-Bapi-Limit-Status` (what remains) and
`X-Bapi-Limit-Reset-Timestamp`; over it the answer is retCode 10006 "Too many visits!". keyproxy starts
from the futures default (the stricter) and learns each endpoint's real limit from the first answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from keyproxy.policy.budget import Budget

IP_REQUESTS = Budget("IP_REQUESTS", "ip", 600, 5.0, kind="rolling")
UID_ENDPOINT = Budget("UID_ENDPOINT", "endpoint", 10, 1.0, "x-bapi-limit-status", kind="rolling",
                      header_counts="remaining", limit_header="x-bapi-limit")
# "Do not establish more than 500 connections within a 5-minute window" (stream.bybit.com, every path)
WS_CONNECTIONS = Budget("WS_CONNECTIONS", "ip", 500, 300.0, kind="rolling")
BUDGETS = (IP_REQUESTS, UID_ENDPOINT, WS_CONNECTIONS)
IP_BAN_S = 600.0  # "wait for at least 10 minutes"
_TOO_MANY_VISITS = re.compile(rb'"retCode"\s*:\s*10006\b')
# a batch spends its single twin's per-UID limit, one per order (Bybit's VIP rate-limit rules count a batch's
# orders against the single order's limit; read otherwise, counting them there is the stricter): so does the
# WebSocket trade op of the same name (Bybit answers it with the same X-Bapi-Limit for "this op type")
SINGLE_TWINS = {"/v5/order/create-batch": "/v5/order/create", "/v5/order/amend-batch": "/v5/order/amend",
                "/v5/order/cancel-batch": "/v5/order/cancel"}
BATCH_MAX = 20  # Bybit takes at most 20 orders a batch (options; 10 linear, spot): one it cannot read costs that


def bybit_costs(private: bool, path: str = "", body: bytes = b"", http: bool = True) -> tuple[tuple[Budget, int], ...]:
    """An HTTP request spends the IP's budget; a private one also its endpoint's for the account, a batch one per
    order. A WebSocket trade op (`http` False) spends only the endpoint's: Bybit's IP limit counts HTTP requests."""
    orders = batch_orders(body) if path in SINGLE_TWINS else 1
    uid = ((UID_ENDPOINT, orders),) if private else ()
    return ((IP_REQUESTS, 1), *uid) if http else uid


def batch_orders(body: bytes) -> int:
    """How many orders a batch's body (`{"category", "request": [...]}`) carries; the most Bybit takes when it
    cannot be read (never an exception: the request is refused later as malformed, or counted at its worst)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return BATCH_MAX
    request = doc.get("request") if isinstance(doc, dict) else None
    return min(len(request), BATCH_MAX) if isinstance(request, list) and request else BATCH_MAX


def bybit_rate_limit_hold(status: int, headers: Mapping[str, str], body: bytes | None,
                          now_ms: int) -> tuple[float, str | None] | None:
    """403: the IP is banned (every budget, 10 minutes); retCode 10006: the endpoint's limit, until the
    reset time Bybit gave (a second without one)."""
    if status == 403:
        return IP_BAN_S, None
    if body is None or not _TOO_MANY_VISITS.search(body[:512]):
        return None
    try:
        reset_ms = int(headers.get("x-bapi-limit-reset-timestamp", ""))
    except ValueError:
        return 1.0, UID_ENDPOINT.name
    return min(60.0, max(0.1, (reset_ms - now_ms) / 1000)), UID_ENDPOINT.name
