"""Coinbase Advanced Trade (`/api/v3/brokerage/...`) and the v2 Sign In With Coinbase API (`/v2/...`).

Authentication is a fresh JWT per request in `Authorization: Bearer <jwt>`, signed
with a CDP API key: header {alg: ES256 (EC P-256) or EdDSA (Ed25519), kid: key
name, nonce: random hex, typ: JWT}, claims {sub: key name, iss: "cdp", nbf: now,
exp: now + 120, uri: "METHOD host/path"} (no query in the uri; the body is not
signed). ES256 signatures are raw r‖s as JWS wants. Sources: coinbase-advanced-py
1.8.4 `coinbase/jwt_generator.py` (build_jwt, format_jwt_uri) and
docs.cdp.coinbase.com/get-started/authentication/jwt-authentication ("Your JWT
expires after 2 minutes", "generate a different JWT for each unique API request").

Drop-in bots sign with a virtual CDP key; keyproxy keeps only its public half.
How the two clients build the `uri` claim when their base URL is keyproxy's:
- ccxt (coinbase.create_auth_token): `METHOD + ' ' + url.replace('https://', '')`,
  cut at '?'. With `urls['api']['rest'] = 'http://127.0.0.1:8750/main'` the scheme
  stays: "GET http://127.0.0.1:8750/main/api/v3/brokerage/accounts". ccxt's ES256
  tokens carry iss "coinbase-cloud", aud ["retail_rest_api_proxy"] and iat; its
  EdDSA tokens carry iss "cdp", aud ["cdp_service"] and `uris: [uri]` instead of `uri`.
- coinbase-advanced-py (RESTBase.set_headers): `f"{method} {self.base_url}{path}"`
  with base_url a bare host: base_url="127.0.0.1:8750/main" gives
  "GET 127.0.0.1:8750/main/api/v3/brokerage/accounts" (the SDK then always sends
  to https://{base_url}, so a plain-HTTP keyproxy needs the bot's session patched).
Both forms are accepted, and so is Coinbase's own "GET api.coinbase.com/path"
(a bot that builds its JWT for Coinbase and only redirects the connection).
Anything naming another method or path is refused.

keyproxy's own JWT names the Coinbase host it is sent to (api.coinbase.com, or
api-sandbox.coinbase.com); an emulator on loopback plays Coinbase, so its JWT names
the Coinbase host of the environment the emulator stands in for.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal

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
    no_json_constants,
    unique_members,
)
from keyproxy.exchanges.base import Reported
from keyproxy.exchanges.coinbase_budget import BUDGETS, WS_CONNECTIONS, coinbase_costs, coinbase_rate_limit_hold
from keyproxy.exchanges.coinbase_endpoints import ENDPOINT_GROUPS
from keyproxy.exchanges.coinbase_facts import (
    coinbase_contract_sizes,
    coinbase_facts,
    coinbase_market_ids,
    coinbase_market_names,
    coinbase_order_book_change,
    coinbase_prices,
)
from keyproxy.exchanges.coinbase_fills import (
    coinbase_amend_verdicts, coinbase_order_query_request, coinbase_order_updates, coinbase_reconcile_request,
    coinbase_reported_client_ids, coinbase_reports_client_ids, coinbase_stream_updates, coinbase_streamed_client_ids,
)
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

API_HOST = "api.coinbase.com"
JWT_LIFETIME_S = 120  # Coinbase: "Your JWT expires after 2 minutes"
CLOCK_SKEW_MS = 5000  # a bot's nbf may be this far ahead of keyproxy's clock
ISSUERS = frozenset({"cdp", "coinbase-cloud"})  # SDK and ccxt EdDSA: "cdp"; ccxt ES256: "coinbase-cloud"
ALG_FOR_KEY = {"ec": "ES256", "ed25519": "EdDSA"}
AUTH_HEADERS = ("authorization", "cb-access-key", "cb-access-sign", "cb-access-timestamp", "cb-access-passphrase")
PASSED_HEADERS = ("cb-version",)  # v2's API version pin, if the bot sets one

ENVIRONMENTS = (
    Environment("production", (("/api/v3/", "https://" + API_HOST), ("/v2/", "https://" + API_HOST),
                               # WebSockets: keyproxy's `/` and `/user` (websocket_origin_path)
                               ("/ws-market/", "wss://advanced-trade-ws.coinbase.com"),
                               ("/ws-user/", "wss://advanced-trade-ws-user.coinbase.com"))),
    # Advanced Trade's static sandbox: accounts and orders endpoints only, canned answers
    # (docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/sandbox)
    Environment("sandbox", (("/api/v3/brokerage/", "https://api-sandbox.coinbase.com"),)),
)

_OWN_HOSTS = frozenset(origin.split("://", 1)[1] for env in ENVIRONMENTS for _, origin in env.origins)


def _uri_host(ctx: SignContext) -> str:
    """The host the real JWT names: the Coinbase host it goes to; for a loopback emulator, the
    Coinbase host of the environment it plays (it checks the uri as Coinbase would)."""
    host = ctx.origin.split("://", 1)[-1].rstrip("/")
    if host in _OWN_HOSTS:
        return host
    return "api-sandbox.coinbase.com" if ctx.environment == "sandbox" else API_HOST


_SEGMENT = "[A-Za-z0-9_~:%+.-]+"  # one id segment; the proxy already refuses ., .., empty and encoded /


def _compile(entry: str) -> tuple[str, re.Pattern[str] | None, str]:
    method, template = entry.split(" ", 1)
    if "{" not in template:
        return method, None, template
    parts = re.split(r"\{[a-z_]+\}", template)
    return method, re.compile(_SEGMENT.join(re.escape(p) for p in parts)), template


EXACT: dict[tuple[str, str], Endpoint] = {}
PATTERNS: list[tuple[str, re.Pattern[str], Endpoint]] = []
for (_cls, _signed), _entries in ENDPOINT_GROUPS.items():
    for _entry in _entries:
        _method, _pattern, _template = _compile(_entry)
        _endpoint = Endpoint(EndpointClass(_cls), _entry, _signed)
        if _pattern is None:
            EXACT[(_method, _template)] = _endpoint
        else:
            PATTERNS.append((_method, _pattern, _endpoint))

_V2_TRANSACTIONS = re.compile(f"/v2/accounts/{_SEGMENT}/transactions")


# native_error: Advanced Trade's `error` and v2's `errors[].id` for each kind of refusal
_COINBASE_KINDS: dict[K, tuple[str, str]] = {
    K.AUTH: ("authentication_error", "authentication_error"),
    K.SIGNATURE: ("authentication_error", "authentication_error"), K.STALE: ("expired_token", "expired_token"),
    K.BAD_REQUEST: ("INVALID_ARGUMENT", "invalid_request"), K.UNKNOWN_ENDPOINT: ("PERMISSION_DENIED", "invalid_scope"),
    K.NOT_FOUND: ("not_found", "not_found"), K.DENIED: ("PERMISSION_DENIED", "invalid_scope"),
    K.PAUSED: ("PERMISSION_DENIED", "invalid_scope"), K.ORDER_REJECTED: ("INVALID_ARGUMENT", "invalid_request"),
    K.RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_exceeded"),
    K.UNAVAILABLE: ("rate_limit_exceeded", "rate_limit_exceeded"),  # nothing was sent: a retry is safe
    K.UPSTREAM_TIMEOUT: ("internal_server_error", "internal_server_error"),
    K.UPSTREAM_ERROR: ("internal_server_error", "internal_server_error"),
    K.INTERNAL: ("internal_server_error", "internal_server_error"),
}


class _Jwt:
    """A compact JWS split into its parts; raises ValueError when it is not one."""

    def __init__(self, token: str) -> None:
        parts = token.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError("a JWT has three non-empty dot-separated parts")
        self.header = _json_object(_sign.b64url_decode(parts[0]))
        self.claims = _json_object(_sign.b64url_decode(parts[1]))
        self.signature = _sign.b64url_decode(parts[2])
        self.signing_input = f"{parts[0]}.{parts[1]}".encode()


def _json_object(raw: bytes) -> dict[str, object]:
    """A JSON object whose member names are unique at every level (parsers disagree on duplicates)."""
    value = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_members, parse_constant=no_json_constants)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _bearer(req: IncomingRequest) -> str | None:
    value = req.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        return ""
    return token.strip()


def _int_claim(claims: dict[str, object], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"JWT claim {name!r} must be an integer (seconds)")
    return value


class Coinbase(AdapterHooks):
    order_id_keys = ("order_id",)  # the member of an order answer naming the exchange's order id
    fill_markets = frozenset({"spot"})  # coinbase_fills.py

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        return coinbase_order_updates(req.method, req.path, status, body)

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        return coinbase_amend_verdicts(body, legs)

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return coinbase_stream_updates(text)

    client_ids_answer_existing = True  # a create reusing a client_order_id is answered with the order holding it

    def reports_client_ids(self, path: str) -> bool:
        return coinbase_reports_client_ids(path)

    def reported_client_ids(self, out: OutboundRequest, status: int, body: bytes) -> tuple[Reported, ...]:
        return coinbase_reported_client_ids(out.method, out.path, status, body)

    def streamed_client_ids(self, text: str) -> tuple[Reported, ...]:
        return coinbase_streamed_client_ids(text)

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        return coinbase_reconcile_request(scope, since_ms)

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return coinbase_order_query_request(scope, order_id)
    # a read call that needs a valid key: `key rotate` checks a new key with it
    verify_request = ("GET", "/api/v3/brokerage/accounts", "", b"")
    name = "coinbase"
    time_path = "/api/v3/brokerage/time"  # public: `keyproxy doctor` reads the exchange's clock from it
    key_info_request = ("GET", "/api/v3/brokerage/key_permissions", "", b"")  # `key audit`: what the key may do
    needs_nonce = False
    environments = ENVIRONMENTS
    relayed_response_headers = ("content-type", "retry-after", "x-ratelimit-*")
    budgets = BUDGETS  # per second: the account's private requests, the IP's public ones (coinbase_budget.py)

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        endpoint = self.classify(req.method, req.path)
        return coinbase_costs(req.path, endpoint is not None and endpoint.cls is EndpointClass.PUBLIC)

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        return ((WS_CONNECTIONS, 1),)

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        return coinbase_rate_limit_hold(status, headers)

    def key_permissions(self, body: bytes) -> KeyPermissions:
        """What the key may do, from `key_info_request`'s answer."""
        doc = json_or_none(body)
        return KeyPermissions(trade=bool(doc.get("can_trade")), withdraw=bool(doc.get("can_transfer")),
                              transfer=bool(doc.get("can_transfer")), ip_restricted=None, expires_at=None)

    def server_time(self, body: bytes) -> float:
        doc = json.loads(body)
        return float(doc["epochMillis"]) / 1000 if "epochMillis" in doc else float(doc["epochSeconds"])

    def classify(self, method: str, path: str) -> Endpoint | None:
        exact = EXACT.get((method, path))
        if exact is not None:
            return exact
        for m, pattern, endpoint in PATTERNS:
            if m == method and pattern.fullmatch(path):
                return endpoint
        return None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        """`classify`, narrowed by the body where Coinbase's meaning depends on it.

        `POST /v2/accounts/{id}/transactions` is a withdrawal (`type: send`) unless the
        body provably asks for `type: transfer` between the user's own accounts: a
        UTF-8 JSON object with unique member names whose `type` is exactly "transfer",
        and no query string (which a server could merge into the parameters). Anything
        else, including bodies that cannot be parsed, keeps the withdraw class.
        The pipeline calls it once the body is read.
        """
        endpoint = self.classify(req.method, req.path)
        if endpoint is None or req.method != "POST" or not _V2_TRANSACTIONS.fullmatch(req.path):
            return endpoint
        try:
            body = _json_object(req.body)
        except (ValueError, UnicodeDecodeError):
            return endpoint
        if body.get("type") == "transfer" and req.query == "":
            return Endpoint(EndpointClass.TRANSFER, endpoint.name + " (type=transfer)", True)
        return endpoint

    def presented_key(self, req: IncomingRequest) -> str | None:
        """The JWT's `kid` (else `sub`), read without verifying; None when there is no readable JWT."""
        token = _bearer(req)
        return self.jwt_key(token) if token else None

    @staticmethod
    def jwt_key(token: str) -> str | None:
        """The key a JWT names (`kid`, else `sub`), read without verifying."""
        try:
            jwt = _Jwt(token)
        except (ValueError, UnicodeDecodeError):
            return None
        for value in (jwt.header.get("kid"), jwt.claims.get("sub")):
            if isinstance(value, str) and value:
                return value
        return None

    # --- drop-in verification ---------------------------------------------

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        token = _bearer(req)
        if token is None:
            if endpoint.signed:
                raise AuthFailure("bad_signature", "this endpoint needs an Authorization: Bearer JWT")
            return Verified(self.strip(req), replay_id="", expires_ms=0, proven=False)
        if token == "":
            raise BadRequest("Authorization must be 'Bearer <jwt>'")
        claims = self.verify_jwt(token, bot, now_ms)
        self._check_uri(claims, req)
        # the signing input, not the signature: an ECDSA signature has a second valid form (r, n-s)
        replay_id = f"{bot.key_id}:{_sign.sha256_hex(token.rpartition('.')[0].encode())}"
        return Verified(self.strip(req), replay_id=replay_id, expires_ms=_int_claim(claims, "exp") * 1000)

    @staticmethod
    def verify_jwt(token: str, bot: BotKey, now_ms: int) -> dict[str, object]:
        """A CDP JWT's signature by the bot's virtual key, its key names, issuer and lifetime; its claims."""
        try:
            jwt = _Jwt(token)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the bearer token is not a well-formed JWT") from None
        alg = jwt.header.get("alg")
        if not isinstance(alg, str):
            raise BadRequest("the JWT header has no 'alg'")
        if bot.key_type not in ALG_FOR_KEY or bot.public_key is None:
            raise AuthFailure("bad_signature", "this bot has no Coinbase (ec or ed25519) key")
        if alg != ALG_FOR_KEY[bot.key_type]:
            raise AuthFailure("bad_signature", f"a {bot.key_type} key signs {ALG_FOR_KEY[bot.key_type]}, not {alg}")
        if "crit" in jwt.header:
            raise BadRequest("the JWT header's 'crit' extensions are not supported")
        kid, sub = jwt.header.get("kid"), jwt.claims.get("sub")
        if kid is not None and kid != bot.key_id or sub != bot.key_id:
            raise AuthFailure("bad_signature", "the JWT's kid and sub must both name the virtual API key")
        if not _sign.jws_verify(bot.public_key, alg, jwt.signing_input, jwt.signature):
            raise AuthFailure("bad_signature", "JWT signature does not match the virtual key")
        if jwt.claims.get("iss") not in ISSUERS:
            raise AuthFailure("bad_signature", "the JWT issuer must be 'cdp'")
        nbf, exp = _int_claim(jwt.claims, "nbf"), _int_claim(jwt.claims, "exp")
        if not nbf < exp <= nbf + JWT_LIFETIME_S:
            raise BadRequest(f"JWT lifetime (exp - nbf) must be 1..{JWT_LIFETIME_S} seconds")
        if nbf * 1000 > now_ms + CLOCK_SKEW_MS:
            raise AuthFailure("stale_request", "JWT is not valid yet (nbf is in the future)")
        if now_ms >= exp * 1000:
            raise AuthFailure("stale_request", "JWT has expired")
        return jwt.claims

    @staticmethod
    def _check_uri(claims: dict[str, object], req: IncomingRequest) -> None:
        uris: list[object] = []
        if "uri" in claims:
            uris.append(claims["uri"])
        if "uris" in claims:
            listed = claims["uris"]
            if not isinstance(listed, list):
                raise BadRequest("JWT claim 'uris' must be a list")
            uris.extend(listed)
        if not uris or not all(isinstance(u, str) for u in uris):
            raise BadRequest("the JWT names no request (claim 'uri')")
        # (host, path prefix): the host compares case-insensitively, the path exactly
        named = [(API_HOST, "")]
        if req.host:
            named += [(req.host, req.mount), ("http://" + req.host, req.mount)]
        for uri in uris:
            assert isinstance(uri, str)
            method, _, rest = uri.partition(" ")
            if method != req.method or not any(rest[:len(host)].lower() == host.lower()
                                               and rest[len(host):] == prefix + req.path for host, prefix in named):
                raise AuthFailure("bad_signature", f"the JWT was made for {uri[:200]!r}, "
                                  f"not {req.method} {req.path[:200]}")

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        return req.replace(headers={k: v for k, v in req.headers.items() if k not in AUTH_HEADERS})

    # --- real signing ---------------------------------------------------------

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        headers = {name.title(): req.headers[name] for name in PASSED_HEADERS if name in req.headers}
        if req.body:
            headers["Content-Type"] = "application/json"
        if endpoint.cls is not EndpointClass.PUBLIC:
            headers["Authorization"] = "Bearer " + self.mint_jwt(key, f"{req.method} {_uri_host(ctx)}{req.path}",
                                                                 ctx.now_ms // 1000)
        return OutboundRequest(req.method, ctx.origin, req.path, req.query, headers, req.body)

    @staticmethod
    def mint_jwt(key: RealKey, uri: str | None, now_s: int, nonce: str | None = None) -> str:
        """A Coinbase REST JWT for `uri` ("METHOD host/path"), as coinbase-advanced-py's build_jwt makes it;
        with no `uri`, a WebSocket JWT (its build_ws_jwt)."""
        if key.private_key is None:
            raise ValueError("a Coinbase key needs its private_key (PEM)")
        pem = key.private_key.reveal()
        if not pem.lstrip().startswith(b"-----BEGIN"):
            # the CDP portal hands Ed25519 keys out as base64(seed ‖ public key)
            pem = _sign.ed25519_private_pem_from_raw(base64.b64decode(b"".join(pem.split()), validate=True))
        alg = _sign.jws_alg_for_private(pem)
        name = key.api_key.reveal_str()
        header = {"alg": alg, "kid": name, "nonce": nonce or secrets.token_hex(), "typ": "JWT"}
        claims: dict[str, object] = {"sub": name, "iss": "cdp", "nbf": now_s, "exp": now_s + JWT_LIFETIME_S}
        if uri is not None:
            claims["uri"] = uri
        signing_input = ".".join(_sign.b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        return signing_input + "." + _sign.b64url(_sign.jws_sign(pem, signing_input.encode()))

    # --- WebSockets ------------------------------------------------------------

    def websocket(self, path: str) -> Adapter | None:
        """`/` (advanced-trade-ws) and `/user` (advanced-trade-ws-user): each subscribe's JWT verified and
        re-minted with the real key (coinbase_ws.py)."""
        from keyproxy.exchanges.coinbase_ws import WS_PATHS, CoinbaseWsApi

        return CoinbaseWsApi(self) if path in WS_PATHS else None

    def websocket_origin_path(self, path: str) -> str:
        return "/ws-user/" if path == "/user" else "/ws-market/"

    def websocket_upstream_path(self, path: str) -> str:
        return "/"

    # --- credentials and errors ---------------------------------------------

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        """A virtual CDP key shaped like Coinbase's own: ccxt and coinbase-advanced-py take it unchanged.

        ec: key name "organizations/<uuid>/apiKeys/<uuid>", secret a SEC1 "EC PRIVATE KEY" PEM.
        ed25519: key id a UUID, secret base64(seed ‖ public key), 88 characters, as the CDP
        portal hands Ed25519 keys out (ccxt recognises them by that length).
        """
        if key_type == "ec":
            key_id = f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}"
            private_pem, public_pem = _sign.new_ec_keypair_sec1_pem()
            return IssuedBotKey({"api_key": key_id, "secret": private_pem.decode()},
                                BotKey(key_id, "ec", public_key=public_pem))
        if key_type == "ed25519":
            key_id = str(uuid.uuid4())
            seed, public_raw, public_pem = _sign.new_ed25519_raw_keypair()
            return IssuedBotKey({"api_key": key_id, "secret": base64.b64encode(seed + public_raw).decode()},
                                BotKey(key_id, "ed25519", public_key=public_pem))
        raise ValueError(f"coinbase bot keys are ec or ed25519, not {key_type}")

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """Coinbase: 401 Unauthorized (key unknown or revoked) refuses the key; 403 is a scope it lacks."""
        if status == 401:
            return KeyRejection.INVALID
        return KeyRejection.DENIED if status == 403 else None

    def native_error(self, code: str, message: str) -> dict[str, object]:
        """Advanced Trade's {error, error_details, message} plus v2's errors list, one pair per kind
        (base.RefusalKind).

        ccxt's coinbase.handle_errors reads `error` first and maps it exactly:
        authentication_error/expired_token -> AuthenticationError, PERMISSION_DENIED ->
        PermissionDenied, INVALID_ARGUMENT -> BadRequest (also an order keyproxy's limits refuse: never
        retried), rate_limit_exceeded -> RateLimitExceeded (also "nothing was sent, retry"),
        internal_server_error -> ExchangeError (never retried).
        coinbase-advanced-py raises HTTPError on any 4xx/5xx with this body in the text.
        """
        v3, v2 = _COINBASE_KINDS[refusal_kind(code)]
        details = "Missing required scopes" if code == "scope_denied" else message
        return {"error": v3, "error_details": details, "message": message,
                "errors": [{"id": v2, "message": message}]}

    def refusal_status(self, code: str, status: int) -> int:
        return status

    # --- request facts for policy -------------------------------------------

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return coinbase_facts(req, endpoint)

    # every spot product's order book (BTC-USDC trades on BTC-USD's): fetched before an order naming one it lacks
    market_list_requests = (("GET", "/api/v3/brokerage/market/products", "product_type=SPOT", b""),)
    reports_need_market_lists = True  # an order on BTC-USDC is reported under either product

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        return coinbase_market_ids(req)

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        return coinbase_market_names(path, body)

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return coinbase_prices(path, body)

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """`GET /api/v3/brokerage/market/products`: every product's price (the order's product id, with its
        dashes, is not kept in its facts; one answer serves every later order)."""
        return ("GET", "/api/v3/brokerage/market/products", "", b"") if leg.symbol else None

    def contract_sizes(self, path: str, body: bytes) -> dict[str, Decimal]:
        return coinbase_contract_sizes(path, body)

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        return coinbase_order_book_change(req.method, req.path, req.query, status, body, facts)
