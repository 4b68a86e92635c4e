"""OKX algo orders (docs-v5 "Order Book Trading > Algo Trading"): stops, take-profits and trigger orders.

ccxt sends every OKX order with `stopLossPrice`, `takeProfitPrice` or `triggerPrice` to `POST
/api/v5/trade/order-algo` (freqtrade's stoploss on exchange among them), answered with an `algoId` from an id space
apart from `ordId`, cancelled at `POST /api/v5/trade/cancel-algos` (`[{algoId, instId}]`, ten at most) and read at
`GET /api/v5/trade/order-algo` (`algoId`), `orders-algo-pending` and `orders-algo-history` (each filtered by an
`ordType`: only `conditional,oco` may be asked together). Triggered, an algo order places a regular order, named in
its `ordIdList` (and `ordId`, "will be deprecated"), which carries the `algoId`.

keyproxy reads two shapes, each as the single order it becomes: a `conditional` order with one trigger
(`slTriggerPx` or `tpTriggerPx`; its order price `slOrdPx` / `tpOrdPx`, "-1" at the market) and a `trigger` order
(`triggerPx`, `orderPx`, "-1" at the market). The others (`oco` and a `conditional` with both triggers: two prices;
trailing, TWAP, iceberg and chase orders) are not read: refused to a bot with trading limits. keyproxy writes an
algo order's id `algo#<algoId>` (as Binance's), so neither a book nor a record takes it for an order id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlencode

from keyproxy.exchanges._fills import loads, qty
from keyproxy.exchanges.base import ALGO, OrderBookChange, OrderUpdate, amount, leg_order_ids, param_text, published
from keyproxy.policy.model import RequestFacts, normalize_symbol

ORDER_ALGO = "/api/v5/trade/order-algo"  # POST places one; GET reads one by algoId
CANCEL_ALGOS = "/api/v5/trade/cancel-algos"
PENDING = "/api/v5/trade/orders-algo-pending"
HISTORY = "/api/v5/trade/orders-algo-history"
QUERIES = frozenset({ORDER_ALGO, PENDING, HISTORY})
# where a bot's open algo orders are counted under max_open_orders: one scope for the account, as OKX lists them (a
# listing names no instrument type unless asked to, and a cancel names its algoId): set only by keyproxy's own
# listing of every kind a bot may place (`COUNT_LISTINGS`), since a bot's listing is always of one kind
SCOPE = "algo:*"
# the kinds a bounded bot may place, listed whole (`ordType` is mandatory; `conditional,oco` the one pair allowed)
COUNT_LISTINGS = ("conditional,oco", "trigger")
# a halt's sweep lists these too: ccxt's trailing stop (`move_order_stop`) as well
SWEPT_KINDS = (*COUNT_LISTINGS, "move_order_stop")
_ENDED = ("canceled", "order_failed")
# the parameters each shape's one order takes (docs-v5 "Place algo order"; ccxt adds `clOrdId` and `tag`): any other
# set (a `tpOrdPx` with `tpOrdKind` "limit" rests a take-profit at once beside a stop; a trigger order's own
# `slTriggerPx`) makes another order of it, which keyproxy does not read (session 30's review)
_COMMON = frozenset({"instId", "instIdCode", "tdMode", "side", "ordType", "sz", "closeFraction", "algoClOrdId",
                     "clOrdId", "tag", "posSide", "reduceOnly", "tgtCcy", "ccy", "tradeQuoteCcy", "cxlOnClosePos"})
_TAKES = {"sl": _COMMON | {"slTriggerPx", "slOrdPx", "slTriggerPxType"},
          "tp": _COMMON | {"tpTriggerPx", "tpOrdPx", "tpTriggerPxType", "tpOrdKind"},
          "trigger": _COMMON | {"triggerPx", "orderPx", "triggerPxType", "advanceOrdType", "attachAlgoOrds"}}
MAX_CANCELS = 10  # "A maximum of 10 orders can be canceled per request"


def algo_facts(params: Mapping[str, object], order_facts: object) -> RequestFacts:
    """The order an algo order becomes, valued as `okx_facts._order` values a regular one (`order_facts`), at its
    trigger: a `conditional` order's one trigger, or a `trigger` order's. `orderPx`/`slOrdPx`/`tpOrdPx` "-1" (or
    none) is a market order on trigger. A spot market buy's size unit is stated only by a conditional order's
    `tgtCcy` ("Only applicable to SPOT traded with Market buy conditional order"): unstated, or on a trigger order,
    its size is not known. A trigger order's `reduceOnly` is not among its documented parameters: not believed.
    Its `attachAlgoOrds` become orders of their own (untracked), as do a regular order's."""
    inst = param_text(params, "instId")
    symbol = normalize_symbol(inst) if inst else None
    kind = (param_text(params, "ordType") or "").lower()
    stop, profit = param_text(params, "slTriggerPx"), param_text(params, "tpTriggerPx")
    if kind == "conditional" and bool(stop) != bool(profit):
        shape = "sl" if stop else "tp"
        trigger, price = (stop, param_text(params, "slOrdPx")) if stop else (profit, param_text(params, "tpOrdPx"))
    elif kind == "trigger":
        shape, trigger, price = "trigger", param_text(params, "triggerPx"), param_text(params, "orderPx")
    else:
        return RequestFacts(action=None, symbol=symbol)
    given = {k for k, v in params.items() if v not in (None, "", [], {})}  # python-okx sends every option as ""
    if given - _TAKES[shape] or param_text(params, "tpOrdKind") not in (None, "", "condition") \
            or param_text(params, "advanceOrdType") not in (None, "", "fok", "ioc"):
        return RequestFacts(action=None, symbol=symbol)
    at_market = price in (None, "", "-1")
    regular = {k: v for k, v in params.items() if k not in ("px", "tgtCcy", "attachAlgoOrds", "reduceOnly")}
    regular.update(ordType="market" if at_market else "limit")
    if not at_market:
        regular["px"] = price
    side = (param_text(params, "side") or "").lower()
    if kind == "conditional" and side == "buy" and param_text(params, "tgtCcy"):  # a market buy's, documented
        regular["tgtCcy"] = param_text(params, "tgtCcy")
    if kind == "conditional" and "reduceOnly" in params:
        regular["reduceOnly"] = params["reduceOnly"]
    facts: RequestFacts = order_facts(regular)  # type: ignore[operator]
    spot_market_buy = facts.market == "spot" and at_market and side == "buy"
    if spot_market_buy and not (kind == "conditional" and param_text(params, "tgtCcy")):
        facts = replace(facts, quantity=None, quote_quantity=None)
    attached = params.get("attachAlgoOrds")
    whole = param_text(params, "closeFraction")
    untracked = ("OKX places an algo order's attached take-profit or stop-loss as orders of its own"
                 if attached not in (None, "", [], {}) else
                 "OKX closes the whole position (closeFraction), every bot's share of it" if whole else None)
    return replace(facts, conditional=True, trigger_price=amount(trigger), untracked=untracked,
                   quantity=None if whole and facts.quantity is None else facts.quantity)


