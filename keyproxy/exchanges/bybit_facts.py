"""What a Bybit v5 request would do, for policy, and what Bybit's answer confirms about open orders.

Per Bybit's v5 docs ("Place Order", "Batch Place Order", "Amend Order", "Cancel Order", "Get Open &
Closed Orders", "Withdraw"): `qty` is in the base coin, except a spot Market order whose `marketUnit`
is quoteCoin (the default for a spot Market Buy) and inverse contracts, whose qty is in USD: those are
quote quantities. A Market order ignores `price` ("Market order will ignore this field"), and an
option's `orderIv` takes priority over `price`: such a field is a conflict, refused under a notional
limit. A spot order with `isLeverage: 1` trades on margin and borrows.
"""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qsl

from keyproxy.exchanges.base import (
    published,
    whole_listing,
    BadRequest,
    Endpoint,
    EndpointClass,
    IncomingRequest,
    OrderBookChange,
    amount,
    no_json_constants,
    unique_members,
)
from keyproxy.policy.model import RequestFacts, normalize_symbol

_ORDER_PLACEMENT = {"/v5/order/create"}
_BATCH_PLACE, _BATCH_AMEND, _BATCH_CANCEL = "/v5/order/create-batch", "/v5/order/amend-batch", "/v5/order/cancel-batch"
_CANCELS = {"/v5/order/cancel", "/v5/order/cancel-all", _BATCH_CANCEL}
_LEVERAGE = {"/v5/position/set-leverage", "/v5/position/switch-isolated", "/v5/spot-margin-trade/set-leverage"}
# trade-class endpoints that change settings but place no order
_SETTINGS = {
    "/v5/position/switch-mode", "/v5/position/set-tpsl-mode", "/v5/position/set-risk-limit",
    "/v5/position/trading-stop", "/v5/position/set-auto-add-margin", "/v5/position/add-margin",
    "/v5/position/confirm-pending-mmr", "/v5/order/disconnected-cancel-all", "/v5/account/set-margin-mode",
    "/v5/account/set-hedging-mode", "/v5/account/set-collateral-switch", "/v5/account/set-collateral-switch-batch",
    "/v5/account/mmp-modify", "/v5/account/mmp-reset", "/v5/account/set-delta-mode", "/v5/account/set-limit-px-action",
    "/v5/account/demo-apply-money", "/v5/spot-margin-trade/switch-mode", "/v5/spot-margin-trade/set-auto-repay-mode",
    "/v5/spot-cross-margin-trade/switch",
}
# take-profit / stop-loss Bybit attaches to an order or a position: it places them as orders of its own, whose
# ids no answer to the bot names (their fills would move the position unseen)
_CHILD_ORDERS = "Bybit places a take-profit or stop-loss as orders of its own"
MAX_BATCH = {"spot": 10}  # "Batch Place Order": 20 orders per request (option, inverse, linear), 10 on spot
_CATEGORIES = ("spot", "linear", "inverse", "option")


