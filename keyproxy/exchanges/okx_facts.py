"""What an OKX request would do, for policy (`Adapter.facts`), and last prices from tickers (`Adapter.prices`).

Parameters per OKX docs-v5 (Trade "Place order", Account "Set leverage", Funding "Withdrawal"):
`trade/order` takes `instId`, `tdMode`, `side`, `ordType`, `sz`, `px` (only for limit, post_only,
fok, ioc), `tgtCcy`, `reduceOnly`; `sz` is in base currency on spot instruments (`BASE-QUOTE`),
except that a SPOT market order counts in `tgtCcy` ("Default is quote_ccy for buy, base_ccy for
sell"), and in contracts for SWAP/FUTURES/OPTION (`BTC-USDT-SWAP`, `BTC-USD-250328`, ...), which
keyproxy cannot value without the contract size: quantity unknown. `account/set-leverage`
takes `lever` and `instId` (or `ccy`); `asset/withdrawal` `ccy`, `amt`, `toAddr`, `chain`
(`USDT-TRC20`). Algo orders: okx_algo.py. Anything keyproxy cannot read fully (algo orders of other shapes, bots,
copy trading, spread and block trades) is `action=None`, refused when the bot has trading limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import parse_qsl

from keyproxy.exchanges.base import (
    ALGO,
    published,
    whole_listing,
    OrderBookChange,
    BadRequest,
    Endpoint,
    EndpointClass,
    IncomingRequest,
    amount,
    param_text,
    param_true,
    DuplicateMember,
    unique_members,
)
from keyproxy.exchanges.okx_algo import CANCEL_ALGOS, ORDER_ALGO, algo_book_change, algo_cancels, algo_facts
from keyproxy.policy.model import RequestFacts, normalize_symbol

_CANCELS = frozenset("/api/v5/" + p for p in (
    "trade/cancel-order", "trade/cancel-batch-orders", "trade/mass-cancel", "trade/cancel-all-after",
    "trade/cancel-algos", "trade/cancel-advance-algos", "sprd/cancel-order", "sprd/mass-cancel",
    "sprd/cancel-all-after", "rfq/cancel-rfq", "rfq/cancel-batch-rfqs", "rfq/cancel-all-rfqs", "rfq/cancel-quote",
    "rfq/cancel-batch-quotes", "rfq/cancel-all-quotes", "rfq/cancel-all-after",
))
# trade-class endpoints that change settings or margin but place no order
_NO_ORDER = frozenset("/api/v5/" + p for p in (
    "account/set-position-mode", "account/set-greeks", "account/set-isolated-mode", "account/set-fee-type",
    "account/set-riskOffset-type", "account/set-riskOffset-amt", "account/activate-option", "account/set-auto-loan",
    "account/account-level-switch-preset", "account/set-account-level", "account/set-collateral-assets",
    "account/mmp-reset", "account/mmp-config", "account/set-settle-currency", "account/set-trading-config",
    "account/set-auto-repay", "account/position/margin-balance", "trade/order-precheck",
    "rfq/maker-instrument-settings",
    "rfq/mmp-reset", "rfq/mmp-config",
))
_FIAT_WITHDRAWAL = "/api/v5/fiat/create-withdrawal"
_MARGIN_BALANCE = "/api/v5/account/position/margin-balance"  # type "add" or "reduce"
UNKNOWN_FATE = "50004"  # "API endpoint request timeout (does not mean that the request was successful or failed)"
_BATCH_PLACE, _BATCH_AMEND = "/api/v5/trade/batch-orders", "/api/v5/trade/amend-batch-orders"
_AMEND = "/api/v5/trade/amend-order"
_CANCEL_ONE, _CANCEL_BATCH = "/api/v5/trade/cancel-order", "/api/v5/trade/cancel-batch-orders"
# every order of an instrument type and family, or of the account once the timer runs out
_EVERY_ORDER = frozenset({"/api/v5/trade/mass-cancel", "/api/v5/trade/cancel-all-after"})
_ALGO_CANCELS = frozenset({"/api/v5/trade/cancel-algos", "/api/v5/trade/cancel-advance-algos"})
MAX_BATCH = 20  # "Place multiple orders": at most 20 orders per request
_PRICED = ("limit", "post_only", "fok", "ioc", "mmp", "mmp_and_post_only")  # the ordTypes that execute at `px`
_AT_MARKET = ("market", "optimal_limit_ioc")  # `px` is ignored


def market_of(inst: str | None) -> str | None:
    """The OKX market an instrument id names: `BTC-USDT` spot (cash or margin: one order book, so one
    open-order scope), `BTC-USDT-SWAP` swap, `BTC-USD-250328` futures, `BTC-USD-250328-60000-C` option."""
    if not inst:
        return None
    parts = inst.split("-")
    if len(parts) == 2:
        return "spot"
    if len(parts) == 3:
        return "swap" if parts[2] == "SWAP" else "futures"
    return "option" if len(parts) == 5 else None


def _contract(inst: str, market: str | None) -> str | None:
    """Swaps and futures count contracts: USDT/USDC-settled ones (`BTC-USDT-SWAP`) hold `ctVal` base coins
    ("linear"), coin-margined ones (`BTC-USD-SWAP`) are worth `ctVal` USD each ("inverse")."""
    if market not in ("swap", "futures"):
        return None
    return "inverse" if inst.split("-")[1] == "USD" else "linear"


def _body(req: IncomingRequest) -> object:
    if not req.body.strip():
        return {}
    try:
        return json.loads(req.body.decode("utf-8"), object_pairs_hook=unique_members)
    except DuplicateMember as exc:
        raise BadRequest(str(exc)) from None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed JSON body") from None


def _code(value: object) -> int | None:
    """An `instIdCode` as OKX writes it (an integer, or ASCII digits); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _named(params: dict[str, object], markets: Mapping[str, str]) -> dict[str, object]:
    """An order or cancel that names its instrument by `instIdCode` (ccxt.pro over the WebSocket) gets the
    `instId` the exchange published for that code. OKX executes the code when both are sent, so a code that
    names another instrument than `instId` is refused, as is one keyproxy has not seen published."""
    code = params.get("instIdCode")
    if code is None or code == "":
        return params
    number = _code(code)
    if number is None:
        raise BadRequest("instIdCode must be a number")
    name = markets.get(f"#{number}")
    if name is None:
        raise BadRequest(f"instIdCode {code} is not among the instruments the exchange published "
                         "(public/instruments): load the markets through keyproxy first")
    given = param_text(params, "instId")
    if given is not None and given != name:
        raise BadRequest(f"instIdCode {code} is {name}, not {given}")
    return {**params, "instId": name}


