"""Binance's WebSocket API (`/ws-api/v3`) as a dialect: one request frame is one message for the core.

A dialect speaks the `Adapter` interface for one transport's messages, so the core's identify /
verify / policy / audit / sign path runs unchanged: the WebSocket edge turns a frame
`{"id", "method", "params"}` into an `IncomingRequest` (method = the frame's method, path = the
socket's path, body = the frame), and this module classifies, verifies, values and re-signs it.

Signed frames carry `apiKey`, `timestamp`, `signature` among their params; the payload is every
other param sorted by name, `k=v` joined with `&`, values as sent (no percent-encoding): HMAC-SHA256
hex, or base64 Ed25519 / RSA (docs: binance-spot-api-docs web-socket-api "Request security").
Trading methods are valued with the facts of the REST endpoint they mirror (`order.place` is
`POST /api/v3/order`), so a limit holds the same on both transports.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from collections import OrderedDict
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus, urlencode

from keyproxy.exchanges._fills import loads
from keyproxy.exchanges._ws import WsDialect, load_frame
from keyproxy.exchanges.binance_facts import binance_facts_of
from keyproxy.exchanges.binance_budget import SPOT_WEIGHT, binance_costs
from keyproxy.exchanges.binance_fills import (
    READ_MARKETS, STREAM_MARKETS, binance_amend_verdicts, binance_cancel_replace_done, binance_order_updates_in,
    binance_placed_ids, binance_stream_updates,
)
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, Endpoint, EndpointClass, IncomingRequest, KeyRejection, OrderBookChange,
    OrderUpdate, OutboundRequest, ParamList, RealKey, SignContext, Verified, known_members,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

WS_API_PATH = "/ws-api/v3"

T, R, P = EndpointClass.TRADE, EndpointClass.READ, EndpointClass.PUBLIC


@dataclass(frozen=True, slots=True)
class WsMethod:
    cls: EndpointClass
    signed: bool
    twin: tuple[str, str] | None = None  # the REST endpoint whose facts value this method
    # the REST endpoint whose weight this method spends, where it has no twin above (its facts are no order's)
    weighed_as: tuple[str, str] | None = None
    weight: int = 0  # a method no REST endpoint mirrors: its own weight (web-socket-api.md)


# docs: binance-spot-api-docs, web-socket-api.md (trading, account, user data stream, market data
# requests). A method not listed is refused (unknown_endpoint) when it carries a key, like REST.
METHODS: dict[str, WsMethod] = {
    "order.place": WsMethod(T, True, ("POST", "/api/v3/order")),
    "order.test": WsMethod(T, True, ("POST", "/api/v3/order/test")),
    "order.cancel": WsMethod(T, True, ("DELETE", "/api/v3/order")),
    "order.cancelReplace": WsMethod(T, True, ("POST", "/api/v3/order/cancelReplace")),
    "order.amend.keepPriority": WsMethod(T, True, ("PUT", "/api/v3/order/amend/keepPriority")),
    "openOrders.cancelAll": WsMethod(T, True, ("DELETE", "/api/v3/openOrders")),
    "orderList.place": WsMethod(T, True, ("POST", "/api/v3/order/oco")),
    "orderList.place.oco": WsMethod(T, True, ("POST", "/api/v3/orderList/oco")),
    "orderList.place.oto": WsMethod(T, True, ("POST", "/api/v3/orderList/oto")),
    "orderList.place.otoco": WsMethod(T, True, ("POST", "/api/v3/orderList/otoco")),
    "orderList.cancel": WsMethod(T, True, ("DELETE", "/api/v3/orderList")),
    "sor.order.place": WsMethod(T, True, ("POST", "/api/v3/sor/order")),
    "sor.order.test": WsMethod(T, True, ("POST", "/api/v3/sor/order/test")),
    "order.status": WsMethod(R, True, weighed_as=("GET", "/api/v3/order")),
    "openOrders.status": WsMethod(R, True, ("GET", "/api/v3/openOrders")),
    "allOrders": WsMethod(R, True, weighed_as=("GET", "/api/v3/allOrders")),
    "orderList.status": WsMethod(R, True, weighed_as=("GET", "/api/v3/orderList")),
    "openOrderLists.status": WsMethod(R, True, weighed_as=("GET", "/api/v3/openOrderList")),
    "allOrderLists": WsMethod(R, True, weighed_as=("GET", "/api/v3/allOrderList")),
    "myTrades": WsMethod(R, True, weighed_as=("GET", "/api/v3/myTrades")),
    "myPreventedMatches": WsMethod(R, True, weighed_as=("GET", "/api/v3/myPreventedMatches")),
    "myAllocations": WsMethod(R, True, weighed_as=("GET", "/api/v3/myAllocations")),
    "account.status": WsMethod(R, True, weighed_as=("GET", "/api/v3/account")),
    "account.commission": WsMethod(R, True, weighed_as=("GET", "/api/v3/account/commission")),
    "account.rateLimits.orders": WsMethod(R, True, weighed_as=("GET", "/api/v3/rateLimit/order")),
    "order.amendments": WsMethod(R, True, weighed_as=("GET", "/api/v3/order/amendments")),
    "userDataStream.subscribe.signature": WsMethod(R, True, weight=2),
    # a logon proves the key once for the connection (Binance: Ed25519 keys only); keyproxy answers it and
    # session.status / session.logout itself, and re-signs each of the session's requests with the real key
    "session.logon": WsMethod(R, True, weight=2),
    # the logged-on form of the user data stream subscription: sent upstream as the signed form
    "userDataStream.subscribe": WsMethod(R, True, weight=2),
    # margin: a token from POST /sapi/v1/userListenToken instead of a key (keyproxy knows whose it is)
    "userDataStream.subscribe.listenToken": WsMethod(R, False, weight=2),
    "session.logout": WsMethod(P, False, weight=2),
    # no key: these act on this connection only, or read public data
    "userDataStream.unsubscribe": WsMethod(P, False, weight=2),
    "session.status": WsMethod(P, False, weight=2),
    "session.subscriptions": WsMethod(P, False, weight=2),
    "ping": WsMethod(P, False, weighed_as=("GET", "/api/v3/ping")),
    "time": WsMethod(P, False, weighed_as=("GET", "/api/v3/time")),
    "exchangeInfo": WsMethod(P, False, weighed_as=("GET", "/api/v3/exchangeInfo")),
    "depth": WsMethod(P, False, weighed_as=("GET", "/api/v3/depth")),
    "trades.recent": WsMethod(P, False, weighed_as=("GET", "/api/v3/trades")),
    "trades.historical": WsMethod(P, False, weighed_as=("GET", "/api/v3/historicalTrades")),
    "trades.aggregate": WsMethod(P, False, weighed_as=("GET", "/api/v3/aggTrades")),
    "klines": WsMethod(P, False, weighed_as=("GET", "/api/v3/klines")),
    "uiKlines": WsMethod(P, False, weighed_as=("GET", "/api/v3/uiKlines")),
    "avgPrice": WsMethod(P, False, weighed_as=("GET", "/api/v3/avgPrice")),
    "ticker.24hr": WsMethod(P, False, weighed_as=("GET", "/api/v3/ticker/24hr")),
    "ticker.tradingDay": WsMethod(P, False, weighed_as=("GET", "/api/v3/ticker/tradingDay")),
    "ticker": WsMethod(P, False, weighed_as=("GET", "/api/v3/ticker")),
    "ticker.price": WsMethod(P, False, weighed_as=("GET", "/api/v3/ticker/price")),
    "ticker.book": WsMethod(P, False, weighed_as=("GET", "/api/v3/ticker/bookTicker")),
}

_AUTH_PARAMS = ("apiKey", "signature")
NO_LIMITS = "returnRateLimits"  # false: Binance leaves `rateLimits` out of the answers
# the WebSocket API's connection parameters that leave its answers as keyproxy reads them (the defaults, spelled out)
_PLAIN_ANSWERS = frozenset({("responseFormat", "json"), ("timeUnit", "millisecond")})
_HEAVIEST = 250  # the most one request weighs (depth past 1000 levels): a frame whose weight is not known


_FRAMES: OrderedDict[bytes | str, dict[str, Any]] = OrderedDict()  # parse_frame's: raw -> frame, newest last
_FRAMES_KEPT = 64


def _frame_body(frame: dict[str, Any]) -> bytes:
    """A frame keyproxy built (the bot's, stripped or re-signed) serialized, and remembered as `parse_frame`'s
    answer for those bytes: the next step reads it without parsing what was just written."""
    body = json.dumps(frame).encode()
    _kept(body, frame)
    return body


def _kept(raw: bytes | str, frame: dict[str, Any]) -> dict[str, Any]:
    _FRAMES[raw] = frame
    if len(_FRAMES) > _FRAMES_KEPT:
        _FRAMES.popitem(last=False)
    return frame


def parse_frame(raw: bytes | str) -> dict[str, Any]:
    """A request frame as Binance reads it, or BadRequest: a JSON object with an id, a method, object params.

    Every step of one frame's decision reads it (identify, verify, facts, sign, bookkeeping): it is parsed
    once and shared (the frames keyproxy builds from it are remembered as built, `_frame_body`), so callers
    treat the result as read-only (they build new dicts to change it)."""
    kept = _FRAMES.get(raw)
    if kept is not None:
        return kept
    return _kept(raw, _parsed(raw))


# the exchange's documented frame members (`known_members`)
_MEMBERS = frozenset({"id", "method", "params"})


def _parsed(raw: bytes | str) -> dict[str, Any]:
    frame = load_frame(raw)
    if not isinstance(frame, dict):
        raise BadRequest("frame is not a JSON object")
    known_members(frame, _MEMBERS)
    if "id" not in frame or not isinstance(frame["id"], (str, int)) or isinstance(frame["id"], bool):
        raise BadRequest("frame has no id (a string or an integer)")
    if not isinstance(frame.get("method"), str) or not frame["method"]:
        raise BadRequest("frame has no method")
    params = frame.get("params", {})
    if not isinstance(params, dict):
        raise BadRequest("params must be a JSON object")
    for k, v in params.items():
        if isinstance(v, (dict, list)) and k not in ("symbols", "orders"):
            raise BadRequest(f"param {k[:40]!r} is not a string, number or boolean")
    return frame


@lru_cache(maxsize=64)
def _twin_of(method: str, body: bytes) -> IncomingRequest | None:
    """The REST request a frame stands for (its budget cost and its facts are read from it): built once per
    frame, as the frame is parsed once (`parse_frame`); immutable, so shared."""
    spec = METHODS.get(method)
    if spec is None or spec.twin is None:
        return None
    return IncomingRequest(spec.twin[0], spec.twin[1], _query(body), {}, b"")


@lru_cache(maxsize=64)
def _weighed(method: str, body: bytes) -> tuple[tuple[Budget, int], ...]:
    """What a frame spends (`BinanceWsApi.costs`), once per frame: its REST twin's costs, read by the REST
    function from the frame's params as that request's query (one weight table for both transports)."""
    spec = METHODS.get(method)
    if spec is None:  # refused before it could spend; were it sent, the heaviest request's weight
        return ((SPOT_WEIGHT, _HEAVIEST),)
    rest = spec.twin or spec.weighed_as
    if rest is None:
        return ((SPOT_WEIGHT, spec.weight or _HEAVIEST),)
    return binance_costs(rest[0], rest[1], _query(body), b"")  # the frame's params are all there


def _query(body: bytes) -> str:
    """A frame's params (but its key and signature) as the REST twin's query string (lists as JSON, as REST)."""
    params = parse_frame(body).get("params", {})
    return urlencode({k: _text(v) for k, v in params.items() if k not in _AUTH_PARAMS})


def _text(value: Any) -> str:
    """A param value as Binance puts it in the payload (JSON booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def payload(params: dict[str, Any]) -> str:
    """The signed payload: every param but `signature`, sorted by name, `k=v&...`, values as sent."""
    return "&".join(f"{k}={_text(v)}" for k, v in sorted(params.items()) if k != "signature")


_INTERVALS = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}
_COUNTED = {"REQUEST_WEIGHT": "used-weight", "ORDERS": "order-count"}  # RAW_REQUESTS: not modelled
_ORDER_BUDGETS = {"x-mbx-order-count-10s": "ORDERS_10S", "x-mbx-order-count-1d": "ORDERS_1D"}


def binance_ws_usage(answer: dict[str, Any], status: int,
                     now_ms: int) -> tuple[dict[str, str], tuple[float, str | None] | None]:
    """An answer frame's `rateLimits` as the REST answer's usage headers (`X-MBX-USED-WEIGHT-1M`,
    `X-MBX-ORDER-COUNT-10S`, ...: Binance names them by type, interval number and interval letter), and its
    refusal for rate: status 429 (or 418, the IP banned) holds until the error's `data.retryAfter` (epoch ms; a
    minute without one); -1015 (too many orders) holds the account's order count it names, not the IP's weight
    (docs: web-socket-api.md "Rate limits", "Error codes")."""
    headers: dict[str, str] = {}
    limits = answer.get("rateLimits")
    over = None
    for entry in limits if isinstance(limits, list) else ():
        if not isinstance(entry, dict):
            continue
        kind_name, interval = entry.get("rateLimitType"), entry.get("interval")
        if not isinstance(kind_name, str) or not isinstance(interval, str):  # what a dict key may be, read
            continue
        kind, letter = _COUNTED.get(kind_name), _INTERVALS.get(interval)
        num, count, limit = entry.get("intervalNum"), entry.get("count"), entry.get("limit")
        if kind is None or letter is None or type(num) is not int or type(count) is not int or count < 0:
            continue
        name = f"x-mbx-{kind}-{num}{letter}"
        headers[name] = str(count)
        if type(limit) is int and count >= limit and name in _ORDER_BUDGETS:
            over = over or _ORDER_BUDGETS[name]
    if status not in (418, 429):
        return headers, None
    error = answer.get("error")
    error = error if isinstance(error, dict) else {}
    data = error.get("data")
    retry = data.get("retryAfter") if isinstance(data, dict) else None
    server = data.get("serverTime") if isinstance(data, dict) else None
    # retryAfter is Binance's clock: against its serverTime when given (this host's clock may be off by minutes)
    hold = max(1.0, (retry - (server if type(server) is int else now_ms)) / 1000) if type(retry) is int else 60.0
    return headers, (hold, (over or "ORDERS_10S") if error.get("code") == -1015 and status == 429 else None)


class BinanceWsApi(WsDialect):
    """The `/ws-api/v3` dialect of a Binance account; REST facts, errors and key rules come from `rest`."""
    order_id_keys = ("orderId",)  # the member of an order answer naming the exchange's order id
    client_id_keys = ("clientOrderId",)
    fill_markets = READ_MARKETS  # binance_fills.py
    order_ids_per_market = True  # each symbol numbers its orders: 500 on BTCUSDT is not 500 on ETHUSDT
    stream_markets = STREAM_MARKETS

    # --- classification and identity ------------------------------------------------------

    def classify(self, method: str, path: str) -> Endpoint | None:
        spec = METHODS.get(method) if path == WS_API_PATH else None
        return Endpoint(spec.cls, f"ws {method}", spec.signed) if spec else None

    def presented_key(self, req: IncomingRequest) -> str | None:
        key = parse_frame(req.body).get("params", {}).get("apiKey")
        return key if isinstance(key, str) and key else None

    def presented_stream_token(self, req: IncomingRequest) -> str | None:
        frame = parse_frame(req.body)
        if frame["method"] != "userDataStream.subscribe.listenToken":
            return None
        token = frame.get("params", {}).get("listenToken")
        return token if isinstance(token, str) and token else None

    # --- the bot's signature ----------------------------------------------------------------

    def session_action(self, method: str) -> str | None:
        """`logon`, `logout` or `status` for the session methods keyproxy answers itself, else None."""
        return {"session.logon": "logon", "session.logout": "logout", "session.status": "status"}.get(method)

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        frame = parse_frame(req.body)
        params = dict(frame.get("params", {}))
        if frame["method"] == "session.logon" and bot.key_type != "ed25519":
            raise BadRequest("session.logon takes an Ed25519 API key only (Binance: HMAC and RSA keys sign "
                             "each request instead)")
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise AuthFailure("bad_signature", "this method needs a signature")
        text = payload(params)
        q = ParamList([f"{k}={quote_plus(_text(params[k]))}" for k in ("timestamp", "recvWindow") if k in params])
        ts, window = self._rest._timing(q, ParamList())
        if not (ts < now_ms + 1000 and now_ms - ts <= window):
            raise AuthFailure("stale_request", "timestamp is outside the recvWindow (or more than 1 s ahead)")
        if "%" in signature or not self._rest._check(bot, signature, text.encode()):
            raise AuthFailure("bad_signature", "signature does not match the virtual credential")
        # HMAC, RSA PKCS#1 v1.5 and Ed25519 are deterministic: one payload has one signature, so the bytes
        # verified identify the request (a re-encoded signature cannot pass as a new one)
        replay_id = f"ws:{bot.key_id}:{hashlib.sha256(text.encode()).hexdigest()}"
        return Verified(self.strip(req), replay_id=replay_id, expires_ms=int(ts + window) + 1)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        frame = parse_frame(req.body)
        params = {k: v for k, v in frame.get("params", {}).items() if k not in _AUTH_PARAMS}
        return req.replace(body=_frame_body({**frame, "params": params}))

    # --- the real key -------------------------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        frame = parse_frame(req.body)
        # the answer's `rateLimits` are what keeps the governor's count true (`answer_usage`): a bot may not turn
        # them off for the connection keyproxy shares with its count
        params = {k: v for k, v in frame.get("params", {}).items() if k not in _AUTH_PARAMS and k != NO_LIMITS}
        if endpoint.signed:
            params["apiKey"] = key.api_key.reveal_str()
            params.setdefault("timestamp", ctx.now_ms)
            params["signature"] = unquote(self._rest._real_signature(key, payload(params).encode()))
        if frame["method"] == "userDataStream.subscribe":  # keyproxy's upstream connection never logs on
            frame = {**frame, "method": "userDataStream.subscribe.signature"}
        if ctx.stream_token is not None and "listenToken" in params:  # the real token for the bot's virtual one
            params["listenToken"] = ctx.stream_token
        body = _frame_body({**frame, "params": params} if params or "params" in frame else frame)
        return OutboundRequest(req.method, ctx.origin, req.path, "", {}, body)


    # --- facts and answers: those of the REST endpoint each method mirrors ---------------------

    def _twin(self, req: IncomingRequest) -> IncomingRequest | None:
        return _twin_of(req.method, req.body)

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        """A WebSocket API request spends the IP's request weight as its REST twin does (Binance: "the WebSocket
        API shares the REST API's IP limits"), and an order the account's order count; a method no REST endpoint
        mirrors (a session's, a user data stream's) spends its own weight (web-socket-api.md)."""
        try:
            return _weighed(req.method, req.body)
        except BadRequest:
            return ()

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        """The REST twin's facts, read from the frame's params as they are (no query string between)."""
        frame = parse_frame(req.body)
        spec = METHODS.get(frame["method"])
        if spec is None or spec.twin is None:
            return RequestFacts(action="other" if endpoint.cls is not EndpointClass.TRADE else None)
        method, path = spec.twin
        twin_endpoint = self._rest.classify(method, path) or Endpoint(endpoint.cls, endpoint.name)
        if twin_endpoint.cls is EndpointClass.PUBLIC or twin_endpoint.cls is EndpointClass.READ:
            return RequestFacts(action="other")
        params = {k: _text(v) for k, v in frame.get("params", {}).items() if k not in _AUTH_PARAMS}
        return binance_facts_of(method, path, params)


    @staticmethod
    @lru_cache(maxsize=8)
    def _answer(body: bytes) -> dict[str, Any]:
        """An answer frame, parsed once for all of its bookkeeping (read-only, as `parse_frame`'s)."""
        doc = loads(body)
        return doc if isinstance(doc, dict) else {}

    def upstream_query(self, query: str) -> str:
        """The socket's query upstream without `returnRateLimits` (`sign`: the answers' counts are the governor's).
        Only what keeps the answers JSON keyproxy reads passes (session 28's review: `responseFormat=sbe` made every
        answer a binary frame keyproxy could not read, so orders placed on it were never learned): anything else,
        SBE or another time unit, is refused before the socket opens (BadRequest)."""
        kept = []
        for part in (p for p in query.split("&") if p):
            name, _, value = (unquote_plus(x) for x in part.partition("="))
            if name == NO_LIMITS:
                continue
            if (name, value.lower()) not in _PLAIN_ANSWERS:
                raise BadRequest(f"{name[:40]}={value[:40]} is not passed on: keyproxy reads this socket's answers "
                                 "only as JSON with millisecond times (responseFormat=json, timeUnit=MILLISECOND)")
            kept.append(part)
        return "&".join(kept)

    def answer_usage(self, status: int, body: bytes) -> tuple[Mapping[str, str], tuple[float, str | None] | None]:
        return binance_ws_usage(self._answer(body), status, int(time.time() * 1000))

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return binance_placed_ids(self._answer(body).get("result"))  # the answer parsed once (`_answer`)

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return binance_placed_ids(self._answer(body).get("result"), "clientOrderId")

    def settled_answer(self, req: OutboundRequest, status: int, body: bytes) -> tuple[int, bytes]:
        """As REST's: an `order.cancelReplace` refused in part, as the answer of what it did."""
        if status in (400, 409) and parse_frame(req.body).get("method") == "order.cancelReplace":
            answer = self._answer(body)
            done = binance_cancel_replace_done(answer.get("error"))
            if done is not None:
                return 200, json.dumps({"id": answer.get("id"), "status": 200, "result": done}).encode()
        return status, body

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return binance_amend_verdicts(self._answer(body).get("result") if 200 <= status < 300 else None, legs)

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        error = self._answer(body).get("error")
        if not isinstance(error, dict):
            return None
        # which request it answered, as its REST twin (a read without one is a spot read)
        spec = METHODS.get(method)
        twin = spec.twin if spec and spec.twin else ("POST", "/api/v3/order") if spec and spec.cls is T \
            else ("GET", "/api/v3/account")
        return self._rest.key_rejected(status, json.dumps(error).encode(), *twin)  # type: ignore[no-any-return]

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        """The result of a frame whose REST twin reports orders, read as that twin's answer."""
        try:
            spec = METHODS.get(parse_frame(req.body)["method"])
        except (BadRequest, KeyError, TypeError):
            return ()
        result = self._answer(body).get("result")
        if spec is None or spec.twin is None or result is None:
            return ()
        return binance_order_updates_in(spec.twin[1], status, result)

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return binance_stream_updates(text)

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        frame = parse_frame(req.body)
        spec = METHODS.get(frame["method"])
        if spec is None or spec.twin is None:
            return OrderBookChange()
        answer = self._answer(body)
        result = answer.get("result", answer.get("error"))  # an error's {"code", "msg"}, as REST answers it
        twin = OutboundRequest(spec.twin[0], req.origin, spec.twin[1], urlencode(
            {k: _text(v) for k, v in frame.get("params", {}).items() if k not in _AUTH_PARAMS}), {})
        return self._rest.order_book_change(  # type: ignore[no-any-return]
            twin, status, json.dumps(result).encode() if result is not None else b"", facts)
