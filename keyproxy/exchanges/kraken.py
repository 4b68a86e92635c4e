"""Kraken spot REST: `/0/public/*` (market data) and `/0/private/*` (account, trading, funding, earn).

Signing, per Kraken's "Spot REST Authentication" guide
(https://docs.kraken.com/api/docs/guides/spot-rest-auth):
`API-Sign` = base64(HMAC-SHA512(base64decode(secret), URI path + SHA256(nonce + POST data))),
with the URI path starting at `/0/private`, the public key in `API-Key`, and `nonce` (an
always increasing unsigned 64-bit integer, `int64` in Kraken's OpenAPI spec) in the payload.
The payload is form-encoded or, on every private endpoint, JSON (krakenfx/api-specs
`spot-rest/openapi_v3.yaml`); ccxt sends JSON for AddOrderBatch/CancelOrderBatch.

Kraken has no timestamp: freshness is the nonce, which must increase per API key. So a bot's
own nonce becomes `Verified.sequence` (the pipeline keeps it increasing per bot), and keyproxy
replaces it with its own persistent sequence for the real key (`needs_nonce`) before re-signing,
keeping every other byte of the body. Errors are HTTP 200 with `{"error": ["EAPI:Invalid key"]}`
(https://docs.kraken.com/api/docs/guides/spot-errors), so refusals are answered that way too.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote_plus

from keyproxy.exchanges import _sign
from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import RefusalKind as K, refusal_kind
from keyproxy.exchanges.permissions import KeyPermissions, json_or_none
from keyproxy.exchanges.base import (
    OrderUpdate,
    Adapter,
    KeyRejection,
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
from keyproxy.exchanges.kraken_budget import (
    BUDGETS, TIERS, WS_CONNECTIONS, kraken_costs, kraken_errors, kraken_rate_limit_hold,
)
from keyproxy.exchanges.kraken_facts import (
    ASSET_PAIRS, kraken_facts, kraken_market_ids, kraken_market_names, kraken_order_book_change, kraken_params,
    kraken_prices, order_txid,
)
from keyproxy.exchanges.kraken_fills import (
    kraken_amend_verdicts, kraken_order_query_request, kraken_order_updates, kraken_placed_ids,
    kraken_reconcile_request, kraken_stream_updates,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

KEY_HEADER = "api-key"
SIGN_HEADER = "api-sign"
PUBLIC_PREFIX = "/0/public/"
PRIVATE_PREFIX = "/0/private/"
# Kraken's OpenAPI spec types the nonce int64; keyproxy also stores it as a SQLite INTEGER.
MAX_NONCE = 2**63 - 1

ENVIRONMENTS = (
    Environment("production", ((PUBLIC_PREFIX, "https://api.kraken.com"), (PRIVATE_PREFIX, "https://api.kraken.com"),
                               # WebSocket v2: `/v2` on both hosts, told apart by websocket_origin_path
                               ("/ws-auth/", "wss://ws-auth.kraken.com"), ("/ws-public/", "wss://ws.kraken.com"))),
)
WS_TOKEN_PATH = "/0/private/GetWebSocketsToken"
WS_PRIVATE_PATH = "/v2"  # wss://ws-auth.kraken.com/v2: private channels and order entry (public channels too)
WS_PUBLIC_PATH = "/public/v2"  # keyproxy's name for wss://ws.kraken.com/v2 (market data), relayed unchanged

# Market data, GET only: Kraken's spec lists them as GET, and "since 2024-01-31, public endpoints
# only support GET" (krakenex 2.2.2, api.py `_query`).
PUBLIC_METHODS = frozenset({
    "Time", "SystemStatus", "MaintenanceSchedule", "Assets", "AssetPairs", "Ticker", "OHLC", "Depth",
    "GroupedBook", "Trades", "Spread", "PreTrade", "PostTrade",
})

# Private methods (all POST) by class. Sources: krakenfx/api-specs spot-rest/openapi_v3.yaml @ 2a6afd62
# (with each endpoint's "API Key Permissions Required"), ccxt 4.5.90 `kraken.describe()['api']['private']`,
# and the legacy staking methods the Earn API replaced (Stake/Unstake -> Earn/Allocate/Deallocate).
PRIVATE_METHODS: dict[str, EndpointClass] = {
    **dict.fromkeys((
        # account data
        "Balance", "BalanceEx", "CreditLines", "TradeBalance", "OpenOrders", "ClosedOrders", "QueryOrders",
        "OrderAmends", "TradesHistory", "QueryTrades", "OpenPositions", "Ledgers", "QueryLedgers",
        "TradeVolume", "GetApiKeyInfo", "ListWalletAccounts", "Level3",
        # reports of the account's own trades/ledgers (Export data permission; no funds move)
        "AddExport", "ExportStatus", "RetrieveExport", "RemoveExport",
        # the token opens Kraken's WebSocket API; keyproxy hands the bot a virtual token, which works only
        # through keyproxy, where each WebSocket frame is decided like the REST call it mirrors (kraken_ws.py)
        "GetWebSocketsToken",
        # funding queries: nothing leaves the account (DepositAddresses may mint a new address)
        "DepositMethods", "DepositAddresses", "DepositStatus", "WithdrawMethods", "WithdrawAddresses",
        "WithdrawInfo", "WithdrawStatus",
        # earn queries
        "Earn/Strategies", "Earn/Allocations", "Earn/AllocateStatus", "Earn/DeallocateStatus",
        "Staking/Assets", "Staking/Pending", "Staking/Transactions",
    ), EndpointClass.READ),
    **dict.fromkeys((
        "AddOrder", "AddOrderBatch", "AmendOrder", "EditOrder", "CancelOrder", "CancelAll",
        "CancelAllOrdersAfter", "CancelOrderBatch",
    ), EndpointClass.TRADE),
    # funds leave the account; cancelling a withdrawal needs Kraken's Withdraw permission too
    **dict.fromkeys(("Withdraw", "WithdrawCancel"), EndpointClass.WITHDRAW),
    **dict.fromkeys((
        "WalletTransfer",  # spot -> futures wallet of the same account
        # master <-> its own subaccounts (like Binance's sub-account transfers, which are `transfer`)
        "AccountTransfer",
        "Earn/Allocate", "Earn/Deallocate", "Stake", "Unstake",
    ), EndpointClass.TRANSFER),
    "CreateSubaccount": EndpointClass.ADMIN,
}

_DIGITS = re.compile(r"[0-9]{1,20}")
_DIGITS_B = re.compile(rb"[0-9]{1,20}")
_WS = " \t\n\r"


# native_error: Kraken's error string for each kind of refusal, and where one code has a finer one
_KRAKEN_KINDS: dict[K, str] = {
    K.AUTH: "EAPI:Invalid key", K.SIGNATURE: "EAPI:Invalid signature", K.STALE: "EAPI:Invalid nonce",
    K.BAD_REQUEST: "EGeneral:Invalid arguments", K.UNKNOWN_ENDPOINT: "EGeneral:Unknown method",
    K.NOT_FOUND: "EGeneral:Invalid arguments", K.DENIED: "EGeneral:Permission denied",
    K.PAUSED: "EGeneral:Permission denied", K.ORDER_REJECTED: "EOrder:Invalid order",  # ccxt: InvalidOrder
    K.RATE_LIMITED: "EAPI:Rate limit exceeded",  # ccxt: DDoSProtection (backs off)
    K.UNAVAILABLE: "EService:Unavailable", K.UPSTREAM_TIMEOUT: "EService:Deadline elapsed",
    K.UPSTREAM_ERROR: "EService:Unavailable", K.INTERNAL: "EGeneral:Internal error",
}
_KRAKEN_CODES = {"replayed_request": "EAPI:Invalid nonce"}  # Kraken's answer to a nonce it has seen


@dataclass(frozen=True, slots=True)
class _Nonce:
    """Where the body carries its nonce: the text Kraken hashes, and the span to replace."""

    text: str
    start: int  # byte offsets of the value (for JSON strings: including the quotes)
    end: int
    json_string: bool = False


def _body_kind(req: IncomingRequest) -> str:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("", "application/x-www-form-urlencoded"):
        return "form"
    if ctype == "application/json":
        return "json"
    raise BadRequest("Kraken request bodies are form-encoded or JSON")


def _form_nonce(body: bytes) -> _Nonce | None:
    found: list[_Nonce] = []
    offset = 0
    for pair in body.split(b"&"):
        name, eq, value = pair.partition(b"=")
        try:
            decoded = unquote_plus(name.decode("utf-8"), errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("form body is not UTF-8") from None
        if decoded == "nonce":
            start = offset + len(name) + len(eq)
            found.append(_Nonce(value.decode("latin-1"), start, start + len(value)))
        offset += len(pair) + 1
    if len(found) > 1:
        raise BadRequest("more than one nonce in the request body")
    return found[0] if found else None


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _json_nonce(body: bytes) -> _Nonce | None:
    """The top-level `nonce` member of a JSON object body, located without re-serializing anything."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("JSON body is not UTF-8") from None
    decoder = json.JSONDecoder()
    found: list[tuple[int, int, object]] = []
    try:
        i = _skip(text, 0)
        if text[i:i + 1] != "{":
            raise BadRequest("the JSON body must be an object")
        i = _skip(text, i + 1)
        if text[i:i + 1] == "}":
            i += 1
        else:
            while True:
                if text[i:i + 1] != '"':
                    raise BadRequest("malformed JSON body")
                key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
                i = _skip(text, i)
                if text[i:i + 1] != ":":
                    raise BadRequest("malformed JSON body")
                i = _skip(text, i + 1)
                value, end = decoder.raw_decode(text, i)
                if key == "nonce":
                    found.append((i, end, value))
                i = _skip(text, end)
                if text[i:i + 1] == ",":
                    i = _skip(text, i + 1)
                    continue
                if text[i:i + 1] == "}":
                    i += 1
                    break
                raise BadRequest("malformed JSON body")
        if _skip(text, i) != len(text):
            raise BadRequest("data after the JSON body")
    except (json.JSONDecodeError, IndexError):
        raise BadRequest("malformed JSON body") from None
    if len(found) > 1:
        raise BadRequest("more than one nonce in the request body")
    if not found:
        return None
    start, end, value = found[0]
    # byte offsets: the body is UTF-8, and everything before the value may be multi-byte
    b_start = len(text[:start].encode("utf-8"))
    b_end = b_start + len(text[start:end].encode("utf-8"))
    if isinstance(value, str):
        return _Nonce(value, b_start, b_end, json_string=True)
    return _Nonce(text[start:end], b_start, b_end)


