"""Binance's rate budgets (issue 19): what it counts, per what, and what each request costs.

Source: Binance's "LIMITS" (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits)
and each endpoint's "Weight:" line in the Spot REST API documentation (rest-api.md; the WebSocket API's
web-socket-api.md gives its methods the same weights); USD-M and COIN-M futures ("General Info", "LIMITS",
and each endpoint's "Request Weight"). Request weight is counted per IP per calendar minute and reported in
`X-MBX-USED-WEIGHT-1M`; spot orders per account per 10 s and per day in `X-MBX-ORDER-COUNT-10S` / `-1D`,
USD-M futures orders per account per 10 s and per minute in `X-MBX-ORDER-COUNT-10S` / `-1M`. Endpoints not
in the tables cost 1 here; the exchange's header corrects keyproxy's shared count after every answer (never
a bot's own share: policy/budget.py), so the tables are what keeps each bot's share honest.

A weight that depends on the request (a depth's `limit`, a ticker's symbols) is read from its parameters;
where they cannot be read (unparseable, or in a body this function is not shown) the request costs the
endpoint's most, never less.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from keyproxy.policy.budget import Budget

SPOT_WEIGHT = Budget("REQUEST_WEIGHT", "ip", 6000, 60.0, "x-mbx-used-weight-1m")
FUTURES_WEIGHT = Budget("FUTURES_REQUEST_WEIGHT", "ip", 2400, 60.0, "x-mbx-used-weight-1m")
COINM_WEIGHT = Budget("COINM_REQUEST_WEIGHT", "ip", 2400, 60.0, "x-mbx-used-weight-1m")
SPOT_ORDERS = Budget("ORDERS_10S", "account", 100, 10.0, "x-mbx-order-count-10s")  # exchangeInfo's rateLimits
SPOT_ORDERS_DAY = Budget("ORDERS_1D", "account", 200000, 86400.0, "x-mbx-order-count-1d")
# USD-M futures' account order budget (fapi exchangeInfo's rateLimits: ORDERS 300 per 10 s, 1200 per minute)
FUTURES_ORDERS = Budget("FUTURES_ORDERS_10S", "account", 300, 10.0, "x-mbx-order-count-10s")
FUTURES_ORDERS_MINUTE = Budget("FUTURES_ORDERS_1M", "account", 1200, 60.0, "x-mbx-order-count-1m")
# RAW_REQUESTS (61,000 per 5 minutes) is not modelled: every request weighs at least 1, so REQUEST_WEIGHT
# (6,000 a minute, 30,000 per 5 minutes) always binds first
# connections opened per IP (web-socket-api.md and web-socket-streams.md "Connection limits": 300 per 5 minutes per
# IP, each service its own; "Connecting to WebSocket API costs 2 weight")
WS_API_CONNECTIONS = Budget("WS_API_CONNECTIONS", "ip", 300, 300.0, kind="rolling")
STREAM_CONNECTIONS = Budget("STREAM_CONNECTIONS", "ip", 300, 300.0, kind="rolling")
# `/sapi/` (wallet, margin, sub-accounts...): "Each endpoint with IP limits has an independent 12000 per minute limit"
# (UID-limited ones 180,000: charged on the IP one too, the stricter), counted in `X-SAPI-USED-IP-WEIGHT-1M`; each
# endpoint's weight in `_SAPI_WEIGHTS`, else 1 (the header corrects the shared count). Uncharged, a bot looped a
# 2,400-weight snapshot past the exchange's limit into 429s keyproxy never held on (session 36's review)
SAPI_WEIGHT = Budget("SAPI_IP_WEIGHT", "ip-endpoint", 12000, 60.0, "x-sapi-used-ip-weight-1m")
# portfolio margin (`/papi/`) and options (`/eapi/`) count request weight per IP in `X-MBX-USED-WEIGHT-1M` as the
# other APIs do; their limits are not in keyproxy's tables (6,000 and 2,400 here, the spot and futures figures):
# the header corrects the count, and the exchange's 429 or 418 holds the budget (`Governor.observe`)
PAPI_WEIGHT = Budget("PAPI_REQUEST_WEIGHT", "ip", 6000, 60.0, "x-mbx-used-weight-1m")
EAPI_WEIGHT = Budget("EAPI_REQUEST_WEIGHT", "ip", 2400, 60.0, "x-mbx-used-weight-1m")
# any other path of the table (`/futures/data/`...): one a request, per IP and path, so the exchange's refusal for
# rate on it holds it (no charge, no hold: the next requests went on into a ban)
OTHER_WEIGHT = Budget("OTHER_REQUEST_WEIGHT", "ip-endpoint", 1000, 60.0)
BUDGETS = (SPOT_WEIGHT, FUTURES_WEIGHT, COINM_WEIGHT, SPOT_ORDERS, SPOT_ORDERS_DAY, FUTURES_ORDERS,
           FUTURES_ORDERS_MINUTE, WS_API_CONNECTIONS, STREAM_CONNECTIONS, SAPI_WEIGHT, PAPI_WEIGHT, EAPI_WEIGHT,
           OTHER_WEIGHT)
# `/sapi/` endpoints heavier than 1 ("Weight(IP)" of each: the wallet and sub-account docs)
_SAPI_WEIGHTS = {"/sapi/v1/accountSnapshot": 2400, "/sapi/v1/capital/config/getall": 10}
# public answers every bot asks for at start, shared for MARKET_LIST_TTL seconds (public_cache.py)
MARKET_LISTS = frozenset({"/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"})
MARKET_LIST_TTL = 30.0

Params = dict[str, str | None]  # a request's parameters; None: sent more than once (which one counts is unknown)

# spot, fixed weights (rest-api.md, each endpoint's "Weight:"); the ones that depend on the request are in
# `_spot_weight`
_SPOT_WEIGHTS = {
    ("GET", "/api/v3/account"): 20, ("GET", "/api/v3/exchangeInfo"): 20, ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/order"): 4, ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/uiKlines"): 2, ("GET", "/api/v3/avgPrice"): 2, ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/historicalTrades"): 25, ("GET", "/api/v3/aggTrades"): 4, ("GET", "/api/v3/allOrderList"): 20,
    ("GET", "/api/v3/openOrderList"): 6, ("GET", "/api/v3/orderList"): 4, ("GET", "/api/v3/account/commission"): 20,
    ("GET", "/api/v3/rateLimit/order"): 40, ("GET", "/api/v3/myAllocations"): 20,
    ("GET", "/api/v3/order/amendments"): 4, ("PUT", "/api/v3/order/amend/keepPriority"): 4,
}
# what one accepted request adds to the account's order count (rest-api.md "Unfilled Order Count"): an order
# list counts its orders; a cancel-replace counts its new order even when it was not attempted
_SPOT_ORDER_COUNTS = {
    "/api/v3/order": 1, "/api/v3/order/cancelReplace": 1, "/api/v3/sor/order": 1,
    "/api/v3/order/oco": 2, "/api/v3/orderList/oco": 2, "/api/v3/orderList/oto": 2, "/api/v3/orderList/otoco": 3,
    "/api/v3/orderList/opo": 2, "/api/v3/orderList/opoco": 3,
}

# USD-M futures (developers.binance.com/docs/derivatives/usds-margined-futures, each endpoint's "Request
# Weight"); `_futures_weight` adds the ones that depend on the request
_USDM_WEIGHTS = {
    "/fapi/v1/allOrders": 5, "/fapi/v1/userTrades": 5, "/fapi/v1/account": 5, "/fapi/v2/account": 5,
    "/fapi/v3/account": 5, "/fapi/v1/balance": 5, "/fapi/v2/balance": 5, "/fapi/v3/balance": 5,
    "/fapi/v1/positionRisk": 5, "/fapi/v2/positionRisk": 5, "/fapi/v3/positionRisk": 5, "/fapi/v1/trades": 5,
    "/fapi/v1/historicalTrades": 20, "/fapi/v1/aggTrades": 20, "/fapi/v1/income": 30, "/fapi/v1/batchOrders": 5,
    "/fapi/v1/allAlgoOrders": 5,
    # GET weights session 33's review found charged 1 (81 reads of 30 passed as 81 of 2,400)
    "/fapi/v1/positionSide/dual": 30, "/fapi/v1/multiAssetsMargin": 30, "/fapi/v1/income/asyn": 1000,
    "/fapi/v1/income/asyn/id": 10, "/fapi/v1/order/asyn": 1000, "/fapi/v1/trade/asyn": 1000,
    "/fapi/v1/order/asyn/id": 10, "/fapi/v1/trade/asyn/id": 10, "/fapi/v1/commissionRate": 20,
}
# COIN-M futures (developers.binance.com/docs/derivatives/coin-margined-futures, each endpoint's "Request
# Weight", as mirrored in github.com/rosssaunders/coincise docs/binance/coinm/endpoints/): allOrders and
# userTrades cost 20 with a symbol, 40 with a pair (`_futures_weight`)
_COINM_WEIGHTS = {
    "/dapi/v1/account": 5, "/dapi/v1/balance": 1, "/dapi/v1/positionRisk": 1, "/dapi/v1/trades": 5,
    "/dapi/v1/historicalTrades": 20, "/dapi/v1/aggTrades": 20, "/dapi/v1/income": 20, "/dapi/v1/batchOrders": 5,
    "/dapi/v1/commissionRate": 20, "/dapi/v1/positionSide/dual": 30,
}
# per endpoint (after its /fapi/ or /dapi/ and version): (weight with one symbol, without); both markets alike
_FUTURES_BY_SYMBOL = {"openOrders": (1, 40), "openAlgoOrders": (1, 40), "ticker/24hr": (1, 40), "ticker/price": (1, 2),
                      "ticker/bookTicker": (2, 5)}
_FUTURES_KLINES = frozenset({"klines", "continuousKlines", "indexPriceKlines", "markPriceKlines",
                             "premiumIndexKlines"})
_BATCH_MAX = 5  # orders in one futures batch (batchOrders: "Max 5 orders")
# a POST/PUT/DELETE whose parameters keyproxy was not shown: its flags may be on (an order test computing
# commission rates) and a batch is the largest (no `batchOrders` to read)
_UNREAD: Params = {"computeCommissionRates": None}


def params_of(query: str, body: bytes | None = None) -> Params:
    """A request's parameters from its query string and (form-encoded) body; one sent twice is None."""
    out: Params = {}
    text = query if not body else f"{query}&{body.decode('utf-8', 'replace')}" if query else \
        body.decode("utf-8", "replace")
    for k, v in parse_qsl(text, keep_blank_values=True):
        out[k] = None if k in out else v
    return out