def _json_body(raw: bytes) -> dict[str, object]:
    """The POST body as a JSON object with unique member names (parsers disagree on duplicates)."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_members, parse_constant=no_json_constants)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not a JSON object (with unique member names)") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body is not a JSON object")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _truthy(value: object) -> bool:
    return value is True  # a JSON true, as ccxt and pybit send it; a string could mean anything to Bybit


def _symbol(body: dict[str, object]) -> str | None:
    text = _text(body.get("symbol"))
    return normalize_symbol(text) if text else None


def _category(body: dict[str, object]) -> str | None:
    category = (_text(body.get("category")) or "").lower()
    return category if category in _CATEGORIES else None


def bybit_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    """What a request would do, from its JSON body. Conversions, RFQ, spread and leveraged-token orders
    report action None, which policy refuses only for bots with trading limits."""
    if endpoint.cls in (EndpointClass.PUBLIC, EndpointClass.READ, EndpointClass.TRANSFER, EndpointClass.ADMIN):
        return RequestFacts(action="other")
    body = _json_body(req.body) if req.method == "POST" else {}
    symbol = _symbol(body)
    category = _category(body)
    if endpoint.cls is EndpointClass.WITHDRAW:
        if req.path == "/v5/asset/withdraw/create":
            return RequestFacts(action="withdraw", asset=(_text(body.get("coin")) or "").upper() or None,
                                address=_text(body.get("address")),
                                network=(_text(body.get("chain")) or "").upper() or None,
                                amount=amount(body.get("amount"), "amount"),
                                memo=_text(body.get("tag")))  # the tag picks the credited account
        if req.path == "/v5/asset/withdraw/cancel":
            return RequestFacts(action="cancel")
        return RequestFacts(action="withdraw", address=_text(body.get("accountId")),
                            amount=amount(body.get("amount"), "amount"))
    if req.path in _CANCELS:
        legs = body.get("request") if req.path == _BATCH_CANCEL else None
        first = legs[0] if isinstance(legs, list) and legs and isinstance(legs[0], dict) else body
        named = [leg for leg in legs if isinstance(leg, dict)] if isinstance(legs, list) else [body]
        # the orders it names, by id or orderLinkId (only the bot's own: OrderOwners.only_own); cancel-all: every
        # order of its category and symbol (no symbol: of the category)
        return RequestFacts(action="cancel", symbol=_symbol(first), market=category,
                            cancels=tuple(i for leg in named if (i := _text(leg.get("orderId")))),
                            cancels_by_client=tuple(i for leg in named if (i := _text(leg.get("orderLinkId")))),
                            cancels_all=req.path == "/v5/order/cancel-all")
    if req.path in _LEVERAGE:
        values = [amount(body.get(k), k) for k in ("buyLeverage", "sellLeverage", "leverage") if k in body]
        readable = [v for v in values if v is not None]
        return RequestFacts(action="leverage", symbol=symbol,
                            leverage=max(readable) if readable and len(readable) == len(values) else None)
    if req.path == "/v5/position/add-margin":  # a negative `margin` takes margin out of an isolated position
        raw = body.get("margin")
        # which raises its leverage by an amount keyproxy cannot compute (it depends on the position): a leverage
        # change of unknown value, refused under max_leverage (session 27's review)
        if isinstance(raw, bool) or not isinstance(raw, str | int | float) or str(raw).lstrip().startswith("-") \
                or amount(raw, "margin") is None:
            return RequestFacts(action="leverage", symbol=symbol, market=_category(body))
        return RequestFacts(action="other", symbol=symbol)
    if req.path == "/v5/position/trading-stop":  # Bybit closes the position by orders of its own
        # (one that clears them, every level "0", places none)
        sets = _attached(body) or (_CHILD_ORDERS if body.get("trailingStop") not in (None, "", "0", 0) else None)
        return RequestFacts(action="other", symbol=symbol, untracked=sets)
    if req.path == "/v5/order/disconnected-cancel-all":  # every order of the account once a socket drops
        return RequestFacts(action="other", cancels_all=True, cancels_later=True)
    if req.path in _SETTINGS:
        return RequestFacts(action="other", symbol=symbol)
    if req.path == "/v5/order/amend":
        return _amend(body, category)
    if req.path in _ORDER_PLACEMENT:
        return _order(body, category)
    if req.path in (_BATCH_PLACE, _BATCH_AMEND):
        return _batch(body, category, "order" if req.path == _BATCH_PLACE else "amend")
    return RequestFacts(action=None, symbol=symbol)  # conversions, RFQ, spread, leveraged tokens...


def _order(body: dict[str, object], category: str | None) -> RequestFacts:
    """One order (alone or a batch's leg), valued by the fields Bybit executes for its type."""
    side = (_text(body.get("side")) or "").upper() or None
    order_type = (_text(body.get("orderType")) or "").upper() or None
    qty = amount(body.get("qty"), "qty")
    price = amount(body.get("price"), "price")
    conflict = None
    if order_type == "MARKET" and price is not None:
        conflict, price = "Bybit ignores a Market order's price", None
    if body.get("orderIv") not in (None, ""):
        conflict, price = "an option's orderIv takes priority over its price", None
    if order_type not in ("MARKET", "LIMIT"):
        conflict = f"orderType {order_type or '(none)'} is not valued by keyproxy"
    if category == "option" and side == "SELL" and not _truthy(body.get("reduceOnly")):
        # a written option's exposure is its underlying (qty of it, at the underlying's price), not the premium
        # it is sold for: valued by price it would pass a notional cap by any factor (OKX's options are not valued)
        conflict = "a sold option is worth its underlying, not its premium: keyproxy does not value it"
    unit = _text(body.get("marketUnit")) or ("quoteCoin" if side == "BUY" else "baseCoin")
    in_quote = category == "inverse" or (category == "spot" and order_type == "MARKET" and unit == "quoteCoin")
    return RequestFacts(action="order", symbol=_symbol(body), market=category, side=side, order_type=order_type,
                        quantity=None if in_quote else qty, quote_quantity=qty if in_quote else None,
                        price=price, conflict=conflict, trigger_price=amount(body.get("triggerPrice"), "triggerPrice"),
                        # how such a type sizes is unread; a written option's exposure is not the size it names either
                        size_unsure=order_type not in ("MARKET", "LIMIT") or (category == "option" and side == "SELL"
                                                                              and not _truthy(body.get("reduceOnly"))),
                        # Bybit honours reduceOnly for linear, inverse and option, closeOnTrigger for
                        # linear and inverse only: a spot order's flags would not reduce anything
                        reduce_only=(category in ("linear", "inverse", "option") and _truthy(body.get("reduceOnly")))
                        or (category in ("linear", "inverse") and _truthy(body.get("closeOnTrigger"))),
                        # hedge mode: positionIdx 1 is the long leg, 2 the short (0, or none: one-way mode); any
                        # other spelling ("01", 1.0) counts as a leg
                        hedged=category in ("linear", "inverse") and body.get("positionIdx") not in (None, "", 0, "0"),
                        # spot isLeverage=1: a margin trade that borrows (needs the transfer scope)
                        borrows=category == "spot" and body.get("isLeverage") in (1, "1"),
                        untracked=_attached(body),
                        client_id=_text(body.get("orderLinkId")),  # never another bot's (OrderOwners.own_client_ids)
                        # "CancelMaker" / "CancelBoth": Bybit cancels the resting order it meets under the same UID;
                        # closeOnTrigger: "if the account has insufficient available balance when the closing order is
                        # triggered, then other active orders of similar contracts will be cancelled or reduced"
                        cancels_met=_text(body.get("smpType")) not in (None, "None", "CancelTaker")
                        # (any value but false: a "true" or 1 Bybit may read as true)
                        or (category in ("linear", "inverse") and body.get("closeOnTrigger") not in (None, False)))


def _attached(body: dict[str, object]) -> str | None:
    """A take-profit or stop-loss set on an order (create or amend; "0" or "" sets none)."""
    return _CHILD_ORDERS if any(body.get(k) not in (None, "", "0", 0) for k in ("takeProfit", "stopLoss")) else None


def _amend(body: dict[str, object], category: str | None) -> RequestFacts:
    """"Amend Order": the order is worth the new `qty` x `price`; one left unchanged is unknown here, so
    such an amend cannot be valued (refused under a notional limit). A new `triggerPrice` (a conditional order's)
    is an amend too, checked against the band and valuing a stop buy; an option's `orderIv` sets the price
    ("orderIv has a higher priority when price is passed as well"): a conflict. Take-profit / stop-loss
    changes only: other."""
    qty, price = amount(body.get("qty"), "qty"), amount(body.get("price"), "price")
    trigger = amount(body.get("triggerPrice"), "triggerPrice")
    implied = body.get("orderIv") not in (None, "")
    untracked = _attached(body)
    order_id = body.get("orderId")
    if qty is None and price is None and trigger is None and not implied:  # take-profit / stop-loss changes only
        return RequestFacts(action="other", symbol=_symbol(body), market=category, untracked=untracked,
                            touches=(order_id if isinstance(order_id, str) and order_id else None,))
    in_quote = category == "inverse"
    return RequestFacts(action="amend", symbol=_symbol(body), market=category,
                        quantity=None if in_quote else qty, quote_quantity=qty if in_quote else None,
                        price=None if implied else price, trigger_price=trigger,
                        conflict="Bybit prices this option amend by its orderIv, not its price" if implied else None,
                        order_id=order_id if isinstance(order_id, str) and order_id else None, untracked=untracked)


def _batch(body: dict[str, object], category: str | None, action: str) -> RequestFacts:
    """`create-batch` / `amend-batch`: `request` is a list of orders of one category, read one by one; the
    batch passes or is refused as a whole."""
    legs = body.get("request")
    if not isinstance(legs, list) or not legs or not all(isinstance(leg, dict) for leg in legs):
        raise BadRequest("request must be a non-empty list of order objects")
    limit = MAX_BATCH.get(category or "", 20)
    if len(legs) > limit:
        raise BadRequest(f"a {category} batch holds at most {limit} orders, not {len(legs)}")
    orders = tuple(_order(leg, category) if action == "order" else _amend(leg, category) for leg in legs)
    untracked = next((o.untracked for o in orders if o.untracked), None)  # a tp/sl-only leg's too
    touches = tuple(t for o in orders for t in o.touches)  # tp/sl-only legs: still only the bot's own orders
    if action == "amend" and any(o.action != "amend" for o in orders):
        orders = tuple(o for o in orders if o.action == "amend")  # tp/sl-only legs change no size or price:
        # the answer still has their place (`amend_legs_sent` maps the legs kept to it)
    symbols = {o.symbol for o in orders}
    return RequestFacts(action=action, symbol=symbols.pop() if len(symbols) == 1 else None, market=category,
                        orders=orders, untracked=untracked, touches=touches)


def amend_legs_sent(sent: bytes) -> tuple[int, ...] | None:
    """Where each leg keyproxy reads of an `amend-batch` (REST body, or a `/v5/trade` frame's `args[0]`) stands in
    the batch Bybit answers item by item: the tp/sl-only items `_batch` leaves out keep their places there.
    None: not a batch."""
    try:
        doc = json.loads(sent)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("args"), list) and doc["args"]:
        doc = doc["args"][0]
    items = doc.get("request") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return None
    try:
        return tuple(i for i, item in enumerate(items)
                     if isinstance(item, dict) and _amend(item, None).action == "amend")
    except BadRequest:
        return None


