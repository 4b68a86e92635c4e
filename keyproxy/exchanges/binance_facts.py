"""Binance request facts for policy: what an order, cancel, leverage or withdrawal request would do, read
from the fields Binance executes for it, and what Binance's answer confirms about open orders.

Kept apart from binance.py (signing and verification) because both grow: valuation rules per order type,
batches read leg by leg, and the bookkeeping of answers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from keyproxy.exchanges.base import (
    ALGO,
    published,
    whole_listing,
    BadRequest,
    DuplicateMember,
    Endpoint,
    EndpointClass,
    IncomingRequest,
    OrderBookChange,
    OutboundRequest,
    amount,
    no_json_constants,
    unique_members,
)
from keyproxy.policy.model import RequestFacts, normalize_symbol

_ORDER_PLACEMENT = {"/api/v3/order", "/api/v3/order/test", "/fapi/v1/order", "/dapi/v1/order", "/sapi/v1/margin/order",
                    "/papi/v1/um/order", "/papi/v1/margin/order", "/api/v3/sor/order", "/api/v3/sor/order/test",
                    "/api/v3/order/cancelReplace"}
# futures "Modify Order" (PUT): a resting LIMIT order gets a new quantity and price
_AMENDS = {"/fapi/v1/order", "/dapi/v1/order", "/papi/v1/um/order", "/papi/v1/cm/order"}  # Modify Order (PUT)
# futures "Place Multiple Orders" (POST) and "Modify Multiple Orders" (PUT): `batchOrders` is a JSON list
_BATCHES = {"/fapi/v1/batchOrders", "/dapi/v1/batchOrders"}
MAX_BATCH = 5  # USD-M and COIN-M: "order list, max 5 orders"
# futures conditional orders (STOP, STOP_MARKET, TAKE_PROFIT(_MARKET), TRAILING_STOP_MARKET) since December 2025:
# Binance's "Algo Service" ("New Algo Order"), answered with an `algoId` from an id space of its own, cancelled by
# `algoId` or `clientAlgoId` (no symbol: the ids are the account's) and listed apart from other orders
ALGO_ORDERS = frozenset({"/fapi/v1/algoOrder", "/dapi/v1/algoOrder", "/papi/v1/um/algo/order"})
ALGO_LISTINGS = frozenset({"/fapi/v1/openAlgoOrders", "/dapi/v1/openAlgoOrders", "/papi/v1/um/algo/openAlgoOrders"})
ALGO_CANCEL_ALL = frozenset({"/fapi/v1/algoOpenOrders", "/dapi/v1/algoOpenOrders", "/papi/v1/um/algo/allOpenOrders"})
# cancels whose orders keyproxy cannot attribute (conditional and order-list ids are not recorded, nor an options
# batch's; algo orders cancelled all at once are not listed where the cancel-all check looks): judged as a cancel of
# every order of their symbol (refused while another bot's orders rest)
_UNNAMED_CANCELS = ("/api/v3/orderList", "/sapi/v1/margin/orderList", "/papi/v1/margin/orderList",
                    *sorted(ALGO_CANCEL_ALL), "/papi/v1/um/conditional/order",
                    "/papi/v1/um/conditional/allOpenOrders", "/papi/v1/cm/conditional/order",
                    "/papi/v1/cm/conditional/allOpenOrders", "/eapi/v1/batchOrders")
# conditional and algo orders: no open-orders listing keyproxy reads shows them, nor does the positions book
_UNLISTED_CANCELS = frozenset(p for p in _UNNAMED_CANCELS if "algo" in p.lower() or "conditional" in p)
_CANCELS = {("DELETE", p) for p in ("/api/v3/order", "/api/v3/openOrders", "/api/v3/orderList", "/fapi/v1/order",
                                    "/fapi/v1/allOpenOrders", "/fapi/v1/batchOrders", "/dapi/v1/order",
                                    "/dapi/v1/allOpenOrders", "/dapi/v1/batchOrders", "/sapi/v1/margin/order",
                                    "/sapi/v1/margin/openOrders", "/sapi/v1/margin/orderList", "/papi/v1/um/order",
                                    "/papi/v1/cm/order", "/papi/v1/margin/order", "/eapi/v1/order",
                                    "/papi/v1/um/allOpenOrders", "/papi/v1/cm/allOpenOrders",
                                    "/papi/v1/margin/allOpenOrders", "/eapi/v1/allOpenOrders",
                                    "/eapi/v1/allOpenOrdersByUnderlying", *_UNNAMED_CANCELS, *ALGO_ORDERS)}
_LEVERAGE = {"/fapi/v1/leverage", "/dapi/v1/leverage", "/papi/v1/um/leverage", "/papi/v1/cm/leverage"}
_POSITION_MARGIN = {"/fapi/v1/positionMargin", "/dapi/v1/positionMargin"}  # type 1 adds margin, 2 takes it out
# trade-class endpoints that change settings but place no order
_NO_ORDER = {"/fapi/v1/marginType", "/dapi/v1/marginType", "/fapi/v1/positionSide/dual", "/dapi/v1/positionSide/dual",
             "/fapi/v1/positionMargin", "/dapi/v1/positionMargin", "/fapi/v1/multiAssetsMargin",
             "/fapi/v1/countdownCancelAll", "/dapi/v1/countdownCancelAll", "/fapi/v1/feeBurn", "/sapi/v1/bnbBurn"}




_CLOSED_STATUSES = ("FILLED", "EXPIRED", "CANCELED", "REJECTED", "EXPIRED_IN_MATCH")
_UNKNOWN_FATE = (-1006, -1007)  # "unexpected response" / "timeout waiting for the backend": execution status unknown
_WHOLE_LISTING = frozenset({"symbol", "isIsolated", "recvWindow", "timestamp", "signature"})
_OPEN_ORDER_QUERIES = ("/api/v3/openOrders", "/fapi/v1/openOrders", "/dapi/v1/openOrders",
                       "/sapi/v1/margin/openOrders")
_MARKETS = (("/api/", "spot"), ("/sapi/", "margin"), ("/fapi/", "usdm"), ("/dapi/", "coinm"), ("/eapi/", "option"),
            ("/papi/v1/um/", "papi-um"), ("/papi/v1/cm/", "papi-cm"), ("/papi/v1/margin/", "papi-margin"))


def market_of_path(path: str) -> str:
    """The market an order endpoint trades in: open orders are counted per market and symbol."""
    return next((m for prefix, m in _MARKETS if path.startswith(prefix)), "other")


_market = market_of_path


def binance_market(path: str, is_isolated: str | None = None) -> str:
    """The market of an order call: isolated margin (`isIsolated=TRUE` on a `/sapi/v1/margin/` call) is one of its
    own, as Binance lists, reconciles and streams its orders apart from cross margin's."""
    market = market_of_path(path)
    return "isolated" if market == "margin" and (is_isolated or "").upper() == "TRUE" else market