def _number(p: Params, name: str, default: int) -> int | None:
    """A whole-number parameter, `default` when absent, None when it cannot be read."""
    if name not in p:
        return default
    text = p[name]
    # ASCII digits only (`²` is a digit int() refuses), and few: a 5,000-digit number is past int()'s limit
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 12 else None


def _symbols(p: Params) -> int | None:
    """How many symbols the request names: 1 for `symbol`, the list's length for `symbols` (a JSON array), 0
    for neither; None when it cannot be read (both, a repeated one, a list that is not a list of names)."""
    if "symbols" not in p:
        return 0 if "symbol" not in p else 1 if p["symbol"] is not None else None
    if "symbol" in p or p["symbols"] is None:
        return None
    try:
        names = json.loads(p["symbols"])
    except (ValueError, RecursionError):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return len(names)


def _flag(p: Params, name: str) -> bool:
    """Whether a boolean parameter may be on: absent or "false" is off; anything else (unreadable) counts as on."""
    return name in p and (p[name] or "").lower() != "false"


def _spot_weight(method: str, path: str, p: Params) -> int:
    n = _symbols(p)
    one = n == 1 and "symbol" in p  # `symbols` with one name is weighed as a list
    if path == "/api/v3/openOrders" and method == "GET":
        return 6 if one else 80
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if one else 4
    if path == "/api/v3/ticker/24hr":
        return 80 if not n else 2 if n <= 20 else 40 if n <= 100 else 80
    if path in ("/api/v3/ticker", "/api/v3/ticker/tradingDay"):  # 4 a symbol, 200 past 50 (100 at most)
        return 4 * n if n and n <= 50 else 200
    if path == "/api/v3/executionRules":  # 2 a symbol, 40 at most (and for all)
        return min(40, 2 * n) if n else 40
    if path == "/api/v3/depth":
        limit = _number(p, "limit", 100)
        return 250 if limit is None else 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path == "/api/v3/myTrades":
        return 5 if "orderId" in p else 20
    if path == "/api/v3/myPreventedMatches":  # by preventedMatchId 2; by orderId (or anything else) 20
        return 2 if "preventedMatchId" in p and "orderId" not in p else 20
    if path in ("/api/v3/order/test", "/api/v3/sor/order/test") and method == "POST":
        return 20 if _flag(p, "computeCommissionRates") else 1
    return _SPOT_WEIGHTS.get((method, path), 1)


