"""What a Coinbase request would do, for policy, and what Coinbase's answer confirms about open orders.

Advanced Trade "Create Order" takes one `order_configuration`; each kind executes by its own fields:
`market_market_ioc` / `_fok` by `quote_size` or `base_size` (no price: a `limit_price` there is
ignored), the limit kinds (`limit_limit_gtc`, `_gtd`, `_fok`, `sor_limit_ioc`, `stop_limit_*`,
`trigger_bracket_*`) by `base_size` x `limit_price`. Two sizes, or a field the kind ignores, is a
conflict (refused under a notional limit). Futures (`BIT-27DEC24-CDE`, perpetuals `BTC-PERP-INTX`)
count `base_size` in contracts of `future_product_details.contract_size`, read from the product answers
keyproxy relays. A v2 send's `destination_tag` is its memo.

One order book, several products: Coinbase trades BTC-USDC on BTC-USD's book (a product's `alias` names the
product it trades as, `alias_to` the products trading as it). A spot order is named by its book (`#<product>`, mapped
by the core from `coinbase_market_names`; an unknown one makes keyproxy fetch the product list), so positions,
price bands, duplicates and self-crossing see one market; the user channel names such an order by its book too.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from decimal import Decimal
from urllib.parse import parse_qs

from keyproxy.exchanges.base import (
    published,
    whole_listing,
    BadRequest,
    Endpoint,
    EndpointClass,
    IncomingRequest,
    OrderBookChange,
    amount,
    no_json_constants,
    unique_members,
)
from keyproxy.policy.model import RequestFacts, normalize_symbol

_SEGMENT = "[A-Za-z0-9_~:%+.-]+"
_V2_TRANSACTIONS = re.compile(f"/v2/accounts/{_SEGMENT}/transactions")
_V2_WITHDRAWAL = re.compile(f"/v2/accounts/{_SEGMENT}/withdrawals")
_ORDERS = {"/api/v3/brokerage/orders", "/api/v3/brokerage/orders/preview"}
_EDITS = {"/api/v3/brokerage/orders/edit", "/api/v3/brokerage/orders/edit_preview"}
_CLOSE_POSITION = "/api/v3/brokerage/orders/close_position"
_PREVIEW = "/api/v3/brokerage/orders/preview"  # places nothing: its client id is nobody's (never claimed)
_SETTINGS = {"/api/v3/brokerage/cfm/intraday/margin_setting", "/api/v3/brokerage/intx/multi_asset_collateral"}
_ORDER_TYPES = (("stop_limit_", "STOP_LIMIT"), ("trigger_bracket_", "BRACKET"), ("market_", "MARKET"),
                ("limit_", "LIMIT"), ("sor_limit_", "LIMIT"), ("twap_limit_", "TWAP"), ("scaled_limit_", "SCALED"))
_PRODUCT_ANSWERS = ("/api/v3/brokerage/products", "/api/v3/brokerage/market/products")
_OPEN_ORDERS = "/api/v3/brokerage/orders/historical/batch"
BRACKET_STOP_SLACK = Decimal("1.05")  # a buy bracket's stop limit: its trigger + 5%

_VALUED_TYPES = ("MARKET", "LIMIT", "STOP_LIMIT", "BRACKET")  # the order kinds whose size and price keyproxy reads


def _json_object(raw: bytes) -> dict[str, object]:
    value = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_members, parse_constant=no_json_constants)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def market_of(product: str | None) -> str | None:
    """`BTC-USD` spot, `BIT-27DEC24-CDE` a dated future, `BTC-PERP-INTX` a perpetual."""
    if not product:
        return None
    if product.endswith("-CDE"):
        return "future"
    if product.endswith("-INTX"):
        return "perp"
    return "spot" if product.count("-") == 1 else None


def _camel_case_member(doc: object) -> str | None:
    """The first member name with a capital letter, at any depth (Coinbase's own names are all snake_case)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key != key.lower():
                return key
            if (found := _camel_case_member(value)) is not None:
                return found
    elif isinstance(doc, list):
        for item in doc:
            if (found := _camel_case_member(item)) is not None:
                return found
    return None


def coinbase_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    """What a request would do, from its JSON body (Advanced Trade orders, v2 sends and withdrawals).

    Shapes keyproxy cannot read (conversions, unknown configurations) report action None, which policy
    refuses only for bots with trading limits.
    """
    if endpoint.cls is EndpointClass.READ and req.method == "GET" and req.path == _OPEN_ORDERS:
        return _listing(req)
    if endpoint.cls in (EndpointClass.PUBLIC, EndpointClass.READ, EndpointClass.TRANSFER, EndpointClass.ADMIN):
        return RequestFacts(action="other")
    if endpoint.cls is EndpointClass.TRADE and req.path in _SETTINGS:
        # the futures margin setting (intraday margin: more leverage on every bot's positions) and multi-asset
        # collateral change leverage by an amount keyproxy cannot compute: refused under max_leverage (session 32)
        return RequestFacts(action="leverage")
    try:
        body = _json_object(req.body) if req.body else {}
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not a JSON object (with unique member names)") from None
    if req.path.startswith("/api/v3/") and (odd := _camel_case_member(body)) is not None:
        # Advanced Trade reads bodies as protobuf JSON, which takes a field's lowerCamelCase name as well as its
        # snake_case one: `attachedOrderConfiguration` would place the attached orders keyproxy reads (and
        # refuses to capped bots) under `attached_order_configuration` unseen (session 23's review)
        raise BadRequest(f"member {odd[:64]!r}: keyproxy reads Advanced Trade's snake_case member names only")
    if endpoint.cls is EndpointClass.WITHDRAW:
        if req.method == "POST" and (_V2_TRANSACTIONS.fullmatch(req.path) or _V2_WITHDRAWAL.fullmatch(req.path)):
            send = bool(_V2_TRANSACTIONS.fullmatch(req.path))
            destination = body.get("to") if send else body.get("payment_method")
            tag = body.get("destination_tag") if send else None
            return RequestFacts(action="withdraw", asset=(_text(body.get("currency")) or "").upper() or None,
                                address=_text(destination), network=(_text(body.get("network")) or "").upper() or None,
                                amount=amount(body.get("amount"), "amount"),
                                memo=str(tag) if isinstance(tag, str | int) and not isinstance(tag, bool) and tag != ""
                                else None)
        return RequestFacts(action="withdraw")  # sells, commits, request-money flows: nothing to read
    client_id = body.get("client_order_id")
    if (req.path in _ORDERS or req.path == _CLOSE_POSITION) and client_id is not None and \
            (not isinstance(client_id, str) or not client_id):
        # a number may be read as the same client id (protobuf JSON readers coerce): unread, it named the operator's
        # order unchecked (session 33's review)
        raise BadRequest("client_order_id must be a non-empty string")
    product = _text(body.get("product_id"))
    symbol = normalize_symbol(product) if product else None
    market = market_of(product)
    if symbol and market == "spot":  # its order book's name; an order's unknown product stays `#...` (the core
        # fetches the product list first, `coinbase_market_ids`, and refuses what stays unknown)
        symbol = req.markets.get("#" + symbol) or ("#" + symbol if req.path in _ORDERS else symbol)
    if req.path == "/api/v3/brokerage/orders/batch_cancel":  # the orders it names: only the bot's own
        ids = body.get("order_ids")
        return RequestFacts(action="cancel", market="spot",
                            cancels=tuple(i for i in ids if isinstance(i, str) and i) if isinstance(ids, list) else ())
    if req.path == _CLOSE_POSITION:
        return RequestFacts(action="order", symbol=symbol, market=market, quantity=amount(body.get("size"), "size"),
                            reduce_only=True, contract="linear" if market in ("future", "perp") else None,
                            client_id=client_id)
    if req.path in _EDITS:  # a new size and price for an existing order (its product is not named)
        edit = RequestFacts(action="amend", quantity=amount(body.get("size"), "size"),
                            price=amount(body.get("price"), "price"), order_id=_text(body.get("order_id")) or None,
                            trigger_price=amount(body.get("stop_price"), "stop_price"))
        if "attached_order_configuration" in body or "cancel_attached_order" in body:
            # an edit may attach a take-profit / stop-loss order (placed as an order of its own, under an id no
            # answer names) or cancel one: as on a create, no cap could count it (session 25's review)
            edit = replace(edit, untracked="an edit that attaches or cancels an attached order")
        return edit
    if req.path in _ORDERS:
        # never another bot's, nor one of an order placed outside keyproxy: Coinbase answers a create reusing one with
        # the order holding it (OrderOwners.own_client_ids, learn_outside), whatever the order's shape
        return replace(_order(body, symbol, market), client_id=None if req.path == _PREVIEW else client_id)
    return RequestFacts(action=None, symbol=symbol)  # conversions and anything else that may trade


def _order(body: dict[str, object], symbol: str | None, market: str | None) -> RequestFacts:
    side = (_text(body.get("side")) or "").upper() or None
    leverage = amount(body.get("leverage"), "leverage")
    config = body.get("order_configuration")
    if not isinstance(config, dict) or len(config) != 1:
        return RequestFacts(action=None, symbol=symbol, side=side, leverage=leverage)
    (kind, params), = config.items()
    if not isinstance(params, dict):
        raise BadRequest("order_configuration must hold an object")
    order_type = next((name for prefix, name in _ORDER_TYPES if kind.startswith(prefix)), kind.upper())
    base = amount(params.get("base_size"), "base_size")
    quote = amount(params.get("quote_size"), "quote_size")
    price = amount(params.get("limit_price"), "limit_price")
    # stop_limit_*: stop_price; trigger_bracket_*: stop_trigger_price (the stop that closes it)
    trigger = amount(params.get("stop_price"), "stop_price") or amount(params.get("stop_trigger_price"),
                                                                         "stop_trigger_price")
    conflict = None
    contract = "linear" if market in ("future", "perp") else None
    # two sizes, a futures order sized in quote, a type keyproxy does not read: what it trades is unsure too
    size_unsure = (base is not None and quote is not None) or order_type not in _VALUED_TYPES \
        or (contract is not None and quote is not None)
    if base is not None and quote is not None:
        conflict = "both base_size and quote_size are given"
    if order_type == "MARKET" and price is not None:
        conflict, price = "a market order's limit_price is ignored by Coinbase", None
    if order_type not in _VALUED_TYPES:
        conflict = f"{kind} is not valued by keyproxy"
    if contract is not None and quote is not None:
        conflict = "a futures order is sized in contracts (base_size)"
    elif quote is not None and base is None and price:
        # a limit order sized in quote (limit_limit_gtc takes quote_size) buys or sells quote / limit_price:
        # sized by its own price, never by the last one, it rests in the book at what it asks for
        base, quote = quote / price, None
    attached = body.get("attached_order_configuration")  # a take-profit / stop-loss for when this one fills
    # a bracket's stop, once triggered, is "a stop limit order ... with a limit price 5% higher for BUYS" (Create
    # Order, trigger_bracket_*.stop_trigger_price): a buy bracket may pay that, above its own limit_price
    stop_limit = trigger * BRACKET_STOP_SLACK if order_type == "BRACKET" and side == "BUY" and trigger else None
    untracked = "Coinbase places an attached take-profit or stop-loss as an order of its own" if attached else None
    if order_type in ("SCALED", "TWAP"):
        # a ladder of limit orders between two prices, or slices over time: orders of Coinbase's own, their sizes and
        # prices not this one's (a 10-order ladder passed max_open_orders=2, and its lowest level bought more than its
        # size at the last price: session 32's review)
        untracked = f"Coinbase places a {kind} as orders of its own"
    return RequestFacts(action="order", symbol=symbol, market=market, side=side, order_type=order_type,
                        quantity=base, price=price, quote_quantity=None if contract else quote, leverage=leverage,
                        conflict=conflict, contract=contract, trigger_price=trigger, stop_limit=stop_limit,
                        untracked=untracked, size_unsure=size_unsure)


def _listing(req: IncomingRequest) -> RequestFacts:
    """The open-order list's products, by their book's name (`symbol`), where the listing is that book's whole: one
    product trading on a book of its own, or every product of a shared one (a listing of one of them may not show
    the other's orders); else no symbol, and the listing sets no count (`coinbase_order_book_change`), as where
    keyproxy does not hold the product list."""
    params = parse_qs(req.query, keep_blank_values=True)
    products = params.get("product_ids", []) + params.get("product_id", [])
    markets = {market_of(p) for p in products}
    if not products or len(markets) != 1:
        return RequestFacts(action="other")
    market, symbols = markets.pop(), {normalize_symbol(p) for p in products}
    if market != "spot":
        return RequestFacts(action="other", symbol=symbols.pop() if len(symbols) == 1 else None, market=market)
    names = {req.markets.get("#" + s) for s in symbols}
    name = names.pop() if len(names) == 1 else None
    if name is None:
        return RequestFacts(action="other", market=market)
    if SHARED + name in req.markets and not {k for k, v in req.markets.items() if k.startswith("#") and v == name} \
            <= {"#" + s for s in symbols}:
        return RequestFacts(action="other", market=market)
    return RequestFacts(action="other", symbol=name, market=market)


SHARED = "*"  # `coinbase_market_names`: `*<name>` marks a book several products trade on


def coinbase_market_ids(req: IncomingRequest) -> tuple[str, ...]:
    """The spot product an order names, as `#<product>`: the core maps it to its order book's name."""
    if req.method != "POST" or req.path not in _ORDERS or not req.body:
        return ()
    try:
        body = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        return ()
    product = body.get("product_id") if isinstance(body, dict) else None
    return ("#" + normalize_symbol(product),) if isinstance(product, str) and market_of(product) == "spot" else ()


def coinbase_market_names(path: str, body: bytes) -> dict[str, str]:
    """`#<product>` -> the name of the order book it trades on, for every spot product of a product answer (list or
    one product): its own, or for an alias (`alias`: BTC-USDC trades as BTC-USD) the product it trades as; and
    `*<name>` for a book several products trade on (`alias`, `alias_to`)."""
    if not path.startswith(_PRODUCT_ANSWERS):
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    items = doc.get("products") if isinstance(doc, dict) and isinstance(doc.get("products"), list) else [doc]
    out: dict[str, str] = {}
    shared: set[str] = set()
    for item in items:
        product = item.get("product_id") if isinstance(item, dict) else None
        if not isinstance(product, str) or market_of(product) != "spot":
            continue
        name, alias, alias_to = normalize_symbol(product), item.get("alias"), item.get("alias_to")
        if isinstance(alias, str) and alias and market_of(alias) == "spot" and normalize_symbol(alias) != name:
            out["#" + name] = normalize_symbol(alias)
            shared.update((name, normalize_symbol(alias)))
        else:
            out["#" + name] = name
        if isinstance(alias_to, list) and any(isinstance(a, str) and a for a in alias_to):
            shared.add(name)
    return {**out, **{SHARED + name: name for name in shared}}


def coinbase_contract_sizes(path: str, body: bytes) -> dict[str, Decimal]:
    """`future_product_details.contract_size` of futures in product answers (list or one product)."""
    if not path.startswith(_PRODUCT_ANSWERS):
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    items = doc.get("products") if isinstance(doc, dict) and isinstance(doc.get("products"), list) else [doc]
    out: dict[str, Decimal] = {}
    for item in items:
        details = item.get("future_product_details") if isinstance(item, dict) else None
        product = item.get("product_id") if isinstance(item, dict) else None
        if not isinstance(details, dict) or not isinstance(product, str) or market_of(product) is None:
            continue
        size = published(details.get("contract_size"))
        if size is not None:
            out[f"{market_of(product)}:{normalize_symbol(product)}"] = size
    return out


def coinbase_order_book_change(method: str, path: str, query: str, status: int, body: bytes,
                               facts: RequestFacts) -> OrderBookChange:
    """Only what Coinbase confirmed: a create answered `success: true` (a refusal is HTTP 200 with `success:
    false`), each `batch_cancel` result with `success: true`, and the open-order list for exactly one
    product, answered in full (no `has_next`), sets that product's count."""
    if not 200 <= status < 300:
        return OrderBookChange()
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if facts.action == "order":
        if isinstance(doc, dict) and doc.get("success") is not True:
            return OrderBookChange()
        return OrderBookChange(opened=tuple(o.scope for o in facts.placed()))
    if facts.action == "cancel" and isinstance(doc, dict) and isinstance(doc.get("results"), list):
        done = [r for r in doc["results"] if isinstance(r, dict) and r.get("success") is True]
        return OrderBookChange(closed=("spot:*",) * len(done))  # results name orders, not products
    if method == "GET" and path == _OPEN_ORDERS and isinstance(doc, dict) and isinstance(doc.get("orders"), list):
        params = parse_qs(query, keep_blank_values=True)
        # filtered by side, type, dates, ids or a page `cursor` (blank too), it shows part of the product's orders;
        # one product's listing counts its book only where no other product trades on it (`_listing`)
        # `product_ids` is a list: named once per product
        whole = whole_listing("&".join(p for p in query.split("&") if not p.startswith("product_ids=")),
                              ("order_status", "product_id", "limit"))
        if params.get("order_status") == ["OPEN"] and facts.symbol and not doc.get("has_next") and whole:
            return OrderBookChange(counted=((f"{facts.market}:{facts.symbol}", len(doc["orders"])),))
    return OrderBookChange()


def coinbase_prices(path: str, body: bytes) -> dict[str, Decimal]:
    """Last prices from public market answers that pass through (for valuing market orders)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    items: list[object] = []
    if path == "/api/v3/brokerage/market/products":
        items = doc.get("products") if isinstance(doc.get("products"), list) else []  # type: ignore[assignment]
    elif path.startswith("/api/v3/brokerage/market/products/") and path.count("/") == 6:
        items = [doc]
    # not `.../ticker`: its trades are those before the `end` a bot names, a price of any past moment (session 27's
    # review: a 2020 trade valued a sell at a tenth of the market and latched another bot's loss limit)
    out: dict[str, Decimal] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("product_id"), str):
            value = published(item.get("price"))
            if value is not None:
                out[normalize_symbol(item["product_id"])] = value
    return out

