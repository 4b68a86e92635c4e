"""Bybit v5 (`/v5/...`): production, testnet and demo trading.

Signing, per Bybit's "Integration Guidance" (docs/v5/guide.mdx): headers
`X-BAPI-API-KEY`, `X-BAPI-TIMESTAMP` (ms), `X-BAPI-RECV-WINDOW` (default 5000) and
`X-BAPI-SIGN` over `timestamp + api_key + recv_window + payload`, where payload is the
query string for GET and the raw JSON body for POST; HMAC-SHA256 as lower-case hex,
or RSA-SHA256 (PKCS#1 v1.5) as base64 for self-generated RSA keys. The timestamp must
satisfy `server_time - recv_window <= timestamp < server_time + 1000`. pybit 5.17.0
(`_http_manager.py`) and Bybit's own examples also send `X-BAPI-SIGN-TYPE: 2`; ccxt
4.5.90 (`bybit.sign`) does not for v5. Neither client puts the host into the signature,
so a base URL change (ccxt `urls['api']`, pybit `session.endpoint`) changes nothing here.
https://bybit-exchange.github.io/docs/v5/guide
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from decimal import Decimal

from keyproxy.exchanges import _sign
from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import RefusalKind as K, refusal_kind
from keyproxy.exchanges.permissions import KeyPermissions, iso_time, json_or_none
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
    RealKey,
    SignContext,
    Verified,
)
from keyproxy.exchanges.bybit_budget import (
    BUDGETS, SINGLE_TWINS, WS_CONNECTIONS, bybit_costs, bybit_rate_limit_hold,
)
from keyproxy.exchanges.bybit_endpoints import ENDPOINT_GROUPS
from keyproxy.exchanges.bybit_facts import amend_legs_sent, bybit_facts, bybit_order_book_change, bybit_prices
from keyproxy.exchanges.bybit_fills import READ as BYBIT_READ
from keyproxy.exchanges.bybit_fills import (
    bybit_amend_verdicts, bybit_order_query_request, bybit_order_updates, bybit_placed_ids, bybit_reconcile_request,
    bybit_stream_updates,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

KEY_HEADER = "x-bapi-api-key"
SIGN_HEADER = "x-bapi-sign"
TIMESTAMP_HEADER = "x-bapi-timestamp"
WINDOW_HEADER = "x-bapi-recv-window"
AUTH_HEADERS = (KEY_HEADER, SIGN_HEADER, TIMESTAMP_HEADER, "x-bapi-sign-type")
PASSED_HEADERS = ("referer", "x-referer", "cdn-request-id")  # broker attribution, diagnostics
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000  # Bybit documents no ceiling; keyproxy keeps replay memory bounded
MAX_FUTURE_MS = 1000

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    (entry.split(" ", 1)[0], entry.split(" ", 1)[1]): Endpoint(EndpointClass(cls), entry, signed)
    for (cls, signed), entries in ENDPOINT_GROUPS.items()
    for entry in entries
}


def _env(name: str, origin: str) -> Environment:
    """REST at `api*` and WebSockets at the matching `stream*` host (docs/v5/ws/connect.mdx)."""
    stream = origin.replace("https://api", "wss://stream", 1)
    return Environment(name, (("/v5/private", stream), ("/v5/trade", stream), ("/v5/public/", stream),
                              ("/v5/", origin)))


# Bybit's REST hosts (docs/v5/guide.mdx, "REST API Base Endpoint"): mainnet api.bybit.com or
# api.bytick.com, the regional mainnets, testnet, and demo trading (docs/v5/demo.mdx).
ENVIRONMENTS = (
    _env("production", "https://api.bybit.com"),
    _env("testnet", "https://api-testnet.bybit.com"),
    _env("demo", "https://api-demo.bybit.com"),
    _env("production", "https://api.bytick.com"),
    _env("production", "https://api.bybit.nl"),
    _env("production", "https://api.bybit.tr"),
    _env("production", "https://api.bybit.kz"),
    _env("production", "https://api.bybit.eu"),
    _env("production", "https://api.bybit.id"),
    _env("production", "https://api.bybit.ae"),
    _env("production", "https://api.bybitgeorgia.ge"),
)

_DIGITS = re.compile(r"[0-9]{1,20}")


# native_error: Bybit's retCode for each kind of refusal, and where one code has a finer one of its own
_BYBIT_KINDS: dict[K, int] = {
    K.AUTH: 10003, K.SIGNATURE: 10004, K.STALE: 10002, K.BAD_REQUEST: 10001, K.UNKNOWN_ENDPOINT: 10017,
    K.NOT_FOUND: 10003, K.DENIED: 10005, K.PAUSED: 10005, K.ORDER_REJECTED: 10001, K.RATE_LIMITED: 10006,
    K.UNAVAILABLE: 10006, K.UPSTREAM_TIMEOUT: 10016, K.UPSTREAM_ERROR: 10016, K.INTERNAL: 10016,
}
_BYBIT_CODES = {"ip_denied": 10010}  # "unmatched IP": Bybit's own answer to a source outside the key's list


class Bybit(AdapterHooks):
    order_id_keys = ("orderId",)  # the member of an order answer naming the exchange's order id
    client_id_keys = ("orderLinkId",)
    fill_markets = BYBIT_READ  # bybit_fills.py
    # a read call that needs a valid key: `key rotate` checks a new key with it
    verify_request = ("GET", "/v5/account/wallet-balance", "accountType=UNIFIED", b"")
    name = "bybit"
    time_path = "/v5/market/time"  # public: `keyproxy doctor` reads the exchange's clock from it
    key_info_request = ("GET", "/v5/user/query-api", "", b"")  # `key audit`: what the key may do
    needs_nonce = False
    environments = ENVIRONMENTS
    relayed_response_headers = ("content-type", "retry-after", "x-bapi-limit*", "traceid")

    def key_permissions(self, body: bytes) -> KeyPermissions:
        """What the key may do, from `key_info_request`'s answer."""
        doc = json_or_none(body)
        r = doc.get("result") or {}
        perms = r.get("permissions") or {}
        wallet = perms.get("Wallet") or []
        return KeyPermissions(
            trade=not r.get("readOnly", 0) and any(perms.get(k) for k in ("ContractTrade", "Spot", "Options")),
            withdraw="Withdraw" in wallet or bool(perms.get("Withdraw")),
            transfer="AccountTransfer" in wallet or "SubMemberTransfer" in wallet,
            ip_restricted=r.get("ips") not in (None, [], ["*"]),
            expires_at=iso_time(r.get("expiredAt")))

    def server_time(self, body: bytes) -> float:
        doc = json.loads(body)
        return float(doc["result"]["timeSecond"]) if "result" in doc else float(doc["time"]) / 1000

    def classify(self, method: str, path: str) -> Endpoint | None:
        return ENDPOINTS.get((method, path))

    budgets = BUDGETS

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        endpoint = ENDPOINTS.get((req.method, req.path))
        return bybit_costs(endpoint is not None and endpoint.cls is not EndpointClass.PUBLIC, req.path, req.body)

    def budget_path(self, req: IncomingRequest) -> str:
        return SINGLE_TWINS.get(req.path, req.path)  # a batch spends its single twin's per-UID limit

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        return ((WS_CONNECTIONS, 1),)  # every socket to stream.bybit.com counts, whatever its path

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        return bybit_rate_limit_hold(status, headers, body, int(time.time() * 1000))

    def presented_key(self, req: IncomingRequest) -> str | None:
        return req.headers.get(KEY_HEADER) or None

    # --- drop-in verification ---------------------------------------------

    @staticmethod
    def _payload(req: IncomingRequest) -> bytes:
        """What Bybit signs after the prefix: the query string for GET, the body otherwise."""
        if req.method == "GET":
            if req.body:
                raise BadRequest("a Bybit GET carries no body")
            return req.query.encode()
        if req.query:
            raise BadRequest("a Bybit POST carries its parameters in the JSON body, not the query string")
        return req.body

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        payload = self._payload(req)
        signature = req.headers.get(SIGN_HEADER)
        if not signature:
            if endpoint.signed:
                raise AuthFailure("bad_signature", "this endpoint needs X-BAPI-SIGN")
            return Verified(self.strip(req), replay_id="", expires_ms=0, proven=False)
        ts_text, window_text = req.headers.get(TIMESTAMP_HEADER), req.headers.get(WINDOW_HEADER)
        if ts_text is None or not _DIGITS.fullmatch(ts_text):
            raise BadRequest("X-BAPI-TIMESTAMP is missing or not a number of milliseconds")
        window = _window(window_text)
        ts = int(ts_text)
        if not now_ms - window <= ts < now_ms + MAX_FUTURE_MS:
            raise AuthFailure("stale_request", "X-BAPI-TIMESTAMP is outside the recv window (or more than 1 s ahead)")
        # the key and window exactly as sent: both are part of what the bot signed
        prefix = f"{ts_text}{req.headers.get(KEY_HEADER, '')}{window_text if window_text is not None else ''}"
        message = prefix.encode() + payload
        if not self._check(bot, signature, message):
            raise AuthFailure("bad_signature", "signature does not match the virtual credential")
        params_id = f"{bot.key_id}:{_sign.sha256_hex(message)}"
        if req.method == "GET":  # the signature does not bind the path: as Binance (binance._replay_ids)
            return Verified(self.strip(req), replay_id=f"{params_id}:GET {req.path}", expires_ms=ts + window + 1,
                            also_seen=params_id)
        return Verified(self.strip(req), replay_id=params_id, expires_ms=ts + window + 1)

    @staticmethod
    def _check(bot: BotKey, signature: str, message: bytes) -> bool:
        if bot.key_type == "hmac" and bot.secret is not None:
            return _sign.equal(_sign.hmac_sha256_hex(bot.secret.reveal(), message), signature.lower())
        if bot.key_type == "rsa" and bot.public_key is not None:
            return _sign.verify_b64_signature(bot.public_key, signature, message)
        return False

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        """Drop the bot's Bybit credentials; the recv window stays (it is a parameter, not a secret)."""
        return req.replace(headers={k: v for k, v in req.headers.items() if k not in AUTH_HEADERS})

    # --- real signing ---------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        payload = self._payload(req)
        headers = {name.title(): req.headers[name] for name in PASSED_HEADERS if name in req.headers}
        if req.method != "GET":
            headers["Content-Type"] = "application/json"
        if endpoint.cls is EndpointClass.PUBLIC:
            return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)
        window_text = req.headers.get(WINDOW_HEADER)
        window = str(_window(window_text)) if window_text is not None else str(DEFAULT_RECV_WINDOW_MS)
        api_key = key.api_key.reveal_str()
        timestamp = str(ctx.now_ms)
        message = f"{timestamp}{api_key}{window}".encode() + payload
        headers.update({
            "X-BAPI-API-KEY": api_key,
            "X-BAPI-TIMESTAMP": timestamp,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": self._real_signature(key, message),
            "X-BAPI-SIGN-TYPE": "2",
        })
        return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)

    @staticmethod
    def _real_signature(key: RealKey, message: bytes) -> str:
        if key.key_type == "hmac":
            assert key.secret is not None
            return _sign.hmac_sha256_hex(key.secret.reveal(), message)
        if key.key_type == "rsa":
            assert key.private_key is not None
            return _sign.sign_rsa_sha256_b64(key.private_key.reveal(), message)
        raise ValueError(f"bybit has no {key.key_type} keys")

    # --- credentials and errors ---------------------------------------------

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        """Shaped like Bybit's: an 18-character key; HMAC secrets are 36 characters.

        rsa: the secret is a PEM private key, which ccxt (`secret.find('PRIVATE KEY')`) and
        pybit (`rsa_authentication=True`) both sign with RSA-SHA256 as Bybit wants.
        """
        key_id = _sign.random_token(18)
        if key_type == "hmac":
            from keyproxy.secret import Secret

            secret = _sign.random_token(36)
            return IssuedBotKey({"api_key": key_id, "secret": secret},
                                BotKey(key_id, "hmac", secret=Secret(secret)))
        if key_type == "rsa":
            private_pem, public_pem = _sign.new_keypair_pem("rsa")
            return IssuedBotKey({"api_key": key_id, "secret": private_pem.decode()},
                                BotKey(key_id, "rsa", public_key=public_pem))
        raise ValueError(f"bybit bot keys are hmac or rsa, not {key_type}")

    # Bybit lets a key delete itself: the `revoke_key` anomaly action sends this, signed with the real key.
    revoke_request = ("POST", "/v5/user/delete-api", b"{}")

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """Bybit: retCode 10003 invalid key and 10010 IP not bound refuse the key; 10005 "permission
        denied" refuses one permission (often HTTP 200)."""
        if b"retCode" not in body[:80]:
            return None
        try:
            code = json.loads(body).get("retCode")
        except (ValueError, AttributeError):
            return None
        if code in (10003, 10010):
            return KeyRejection.INVALID
        return KeyRejection.DENIED if code == 10005 else None

    def native_error(self, code: str, message: str) -> dict[str, object]:
        """Bybit's envelope with a retCode that ccxt and pybit map to the matching error, one per kind
        (base.RefusalKind).

        ccxt bybit `exceptions.exact`: 10003/10004 AuthenticationError, 10002 InvalidNonce,
        10005/10010 PermissionDenied, 10001/10017 BadRequest, 10006 RateLimitExceeded,
        10016 ExchangeError. Only refusals made before anything went upstream get a code that pybit
        retries (10006); 10016 for upstream failures is never retried. pybit also retries 10002 (stale
        timestamp), re-signing with a fresh one, as against Bybit. An order keyproxy's limits refuse is
        10001 ("params error": BadRequest, never retried). Bybit's `time` field is left out: this
        method has no clock.
        """
        native = _BYBIT_CODES.get(code) or _BYBIT_KINDS[refusal_kind(code)]
        return {"retCode": native, "retMsg": message, "result": {}, "retExtInfo": {}}

    def refusal_status(self, code: str, status: int) -> int:
        """200, as Bybit answers its own retCode errors: pybit reads retCode only from a 200
        (any other status becomes "HTTP status code is not 200", a 403 even "your IP is from the
        USA"); ccxt reads retCode whatever the status."""
        return 200

    # --- request facts for policy -------------------------------------------

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return bybit_facts(req, endpoint)

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return bybit_prices(path, body)

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """`GET /v5/market/tickers?category=C&symbol=S`: the one market's last price."""
        if leg.market not in ("spot", "linear", "inverse") or not leg.symbol:
            return None
        return ("GET", "/v5/market/tickers", f"category={leg.market}&symbol={leg.symbol}", b"")

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return bybit_order_updates(req.path, req.query, status, body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        kept = amend_legs_sent(req.body)
        if kept is None or len(kept) != legs:
            return bybit_amend_verdicts(body, legs)
        said = bybit_amend_verdicts(body, max(kept, default=-1) + 1)
        return tuple(said[i] for i in kept)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        return bybit_placed_ids(body)

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        return bybit_placed_ids(body, "orderLinkId")

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return bybit_stream_updates(text)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return bybit_reconcile_request(scope, since_ms)

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return bybit_order_query_request(scope, order_id)

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return bybit_order_book_change(req.method, req.path, req.query, status, body, facts)

    def websocket(self, path: str) -> Adapter | None:
        """`/v5/private` and `/v5/trade`: authenticated once, each frame decided (bybit_ws.py)."""
        from keyproxy.exchanges.bybit_ws import WS_PATHS, BybitWsApi

        return BybitWsApi(self) if path in WS_PATHS else None

    def relays_websocket(self, path: str) -> bool:
        return path.startswith("/v5/public/")  # market data: no credential


def _window(text: str | None) -> int:
    if text is None:
        return DEFAULT_RECV_WINDOW_MS
    if not _DIGITS.fullmatch(text):
        raise BadRequest("X-BAPI-RECV-WINDOW is not a number of milliseconds")
    window = int(text)
    if window > MAX_RECV_WINDOW_MS:
        raise BadRequest(f"X-BAPI-RECV-WINDOW must not exceed {MAX_RECV_WINDOW_MS}")
    return window
