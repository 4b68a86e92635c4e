"""Coinbase Advanced Trade spot orders as the exchange reports them (docs/risk.md): `GET .../orders/
historical/{id}` and `/historical/batch` (`filled_size`, `filled_value`, `status`) and the WebSocket `user`
channel (`cumulative_quantity`, `filled_value`). Create answers name the order only; futures are not read."""

from __future__ import annotations

from typing import Any

from keyproxy.exchanges._fills import MAX_ORDERS, loads, qty
from keyproxy.exchanges.base import OrderUpdate
from keyproxy.exchanges.coinbase_facts import market_of
from keyproxy.policy.model import normalize_symbol

FINAL = frozenset({"FILLED", "CANCELLED", "EXPIRED", "FAILED"})
PREFIX = "/api/v3/brokerage/orders/historical/"


def _update(o: Any, side_key: str, filled_key: str) -> OrderUpdate | None:
    if not isinstance(o, dict) or not isinstance(o.get("order_id"), str) or not isinstance(o.get("product_id"), str):
        return None
    side = o.get(side_key)
    filled, value = qty(o.get(filled_key)), qty(o.get("filled_value"))
    if market_of(o["product_id"]) != "spot" or side not in ("BUY", "SELL") or filled is None or value is None:
        return None
    return OrderUpdate(o["order_id"], f"spot:{normalize_symbol(o['product_id'])}", side.lower(), None, None, filled,
                       value, o.get("status") in FINAL)


def coinbase_order_updates(method: str, path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if method != "GET" or not path.startswith(PREFIX) or path.endswith("/fills") or status != 200:
        return ()
    doc = loads(body)
    if not isinstance(doc, dict):
        return ()
    orders = doc.get("orders") if isinstance(doc.get("orders"), list) else [doc.get("order")]
    return tuple(u for o in orders[:MAX_ORDERS] if (u := _update(o, "side", "filled_size")) is not None)


def coinbase_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    if '"user"' not in text:
        return ()
    doc = loads(text)
    if not isinstance(doc, dict) or doc.get("channel") != "user" or not isinstance(doc.get("events"), list):
        return ()
    out: list[OrderUpdate] = []
    for event in doc["events"][:100]:
        for o in (event.get("orders") if isinstance(event, dict) and isinstance(event.get("orders"), list) else []):
            if (u := _update(o, "order_side", "cumulative_quantity")) is not None:
                out.append(u)
    return tuple(out[:MAX_ORDERS])


def coinbase_order_query_request(scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
    """`GET /api/v3/brokerage/orders/historical/{order_id}` (a UUID)."""
    if not scope.startswith("spot:") or not order_id or not all(c.isalnum() or c == "-" for c in order_id):
        return None
    return ("GET", PREFIX + order_id, "", b"")


def coinbase_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    return ("GET", PREFIX + "batch", "limit=100", b"") if scope.startswith("spot:") else None


def coinbase_amend_verdicts(body: bytes, legs: int) -> tuple[bool, ...]:
    """`POST /api/v3/brokerage/orders/edit`: `{"success": true}`, else `success` false with `errors`."""
    doc = loads(body)
    return (isinstance(doc, dict) and doc.get("success") is True,) * legs
