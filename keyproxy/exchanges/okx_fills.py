"""OKX spot orders as the exchange reports them (docs/risk.md): order queries (`GET /api/v5/trade/order`,
`orders-pending`, `orders-history`: `accFillSz`, `avgPx`, `state`) and the private WebSocket's `orders`
channel. Place answers name the order only. Swaps and futures (sizes in contracts) are not read yet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from keyproxy.exchanges._fills import MAX_ORDERS, listed_verdicts, loads, qty
from keyproxy.exchanges.base import ALGO, OrderUpdate, leg_order_ids, published
from keyproxy.exchanges.okx_algo import CANCEL_ALGOS, QUERIES as ALGO_QUERIES, algo_placed_ids, algo_query_request, \
    algo_updates, rows_updates
from keyproxy.exchanges.okx_facts import market_of
from keyproxy.policy.model import normalize_symbol

FINAL = frozenset({"filled", "canceled", "mmp_canceled"})
_ZERO = qty("0") or Decimal(0)
QUERIES = frozenset({"/api/v5/trade/order", "/api/v5/trade/orders-pending", "/api/v5/trade/orders-history",
                     "/api/v5/trade/orders-history-archive"})


def _update(o: Any) -> OrderUpdate | None:
    if not isinstance(o, dict) or not isinstance(o.get("ordId"), str) or not isinstance(o.get("instId"), str):
        return None
    if market_of(o["instId"]) != "spot" or o.get("side") not in ("buy", "sell"):
        return None
    filled = qty(o.get("accFillSz"))
    avg = qty(o.get("avgPx")) if o.get("avgPx") not in ("", None) else (qty("0") if filled == 0 else None)
    if filled is None or avg is None:
        return None
    return OrderUpdate(o["ordId"], f"spot:{normalize_symbol(o['instId'])}", o["side"], published(o.get("px")),
                       published(o.get("sz")), filled, filled * avg, o.get("state") in FINAL)


def _parent(o: Any) -> OrderUpdate | None:
    """An order an algo order placed when triggered names it (`algoId`): that algo order, ended, became this one.
    Read before the order's own update, so the book (or, where it holds none, the record) makes it the stop's
    placer's at once: a bot listing the account's orders to cancel another bot's stop's order meets its owner
    (session 30's review)."""
    if not isinstance(o, dict) or not o.get("algoId") or not isinstance(o.get("algoId"), str):
        return None
    inst, oid = o.get("instId"), o.get("ordId")
    market = market_of(inst) if isinstance(inst, str) else None
    if market is None or not isinstance(oid, str) or not oid:
        return None
    return OrderUpdate(ALGO + o["algoId"], f"{market}:{normalize_symbol(inst)}", "", None, None, _ZERO, _ZERO,
                       True, oid)


def _updates(data: Any) -> tuple[OrderUpdate, ...]:
    out: list[OrderUpdate] = []
    for o in (data if isinstance(data, list) else [])[:MAX_ORDERS]:
        out += [u for u in (_parent(o), _update(o)) if u is not None]
    return tuple(out)


def okx_order_updates(method: str, path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if path in ALGO_QUERIES or path == CANCEL_ALGOS:
        return algo_updates(method, path, status, body)
    if method != "GET" or path not in QUERIES or status != 200:
        return ()
    doc = loads(body)
    return _updates(doc.get("data")) if isinstance(doc, dict) and doc.get("code") == "0" else ()


def okx_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    """The `orders` channel's orders, and the `orders-algo` channel's algo orders (what a stop became)."""
    if '"orders' not in text:
        return ()
    doc = loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("arg"), dict):
        return ()
    channel = doc["arg"].get("channel")
    if channel == "orders-algo":
        return rows_updates(doc.get("data"))
    return _updates(doc.get("data")) if channel == "orders" else ()


_QUOTES = ("USDT", "USDC", "USD", "EUR", "BTC", "ETH", "DAI", "OKB", "TRY", "BRL", "AUD", "SGD")


def okx_order_query_request(scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
    """`GET /api/v5/trade/order?instId=B-Q&ordId=ID` of a spot order (a scope spells the instrument without its
    dash: its quote is read from the end; a wrong split is an error answer, which teaches nothing)."""
    if order_id.startswith(ALGO):
        return algo_query_request(order_id)
    market, _, symbol = scope.partition(":")
    quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), None)
    if market != "spot" or quote is None or not order_id.isdigit():
        return None
    return ("GET", "/api/v5/trade/order", f"instId={symbol[:-len(quote)]}-{quote}&ordId={order_id}", b"")


def okx_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    """The last 100 finished spot orders (the instrument's own id, with its dashes, is not in a scope)."""
    if not scope.startswith("spot:"):
        return None
    return ("GET", "/api/v5/trade/orders-history", "instType=SPOT&limit=100", b"")


def okx_amend_verdicts(body: bytes | str, legs: int) -> tuple[bool, ...]:
    """An amend answer, REST or WebSocket: `sCode` "0" per leg in `data`, in the leg's place (OKX answers
    `code` "1" or "2", all or some refused, inside a 2xx answer)."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("code") not in ("0", "2"):
        return (False,) * legs
    return listed_verdicts(doc.get("data"), legs, lambda d: isinstance(d, dict) and d.get("sCode") == "0")


def okx_placed_ids(body: bytes | str, key: str = "ordId") -> tuple[str, ...]:
    """The orders an order answer (REST or WebSocket) placed, one per leg of `data` in the leg's place: "" for a
    leg refused (`sCode` not "0": OKX answers a batch refused in part with `code` "2" inside a 2xx answer).
    `key="clOrdId"`: their client ids, the same way ("" where the order has none). An algo order's answer
    (`order-algo`) names its `algoId`, which a cancel of it names: read as its id, `algo#<algoId>`."""
    doc = loads(body)
    if not isinstance(doc, dict) or doc.get("code") not in ("0", "1", "2"):
        return ()
    ids = leg_order_ids(doc.get("data"), key, lambda d: d.get("sCode") == "0")
    if key != "ordId" or all(ids):
        return ids
    algos = algo_placed_ids(doc.get("data"))
    return tuple(i or a for i, a in zip(ids, algos, strict=True))
