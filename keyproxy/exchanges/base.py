"""The one interface every exchange adapter implements, and the values it trades in.

Adapters are sans-I/O: a request comes in as a value, a signed request goes
out as a value. Time and nonces are arguments, so tests pass a fixed clock.
Refusals are `AuthFailure`/`BadRequest` with a stable code that the proxy
renders; adapters never build HTTP responses.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_plus

from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts
from keyproxy.secret import Secret


class EndpointClass(StrEnum):
    PUBLIC = "public"
    READ = "read"
    TRADE = "trade"
    WITHDRAW = "withdraw"
    TRANSFER = "transfer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Endpoint:
    cls: EndpointClass
    name: str
    signed: bool = True  # does the exchange want a signature (False: public or key-only)


NO_MARKETS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """What the bot sent, below the `/<account>` prefix, exactly as on the wire.

    `path` and `query` keep their percent-encoding (signatures are computed
    over the wire form); `headers` has lower-case names.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes = b""
    host: str = ""  # the Host the bot addressed (keyproxy's listener), for signatures that name it
    mount: str = ""  # the "/<account>" prefix the bot's base URL carries, likewise
    # the account's market ids the exchange published (`#<id>` -> name), for facts of requests that name a
    # market by id (OKX's instIdCode); the core attaches them before policy
    markets: Mapping[str, str] = field(default_factory=lambda: NO_MARKETS)

    def replace(self, **changes: Any) -> IncomingRequest:
        """A copy with `changes` (dataclasses.replace's meaning at a third of its cost: every signed request
        is rebuilt once or twice)."""
        if not changes.keys() <= _REQUEST_FIELDS:
            raise TypeError(f"IncomingRequest has no field {sorted(changes.keys() - _REQUEST_FIELDS)[0]!r}")
        get = changes.get
        return IncomingRequest(get("method", self.method), get("path", self.path), get("query", self.query),
                               get("headers", self.headers), get("body", self.body), get("host", self.host),
                               get("mount", self.mount), get("markets", self.markets))