def binance_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    """What the request would do, from its parameters (the query wins over the body, as at Binance)."""
    if endpoint.cls is EndpointClass.PUBLIC or endpoint.cls is EndpointClass.READ:
        return RequestFacts(action="other")
    return binance_facts_of(req.method, req.path, _params(req))


def binance_facts_of(method: str, path: str, params: dict[str, str]) -> RequestFacts:
    """The same from parameters already read (a WebSocket API frame's, under its REST twin's method and path)."""
    facts = _facts_of(method, path, params)
    if facts.action in ("order", "cancel", "amend", None) and facts.market is None:  # a single order has its own
        return replace(facts, market=binance_market(path, params.get("isIsolated")))
    return facts


def _params(req: IncomingRequest) -> dict[str, str]:
    try:
        body = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    params: dict[str, str] = {}
    for part in (body, req.query):
        for k, v in parse_qsl(part, keep_blank_values=True):
            if k in params:
                # Binance documents "the query wins" across parts but not repeats within one; either way keyproxy
                # could read another value than Binance uses, of any parameter (an id, a timer): refuse both
                raise BadRequest(f"parameter {k[:40]!r} is given more than once")
            params[k] = v
    return params


def _facts_of(method: str, path: str, params: dict[str, str]) -> RequestFacts:
    symbol = normalize_symbol(params["symbol"]) if params.get("symbol") else None
    if (method, path) in _CANCELS:
        return _cancel_facts(path, params, symbol)
    if path in _COUNTDOWNS:  # every order of the symbol cancelled when the countdown runs out
        given = params.get("countdownTime")
        disarms = given is not None and given.isascii() and given.isdigit() and int(given) == 0  # 0: turned off
        return RequestFacts(action="other", symbol=symbol, market=_market(path), cancels_all=not disarms,
                            cancels_later=not disarms)
    if method == "POST" and path in _LEVERAGE:
        return RequestFacts(action="leverage", symbol=symbol, leverage=amount(params.get("leverage")))
    if method == "POST" and path in _POSITION_MARGIN and params.get("type") != "1":
        # margin taken out of an isolated position (type 2) raises its leverage by an amount keyproxy cannot compute
        # (it depends on the position): a leverage change of unknown value, refused under max_leverage (session
        # 27's review); adding margin (type 1) lowers it
        return RequestFacts(action="leverage", symbol=symbol, market=_market(path))
    if method == "POST" and path == "/sapi/v1/capital/withdraw/apply":
        return RequestFacts(action="withdraw", asset=(params.get("coin") or "").upper() or None,
                            address=params.get("address"), network=(params.get("network") or "").upper() or None,
                            amount=amount(params.get("amount")), memo=params.get("addressTag") or None)
    if method == "POST" and path in ALGO_ORDERS:
        return _algo_facts(path, params, symbol)
    if method == "POST" and path in _ORDER_PLACEMENT:
        facts = _order_facts(path, params, symbol)
        if path.endswith("/cancelReplace"):  # its cancel half names an order too
            cancel = _cancel_facts(path, {"orderId": params.get("cancelOrderId", ""),
                                          "origClientOrderId": params.get("cancelOrigClientOrderId", "")}, symbol)
            facts = replace(facts, cancels=cancel.cancels, cancels_by_client=cancel.cancels_by_client)
        return facts
    if method == "PUT" and path == "/api/v3/order/amend/keepPriority":  # a smaller size, the price kept
        return RequestFacts(action="amend", symbol=symbol, quantity=amount(params.get("newQty")),
                            order_id=_order_id(params),
                            # the order's new client id: never another bot's (OrderOwners.own_client_ids)
                            client_id=params.get("newClientOrderId") or None)
    if method == "PUT" and path in _AMENDS:
        return replace(_order_facts(path, params, symbol), action="amend", order_id=_order_id(params))
    if method in ("POST", "PUT") and path in _BATCHES:
        return _batch_facts(method, path, params.get("batchOrders"))
    if path in _NO_ORDER:
        return RequestFacts(action="other", symbol=symbol)
    # may place orders in a shape not read here (order lists): unread, refused under any trading limit; a margin one
    # that borrows (`sideEffectType`, a margin OCO's or OTO's too) needs the transfer scope all the same (session 32)
    return RequestFacts(action=None, symbol=symbol, cancels_met=_expires_met(params),
                        borrows=method == "POST" and path.startswith(_MARGIN_PATHS)
                        and (params.get("sideEffectType") or "").upper() in _BORROWING)


