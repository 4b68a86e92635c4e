"""Per-key account state for the Binance emulator: balances, orders, withdrawals.

There is no matching engine: every symbol has a fixed last price
(``binance_data``). Market orders and marketable limit orders fill at once
at that price and move balances; other limit orders rest (their funds locked)
until cancelled. Futures fills only change the position size.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.binance_auth import BinanceError
from keyproxy.emulator.binance_data import Market

ZERO = Decimal(0)
INSUFFICIENT = (400, -2010, "Account has insufficient balance for requested action.")


def new_client_order_id() -> str:
    """Binance-style generated client order id (22 characters)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


@dataclass
class Order:
    """One order as the emulated matching engine remembers it."""

    market: Market
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    time: int
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    locked_asset: str | None = None
    locked_amount: Decimal = ZERO
    orig_quote_qty: Decimal = ZERO
    fill_price: Decimal = ZERO
    extra: dict[str, Any] = field(default_factory=dict)
    book: str = "spot"  # "margin": a cross margin order (binance_margin.py), on the spot markets

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class Account:
    """State of the account behind one API key."""

    key: EmulatedKey
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    algo_orders: dict[int, Any] = field(default_factory=dict)  # conditional orders by algoId (binance_algo.py)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    leverage: dict[str, int] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    update_time: int = 0

    @classmethod
    def fresh(cls, key: EmulatedKey) -> Account:
        return cls(key=key, free=dict(key.balances))

    # -- balances ---------------------------------------------------------
    def _take(self, asset: str, amount: Decimal) -> None:
        if self.free.get(asset, ZERO) < amount:
            raise BinanceError(*INSUFFICIENT)
        self.free[asset] = self.free.get(asset, ZERO) - amount

    def _give(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount

    def lock(self, asset: str, amount: Decimal) -> None:
        self._take(asset, amount)
        self.locked[asset] = self.locked.get(asset, ZERO) + amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        self.locked[asset] = self.locked.get(asset, ZERO) - amount
        self._give(asset, amount)

    def assets(self) -> list[str]:
        return sorted(set(self.free) | {a for a, v in self.locked.items() if v})

    # -- orders -------------------------------------------------------------
    def find(self, symbol: str, order_id: str | None, client_id: str | None) -> Order | None:
        """Look up by orderId first, then check/lookup origClientOrderId (as documented)."""
        if order_id is not None:
            try:
                order = self.orders.get(int(order_id))
            except ValueError:
                return None
            if order is None or order.market.symbol != symbol:
                return None
            if client_id is not None and order.client_order_id != client_id:
                return None
            return order
        for order in self.orders.values():
            if order.market.symbol == symbol and order.client_order_id == client_id:
                return order
        return None

    def open_orders(self, venue: str, symbol: str | None, book: str = "spot") -> list[Order]:
        return [
            o
            for o in self.orders.values()
            if o.is_open
            and o.market.venue == venue
            and o.book == book
            and (symbol is None or o.market.symbol == symbol)
        ]

    def place(self, order: Order, now: int) -> Order:
        """Fill, rest or expire a validated order and move balances accordingly."""
        m = order.market
        last = m.last
        marketable = (
            order.type == "MARKET"
            or (order.side == "BUY" and order.price >= last)
            or (order.side == "SELL" and order.price <= last)
        )
        if order.type == "LIMIT_MAKER" and marketable:
            raise BinanceError(400, -2010, "Order would immediately match and take.")
        if any(
            o.is_open and o.client_order_id == order.client_order_id for o in self.orders.values()
        ):
            raise BinanceError(400, -2010, "Duplicate order sent.")
        order.update_time = now
        if marketable:
            self._fill(order, last)
        elif order.time_in_force in ("IOC", "FOK"):
            order.status = "EXPIRED"
        elif m.venue == "spot":
            asset, amount = (
                (m.quote, order.orig_qty * order.price)
                if order.side == "BUY"
                else (m.base, order.orig_qty)
            )
            self.lock(asset, amount)
            order.locked_asset, order.locked_amount = asset, amount
        self.orders[order.order_id] = order
        self.update_time = now
        return order

    def _fill(self, order: Order, price: Decimal) -> None:
        m = order.market
        quote = order.orig_qty * price
        if m.venue == "spot":
            if order.side == "BUY":
                self._take(m.quote, quote)
                self._give(m.base, order.orig_qty)
            else:
                self._take(m.base, order.orig_qty)
                self._give(m.quote, quote)
        else:
            signed = order.orig_qty if order.side == "BUY" else -order.orig_qty
            self.positions[m.symbol] = self.positions.get(m.symbol, ZERO) + signed
            if m.venue == "dapi":
                quote = order.orig_qty * m.contract_size / price  # COIN-M cumBase
        order.executed_qty = order.orig_qty
        order.cum_quote = quote
        order.fill_price = price
        order.status = "FILLED"

    def fill_resting(self, order: Order, now: int) -> None:
        """A resting limit order the market reached: it fills at its own price (the test hook moving the price)."""
        if order.locked_asset is not None:
            self.unlock(order.locked_asset, order.locked_amount)
            order.locked_amount = ZERO
        self._fill(order, order.price)
        order.update_time = now
        self.update_time = now

    def cancel(self, order: Order, now: int) -> Order:
        if not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        if order.locked_asset is not None:
            self.unlock(order.locked_asset, order.locked_amount)
            order.locked_amount = ZERO
        order.status = "CANCELED"
        order.update_time = now
        self.update_time = now
        return order

    def shrink(self, order: Order, new_qty: Decimal, client_id: str, now: int) -> Order:
        """Order Amend Keep Priority: a smaller quantity, its place in the queue kept, and a new client id (the
        locked funds of what it no longer asks for released)."""
        if not order.is_open:
            raise BinanceError(400, -2013, "Order does not exist.")
        if not order.executed_qty < new_qty < order.orig_qty:
            raise BinanceError(400, -2038, "The requested quantity is not less than the order's quantity or is not "
                                           "above its executed quantity.")
        if order.locked_asset is not None and order.orig_qty > order.executed_qty:
            released = order.locked_amount * (order.orig_qty - new_qty) / (order.orig_qty - order.executed_qty)
            self.unlock(order.locked_asset, released)
            order.locked_amount -= released
        order.orig_qty, order.client_order_id, order.update_time = new_qty, client_id, now
        self.update_time = now
        return order

    def withdraw(self, coin: str, amount: Decimal, record: dict[str, Any]) -> None:
        if self.free.get(coin, ZERO) < amount:
            raise BinanceError(400, -4026, "You have insufficient balance.")
        self.free[coin] -= amount
        self.withdrawals.append(record)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for ``GET /_emulator/state``."""
        return {
            "balances": {
                a: {"free": str(self.free.get(a, ZERO)), "locked": str(self.locked.get(a, ZERO))}
                for a in self.assets()
            },
            "orders": [
                {
                    "venue": o.market.venue,
                    "book": o.book,
                    "symbol": o.market.symbol,
                    "orderId": o.order_id,
                    "clientOrderId": o.client_order_id,
                    "side": o.side,
                    "type": o.type,
                    "price": str(o.price),
                    "origQty": str(o.orig_qty),
                    "status": o.status,
                }
                for o in self.orders.values()
            ],
            "algo_orders": [{"algoId": o.algo_id, "symbol": o.symbol, "algoStatus": o.status}
                            for o in self.algo_orders.values()],
            "withdrawals": list(self.withdrawals),
            "leverage": dict(self.leverage),
            "positions": {s: str(q) for s, q in self.positions.items()},
        }
