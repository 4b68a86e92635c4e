"""Binance USDⓈ-M and COIN-M conditional orders, the "Algo Service" (emulator side).

Since December 2025 Binance takes futures STOP / STOP_MARKET / TAKE_PROFIT / TAKE_PROFIT_MARKET /
TRAILING_STOP_MARKET orders only at `POST /fapi/v1/algoOrder` (`/dapi/v1/algoOrder`), with `algoType=CONDITIONAL`,
`triggerPrice`, `activatePrice`, `callbackRate` and `clientAlgoId`; they are answered with an `algoId` from an id
space of their own, cancelled at `DELETE .../algoOrder` (by `algoId` or `clientAlgoId`, no symbol) or
`DELETE .../algoOpenOrders` (a symbol's), and listed at `GET .../openAlgoOrders` (docs "New Algo Order (TRADE)",
"Cancel Algo Order", "Cancel All Algo Open Orders", "Query Algo Order", "Current All Algo Open Orders"). Written
from those pages, apart from keyproxy's adapter. The emulator keeps them resting (`NEW`): none triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from keyproxy.emulator.binance_auth import BinanceError, mandatory_missing
from keyproxy.emulator.binance_data import MARKETS, fmt
from keyproxy.emulator.binance_orders import decimal_param
from keyproxy.emulator.binance_routes import Call
from keyproxy.emulator.binance_state import Order, new_client_order_id

TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET")
_LIMIT_TYPES = ("STOP", "TAKE_PROFIT")
FIRST_ALGO_ID = 1_000_000_000_000_000  # an id space of its own (live ids look like 1000000033225453)


@dataclass
class AlgoOrder:
    algo_id: int
    client_algo_id: str
    venue: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal | None
    price: Decimal | None
    trigger_price: Decimal | None
    params: dict[str, str]
    time: int
    status: str = "NEW"
    update_time: int = 0
    actual_order_id: int | None = None  # the order it became when triggered

    def triggers_at(self, price: Decimal) -> bool:
        """STOP / STOP_MARKET: a buy when the price reaches the trigger or above, a sell at or below;
        TAKE_PROFIT(_MARKET) the other way round ("New Algo Order": trigger rules). Trailing stops never do here."""
        if self.status != "NEW" or self.trigger_price is None or self.order_type == "TRAILING_STOP_MARKET":
            return False
        rising = (self.side == "BUY") == self.order_type.startswith("STOP")
        return price >= self.trigger_price if rising else price <= self.trigger_price

    def doc(self, query: bool = False) -> dict[str, Any]:
        """The answer's shape: `orderType` (not `type`), `quantity` (not `origQty`), no fills; a query's adds the
        triggered order's `actualOrderId` ("" until it triggers)."""
        flag = self.params.get
        doc: dict[str, Any] = {
            "algoId": self.algo_id, "clientAlgoId": self.client_algo_id, "algoType": "CONDITIONAL",
            "orderType": self.order_type, "symbol": self.symbol, "side": self.side,
            "positionSide": flag("positionSide", "BOTH"), "timeInForce": flag("timeInForce", "GTC"),
            "quantity": fmt(self.quantity) if self.quantity is not None else "0", "algoStatus": self.status,
            "triggerPrice": fmt(self.trigger_price) if self.trigger_price is not None else "0",
            "price": fmt(self.price) if self.price is not None else "0", "icebergQuantity": None,
            "selfTradePreventionMode": flag("selfTradePreventionMode", "EXPIRE_MAKER"),
            "workingType": flag("workingType", "CONTRACT_PRICE"), "priceMatch": flag("priceMatch", "NONE"),
            "closePosition": flag("closePosition", "false").lower() == "true",
            "priceProtect": flag("priceProtect", "false").lower() == "true",
            "reduceOnly": flag("reduceOnly", "false").lower() == "true",
            "activatePrice": flag("activatePrice", ""), "callbackRate": flag("callbackRate", ""),
            "createTime": self.time, "updateTime": self.update_time or self.time, "triggerTime": 0, "goodTillDate": 0,
        }
        if query:
            doc.update({"actualOrderId": str(self.actual_order_id or ""), "actualPrice": "0.00000"})
        return doc


