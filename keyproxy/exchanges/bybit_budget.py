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

import re
from collections.abc import Mapping

from keyproxy.policy.budget import Budget

IP_REQUESTS = Budget("IP_REQUESTS", "ip", 600, 5.0, kind="rolling")
UID_ENDPOINT = Budget("UID_ENDPOINT", "endpoint", 10, 1.0, "x-bapi-limit-status", kind="rolling",
                      header_counts="remaining", limit_header="x-bapi-limit")
BUDGETS = (IP_REQUESTS, UID_ENDPOINT)
IP_BAN_S = 600.0  # "wait for at least 10 minutes"
_TOO_MANY_VISITS = re.compile(rb'"retCode"\s*:\s*10006\b')


def bybit_costs(private: bool) -> tuple[tuple[Budget, int], ...]:
    """Every request spends the IP's budget; a private one also its endpoint's for the account."""
    return ((IP_REQUESTS, 1), (UID_ENDPOINT, 1)) if private else ((IP_REQUESTS, 1),)


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
