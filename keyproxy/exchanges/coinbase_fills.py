"""Coinbase Advanced Trade spot orders as the exchange reports them (docs/risk.md): `GET .../orders/
historical/{id}` and `/historical/batch` (`filled_size`, `filled_value`, `status`) and the WebSocket `user`
channel (`cumulative_quantity`, `filled_value`). Create answers name the order only; futures are not read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyproxy.exchanges._fills import MAX_ORDERS, loads, qty
from keyproxy.exchanges.base import OrderUpdate, Reported
from keyproxy.exchanges.coinbase_facts import market_of
from keyproxy.policy.model import normalize_symbol

FINAL = frozenset({"FILLED", "CANCELLED", "EXPIRED", "FAILED"})
PREFIX = "/api/v3/brokerage/orders/historical/"


def created_at(value: object) -> float | None:
    """An order's `created_time` (REST) or `creation_time` (the `user` channel), RFC 3339 in UTC
    (`2026-04-07T14:29:55.123456Z`, fractions of any length), as epoch seconds; None when it is not one."""
    if not isinstance(value, str) or not 20 <= len(value) <= 40:
        return None
    head, dot, rest = value.partition(".")
    if dot:  # fractions cut to microseconds (fromisoformat takes at most six digits on every Python version)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = head + "." + rest[:min(digits, 6)] + rest[digits:] if digits else head + rest
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.timestamp() if stamp.tzinfo is not None else None


def _update(o: Any, side_key: str, filled_key: str, created_key: str) -> OrderUpdate | None:
    if not isinstance(o, dict) or not isinstance(o.get("order_id"), str) or not isinstance(o.get("product_id"), str):
        return None
    side = o.get(side_key)
    filled, value = qty(o.get(filled_key)), qty(o.get("filled_value"))
    if market_of(o["product_id"]) != "spot" or side not in ("BUY", "SELL") or filled is None or value is None:
        return None
    # when Coinbase made it: a create reusing a client id is answered with the order that holds it, whenever made
    return OrderUpdate(o["order_id"], f"spot:{normalize_symbol(o['product_id'])}", side.lower(), None, None, filled,
                       value, o.get("status") in FINAL, created=created_at(o.get(created_key)))


def coinbase_order_updates(method: str, path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    return tuple(u for o in _reported(method, path, status, body)[:MAX_ORDERS]
                 if (u := _update(o, "side", "filled_size", "created_time")) is not None)


def coinbase_reports_client_ids(path: str) -> bool:
    """An order read (`historical/{id}`, `historical/batch`): its orders carry their client ids."""
    return path.startswith(PREFIX) and not path.endswith("/fills")


def _reported(method: str, path: str, status: int, body: bytes) -> list[Any]:
    """Every order a read's answer reports (`historical/{id}`, `historical/batch`)."""
    if method != "GET" or not coinbase_reports_client_ids(path) or status != 200:
        return []
    doc = loads(body)
    if not isinstance(doc, dict):
        return []
    return doc["orders"] if isinstance(doc.get("orders"), list) else [doc.get("order")]  # type: ignore[no-any-return]


def _streamed(text: str) -> list[Any]:
    """Every order a `user` channel event reports."""
    if '"user"' not in text:
        return []
    doc = loads(text)
    if not isinstance(doc, dict) or doc.get("channel") != "user" or not isinstance(doc.get("events"), list):
        return []
    return [o for event in doc["events"]
            for o in (event.get("orders") if isinstance(event, dict) and isinstance(event.get("orders"), list) else [])]


def coinbase_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    return tuple(u for o in _streamed(text)[:MAX_ORDERS]
                 if (u := _update(o, "order_side", "cumulative_quantity", "creation_time")) is not None)


def _client_ids(orders: list[Any], created_key: str) -> tuple[Reported, ...]:
    return tuple((o["order_id"], f"{market}:{normalize_symbol(o['product_id'])}", o["client_order_id"],
                  created_at(o.get(created_key)))
                 for o in orders
                 if isinstance(o, dict) and isinstance(o.get("order_id"), str) and o["order_id"]
                 and isinstance(o.get("client_order_id"), str) and o["client_order_id"]
                 and isinstance(o.get("product_id"), str) and (market := market_of(o["product_id"])) is not None)


def coinbase_reported_client_ids(method: str, path: str, status: int, body: bytes) -> tuple[Reported, ...]:
    """(order id, scope, client id) of every order a read reports, however many (the bot reads them all): a create
    reusing a client id is answered with the order holding it, so one of no bot's is recorded as placed outside
    keyproxy (`OrderOwners.learn_outside`)."""
    return _client_ids(_reported(method, path, status, body), "created_time")


def coinbase_streamed_client_ids(text: str) -> tuple[Reported, ...]:
    """The same of a `user` channel event's orders."""
    return _client_ids(_streamed(text), "creation_time")


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
