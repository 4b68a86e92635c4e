"""What a Kraken request would do, for policy (`Adapter.facts`), and last prices from tickers (`Adapter.prices`).

Parameters per Kraken's spot REST reference (krakenfx/api-specs spot-rest/openapi_v3.yaml):
AddOrder `pair`, `type` (buy|sell), `ordertype`, `volume` (base currency; quote currency with
`oflags` containing `viqc`), `price` (limit price, or trigger price for stop/take-profit types,
where `price2` is the limit), `leverage` (`5` or `5:1`), `reduce_only`; Withdraw `asset`, `key`
(the name of an address registered at Kraken), optional `address` (checked by Kraken against the
key), `amount`. Prices may be relative (`+5`, `-1.5%`, `#2`): keyproxy does not value those.
Anything keyproxy cannot read fully is `action=None`, which the policy refuses when the bot has
trading limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

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

_CANCELS = frozenset({"CancelOrder", "CancelAll", "CancelAllOrdersAfter", "CancelOrderBatch"})
_POLICY_PARAMS = frozenset({"pair", "type", "ordertype", "volume", "price", "price2", "oflags", "leverage",
                            "reduce_only", "asset", "key", "address", "amount"})


def _params(req: IncomingRequest) -> dict[str, object]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    if ctype == "application/json":
        if not text.strip():
            return {}
        try:
            doc = json.loads(text, object_pairs_hook=unique_members)
        except DuplicateMember as exc:
            raise BadRequest(str(exc)) from None
        except ValueError:
            raise BadRequest("malformed JSON body") from None
        if not isinstance(doc, dict):
            raise BadRequest("the JSON body must be an object")
        return doc
    params: dict[str, object] = {}
    for k, v in parse_qsl(text, keep_blank_values=True):
        if k in params and k in _POLICY_PARAMS:
            raise BadRequest(f"parameter {k[:40]!r} is given more than once")
        params[k] = v
    return params


def _price(value: str | None) -> Decimal | None:
    """An absolute price; None for Kraken's relative forms (+x, -x, #x, x%), which keyproxy does not value."""
    if value is None or value.startswith(("+", "-", "#")) or value.endswith("%"):
        return None
    return amount(value)


def _leverage(value: str | None) -> Decimal | None:
    if value is None or value.lower() == "none":
        return None
    ratio, colon, one = value.partition(":")
    if colon and one != "1":
        raise BadRequest(f"leverage {value[:30]!r} is not N or N:1")
    return amount(ratio)


def kraken_facts(req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
    if endpoint.cls is EndpointClass.PUBLIC or endpoint.cls is EndpointClass.READ:
        return RequestFacts(action="other")
    method = req.path.rsplit("/0/private/", 1)[-1]
    params = _params(req)
    pair = param_text(params, "pair")
    symbol = normalize_symbol(pair) if pair else None
    if method in _CANCELS:
        return RequestFacts(action="cancel", symbol=symbol)
    if method in ("AddOrder", "EditOrder"):
        order_type = (param_text(params, "ordertype") or "").lower()
        flags = (param_text(params, "oflags") or "").lower().split(",")
        volume = amount(param_text(params, "volume"))
        limit = param_text(params, "price2") if order_type.endswith("-limit") else param_text(params, "price")
        return RequestFacts(
            action="order", symbol=symbol, side=(param_text(params, "type") or "").upper() or None,
            order_type=order_type.upper() or None,
            quantity=None if "viqc" in flags else volume, quote_quantity=volume if "viqc" in flags else None,
            price=None if order_type == "market" else _price(limit),
            # reduce_only: "Only applicable to margin orders" (Kraken AddOrder): without leverage it means
            # nothing, so it exempts nothing; a margin order (leverage) borrows
            leverage=_leverage(param_text(params, "leverage")), borrows=_margin(params),
            reduce_only=param_true(params, "reduce_only") and _margin(params))
    if method == "Withdraw":
        # Kraken withdraws only to addresses registered at Kraken, named by `key`; `address`, when
        # given, must match that key's address. keyproxy's allowlist names the address if the bot
        # sends it, else the key name.
        return RequestFacts(action="withdraw", asset=(param_text(params, "asset") or "").upper() or None,
                            address=param_text(params, "address") or param_text(params, "key"),
                            amount=amount(param_text(params, "amount")))
    if endpoint.cls is EndpointClass.TRADE:
        # AddOrderBatch (several orders), AmendOrder (no pair), GetWebSocketsToken (trades over
        # Kraken's WebSocket API, past keyproxy): not readable here, so refused to a bot with limits
        return RequestFacts(action=None, symbol=symbol)
    return RequestFacts(action="other", symbol=symbol)


def kraken_prices(path: str, body: bytes) -> dict[str, Decimal]:
    """Last trade prices (`c[0]`) from `GET /0/public/Ticker`, keyed by Kraken's pair name as answered."""
    if path != "/0/public/Ticker":
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    result = doc.get("result") if isinstance(doc, dict) else None
    out: dict[str, Decimal] = {}
    for pair, ticker in (result.items() if isinstance(result, dict) else ()):
        last = ticker.get("c") if isinstance(ticker, dict) else None
        if isinstance(last, list) and last and isinstance(last[0], str):
            try:
                value = Decimal(last[0])
            except InvalidOperation:
                continue
            if value.is_finite() and value > 0:
                out[normalize_symbol(pair)] = value
    return out


def _margin(params: Mapping[str, object]) -> bool:
    """A Kraken margin order: `leverage` given and not "none"."""
    lev = (param_text(params, "leverage") or "").lower()
    return lev not in ("", "none", "1", "1:1")
