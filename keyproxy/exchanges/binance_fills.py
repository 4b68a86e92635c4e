"""Binance orders as the exchange reports them: the cumulative fills the positions book believes.

Read from every 2xx answer on an order path (place, query, cancel, open and all orders, batches,
cancel-replace; spot, margin, USD-M), from WebSocket API results, and from user-data events
(`executionReport`, USD-M `ORDER_TRADE_UPDATE`). COIN-M (contracts worth USD, fills in base) is not read.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from keyproxy.exchanges._fills import listed_verdicts, loads, qty
from keyproxy.exchanges.base import OrderUpdate, leg_order_ids, order_ids_in, published
from keyproxy.exchanges.binance_facts import ALGO, market_of_path
from keyproxy.policy.model import normalize_symbol

ZERO = Decimal(0)
FINAL = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH"})
_WRAPPERS = ("newOrderResponse", "cancelResponse", "orderReports", "orders", "data")
READ_MARKETS = frozenset({"spot", "margin", "isolated", "usdm", "papi-um", "papi-margin"})
MAX_ORDERS = 1000  # read from one answer at most (allOrders answers up to 1000)


def binance_order_updates(path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    if not 200 <= status < 300 or "rder" not in path or not body or market_of_path(path) not in READ_MARKETS:
        return ()
    doc = loads(body)
    return binance_order_updates_in(path, status, doc) if doc is not None else ()


_RESTING = ("NEW", "PARTIALLY_FILLED")
# where an algo order becomes an order of its own (COIN-M's Algo Service is not documented as USD-M's is: read alike,
# so an id guessed there is asked about first, never taken as an order of no owner)
STOP_MARKETS = frozenset({"usdm", "papi-um", "coinm"})


def binance_resting_client_ids(method: str, path: str, status: int, body: bytes) -> tuple[tuple[str, str, str], ...]:
    """(order id, scope, client id) of each resting order a read answer lists with a client id: the order a bot's
    stop became carries the stop's `clientAlgoId` as its client id, on record as the bot's before keyproxy has read
    what the stop became (proxy/order_owners.py `learn_resting_clients`)."""
    if method != "GET" or not 200 <= status < 300 or "rder" not in path or not body:
        return ()
    market = market_of_path(path)
    if market not in STOP_MARKETS:
        return ()
    doc = loads(body)
    rows = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else []
    return tuple((str(o["orderId"]), f"{market}:{normalize_symbol(o['symbol'])}", o["clientOrderId"])
                 for o in rows[:MAX_ORDERS]
                 if isinstance(o, dict) and o.get("status") in _RESTING and isinstance(o.get("symbol"), str)
                 and isinstance(o.get("clientOrderId"), str) and o["clientOrderId"]
                 and isinstance(o.get("orderId"), int) and not isinstance(o.get("orderId"), bool))


def binance_order_updates_in(path: str, status: int, doc: Any) -> tuple[OrderUpdate, ...]:
    """The same, from an answer already parsed (a WebSocket API frame's `result`)."""
    if not 200 <= status < 300 or "rder" not in path:
        return ()
    market = market_of_path(path)
    if market not in READ_MARKETS:
        return ()
    out: list[OrderUpdate] = []
    _walk(doc, market, out, 0)
    return tuple(out[:MAX_ORDERS])


def _walk(doc: Any, market: str, out: list[OrderUpdate], depth: int) -> None:
    if depth > 3 or len(out) >= MAX_ORDERS:
        return
    if isinstance(doc, list):
        for item in doc[:MAX_ORDERS]:
            _walk(item, market, out, depth + 1)
    elif isinstance(doc, dict):
        update = _order(doc, market)
        if update is not None:
            out.append(update)
            return
        for key in _WRAPPERS:
            if key in doc:
                _walk(doc[key], market, out, depth + 1)


# an algo order rests (off the book) while NEW, and TRIGGERING (sent to the matching engine, no order yet); from
# TRIGGERED on, the order it became (`actualOrderId`) is what rests and fills
_ALGO_ENDED = ("CANCELED", "EXPIRED", "REJECTED")
_ALGO_TRIGGERED = ("TRIGGERED", "FINISHED")


def _algo(doc: dict[str, Any], market: str) -> OrderUpdate | None:
    """An algo order (`algoId`: a place, query or listing answer; `quantity` not `origQty`, no fills of its own), or
    its cancel's answer (`code` "200", no symbol), under its `ALGO` id; what it became, `actualOrderId`, spawned."""
    algo_id, symbol, side = doc.get("algoId"), doc.get("symbol"), doc.get("side")
    if not isinstance(algo_id, int) or isinstance(algo_id, bool):
        return None
    if "algoStatus" not in doc:  # a cancel's answer: ended, wherever it rested
        return OrderUpdate(f"{ALGO}{algo_id}", "", "", None, None, ZERO, ZERO, True) \
            if str(doc.get("code")) == "200" else None
    if not isinstance(symbol, str) or side not in ("BUY", "SELL"):
        return None
    actual = doc.get("actualOrderId")
    spawned = str(actual) if isinstance(actual, int | str) and not isinstance(actual, bool) \
        and str(actual).isascii() and str(actual).isdigit() and int(actual) > 0 else ""
    status = doc.get("algoStatus")
    # it rests no longer once cancelled, expired or rejected, or once the order it became is named (triggered
    # without that name, or in a state not documented: its size still counts, keyproxy learns no less than it knows)
    final = status in _ALGO_ENDED or status in _ALGO_TRIGGERED and bool(spawned)
    return OrderUpdate(f"{ALGO}{algo_id}", f"{market}:{normalize_symbol(symbol)}", side.lower(),
                       published(doc.get("price")) or None, published(doc.get("quantity")) or None, ZERO, ZERO,
                       final, str(int(spawned)) if spawned else "")


def _order(doc: dict[str, Any], market: str) -> OrderUpdate | None:
    """An order document (REST or WebSocket API result) with its cumulative fill, else None (an ACK)."""
    if "algoId" in doc and "orderId" not in doc:
        return _algo(doc, market)
    order_id, symbol, side = doc.get("orderId"), doc.get("symbol"), doc.get("side")
    filled = qty(doc.get("executedQty"))
    if not isinstance(order_id, int) or isinstance(order_id, bool) or not isinstance(symbol, str) \
            or side not in ("BUY", "SELL") or filled is None:
        return None
    quote = qty(doc.get("cummulativeQuoteQty", doc.get("cumQuote")))
    if quote is None:
        avg = qty(doc.get("avgPrice"))
        quote = filled * avg if avg is not None else None
    if quote is None:
        return None
    price = published(doc.get("price"))
    if market == "margin" and doc.get("isIsolated") is True:  # an isolated margin order's (`binance_market`)
        market = "isolated"
    return OrderUpdate(str(order_id), f"{market}:{normalize_symbol(symbol)}", side.lower(), price or None,
                       published(doc.get("origQty")), filled, quote, doc.get("status") in FINAL)


def binance_stream_updates(text: str) -> tuple[OrderUpdate, ...]:
    """`executionReport` (spot, margin) and `ORDER_TRADE_UPDATE` (USD-M), bare, as a WebSocket API
    subscription's `event`, or in a combined stream's `data`."""
    if "executionReport" not in text and "ORDER_TRADE_UPDATE" not in text and "ALGO_UPDATE" not in text:
        return ()
    doc = loads(text)
    if isinstance(doc, dict):
        doc = doc.get("event", doc.get("data", doc))
    if not isinstance(doc, dict):
        return ()
    if doc.get("e") == "executionReport":
        return _event(doc, "spot", doc.get("Z"))
    if doc.get("e") == "ORDER_TRADE_UPDATE" and isinstance(doc.get("o"), dict):
        o = doc["o"]
        filled, avg = qty(o.get("z")), qty(o.get("ap"))
        return _event(o, "usdm", str(filled * avg) if filled is not None and avg is not None else None)
    if doc.get("e") == "ALGO_UPDATE" and isinstance(doc.get("o"), dict):  # a USD-M algo order's ("Algo Order Update")
        o = doc["o"]
        algo = _algo({"algoId": o.get("aid"), "symbol": o.get("s"), "side": o.get("S"), "price": o.get("p"),
                      "quantity": o.get("q"), "algoStatus": o.get("X"), "actualOrderId": o.get("ai")}, "usdm")
        return (algo,) if algo is not None else ()
    return ()


def _event(e: dict[str, Any], market: str, quote: object) -> tuple[OrderUpdate, ...]:
    order_id, symbol, side = e.get("i"), e.get("s"), e.get("S")
    filled, cum_quote = qty(e.get("z")), qty(quote)
    if not isinstance(order_id, int) or isinstance(order_id, bool) or not isinstance(symbol, str) \
            or side not in ("BUY", "SELL") or filled is None or cum_quote is None:
        return ()
    price = published(e.get("p"))
    return (OrderUpdate(str(order_id), f"{market}:{normalize_symbol(symbol)}", side.lower(), price or None,
                        published(e.get("q")), filled, cum_quote, e.get("X") in FINAL),)


# keyproxy's own reconciliation read: every order of one symbol since a time (weight 20 spot, 5 USD-M, 200 cross
# margin, 5 and 100 portfolio margin; one read per account a minute at most, proxy/risk_watch.py)
_ALL_ORDERS = {"spot": "/api/v3/allOrders", "usdm": "/fapi/v1/allOrders", "margin": "/sapi/v1/margin/allOrders",
               "isolated": "/sapi/v1/margin/allOrders", "papi-um": "/papi/v1/um/allOrders",
               "papi-margin": "/papi/v1/margin/allOrders"}
# a user-data event names the engine: `executionReport` is a spot, cross or isolated margin, or portfolio-margin
# margin order's (one id sequence per symbol), `ORDER_TRADE_UPDATE` a USD-M or portfolio-margin UM order's
STREAM_MARKETS = {"spot": ("spot", "margin", "isolated", "papi-margin"), "usdm": ("usdm", "papi-um")}


_ONE_ORDER = {"spot": "/api/v3/order", "usdm": "/fapi/v1/order", "coinm": "/dapi/v1/order",
              "margin": "/sapi/v1/margin/order", "isolated": "/sapi/v1/margin/order", "papi-um": "/papi/v1/um/order",
              "papi-margin": "/papi/v1/margin/order"}
_FUTURES = frozenset({"usdm", "coinm", "papi-um"})
_CONTRACT_TAIL = re.compile(r"(?<=[A-Z])(PERP|\d{6})$")  # BTCUSD_PERP, BTCUSDT_250328: a scope spells them bare


def _market_symbol(scope: str) -> tuple[str, str]:
    """(market, symbol as Binance spells it) of a scope, for keyproxy's own reads: a futures contract's underscore,
    which a scope leaves out, put back."""
    market, _, symbol = scope.partition(":")
    return market, _CONTRACT_TAIL.sub(r"_\1", symbol) if market in _FUTURES else symbol


_ONE_ALGO_ORDER = {"usdm": "/fapi/v1/algoOrder", "papi-um": "/papi/v1/um/algo/algoOrder"}
_ALL_ALGO_ORDERS = {"usdm": "/fapi/v1/allAlgoOrders", "papi-um": "/papi/v1/um/algo/allAlgoOrders"}


def binance_algo_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    """`GET .../allAlgoOrders?symbol=S&startTime=T` (weight 5): every algo order of the symbol since T, with the
    order each became (`actualOrderId`). The caller keeps T within the last 7 days (proxy/risk_watch.py)."""
    market, symbol = _market_symbol(scope)
    path = _ALL_ALGO_ORDERS.get(market)
    if path is None or not symbol or symbol == "*":
        return None
    return ("GET", path, f"symbol={symbol}&startTime={max(0, since_ms)}&limit=1000", b"")


def binance_order_query_request(scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
    """`GET .../order?symbol=S&orderId=ID` of the order's market (the book keys it `ID@scope`); an algo order's
    `GET .../algoOrder?algoId=ID` (its answer names the order it became once triggered)."""
    market, symbol = _market_symbol(scope)
    if order_id.startswith(ALGO):
        algo_id, path = order_id.removeprefix(ALGO), _ONE_ALGO_ORDER.get(market)
        return ("GET", path, f"algoId={algo_id}", b"") if path and algo_id.isascii() and algo_id.isdigit() else None
    oid = order_id.partition("@")[0]
    path = _ONE_ORDER.get(market)
    if path is None or not symbol or symbol == "*" or not oid.isdigit():
        return None
    isolated = "&isIsolated=TRUE" if market == "isolated" else ""
    return ("GET", path, f"symbol={symbol}{isolated}&orderId={oid}", b"")


def binance_reconcile_request(scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
    market, symbol = _market_symbol(scope)
    path = _ALL_ORDERS.get(market)
    if path is None or not symbol or symbol == "*":
        return None
    isolated = "&isIsolated=TRUE" if market == "isolated" else ""
    return ("GET", path, f"symbol={symbol}{isolated}&startTime={max(0, since_ms)}&limit=1000", b"")


def binance_amend_verdicts(doc: Any, legs: int) -> tuple[bool, ...]:
    """An amend answer (parsed): an order per leg (`PUT` order, `batchOrders` where a refused leg is its
    `{"code", "msg"}`), or spot's `amendedOrder` (`order/amend/keepPriority`, REST and WebSocket)."""
    def took(item: Any) -> bool:
        return isinstance(item, dict) and ("orderId" in item or isinstance(item.get("amendedOrder"), dict))
    return listed_verdicts(doc if isinstance(doc, list) else [doc], legs, took)


def binance_placed_ids(doc: Any, key: str = "orderId") -> tuple[str, ...]:
    """The ids of the orders an order answer (parsed) placed: one per leg of a batch ("" for a leg refused with
    its `{"code", "msg"}`), the new order's alone in a cancel-replace (its `cancelResponse` names the order it
    cancelled, never one placed), else every `orderId`. `key="clientOrderId"`: their client ids, the same way."""
    if isinstance(doc, list):
        return leg_order_ids(doc, key)
    if isinstance(doc, dict) and ("newOrderResponse" in doc or "cancelResponse" in doc):  # "": nothing placed
        return leg_order_ids([doc.get("newOrderResponse")], key)
    if isinstance(doc, dict) and "algoId" in doc and "orderId" not in doc:  # an algo order's (`ALGO` ids)
        algo = order_ids_in({"id": doc.get("algoId" if key == "orderId" else "clientAlgoId")}, ("id",))
        # its client id also as the matching engine's, of the symbol: the order it becomes carries it (a cancel of
        # that order by `origClientOrderId` is another bot's refused; session 29's review)
        return tuple(ALGO + i for i in algo) + (algo if key != "orderId" else ())
    return order_ids_in(doc, (key,))


CANCEL_REPLACE_ERRORS = (-2021, -2022)  # "partially failed", "failed": `data` holds what each half did


def binance_cancel_replace_done(error: Any) -> dict[str, Any] | None:
    """What a cancel-replace refused in part (409 -2021; 400 -2022) did anyway, as the answer of a call that
    did only that: the halves whose result is SUCCESS (ALLOW_FAILURE may place the new order though the
    cancel failed, STOP_ON_FAILURE may cancel and then fail to place). None: it did nothing."""
    data = error.get("data") if isinstance(error, dict) and error.get("code") in CANCEL_REPLACE_ERRORS else None
    if not isinstance(data, dict):
        return None
    done = {f"{half}Response": data.get(f"{half}Response") for half in ("cancel", "newOrder")
            if data.get(f"{half}Result") == "SUCCESS" and isinstance(data.get(f"{half}Response"), dict)}
    return done or None
