"""OKX v5 REST (`/api/v5/...`), production and demo trading.

Signing, per OKX's docs-v5 "REST Authentication" (https://www.okx.com/docs-v5/en/#overview-rest-authentication):
`OK-ACCESS-SIGN` = base64(HMAC-SHA256(SecretKey, timestamp + METHOD + requestPath + body)), where a
GET's query string is part of requestPath (`/api/v5/account/balance?ccy=BTC`) and body is the raw
JSON string (omitted when empty); `OK-ACCESS-TIMESTAMP` is ISO 8601 UTC with milliseconds
(`2020-12-08T09:08:57.715Z`) and requests more than 30 seconds off server time are refused (50102);
`OK-ACCESS-KEY` and `OK-ACCESS-PASSPHRASE` carry the key and its passphrase. Demo trading is the same
host with the header `x-simulated-trading: 1`.

The bot signs requestPath without keyproxy's `/<account>` mount: ccxt signs `'/api/' + version + '/'
+ path` and python-okx the path it hands to httpx, both independent of the base URL. The bot's
passphrase is a virtual one of its own, checked in constant time; the real one never leaves keyproxy.
"""

from __future__ import annotations

import json

import calendar
import re
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

from keyproxy.exchanges import _sign
from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import RefusalKind as K, refusal_kind
from keyproxy.exchanges.permissions import KeyPermissions, json_or_none
from keyproxy.exchanges.base import (
    OrderUpdate,
    KeyRejection,
    Adapter,
    AuthFailure,
    BadRequest,
    BotKey,
    Endpoint,
    EndpointClass,
    Environment,
    IncomingRequest,
    IssuedBotKey,
    OrderBookChange,
    OutboundRequest,
    RealKey,
    SignContext,
    Verified,
)
from keyproxy.exchanges.okx_budget import BUDGETS, WS_CONNECTIONS, okx_costs, okx_rate_limit_hold
from keyproxy.exchanges.okx_endpoints import ENDPOINT_GROUPS
from keyproxy.exchanges.okx_facts import (
    okx_contract_sizes, okx_facts, okx_market_ids, okx_market_names, okx_order_book_change, okx_prices,
)
from keyproxy.exchanges.okx_algo import CANCEL_ALGOS, SCOPE as ALGO_SCOPE, algo_cancels, count_listings
from keyproxy.exchanges.okx_fills import (
    okx_amend_verdicts, okx_order_query_request, okx_order_updates, okx_placed_ids, okx_reconcile_request,
    okx_stream_updates,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

KEY_HEADER = "ok-access-key"
SIGN_HEADER = "ok-access-sign"
TIMESTAMP_HEADER = "ok-access-timestamp"
PASSPHRASE_HEADER = "ok-access-passphrase"
DEMO_HEADER = "x-simulated-trading"
EXPTIME_HEADER = "exptime"
AUTH_HEADERS = (KEY_HEADER, SIGN_HEADER, TIMESTAMP_HEADER, PASSPHRASE_HEADER)
WINDOW_MS = 30_000  # OKX refuses a timestamp more than 30 s away from its clock (50102)

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    (entry.split(" ", 1)[0], entry.split(" ", 1)[1]): Endpoint(EndpointClass(cls), entry, signed)
    for (cls, signed), entries in ENDPOINT_GROUPS.items()
    for entry in entries
}

ENVIRONMENTS = (
    Environment("production", (("/api/v5/", "https://www.okx.com"), ("/ws/v5/", "wss://ws.okx.com:8443"))),
    # REST: the same host plus `x-simulated-trading: 1`; WebSockets: OKX's demo host
    Environment("demo", (("/api/v5/", "https://www.okx.com"), ("/ws/v5/", "wss://wspap.okx.com:8443"))),
)

_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z")
_EXPTIME = re.compile(r"[0-9]{1,20}")
_EPOCH = datetime(1970, 1, 1)