def _once(ids: object) -> None:
    """A cancel naming one order twice (`881` and `0881` are one order to a reader of numbers) is refused: each
    confirmed leg of it would free a place under the bot's max_open_orders (session 30's review)."""
    seen: set[str] = set()
    for i in ids:  # type: ignore[attr-defined]
        if not i:
            continue
        text = str(i).strip()
        try:
            key = str(int(text))
        except ValueError:  # not a number (or one no reader takes: `-+5`, `²`, 5,000 digits)
            key = text
        if key in seen:
            raise BadRequest(f"a cancel names the order {str(i)[:40]!r} twice")
        seen.add(key)


def okx_market_ids(body: bytes) -> tuple[str, ...]:
    """`#<instIdCode>` of each order or cancel in a trade body that names its instrument by code."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return ()
    items = doc if isinstance(doc, list) else [doc]
    return tuple(f"#{code}" for d in items if isinstance(d, dict) and (code := _code(d.get("instIdCode"))) is not None)


def okx_market_names(path: str, body: bytes) -> dict[str, str]:
    """`#<instIdCode>` -> instId, from a public/instruments answer."""
    if path != "/api/v5/public/instruments":
        return {}
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return {}
    data = doc.get("data") if isinstance(doc, dict) else None
    out = {}
    for item in data if isinstance(data, list) else ():
        code = _code(item.get("instIdCode")) if isinstance(item, dict) else None
        if code is not None and isinstance(item.get("instId"), str):
            out[f"#{code}"] = item["instId"]
    return out


def okx_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    if endpoint.cls is EndpointClass.PUBLIC or endpoint.cls is EndpointClass.READ:
        return RequestFacts(action="other")
    doc = _body(req)
    if isinstance(doc, dict):
        doc = _named(doc, req.markets)
    elif isinstance(doc, list):
        doc = [_named(d, req.markets) if isinstance(d, dict) else d for d in doc]
    params = doc if isinstance(doc, dict) else {}
    inst = param_text(params, "instId")
    symbol = normalize_symbol(inst) if inst else None
    path = req.path
    if path in _CANCELS:
        first = doc[0] if isinstance(doc, list) and doc and isinstance(doc[0], dict) else params
        inst = inst or param_text(first, "instId")
        # a cancel-batch names one instrument per leg: counted in the first leg's scope
        named = [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else [params]
        orders = path in (_CANCEL_ONE, _CANCEL_BATCH)  # the orders it names (only the bot's own: OrderOwners.only_own)
        for name in ("ordId", "clOrdId", "algoId", "algoClOrdId"):
            _once(param_text(d, name) for d in named)
        if path in _ALGO_CANCELS and (algos := algo_cancels(named)) is not None:  # by algoId, each its placer's
            return RequestFacts(action="cancel", symbol=normalize_symbol(inst) if inst else None,
                                market=market_of(inst), cancels=algos)
        # every order, or orders keyproxy cannot attribute (spread, rfq ids; an algo order without its algoId):
        # judged as a cancel of every order (refused while another bot's orders rest), over every instrument its
        # legs name (one scope: where they name more than one, every market's)
        every = path in _EVERY_ORDER or not orders
        if path in _ALGO_CANCELS:  # by algoClOrdId (the account's ids): whether OKX reads its instId is not
            inst = None  # documented, so judged over every market (session 30's review)
        disarms = path.endswith("/cancel-all-after") and param_text(params, "timeOut") == "0"  # 0: the timer off
        if every and len({param_text(d, "instId") for d in named}) > 1:
            inst = None
        return RequestFacts(action="cancel", symbol=normalize_symbol(inst) if inst else None, market=market_of(inst),
                            cancels=tuple(i for d in named if (i := param_text(d, "ordId"))) if orders else (),
                            cancels_by_client=tuple(i for d in named if (i := param_text(d, "clOrdId")))
                            if orders else (),
                            cancels_all=every and not disarms, cancels_unlisted=every and path not in _EVERY_ORDER,
                            cancels_later=path.endswith("/cancel-all-after") and not disarms)
    if path == "/api/v5/trade/order" and isinstance(doc, dict):
        return _order(params)
    if path == ORDER_ALGO and isinstance(doc, dict):
        return algo_facts(params, _order)
    if path in (_BATCH_PLACE, _BATCH_AMEND):
        return _batch(doc, "order" if path == _BATCH_PLACE else "amend")
    if path == _AMEND and isinstance(doc, dict):
        return _amend(params)
    if path == "/api/v5/trade/close-position":
        # closes a whole position; in long/short mode (posSide long or short) one leg of it; with `autoCxl` it also
        # cancels the position's pending close orders, whoever placed them: judged as a cancel-all of the instrument
        # (session 25's review)
        market = market_of(param_text(params, "instId"))
        return RequestFacts(action="order", symbol=symbol, market=market,
                            reduce_only=True, hedged=_hedge_leg(params), cancels_all=param_true(params, "autoCxl"),
                            # a spot margin position, which keyproxy books: OKX closes it by a market order its answer
                            # names no id of, so the book kept the position it closed (session 32's review)
                            unfollowed="OKX closes a margin position by an order no answer names" if market == "spot"
                            else None)
    if path == "/api/v5/account/set-leverage":
        return RequestFacts(action="leverage", symbol=symbol, leverage=amount(param_text(params, "lever")))
    if path == "/api/v5/asset/withdrawal":
        chain = param_text(params, "chain")
        network = chain.split("-", 1)[1] if chain and "-" in chain else chain
        return RequestFacts(action="withdraw", asset=(param_text(params, "ccy") or "").upper() or None,
                            address=param_text(params, "toAddr"), network=network.upper() if network else None,
                            amount=amount(param_text(params, "amt")))
    if path == "/api/v5/asset/withdrawal-lightning":
        # the amount is inside the invoice, which keyproxy does not decode
        return RequestFacts(action="withdraw", asset=(param_text(params, "ccy") or "").upper() or None,
                            address=param_text(params, "invoice"), network="LIGHTNING")
    if path == _FIAT_WITHDRAWAL:
        method = param_text(params, "paymentMethod")
        return RequestFacts(action="withdraw", asset=(param_text(params, "ccy") or "").upper() or None,
                            address=param_text(params, "paymentAcctId"), network=method.upper() if method else None,
                            amount=amount(param_text(params, "amt")))
    if path == "/api/v5/trade/amend-algos" and isinstance(doc, dict):  # unread (refused under trading limits),
        # and another bot's algo order is never this bot's to change: named by its algoId (an algoClOrdId: refused)
        algo = param_text(params, "algoId")
        return RequestFacts(action=None, symbol=symbol, touches=(ALGO + algo if algo else None,))
    if path == _MARGIN_BALANCE and param_text(params, "type") != "add":
        # margin taken out of an isolated position raises its leverage by an amount keyproxy cannot compute (it
        # depends on the position): a leverage change of unknown value, refused under max_leverage (session 27's
        # review); adding margin lowers it
        return RequestFacts(action="leverage", symbol=symbol, market=market_of(inst) if inst else None)
    if path in _NO_ORDER:
        return RequestFacts(action="other", symbol=symbol)
    if endpoint.cls is EndpointClass.TRADE:
        # unread (refused under trading limits); an order or algo order it names (a spread order's amend, a trading
        # bot's stop, amend or close) is never another bot's to change, whatever the bot's limits (session 32's review)
        return RequestFacts(action=None, symbol=symbol, touches=_touched(path, doc))
    return RequestFacts(action="other", symbol=symbol)


def _touched(path: str, doc: object) -> tuple[str | None, ...]:
    """The existing orders an unread trade request names: `ordId`, `algoId` (as `algo#<algoId>`); a spread order's
    amend by `clOrdId` alone names one keyproxy cannot check (None: refused)."""
    out: list[str | None] = []
    for item in doc if isinstance(doc, list) else [doc]:
        if not isinstance(item, dict):
            continue
        if order := param_text(item, "ordId"):
            out.append(order)
        elif path == "/api/v5/sprd/amend-order" and param_text(item, "clOrdId"):
            out.append(None)
        if algo := param_text(item, "algoId"):
            out.append(ALGO + algo)
    return tuple(out)


def okx_prices(path: str, body: bytes) -> dict[str, Decimal]:
    """Last prices from `GET /api/v5/market/ticker(s)` answers that pass through."""
    if path not in ("/api/v5/market/ticker", "/api/v5/market/tickers"):
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    data = doc.get("data") if isinstance(doc, dict) else None
    out: dict[str, Decimal] = {}
    for item in data if isinstance(data, list) else ():
        value = published(item.get("last")) if isinstance(item, dict) and isinstance(item.get("instId"), str) else None
        if value is not None:
            out[normalize_symbol(item["instId"])] = value
    return out


def _order(params: dict[str, object]) -> RequestFacts:
    """One order valued by the fields OKX executes for its `ordType` (docs-v5 Trade "Place order").

    `px` counts for the priced types only; a `px` on `market` / `optimal_limit_ioc` is ignored by OKX, so
    keyproxy refuses it under a notional limit (conflict), as it does options priced by `pxUsd`/`pxVol`.
    `sz` is base currency on spot (a SPOT market order in `tgtCcy`: "Default is quote_ccy for buy,
    base_ccy for sell"), contracts on swaps and futures (valued with `ctVal` from public/instruments).
    """
    inst = param_text(params, "instId")
    symbol = normalize_symbol(inst) if inst else None
    td_mode = param_text(params, "tdMode")
    market = market_of(inst)
    order_type = (param_text(params, "ordType") or "").lower()
    side = (param_text(params, "side") or "").lower()
    size = amount(param_text(params, "sz"))
    price = amount(param_text(params, "px"))
    conflict = None
    if order_type in _AT_MARKET and price is not None:
        conflict, price = f"OKX ignores px on a {order_type} order", None
    elif order_type not in _PRICED and order_type not in _AT_MARKET:
        conflict, price = f"ordType {order_type or '(none)'} is not valued by keyproxy", None
    if param_text(params, "pxUsd") or param_text(params, "pxVol"):
        conflict, price = "an option priced by pxUsd or pxVol", None
    spot, cash = market == "spot", td_mode == "cash"
    base = quote = False
    if spot and order_type not in _AT_MARKET:
        base = True
    elif spot and cash:
        # tgtCcy: "Only applicable to SPOT Market Orders. Default is quote_ccy for buy, base_ccy for sell"
        unit = param_text(params, "tgtCcy") or ("quote_ccy" if side == "buy" else "base_ccy")
        base, quote = unit == "base_ccy", unit == "quote_ccy"
    contract = _contract(inst or "", market)
    # margin market orders' unit is not documented, options are not valued: quantity unknown
    return RequestFacts(
        action="order", symbol=symbol, market=market, side=side.upper() or None,
        order_type=order_type.upper() or None, quantity=size if base or contract else None,
        quote_quantity=size if quote else None, price=price, contract=contract, conflict=conflict,
        size_unsure=order_type not in _PRICED and order_type not in _AT_MARKET,  # how such a type sizes: unread
        # reduceOnly: "Only applicable to MARGIN orders, and FUTURES/SWAP orders in net mode": a cash order's flag
        # means nothing, nor one in long/short mode (a `posSide` of long or short: buy+long opens a long whatever the
        # flag says; the bot can switch the account's mode itself) or an option's; a spot margin order (cross,
        # isolated) borrows automatically; any other tdMode (spot_isolated, spot lead trading: no margin) is no margin
        # order either, so its flag is not believed (session 35's review: a spot_isolated buy passed as reducing)
        reduce_only=param_true(params, "reduceOnly") and td_mode in ("cross", "isolated") and market != "option"
        and not _hedge_leg(params),
        borrows=spot and td_mode in ("cross", "isolated"), untracked=_attached(params),
        client_id=param_text(params, "clOrdId") or None,  # never another bot's (OrderOwners.own_client_ids)
        # self-trade prevention asked to cancel the resting order met (OKX's default for the master account may do
        # the same: there the self-cross check is the guard)
        cancels_met=(param_text(params, "stpMode") or "").lower() in ("cancel_maker", "cancel_both"))


def _hedge_leg(params: Mapping[str, object]) -> bool:
    """A `posSide` other than net names one leg of a long/short-mode position."""
    return (param_text(params, "posSide") or "net").lower() != "net"


def _attached(params: dict[str, object]) -> str | None:
    """Take-profit / stop-loss attached to an order (`attachAlgoOrds`, or the older `tpTriggerPx`/`slTriggerPx`):
    OKX places them as algo orders of its own, whose fills no answer to the bot names."""
    algos = params.get("attachAlgoOrds")
    keys = ("tpTriggerPx", "slTriggerPx", "newTpTriggerPx", "newSlTriggerPx")  # new*: an amend's (ccxt edit_order)
    if (isinstance(algos, list) and algos) or any(param_text(params, k) for k in keys):
        return "OKX places an attached take-profit or stop-loss as orders of its own"
    return None


def _amend(params: dict[str, object]) -> RequestFacts:
    """`amend-order`: the order is worth `newSz` x `newPx` afterwards; keyproxy does not know the size or
    price left unchanged, so an amend without both cannot be valued (refused under a notional limit)."""
    inst = param_text(params, "instId")
    market = market_of(inst)
    return RequestFacts(action="amend", symbol=normalize_symbol(inst) if inst else None, market=market,
                        quantity=amount(param_text(params, "newSz")), price=amount(param_text(params, "newPx")),
                        contract=_contract(inst or "", market), order_id=param_text(params, "ordId") or None,
                        untracked=_attached(params))


def _batch(doc: object, action: str) -> RequestFacts:
    """`batch-orders` / `amend-batch-orders`: a JSON list of at most 20 orders, read one by one; the batch
    is allowed or refused as a whole."""
    if not isinstance(doc, list) or not doc or not all(isinstance(o, dict) for o in doc):
        raise BadRequest("a batch is a non-empty JSON list of order objects")
    if len(doc) > MAX_BATCH:
        raise BadRequest(f"a batch holds at most {MAX_BATCH} orders, not {len(doc)}")
    legs = tuple(_order(o) if action == "order" else _amend(o) for o in doc)
    symbols = {leg.symbol for leg in legs}
    return RequestFacts(action=action, symbol=symbols.pop() if len(symbols) == 1 else None, orders=legs)


def okx_contract_sizes(path: str, body: bytes) -> dict[str, Decimal]:
    """`ctVal` of swaps and futures from `GET /api/v5/public/instruments` answers, by scope `market:SYMBOL`."""
    if path != "/api/v5/public/instruments":
        return {}
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return {}
    out: dict[str, Decimal] = {}
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or item.get("instType") not in ("SWAP", "FUTURES"):
            continue
        inst, value, mult = item.get("instId"), published(item.get("ctVal")), published(item.get("ctMult") or 1)
        if isinstance(inst, str) and value is not None and mult is not None:
            out[f"{market_of(inst)}:{normalize_symbol(inst)}"] = value * mult
    return out


def okx_order_book_change(method: str, path: str, query: str, request_body: bytes, status: int, body: bytes,
                          facts: RequestFacts) -> OrderBookChange:
    """Only what OKX confirmed: each order or cancel whose `sCode` is "0" (a cancel of an unknown order is
    HTTP 200 with sCode 51400: nothing), and `orders-pending` for exactly one instrument, answered in full,
    sets its count."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if path in (ORDER_ALGO, CANCEL_ALGOS) and facts.action in ("order", "cancel"):
        return algo_book_change(path, status, doc, UNKNOWN_FATE)
    if facts.action == "order" and isinstance(doc, dict) and doc.get("code") == UNKNOWN_FATE:
        # "does not mean that the request was successful or failed": the orders may rest, so they are counted (a
        # listing of the bot's open orders sets the count right); freed, a bot could rest any number this way
        return OrderBookChange(opened=tuple(leg.scope for leg in facts.placed()))
    if not 200 <= status < 300:
        return OrderBookChange()
    data = doc.get("data") if isinstance(doc, dict) else None
    if facts.action == "order":
        legs = facts.placed()
        if isinstance(data, list) and len(data) == len(legs):
            return OrderBookChange(opened=tuple(leg.scope for leg, d in zip(legs, data)
                                                if isinstance(d, dict) and d.get("sCode") == "0"))
        if isinstance(doc, dict) and doc.get("code") not in (None, "0", "2"):
            return OrderBookChange()  # refused as a whole
        return OrderBookChange(opened=tuple(leg.scope for leg in legs))  # unreadable: counted
    if facts.action == "cancel" and isinstance(data, list) and path in ("/api/v5/trade/cancel-order",
                                                                        "/api/v5/trade/cancel-batch-orders"):
        try:
            sent = json.loads(request_body)
        except ValueError:
            sent = None
        sent = sent if isinstance(sent, list) else [sent]
        closed = []
        for n, d in enumerate(data):  # answers come in the order of the request's legs
            leg = sent[n] if n < len(sent) and isinstance(sent[n], dict) else {}
            inst = param_text(leg, "instId") if leg else None
            if isinstance(d, dict) and d.get("sCode") == "0":
                closed.append(f"{market_of(inst)}:{normalize_symbol(inst)}" if inst else facts.scope)
        return OrderBookChange(closed=tuple(closed))
    if method == "GET" and path == "/api/v5/trade/orders-pending" and isinstance(data, list) \
            and isinstance(doc, dict) and doc.get("code") == "0":
        params = dict(parse_qsl(query, keep_blank_values=True))
        inst = params.get("instId")
        # OKX pages at 100 ("limit: the maximum is 100"): a larger `limit` read as the page size took a full page of
        # 100 for a whole listing (session 32's review)
        limit = min(int(params["limit"]), 100) if params.get("limit", "").isdigit() else 100
        # filtered by `ordType`, `state`, a page (`after`/`before`) or `instType` (cash and margin orders share a
        # scope), it shows part of the instrument's orders
        # an instId spelled otherwise than OKX spells it (`btc-usdt`) may list nothing while the orders rest
        if inst and inst == inst.upper() and len(data) < limit and whole_listing(query, ("instId", "limit")):
            return OrderBookChange(counted=((f"{market_of(inst)}:{normalize_symbol(inst)}", len(data)),))
    return OrderBookChange()