_REQUEST_FIELDS = frozenset(f.name for f in fields(IncomingRequest))


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """A signed request for the exchange. `origin` always comes from the adapter's host table."""

    method: str
    origin: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def url(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")


@dataclass(frozen=True, slots=True)
class BotKey:
    """A bot's virtual credential as keyproxy holds it (drop-in mode)."""

    key_id: str
    key_type: str  # hmac | ed25519 | rsa | ec
    secret: Secret | None = None  # hmac: the shared secret (kept sealed at rest)
    public_key: bytes | None = None  # asymmetric: PEM public key; keyproxy keeps no private half
    passphrase: Secret | None = None  # exchanges that also want a passphrase (OKX)


@dataclass(frozen=True, slots=True)
class RealKey:
    """The real exchange credential, opened from the vault for one signing."""

    key_type: str
    api_key: Secret
    secret: Secret | None = None
    passphrase: Secret | None = None
    private_key: Secret | None = None


@dataclass(frozen=True, slots=True)
class Verified:
    """A bot request whose signature checked out, with its auth removed."""

    request: IncomingRequest
    replay_id: str  # unique per signed request: a second arrival is a replay
    expires_ms: int  # after this the exchange itself would refuse it; forget the replay id
    sequence: int | None = None  # exchanges whose freshness is a per-key increasing nonce (Kraken)
    # remembered as seen without being checked: a read's parameters, so that a signature which does not bind
    # the path (Binance, Bybit) cannot be replayed as a write with the same parameters
    also_seen: str = ""
    # False when nothing was signed (a key-only endpoint: the key id alone, which is no secret): the request is
    # served as the bot's, as the exchange would, but proves nothing of the bot (no heartbeat, no anomaly finding
    # acts on it: session 26's review)
    proven: bool = True


@dataclass(frozen=True, slots=True)
class SignContext:
    """Everything besides the request and the key that signing needs; all decided by keyproxy."""

    origin: str  # from the environment's host table, never from the request
    environment: str  # production | testnet | demo | loopback
    now_ms: int
    nonce: int | None = None  # keyproxy's own sequence for the real key, when `needs_nonce`
    stream_token: str | None = None  # the exchange's bearer token for a WebSocket frame (Kraken), never a bot's


class AuthFailure(Exception):
    """The bot's authentication failed: code is unknown_bot|bad_signature|stale_request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadRequest(Exception):
    """The request is malformed for this exchange (400 bad_request)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownEndpoint(BadRequest):
    """The body names an operation keyproxy does not know (Hyperliquid's action type): 400 unknown_endpoint."""


class KeyRejection(StrEnum):
    """What an exchange's refusal says about the real key."""

    INVALID = "invalid"  # the key is invalid, expired, revoked or IP-restricted: no request can use it
    DENIED = "denied"  # the key may not do this one thing (a permission it lacks): the bot's miss, not the key's


# how keyproxy writes a conditional (algo) order's id (`algo#<algoId>`; Binance's `algo#<clientAlgoId>` too): never an
# order id or a client id of the matching engine (`#` is in neither's alphabet), so no book or record takes one for
# the other (Binance's and OKX's algo orders are numbered apart from their orders)
ALGO = "algo#"


# an order a read or stream event reports with its client id: (order id, scope, client id, when the exchange made it,
# epoch seconds, None where it does not say) (`Adapter.reported_client_ids`)
Reported = tuple[str, str, str, float | None]


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One order as the exchange answered it (an order, cancel or query answer, a user-stream event):
    the positions book (proxy/positions.py) believes fills only from these. `filled` and `filled_quote`
    are cumulative, so seeing one answer twice, or an older one late, never counts a fill twice."""

    order_id: str
    scope: str  # `market:symbol`, as RequestFacts.scope; "" when the exchange names the market its own way
    side: str  # "buy" | "sell" ("" unknown: the order keyproxy saw placed says)
    price: Decimal | None  # the limit price (None: market)
    quantity: Decimal | None  # what the order asks for
    filled: Decimal  # executed so far
    filled_quote: Decimal  # quote currency paid or received so far
    final: bool  # filled, cancelled, expired or rejected: it rests no longer
    # the exchange id of the order this one became when triggered (a Binance algo order's `actualOrderId`): the
    # placing bot's, followed in the book from then on
    spawned: str = ""
    # when the exchange created the order (epoch seconds, its clock), where its reports say (Coinbase): an order
    # created before the request that "placed" it was decided is one the exchange answered a reused client id with
    created: float | None = None

    def with_order_id(self, order_id: str) -> OrderUpdate:
        """The same update under another id (the book's key for it), without dataclasses.replace's cost."""
        return OrderUpdate(order_id, self.scope, self.side, self.price, self.quantity, self.filled,
                           self.filled_quote, self.final, self.spawned, self.created)


@dataclass(frozen=True, slots=True)
class OrderBookChange:
    """What an exchange's answer confirms about the bot's open orders, by scope (`RequestFacts.scope`).

    Only what the exchange confirmed counts: an order it accepted and left resting opens one, a cancel
    it confirmed closes one, a query covering exactly one scope sets that scope's count.
    """

    opened: tuple[str, ...] = ()  # one scope per order confirmed resting
    # one scope per order confirmed cancelled; `market:*` when the answer does not say which symbol
    closed: tuple[str, ...] = ()
    counted: tuple[tuple[str, int], ...] = ()  # (scope, exact count) from a query of exactly that scope
    # markets whose every scope the answer covers (a cancel-all, an all-symbols query): set to 0 first,
    # then `counted` sets what the answer listed
    reset: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IssuedBotKey:
    """A new virtual credential: what the bot gets once, and what keyproxy keeps."""

    shown: dict[str, str]  # printed to the operator once: api_key, secret / private_key ...
    kept: BotKey


@dataclass(frozen=True, slots=True)
class Environment:
    """One set of upstream origins (production, testnet, ...) by path prefix."""

    name: str
    origins: tuple[tuple[str, str], ...]  # (path prefix, origin), longest prefix first

    def origin_for(self, path: str) -> str | None:
        for prefix, origin in self.origins:
            if path.startswith(prefix):
                return origin
        return None

    @property
    def all_origins(self) -> frozenset[str]:
        return frozenset(o for _, o in self.origins)


class Adapter(Protocol):
    """One exchange. Every method is pure; see binance.py for the reference implementation."""

    name: str
    environments: tuple[Environment, ...]
    relayed_response_headers: tuple[str, ...]  # lower-case names or prefixes ending in '*'
    needs_nonce: bool  # True: keyproxy owns one increasing nonce sequence per real key (Kraken)

    def classify(self, method: str, path: str) -> Endpoint | None:
        """The endpoint's class, or None when unknown (the proxy then refuses)."""

    def presented_key(self, req: IncomingRequest) -> str | None:
        """The virtual key id a drop-in bot put where the exchange expects its key."""

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        """Check the bot's own signature and freshness; raise AuthFailure or BadRequest."""

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        """Remove any exchange auth a token-mode bot sent."""

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        """The request signed with the real key, exactly as the exchange wants it.

        `ctx.nonce` is given (from keyproxy's persistent, strictly increasing
        sequence for this real key) when the adapter's `needs_nonce` is True.
        Raise BadRequest for what the environment forbids (e.g. a demo-trading
        header sent to a production account).
        """

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        """A fresh virtual credential of `key_type` for a drop-in bot."""

    def native_error(self, code: str, message: str) -> dict[str, object]:
        """Extra fields in the exchange's own error shape, so SDKs raise what they know."""

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        """What the request would do, for policy: action (order | cancel | leverage | withdraw | other,
        or None when it may place orders in a shape the adapter cannot read), symbol, side, quantity,
        price, quote quantity, leverage, reduce-only, withdrawal asset/address/network/amount.
        Raise BadRequest for malformed values."""

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        """Last prices (by normalized symbol) from a public answer that passed through, else {}."""

    def refusal_status(self, code: str, status: int) -> int:
        """The HTTP status to answer a refusal with (Kraken answers errors with 200)."""

    # optional hooks, with their defaults in AdapterHooks (hooks.py)
    def warm(self) -> None: ...

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]: ...

    def budget_path(self, req: IncomingRequest) -> str: ...

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]: ...

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None: ...

    def public_ttl(self, method: str, path: str) -> float: ...

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None: ...

    def presented_keys(self, req: IncomingRequest) -> Iterable[str]: ...

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]: ...

    def market_names(self, path: str, body: bytes) -> dict[str, str]: ...

    def classify_request(self, req: IncomingRequest) -> Endpoint | None: ...

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None: ...

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange: ...

    def placed_order_ids(self, status: int, body: bytes) -> tuple[str, ...]: ...

    def placed_client_ids(self, status: int, body: bytes) -> tuple[str, ...]: ...

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]: ...

    amend_size_is_remaining: bool
    amend_may_turn: bool
    amend_replaces: bool
    amend_sets_reduce_only: bool
    order_ids_per_market: bool
    stream_markets: Mapping[str, tuple[str, ...]]
    spawning_markets: frozenset[str]

    def settled_answer(self, req: OutboundRequest, status: int, body: bytes) -> tuple[int, bytes]: ...

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]: ...

    def id_per_market(self, order_id: str) -> bool: ...

    def client_id_forms(self, client_id: str) -> tuple[str, ...]: ...

    def cancelled_client_ids(self, req: OutboundRequest, status: int, body: bytes) -> tuple[str, ...]: ...

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]: ...

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]: ...

    client_ids_answer_existing: bool
    listings_set_counts: bool

    def reports_client_ids(self, path: str) -> bool: ...

    def reported_client_ids(self, out: OutboundRequest, status: int, body: bytes) -> tuple[Reported, ...]: ...

    def streamed_client_ids(self, text: str) -> tuple[Reported, ...]: ...

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None: ...

    def conditional_reconcile_request(self, scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None: ...

    conditional_count_scopes: tuple[str, ...]

    def resting_client_ids(self, out: OutboundRequest, status: int, body: bytes
                           ) -> tuple[tuple[str, str, str], ...]: ...

    def conditional_count_listings(self, scope: str) -> list[tuple[str, str, str, bytes]]: ...

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None: ...

    def contract_sizes(self, path: str, body: bytes) -> dict[str, Decimal]: ...

    def websocket(self, path: str) -> Adapter | None: ...

    def relays_websocket(self, path: str) -> bool: ...

    def private_stream_origin_path(self, path: str, issued_by: str) -> str: ...

    def names_private_stream(self, text: str) -> bool: ...

    def listen_keys(self, path: str, body: bytes) -> tuple[str, ...]: ...

    def retired(self, method: str, path: str) -> str | None: ...

    def presented_stream_token(self, req: IncomingRequest) -> str | None: ...

    def named_stream_token(self, req: IncomingRequest) -> str | None: ...

    def websocket_origin_path(self, path: str) -> str: ...

    def stream_listen_key(self, path: str, query: str) -> str | None: ...

    def websocket_upstream_path(self, path: str) -> str: ...

    def grants_stream_token(self, path: str) -> bool: ...

    def stream_close_answer(self, method: str, path: str) -> bytes | None: ...

    def unsignable(self, req: IncomingRequest, key: RealKey) -> str | None: ...

    def virtual_stream_token(self) -> str: ...

    def swap_stream_token(self, body: bytes, mint: Callable[[str], str]) -> bytes: ...


def order_ids_in(doc: object, keys: tuple[str, ...], depth: int = 6) -> tuple[str, ...]:
    """Every non-empty string or integer value of a member named in `keys` (or list of them), in document order
    level by level, at most `depth` levels down and 1000 ids."""
    found: list[str] = []
    todo: deque[tuple[object, int]] = deque([(doc, 0)])
    while todo and len(found) < 1000:
        node, level = todo.popleft()
        if isinstance(node, dict):
            for name, value in node.items():
                if name in keys:
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) not in ("", "0"):
                            found.append(str(v))
                elif level < depth and isinstance(value, (dict, list)):
                    todo.append((value, level + 1))
        elif isinstance(node, list) and level < depth:
            todo.extend((item, level + 1) for item in node)
    return tuple(dict.fromkeys(found))


