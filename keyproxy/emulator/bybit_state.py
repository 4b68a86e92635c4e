"""Per-key account state for the Bybit emulator (a Unified Trading Account).

No matching engine: each symbol has a fixed last price (``bybit_data``).
Market orders and marketable limit orders fill at once at that price; other
GTC limit orders rest until cancelled (spot ones with their funds locked);
IOC/FOK limit orders that cannot fill are cancelled. Contract fills only
change the position size; margin is not modelled.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keyproxy.emulator.bybit_dcp import Dcp
from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.bybit_auth import BybitError
from keyproxy.emulator.bybit_data import Market, fmt

ZERO = Decimal(0)
SPOT_INSUFFICIENT = (170131, "Balance insufficient ")


@dataclass
class Order:
    """One order as the emulated matching engine remembers it."""

    order_id: str
    order_link_id: str
    market: Market
    side: str  # "Buy" | "Sell"
    order_type: str  # "Limit" | "Market"
    qty: Decimal
    price: Decimal
    time_in_force: str
    created: int
    status: str = "New"
    cum_qty: Decimal = ZERO
    cum_value: Decimal = ZERO
    updated: int = 0
    locked_coin: str | None = None
    locked_amount: Decimal = ZERO
    reduce_only: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in ("New", "PartiallyFilled", "Untriggered")

    def doc(self) -> dict[str, Any]:
        """The order as ``GET /v5/order/realtime`` lists it."""
        avg = self.cum_value / self.cum_qty if self.cum_qty else ZERO
        leaves = ZERO if not self.is_open else self.qty - self.cum_qty
        return {
            "orderId": self.order_id, "orderLinkId": self.order_link_id, "blockTradeId": "",
            "symbol": self.market.symbol,
            "price": fmt(self.price) if self.order_type == "Limit" else "0",
            "qty": fmt(self.qty), "side": self.side,
            "isLeverage": "0" if self.market.category == "spot" else "",
            "positionIdx": 0, "orderStatus": self.status,
            "cancelType": "CancelByUser" if self.status == "Cancelled" else "UNKNOWN",
            "rejectReason": "EC_NoError", "avgPrice": fmt(avg) if self.cum_qty else "0",
            "leavesQty": fmt(leaves), "leavesValue": fmt(leaves * self.price),
            "cumExecQty": fmt(self.cum_qty), "cumExecValue": fmt(self.cum_value),
            "cumExecFee": "0", "timeInForce": self.time_in_force, "orderType": self.order_type,
            "stopOrderType": "", "orderIv": "", "marketUnit": "", "triggerPrice": "0",
            "takeProfit": "0", "stopLoss": "0", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": fmt(self.market.last),
            "reduceOnly": self.reduce_only, "closeOnTrigger": False, "smpType": "None",
            "smpGroup": 0, "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "",
            "slLimitPrice": "", "placeType": "", "createdTime": str(self.created),
            "updatedTime": str(self.updated or self.created),
        }


def new_order_id(category: str) -> str:
    """Spot order ids are long numbers, derivatives ids UUIDs (docs' examples)."""
    if category == "spot":
        return str(10**18 + secrets.randbelow(9 * 10**18))
    return str(uuid.uuid4())


@dataclass
class Account:
    """State of the Bybit UTA behind one API key."""

    key: EmulatedKey
    wallet: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    leverage: dict[str, str] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    dcp: Dcp = field(default_factory=Dcp)  # disconnect-cancel-all (bybit_dcp.py)

    @classmethod
    def fresh(cls, key: EmulatedKey) -> Account:
        return cls(key=key, wallet=dict(key.balances))

    def free(self, coin: str) -> Decimal:
        return self.wallet.get(coin, ZERO) - self.locked.get(coin, ZERO)

    def _move(self, coin: str, delta: Decimal) -> None:
        if delta < 0 and self.free(coin) < -delta:
            raise BybitError(*SPOT_INSUFFICIENT)
        self.wallet[coin] = self.wallet.get(coin, ZERO) + delta

    def find(self, category: str, symbol: str | None, order_id: str | None,
             link_id: str | None) -> Order | None:
        for order in self.orders.values():
            if order.market.category != category or (symbol and order.market.symbol != symbol):
                continue
            if order_id and order.order_id == order_id:
                return order
            if not order_id and link_id and order.order_link_id == link_id:
                return order
        return None

    def place(self, order: Order) -> Order:
        m = order.market
        if order.order_link_id and any(
            o.order_link_id == order.order_link_id for o in self.orders.values()
        ):
            raise BybitError(170141, "Duplicate clientOrderId") if m.category == "spot" else \
                BybitError(110072, "OrderLinkedID is duplicate")
        marketable = order.order_type == "Market" or (
            order.price >= m.last if order.side == "Buy" else order.price <= m.last)
        if order.time_in_force == "PostOnly" and marketable:
            order.status = "Cancelled"
        elif marketable:
            self._fill(order)
        elif order.time_in_force in ("IOC", "FOK"):
            order.status = "Cancelled"
        elif m.category == "spot":
            coin, amount = (m.quote, order.qty * order.price) if order.side == "Buy" \
                else (m.base, order.qty)
            if self.free(coin) < amount:
                raise BybitError(*SPOT_INSUFFICIENT)
            self.locked[coin] = self.locked.get(coin, ZERO) + amount
            order.locked_coin, order.locked_amount = coin, amount
        self.orders[order.order_id] = order
        return order

    def _fill(self, order: Order) -> None:
        m = order.market
        value = order.qty * m.last
        if m.category == "spot":
            if order.side == "Buy":
                self._move(m.quote, -value)
                self._move(m.base, order.qty)
            else:
                self._move(m.base, -order.qty)
                self._move(m.quote, value)
        else:
            sign = Decimal(1) if order.side == "Buy" else Decimal(-1)
            self.positions[m.symbol] = self.positions.get(m.symbol, ZERO) + sign * order.qty
            if m.category == "inverse":
                value = order.qty / m.last
        order.cum_qty, order.cum_value, order.status = order.qty, value, "Filled"

    def cancel(self, order: Order, now: int) -> None:
        if order.locked_coin is not None:
            self.locked[order.locked_coin] -= order.locked_amount
            order.locked_coin, order.locked_amount = None, ZERO
        order.status, order.updated = "Cancelled", now

    def wallet_doc(self, coins: set[str] | None) -> dict[str, Any]:
        """``GET /v5/account/wallet-balance?accountType=UNIFIED`` result."""
        rows = []
        for coin in sorted(self.wallet):
            if coins and coin not in coins:
                continue
            bal, locked = self.wallet[coin], self.locked.get(coin, ZERO)
            rows.append({
                "availableToBorrow": "", "bonus": "0", "accruedInterest": "0",
                "availableToWithdraw": fmt(bal - locked), "totalOrderIM": "0",
                "equity": fmt(bal), "totalPositionMM": "0", "usdValue": "",
                "spotHedgingQty": "0", "unrealisedPnl": "0", "collateralSwitch": True,
                "borrowAmount": "0", "totalPositionIM": "0", "walletBalance": fmt(bal),
                "cumRealisedPnl": "0", "locked": fmt(locked), "marginCollateral": True,
                "coin": coin, "spotBorrow": "0",
            })
        return {"list": [{
            "totalEquity": "", "accountIMRate": "0", "accountIMRateByMp": "0",
            "totalMarginBalance": "", "totalInitialMargin": "0", "totalInitialMarginByMp": "0",
            "accountType": "UNIFIED", "totalAvailableBalance": "", "accountMMRate": "0",
            "accountMMRateByMp": "0", "totalPerpUPL": "0", "totalWalletBalance": "",
            "accountLTV": "0", "totalMaintenanceMargin": "0", "totalMaintenanceMarginByMp": "0",
            "coin": rows,
        }]}

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for ``GET /_emulator/state``."""
        return {
            "balances": {c: {"wallet": str(v), "locked": str(self.locked.get(c, ZERO))}
                         for c, v in sorted(self.wallet.items())},
            "orders": [{"category": o.market.category, "symbol": o.market.symbol,
                        "orderId": o.order_id, "orderLinkId": o.order_link_id, "side": o.side,
                        "orderType": o.order_type, "qty": str(o.qty), "price": str(o.price),
                        "orderStatus": o.status} for o in self.orders.values()],
            "leverage": dict(self.leverage),
            "positions": {s: str(q) for s, q in self.positions.items()},
            "withdrawals": list(self.withdrawals),
        }