def algo_cancels(named: list[dict[str, object]]) -> tuple[str, ...] | None:
    """`cancel-algos`: the algo orders it names, by `algoId` (None: one is named by its `algoClOrdId`, whose owner
    keyproxy does not record: judged as a cancel of every algo order)."""
    ids = tuple(param_text(d, "algoId") for d in named)
    return tuple(ALGO + i for i in ids if i) if named and all(ids) else None


def algo_book_change(path: str, status: int, doc: object, unknown_fate: str) -> OrderBookChange:
    """An algo order accepted (`sCode` "0", or a fate unknown: counted), algo orders cancelled (each `sCode` "0"),
    from the answer's parsed document (None: unreadable)."""
    if path == ORDER_ALGO:
        if isinstance(doc, dict) and doc.get("code") == unknown_fate:
            return OrderBookChange(opened=(SCOPE,))
        data = doc.get("data") if isinstance(doc, dict) and 200 <= status < 300 else None
        took = isinstance(data, list) and any(isinstance(d, dict) and d.get("sCode") == "0" for d in data)
        unread = 200 <= status < 300 and not isinstance(doc, dict)
        return OrderBookChange(opened=(SCOPE,)) if took or unread else OrderBookChange()
    data = doc.get("data") if isinstance(doc, dict) and 200 <= status < 300 else None
    done = sum(1 for d in data if isinstance(d, dict) and d.get("sCode") == "0") if isinstance(data, list) else 0
    return OrderBookChange(closed=(SCOPE,) * done)


