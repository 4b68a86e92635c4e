"""OKX's private WebSocket (`/ws/v5/private`, `/ws/v5/business`) as a dialect: one frame is one message.

Per OKX docs-v5 ("WebSocket Login", "Trade" WS ops): a connection logs in once, `{"op": "login", "args":
[{"apiKey", "passphrase", "timestamp" (Unix seconds), "sign": Base64(HMAC-SHA256(SecretKey, timestamp +
"GET" + "/users/self/verify"))}]}`, within 30 s of OKX's clock; after that, `subscribe` and the order ops
(`order`, `batch-orders`, `cancel-order`, `batch-cancel-orders`, `amend-order`, `batch-amend-orders`,
`mass-cancel`) carry no credential. keyproxy verifies the bot's login with its virtual secret and
passphrase, logs the upstream connection in with the real ones, and decides every later frame as that
bot's with the facts of the REST endpoint the op mirrors.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from keyproxy.exchanges import _sign
from keyproxy.exchanges._ws import WsDialect, load_frame
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, Endpoint, EndpointClass, IncomingRequest, OrderBookChange, OrderUpdate,
    OutboundRequest, RealKey, SignContext, Verified, known_members,
)
from keyproxy.exchanges.okx_budget import okx_costs
from keyproxy.exchanges.okx_facts import UNKNOWN_FATE, okx_facts, okx_market_ids, okx_order_book_change
from keyproxy.exchanges.okx_fills import okx_placed_ids, okx_stream_updates
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

WS_PATHS = ("/ws/v5/private", "/ws/v5/business")
VERIFY = "GET/users/self/verify"
# the market data channels OKX serves on /ws/v5/business with no login (docs-v5: candlesticks, mark and index
# candlesticks, spread candlesticks and public spread data)
_PUBLIC_CHANNEL = re.compile(r"(?:mark-price-|index-|sprd-)?candle[0-9A-Za-z]{2,8}|sprd-(?:public-trades|bbo-tbt|"
                             r"books5|books-l2-tbt|tickers)")
WINDOW_S = 30
T, R = EndpointClass.TRADE, EndpointClass.READ
# op -> (class, the REST endpoint whose facts value it)
OPS: dict[str, tuple[EndpointClass, str | None]] = {
    "login": (R, None),
    "subscribe": (R, None),
    "unsubscribe": (R, None),
    "order": (T, "/api/v5/trade/order"),
    "batch-orders": (T, "/api/v5/trade/batch-orders"),
    "cancel-order": (T, "/api/v5/trade/cancel-order"),
    "batch-cancel-orders": (T, "/api/v5/trade/cancel-batch-orders"),
    "amend-order": (T, "/api/v5/trade/amend-order"),
    "batch-amend-orders": (T, "/api/v5/trade/amend-batch-orders"),
    "mass-cancel": (T, "/api/v5/trade/mass-cancel"),
}


# the exchange's documented frame members (`known_members`)
_MEMBERS = frozenset({"id", "op", "args", "expTime"})


def parse(raw: bytes | str) -> dict[str, Any]:
    """`{"op", "args": [...], "id"?}` with unique member names, or BadRequest."""
    frame = load_frame(raw)
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), str) or not frame["op"]:
        raise BadRequest("a request frame is a JSON object with an op")
    known_members(frame, _MEMBERS)
    if not isinstance(frame.get("args", []), list) or not all(isinstance(a, dict) for a in frame.get("args", [])):
        raise BadRequest("args must be a list of objects")
    if "id" in frame and (not isinstance(frame["id"], str) or len(frame["id"]) > 32):
        raise BadRequest("id must be a string of at most 32 characters")
    if OPS.get(frame["op"], (R, None))[1] is not None and not frame.get("id"):
        # OKX names an op's answer by the id it was sent with (documented as required): without one, keyproxy
        # could not tie the answer to the order, which would then never reach the books
        raise BadRequest(f"{frame['op']} needs an id (OKX answers an op under its id)")
    return frame


def _key(frame: dict[str, Any]) -> object:
    """What OKX's answer to this frame carries: the op's id, or the login/subscription itself."""
    if frame["op"] == "login":
        return "login"
    if frame["op"] in ("subscribe", "unsubscribe"):
        args = frame.get("args") or [{}]
        return frame["op"], json.dumps(args[0], sort_keys=True)
    return "id:" + str(frame.get("id", ""))


class OkxWsApi(WsDialect):
    """The private-socket dialect of an OKX account; REST facts, errors and passphrase rules from `rest`."""
    order_id_keys = ("ordId",)  # the member of an order answer naming the exchange's order id
    client_id_keys = ("clOrdId",)
    fill_markets = frozenset({"spot"})  # fills come from the orders channel (okx_fills.py)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return okx_placed_ids(body)

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return okx_placed_ids(body, "clOrdId")

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return okx_stream_updates(text)

    def classify(self, method: str, path: str) -> Endpoint | None:
        spec = OPS.get(method) if path in WS_PATHS else None
        return Endpoint(spec[0], f"ws {method}", method == "login") if spec else None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        """A subscription to market data only on `/ws/v5/business` (candles: ccxt.pro's `watch_ohlcv` subscribes
        there without logging in) is public: it carries no credential and reads nothing of the account."""
        if req.path != "/ws/v5/business":
            return None
        frame = parse(req.body)
        args = frame.get("args") or []
        if frame["op"] in ("subscribe", "unsubscribe") and args and all(
                isinstance(a.get("channel"), str) and _PUBLIC_CHANNEL.fullmatch(a["channel"]) for a in args):
            return Endpoint(EndpointClass.PUBLIC, f"ws {frame['op']} (market data)", False)
        return None

    def ws_frame(self, text: str) -> tuple[object, str]:
        frame = parse(text)
        return _key(frame), frame["op"]

    def ws_answer(self, doc: dict[str, object]) -> tuple[object, int] | None:
        event = doc.get("event")
        if event == "login":
            return "login", 200 if doc.get("code") in ("0", None) else 401
        if event in ("subscribe", "unsubscribe"):
            return (event, json.dumps(doc.get("arg") or {}, sort_keys=True)), 200
        if "op" in doc and "id" in doc:
            # "2": some legs of a batch placed, as a REST 200 says it (the placed legs must reach the books)
            # 50004: OKX cannot say whether it was done (its answer to a timeout): as REST's gateway timeout
            code = doc.get("code")
            return "id:" + str(doc.get("id", "")), 200 if code in ("0", "2") else 504 if code == UNKNOWN_FATE else 400
        return None

    def ws_refusal(self, key: object, method: str, code: str, message: str, status: int) -> dict[str, object]:
        native = self._rest.native_error(code, message)
        if isinstance(key, str) and key.startswith("id:"):
            return {"id": key[3:], "op": method, "code": native["code"], "msg": native["msg"], "data": []}
        return {"event": "error", "code": native["code"], "msg": native["msg"]}

    def session_action(self, method: str) -> str | None:
        return "login" if method == "login" else None

    def presented_key(self, req: IncomingRequest) -> str | None:
        frame = parse(req.body)
        if frame["op"] != "login":
            return None
        key = (frame.get("args") or [{}])[0].get("apiKey")
        return key if isinstance(key, str) and key else None

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        arg = (parse(req.body).get("args") or [{}])[0]
        ts, sign, passphrase = (str(arg.get(k, "")) for k in ("timestamp", "sign", "passphrase"))
        if not ts.isdigit() or len(ts) > 12:
            raise BadRequest("login timestamp must be Unix seconds")
        if abs(now_ms - int(ts) * 1000) > WINDOW_S * 1000:
            raise AuthFailure("stale_request", "login timestamp is more than 30 s away from keyproxy's clock")
        if bot.key_type != "hmac" or bot.secret is None or \
                not _sign.equal(_sign.hmac_sha256_b64(bot.secret.reveal(), (ts + VERIFY).encode()), sign):
            raise AuthFailure("bad_signature", "login sign does not match the virtual credential")
        if bot.passphrase is None or not _sign.equal(bot.passphrase.reveal(), passphrase.encode()):
            raise AuthFailure("bad_signature", "login passphrase does not match the virtual credential")
        # one login per socket path: ccxt logs in on /private and /business within the same second
        replay = hashlib.sha256(f"{req.path}:{sign}".encode()).hexdigest()
        return Verified(req, replay_id=f"okxws:{bot.key_id}:{replay}",
                        expires_ms=int(ts) * 1000 + WINDOW_S * 1000 + 1)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req  # only the login carries a credential, and sign() replaces it

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        frame = parse(req.body)
        if frame["op"] == "login":
            if key.secret is None or key.passphrase is None:
                raise ValueError("the OKX account needs a secret and a passphrase")
            ts = str(ctx.now_ms // 1000)
            frame = {"op": "login", "args": [{
                "apiKey": key.api_key.reveal_str(), "passphrase": key.passphrase.reveal_str(), "timestamp": ts,
                "sign": _sign.hmac_sha256_b64(key.secret.reveal(), (ts + VERIFY).encode())}]}
        return OutboundRequest(req.method, ctx.origin, req.path, "", {}, json.dumps(frame).encode())


    def _twin(self, req: IncomingRequest) -> tuple[str, bytes] | None:
        frame = parse(req.body)
        path = OPS.get(frame["op"], (R, None))[1]
        if path is None:
            return None
        args = frame.get("args") or []
        single = frame["op"] in ("order", "cancel-order", "amend-order", "mass-cancel")
        if single and len(args) > 1:  # keyproxy would read the first only: more goes by the batch ops
            raise BadRequest(f"{frame['op']} takes one order in args (batch-orders and its kin take more)")
        return path, json.dumps(args[0] if single and args else args).encode()

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        twin = self._twin(req)
        if twin is None:
            return RequestFacts(action="other")
        path, body = twin
        return okx_facts(IncomingRequest("POST", path, "", {}, body, markets=req.markets),
                         self._rest.classify("POST", path) or Endpoint(endpoint.cls, endpoint.name))

    @property
    def market_list_requests(self) -> tuple[tuple[str, str, str, bytes], ...]:  # type: ignore[override]
        return self._rest.market_list_requests  # type: ignore[no-any-return]

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        """An order op spends its REST twin's budgets: OKX counts WebSocket and REST order entry together."""
        twin = self._twin(req) if req.body else None
        return okx_costs("POST", twin[0], twin[1]) if twin is not None else ()

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        twin = self._twin(req) if req.body else None
        return okx_market_ids(twin[1]) if twin is not None else ()

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return self._rest.market_names(path, body)  # type: ignore[no-any-return]


    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        twin = self._twin(IncomingRequest("WS", req.path, "", {}, req.body))
        if twin is None:
            return OrderBookChange()
        return okx_order_book_change("POST", twin[0], "", twin[1], 200 if status < 400 else status, body, facts)
