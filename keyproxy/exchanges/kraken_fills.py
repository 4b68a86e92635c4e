"""Kraken orders as the exchange reports them (docs/risk.md): `QueryOrders`, `OpenOrders`, `ClosedOrders`
answers (`vol_exec`, `cost`, `status`) and WebSocket v2 `executions` (`cum_qty`, `cum_cost`). Kraken names
a pair by its altname there (`XBTUSD`) whatever spelling the order used, so updates carry no scope: they
apply to the order keyproxy saw placed, found by its id (`txid`)."""

from __future__ import annotations

from typing import Any

from keyproxy.exchanges._fills import MAX_ORDERS, loads, qty
from keyproxy.exchanges.base import OrderUpdate, leg_order_ids, order_ids_in, published

FINAL = frozenset({"closed", "canceled", "expired", "filled"})
QUERIES = {"/0/private/QueryOrders": None, "/0/private/OpenOrders": "open", "/0/private/ClosedOrders": "closed"}


def _update(txid: object, o: Any) -> OrderUpdate | None:
    if not isinstance(txid, str) or not isinstance(o, dict):
        return None
    filled, cost = qty(o.get("vol_exec")), qty(o.get("cost"))
    descr = o.get("descr") if isinstance(o.get("descr"), dict) else {}
    if filled is None or cost is None or descr.get("type") not in ("buy", "sell"):
        return None
    return OrderUpdate(txid, "", descr["type"], published(descr.get("price")), published(o.get("vol")), filled, cost,
                       o.get("status") in FINAL)


def kraken_order_updates(path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if path not in QUERIES or status != 200:
        return ()
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("error") or not isinstance(doc.get("result"), dict):
        return ()
    key = QUERIES[path]
    orders = doc["result"] if key is None else doc["result"].get(key)
    if not isinstance(orders, dict):
        return ()
    return tuple(u for txid, o in list(orders.items())[:MAX_ORDERS] if (u := _update(txid, o)) is not None)


def kraken_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    """`{"channel": "executions", "data": [{"order_id", "side", "cum_qty", "cum_cost", "order_status"}]}`."""
    if '"executions"' not in text:
        return ()
    doc = loads(text)
    if not isinstance(doc, dict) or doc.get("channel") != "executions" or not isinstance(doc.get("data"), list):
        return ()
    out = []
    for e in doc["data"][:MAX_ORDERS]:
        if not isinstance(e, dict) or not isinstance(e.get("order_id"), str) or e.get("side") not in ("buy", "sell"):
            continue
        filled, cost = qty(e.get("cum_qty")), qty(e.get("cum_cost"))
        if filled is not None and cost is not None:
            out.append(OrderUpdate(e["order_id"], "", e["side"], published(e.get("limit_price")),
                                   published(e.get("order_qty")), filled, cost, e.get("order_status") in FINAL))
    return tuple(out)


def kraken_order_query_request(scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
    """`QueryOrders` of one txid (O...-.....-......)."""
    if not order_id or not all(c.isalnum() or c == "-" for c in order_id):
        return None
    return ("POST", "/0/private/QueryOrders", "", f"txid={order_id}".encode())


def kraken_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    """`ClosedOrders` since a time (every pair: the answer's ids find keyproxy's orders)."""
    return ("POST", "/0/private/ClosedOrders", "", f"start={max(0, since_ms // 1000)}".encode())


def kraken_amend_verdicts(body: bytes | str, legs: int) -> tuple[bool, ...]:
    """`EditOrder` (REST: no `error`, the new `txid`), `AmendOrder` (its `amend_id`), or `edit_order` /
    `amend_order` (WebSocket v2: `success`)."""
    doc = loads(body)
    if not isinstance(doc, dict):
        return (False,) * legs
    if "success" in doc:
        return (doc["success"] is True,) * legs
    result = doc.get("result")
    return (not doc.get("error") and isinstance(result, dict) and bool(result.get("txid") or result.get("amend_id")),
            ) * legs


def kraken_placed_ids(body: bytes | str) -> tuple[str, ...]:
    """The orders an order answer placed: `AddOrderBatch`'s `result.orders` one per leg in its place ("" for an
    order its own `error` refused), else every `txid`."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("error"):
        return ()
    result = doc.get("result")
    if isinstance(result, dict) and isinstance(result.get("orders"), list):
        return leg_order_ids(result["orders"], "txid", lambda o: not o.get("error"))
    return order_ids_in(doc, ("txid",))