def leg_order_ids(items: object, key: str, took: Callable[[dict[str, Any]], bool] = lambda item: True
                  ) -> tuple[str, ...]:
    """One id per item of an answer that lists a batch's legs in the request's order: "" where the exchange
    refused the leg (or named no id), so no id slides onto another leg's order."""
    out = []
    for item in items[:1000] if isinstance(items, list) else []:
        value = item.get(key) if isinstance(item, dict) else None
        ok = isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) not in ("", "0")
        out.append(str(value) if ok and took(item) else "")  # type: ignore[arg-type]
    return tuple(out)


# `ws_answer`'s key for an answer that names no frame (Coinbase's): it settles the oldest frame waiting
OLDEST_PENDING: object = object()


class RefusalKind(Enum):
    """What a refusal means to the bot's SDK. Each exchange answers each kind in one native shape (its
    `native_error`), so two refusals of one kind can never drift into different exceptions in the bot."""

    AUTH = "auth"  # the bot's key is unknown or no longer valid: the SDK's authentication error
    SIGNATURE = "signature"  # the signature does not verify, or the request was seen before
    STALE = "stale"  # the timestamp or nonce is outside the window (SDKs re-sign and retry some)
    BAD_REQUEST = "bad_request"  # malformed, too large, too slow to arrive
    UNKNOWN_ENDPOINT = "unknown_endpoint"
    NOT_FOUND = "not_found"  # an account keyproxy does not hold
    DENIED = "denied"  # the bot may not do this (scope, address, source, suspension, quarantine, withdrawal cap)
    PAUSED = "paused"  # orders are refused for now (a halt, the bot's active hours)
    ORDER_REJECTED = "order_rejected"  # the order breaks a trading limit or a risk control
    RATE_LIMITED = "rate_limited"  # the bot's rate, or the exchange's own budget keyproxy keeps
    UNAVAILABLE = "unavailable"  # nothing was sent and a retry is safe (audit trail, shared state, capacity)
    UPSTREAM_TIMEOUT = "upstream_timeout"  # sent, no answer in time: the order's fate is unknown
    UPSTREAM_ERROR = "upstream_error"
    INTERNAL = "internal"


