"""Bybit's private WebSockets (`/v5/private` topics, `/v5/trade` order entry) as a dialect.

Per Bybit's v5 docs ("WebSocket Connect: Authentication", "WebSocket Trade"): a connection authenticates
once with `{"op": "auth", "args": [apiKey, expires, signature]}`, where `expires` is a future time in ms
and signature = hex HMAC-SHA256(secret, "GET/realtime" + expires) (base64 RSA-SHA256 for RSA keys);
after it, `subscribe` (`order`, `execution`, `position`, `wallet`) and the trade ops (`order.create`,
`order.amend`, `order.cancel`, and their `-batch` forms) carry no credential. keyproxy verifies the bot's
auth with its virtual key, authenticates the upstream connection with the real key, and decides every
later frame as that bot's with the facts of the REST endpoint the op mirrors.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from keyproxy.exchanges._ws import MAX_FRAME_ID, WsDialect, load_frame
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, Endpoint, EndpointClass, IncomingRequest, OrderBookChange, OrderUpdate,
    OutboundRequest, RealKey, SignContext, Verified, known_members,
)
from keyproxy.exchanges.bybit_budget import SINGLE_TWINS, bybit_costs, bybit_rate_limit_hold
from keyproxy.exchanges.bybit_facts import bybit_facts, bybit_order_book_change
from keyproxy.exchanges.bybit_fills import READ as BYBIT_READ, bybit_placed_ids, bybit_stream_updates
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

WS_PATHS = ("/v5/private", "/v5/trade")
MAX_EXPIRES_MS = 300_000  # keyproxy takes an auth valid for at most 5 minutes ahead (replays stay bounded)
T, R, P = EndpointClass.TRADE, EndpointClass.READ, EndpointClass.PUBLIC
# op -> (class, the REST endpoint whose facts value it)
OPS: dict[str, tuple[EndpointClass, str | None]] = {
    "auth": (R, None), "subscribe": (R, None), "unsubscribe": (R, None), "ping": (P, None),
    "order.create": (T, "/v5/order/create"), "order.amend": (T, "/v5/order/amend"),
    "order.cancel": (T, "/v5/order/cancel"), "order.create-batch": (T, "/v5/order/create-batch"),
    "order.amend-batch": (T, "/v5/order/amend-batch"), "order.cancel-batch": (T, "/v5/order/cancel-batch"),
}

DCP_SUBSCRIBE = Endpoint(T, "ws subscribe dcp", False)


def _subscribes_dcp(frame: dict[str, Any]) -> bool:
    """A subscription naming the `dcp` topic (`dcp`, `dcp.future`...; any spelling that starts so: fail closed)."""
    return frame["op"] == "subscribe" and any(not isinstance(a, str) or a.strip().lower().startswith("dcp")
                                              for a in frame.get("args") or [])


# the exchange's documented frame members (`known_members`)
_MEMBERS = frozenset({"op", "args", "req_id", "reqId", "header"})


def parse(raw: bytes | str) -> dict[str, Any]:
    frame = load_frame(raw)
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), str) or not frame["op"]:
        raise BadRequest("a request frame is a JSON object with an op")
    known_members(frame, _MEMBERS)
    if not isinstance(frame.get("args", []), list):
        raise BadRequest("args must be a list")
    for name in ("req_id", "reqId"):
        value = frame.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > 64
                                  or isinstance(value, int) and not -MAX_FRAME_ID <= value <= MAX_FRAME_ID):
            # an id Bybit could echo otherwise (rounded by a float reader) would never find its answer: the order's
            # count and owner would lapse (as Binance's and Kraken's ids, session 27's review)
            raise BadRequest(f"{name} must be a string of at most 64 characters or an integer of at most 2^53")
    if OPS.get(frame["op"], (R, None))[1] is not None and str(frame.get("reqId", "")) == "":
        # Bybit names a trade op's answer by the reqId it was sent with, and by nothing else: without one,
        # keyproxy could never tie the answer to the order, so the order would never reach the books
        raise BadRequest(f"{frame['op']} needs a reqId (Bybit answers a trade op under its reqId)")
    return frame


def _key(frame: dict[str, Any]) -> object:
    op = frame["op"]
    if op in ("auth", "subscribe", "unsubscribe", "ping"):
        return op, str(frame.get("req_id", ""))
    return "req:" + str(frame.get("reqId", ""))


class BybitWsApi(WsDialect):
    """The private-socket dialect of a Bybit account; REST facts, errors and signatures from `rest`."""
    order_id_keys = ("orderId",)  # the member of an order answer naming the exchange's order id
    client_id_keys = ("orderLinkId",)
    fill_markets = BYBIT_READ  # answers name orders only; fills come from the `order` topic (bybit_fills.py)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return bybit_placed_ids(body)

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return bybit_placed_ids(body, "orderLinkId")

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return bybit_stream_updates(text)

    def classify(self, method: str, path: str) -> Endpoint | None:
        spec = OPS.get(method) if path in WS_PATHS else None
        return Endpoint(spec[0], f"ws {method}", method == "auth") if spec else None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        """A subscription to `dcp` arms Bybit's disconnect-cancel-all: once every socket subscribed to it has
        been gone for the window, Bybit cancels every order of the account, whoever placed it (session 27's
        review: a read-only bot subscribed, closed its socket, and another bot's orders were cancelled). It is the
        REST `disconnected-cancel-all`'s twin: a trade request, decided as that one is."""
        return DCP_SUBSCRIBE if req.body and _subscribes_dcp(parse(req.body)) else None

    def ws_frame(self, text: str) -> tuple[object, str]:
        frame = parse(text)
        return _key(frame), frame["op"]

    def ws_answer(self, doc: dict[str, object]) -> tuple[object, int] | None:
        op = doc.get("op")
        if op in ("auth", "subscribe", "unsubscribe", "ping", "pong"):
            key = ("ping" if op == "pong" else op, str(doc.get("req_id", "")))
            # `/v5/private` answers with `success`, `/v5/trade` with `retCode` (a failed trade auth says no
            # `success` at all): either one that is not a plain yes is a no
            ok = doc["success"] is True if "success" in doc else doc["retCode"] == 0 if "retCode" in doc \
                else op != "auth"
            return key, 200 if ok else 401 if op == "auth" else 400
        if "reqId" in doc:
            return "req:" + str(doc["reqId"]), 200 if doc.get("retCode") == 0 else 400
        return None

    def ws_refusal(self, key: object, method: str, code: str, message: str, status: int) -> dict[str, object]:
        native = self._rest.native_error(code, message)
        if isinstance(key, str) and key.startswith("req:"):
            return {"reqId": key[4:], "retCode": native["retCode"], "retMsg": message, "op": method, "data": {},
                    "header": {}}
        req_id = key[1] if isinstance(key, tuple) else ""
        return {"success": False, "ret_msg": message, "op": method, "req_id": req_id, "retCode": native["retCode"]}

    def session_action(self, method: str) -> str | None:
        return "login" if method == "auth" else None

    def presented_key(self, req: IncomingRequest) -> str | None:
        frame = parse(req.body)
        args = frame.get("args") or []
        if frame["op"] != "auth" or not args or not isinstance(args[0], str) or not args[0]:
            return None
        return args[0]

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        args = parse(req.body).get("args") or []
        if len(args) != 3 or not all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
            raise BadRequest("auth takes [apiKey, expires, signature]")
        expires, signature = str(args[1]), str(args[2])
        if not expires.isdigit() or len(expires) > 16:
            raise BadRequest("expires must be a time in milliseconds")
        if not now_ms < int(expires) <= now_ms + MAX_EXPIRES_MS:
            raise AuthFailure("stale_request", "expires must lie within the next 5 minutes")
        if not self._rest._check(bot, signature, f"GET/realtime{expires}".encode()):
            raise AuthFailure("bad_signature", "auth signature does not match the virtual credential")
        replay = hashlib.sha256(f"{req.path}:{expires}:{signature}".encode()).hexdigest()
        return Verified(req, replay_id=f"bybitws:{bot.key_id}:{replay}", expires_ms=int(expires) + 1)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req  # only the auth carries a credential, and sign() replaces it

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        frame = parse(req.body)
        if frame["op"] == "auth":
            expires = str(ctx.now_ms + 10_000)
            signature = self._rest._real_signature(key, f"GET/realtime{expires}".encode())
            frame = {**frame, "args": [key.api_key.reveal_str(), int(expires), signature]}
        return OutboundRequest(req.method, ctx.origin, req.path, "", {}, json.dumps(frame).encode())


    def _twin(self, body: bytes) -> tuple[str, bytes] | None:
        frame = parse(body)
        path = OPS.get(frame["op"], (R, None))[1]
        args = frame.get("args") or []
        if path is None or not args or not isinstance(args[0], dict):
            return None
        if len(args) > 1:  # keyproxy would read the first only: a batch goes as one arg of a batch op
            raise BadRequest(f"{frame['op']} takes one request in args")
        return path, json.dumps(args[0]).encode()

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        """A trade op spends its REST twin's per-UID limit (one per order of a batch); auth and subscriptions none."""
        twin = self._budget_twin(req)
        return bybit_costs(True, twin[0], twin[1], http=False) if twin is not None else ()

    def budget_path(self, req: IncomingRequest) -> str:
        twin = self._budget_twin(req)
        return SINGLE_TWINS.get(twin[0], twin[0]) if twin is not None else req.path

    def _budget_twin(self, req: IncomingRequest) -> tuple[str, bytes] | None:
        try:  # a frame keyproxy cannot read is refused by its facts, before any budget is spent
            return self._twin(req.body) if req.body else None
        except BadRequest:
            return None

    def answer_usage(self, status: int, body: bytes) -> tuple[Mapping[str, str], tuple[float, str | None] | None]:
        """A trade op's answer carries Bybit's `header` (X-Bapi-Limit, -Status, -Reset-Timestamp, as REST's HTTP
        headers) and retCode 10006 over the limit: read as REST's are."""
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return {}, None
        header = doc.get("header") if isinstance(doc, dict) else None
        usage = {str(k).lower(): str(v) for k, v in header.items()} if isinstance(header, dict) else {}
        return usage, bybit_rate_limit_hold(status, usage, body, int(time.time() * 1000))

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        if endpoint.name == DCP_SUBSCRIBE.name:  # every order of the account cancelled once the socket drops
            return RequestFacts(action="other", cancels_all=True, cancels_later=True)
        twin = self._twin(req.body)
        if twin is None:
            return RequestFacts(action="other" if endpoint.cls is not EndpointClass.TRADE else None)
        path, body = twin
        return bybit_facts(IncomingRequest("POST", path, "", {}, body),
                           self._rest.classify("POST", path) or Endpoint(endpoint.cls, endpoint.name))


    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        twin = self._twin(req.body)
        if twin is None:
            return OrderBookChange()
        try:  # the socket's answer carries `data` where REST carries `result`
            doc = json.loads(body)
            rest = json.dumps({**doc, "result": doc.get("data")}).encode() if isinstance(doc, dict) else body
        except ValueError:
            rest = body
        return bybit_order_book_change("POST", twin[0], "", 200 if status < 400 else status, rest, facts)
