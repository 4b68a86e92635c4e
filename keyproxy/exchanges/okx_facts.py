"""What an OKX request would do, for policy (`Adapter.facts`), and last prices from tickers (`Adapter.prices`).

Parameters per OKX docs-v5 (Trade "Place order", Account "Set leverage", Funding "Withdrawal"):
`trade/order` takes `instId`, `tdMode`, `side`, `ordType`, `sz`, `px` (only for limit, post_only,
fok, ioc), `tgtCcy`, `reduceOnly`; `sz` is in base currency on spot instruments (`BASE-QUOTE`),
except that a SPOT market order counts in `tgtCcy` ("Default is quote_ccy for buy, base_ccy for
sell"), and in contracts for SWAP/FUTURES/OPTION (`BTC-USDT-SWAP`, `BTC-USD-250328`, ...), which
keyproxy cannot value without the contract size: quantity unknown. `account/set-leverage`
takes `lever` and `instId` (or `ccy`); `asset/withdrawal` `ccy`, `amt`, `toAddr`, `chain`
(`USDT-TRC20`). Anything keyproxy cannot read fully (batch and algo orders, bots, copy trading,
spread and block trades, amendments) is `action=None`, refused when the bot has trading limits.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from keyproxy.exchanges.base import (
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
    "account/set-auto-repay", "account/position/margin-balance", "trade/order-precheck", "rfq/maker-instrument-settings",
    "rfq/mmp-reset", "rfq/mmp-config",
))
_FIAT_WITHDRAWAL = "/api/v5/fiat/create-withdrawal"


def _body(req: IncomingRequest) -> object:
    if not req.body.strip():
        return {}
    try:
        return json.loads(req.body.decode("utf-8"), object_pairs_hook=unique_members)
    except DuplicateMember as exc:
        raise BadRequest(str(exc)) from None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed JSON body") from None


def okx_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    if endpoint.cls is EndpointClass.PUBLIC or endpoint.cls is EndpointClass.READ:
        return RequestFacts(action="other")
    doc = _body(req)
    params = doc if isinstance(doc, dict) else {}
    inst = param_text(params, "instId")
    symbol = normalize_symbol(inst) if inst else None
    path = req.path
    if path in _CANCELS:
        return RequestFacts(action="cancel", symbol=symbol)
    if path == "/api/v5/trade/order" and isinstance(doc, dict):
        order_type = (param_text(params, "ordType") or "").lower()
        side = (param_text(params, "side") or "").lower()
        size = amount(param_text(params, "sz"))
        spot = inst is not None and inst.count("-") == 1
        base = quote = False
        if spot and order_type != "market":
            base = True
        elif spot and param_text(params, "tdMode") == "cash":
            # tgtCcy: "Only applicable to SPOT Market Orders. Default is quote_ccy for buy, base_ccy for sell"
            unit = param_text(params, "tgtCcy") or ("quote_ccy" if side == "buy" else "base_ccy")
            base, quote = unit == "base_ccy", unit == "quote_ccy"
        # derivatives count contracts, and margin market orders' unit is not documented: unknown
        return RequestFacts(
            action="order", symbol=symbol, side=side.upper() or None, order_type=order_type.upper() or None,
            quantity=size if base else None, quote_quantity=size if quote else None,
            price=None if order_type in ("market", "optimal_limit_ioc") else amount(param_text(params, "px")),
            # reduceOnly: "Only applicable to MARGIN orders, and FUTURES/SWAP orders in net mode": a cash
            # order's flag means nothing; a spot margin order (cross/isolated) borrows automatically
            reduce_only=param_true(params, "reduceOnly") and param_text(params, "tdMode") != "cash",
            borrows=spot and param_text(params, "tdMode") in ("cross", "isolated"))
    if path == "/api/v5/trade/close-position":
        return RequestFacts(action="order", symbol=symbol, reduce_only=True)  # closes a whole position
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
    if path in _NO_ORDER:
        return RequestFacts(action="other", symbol=symbol)
    if endpoint.cls is EndpointClass.TRADE:
        return RequestFacts(action=None, symbol=symbol)
    return RequestFacts(action="other", symbol=symbol)


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
        if isinstance(item, dict) and isinstance(item.get("instId"), str) and isinstance(item.get("last"), str):
            try:
                value = Decimal(item["last"])
            except InvalidOperation:
                continue
            if value.is_finite() and value > 0:
                out[normalize_symbol(item["instId"])] = value
    return out