_KINDS: dict[RefusalKind, tuple[str, ...]] = {
    RefusalKind.AUTH: ("unknown_bot", "expired_credential"),
    RefusalKind.SIGNATURE: ("bad_signature", "replayed_request"),
    RefusalKind.STALE: ("stale_request",),
    RefusalKind.BAD_REQUEST: ("bad_request", "body_too_large", "request_timeout"),
    RefusalKind.UNKNOWN_ENDPOINT: ("unknown_endpoint",),
    RefusalKind.NOT_FOUND: ("unknown_account",),
    RefusalKind.DENIED: ("scope_denied", "address_denied", "withdrawal_limit", "policy_denied", "bot_suspended",
                         "key_quarantined", "ip_denied", "host_denied", "browser_denied"),
    RefusalKind.PAUSED: ("halted", "outside_hours"),
    RefusalKind.ORDER_REJECTED: ("symbol_denied", "notional_exceeded", "notional_unknown", "open_orders_exceeded",
                                 "daily_notional_exceeded", "leverage_exceeded", "reduce_only", "price_out_of_band",
                                 "reference_unavailable", "duplicate_order", "position_exceeded", "loss_limit",
                                 "self_cross"),
    RefusalKind.RATE_LIMITED: ("rate_limited", "budget_exhausted"),
    RefusalKind.UNAVAILABLE: ("unavailable", "audit_unavailable", "shared_state_unavailable"),
    RefusalKind.UPSTREAM_TIMEOUT: ("upstream_timeout",),
    RefusalKind.UPSTREAM_ERROR: ("upstream_error",),
    RefusalKind.INTERNAL: ("internal_error",),
}
# every refusal code (proxy/refusal.py STATUS; a test keeps the two in step) -> its kind
REFUSAL_KINDS: Mapping[str, RefusalKind] = {code: kind for kind, codes in _KINDS.items() for code in codes}


