"""Hyperliquid orders as the exchange reports them (docs/risk.md).

An `order` action's answer lists one status per order, in the order's place: `filled` (`totalSz` at
`avgPx`: done), `resting` (its `oid`), or an error. A `cancel` answer says `success` per cancel (the
order ended; the `oid` is in the request). `POST /info` `userFills` / `userFillsByTime` answers list
fills (each one a part of an order: an order's fill is the sum of its fills in the answer, never less
than what keyproxy already holds) and `orderStatus` says whether an order still rests. Markets are named
by asset index in actions and by coin in answers, so updates carry no scope: they find keyproxy's order
by its id.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from keyproxy.exchanges._fills import MAX_ORDERS, listed_verdicts, loads, qty
from keyproxy.exchanges.base import OrderUpdate, leg_order_ids

ENDED = frozenset({"canceled", "rejected", "marginCanceled", "vaultWithdrawalCanceled", "openInterestCapCanceled",
                   "selfTradeCanceled", "reduceOnlyCanceled", "siblingFilledCanceled", "delistedCanceled",
                   "liquidatedCanceled", "scheduledCancel"})
NO_ORDER = OrderUpdate("", "", "", None, None, Decimal(0), Decimal(0), False)  # keeps an error's place


def _statuses(body: bytes) -> list[Any]:
    doc = loads(body)
    try:
        statuses = doc["response"]["data"]["statuses"] if doc.get("status") == "ok" else []
    except (KeyError, TypeError, AttributeError):
        return []
    return statuses[:MAX_ORDERS] if isinstance(statuses, list) else []


def _placed(body: bytes) -> tuple[OrderUpdate, ...]:
    out = []
    for st in _statuses(body):
        done = st.get("filled") if isinstance(st, dict) else None
        resting = st.get("resting") if isinstance(st, dict) else None
        if isinstance(done, dict) and isinstance(done.get("oid"), int):
            size, price = qty(done.get("totalSz")), qty(done.get("avgPx"))
            out.append(OrderUpdate(str(done["oid"]), "", "", None, None, size, size * price, True)
                       if size is not None and price is not None else NO_ORDER)
        elif isinstance(resting, dict) and isinstance(resting.get("oid"), int):
            out.append(OrderUpdate(str(resting["oid"]), "", "", None, None, Decimal(0), Decimal(0), False))
        else:
            out.append(NO_ORDER)
    return tuple(out)


def _cancelled(action: dict[str, Any], body: bytes) -> tuple[OrderUpdate, ...]:
    cancels = action.get("cancels") if isinstance(action.get("cancels"), list) else []
    return tuple(OrderUpdate(str(c["o"]), "", "", None, None, Decimal(0), Decimal(0), True)
                 for c, st in zip(cancels, _statuses(body), strict=False)
                 if st == "success" and isinstance(c, dict) and isinstance(c.get("o"), int))


def hyperliquid_cancelled_cloids(sent: bytes, status: int, body: bytes) -> tuple[str, ...]:
    """The cloids a `cancelByCloid` cancelled: each leg whose status is "success", lowercased."""
    if status != 200 or not body:
        return ()
    try:
        action = json.loads(sent)["action"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return ()
    if not isinstance(action, dict) or action.get("type") != "cancelByCloid" \
            or not isinstance(action.get("cancels"), list):
        return ()
    return tuple(c["cloid"].lower() for c, st in zip(action["cancels"], _statuses(body), strict=False)
                 if st == "success" and isinstance(c, dict) and isinstance(c.get("cloid"), str))


def _fills(answer: Any) -> tuple[OrderUpdate, ...]:
    sums: dict[int, tuple[Decimal, Decimal, str]] = {}
    for fill in (answer if isinstance(answer, list) else [])[:2000]:
        if not isinstance(fill, dict) or not isinstance(fill.get("oid"), int) or fill.get("side") not in ("B", "A"):
            continue
        size, price = qty(fill.get("sz")), qty(fill.get("px"))
        if size is None or price is None:
            continue
        got = sums.get(fill["oid"], (Decimal(0), Decimal(0), fill["side"]))
        sums[fill["oid"]] = (got[0] + size, got[1] + size * price, got[2])
    return tuple(OrderUpdate(str(oid), "", "buy" if side == "B" else "sell", None, None, size, value, False)
                 for oid, (size, value, side) in list(sums.items())[:MAX_ORDERS])


def hyperliquid_order_updates(path: str, sent: bytes, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if status != 200 or not body:
        return ()
    try:
        request = json.loads(sent)
    except (ValueError, RecursionError):
        return ()
    if not isinstance(request, dict):
        return ()
    if path == "/exchange":
        action = request.get("action")
        kind = action.get("type") if isinstance(action, dict) else None
        if kind in ("order", "batchModify"):  # a modify may fill at once, under the oid its status names
            return _placed(body)
        return _cancelled(action, body) if kind == "cancel" else ()  # type: ignore[arg-type]
    if path != "/info":
        return ()
    kind, answer = request.get("type"), loads(body)
    if kind in ("userFills", "userFillsByTime"):
        return _fills(answer)
    if kind == "orderStatus" and isinstance(answer, dict) and isinstance(answer.get("order"), dict):
        entry = answer["order"]
        order = entry.get("order") if isinstance(entry.get("order"), dict) else {}
        if entry.get("status") in ENDED and isinstance(order.get("oid"), int):
            return (OrderUpdate(str(order["oid"]), "", "", None, None, Decimal(0), Decimal(0), True),)
    return ()


def hyperliquid_reconcile_request(owner: str, since_ms: int) -> tuple[str, str, str, bytes]:
    """The account's recent fills (`userFills`, public: the master address is not a secret)."""
    return ("POST", "/info", "", json.dumps({"type": "userFills", "user": owner}).encode())


def hyperliquid_amend_verdicts(body: bytes, legs: int) -> tuple[bool, ...]:
    """`modify` / `batchModify`: `status` "ok" (a modify answers `{"type": "default"}`; a batch may list a
    status per leg, an `error` one refused), else "err" with the reason: all refused."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("status") != "ok":
        return (False,) * legs
    response = doc.get("response")
    data = response.get("data") if isinstance(response, dict) else None
    statuses = data.get("statuses") if isinstance(data, dict) else None
    if not isinstance(statuses, list):
        return (True,) * legs
    return listed_verdicts(statuses, legs, lambda s: s == "success" or isinstance(s, dict) and "error" not in s)


def hyperliquid_placed_ids(body: bytes) -> tuple[str, ...]:
    """One oid per leg of an `order` or `batchModify` answer's statuses, in the leg's place: a `resting` or
    `filled` one's oid, "" for an error (a modify's oid may be new: the order it leaves resting)."""
    return leg_order_ids([(st.get("resting") or st.get("filled")) if isinstance(st, dict) else None
                          for st in _statuses(body)], "oid")
