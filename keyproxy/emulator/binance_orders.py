"""Order parameter validation and Binance-shaped order documents.

Spot follows ``rest-api.md`` "New order (TRADE)" / "Query order" / "Cancel
order"; futures follow the USD-M / COIN-M order endpoints. Only LIMIT,
LIMIT_MAKER (spot) and MARKET orders are supported; other types are refused
with -1014 rather than emulated half-way.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal
from typing import Any

from keyproxy.emulator.binance_auth import BinanceError, mandatory_missing
from keyproxy.emulator.binance_data import Market, fmt
from keyproxy.emulator.binance_state import ZERO, Order, new_client_order_id

_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
SPOT_TIF = ("GTC", "IOC", "FOK")
FUTURES_TIF = ("GTC", "IOC", "FOK", "GTX", "GTD")


def decimal_param(params: dict[str, str], name: str, required: bool = True) -> Decimal | None:
    """Parse a DECIMAL parameter with Binance's legal-range message on garbage."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory_missing(name)
        return None
    if not _DECIMAL_RE.match(raw):
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return Decimal(raw)


def _enum(params: dict[str, str], name: str, allowed: tuple[str, ...], code: int, msg: str) -> str:
    value = params.get(name)
    if not value:
        raise mandatory_missing(name)
    if value not in allowed:
        raise BinanceError(400, code, msg)
    return value


def _check_filters(m: Market, qty: Decimal, price: Decimal | None, ref_price: Decimal) -> None:
    spot = m.venue == "spot"
    if price is not None and (price <= 0 or price % m.tick != 0):
        raise (
            BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
            if spot
            else BinanceError(400, -4014, "Price not increased by tick size.")
        )
    if qty <= 0 or qty < m.min_qty or qty > m.max_qty or qty % m.step != 0:
        raise (
            BinanceError(400, -1013, "Filter failure: LOT_SIZE")
            if spot
            else BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        )
    if m.min_notional and qty * (price or ref_price) < m.min_notional:
        raise (
            BinanceError(400, -1013, "Filter failure: NOTIONAL")
            if spot
            else BinanceError(
                400,
                -4164,
                f"Order's notional must be no smaller than {m.min_notional} "
                "(unless you choose reduce only).",
            )
        )


def parse_new_order(params: dict[str, str], m: Market, order_id: int, now: int) -> Order:
    """Validate a new-order request for market ``m`` and build the order."""
    spot = m.venue == "spot"
    side = _enum(params, "side", ("BUY", "SELL"), -1117, "Invalid side.")
    kinds = ("LIMIT", "MARKET", "LIMIT_MAKER") if spot else ("LIMIT", "MARKET")
    order_type = params.get("type")
    if not order_type:
        raise mandatory_missing("type")
    if order_type not in kinds:
        raise BinanceError(400, -1014, "Unsupported order combination.")
    tif = ""
    quote_qty = ZERO
    if order_type == "LIMIT":
        tif = _enum(
            params, "timeInForce", SPOT_TIF if spot else FUTURES_TIF, -1115, "Invalid timeInForce."
        )
    if order_type == "MARKET":
        price = None
        qty = decimal_param(params, "quantity", required=not spot)
        if qty is None:
            quote = decimal_param(params, "quoteOrderQty", required=False)
            if quote is None:
                raise BinanceError(
                    400,
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            quote_qty = quote
            qty = (quote / m.last).quantize(m.step, rounding=ROUND_DOWN)
    else:
        qty = decimal_param(params, "quantity")
        price = decimal_param(params, "price")
    assert qty is not None
    _check_filters(m, qty, price, m.last)
    client_id = params.get("newClientOrderId") or new_client_order_id()
    order = Order(
        market=m,
        order_id=order_id,
        client_order_id=client_id,
        side=side,
        type=order_type,
        time_in_force=tif or "GTC",
        price=price or ZERO,
        orig_qty=qty,
        time=now,
        orig_quote_qty=quote_qty,
    )
    if not spot:
        order.extra = {
            "reduceOnly": params.get("reduceOnly", "false") == "true",
            "positionSide": params.get("positionSide", "BOTH"),
        }
    return order


def spot_order(
    o: Order, kind: str, resp_type: str | None = None, cancel_id: str | None = None
) -> dict[str, Any]:
    """Spot order document; ``kind`` is "new", "query" or "cancel"."""
    doc: dict[str, Any] = {
        "symbol": o.market.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
    }
    if kind == "cancel":
        doc = {
            "symbol": o.market.symbol,
            "origClientOrderId": o.client_order_id,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": cancel_id or new_client_order_id(),
            "transactTime": o.update_time,
        }
    elif kind == "new":
        doc["transactTime"] = o.time
        if resp_type == "ACK":
            return doc
    doc.update(
        {
            "price": fmt(o.price),
            "origQty": fmt(o.orig_qty),
            "executedQty": fmt(o.executed_qty),
            "cummulativeQuoteQty": fmt(o.cum_quote),
            "status": o.status,
            "timeInForce": o.time_in_force,
            "type": o.type,
            "side": o.side,
            "origQuoteOrderQty": fmt(o.orig_quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
    )
    if kind == "query":
        doc.update(
            {
                "stopPrice": fmt(ZERO),
                "icebergQty": fmt(ZERO),
                "time": o.time,
                "updateTime": o.update_time,
                "isWorking": True,
                "workingTime": o.time,
            }
        )
    elif kind == "new":
        doc["workingTime"] = o.time
        if resp_type != "RESULT":
            doc["fills"] = (
                []
                if o.executed_qty == 0
                else [
                    {
                        "price": fmt(o.fill_price),
                        "qty": fmt(o.executed_qty),
                        "commission": fmt(ZERO),
                        "commissionAsset": o.market.base if o.side == "BUY" else o.market.quote,
                        "tradeId": o.order_id,
                    }
                ]
            )
    return doc


def _plain(value: Decimal, step: Decimal) -> str:
    return f"{value.quantize(step.normalize() if step < 1 else Decimal(1)):f}"


def futures_order(o: Order, with_time: bool = True) -> dict[str, Any]:
    """USD-M / COIN-M order document (POST, GET and DELETE share it)."""
    m = o.market
    avg = o.fill_price if o.executed_qty else ZERO
    doc: dict[str, Any] = {
        "orderId": o.order_id,
        "symbol": m.symbol,
        "status": o.status,
        "clientOrderId": o.client_order_id,
        "price": _plain(o.price, m.tick),
        "avgPrice": _plain(avg, m.tick),
        "origQty": _plain(o.orig_qty, m.step),
        "executedQty": _plain(o.executed_qty, m.step),
        "cumQty": _plain(o.executed_qty, m.step),
        "timeInForce": o.time_in_force,
        "type": o.type,
        "reduceOnly": o.extra.get("reduceOnly", False),
        "closePosition": False,
        "side": o.side,
        "positionSide": o.extra.get("positionSide", "BOTH"),
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": o.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": o.update_time,
    }
    if m.venue == "fapi":
        doc["cumQuote"] = fmt(o.cum_quote)
    else:
        doc["cumBase"] = fmt(o.cum_quote)
        doc["pair"] = m.base + m.quote
    if with_time:
        doc["time"] = o.time
    return doc