def _expires_met(params: dict[str, str]) -> bool:
    """Self-trade prevention asked to expire (or decrement) the resting order an order meets: maybe another bot's."""
    return (params.get("selfTradePreventionMode") or "").upper() in ("EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT")


_MARGIN_PATHS = ("/sapi/v1/margin/", "/papi/v1/margin/")


_CANCEL_ALL = {"/api/v3/openOrders", "/fapi/v1/allOpenOrders", "/dapi/v1/allOpenOrders", "/sapi/v1/margin/openOrders",
               "/papi/v1/um/allOpenOrders", "/papi/v1/cm/allOpenOrders", "/papi/v1/margin/allOpenOrders",
               "/eapi/v1/allOpenOrders", "/eapi/v1/allOpenOrdersByUnderlying"}
_COUNTDOWNS = {"/fapi/v1/countdownCancelAll", "/dapi/v1/countdownCancelAll", "/eapi/v1/countdownCancelAll"}


def _cancel_facts(path: str, params: dict[str, str], symbol: str | None) -> RequestFacts:
    """The orders a cancel names (only the bot's own may be: OrderOwners.only_own): `orderId` /
    `origClientOrderId` (Binance checks both where both are given), a futures batch's `orderIdList` /
    `origClientOrderIdList` (JSON lists), every order of the symbol (a cancel-all), or orders keyproxy cannot
    attribute (an order list's, an algo or conditional order's: `_UNNAMED_CANCELS`), judged as a cancel-all."""
    if path in ALGO_ORDERS:  # one algo order, by its algoId or clientAlgoId (the account's ids: any symbol)
        algo_id, client_id = _order_id(params, "algoId"), params.get("clientAlgoId")
        if not algo_id:  # by its client id alone: a record pruned (session 30's review) would make another bot's
            # stop ownerless, so judged as OKX's `algoClOrdId` cancel is: refused once another bot placed anything
            return RequestFacts(action="cancel", cancels_all=True, cancels_unlisted=True)
        return RequestFacts(action="cancel", symbol=symbol, cancels=(f"{ALGO}{algo_id}",),
                            cancels_by_client=(f"{ALGO}{client_id}",) if client_id else ())  # both: checked both
    if path in _CANCEL_ALL or path in _UNNAMED_CANCELS:
        return RequestFacts(action="cancel", symbol=symbol, cancels_all=True,
                            cancels_unlisted=path in _UNLISTED_CANCELS)
    if path.endswith("/batchOrders"):
        ids = tuple(_order_id({"orderId": str(i)}) or "" for i in _json_list(params, "orderIdList", int))
        return RequestFacts(action="cancel", symbol=symbol, cancels=ids,
                            cancels_by_client=tuple(_json_list(params, "origClientOrderIdList", str)))
    order_id, client_id = _order_id(params), params.get("origClientOrderId") or None
    return RequestFacts(action="cancel", symbol=symbol, cancels=(order_id,) if order_id else (),
                        cancels_by_client=(client_id,) if client_id else ())