def _find_nonce(body: bytes, kind: str) -> _Nonce | None:
    if not body.strip():
        return None
    return _json_nonce(body) if kind == "json" else _form_nonce(body)


def _with_nonce(body: bytes, kind: str, nonce: int) -> bytes:
    """The body with its nonce set to `nonce`: replaced in place, or added first when absent."""
    loc = _find_nonce(body, kind)
    if loc is not None:
        value = f'"{nonce}"' if loc.json_string else str(nonce)
        return body[:loc.start] + value.encode() + body[loc.end:]
    if kind == "json":
        if not body.strip():
            return b'{"nonce":%d}' % nonce
        brace = body.index(b"{")
        rest = body[brace + 1:]
        sep = b"" if rest.strip().startswith(b"}") else b","
        return body[:brace + 1] + b'"nonce":%d' % nonce + sep + rest
    return b"nonce=%d" % nonce + (b"&" + body if body else b"")


def _content_type(kind: str) -> str:
    return "application/json" if kind == "json" else "application/x-www-form-urlencoded"


def api_sign(secret_b64: bytes, path: str, nonce: str, body: bytes) -> str:
    """Kraken's API-Sign for one request (raises ValueError for a secret that is not base64)."""
    try:
        key = base64.b64decode(secret_b64, validate=True)
    except binascii.Error as e:
        raise ValueError("the Kraken secret is not base64") from e
    return _sign.hmac_sha512_b64(key, path.encode() + _sign.sha256(nonce.encode() + body))