def algo_placed_ids(data: object) -> tuple[str, ...]:
    """An algo order's answer: its `algo#<algoId>` in its leg's place ("" refused)."""
    return tuple(ALGO + i if i else "" for i in leg_order_ids(data, "algoId", lambda d: d.get("sCode") == "0"))


def _updates(o: object) -> list[OrderUpdate]:
    """One algo order as OKX lists it: for the positions book (which holds spot orders only: the markets whose fills
    keyproxy reads) and the record (what it became is its placer's, in every market). Ended when cancelled or
    failed, or triggered once it names the orders it became (`ordIdList`, else `ordId`): one update for each."""
    from keyproxy.exchanges.okx_facts import market_of  # okx_facts reads algo orders with this module

    if not isinstance(o, dict) or not isinstance(o.get("algoId"), str) or not isinstance(o.get("instId"), str):
        return []
    market = market_of(o["instId"])
    if market is None or o.get("side") not in ("buy", "sell") or not o["algoId"]:
        return []
    became = o.get("ordIdList")
    spawned = [str(i) for i in became[:100] if isinstance(i, str) and i] if isinstance(became, list) else []
    if not spawned and isinstance(o.get("ordId"), str) and o["ordId"]:
        spawned = [o["ordId"]]
    state = o.get("state")
    size = published(o.get("sz")) if market == "spot" and o.get("tgtCcy") != "quote_ccy" else None
    zero = qty("0")
    assert zero is not None
    final = state in _ENDED or state == "effective" and bool(spawned)
    return [OrderUpdate(ALGO + o["algoId"], f"{market}:{normalize_symbol(o['instId'])}", o["side"], None, size,
                        zero, zero, final, child) for child in spawned or [""]]


def algo_updates(method: str, path: str, status: int, body: bytes) -> tuple[OrderUpdate, ...]:
    """Algo orders read (`order-algo`, pending, history) or cancelled (`cancel-algos`: each `sCode` "0" ended)."""
    if status != 200:
        return ()
    doc = loads(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return ()
    if method == "POST" and path == CANCEL_ALGOS:
        zero = qty("0")
        assert zero is not None
        return tuple(OrderUpdate(ALGO + i, "", "", None, None, zero, zero, True)
                     for i in leg_order_ids(data, "algoId", lambda d: d.get("sCode") == "0") if i)
    if method != "GET" or path not in QUERIES or doc.get("code") != "0":
        return ()
    return rows_updates(data)


def rows_updates(data: object) -> tuple[OrderUpdate, ...]:
    """Algo order rows (a read's `data`, or the private WebSocket's `orders-algo` channel's) as updates."""
    return tuple(u for o in (data[:1000] if isinstance(data, list) else []) for u in _updates(o))


def algo_query_request(order_id: str) -> tuple[str, str, str, bytes] | None:
    """`GET order-algo?algoId=ID`: one algo order, triggered or not (`algo#` ids only)."""
    bare = order_id.removeprefix(ALGO)
    if not order_id.startswith(ALGO) or not bare.isdigit():
        return None
    return ("GET", ORDER_ALGO, urlencode({"algoId": bare}), b"")


def count_listings() -> list[tuple[str, str, str, bytes]]:
    """keyproxy's own listings that show every algo order a bounded bot may have resting (`SCOPE`)."""
    return [pending_listing(kind) for kind in COUNT_LISTINGS]


def pending_listing(kind: str) -> tuple[str, str, str, bytes]:
    """`GET orders-algo-pending` of one kind (`conditional,oco` with its comma as written: the query is signed as
    sent, and an HTTP client may send `%2C` as `,`)."""
    return ("GET", PENDING, f"ordType={kind}&limit=100", b"")