def _json_list(params: dict[str, str], name: str, kind: type) -> list[Any]:
    """A batch cancel's JSON list of ids (numbers or client-id strings); absent: []."""
    text = params.get(name)
    if not text:
        return []
    try:
        items = json.loads(text, parse_constant=no_json_constants)
    except ValueError:
        raise BadRequest(f"{name} must be a JSON list") from None
    if not isinstance(items, list) or not all(isinstance(i, kind) and not isinstance(i, bool) for i in items):
        raise BadRequest(f"{name} must be a JSON list of {'numbers' if kind is int else 'strings'}")
    return items


def _order_id(params: dict[str, str], name: str = "orderId") -> str | None:
    """An amend's `orderId` (or `name`: a cancel's `algoId`) as Binance reads it, a number: `007` is order 7 (the
    book keys orders by the id the exchange answered, so a padded id would name no order keyproxy holds). Not a
    number: refused."""
    text = params.get(name)
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise BadRequest(f"{name} must be a number")
    return str(int(text))


def _batch_facts(method: str, path: str, text: str | None) -> RequestFacts:
    """A futures batch, read order by order: each leg is valued as the single order it mirrors, and the
    batch is allowed or refused as a whole (Binance: "parameter rules are same with New Order")."""
    try:
        legs = json.loads(text or "", object_pairs_hook=unique_members, parse_constant=no_json_constants)
    except DuplicateMember as err:
        raise BadRequest(f"batchOrders: {err}") from None
    except ValueError:
        raise BadRequest("batchOrders must be a JSON list of orders") from None
    if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
        raise BadRequest("batchOrders must be a non-empty JSON list of order objects")
    if len(legs) > MAX_BATCH:
        raise BadRequest(f"batchOrders holds {len(legs)} orders; Binance takes at most {MAX_BATCH}")
    action = "amend" if method == "PUT" else "order"
    single = path.replace("/batchOrders", "/order")
    orders = []
    for leg in legs:
        params = {k: v if isinstance(v, str) else _scalar(k, v) for k, v in leg.items()}
        symbol = normalize_symbol(params["symbol"]) if params.get("symbol") else None
        orders.append(replace(_order_facts(single, params, symbol), action=action, market=_market(path),
                              order_id=_order_id(params) if action == "amend" else None))
    symbols = {o.symbol for o in orders}
    return RequestFacts(action=action, symbol=symbols.pop() if len(symbols) == 1 else None, orders=tuple(orders))