def refusal_kind(code: str) -> RefusalKind:
    return REFUSAL_KINDS.get(code, RefusalKind.INTERNAL)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where an account's requests go: an environment of the adapter, or one loopback emulator."""

    environment: Environment
    insecure_loopback: bool = False

    def origin_for(self, path: str) -> str | None:
        return self.environment.origin_for(path)


def resolve_upstream(adapter: Adapter, base_url: str | None, insecure: bool,
                     environment: str | None = None) -> Upstream:
    """Pick the host table for an account. Only the adapter's own origins, or an explicit loopback emulator.

    `environment` names one of the adapter's environments (production, testnet,
    demo); a loopback `base_url` keeps that name, so an emulator can play the
    demo environment too.
    """
    names = [env.name for env in adapter.environments]
    if environment is not None and environment not in names:
        raise ValueError(f"{adapter.name} has no {environment!r} environment ({', '.join(names)})")
    if base_url is None:
        return Upstream(adapter.environments[names.index(environment or names[0])])
    for env in adapter.environments:
        if base_url in env.all_origins and environment in (None, env.name):
            return Upstream(env)
    if insecure and base_url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        prefixes = tuple(dict.fromkeys(p for env in adapter.environments for p, _ in env.origins))
        return Upstream(Environment(environment or "loopback", tuple((p, base_url) for p in prefixes)),
                        insecure_loopback=True)
    known = sorted(o for env in adapter.environments for o in env.all_origins)
    raise ValueError(f"{base_url} is not one of {adapter.name}'s hosts ({', '.join(known)})")


@dataclass
class ParamList:
    """An ordered `k=v&k=v` string kept byte-exact, so what was signed is what is sent."""

    pairs: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> ParamList:
        return cls([p for p in text.split("&") if p != ""]) if text else cls()

    def names(self) -> list[str]:
        return [p.split("=", 1)[0] for p in self.pairs]

    def get(self, name: str) -> str | None:
        for p in self.pairs:
            k, _, v = p.partition("=")
            if k == name:
                return unquote_plus(v)
        return None

    def without(self, name: str) -> ParamList:
        return ParamList([p for p in self.pairs if p.partition("=")[0] != name])

    def count(self, name: str) -> int:
        return sum(1 for p in self.pairs if p.partition("=")[0] == name)

    def render(self) -> str:
        return "&".join(self.pairs)


def amount(value: object, name: str = "") -> Decimal | None:
    """A non-negative finite decimal from a parameter (string or JSON number); None when absent.

    Shared by every adapter's `facts()`: NaN, infinities, negatives, booleans and
    non-numbers are BadRequest, never a silently skipped limit.
    """
    if value is None or value == "":
        return None
    label = f"{name} " if name else ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRequest(f"{label}is not a number".strip())
    text = str(value)
    if len(text) > MAX_NUMBER_CHARS:
        raise BadRequest(f"{label}{text[:30]!r}... is longer than {MAX_NUMBER_CHARS} characters")
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"{label}{text[:30]!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise BadRequest(f"{label}{text[:30]!r} is not a non-negative number")
    if d and not -MAX_EXPONENT <= d.adjusted() <= MAX_EXPONENT:
        # 1e999999999 is a valid Decimal whose products overflow the context: bounded here, at parse time
        raise BadRequest(f"{label}{text[:30]!r} is out of range")
    return d


