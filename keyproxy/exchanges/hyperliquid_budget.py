"""Hyperliquid's per-IP request weight (session 33's review: keyproxy charged Hyperliquid nothing).

Source: Hyperliquid "Rate limits and user limits" (hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/
rate-limits): "REST requests share an aggregated weight limit of 1200 per minute" per IP; an `/exchange` action
weighs 1 + floor(batch_length / 40), batch_length the length of the action's array (orders, cancels, modifies); the
`/info` requests l2Book, allMids, clearinghouseState, orderStatus, spotClearinghouseState and exchangeStatus weigh 2,
userRole 60, every other documented one 20 (some add weight per items returned, which a request cannot show before
its answer: charged at their base). The per-address action limit (10,000 requests, one more per USDC traded) is the
account's own and not modelled. A minute is taken as a rolling one (Hyperliquid does not say which).
"""

from __future__ import annotations

import json

from keyproxy.policy.budget import Budget

IP_WEIGHT = Budget("IP_WEIGHT", "ip", 1200, 60.0, kind="rolling")
BUDGETS = (IP_WEIGHT,)
_LIGHT = frozenset({"l2Book", "allMids", "clearinghouseState", "orderStatus", "spotClearinghouseState",
                    "exchangeStatus"})
_BATCHES = ("orders", "cancels", "modifies")  # an action's arrays (order, cancel, cancelByCloid, batchModify)


def hyperliquid_costs(path: str, body: bytes) -> tuple[tuple[Budget, int], ...]:
    """What a request to `/info` or `/exchange` weighs; a body keyproxy cannot read weighs the most it may."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if path == "/info":
        kind = doc.get("type") if isinstance(doc, dict) else None
        return ((IP_WEIGHT, 2 if kind in _LIGHT else 60 if kind == "userRole" else 20),)
    if path == "/exchange":
        action = doc.get("action") if isinstance(doc, dict) else None
        if not isinstance(action, dict):
            return ((IP_WEIGHT, 1),)  # refused before it goes (the adapter reads the same body)
        batch = max((len(v) for k in _BATCHES if isinstance(v := action.get(k), list)), default=0)
        return ((IP_WEIGHT, 1 + batch // 40),)
    return ()