def _scalar(name: str, value: object) -> str:
    """A JSON number or boolean in a batch leg as the text Binance reads; objects and lists are bad input."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise BadRequest(f"batchOrders: {name[:40]!r} must be a string or a number")


# types that execute at market (at once, or when triggered): a `price` on them is not what executes
# (spot STOP_LOSS / TAKE_PROFIT; futures *_MARKET; futures TAKE_PROFIT is a limit order and uses its price)
_SPOT_MARKET_TYPES = ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
_FUTURES_MARKET_TYPES = ("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
_DERIVATIVES = ("/fapi/", "/dapi/", "/papi/v1/um/", "/papi/v1/cm/")
_BORROWING = ("MARGIN_BUY", "AUTO_BORROW_REPAY")  # AUTO_REPAY only repays


def _order_facts(path: str, params: dict[str, str], symbol: str | None) -> RequestFacts:
    """One order valued by the fields Binance executes for its type.

    Spot (new order, docs "Trading endpoints"): MARKET takes `quantity` or `quoteOrderQty`, never a
    price (nor do the market-on-trigger types STOP_LOSS, TAKE_PROFIT, futures *_MARKET); `priceMatch`
    (futures) and `pegPriceType` (spot) let the book set the price, and "cannot be passed with price";
    futures (USD-M/COIN-M "New Order"): MARKET takes `quantity` only and no type takes `quoteOrderQty`. A
    field the type ignores, or both sizes at once, is a conflict. COIN-M quantities are contracts worth
    `contractSize` USD each. `reduceOnly`/`closePosition` mean something only on futures; `sideEffectType`
    MARGIN_BUY / AUTO_BORROW_REPAY borrows (margin "New Order").
    """
    order_type = (params.get("type") or "").upper() or None
    derivatives = path.startswith(_DERIVATIVES)
    quantity, price = amount(params.get("quantity")), amount(params.get("price"))
    quote = amount(params.get("quoteOrderQty"))
    conflict = None
    if order_type in (_FUTURES_MARKET_TYPES if derivatives else _SPOT_MARKET_TYPES) and price is not None:
        conflict, price = f"a {order_type} order's price is ignored by Binance", None
    matched = next((params[k] for k in ("priceMatch", "pegPriceType") if params.get(k, "NONE").upper() != "NONE"), None)
    # the book sets the price (futures priceMatch, spot pegged orders): the last price values it
    if matched is not None:
        if price is not None:
            conflict = f"a price is given with {matched}, which sets the price itself"
        price = None
    if path.startswith("/api/v3/sor/") and quote is not None:
        conflict, quote = "smart order routing takes no quoteOrderQty", None
    if derivatives and quote is not None:
        conflict, quote = "futures orders have no quoteOrderQty", None
    if quantity is not None and quote is not None:
        conflict = "both quantity and quoteOrderQty are given"
    reduce_only = derivatives and (params.get("reduceOnly", "").lower() == "true"
                                   or params.get("closePosition", "").lower() == "true")
    coinm = path.startswith(("/dapi/", "/papi/v1/cm/"))
    trailing = order_type == "TRAILING_STOP_MARKET" or params.get("trailingDelta") not in (None, "")
    return RequestFacts(action="order", market=binance_market(path, params.get("isIsolated")), symbol=symbol,
                        side=(params.get("side") or "").upper() or None, order_type=order_type, quantity=quantity,
                        price=price, quote_quantity=quote,
                        reduce_only=reduce_only, conflict=conflict, contract="inverse" if coinm else None,
                        size_unsure=quantity is not None and quote is not None,
                        # hedge mode: positionSide LONG or SHORT names a leg (BOTH, or none: one-way mode); any
                        # other spelling counts as a leg
                        hedged=derivatives and (params.get("positionSide") or "BOTH").upper() != "BOTH",
                        borrows=(params.get("sideEffectType") or "").upper() in _BORROWING,
                        # a test order places nothing: it routes and meets nothing
                        book_priced=matched is not None, routed=path == "/api/v3/sor/order",
                        cancels_met=_expires_met(params) and not path.endswith("/test"),
                        # a trailing stop (futures TRAILING_STOP_MARKET: activationPrice, then callbackRate from the
                        # best price since; spot: trailingDelta, from stopPrice or at once) triggers where the market
                        # takes it: valued at its activation at least, and no price band can check it
                        trigger_price=amount(params.get("activationPrice" if trailing else "stopPrice")),
                        trigger_relative=trailing, client_id=params.get("newClientOrderId") or None)


def _algo_facts(path: str, params: dict[str, str], symbol: str | None) -> RequestFacts:
    """A conditional order of the Algo Service, valued as the single order it becomes: its `triggerPrice` and
    `activatePrice` are what `/fapi/v1/order` called `stopPrice` and `activationPrice` (those names mean nothing
    here and are not read). An `algoType` other than CONDITIONAL (the only one documented) is not read. Triggered,
    it becomes an order of its own (`actualOrderId`), which the positions book follows (`OrderUpdate.spawned`)."""
    if params.get("algoType") != "CONDITIONAL":
        return RequestFacts(action=None, symbol=symbol)
    named = {k: v for k, v in params.items() if k not in ("stopPrice", "activationPrice")}
    for algo_name, order_name in (("triggerPrice", "stopPrice"), ("activatePrice", "activationPrice")):
        if algo_name in params:
            named[order_name] = params[algo_name]
    client = params.get("clientAlgoId")
    return replace(_order_facts(path, named, symbol), conditional=True, client_id=ALGO + client if client else None)


# where keyproxy asks for a market's last price (the price band's reference): spot and margin share spot's
_TICKERS = {"spot": "/api/v3/ticker/price", "margin": "/api/v3/ticker/price", "isolated": "/api/v3/ticker/price",
            "papi-margin": "/api/v3/ticker/price",
            "usdm": "/fapi/v1/ticker/price", "papi-um": "/fapi/v1/ticker/price"}


def binance_reference_request(leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
    """`GET .../ticker/price?symbol=S` (weight 2): the one symbol's last price."""
    path = _TICKERS.get(leg.market or "")
    if path is None or not leg.symbol:
        return None
    return ("GET", path, f"symbol={leg.symbol}", b"")