def whole_listing(query: str, names: Iterable[str]) -> bool:
    """Whether an open-orders listing's query names only `names`, each once: a filter (or a name given twice, which
    the exchange may read either way) makes the answer a part of the scope's orders, which sets no count (session
    27's review: an empty filtered listing set a bot's count to 0 and let it rest past its cap)."""
    given = [k for k, _ in parse_qsl(query, keep_blank_values=True)]
    return set(given) <= set(names) and len(given) == len(set(given))


def published(value: object) -> Decimal | None:
    """A positive finite number an exchange published (a last price, a contract size), else None. Public
    answers are read, never judged: nothing here raises."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(value)) > MAX_NUMBER_CHARS:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number > 0 else None


# No order, price or amount on any exchange needs more: bounds that keep every product finite
MAX_NUMBER_CHARS = 64
MAX_EXPONENT = 30


def param_text(params: Mapping[str, object], name: str) -> str | None:
    """A parameter as text (form value or JSON scalar); None when absent; BadRequest for objects and booleans."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest(f"parameter {name!r} is not a string or number")
    return str(value)


def param_true(params: Mapping[str, object], name: str) -> bool:
    """A flag that counts only when it is JSON true or the text "true"."""
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() == "true")


class DuplicateMember(ValueError):
    """A JSON object names a member twice: parsers disagree on which value wins, so keyproxy refuses it."""


def unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """`json.loads` object_pairs_hook shared by every adapter: an object whose member names are unique, in any case
    (`sz` beside `SZ`: keyproxy reads one, an exchange whose reader matches names regardless of case, as Go's
    encoding/json does, may read the other: session 34's review)."""
    members = dict(pairs)
    if len(members) == len(pairs) and (len(pairs) < 2 or len({k.casefold() for k in members}) == len(pairs)):
        return members  # the usual case, decided without counting (this runs for every object)
    counts = Counter(k.casefold() for k, _ in pairs)  # casefold: `ſz` folds to `sz` as Go's folding does
    repeated = next(k for k, _ in pairs if counts[k.casefold()] > 1)
    raise DuplicateMember(f"parameter {repeated[:40]!r} is given more than once (names are compared in any case)")


def known_members(frame: dict[str, object], allowed: frozenset[str]) -> None:
    """A WebSocket frame whose top-level members are the exchange's documented ones: another is refused, never sent
    on (a reader that matches names regardless of case, or one that reads a member keyproxy ignores, must not see
    an op keyproxy did not decide)."""
    for name in frame:
        if name not in allowed:
            raise BadRequest(f"a request frame has no member {name[:40]!r} (it takes {', '.join(sorted(allowed))})")


def no_json_constants(name: str) -> object:
    """`json.loads` parse_constant hook: NaN and Infinity are Python's extensions, not JSON."""
    raise ValueError(f"{name} is not JSON")


def no_lone_surrogates(raw: bytes | str, frame: Any) -> None:
    """BadRequest if a string of the parsed frame holds a lone surrogate (looked for only where the frame's text
    escapes one at all: most frames pay one regex search)."""
    if _SURROGATE_ESCAPE.search(raw if isinstance(raw, str) else raw.decode("utf-8", "replace")):
        try:
            fine = _encodable(frame)
        except RecursionError:
            fine = False
        if not fine:
            raise BadRequest("a frame's string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is no "
                             "character")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    """Every string of the parsed frame (member names too) encodes as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


_HIGH, _LOW = r"\\u[dD][89abAB][0-9a-fA-F]{2}", r"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(rf"{_HIGH}(?!{_LOW})|(?<!{_HIGH}){_LOW}")


def text_problem(raw: bytes | str) -> str | None:
    """Why a bot's request body or query is no text every step can carry (None: it is): bytes that are not UTF-8
    (a raw surrogate, UTF-16), or a JSON escape of a lone UTF-16 surrogate, as written or percent-encoded (a
    `\\ud800` read into a client id passed the decision and failed to be stored: an internal error, session 36's
    regression review). An escaped surrogate pair (a character) passes."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return "the request body is not UTF-8"
    if "\\" not in text and "%5c" not in text and "%5C" not in text:  # no backslash, as written or percent-encoded
        return None
    if _LONE_SURROGATE.search(text) or "%" in text and _LONE_SURROGATE.search(unquote_plus(text)):
        return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is no character"
    return None
