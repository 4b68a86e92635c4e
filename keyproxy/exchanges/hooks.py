"""`AdapterHooks`: the defaults of `Adapter`'s optional hooks (base.py declares them all), which every adapter
inherits: the core calls each hook directly, and a hook an adapter does not override is the safe default."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import (
    Adapter, BadRequest, Endpoint, IncomingRequest, KeyRejection, OrderBookChange, OrderUpdate, OutboundRequest,
    RealKey, no_lone_surrogates, order_ids_in,
)
from keyproxy.exchanges.base import Reported
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts


class AdapterHooks:
    """Defaults for the optional hooks of `Adapter`: every adapter inherits them, so the pipeline calls each
    hook directly (no `getattr`) and a missing one is the safe default, never a skipped check."""

    needs_nonce: bool = False
    nonce_in_ms: bool = False  # keyproxy's nonce sequence for the key counts ms, not µs (Hyperliquid)
    # whether requests carrying keyproxy's nonces must reach the exchange in nonce order (Kraken: each must
    # exceed the last), so they go one at a time per account; Hyperliquid accepts any unseen nonce above
    # the smallest of the signer's 100 highest, so its requests need no turn
    ordered_nonces: bool = True
    budgets: tuple[Budget, ...] = ()  # the exchange's own rate budgets keyproxy models (`costs` charges them)
    # the revoke_key anomaly action's call: (method, path, body) that deletes the signing key at the exchange;
    # None: the exchange offers no such call (the key is quarantined only)
    revoke_request: tuple[str, str, bytes] | None = None
    # account tiers ("[governor.tiers] account = tier") -> the budgets that differ for an account of that tier
    budget_tiers: Mapping[str, tuple[Budget, ...]] = {}
    # keyproxy's own public calls whose answers name the markets a request refers to by id (`market_ids`)
    market_list_requests: tuple[tuple[str, str, str, bytes], ...] = ()
    # its reports name an order's market in a way only those lists map to the book it was booked on (Coinbase's
    # BTC-USDC order reported under BTC-USDC or BTC-USD): the lists are fetched before reconciliation reads one
    reports_need_market_lists = False
    # the markets (`RequestFacts.market`) whose fills and ends of orders `order_updates` reads: only their
    # orders enter the positions book (an order whose end keyproxy could never learn would rest forever)
    fill_markets: frozenset[str] = frozenset()
    # the markets where a triggered conditional order becomes an order of its own, under a new id, that only a read
    # shows keyproxy (Binance futures, OKX): an order named by an id of no owner there may be another bot's stop's
    spawning_markets: frozenset[str] = frozenset()
    # the `code` an answer about one order carries when the exchange holds no such order (`order_query_request`)
    order_not_found_codes: frozenset[str] = frozenset()
    reconciles_by_owner = False  # the reconciliation read names the account (its key's public id), not a market
    time_path: str | None = None  # the exchange's public time endpoint (`keyproxy doctor`'s clock-skew check)
    # the exchange's key-info endpoint (method, path, query, body), read by `key_permissions` (`key audit`)
    key_info_request: tuple[str, str, str, bytes] | None = None

    def key_permissions(self, body: bytes) -> Any:
        """`KeyPermissions` (exchanges/permissions.py) from `key_info_request`'s answer."""
        raise ValueError(f"no key-info reader for {getattr(self, 'name', '?')}")

    def server_time(self, body: bytes) -> float:
        """The exchange's clock in Unix seconds, from `time_path`'s answer (ValueError when unreadable)."""
        raise ValueError(f"no clock reader for {getattr(self, 'name', '?')}")

    def warm(self) -> None:
        """Load what signing needs before the first request (the daemon calls it for the exchanges it serves)."""

    def reference_request(self, leg: RequestFacts) -> tuple[str, str, str, bytes] | None:
        """keyproxy's own public call (method, path, query, body) whose answer `prices` reads the order's
        reference price from (price bands, docs/risk.md); None: this exchange offers keyproxy none."""
        return None

    def public_ttl(self, method: str, path: str) -> float:
        """Seconds an answer to this public request may be shared with every bot (0: never). Market lists
        only: an order book or a price must be the exchange's own answer at the time it is asked."""
        return 0.0

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        """What the request (or WebSocket frame) costs against each of the exchange's own rate budgets
        (policy/budget.py); () for none keyproxy models."""
        return ()

    def budget_path(self, req: IncomingRequest) -> str:
        """The path whose per-endpoint budgets the request spends (default its own): a batch may spend its single
        twin's, a WebSocket op the REST endpoint it mirrors, when the exchange counts them together."""
        return req.path

    def connection_costs(self, path: str) -> tuple[tuple[Budget, int], ...]:
        """What opening a WebSocket to this path costs against the exchange's budgets (connections per IP);
        () for none keyproxy models."""
        return ()

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        """When the answer is the exchange refusing for rate: the seconds to send nothing on the request's
        budgets, and the one budget it named (None: all of them); else None. `headers` lower-case; `body`
        None for an answer too large to buffer. HTTP 429 and 418 (Binance's IP ban) hold for their
        Retry-After, a minute without one."""
        if status not in (418, 429):
            return None
        try:
            return max(1.0, float(headers.get("retry-after", ""))), None
        except ValueError:
            return 60.0, None

    def presented_keys(self, req: IncomingRequest) -> Iterable[str]:
        """Every virtual key id the request may present, in order, first match wins (Hyperliquid: the address
        that signed, recovered for one network the bot may have signed for, then the other, as asked)."""
        key = self.presented_key(req)  # type: ignore[attr-defined]
        return (key,) if key is not None else ()

    def market_ids(self, req: IncomingRequest) -> tuple[str, ...]:
        """Markets the request names by the exchange's id (`#<asset>`, Hyperliquid): the core maps each to
        the name the exchange published (`market_names`) before policy; an unmapped one is refused."""
        return ()

    def market_names(self, path: str, body: bytes) -> dict[str, str]:
        """Market id (`#<asset>`) -> name, from a public answer that lists markets, else {}."""
        return {}

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        """A class that depends on the body (Coinbase v2 sends, Hyperliquid actions); None keeps `classify`'s
        answer. Raise UnknownEndpoint for an operation keyproxy does not know, BadRequest when unreadable."""
        return None

    def key_rejected(self, status: int, body: bytes, method: str = "", path: str = "") -> KeyRejection | None:
        """Whether the exchange's answer refuses the real key (INVALID) or one permission of it (DENIED)."""
        return None

    def order_updates(self, req: OutboundRequest, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
        """Every order a 2xx answer reports with its cumulative fill (positions, docs/risk.md); () when the
        exchange's answers are not read for fills yet."""
        return ()

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        """Order updates in an event the exchange pushed on a private WebSocket (a fill, a cancel)."""
        return ()

    # the exchange answers a create reusing a client id with the order holding it (Coinbase) rather than refusing it:
    # keyproxy records a bot's client ids from its decision on, and those of orders placed outside it (order_owners.py)
    client_ids_answer_existing = False
    # a private open-orders listing sets the bot's counts (`order_book_change`'s `counted`/`reset`): an order of unknown
    # fate may then be counted open until one does (`CoreAnswers.fate_unknown`); where none does (Hyperliquid's are
    # public `/info` reads) it counts on its way only, till it lapses
    listings_set_counts = True

    def reports_client_ids(self, path: str) -> bool:
        """Whether an answer to `path` may report orders' client ids (`reported_client_ids`): keyproxy reads it
        before the bot sees it, and never relays one too large to read."""
        return False

    def reported_client_ids(self, out: OutboundRequest, status: int, body: bytes) -> tuple[Reported, ...]:
        """(order id, scope, client id) of every order a read's answer reports, where the exchange answers a create
        reusing a client id with the order holding it (Coinbase): one of no bot's is then recorded as placed outside
        keyproxy, and no bot places under it (`OrderOwners.learn_outside`). Default: none (the exchange refuses a
        client id in use)."""
        return ()

    def streamed_client_ids(self, text: str) -> tuple[Reported, ...]:
        """The same of the orders an event pushed on a private WebSocket reports."""
        return ()

    def reconcile_request(self, scope: str, since_ms: int, owner: str = "") -> tuple[str, str, str, bytes] | None:
        """keyproxy's own signed read (method, path, query, body) whose answer `order_updates` reads: every
        order of `scope` since `since_ms`, for settling fills keyproxy did not see. `owner`: the account's
        public identity when `reconciles_by_owner` (Hyperliquid's master address). None: not offered."""
        return None

    def conditional_reconcile_request(self, scope: str, since_ms: int) -> tuple[str, str, str, bytes] | None:
        """The same for the scope's conditional orders where the exchange lists them apart (Binance's algo orders:
        `allAlgoOrders`, whose answer names the order each became once triggered). None: not offered."""
        return None

    # where bots' open conditional orders are counted apart (`usdm-algo:*`, OKX's `algo:*`): a triggered one ends
    # in no answer to its bot, so the risk watch lists them itself (`conditional_count_listings`) and sets the counts
    conditional_count_scopes: tuple[str, ...] = ()

    def resting_client_ids(self, out: OutboundRequest, status: int, body: bytes) -> tuple[tuple[str, str, str], ...]:
        """(order id, scope, client id) of the resting orders a read's answer lists, where a client id can name the
        order a bot's conditional order became before keyproxy has read which (Binance). Default: none."""
        return ()

    def conditional_count_listings(self, scope: str) -> list[tuple[str, str, str, bytes]]:
        """keyproxy's own first-page listings (read by the exchange's `open_orders.SWEEPS` entry) that show together
        every conditional order of `scope` a bot may rest. Empty: none."""
        return []

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        """A signed read of one order by the exchange's id (its answer read by `order_updates`): the risk watch
        asks it of an order its reconciliation page did not show, since a page of the newest finished orders can
        be pushed past by a bot finishing orders of its own. None: not asked (the adapter has no such read)."""
        return None

    def order_book_change(self, req: OutboundRequest, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
        """What the answer confirms about open orders. The default believes no cancel and counts every
        order a 2xx answer accepted as resting: it may overstate the count, never understate it."""
        if 200 <= status < 300 and facts.action == "order":
            return OrderBookChange(opened=tuple(o.scope for o in facts.placed()))
        return OrderBookChange()

    # the answer's member naming an order's exchange id (orderId, ordId, txid, oid ...)
    order_id_keys: tuple[str, ...] = ()
    # the answer's member naming an order's client id (Binance's clientOrderId): recorded as the placing bot's, so
    # a cancel by client id can be checked as one by the exchange's id is (empty: client ids are not read)
    client_id_keys: tuple[str, ...] = ()
    # an amend's size is what the order rests after it, its fills not counted (else: its whole size, fills in)
    amend_size_is_remaining = False
    # an amend's side turns the order (Hyperliquid's modify restates it whole); else the order keeps its side
    amend_may_turn = False
    # an amend cancels the order and places a new one under a new id (Kraken's EditOrder); else the id stays
    amend_replaces = False
    # an amend restates the whole order, its reduce-only flag included (Hyperliquid's modify); else an amend's
    # reduce-only parameter is never believed (the order keeps the flags it was placed with)
    amend_sets_reduce_only = False
    # an order id is unique only within its market and symbol (Binance numbers each symbol's orders apart):
    # the positions book keys such orders by id and scope (`positions.book_id`)
    order_ids_per_market = False
    # a stream event names the matching engine, not the market the order was placed in (Binance's
    # `executionReport` is a spot, margin or portfolio-margin order's): event market -> the markets it may be
    stream_markets: Mapping[str, tuple[str, ...]] = {}

    def client_id_forms(self, client_id: str) -> tuple[str, ...]:
        """The client ids that name the same order at the exchange as `client_id` (Binance: an algo order's
        `clientAlgoId` is also the client id of the order it becomes): a bot may use none another bot holds."""
        return (client_id,)

    def id_per_market(self, order_id: str) -> bool:
        """Whether this order id (or client id) is recorded with its market and symbol (`order_ids_per_market`), or
        for the account (Binance's algo orders: their ids are the account's, and a cancel names no symbol)."""
        return self.order_ids_per_market

    def cancelled_ids(self, req: OutboundRequest) -> tuple[tuple[str, ...], bool]:
        """For an exchange whose cancel answers name no order (Kraken's `count`, Hyperliquid's statuses): the
        exchange ids the cancel request names, and whether it names orders by a client id instead (then whose
        orders it cancelled is unknown). Default: ((), False), the answer names them."""
        return (), False

    def cancelled_client_ids(self, req: OutboundRequest, status: int, body: bytes) -> tuple[str, ...]:
        """The client ids of the orders a cancel by client id cancelled, as the answer confirms (Hyperliquid's
        `cancelByCloid`, whose answer names no oid): the positions book frees the orders it saw placed under
        them. Default: none (the answer names the orders)."""
        return ()

    def settled_answer(self, req: OutboundRequest, status: int, body: bytes) -> tuple[int, bytes]:
        """The answer as far as it settled orders, for keyproxy's books (the bot gets the answer as it came): an
        error status whose body reports an order placed or cancelled anyway (Binance's cancel-replace 409)
        becomes the 2xx answer of what was done. Default: the answer itself."""
        return status, body

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        """Per leg of an amend, what a 2xx answer says of it: True the exchange took it, False it refused it
        (Bybit's retCode, OKX's sCode, Hyperliquid's "err" come in 2xx answers), None it cannot tell. The book
        takes an amend's side and price only when True (docs/risk.md, Amends)."""
        return (None,) * legs

    def placed_order_ids(self, status: int, body: bytes) -> tuple[str, ...]:
        """The exchange ids of the orders a 2xx answer to an order request names (`order_id_keys`, at any
        depth): who placed which order, for cancelling one bot's orders. Unreadable: (). An adapter whose answer
        lists a batch's legs gives one id per leg, "" for a refused one (`leg_order_ids`)."""
        return self.read_placed_ids(body) if 200 <= status < 300 and body else ()

    def placed_client_ids(self, status: int, body: bytes) -> tuple[str, ...]:
        """The client ids of the orders a 2xx answer to an order request placed (`client_id_keys`), one per leg
        where the answer lists legs; () where client ids are not read."""
        return self.read_placed_client_ids(body) if self.client_id_keys and 200 <= status < 300 and body else ()

    def read_placed_client_ids(self, body: bytes) -> tuple[str, ...]:
        try:
            doc = json.loads(body)
        except ValueError:
            return ()
        return order_ids_in(doc, self.client_id_keys)

    def read_placed_ids(self, body: bytes) -> tuple[str, ...]:
        """`placed_order_ids` of a 2xx answer with a body: the exchange's own reader where it lists legs."""
        if not self.order_id_keys:
            return ()
        try:
            doc = json.loads(body)
        except ValueError:
            return ()
        return order_ids_in(doc, self.order_id_keys)

    def contract_sizes(self, path: str, body: bytes) -> dict[str, Decimal]:
        """Contract sizes by order scope (`market:symbol`) from a public instrument answer, else {}."""
        return {}

    def websocket(self, path: str) -> Adapter | None:
        """The dialect that reads this WebSocket path's frames one by one (None: no such private socket)."""
        return None

    def relays_websocket(self, path: str) -> bool:
        """Whether this WebSocket path carries no credential and is relayed unchanged (public streams)."""
        return False

    def retired(self, method: str, path: str) -> str | None:
        """Why the exchange no longer serves this endpoint (said in the refusal), else None."""
        return None

    def relay_frames(self, path: str) -> tuple[int, float] | None:
        """Messages a bot may send on one market data socket to `path` in `[1]` seconds (None: the exchange sets no
        such limit keyproxy models): over it the exchange drops the socket, and may ban the IP for every bot."""
        return None

    def names_private_stream(self, text: str) -> bool:
        """Whether a public stream's URL (`path?query`) or a frame sent on it names what could be a private
        stream (a listenKey): refused, since a public relay checks no credential."""
        return False

    def listen_keys(self, path: str, body: bytes) -> tuple[str, ...]:
        """The stream tokens in the answer to keyproxy's own `stream_token_request` (Kraken's GetWebSocketsToken):
        the real token keyproxy signs frames with, never handed to a bot."""
        return ()

    def stream_listen_key(self, path: str, query: str) -> str | None:
        """The stream token a private event stream's URL carries (None: not such a stream)."""
        return None

    def websocket_origin_path(self, path: str) -> str:
        """The path whose host-table entry serves this WebSocket path (where two hosts use one path)."""
        return path

    def private_stream_origin_path(self, path: str, issued_by: str) -> str:
        """The host-table path of a private event stream opened with a token `issued_by` that endpoint (Binance:
        `/ws/<listenKey>` is a margin, USD-M or COIN-M stream by the endpoint that handed the key out)."""
        return self.websocket_origin_path(path)

    def websocket_upstream_path(self, path: str) -> str:
        """The exchange's path for this WebSocket path (Kraken's public `/public/v2` is `/v2` on its own host)."""
        return path

    def grants_stream_token(self, path: str) -> bool:
        """Whether an answer to this path hands out a bearer token for the exchange's WebSocket (Kraken's
        GetWebSocketsToken, Binance's listenKeys and listenTokens): keyproxy keeps it and gives the bot a virtual one
        (`swap_stream_token`)."""
        return False

    def swap_stream_token(self, body: bytes, mint: Callable[[str], str]) -> bytes:
        """The answer with each real stream token replaced by `mint(real)`, a virtual token bound to the bot."""
        return body

    def unsignable(self, req: IncomingRequest, key: RealKey) -> str | None:
        """Why this request cannot go with the account's real key (Hyperliquid: a transfer needs the master wallet's
        key, the vault holds an agent's), refused before it is decided; None: it can."""
        return None

    def stream_close_answer(self, method: str, path: str) -> bytes | None:
        """What the exchange answers a close of a stream token (`DELETE` of a listenKey), for keyproxy to give
        where the token must stay open for other bots (`Core.keeps_stream_open`); None: not a close."""
        return None

    @staticmethod
    def virtual_stream_token() -> str:
        """A new virtual stream token, of the form the exchange's own has where keyproxy tells streams apart by it."""
        return "kpv-" + secrets.token_urlsafe(32)

    # keyproxy's own call whose answer carries a stream token (`listen_keys` reads it), for a dialect whose
    # frames present one: the real token is fetched with it and never leaves keyproxy
    stream_token_request: tuple[str, str, str, bytes] | None = None

    # --- a WebSocket dialect's framing (defaults: JSON-RPC-like `{"id", "method", "params"}`, Binance's) ---

    def ws_frame(self, text: str) -> tuple[object, str]:
        """(the key its answer will carry, the method) of one request frame; BadRequest when malformed."""
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest("frame is not JSON") from None
        no_lone_surrogates(text, frame)
        if not isinstance(frame, dict) or not isinstance(frame.get("method"), str) or "id" not in frame:
            raise BadRequest("a request frame is a JSON object with an id and a method")
        ident = frame["id"]
        if not isinstance(ident, str | int) or isinstance(ident, bool) or isinstance(ident, int) \
                and not -2 ** 53 <= ident <= 2 ** 53 or isinstance(ident, str) and len(ident) > 64:
            # an id the exchange could echo otherwise (rounded, cut) would never find its answer: the order's count
            # and owner would lapse (session 27's review)
            raise BadRequest("a frame's id is a string of at most 64 characters or an integer of at most 2^53")
        return frame["id"], frame["method"]

    def ws_answer(self, doc: dict[str, object]) -> tuple[object, int] | None:
        """(the key of the request frame an upstream message answers, its status), or None for an event."""
        if "id" not in doc:
            return None
        status = doc.get("status")
        return doc["id"], status if isinstance(status, int) else 200

    def ws_refusal(self, key: object, method: str, code: str, message: str, status: int) -> dict[str, object]:
        """A refused frame's answer in the exchange's own shape (keyproxy adds its stable code and request id)."""
        native = self.native_error(code, message)  # type: ignore[attr-defined]
        return {"id": key, "status": status, "error": {**native, "msg": native.get("msg", message)}}

    def session_action(self, method: str) -> str | None:
        """How a session method is handled: "logon" / "logout" / "status" keyproxy answers itself; "login"
        is verified, makes the connection the bot's, and goes upstream re-signed; None: an ordinary frame."""
        return None

    def presented_stream_token(self, req: IncomingRequest) -> str | None:
        """A stream token a message subscribes with instead of a key (Binance margin's listenToken): the
        message belongs to the bot keyproxy handed that token to, and to no one else."""
        return None

    def named_stream_token(self, req: IncomingRequest) -> str | None:
        """The virtual stream token a request names, to be swapped for the real one when it is signed (a
        keepalive's listenKey, a subscribe frame's listenToken): by default the token it presents."""
        return self.presented_stream_token(req)