def binance_contract_sizes(path: str, body: bytes) -> dict[str, Decimal]:
    """COIN-M contract sizes (USD per contract) from `/dapi/v1/exchangeInfo`, by scope `coinm:SYMBOL`."""
    if path != "/dapi/v1/exchangeInfo":
        return {}
    try:
        symbols = json.loads(body).get("symbols", [])
    except (ValueError, AttributeError):
        return {}
    out: dict[str, Decimal] = {}
    for item in symbols if isinstance(symbols, list) else []:
        if isinstance(item, dict) and isinstance(item.get("symbol"), str):
            size = published(item.get("contractSize"))
            if size is not None:
                out[f"coinm:{normalize_symbol(item['symbol'])}"] = size
    return out


def binance_prices(path: str, body: bytes) -> dict[str, Decimal]:
    """Last prices from public ticker answers that pass through (for valuing market orders)."""
    if path not in ("/api/v3/ticker/price", "/api/v3/ticker/24hr", "/fapi/v1/ticker/price", "/fapi/v2/ticker/price",
                    "/fapi/v1/ticker/24hr"):
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    out: dict[str, Decimal] = {}
    for item in doc if isinstance(doc, list) else [doc]:
        if isinstance(item, dict) and isinstance(item.get("symbol"), str):
            value = published(item.get("price", item.get("lastPrice")))
            if value is not None:
                out[normalize_symbol(item["symbol"])] = value
    return out