class AlgoOrders:
    """The Algo Service's endpoints, mixed into the Binance emulator (its handlers by name, binance_routes.py)."""

    _next_algo_id = FIRST_ALGO_ID

    @staticmethod
    def _algo_book(call: Call) -> dict[int, AlgoOrder]:
        return call.acct.algo_orders

    def algo_new(self, call: Call) -> dict[str, Any]:
        p = call.params
        if not p.get("algoType"):
            raise mandatory_missing("algoType")
        if p["algoType"] != "CONDITIONAL":
            raise BinanceError(400, -1130, "Data sent for parameter 'algoType' is not valid.")
        symbol = p.get("symbol") or ""
        if not symbol:
            raise mandatory_missing("symbol")
        if symbol not in MARKETS[call.venue]:
            raise BinanceError(400, -1121, "Invalid symbol.")
        side = p.get("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.") if side else mandatory_missing("side")
        order_type = p.get("type")
        if order_type not in TYPES:
            raise BinanceError(400, -1116, "Invalid orderType.") if order_type else mandatory_missing("type")
        closes = p.get("closePosition", "").lower() == "true"
        if closes and (p.get("quantity") or p.get("reduceOnly", "").lower() == "true"):
            raise BinanceError(400, -1106, "Parameter 'quantity' or 'reduceOnly' sent when not required.")
        quantity = decimal_param(p, "quantity", required=not closes)
        price = decimal_param(p, "price", required=order_type in _LIMIT_TYPES and not p.get("priceMatch"))
        trailing = order_type == "TRAILING_STOP_MARKET"
        trigger = decimal_param(p, "triggerPrice", required=not trailing)
        if trailing:
            decimal_param(p, "callbackRate")
        book = self._algo_book(call)
        client_id = p.get("clientAlgoId") or new_client_order_id()
        if any(o.client_algo_id == client_id and o.status == "NEW" for o in book.values()):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        algo_id = self._next_algo_id
        self._next_algo_id = algo_id + 1
        order = AlgoOrder(algo_id, client_id, call.venue, symbol, side, order_type, quantity, price, trigger,
                          dict(p), call.now)
        book[algo_id] = order
        return order.doc()

    def trigger_algo_orders(self, accounts: list[Any], venue: str, symbol: str, price: Decimal, now: int
                            ) -> list[Any]:
        """The algo orders a new last price triggers, each placed as the order it becomes (a market order, or a
        GTC limit at its price for STOP / TAKE_PROFIT): `TRIGGERED` while that order rests, `FINISHED` once it is
        done, naming it in `actualOrderId`. Returns (account, order) of the orders placed."""
        placed = []
        for account in accounts:
            for algo in list(account.algo_orders.values()):
                if algo.venue != venue or algo.symbol != symbol or not algo.triggers_at(price):
                    continue
                if algo.quantity is None:  # closePosition: the position's size (none: nothing to close)
                    size = abs(account.positions.get(symbol, Decimal(0)))
                    if not size:
                        algo.status, algo.update_time = "EXPIRED", now
                        continue
                else:
                    size = algo.quantity
                limit = algo.order_type in _LIMIT_TYPES and algo.price is not None
                order = Order(market=MARKETS[venue][symbol], order_id=self._new_order_id(),  # type: ignore[attr-defined]
                              client_order_id=algo.client_algo_id, side=algo.side, type="LIMIT" if limit else "MARKET",
                              time_in_force="GTC", price=algo.price if limit and algo.price else Decimal(0),
                              orig_qty=size, time=now)
                order.extra = {"reduceOnly": algo.params.get("reduceOnly", "false").lower() == "true",
                               "positionSide": algo.params.get("positionSide", "BOTH")}
                account.place(order, now)
                algo.actual_order_id, algo.update_time = order.order_id, now
                algo.status = "TRIGGERED" if order.is_open else "FINISHED"
                placed.append((account, order))
        return placed

    def _algo_find(self, call: Call) -> AlgoOrder:
        algo_id, client_id = call.params.get("algoId"), call.params.get("clientAlgoId")
        if not algo_id and not client_id:
            raise BinanceError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent, but both were empty/null!")
        book = self._algo_book(call)
        if algo_id:
            found = book.get(int(algo_id)) if algo_id.isdigit() else None
        else:
            found = next((o for o in reversed(book.values()) if o.client_algo_id == client_id), None)
        if found is None or found.venue != call.venue:
            raise BinanceError(400, -2013, "Order does not exist.")
        return found

    def algo_cancel(self, call: Call) -> dict[str, Any]:
        order = self._algo_find(call)
        if order.status != "NEW":
            raise BinanceError(400, -2011, "Unknown order sent.")
        order.status, order.update_time = "CANCELED", call.now
        return {"algoId": order.algo_id, "clientAlgoId": order.client_algo_id, "code": "200", "msg": "success"}

    def algo_query(self, call: Call) -> dict[str, Any]:
        return self._algo_find(call).doc(query=True)

    def algo_open(self, call: Call) -> list[dict[str, Any]]:
        symbol = call.params.get("symbol")
        return [o.doc(query=True) for o in self._algo_book(call).values()
                if o.status == "NEW" and o.venue == call.venue and (not symbol or o.symbol == symbol)]

    def algo_all(self, call: Call) -> list[dict[str, Any]]:
        """"Query All Algo Orders": a symbol's (required), any status, from `startTime` (7 days at most)."""
        symbol = call.params.get("symbol")
        if not symbol:
            raise mandatory_missing("symbol")
        since = int(call.params.get("startTime") or call.now - 7 * 86_400_000)
        return [o.doc(query=True) for o in self._algo_book(call).values()
                if o.venue == call.venue and o.symbol == symbol and o.time >= since][:1000]

    def algo_cancel_all(self, call: Call) -> dict[str, Any]:
        symbol = call.params.get("symbol")
        if not symbol:
            raise mandatory_missing("symbol")
        for order in self._algo_book(call).values():
            if order.status == "NEW" and order.venue == call.venue and order.symbol == symbol:
                order.status, order.update_time = "CANCELED", call.now
        return {"code": 200, "msg": "The operation of cancel all open order is done."}
