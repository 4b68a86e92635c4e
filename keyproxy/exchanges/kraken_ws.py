"""Kraken's spot WebSocket v2 (`wss://ws-auth.kraken.com/v2`) as a dialect.

Per Kraken's docs ("Spot WebSocket v2", "WebSocket authentication"): a private frame (`subscribe` to
`executions`, `balances`, `level3`; `add_order`, `amend_order`, `edit_order`, `cancel_order`, `cancel_all`,
`cancel_all_orders_after`, `batch_add`, `batch_cancel`) carries `params.token`, a bearer token from REST
`GetWebSocketsToken` ("used within 15 minutes of creation, but it does not expire once a successful
WebSockets connection and private subscription has been made and is maintained"). Whoever holds that token
trades the account, so a bot never gets one: its REST `GetWebSocketsToken` through keyproxy answers a
virtual token bound to the bot (`Kraken.swap_stream_token`), and here each frame presenting it is decided as
that bot's, with the facts of the REST call it mirrors (AddOrder, EditOrder...), then sent with the real
token keyproxy fetched itself (`SignContext.stream_token`). Frames are `{"method", "params", "req_id"}`;
answers `{"method", "req_id", "success", "result" | "error"}`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from keyproxy.exchanges._ws import MAX_FRAME_ID, WsDialect, load_frame
from keyproxy.exchanges.base import (
    OrderUpdate,
    BadRequest, Endpoint, EndpointClass, IncomingRequest, OrderBookChange, OutboundRequest, RealKey, SignContext,
    known_members,
)
from keyproxy.exchanges.kraken_facts import MARKET, PLACING, TRIGGERED, kraken_facts, pair_id
from keyproxy.exchanges.kraken_fills import kraken_stream_updates
from keyproxy.policy.model import RequestFacts

T, R, P = EndpointClass.TRADE, EndpointClass.READ, EndpointClass.PUBLIC
# method -> (class, the REST method whose facts value it)
OPS: dict[str, tuple[EndpointClass, str | None]] = {
    "subscribe": (R, None), "unsubscribe": (R, None), "ping": (P, None),
    "add_order": (T, "AddOrder"), "edit_order": (T, "EditOrder"), "amend_order": (T, "AmendOrder"),
    "batch_add": (T, "AddOrderBatch"), "cancel_order": (T, "CancelOrder"), "cancel_all": (T, "CancelAll"),
    "cancel_all_orders_after": (T, "CancelAllOrdersAfter"), "batch_cancel": (T, "CancelOrderBatch"),
}
PUBLIC_CHANNELS = frozenset({"ticker", "book", "ohlc", "trade", "instrument", "status", "heartbeat"})
MARGIN_LEVERAGE = "5"  # v2 `margin: true` "funds the order on margin using the maximum leverage for the pair (5)"


# the exchange's documented frame members (`known_members`)
_MEMBERS = frozenset({"method", "params", "req_id"})


def parse(raw: bytes | str, numbers_as_text: bool = False) -> dict[str, Any]:
    frame = load_frame(raw, numbers_as_text)
    if not isinstance(frame, dict) or not isinstance(frame.get("method"), str) or not frame["method"]:
        raise BadRequest("a request frame is a JSON object with a method")
    known_members(frame, _MEMBERS)
    if not isinstance(frame.get("params", {}), dict):
        raise BadRequest("params must be an object")
    req_id = frame.get("req_id")
    if req_id is not None and not numbers_as_text and (isinstance(req_id, bool) or not isinstance(req_id, int)
                                                       or not -MAX_FRAME_ID <= req_id <= MAX_FRAME_ID):
        raise BadRequest("req_id must be an integer of at most 2^53")
    return frame


def _text(value: object) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value).lower() if \
        isinstance(value, bool) else str(value)


def _list(value: object) -> list[Any]:
    """A v2 list parameter (one value is read as a list of one)."""
    return value if isinstance(value, list) else [] if value is None else [value]


_BOTH_IDS = ("name the order by order_id or by cl_ord_id, not both: keyproxy checks the one it reads, Kraken may "
             "act on the other")


def _rest_order(p: dict[str, Any]) -> dict[str, Any]:
    """A v2 order's parameters in AddOrder's names, so REST and WebSocket orders are valued alike."""
    # read as Kraken's lower-case names (a spelling with capitals kept its trigger unread: session 27's review)
    order_type = str(p.get("order_type") or "").lower()
    triggers = p.get("triggers") if isinstance(p.get("triggers"), dict) else {}
    if "order_id" in p and "order_type" in p:  # edit_order takes none: the edited order keeps its own
        raise BadRequest("edit_order takes no order_type: the edited order keeps its own")
    edited_trigger = "order_id" in p and bool(triggers)  # edit_order names no order type: a new trigger is the
    # edited order's, read as EditOrder's `price` with its limit as `price2` (left unread, a trigger edited far from
    # the market passed the price band: session 27's review); without a limit, an empty `price2`: the trigger of an
    # order that trades at market once it fires (the trigger copied in as its limit crossed nothing: session 32's)
    trigger = _text(triggers.get("price"))
    if trigger is not None and triggers.get("price_type", "static") != "static":
        trigger = "+" + trigger  # an offset (pct, quote): keyproxy values no relative price
    limit = _text(p.get("limit_price"))
    if limit is not None and p.get("limit_price_type", "static") != "static":
        limit = "+" + limit
    out: dict[str, Any] = {"pair": _text(p.get("symbol")), "type": _text(p.get("side")),
                           "ordertype": order_type or None}
    cash = _text(p.get("cash_order_qty"))
    out["volume"] = cash if cash is not None else _text(p.get("order_qty"))
    if cash is not None:
        out["oflags"] = "viqc"
    if edited_trigger:
        out["price"], out["price2"] = trigger, limit if limit is not None else ""
    elif order_type.endswith("-limit"):
        out["price"], out["price2"] = trigger, limit
    elif order_type.startswith(TRIGGERED):
        out["price"] = trigger
    else:
        out["price"] = limit
    for flag in ("margin", "reduce_only", "post_only"):  # `1` read as false here could be true at Kraken
        if p.get(flag) not in (None, True, False, "true", "false"):
            raise BadRequest(f"{flag} must be true or false")
    if p.get("margin") is True or p.get("margin") == "true":
        out["leverage"] = MARGIN_LEVERAGE
    if p.get("reduce_only") in (True, "true"):
        out["reduce_only"] = "true"
    if p.get("conditional"):  # a v2 order's conditional close: AddOrder's close[...]
        out["close"] = p["conditional"]
    if _text(p.get("order_id")) is not None:  # edit_order: the order it replaces
        out["txid"] = _text(p.get("order_id"))
    if _text(p.get("cl_ord_id")) is not None:  # recorded as the placing bot's
        out["cl_ord_id"] = _text(p.get("cl_ord_id"))
    out["stptype"] = _text(p.get("stp_type"))  # cancel_newest (the default), cancel_oldest, cancel_both
    return {k: v for k, v in out.items() if v is not None}  # an empty price2 stays: a trigger without a limit


def _rest_amend(p: dict[str, Any]) -> dict[str, Any]:
    """A v2 `amend_order`'s parameters in AmendOrder's names (`order_id` is REST's `txid`; an offset price type
    marks the price relative, which keyproxy does not value)."""
    if p.get("order_id") is not None and p.get("cl_ord_id") is not None:
        raise BadRequest(_BOTH_IDS)
    out: dict[str, Any] = {"txid": _text(p.get("order_id")), "cl_ord_id": _text(p.get("cl_ord_id")),
                           "order_qty": _text(p.get("order_qty"))}
    for name in ("limit_price", "trigger_price"):
        value = _text(p.get(name))
        out[name] = "+" + value if value is not None and p.get(f"{name}_type", "static") != "static" else value
    return {k: v for k, v in out.items() if v is not None}


def _both_sizes(p: dict[str, Any], facts: RequestFacts) -> RequestFacts:
    """An order giving both `order_qty` and `cash_order_qty`: which one Kraken executes is not documented,
    so it is valued by neither (a conflict, refused under a notional limit). Batch legs one by one."""
    def mark(leg: RequestFacts, order: object) -> RequestFacts:
        both = isinstance(order, dict) and "cash_order_qty" in order and "order_qty" in order
        return replace(leg, conflict="both order_qty and cash_order_qty", size_unsure=True) if both else leg
    if facts.orders:  # batch_add: kraken_facts read every entry of `orders`, in order
        return replace(facts, orders=tuple(mark(leg, o) for leg, o in zip(facts.orders, p["orders"], strict=True)))
    return mark(facts, p) if facts.action in ("order", "amend") else facts


class KrakenWsApi(WsDialect):
    """The WebSocket v2 dialect of a Kraken account; REST facts and errors from `rest`."""
    order_id_keys = ("order_id",)  # the member of an order answer naming the exchange's order id
    amend_replaces = True  # EditOrder / edit_order cancel the order and place a new one under a new id
    fill_markets = frozenset({"spot"})  # fills come from the executions channel (kraken_fills.py)

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return kraken_stream_updates(text)

    def classify(self, method: str, path: str) -> Endpoint | None:
        spec = OPS.get(method)
        return Endpoint(spec[0], f"ws {method}", False) if spec else None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        """Market-data subscriptions (ticker, book...) need no token: public."""
        frame = parse(req.body)
        channel = frame.get("params", {}).get("channel")
        if frame["method"] in ("subscribe", "unsubscribe") and channel in PUBLIC_CHANNELS:
            return Endpoint(P, f"ws {frame['method']} {frame['params']['channel']}", False)
        return None

    def ws_frame(self, text: str) -> tuple[object, str]:
        frame = parse(text)
        return (frame["method"], frame.get("req_id")), frame["method"]

    def ws_answer(self, doc: dict[str, object]) -> tuple[object, int] | None:
        method = doc.get("method")
        if method == "pong":
            return ("ping", doc.get("req_id")), 200
        if not isinstance(method, str) or "success" not in doc:
            return None
        return (method, doc.get("req_id")), 200 if doc.get("success") is True else 400

    def ws_refusal(self, key: object, method: str, code: str, message: str, status: int) -> dict[str, object]:
        native = self._rest.native_error(code, message)["error"][0]
        stamp = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        req_id = key[1] if isinstance(key, tuple) else None
        return {"method": method, "req_id": req_id, "success": False, "error": native, "time_in": stamp,
                "time_out": stamp}

    def presented_key(self, req: IncomingRequest) -> str | None:
        return None  # frames carry a token, never a key

    def presented_stream_token(self, req: IncomingRequest) -> str | None:
        token = parse(req.body).get("params", {}).get("token")
        if token is not None and (not isinstance(token, str) or not token):
            raise BadRequest("token must be a string")
        return token

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req  # the token is swapped in sign()

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        """The frame byte for byte, its virtual token replaced by the real one keyproxy fetched."""
        virtual = self.presented_stream_token(req)
        text = req.body.decode()
        if virtual is not None:
            if ctx.stream_token is None:
                raise ValueError("no Kraken WebSocket token for this frame")
            quoted = json.dumps(virtual)
            if text.count(quoted) != 1:
                raise BadRequest("the token must appear once in the frame")
            text = text.replace(quoted, json.dumps(ctx.stream_token))
            if parse(text)["params"].get("token") != ctx.stream_token:  # the one copy was not params.token
                raise BadRequest("the token must be written plainly, in params.token")
        return OutboundRequest(req.method, ctx.origin, req.path, "", {}, text.encode())

    def _twin(self, body: bytes) -> tuple[str, dict[str, Any]] | None:
        """The REST call a trading frame mirrors: (path, its parameters in REST's names)."""
        frame = parse(body, numbers_as_text=True)
        rest = OPS.get(frame["method"], (R, None))[1]
        if rest is None:
            return None
        p = frame.get("params", {})
        if rest in ("AddOrder", "EditOrder"):
            params = _rest_order(p)
        elif rest == "AddOrderBatch":
            orders = p.get("orders")
            params = {"pair": _text(p.get("symbol")),
                      "orders": [_rest_order(o) if isinstance(o, dict) else o for o in orders]
                      if isinstance(orders, list) else orders}
        elif rest == "AmendOrder":
            params = _rest_amend(p)
        elif rest == "CancelOrder":  # the orders it names, in CancelOrder's names (userrefs beside txids)
            params = {"txid": _list(p.get("order_id")) + [str(u) for u in _list(p.get("order_userref"))],
                      "cl_ord_id": _list(p.get("cl_ord_id"))}
        elif rest == "CancelOrderBatch":
            params = {"orders": _list(p.get("orders")), "cl_ord_ids": _list(p.get("cl_ord_id"))}
        elif rest == "CancelAllOrdersAfter":
            params = {"timeout": _text(p.get("timeout"))}
        else:
            params = {}  # CancelAll: every order
        return "/0/private/" + rest, params

    @property
    def market_list_requests(self) -> tuple[tuple[str, str, str, bytes], ...]:  # type: ignore[override]
        return self._rest.market_list_requests  # type: ignore[no-any-return]

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        """The pair a frame names (its REST twin's), as `#<spelling>` (kraken_facts.kraken_market_ids)."""
        try:
            twin = self._twin(req.body)
        except BadRequest:
            return ()
        if twin is None or twin[0].rsplit("/", 1)[-1] not in PLACING:
            return ()
        pair = twin[1].get("pair")
        return (pair_id(pair),) if isinstance(pair, str) and pair else ()

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return self._rest.market_names(path, body)  # type: ignore[no-any-return]

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        twin = self._twin(req.body)
        if twin is None:
            return RequestFacts(action="other")
        path, params = twin
        rest_endpoint = self._rest.classify("POST", path)
        facts = kraken_facts(IncomingRequest("POST", path, "", {"content-type": "application/json"},
                                             json.dumps(params).encode(), markets=req.markets), rest_endpoint)
        return _both_sizes(parse(req.body).get("params", {}), facts)

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        """Only what Kraken confirmed: an order id answered, a cancel answered (one order: a multi-order cancel
        is answered order by order, and only the first answer is read), cancel_all (none left)."""
        if status != 200:
            return OrderBookChange()
        if not body and facts.action == "order":  # no answer read: every order counts as resting (never understate)
            return OrderBookChange(opened=tuple(leg.scope for leg in facts.placed()))
        try:
            result = json.loads(body).get("result")
        except (ValueError, AttributeError):
            return OrderBookChange()
        method = parse(req.body).get("method")
        if method in ("add_order", "batch_add") and facts.action == "order":
            placed = result if isinstance(result, list) else [result]
            count = sum(1 for o in placed if isinstance(o, dict) and o.get("order_id"))
            return OrderBookChange(opened=(facts.orders[0].scope if facts.orders else facts.scope,) * count)
        if method == "cancel_order" and isinstance(result, dict) and result.get("order_id"):
            return OrderBookChange(closed=(f"{MARKET}:*",))
        if method == "cancel_all":
            return OrderBookChange(reset=(MARKET,))
        return OrderBookChange()
