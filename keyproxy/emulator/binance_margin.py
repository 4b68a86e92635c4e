"""Binance cross margin orders on the emulator, written from Binance's margin trading docs ("Margin Account
New Order (TRADE)", "Query Margin Account's Open Orders (USER_DATA)", "Margin Account Cancel Order
(TRADE)"), independently of keyproxy's adapters.

`POST /sapi/v1/margin/order`, `GET /sapi/v1/margin/openOrders` (`symbol` optional: every symbol without
it), `DELETE /sapi/v1/margin/order`: the spot markets and order rules, a book of their own (a margin
order is never listed or cancelled by the spot endpoints, nor a spot order by these), answers in the spot
shape with `isIsolated`. Emulated so far: the cross margin account trading the key's own assets
(`sideEffectType` NO_SIDE_EFFECT, the default); isolated margin and borrowing are refused as unsupported.
"""

from __future__ import annotations

from typing import Any

from keyproxy.emulator.binance_auth import BinanceError
from keyproxy.emulator.binance_orders import parse_new_order, spot_order
from keyproxy.emulator.binance_routes import Call

MARGIN = "margin"  # Order.book of a cross margin order


class MarginHandlers:
    """Mixed into the Binance emulator (which provides `_market`, `_new_order_id`, `_find`)."""

    def _margin_doc(self, call: Call, order: Any, kind: str) -> dict[str, Any]:
        doc = spot_order(order, kind, call.params.get("newOrderRespType"), call.params.get("newClientOrderId"))
        return {**doc, "isIsolated": False}

    def margin_new_order(self, call: Call) -> dict[str, Any]:
        if call.params.get("isIsolated", "FALSE").upper() == "TRUE":
            raise BinanceError(400, -3052, "isolated margin is not emulated")
        if call.params.get("sideEffectType", "NO_SIDE_EFFECT") != "NO_SIDE_EFFECT":
            raise BinanceError(400, -3045, "borrowing is not emulated: sideEffectType NO_SIDE_EFFECT only")
        market = self._market(call)  # type: ignore[attr-defined]
        order = parse_new_order(call.params, market, self._new_order_id(), call.now)  # type: ignore[attr-defined]
        order.book = MARGIN
        call.acct.place(order, call.now)
        return self._margin_doc(call, order, "new")

    def margin_open_orders(self, call: Call) -> list[dict[str, Any]]:
        market = self._market(call, required=False)  # type: ignore[attr-defined]
        orders = call.acct.open_orders("spot", market.symbol if market else None, book=MARGIN)
        return [self._margin_doc(call, o, "query") for o in orders]

    def margin_cancel_order(self, call: Call) -> dict[str, Any]:
        order = self._find(call, (400, -2011, "Unknown order sent."), book=MARGIN)  # type: ignore[attr-defined]
        return self._margin_doc(call, call.acct.cancel(order, call.now), "cancel")