def parse_timestamp(text: str) -> int:
    """`2020-12-08T09:08:57.715Z` -> Unix ms; BadRequest for anything else."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise BadRequest("OK-ACCESS-TIMESTAMP must be ISO 8601 UTC with milliseconds, e.g. 2020-12-08T09:08:57.715Z")
    year, month, day, hour, minute, second, ms = (int(g) for g in m.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise BadRequest("OK-ACCESS-TIMESTAMP is not a valid date and time") from None
    return calendar.timegm(moment.timetuple()) * 1000 + ms


def format_timestamp(ms: int) -> str:
    """Unix ms -> `2020-12-08T09:08:57.715Z` (exact integer arithmetic, no clock read)."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def prehash(timestamp: str, method: str, path: str, query: str, body: bytes) -> bytes:
    return (timestamp + method.upper() + path + (f"?{query}" if query else "")).encode() + body


# native_error: OKX's code for each kind of refusal, and where one code has a finer one of its own
_OKX_KINDS: dict[K, str] = {
    K.AUTH: "50111", K.SIGNATURE: "50113", K.STALE: "50102", K.BAD_REQUEST: "51000", K.UNKNOWN_ENDPOINT: "50062",
    K.NOT_FOUND: "51000", K.DENIED: "50027", K.PAUSED: "50027", K.ORDER_REJECTED: "51005",
    K.RATE_LIMITED: "50011", K.UNAVAILABLE: "50026", K.UPSTREAM_TIMEOUT: "50004", K.UPSTREAM_ERROR: "50026",
    K.INTERNAL: "50026",
}
_OKX_CODES = {"ip_denied": "50110", "open_orders_exceeded": "51102"}  # OKX's own IP and open-order answers