def bybit_order_book_change(method: str, path: str, query: str, status: int, body: bytes,
                            facts: RequestFacts) -> OrderBookChange:
    """Only what Bybit confirmed (retCode 0; in a batch, each `retExtInfo.list[i].code` 0): a cancel of an
    unknown order (retCode 110001 / 170213, HTTP 200) frees nothing; `order/realtime` for one category and
    symbol, answered in full (no `nextPageCursor`), sets that scope's count."""
    if not 200 <= status < 300:
        return OrderBookChange()
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return OrderBookChange(opened=tuple(o.scope for o in facts.placed())) if facts.action == "order" \
            else OrderBookChange()
    if doc.get("retCode") != 0:
        return OrderBookChange()
    ext = doc.get("retExtInfo")
    codes = ext.get("list") if isinstance(ext, dict) else None
    if facts.action == "order":
        legs = facts.placed()
        if path == _BATCH_PLACE and isinstance(codes, list) and len(codes) == len(legs):
            return OrderBookChange(opened=tuple(leg.scope for leg, c in zip(legs, codes)
                                                if isinstance(c, dict) and c.get("code") == 0))
        return OrderBookChange(opened=tuple(leg.scope for leg in legs))
    if facts.action == "cancel":
        if path == _BATCH_CANCEL:
            done = [c for c in codes if isinstance(c, dict) and c.get("code") == 0] if isinstance(codes, list) else []
            return OrderBookChange(closed=(facts.scope,) * len(done))
        if path == "/v5/order/cancel-all":
            result = doc.get("result")
            listed = result.get("list") if isinstance(result, dict) else None
            return OrderBookChange(closed=(facts.scope,) * (len(listed) if isinstance(listed, list) else 0))
        return OrderBookChange(closed=(facts.scope,))
    if method == "GET" and path == "/v5/order/realtime":
        params = dict(parse_qsl(query, keep_blank_values=True))
        result = doc.get("result")
        listed = result.get("list") if isinstance(result, dict) else None
        complete = isinstance(result, dict) and not result.get("nextPageCursor")
        only_open = params.get("openOnly", "0") == "0"
        # filtered by `orderFilter`, an order's id or a page `cursor`, it shows part of the symbol's orders
        whole = whole_listing(query, ("category", "symbol", "openOnly", "limit"))
        if params.get("symbol") and params.get("category") and isinstance(listed, list) and complete and only_open \
                and whole:
            return OrderBookChange(counted=((f"{params['category']}:{normalize_symbol(params['symbol'])}",
                                             len(listed)),))
    return OrderBookChange()


def bybit_prices(path: str, body: bytes) -> dict[str, Decimal]:
    """Last prices from the public tickers answer (docs/v5/market/tickers.mdx: result.list[].lastPrice)."""
    if path != "/v5/market/tickers":
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    result = doc.get("result") if isinstance(doc, dict) else None
    items = result.get("list") if isinstance(result, dict) else None
    out: dict[str, Decimal] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("symbol"), str):
            value = published(item.get("lastPrice"))
            if value is not None:
                out[normalize_symbol(item["symbol"])] = value
    return out