class Kraken(AdapterHooks):
    order_id_keys = ("txid",)  # the member of an order answer naming the exchange's order id
    amend_replaces = True  # EditOrder / edit_order cancel the order and place a new one under a new id
    fill_markets = frozenset({"spot"})  # kraken_fills.py

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return kraken_order_updates(req.path, status, body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return kraken_amend_verdicts(body, legs)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return kraken_placed_ids(body)

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]:
        """CancelOrder's `txid` (ids, comma-separated; digits: a userref, a client reference) or `cl_ord_id`."""
        if not req.path.endswith("/CancelOrder"):
            return (), False
        try:
            params = kraken_params(IncomingRequest("POST", req.path, "", {k.lower(): v for k, v in req.headers.items()},
                                                  req.body))
        except BadRequest:
            return (), True
        txid = params.get("txid")
        if txid is not None and not isinstance(txid, str | int):
            return (), True  # a shape keyproxy does not read: whose orders, unknown
        named = [t.strip() for t in str(txid or "").split(",") if t.strip()]
        ids = tuple(i for t in named if (i := order_txid(t)) is not None)
        return ids, bool(params.get("cl_ord_id")) or len(ids) < len(named)

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return kraken_stream_updates(text)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return kraken_reconcile_request(scope, since_ms)

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return kraken_order_query_request(scope, order_id)
    # a read call that needs a valid key: `key rotate` checks a new key with it
    verify_request = ("POST", "/0/private/Balance", "", b"")
    stream_token_request = ("POST", WS_TOKEN_PATH, "", b"")
    name = "kraken"
    time_path = "/0/public/Time"  # public: `keyproxy doctor` reads the exchange's clock from it
    key_info_request = ("POST", "/0/private/GetApiKeyInfo", "", b"")  # `key audit`: what the key may do
    needs_nonce = True
    environments = ENVIRONMENTS
    relayed_response_headers = ("content-type", "content-disposition", "retry-after")

    def key_permissions(self, body: bytes) -> KeyPermissions:
        """What the key may do, from `key_info_request`'s answer."""
        doc = json_or_none(body)
        r = doc.get("result") or {}
        perms = set(r.get("permissions") or [])
        valid = r.get("validUntil")
        return KeyPermissions(trade="modify-trades" in perms, withdraw="withdraw-funds" in perms, transfer=None,
                              ip_restricted=bool(r.get("ipAllowlist")),
                              expires_at=float(valid) if str(valid or "0") not in ("0", "") else None)

    def server_time(self, body: bytes) -> float:
        return float(json.loads(body)["result"]["unixtime"])

    def classify(self, method: str, path: str) -> Endpoint | None:
        if path.startswith(PUBLIC_PREFIX):
            if method == "GET" and path[len(PUBLIC_PREFIX):] in PUBLIC_METHODS:
                return Endpoint(EndpointClass.PUBLIC, f"{method} {path}", signed=False)
            return None
        if path.startswith(PRIVATE_PREFIX) and method == "POST":
            cls = PRIVATE_METHODS.get(path[len(PRIVATE_PREFIX):])
            return Endpoint(cls, f"POST {path}") if cls is not None else None
        return None

    def presented_key(self, req: IncomingRequest) -> str | None:
        return req.headers.get(KEY_HEADER) or None

    budgets = BUDGETS
    budget_tiers = TIERS

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        return ((WS_CONNECTIONS, 1),)  # every socket opened counts, whatever its path (the IP's)

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        private = req.path.startswith(PRIVATE_PREFIX) and req.method == "POST"
        return kraken_costs(req.path[len(PRIVATE_PREFIX):] if private else None)

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        return kraken_rate_limit_hold(body)

    # --- drop-in verification ---------------------------------------------

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        if not endpoint.signed:
            return Verified(self.strip(req), replay_id="", expires_ms=0, proven=False)
        self._no_query(req)
        signature = req.headers.get(SIGN_HEADER)
        if not signature:
            raise AuthFailure("bad_signature", "API-Sign header is missing")
        loc = _find_nonce(req.body, _body_kind(req))
        if loc is None:
            raise BadRequest("nonce is missing from the request body")
        if not _DIGITS.fullmatch(loc.text) or int(loc.text) > MAX_NONCE:
            raise BadRequest("nonce must be an integer from 0 to 2^63-1")
        paths = dict.fromkeys((req.path, req.mount + req.path) if req.mount else (req.path,))
        if not any(self._check(bot, signature, p, loc.text, req.body) for p in paths):
            raise AuthFailure("bad_signature", "API-Sign does not match the virtual credential")
        # freshness is the nonce alone (Kraken has no timestamp): the pipeline keeps it increasing per bot
        return Verified(self.strip(req), replay_id="", expires_ms=0, sequence=int(loc.text))

    @staticmethod
    def _check(bot: BotKey, signature: str, path: str, nonce: str, body: bytes) -> bool:
        if bot.key_type != "hmac" or bot.secret is None:
            return False
        try:
            expected = api_sign(bot.secret.reveal(), path, nonce, body)
        except ValueError:
            return False
        return _sign.equal(expected, signature)

    @staticmethod
    def _no_query(req: IncomingRequest) -> None:
        if req.query:
            # nothing signs a query string on a private call; Kraken takes parameters in the body
            raise BadRequest("Kraken private endpoints take their parameters in the body, not the query string")

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        headers = {k: v for k, v in req.headers.items() if k not in (KEY_HEADER, SIGN_HEADER)}
        return req.replace(headers=headers)

    # --- real signing ---------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        if not endpoint.signed:
            headers = {"Content-Type": _content_type(_body_kind(req))} if req.body else {}
            return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)
        self._no_query(req)
        if ctx.nonce is None:
            raise ValueError("Kraken private calls are signed with keyproxy's nonce (needs_nonce)")
        if key.secret is None:
            raise ValueError("the Kraken account has no secret")
        kind = _body_kind(req)
        body = _with_nonce(req.body, kind, ctx.nonce)
        try:
            signature = api_sign(key.secret.reveal(), req.path, str(ctx.nonce), body)
        except ValueError:  # a key stored before `key add` checked the format: say so, never a 500
            raise BadRequest("this account's stored Kraken secret is not base64, so keyproxy cannot sign: the "
                             "operator must `keyproxy key rotate` it with the secret as Kraken shows it") from None
        headers = {"API-Key": key.api_key.reveal_str(), "API-Sign": signature, "Content-Type": _content_type(kind)}
        return OutboundRequest(req.method, ctx.origin, req.path, "", headers, body)

    # --- request facts for policy -------------------------------------------

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return kraken_facts(req, endpoint)

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return kraken_order_book_change(req.path, status, body, facts, req.body)

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return kraken_prices(path, body)

    market_list_requests = (ASSET_PAIRS,)  # the pairs' names: every spelling of a pair is one order book

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        return kraken_market_ids(req)

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return kraken_market_names(path, body)

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """`GET /0/public/Ticker?pair=P`: Kraken answers under its own pair name (XBTUSD as XXBTZUSD); the
        market book files the one answer under the order's spelling."""
        return ("GET", "/0/public/Ticker", f"pair={leg.symbol}", b"") if leg.symbol else None

    # --- WebSocket v2 ----------------------------------------------------------

    def websocket(self, path: str) -> Adapter | None:
        """`/v2` (ws-auth.kraken.com): each frame decided; its virtual token swapped for the real one (kraken_ws.py)."""
        from keyproxy.exchanges.kraken_ws import KrakenWsApi

        return KrakenWsApi(self) if path == WS_PRIVATE_PATH else None

    def relays_websocket(self, path: str) -> bool:
        return path == WS_PUBLIC_PATH

    def websocket_origin_path(self, path: str) -> str:
        return "/ws-public/v2" if path == WS_PUBLIC_PATH else "/ws-auth" + path

    def websocket_upstream_path(self, path: str) -> str:
        return WS_PRIVATE_PATH if path == WS_PUBLIC_PATH else path

    def grants_stream_token(self, path: str) -> bool:
        return path == WS_TOKEN_PATH

    def listen_keys(self, path: str, body: bytes) -> tuple[str, ...]:
        """The token in a GetWebSocketsToken answer (`{"error": [], "result": {"token", "expires"}}`)."""
        if path != WS_TOKEN_PATH:
            return ()
        try:
            result = json.loads(body).get("result")
        except (ValueError, AttributeError):
            return ()
        token = result.get("token") if isinstance(result, dict) else None
        return (token,) if isinstance(token, str) and token else ()

    def swap_stream_token(self, body: bytes, mint: Callable[[str], str]) -> bytes:
        """The answer re-written with a virtual token; an answer keyproxy cannot read keeps no token at all."""
        try:
            doc = json.loads(body)
        except ValueError:
            return b'{"error":["EGeneral:Internal error"]}'
        result = doc.get("result") if isinstance(doc, dict) else None
        if not isinstance(result, dict) or "token" not in result:
            return body if isinstance(doc, dict) and "result" not in doc else b'{"error":["EGeneral:Internal error"]}'
        token = result["token"]
        return json.dumps({**doc, "result": {**result, "token": mint(token) if isinstance(token, str) else ""}},
                          separators=(",", ":")).encode()

    # --- credentials and errors ---------------------------------------------

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        if key_type != "hmac":
            raise ValueError("Kraken API keys are HMAC only")
        from keyproxy.secret import Secret

        # shaped like Kraken's own: a 56-character base64 public key, a 64-byte base64 private key
        key_id = base64.b64encode(secrets.token_bytes(42)).decode()
        secret = base64.b64encode(secrets.token_bytes(64)).decode()
        return IssuedBotKey({"api_key": key_id, "secret": secret}, BotKey(key_id, "hmac", secret=Secret(secret)))

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """Kraken answers 200: EAPI:Invalid key refuses the key, EGeneral:Permission denied one permission. Read
        in the answer's `error` list only: an answer echoes text a bot chose (an order's `cl_ord_id`), and a bot
        naming an order "EAPI:Invalid key" got the shared key quarantined (session 24's review)."""
        errors = kraken_errors(body)
        if any(e.startswith("EAPI:Invalid key") for e in errors):
            return KeyRejection.INVALID
        return KeyRejection.DENIED if any(e.startswith("EGeneral:Permission denied") for e in errors) else None

    def native_error(self, code: str, message: str) -> dict[str, object]:
        # Kraken's own strings (docs "Spot Error Messages"), one per kind (base.RefusalKind), which ccxt maps
        # by exact match: EAPI:Invalid key -> AuthenticationError, EAPI:Invalid nonce -> InvalidNonce,
        # EGeneral:Permission denied -> PermissionDenied, EGeneral:Invalid arguments -> BadRequest.
        # EAPI:Invalid signature / EGeneral:Unknown method / EService:Deadline elapsed are plain
        # ExchangeError in ccxt: not retried (a timed-out order's fate is unknown).
        return {"error": [_KRAKEN_CODES.get(code) or _KRAKEN_KINDS[refusal_kind(code)]]}

    def refusal_status(self, code: str, status: int) -> int:
        # Kraken answers errors with HTTP 200 and the `error` list; its SDKs read the list
        return 200