def binance_order_book_change(req: OutboundRequest, status: int, body: bytes,
                              facts: RequestFacts) -> OrderBookChange:
    """Only what Binance confirmed: an accepted order left open, a cancel answered with the cancelled
    order, a cancel-all or open-orders query for one symbol of one market (it sets that scope only). An order whose
    execution status Binance says is unknown (-1006/-1007, HTTP 408: "could have been a success") counts as open
    (a whole listing sets the count right), never as refused."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if facts.action == "order" and (status == 408 or isinstance(doc, dict) and doc.get("code") in _UNKNOWN_FATE):
        algo = req.path in ALGO_ORDERS
        return OrderBookChange(opened=tuple(algo_scope(leg.scope) if algo else leg.scope for leg in facts.placed()))
    if not 200 <= status < 300:
        return OrderBookChange()
    if req.path in ALGO_ORDERS or req.path in ALGO_CANCEL_ALL or req.path in ALGO_LISTINGS:
        return _algo_book_change(req, doc, facts)
    if facts.action == "order":
        if req.path.endswith("/cancelReplace") and isinstance(doc, dict):
            cancelled = (isinstance(doc.get("cancelResponse"), dict)
                         and doc["cancelResponse"].get("status") == "CANCELED")
            placed = doc.get("newOrderResponse")
            rests = isinstance(placed, dict) and "code" not in placed and placed.get("status") not in _CLOSED_STATUSES
            return OrderBookChange(opened=(facts.scope,) if rests else (), closed=(facts.scope,) if cancelled else ())
        legs = facts.placed()
        if isinstance(doc, list) and len(doc) == len(legs):  # a batch: one answer per order, in order
            return OrderBookChange(opened=tuple(leg.scope for leg, answer in zip(legs, doc) if _rests(answer)))
        if isinstance(doc, dict) and not _rests(doc):
            return OrderBookChange()  # filled, expired or rejected at once: nothing rests
        return OrderBookChange(opened=tuple(o.scope for o in legs))  # unreadable: counted
    if facts.action == "cancel":
        if req.path.endswith(("/openOrders", "/allOpenOrders")) and facts.symbol:
            return OrderBookChange(counted=((facts.scope, 0),))
        items = doc if isinstance(doc, list) else [doc]
        done = [i for i in items if isinstance(i, dict) and i.get("status") == "CANCELED"
                or isinstance(i, dict) and i.get("listOrderStatus") == "ALL_DONE"]
        return OrderBookChange(closed=(facts.scope,) * len(done))
    if req.method == "GET" and req.path in _OPEN_ORDER_QUERIES and isinstance(doc, list):
        query = dict(parse_qsl(req.query, keep_blank_values=True))
        symbol = query.get("symbol")
        # without a symbol: every symbol, it sets nothing; filtered by anything but its symbol, part of the symbol's
        if symbol and whole_listing(req.query, _WHOLE_LISTING):
            scope = f"{binance_market(req.path, query.get('isIsolated'))}:{normalize_symbol(symbol)}"
            return OrderBookChange(counted=((scope, len(doc)),))
    return OrderBookChange()


_ALGO_CLOSED = ("CANCELED", "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED")


def algo_scope(scope: str) -> str:
    """Where a bot's open algo orders are counted (`usdm-algo:*`): apart from its other orders, so a listing of those
    (which never shows an algo order) sets their count alone, and per market, not per symbol: a cancel names an algo
    order by id alone, so the symbol it was placed in is not known there (session 29's review: freed in the symbol
    a cancel named, a bot's count fell while its orders rested elsewhere)."""
    return f"{scope.partition(':')[0]}-algo:*"


def _algo_book_change(req: OutboundRequest, doc: object, facts: RequestFacts) -> OrderBookChange:
    """An algo order placed and left `NEW` (or unreadable: counted), one cancelled (`code` "200"), or the market's
    whole listing (`openAlgoOrders` with no symbol: one symbol's listing, or a symbol's cancel-all, sets nothing, as
    the count is the market's). Triggered, an order is counted till such a listing says otherwise."""
    scope = algo_scope(f"{market_of_path(req.path)}:")
    if facts.action == "order":
        closed = isinstance(doc, dict) and ("code" in doc and "algoId" not in doc
                                            or doc.get("algoStatus") in _ALGO_CLOSED)
        return OrderBookChange() if closed else OrderBookChange(opened=(scope,))
    confirmed = isinstance(doc, dict) and str(doc.get("code")) == "200"
    if facts.action == "cancel" and req.path in ALGO_ORDERS:
        return OrderBookChange(closed=(scope,) if confirmed else ())
    if req.method == "GET" and req.path in ALGO_LISTINGS and isinstance(doc, list) \
            and whole_listing(req.query, _WHOLE_LISTING - {"symbol", "isIsolated"}):
        return OrderBookChange(counted=((scope, len(doc)),))
    return OrderBookChange()


def _rests(answer: object) -> bool:
    """Whether one order's answer leaves it resting: not an error entry ({"code", "msg"}), not closed at once."""
    return not (isinstance(answer, dict) and ("code" in answer and answer["code"] not in _UNKNOWN_FATE
                                              or answer.get("status") in _CLOSED_STATUSES))
