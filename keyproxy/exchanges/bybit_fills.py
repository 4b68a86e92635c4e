"""Bybit v5 orders as the exchange reports them: the cumulative fills the positions book believes.

Bybit's create answers name the order only (`orderId`); its fills come from order queries
(`GET /v5/order/realtime`, `/v5/order/history`: `cumExecQty`, `cumExecValue`, `orderStatus`), from the
private WebSocket's `order` topic, and from keyproxy's own `history` read (reconciliation). Spot and linear
(quantities in the base coin); inverse (contracts in USD, values in the coin) is not read.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from keyproxy.exchanges._fills import listed_verdicts, loads, qty
from keyproxy.exchanges.base import OrderUpdate, leg_order_ids, published
from keyproxy.policy.model import normalize_symbol

FINAL = frozenset({"Filled", "Cancelled", "Rejected", "Deactivated", "PartiallyFilledCanceled"})
READ = frozenset({"spot", "linear"})
QUERIES = frozenset({"/v5/order/realtime", "/v5/order/history"})


def _update(doc: Any, category: str) -> OrderUpdate | None:
    if not isinstance(doc, dict) or category not in READ:
        return None
    oid, symbol, side = doc.get("orderId"), doc.get("symbol"), doc.get("side")
    filled, value = qty(doc.get("cumExecQty")), qty(doc.get("cumExecValue"))
    if not isinstance(oid, str) or not oid or not isinstance(symbol, str) or side not in ("Buy", "Sell") \
            or filled is None or value is None:
        return None
    return OrderUpdate(oid, f"{category}:{normalize_symbol(symbol)}", side.lower(), published(doc.get("price")),
                       published(doc.get("qty")), filled, value, doc.get("orderStatus") in FINAL)


def bybit_order_updates(path: str, query: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if path not in QUERIES or not 200 <= status < 300 or not body:
        return ()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return ()
    result = doc.get("result") if isinstance(doc, dict) and doc.get("retCode") == 0 else None
    items = result.get("list") if isinstance(result, dict) else None
    category = result.get("category") if isinstance(result, dict) else None
    if not isinstance(category, str):
        category = (parse_qs(query).get("category") or [""])[0]
    return tuple(u for item in (items if isinstance(items, list) else [])[:1000]
                 if (u := _update(item, category)) is not None)


def bybit_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    """The private WebSocket's `order` topic: `{"topic": "order", "data": [order with its category]}`."""
    if '"order"' not in text:
        return ()
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return ()
    if not isinstance(doc, dict) or doc.get("topic") != "order" or not isinstance(doc.get("data"), list):
        return ()
    return tuple(u for item in doc["data"][:1000] if isinstance(item, dict)
                 and (u := _update(item, str(item.get("category", "")))) is not None)


def bybit_order_query_request(scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
    """`GET /v5/order/history?category=C&symbol=S&orderId=ID` (a finished order; one still open is not listed
    there, and stays live in the book)."""
    category, _, symbol = scope.partition(":")
    if category not in READ or not symbol or symbol == "*" or not order_id or "&" in order_id or "=" in order_id:
        return None
    return ("GET", "/v5/order/history", f"category={category}&symbol={symbol}&orderId={order_id}", b"")


def bybit_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    """`GET /v5/order/history?category=C&symbol=S&startTime=T&limit=50` (Bybit keeps 7 days within a query)."""
    category, _, symbol = scope.partition(":")
    if category not in READ or not symbol or symbol == "*":
        return None
    return ("GET", "/v5/order/history", f"category={category}&symbol={symbol}&startTime={max(0, since_ms)}&limit=50",
            b"")


def bybit_amend_verdicts(body: bytes | str, legs: int) -> tuple[bool, ...]:
    """A v5 amend answer, REST (`result`) or WebSocket (`data`): `retCode` 0 for the request, and a batch's
    `retExtInfo.list` code 0 per leg in its place (Bybit answers a refused batch leg inside a 2xx answer)."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("retCode") != 0:
        return (False,) * legs
    info = doc.get("retExtInfo")
    codes = info.get("list") if isinstance(info, dict) else None
    if isinstance(codes, list) and codes:
        return listed_verdicts(codes, legs, lambda c: isinstance(c, dict) and c.get("code") == 0)
    result = doc.get("result", doc.get("data"))
    if isinstance(result, dict) and isinstance(result.get("list"), list):  # a batch that listed no codes
        return listed_verdicts(result["list"], legs, lambda o: isinstance(o, dict) and bool(o.get("orderId")))
    return (True,) * legs


def bybit_placed_ids(body: bytes | str, key: str = "orderId") -> tuple[str, ...]:
    """The orders an order answer (REST `result`, WebSocket `data`) placed: a single order's `orderId`, or one
    id per leg of a batch's `result.list` in the leg's place, "" where `retExtInfo.list` refused it. `key=
    "orderLinkId"`: their client ids, the same way."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("retCode") != 0:
        return ()
    result = doc.get("result", doc.get("data"))
    if not isinstance(result, dict):
        return ()
    if not isinstance(result.get("list"), list):
        return leg_order_ids([result], key)
    info = doc.get("retExtInfo")
    codes = info.get("list") if isinstance(info, dict) else None
    ids = leg_order_ids(result["list"], key)
    if isinstance(codes, list):
        ids = tuple(oid if i < len(codes) and isinstance(codes[i], dict) and codes[i].get("code") == 0 else ""
                    for i, oid in enumerate(ids))
    return ids