def _futures_weight(method: str, path: str, p: Params, fixed: dict[str, int]) -> int:
    """USD-M's and COIN-M's weights: they share the depth, klines and by-symbol rules."""
    name = path.split("/", 3)[3] if path.count("/") >= 3 else ""
    if method != "GET":  # the auto-cancel countdown weighs 10 (USD-M's and COIN-M's alike)
        return fixed.get(path, 1) if name == "batchOrders" else 10 if name == "countdownCancelAll" else 1
    if name in _FUTURES_BY_SYMBOL:
        one, every = _FUTURES_BY_SYMBOL[name]
        return one if _symbols(p) == 1 and "symbol" in p and "pair" not in p else every
    if name == "depth":  # limit 5, 10, 20, 50: 2; 100: 5; 500 (the default): 10; 1000: 20
        limit = _number(p, "limit", 500)
        return 20 if limit is None else 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if name in _FUTURES_KLINES:  # limit [1,100): 1; [100,500): 2; [500,1000]: 5 (500 the default); more: 10
        limit = _number(p, "limit", 500)
        return 10 if limit is None else 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path in ("/dapi/v1/allOrders", "/dapi/v1/userTrades"):
        return 20 if "symbol" in p and "pair" not in p else 40
    return fixed.get(path, 1)


def _batch_size(p: Params) -> int:
    """The orders in a futures batch (`batchOrders`, a JSON list): at most `_BATCH_MAX`, the most unreadable."""
    text = p.get("batchOrders")
    try:
        orders = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        orders = None
    return min(_BATCH_MAX, len(orders)) if isinstance(orders, list) and orders else _BATCH_MAX