class Okx(AdapterHooks):
    # the member of an order answer naming the exchange's order id (an algo order's `algoId` is read apart, as
    # `algo#<algoId>`: `read_placed_ids`, `cancelled_ids`)
    order_id_keys = ("ordId",)
    client_id_keys = ("clOrdId",)
    fill_markets = frozenset({"spot"})  # okx_fills.py: swaps and futures count contracts, not read yet
    spawning_markets = frozenset({"spot", "swap", "futures"})  # a triggered algo order places an order (okx_algo.py)
    order_not_found_codes = frozenset({"51603"})  # "Order does not exist"

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return okx_order_updates(req.method, req.path, status, body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return okx_amend_verdicts(body, legs)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return okx_placed_ids(body)

    conditional_count_scopes = (ALGO_SCOPE,)

    def conditional_count_listings(self, scope: str) -> list[tuple[str, str, str, bytes]]:
        return count_listings() if scope == ALGO_SCOPE else []

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]:
        """A `cancel-algos` answer names its algoIds only as they were asked: the request's, `algo#<algoId>`;
        named by `algoClOrdId` instead, whose orders is not known."""
        if req.path != CANCEL_ALGOS:
            return (), False
        doc = json_or_none(req.body)
        named = [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else []
        ids = algo_cancels(named)
        return (ids, False) if ids is not None else ((), True)

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return okx_placed_ids(body, "clOrdId")

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return okx_stream_updates(text)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return okx_reconcile_request(scope, since_ms)

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return okx_order_query_request(scope, order_id)
    # a read call that needs a valid key: `key rotate` checks a new key with it
    verify_request = ("GET", "/api/v5/account/balance", "", b"")
    name = "okx"
    time_path = "/api/v5/public/time"  # public: `keyproxy doctor` reads the exchange's clock from it
    key_info_request = ("GET", "/api/v5/account/config", "", b"")  # `key audit`: what the key may do
    needs_nonce = False
    environments = ENVIRONMENTS
    relayed_response_headers = ("content-type", "retry-after")

    def key_permissions(self, body: bytes) -> KeyPermissions:
        """What the key may do, from `key_info_request`'s answer."""
        doc = json_or_none(body)
        data = (doc.get("data") or [{}])[0]
        perm = set(str(data.get("perm", "")).split(","))
        return KeyPermissions(trade="trade" in perm, withdraw="withdraw" in perm, transfer=None,
                              ip_restricted=bool(data.get("ip")), expires_at=None)

    def server_time(self, body: bytes) -> float:
        return float(json.loads(body)["data"][0]["ts"]) / 1000

    def classify(self, method: str, path: str) -> Endpoint | None:
        return ENDPOINTS.get((method, path))

    budgets = BUDGETS

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        return ((WS_CONNECTIONS, 1),)  # every socket opened counts, whatever its path (the IP's)
    # keyproxy's own calls for the instrument codes a request names (`instIdCode`) when none is known yet
    market_list_requests = tuple(("GET", "/api/v5/public/instruments", f"instType={kind}", b"")
                                 for kind in ("SPOT", "SWAP", "FUTURES"))

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        return okx_market_ids(req.body) if req.method == "POST" and req.path.startswith("/api/v5/trade/") else ()

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return okx_market_names(path, body)

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        return okx_costs(req.method, req.path, req.body)

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        return okx_rate_limit_hold(status, headers, body)

    def presented_key(self, req: IncomingRequest) -> str | None:
        return req.headers.get(KEY_HEADER) or None

    # --- drop-in verification ---------------------------------------------

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        signature = req.headers.get(SIGN_HEADER)
        if not signature:
            if endpoint.signed:
                raise AuthFailure("bad_signature", "OK-ACCESS-SIGN header is missing")
            return Verified(self.strip(req), replay_id="", expires_ms=0, proven=False)  # public: nothing to check
        ts_text = req.headers.get(TIMESTAMP_HEADER)
        if not ts_text:
            raise BadRequest("OK-ACCESS-TIMESTAMP header is missing")
        ts = parse_timestamp(ts_text)
        if abs(now_ms - ts) > WINDOW_MS:
            raise AuthFailure("stale_request", "OK-ACCESS-TIMESTAMP is more than 30 s away from keyproxy's clock")
        if not any(self._check(bot, signature, msg) for msg in self._candidates(req, ts_text)):
            raise AuthFailure("bad_signature", "OK-ACCESS-SIGN does not match the virtual credential")
        passphrase = req.headers.get(PASSPHRASE_HEADER, "")
        if bot.passphrase is None or not _sign.equal(bot.passphrase.reveal(), passphrase.encode()):
            raise AuthFailure("bad_signature", "OK-ACCESS-PASSPHRASE does not match the virtual credential")
        return Verified(self.strip(req), replay_id=f"{bot.key_id}:{signature}", expires_ms=ts + WINDOW_MS + 1)

    @staticmethod
    def _candidates(req: IncomingRequest, ts_text: str) -> list[bytes]:
        paths = (req.path, req.mount + req.path) if req.mount else (req.path,)
        # python-okx signs query values as it built them (unencoded); httpx then percent-encodes
        queries = dict.fromkeys((req.query, unquote(req.query)))
        return [prehash(ts_text, req.method, p, q, req.body) for p in dict.fromkeys(paths) for q in queries]

    @staticmethod
    def _check(bot: BotKey, signature: str, message: bytes) -> bool:
        if bot.key_type != "hmac" or bot.secret is None:
            return False
        return _sign.equal(_sign.hmac_sha256_b64(bot.secret.reveal(), message), signature)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req.replace(headers={k: v for k, v in req.headers.items() if k not in AUTH_HEADERS})

    # --- real signing ---------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        demo = ctx.environment == "demo"
        flag = req.headers.get(DEMO_HEADER)
        if flag is not None and flag.strip() != "0" and not demo:
            # python-okx sends `x-simulated-trading: 0` for live and `1` for demo: anything but 0 means
            # the bot believes it is on demo trading; never let that reach a live account
            raise BadRequest("the request asks for OKX demo trading (x-simulated-trading) but this account "
                             "trades live: use a demo account, or set the bot to live trading")
        headers: dict[str, str] = {}
        if demo:
            headers["x-simulated-trading"] = "1"
        if req.body or (endpoint.signed and req.method != "GET"):
            headers["Content-Type"] = "application/json"
        if not endpoint.signed:
            return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)
        if key.secret is None or key.passphrase is None:
            raise ValueError("the OKX account needs a secret and a passphrase")
        timestamp = format_timestamp(ctx.now_ms)
        message = prehash(timestamp, req.method, req.path, req.query, req.body)
        headers.update({
            "OK-ACCESS-KEY": key.api_key.reveal_str(),
            "OK-ACCESS-SIGN": _sign.hmac_sha256_b64(key.secret.reveal(), message),
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-PASSPHRASE": key.passphrase.reveal_str(),
        })
        exptime = req.headers.get(EXPTIME_HEADER)
        if exptime is not None and _EXPTIME.fullmatch(exptime):
            headers["expTime"] = exptime  # the bot's own deadline for an order: it can only narrow validity
        return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)

    # --- request facts for policy -------------------------------------------

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return okx_facts(req, endpoint)

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return okx_prices(path, body)

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """`GET /api/v5/market/tickers?instType=T`: every instrument of the market type at once (the order's
        instrument id is not kept in its facts, and one answer serves every later order of that type)."""
        kind = {"spot": "SPOT", "swap": "SWAP", "futures": "FUTURES"}.get(leg.market or "")
        return ("GET", "/api/v5/market/tickers", f"instType={kind}", b"") if kind else None

    def contract_sizes(self, path: str, body: bytes) -> dict[str, Decimal]:
        return okx_contract_sizes(path, body)

    def websocket(self, path: str) -> Adapter | None:
        """`/ws/v5/private` and `/ws/v5/business`: logged in once, each frame decided (okx_ws.py)."""
        from keyproxy.exchanges.okx_ws import WS_PATHS, OkxWsApi

        return OkxWsApi(self) if path in WS_PATHS else None

    def relays_websocket(self, path: str) -> bool:
        return path == "/ws/v5/public"  # market data: no credential

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return okx_order_book_change(req.method, req.path, req.query, req.body, status, body, facts)

    # --- credentials and errors ---------------------------------------------

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        if key_type != "hmac":
            raise ValueError("OKX API keys are HMAC only")
        from keyproxy.secret import Secret

        # shaped like OKX's own: a UUID key, 32 upper-case hex secret, and a passphrase of the bot's own
        key_id = str(uuid.uuid4())
        secret = secrets.token_hex(16).upper()
        passphrase = _sign.random_token(24)
        return IssuedBotKey(
            {"api_key": key_id, "secret": secret, "passphrase": passphrase},
            BotKey(key_id, "hmac", secret=Secret(secret), passphrase=Secret(passphrase)),
        )

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """OKX: 50111 invalid key, 50110 IP not allowed, 50119 key gone refuse the key; 50120 one permission."""
        if status < 400 and b'"code"' not in body[:40]:
            return None
        try:
            code = json.loads(body).get("code")
        except (ValueError, AttributeError):
            return None
        if code in ("50110", "50111", "50119"):
            return KeyRejection.INVALID
        return KeyRejection.DENIED if code == "50120" else None

    def native_error(self, code: str, message: str) -> dict[str, object]:
        # OKX's own codes (docs-v5 "Error Code"), one per kind (base.RefusalKind), picked by how ccxt's okx
        # `exceptions` map raises them: 50111/50113 AuthenticationError, 50102 InvalidNonce (as Binance's
        # -1021), 50110 and 50027 PermissionDenied, 51000 BadRequest, 50062 ExchangeError ("This feature is
        # currently unavailable"), 51005/51102 InvalidOrder, 50011 RateLimitExceeded. Only transient
        # refusals get codes ccxt may retry (50026 ExchangeNotAvailable, 50011, and 50004 RequestTimeout:
        # "does not mean that the request was successful or failed").
        native = _OKX_CODES.get(code) or _OKX_KINDS[refusal_kind(code)]
        return {"code": native, "msg": message, "data": []}

    def refusal_status(self, code: str, status: int) -> int:
        return status
