"""Binance spot, margin/wallet (`/sapi`), USD-M (`/fapi`) and COIN-M (`/dapi`) futures.

Signing, per Binance's "Request Security" docs: the payload is the query
string concatenated *without a separator* with the body, percent-encoded
(required since 2026-01-15); HMAC-SHA256 as hex, Ed25519 and RSA
(PKCS#1 v1.5, SHA-256) as base64, percent-encoded on the wire; `signature`
goes last. `timestamp` in ms (or µs), `recvWindow` default 5000, max 60000,
and at most 1000 ms in the future.
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from decimal import Decimal
from urllib.parse import parse_qsl, quote, unquote_plus

from keyproxy.exchanges import _sign
from keyproxy.exchanges._fills import loads
from keyproxy.exchanges.binance_budget import (
    BUDGETS, MARKET_LIST_TTL, MARKET_LISTS, binance_connection_costs, binance_costs, params_of,
)
from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import RefusalKind as K, refusal_kind
from keyproxy.exchanges.permissions import KeyPermissions, json_or_none
from keyproxy.exchanges.base import (
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
    OrderUpdate,
    OutboundRequest,
    ParamList,
    RealKey,
    SignContext,
    Verified,
)
from keyproxy.exchanges.binance_endpoints import CCXT_EXTRA_GROUPS, ENDPOINT_GROUPS
from keyproxy.exchanges.binance_fills import (
    binance_algo_reconcile_request,
    READ_MARKETS,
    STOP_MARKETS,
    STREAM_MARKETS,
    binance_amend_verdicts,
    binance_cancel_replace_done,
    binance_order_updates,
    binance_placed_ids,
    binance_order_query_request, binance_reconcile_request, binance_resting_client_ids,
    binance_stream_updates,
)
from keyproxy.exchanges.binance_facts import (
    ALGO,
    ALGO_ORDERS,
    binance_contract_sizes,
    binance_facts,
    binance_order_book_change,
    binance_prices,
    binance_reference_request,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

KEY_HEADER = "x-mbx-apikey"
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
MAX_FUTURE_MS = 1000

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    (entry.split(" ", 1)[0], entry.split(" ", 1)[1]): Endpoint(EndpointClass(cls), entry, signed)
    for groups in (ENDPOINT_GROUPS, CCXT_EXTRA_GROUPS)
    for (cls, signed), entries in groups.items()
    for entry in entries
}

_SPOT_PREFIXES = ("/api/", "/sapi/")
ENVIRONMENTS = (
    Environment("production", (
        ("/api/", "https://api.binance.com"), ("/sapi/", "https://api.binance.com"),
        ("/fapi/", "https://fapi.binance.com"), ("/futures/data/", "https://fapi.binance.com"),
        ("/dapi/", "https://dapi.binance.com"), ("/eapi/", "https://eapi.binance.com"),
        ("/papi/", "https://papi.binance.com"),
        ("/ws-api/", "wss://ws-api.binance.com:443"),  # the WebSocket API (keyproxy/proxy/websocket.py)
        # USD-M futures streams (ccxt 4.5.90 `get_ws_url`): user data on /private/ws?listenKey=
        ("/private/ws", "wss://fstream.binance.com"), ("/public/ws", "wss://fstream.binance.com"),
        ("/market/ws", "wss://fstream.binance.com"), ("/public/stream", "wss://fstream.binance.com"),
        ("/market/stream", "wss://fstream.binance.com"),
        ("/dstream/", "wss://dstream.binance.com"),  # COIN-M user data: /ws/<listenKey> (websocket_origin_path)
        ("/margin-stream/", "wss://margin-stream.binance.com"),  # margin risk data: /ws/<listenKey>
        ("/ws", "wss://stream.binance.com:9443"), ("/stream", "wss://stream.binance.com:9443"),  # spot market data
    )),
    Environment("testnet", (
        ("/api/", "https://testnet.binance.vision"),
        ("/fapi/", "https://testnet.binancefuture.com"), ("/dapi/", "https://testnet.binancefuture.com"),
        ("/ws-api/", "wss://ws-api.testnet.binance.vision"),
        ("/private/ws", "wss://fstream.binancefuture.com"), ("/public/ws", "wss://fstream.binancefuture.com"),
        ("/market/ws", "wss://fstream.binancefuture.com"), ("/dstream/", "wss://dstream.binancefuture.com"),
        ("/ws", "wss://stream.testnet.binance.vision"), ("/stream", "wss://stream.testnet.binance.vision"),
    )),
    Environment("demo", (
        ("/api/", "https://demo-api.binance.com"),
        ("/fapi/", "https://demo-fapi.binance.com"), ("/dapi/", "https://demo-dapi.binance.com"),
        ("/ws-api/", "wss://demo-ws-api.binance.com"),
        ("/private/ws", "wss://fstream.binancefuture.com"), ("/public/ws", "wss://fstream.binancefuture.com"),
        ("/market/ws", "wss://fstream.binancefuture.com"), ("/dstream/", "wss://dstream.binancefuture.com"),
        ("/ws", "wss://demo-stream.binance.com"), ("/stream", "wss://demo-stream.binance.com"),
    )),
)
# REST endpoints whose answer hands out a stream token (a listenKey: start and keepalive both answer it; margin's
# listenToken), and the field it is in: a bearer credential for the account's private stream, never given to a bot
_LISTEN_KEY_PATHS = ("/fapi/v1/listenKey", "/dapi/v1/listenKey", "/papi/v1/listenKey", "/eapi/v1/listenKey")
_TOKEN_FIELDS = {**dict.fromkeys(_LISTEN_KEY_PATHS, "listenKey"),
                 **dict.fromkeys(("/sapi/v1/userDataStream", "/sapi/v1/userDataStream/isolated",
                                  "/sapi/v1/equity/listenKey"), "listenKey"),
                 "/sapi/v1/userListenToken": "token"}
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_TOKEN_PATH = re.compile(r"listen-?key|listen-?token|userdatastream", re.IGNORECASE)
_PRIVATE_NAME = re.compile(r"[A-Za-z0-9]{60,}")  # a listenKey (60-64), or one inside a longer name
_LISTEN_KEY_PATH = re.compile(r"/ws/[A-Za-z0-9]{60,64}")
_PUBLIC_STREAMS = ("/ws", "/stream", "/public/ws", "/market/ws", "/public/stream", "/market/stream")

# Bytes outside [A-Za-z0-9-._~=&+%] are %XX-encoded before the real signature is computed
# (Binance signs the percent-encoded form).
_DIGITS = re.compile(r"[0-9]{1,20}")
_WINDOW = re.compile(r"[0-9]{1,5}(\.[0-9]{1,3})?")


_NEEDS_ESCAPE = re.compile(rb"[^A-Za-z0-9._~=&+%-]|%(?![0-9A-Fa-f]{2})")


def percent_encode_payload(raw: bytes) -> bytes:
    """Escape every byte outside the safe set, and a `%` not starting a valid `%XX` escape; keep the rest."""
    return _NEEDS_ESCAPE.sub(lambda m: b"%%%02X" % m.group()[0], raw)


def _decoded(params: ParamList) -> str:
    """The payload as python-binance signs it: values decoded, not re-encoded."""
    return "&".join(f"{k}={unquote_plus(v)}" for k, _, v in (p.partition("=") for p in params.pairs))


def _is_form(req: IncomingRequest) -> bool:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype in ("", "application/x-www-form-urlencoded")


# native_error: Binance's code for each kind of refusal, and where one code has a finer one of its own
_BINANCE_KINDS: dict[K, int] = {
    K.AUTH: -2014, K.SIGNATURE: -1022, K.STALE: -1021, K.BAD_REQUEST: -1102, K.UNKNOWN_ENDPOINT: -1002,
    K.NOT_FOUND: -1000, K.DENIED: -1002, K.PAUSED: -2010, K.ORDER_REJECTED: -2010, K.RATE_LIMITED: -1003,
    K.UNAVAILABLE: -1000, K.UPSTREAM_TIMEOUT: -1000, K.UPSTREAM_ERROR: -1000, K.INTERNAL: -1000,
}
_BINANCE_CODES = {"expired_credential": -1002}  # "not authorized": the key exists but is no longer valid


class Binance(AdapterHooks):
    order_id_keys = ("orderId",)  # the member of an order answer naming the exchange's order id
    client_id_keys = ("clientOrderId",)
    fill_markets = READ_MARKETS  # binance_fills.py
    spawning_markets = STOP_MARKETS
    order_not_found_codes = frozenset({"-2013"})  # "Order does not exist."
    order_ids_per_market = True  # each symbol numbers its orders: 500 on BTCUSDT is not 500 on ETHUSDT
    stream_markets = STREAM_MARKETS
    name = "binance"
    time_path = "/api/v3/time"  # public: `keyproxy doctor` reads the exchange's clock from it
    key_info_request = ("GET", "/sapi/v1/account/apiRestrictions", "", b"")  # `key audit`: what the key may do
    verify_request = ("GET", "/api/v3/account", "", b"")  # a read call that needs a valid key
    needs_nonce = False
    environments = ENVIRONMENTS
    relayed_response_headers = ("content-type", "retry-after", "x-mbx-used-weight*", "x-mbx-order-count*",
                                "x-sapi-used-*")

    def key_permissions(self, body: bytes) -> KeyPermissions:
        """What the key may do, from `key_info_request`'s answer."""
        doc = json_or_none(body)
        expiry = doc.get("tradingAuthorityExpirationTime")
        return KeyPermissions(
            trade=bool(doc.get("enableSpotAndMarginTrading") or doc.get("enableFutures")),
            withdraw=bool(doc.get("enableWithdrawals")),
            transfer=bool(doc.get("enableInternalTransfer") or doc.get("permitsUniversalTransfer")),
            ip_restricted=bool(doc.get("ipRestrict")),
            expires_at=expiry / 1000 if isinstance(expiry, (int, float)) and expiry > 0 else None)

    def server_time(self, body: bytes) -> float:
        return float(json.loads(body)["serverTime"]) / 1000

    def classify(self, method: str, path: str) -> Endpoint | None:
        return ENDPOINTS.get((method, path))

    def presented_key(self, req: IncomingRequest) -> str | None:
        return req.headers.get(KEY_HEADER) or None

    # --- drop-in verification ---------------------------------------------

    def _parts(self, req: IncomingRequest) -> tuple[ParamList, ParamList]:
        if req.body and not _is_form(req):
            raise BadRequest("Binance requests carry parameters as a form body or query string")
        try:
            body = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request body is not UTF-8") from None
        return ParamList.parse(req.query), ParamList.parse(body)

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        query, body = self._parts(req)
        n_sig = query.count("signature") + body.count("signature")
        if n_sig == 0:
            if endpoint.signed:
                raise AuthFailure("bad_signature", "this endpoint needs a signature")
            # key-only endpoint (market data, listenKey): the key header is the whole credential
            return Verified(self.strip(req), replay_id="", expires_ms=0, proven=False)
        if n_sig > 1:
            raise BadRequest("more than one signature parameter")
        signature = query.get("signature") if query.count("signature") else body.get("signature")
        assert signature is not None
        q, b = query.without("signature"), body.without("signature")
        ts, window = self._timing(q, b)
        if not (ts < now_ms + MAX_FUTURE_MS and now_ms - ts <= window):
            raise AuthFailure("stale_request", "timestamp is outside the recvWindow (or more than 1 s ahead)")
        wire = (q.render() + b.render()).encode()
        decoded = (_decoded(q) + _decoded(b)).encode()  # python-binance signs decoded values, sends encoded
        if not self._check(bot, signature, wire):
            if decoded == wire or not self._check(bot, signature, decoded):
                raise AuthFailure("bad_signature", "signature does not match the virtual credential")
        stripped = self._rebuild(req, q, b)
        # The request is what Binance executes: its decoded parameters. Identifying it by them (not by the
        # signature's spelling, which percent-encoding twice or case could vary) refuses every re-encoding.
        return _replay_ids(stripped, f"{bot.key_id}:{hashlib.sha256(decoded).hexdigest()}", req.method, req.path,
                           int(ts + window) + 1)

    @staticmethod
    def _timing(q: ParamList, b: ParamList) -> tuple[float, float]:
        def pick(name: str) -> str | None:
            return q.get(name) if q.count(name) else b.get(name)  # the query wins, as at Binance

        ts_text, window_text = pick("timestamp"), pick("recvWindow")
        if ts_text is None or not _DIGITS.fullmatch(ts_text):
            raise BadRequest("timestamp is missing or not a number")
        ts = float(ts_text)
        if len(ts_text) >= 16:
            ts /= 1000.0  # microseconds
        window = float(DEFAULT_RECV_WINDOW_MS)
        if window_text is not None:
            if not _WINDOW.fullmatch(window_text):
                raise BadRequest("recvWindow is not a number")
            window = float(window_text)
            if window > MAX_RECV_WINDOW_MS:
                raise BadRequest("recvWindow must not exceed 60000")
        return ts, window

    @staticmethod
    def _check(bot: BotKey, signature: str, payload: bytes) -> bool:
        if bot.key_type == "hmac" and bot.secret is not None:
            return _sign.equal(_sign.hmac_sha256_hex(bot.secret.reveal(), payload), signature.lower())
        if bot.key_type in ("ed25519", "rsa") and bot.public_key is not None:
            return _sign.verify_b64_signature(bot.public_key, unquote_plus(signature).replace(" ", "+"), payload)
        return False

    @staticmethod
    def _rebuild(req: IncomingRequest, q: ParamList, b: ParamList) -> IncomingRequest:
        headers = {k: v for k, v in req.headers.items() if k != KEY_HEADER}
        return req.replace(query=q.render(), headers=headers, body=b.render().encode())

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        query, body = self._parts(req)
        return self._rebuild(req, query.without("signature"), body.without("signature"))

    # --- real signing ---------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        origin, now_ms = ctx.origin, ctx.now_ms
        if endpoint.cls is EndpointClass.PUBLIC:
            return OutboundRequest(req.method, origin, req.path, req.query, {}, req.body)
        headers = {"X-MBX-APIKEY": key.api_key.reveal_str()}
        qp = ParamList.parse(percent_encode_payload(req.query.encode()).decode())
        bp = ParamList.parse(percent_encode_payload(req.body).decode())
        if req.body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        has_timestamp = bool(qp.count("timestamp") or bp.count("timestamp"))
        if ctx.stream_token is not None:  # the real listenKey where the bot named its virtual one
            qp, bp = _with_listen_key(qp, ctx.stream_token), _with_listen_key(bp, ctx.stream_token)
        if not endpoint.signed and not has_timestamp:
            # key-only endpoint (market data, listenKey): the key header is all Binance wants
            return OutboundRequest(req.method, origin, req.path, qp.render(), headers, bp.render().encode())
        last = bp if bp.pairs else qp  # `signature` must end the payload (query ‖ body)
        if not has_timestamp:
            last.pairs.append(f"timestamp={now_ms}")  # token mode: keyproxy owns the clock
        signature = self._real_signature(key, (qp.render() + bp.render()).encode())
        last.pairs.append(f"signature={signature}")
        return OutboundRequest(req.method, origin, req.path, qp.render(), headers, bp.render().encode())

    @staticmethod
    def _real_signature(key: RealKey, payload: bytes) -> str:
        if key.key_type == "hmac":
            assert key.secret is not None
            return _sign.hmac_sha256_hex(key.secret.reveal(), payload)
        assert key.private_key is not None
        if key.key_type == "ed25519":
            sig = _sign.sign_ed25519_b64(key.private_key.reveal(), payload)
        elif key.key_type == "rsa":
            sig = _sign.sign_rsa_sha256_b64(key.private_key.reveal(), payload)
        else:
            raise ValueError(f"binance has no {key.key_type} keys")
        return quote(sig, safe="")

    # --- credentials and errors ---------------------------------------------

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        key_id = _sign.random_token(64)
        if key_type == "hmac":
            from keyproxy.secret import Secret

            secret = _sign.random_token(64)
            return IssuedBotKey({"api_key": key_id, "secret": secret},
                                BotKey(key_id, "hmac", secret=Secret(secret)))
        private_pem, public_pem = _sign.new_keypair_pem(key_type)
        # ccxt takes the PEM private key in `secret`
        return IssuedBotKey({"api_key": key_id, "secret": private_pem.decode()},
                            BotKey(key_id, key_type, public_key=public_pem))

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return binance_facts(req, endpoint)

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return binance_prices(path, body)

    def contract_sizes(self, path: str, body: bytes) -> dict[str, Decimal]:
        return binance_contract_sizes(path, body)

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        return binance_reference_request(leg)

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """-2014 (bad key format) and -2008 (unknown key id) refuse the key; -1002 ("not authorized to execute
        this request") refuses one permission. -2015 ("Invalid API-key, IP, or permissions for action") says
        either: keyproxy reads it as the key refused only when it answers a spot read (`GET /api/v3/...`),
        which every valid key may make; on any other request (futures on a spot-only key, a trade on a
        read-only key) it is a permission this key lacks, and acts on the bot, not the key."""
        if status not in (401, 403):
            return None
        try:
            code = json.loads(body).get("code")
        except (ValueError, AttributeError):
            return None
        if code in (-2014, -2008):
            return KeyRejection.INVALID
        if code == -2015:
            read = method in ("", "GET") and (path == "" or path.startswith("/api/v3/"))
            return KeyRejection.INVALID if read else KeyRejection.DENIED
        return KeyRejection.DENIED if code == -1002 else None

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return binance_order_book_change(req, status, body, facts)

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return binance_order_updates(req.path, status, body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return binance_amend_verdicts(loads(body) if 200 <= status < 300 else None, legs)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return binance_placed_ids(loads(body))

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return binance_placed_ids(loads(body), "clientOrderId")

    def client_id_forms(self, client_id: str) -> tuple[str, ...]:
        plain = client_id.removeprefix(ALGO)  # an algo order's client id is its triggered order's too
        return (client_id, plain) if client_id.startswith(ALGO) else (client_id, ALGO + client_id)

    def id_per_market(self, order_id: str) -> bool:
        return not order_id.startswith(ALGO)  # an algo order's ids are the account's (binance_facts.ALGO)

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]:
        """An algo order's cancel answer names it by `algoId` (no `orderId`): the request's, or its client id."""
        if req.path not in ALGO_ORDERS:
            return (), False
        params = params_of(req.query, req.body)
        algo_id = params.get("algoId") or ""
        if algo_id.isascii() and algo_id.isdigit():
            return (f"{ALGO}{int(algo_id)}",), False
        return (), bool(params.get("clientAlgoId"))

    def settled_answer(self, req: OutboundRequest, status: int, body: bytes) -> tuple[int, bytes]:
        """A cancel-replace refused in part (409, or 400 with both halves failed) as the answer of what it did."""
        if status in (400, 409) and req.path.endswith("/cancelReplace"):
            done = binance_cancel_replace_done(loads(body))
            if done is not None:
                return 200, json.dumps(done).encode()
        return status, body

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return binance_stream_updates(text)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return binance_reconcile_request(scope, since_ms)

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return binance_order_query_request(scope, order_id)

    def conditional_reconcile_request(self, scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
        return binance_algo_reconcile_request(scope, since_ms)

    # the markets whose algo orders are listed whole (`openAlgoOrders` with no symbol; COIN-M's listing is not
    # documented, so its count falls only by cancels)
    _ALGO_COUNT_LISTINGS = {"usdm-algo:*": "/fapi/v1/openAlgoOrders",
                            "papi-um-algo:*": "/papi/v1/um/algo/openAlgoOrders"}
    conditional_count_scopes = tuple(_ALGO_COUNT_LISTINGS)

    def resting_client_ids(self, out: OutboundRequest, status: int, body: bytes) -> tuple[tuple[str, str, str], ...]:
        return binance_resting_client_ids(out.method, out.path, status, body)

    def conditional_count_listings(self, scope: str) -> list[tuple[str, str, str, bytes]]:
        path = self._ALGO_COUNT_LISTINGS.get(scope)
        return [("GET", path, "", b"")] if path else []

    def native_error(self, code: str, message: str) -> dict[str, object]:
        # Binance's own codes, chosen so ccxt raises the matching exception and does not
        # retry: -2015 is retried by ccxt as DDoSProtection, so policy refusals use -1002.
        # Trading-limit refusals (and a halt's) use -2010 (NEW_ORDER_REJECTED) so ccxt raises InvalidOrder,
        # and rate_limited -1003 so it backs off (RateLimitExceeded). One code per kind (base.RefusalKind).
        return {"code": _BINANCE_CODES.get(code) or _BINANCE_KINDS[refusal_kind(code)], "msg": message}

    def websocket(self, path: str) -> Adapter | None:
        """`/ws-api/v3`: the WebSocket API, each request frame read and re-signed (binance_ws.py)."""
        from keyproxy.exchanges.binance_ws import WS_API_PATH, BinanceWsApi

        return BinanceWsApi(self) if path == WS_API_PATH else None

    budgets = BUDGETS

    def public_ttl(self, method: str, path: str) -> float:
        """exchangeInfo (spot, USD-M, COIN-M): what every bot loads at start, weight 20 each on spot."""
        return MARKET_LIST_TTL if method == "GET" and path in MARKET_LISTS else 0.0

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        """As every exchange's (429 and 418 hold the request's budgets), but -1015 ("Too many new orders") holds
        the account's order counts only, as on the WebSocket API: it held the IP's request weight for every account
        and bot a minute (session 33's review)."""
        hold = super().rate_limit_hold(status, headers, body)
        if hold is not None and status == 429 and body and b"-1015" in body:
            doc = loads(body)
            if isinstance(doc, dict) and doc.get("code") == -1015:
                return hold[0], "~ORDERS"
        return hold

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        return binance_costs(req.method, req.path, req.query, req.body)

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        return binance_connection_costs(path)

    def retired(self, method: str, path: str) -> str | None:
        if path == "/api/v3/userDataStream":
            return ("Binance retired spot listenKeys on 2026-02-20: subscribe over the WebSocket API "
                    "(/ws-api/v3, userDataStream.subscribe.signature) through keyproxy instead")
        return None

    def relay_frames(self, path: str) -> tuple[int, float] | None:
        """"WebSocket connections have a limit of 5 incoming messages per second ... A connection that goes beyond
        the limit will be disconnected; IPs that are repeatedly disconnected may be banned" (spot's streams); 10 for
        the futures and options streams (`/public/...`, `/market/...`). Binance counts PING and PONG frames too, and
        keyproxy pings the exchange's socket itself: one message of each second is left for that."""
        return (9, 1.0) if path.startswith(("/public/", "/market/")) else (4, 1.0)

    def relays_websocket(self, path: str) -> bool:
        """Market data streams (`/ws`, `/ws/<streams>`, `/stream`, futures `/public/ws`, `/market/ws`): no
        credential, relayed unchanged."""
        return path in _PUBLIC_STREAMS or path.startswith(("/ws/", "/public/ws/", "/market/ws/"))

    def names_private_stream(self, text: str) -> bool:
        """A name shaped as a listenKey (60-64 letters and digits: a market stream's name has an `@`), percent-encoded
        or not, in a market data stream's URL or in a frame sent on it (`SUBSCRIBE`): a user data stream opened past
        keyproxy's checks (session 26's review: `/ws/%72dk...` and `/public/ws/<key>` reached one)."""
        if _PRIVATE_NAME.search(unquote_plus(text)) is not None:
            return True
        if "\\" not in text:  # no JSON escape: the text is what the exchange reads
            return False
        try:  # a frame as the exchange reads it (`\u0061` is an `a`)
            return any(_PRIVATE_NAME.search(unquote_plus(v)) is not None for v in _strings(json.loads(text)))
        except (ValueError, RecursionError):
            return True  # unreadable: not relayed

    def grants_stream_token(self, path: str) -> bool:
        """The listenKey and listenToken endpoints, and any path named like one (fail closed: a stream token an
        endpoint keyproxy did not list hands out never reaches a bot either: `/sapi/v1/margin/listen-key`)."""
        return path in _TOKEN_FIELDS or _TOKEN_PATH.search(path) is not None

    def stream_close_answer(self, method: str, path: str) -> bytes | None:
        """`DELETE` of a listenKey answers `{}`."""
        return b"{}" if method == "DELETE" and self.grants_stream_token(path) else None

    def swap_stream_token(self, body: bytes, mint: Callable[[str], str]) -> bytes:
        """The answer with its listenKey (or listenToken) replaced by the bot's virtual one; an answer keyproxy
        cannot read is not relayed (it could carry the real one)."""
        try:
            doc = json.loads(body)
        except ValueError:
            return b'{"code":-1000,"msg":"keyproxy could not read the exchange\'s answer"}'
        if not isinstance(doc, dict):
            return b'{"code":-1000,"msg":"keyproxy could not read the exchange\'s answer"}'
        for field in ("listenKey", "token"):
            if field in doc:
                real = doc[field]
                doc[field] = mint(real) if isinstance(real, str) and real else ""
        return json.dumps(doc, separators=(",", ":")).encode()

    @staticmethod
    def virtual_stream_token() -> str:
        """Shaped as Binance's own (64 letters and digits): `/ws/<listenKey>` is told from a market stream by it."""
        return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(64))

    def named_stream_token(self, req: IncomingRequest) -> str | None:
        """The listenKey a keepalive or close names (`PUT`/`DELETE /sapi/v1/userDataStream?listenKey=`): the
        virtual one keyproxy handed out, swapped for the real one when signed (`SignContext.stream_token`). It
        proves nothing on REST: the request is the bot's by its API key (`presented_stream_token` stays None)."""
        if req.method not in ("PUT", "DELETE") or not self.grants_stream_token(req.path):
            return None
        try:
            query, body = self._parts(req)
        except BadRequest:
            return None
        if query.count("listenKey") + body.count("listenKey") != 1:
            return None
        value = query.get("listenKey") if query.count("listenKey") else body.get("listenKey")
        return value or None

    def websocket_origin_path(self, path: str) -> str:
        """`/ws/<listenKey>` is COIN-M's user stream at dstream (spot's `/ws/<streams>` names carry `@`)."""
        return "/dstream" + path if _LISTEN_KEY_PATH.fullmatch(path) else path

    def private_stream_origin_path(self, path: str, issued_by: str) -> str:
        """`/ws/<listenKey>` is a user data stream at the host of the market that handed the key out: USD-M's
        (fstream), margin's (the spot stream host), else COIN-M's (dstream); `/private/ws/<listenKey>` is USD-M's
        (python-binance's `futures_user_socket`)."""
        if path.startswith("/private/ws"):
            return "/private/ws"
        if _LISTEN_KEY_PATH.fullmatch(path):
            if issued_by.startswith("/fapi/"):
                return "/private/ws"
            if issued_by == "/sapi/v1/margin/listen-key":  # the margin risk data stream
                return "/margin-stream/"
            if issued_by.startswith(("/papi/", "/eapi/", "/sapi/v1/equity/")):
                return "/unrouted/"  # portfolio margin, options, equity: no host here (refused, not misrouted)
            if issued_by.startswith("/sapi/"):
                return "/ws"
        return self.websocket_origin_path(path)

    def stream_listen_key(self, path: str, query: str) -> str | None:
        """USD-M futures' user data stream, `/private/ws?listenKey=<key>` (one key, nothing else) or
        `/private/ws/<listenKey>`; `/ws/<listenKey>` (a listenKey is 60-64 letters and digits; a market stream name
        has an `@`), whose host is the market's that handed the key out (`private_stream_origin_path`)."""
        if _LISTEN_KEY_PATH.fullmatch(path):
            return path[len("/ws/"):]
        if path.startswith("/private/ws/") and _LISTEN_KEY_PATH.fullmatch(path[len("/private"):]):
            if query:
                raise BadRequest("a user data stream URL names exactly one listenKey")
            return path[len("/private/ws/"):]
        if path != "/private/ws":
            return None
        values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "listenKey"]
        if len(values) != 1 or not values[0]:
            raise BadRequest("a user data stream URL names exactly one listenKey")
        return values[0]

    def refusal_status(self, code: str, status: int) -> int:
        return status


def _strings(doc: object) -> list[str]:
    """Every string in a JSON document (keys too)."""
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for k, v in doc.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return []


def _with_listen_key(params: ParamList, real: str) -> ParamList:
    return ParamList([f"listenKey={quote(real, safe='')}" if p.partition("=")[0] == "listenKey" else p
                      for p in params.pairs])


def _replay_ids(request: IncomingRequest, params_id: str, method: str, path: str, expires_ms: int) -> Verified:
    """Binance signs the parameters, not the path: two reads of different paths with the same parameters in
    the same millisecond (ccxt loads margin pairs and isolated pairs at once) are two requests, so a read is
    identified by its path too; a write by its parameters alone, and a read's parameters count as seen, so a
    captured read (`GET openOrders`) cannot come back as a write (`DELETE openOrders`) with them."""
    if method == "GET":
        return Verified(request, replay_id=f"{params_id}:GET {path}", expires_ms=expires_ms, also_seen=params_id)
    return Verified(request, replay_id=params_id, expires_ms=expires_ms)