# spot paths whose weight reads the request's parameters (`_spot_weight`); every other path's is fixed
_SPOT_BY_PARAMS = frozenset({"/api/v3/openOrders", "/api/v3/ticker/price", "/api/v3/ticker/bookTicker",
                             "/api/v3/ticker/24hr", "/api/v3/ticker", "/api/v3/ticker/tradingDay",
                             "/api/v3/executionRules", "/api/v3/depth", "/api/v3/myTrades",
                             "/api/v3/myPreventedMatches", "/api/v3/order/test", "/api/v3/sor/order/test"})


def _by_params(method: str, path: str) -> bool:
    """Whether the request's cost depends on its parameters: most (an order's, an account read's) do not, and
    are not parsed for it (an order's costs on every request path)."""
    if path.startswith("/api/"):
        return path in _SPOT_BY_PARAMS
    name = path.split("/", 3)[3] if path.count("/") >= 3 else ""
    if method != "GET":
        return name == "batchOrders"
    return name in _FUTURES_BY_SYMBOL or name == "depth" or name in _FUTURES_KLINES or \
        path in ("/dapi/v1/allOrders", "/dapi/v1/userTrades")


def _readable(method: str, query: str, body: bytes | None) -> bool:
    """Whether the request's parameters are all in what we were shown: a GET's are in its query; another
    method's may be in its body, and without the body only a signed query (one with its timestamp) is whole."""
    return method == "GET" or body is not None or "timestamp=" in query


def binance_costs(method: str, path: str, query: str, body: bytes | None = None) -> tuple[tuple[Budget, int], ...]:
    """(budget, cost) for one request: every path spends some budget, so the exchange's refusal for rate on any
    of them holds it. `body` None: not shown (a parameter that may be there is charged at its most)."""
    if not path.startswith(("/api/", "/fapi/", "/dapi/")):
        if path.startswith("/sapi/"):
            return ((SAPI_WEIGHT, _SAPI_WEIGHTS.get(path, 1)),)
        if path.startswith("/papi/"):
            return ((PAPI_WEIGHT, 1),)
        return ((EAPI_WEIGHT if path.startswith("/eapi/") else OTHER_WEIGHT, 1),)
    p = {} if not _by_params(method, path) else params_of(query, body) if _readable(method, query, body) else _UNREAD
    if path.startswith("/api/"):
        weight = ((SPOT_WEIGHT, _spot_weight(method, path, p)),)
        orders = _SPOT_ORDER_COUNTS.get(path) if method == "POST" else None
        if orders:
            return (*weight, (SPOT_ORDERS, orders), (SPOT_ORDERS_DAY, orders))
        return weight
    if path.startswith("/dapi/"):
        return ((COINM_WEIGHT, _futures_weight(method, path, p, _COINM_WEIGHTS)),)
    weight = ((FUTURES_WEIGHT, _futures_weight(method, path, p, _USDM_WEIGHTS)),)
    if method == "POST" and path == "/fapi/v1/algoOrder":  # "0 on IP rate limit", 1 on each order count
        return ((FUTURES_WEIGHT, 0), (FUTURES_ORDERS, 1), (FUTURES_ORDERS_MINUTE, 1))
    if method in ("POST", "PUT") and path in ("/fapi/v1/order", "/fapi/v1/batchOrders"):
        if path == "/fapi/v1/order":
            return (*weight, (FUTURES_ORDERS, 1), (FUTURES_ORDERS_MINUTE, 1))
        # a batch: Binance documents 5 on the 10 s count and 1 on the minute's; keyproxy charges each count
        # at least one per order in it (so never less than the orders it may place)
        n = _batch_size(p)
        return (*weight, (FUTURES_ORDERS, max(5, n)), (FUTURES_ORDERS_MINUTE, n))
    return weight


def binance_connection_costs(path: str) -> tuple[tuple[Budget, int], ...]:
    """What opening a spot WebSocket costs: a connection of its service's 300 per 5 minutes per IP, and 2 of the
    request weight for the WebSocket API; () for the futures hosts' (not modelled)."""
    if path.startswith("/ws-api/"):
        return ((WS_API_CONNECTIONS, 1), (SPOT_WEIGHT, 2))
    if path in ("/ws", "/stream") or path.startswith("/ws/") and "@" in path:  # `/ws/<listenKey>`: COIN-M's
        return ((STREAM_CONNECTIONS, 1),)
    return ()
