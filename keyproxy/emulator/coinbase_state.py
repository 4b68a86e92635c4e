"""Per-key account state for the Coinbase emulator: wallets, orders, sends.

No matching engine: each product has a fixed last price (``coinbase_data``).
Market orders and marketable limit orders fill at once at that price; other
GTC/GTD limit orders rest with their funds on hold until cancelled; IOC/FOK
limit orders that cannot fill are cancelled / expire. Coinbase keeps one
wallet ("account", a UUID) per currency; the UUIDs here are stable per key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.coinbase_data import FIAT, Product, fmt

ZERO = Decimal(0)
TIME_IN_FORCE = {
    "limit_limit_gtc": "GOOD_UNTIL_CANCELLED",
    "limit_limit_gtd": "GOOD_UNTIL_DATE_TIME",
    "limit_limit_fok": "FILL_OR_KILL",
    "sor_limit_ioc": "IMMEDIATE_OR_CANCEL",
    "market_market_ioc": "IMMEDIATE_OR_CANCEL",
}


class Refusal(Exception):
    """An order the exchange refuses with ``success: false`` (HTTP 200)."""

    def __init__(self, error: str, message: str, preview: str) -> None:
        super().__init__(message)
        self.error, self.message, self.preview = error, message, preview


INSUFFICIENT = ("INSUFFICIENT_FUND", "Insufficient balance in source account",
                "PREVIEW_INSUFFICIENT_FUND")


def iso(ms: int) -> str:
    """RFC 3339 with microseconds, as Coinbase's order times are written."""
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Order:
    """One order as the emulated matching engine remembers it."""

    order_id: str
    client_order_id: str
    product: Product
    side: str
    kind: str  # the order_configuration key
    config: dict[str, Any]
    base_size: Decimal
    quote_size: Decimal | None
    price: Decimal | None
    created: int
    status: str = "OPEN"
    filled_size: Decimal = ZERO
    filled_value: Decimal = ZERO
    hold_asset: str | None = None
    hold_amount: Decimal = ZERO

    def doc(self, user_id: str) -> dict[str, Any]:
        """The order as ``orders/historical/...`` returns it."""
        avg = self.filled_value / self.filled_size if self.filled_size else ZERO
        done = "100" if self.status == "FILLED" else "0"
        return {
            "order_id": self.order_id,
            "product_id": self.product.product_id,
            "user_id": user_id,
            "order_configuration": {self.kind: dict(self.config)},
            "side": self.side,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "time_in_force": TIME_IN_FORCE[self.kind],
            "created_time": iso(self.created),
            "completion_percentage": done,
            "filled_size": fmt(self.filled_size),
            "average_filled_price": fmt(avg),
            "fee": "",
            "number_of_fills": "1" if self.filled_size else "0",
            "filled_value": fmt(self.filled_value),
            "pending_cancel": False,
            "size_in_quote": self.quote_size is not None,
            "total_fees": "0",
            "size_inclusive_of_fees": False,
            "total_value_after_fees": fmt(self.filled_value),
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": "MARKET" if self.kind == "market_market_ioc" else "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": self.status != "OPEN",
            "product_type": "SPOT",
            "reject_message": "",
            "cancel_message": "",
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": fmt(self.hold_amount),
            "is_liquidation": False,
            "last_fill_time": iso(self.created) if self.filled_size else None,
            "edit_history": [],
            "leverage": "",
            "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": "",
        }


@dataclass
class Account:
    """State of the Coinbase user behind one CDP key."""

    key: EmulatedKey
    available: dict[str, Decimal] = field(default_factory=dict)
    hold: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    sends: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fresh(cls, key: EmulatedKey) -> Account:
        return cls(key=key, available=dict(key.balances))

    @property
    def user_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coinbase-emulator/user/{self.key.api_key}"))

    def wallet_id(self, currency: str) -> str:
        name = f"coinbase-emulator/{self.key.api_key}/{currency}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name))

    def currencies(self) -> list[str]:
        return sorted(set(self.available) | {c for c, v in self.hold.items() if v})

    def wallet_currency(self, wallet_id: str) -> str | None:
        return next((c for c in self.currencies() if self.wallet_id(c) == wallet_id), None)

    def is_fiat(self, currency: str) -> bool:
        return currency in FIAT

    # -- balances ----------------------------------------------------------
    def _take(self, asset: str, amount: Decimal) -> None:
        if self.available.get(asset, ZERO) < amount:
            raise Refusal(*INSUFFICIENT)
        self.available[asset] = self.available.get(asset, ZERO) - amount

    def _give(self, asset: str, amount: Decimal) -> None:
        self.available[asset] = self.available.get(asset, ZERO) + amount

    # -- orders --------------------------------------------------------------
    def find_client_order(self, client_order_id: str) -> Order | None:
        return next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)

    def place(self, order: Order) -> Order:
        """Fill, rest or cancel a validated order and move balances accordingly."""
        p = order.product
        if order.kind == "market_market_ioc":
            marketable = True
        else:
            assert order.price is not None
            marketable = order.price >= p.last if order.side == "BUY" else order.price <= p.last
        if marketable and order.config.get("post_only") is True:
            raise Refusal("INVALID_LIMIT_PRICE_POST_ONLY", "Post-only order would cross",
                          "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY")
        if marketable:
            base = order.base_size
            if order.quote_size is not None:  # market buy by quote size
                base = (order.quote_size / p.last).quantize(p.base_increment)
            self._fill(order, base, p.last)
        elif order.kind in ("sor_limit_ioc", "limit_limit_fok"):
            order.status = "CANCELLED" if order.kind == "sor_limit_ioc" else "EXPIRED"
        else:
            assert order.price is not None
            asset, amount = (p.quote, order.base_size * order.price) if order.side == "BUY" \
                else (p.base, order.base_size)
            self._take(asset, amount)
            self.hold[asset] = self.hold.get(asset, ZERO) + amount
            order.hold_asset, order.hold_amount = asset, amount
        self.orders[order.order_id] = order
        return order

    def _fill(self, order: Order, base: Decimal, price: Decimal) -> None:
        p = order.product
        quote = base * price
        if order.side == "BUY":
            self._take(p.quote, quote)
            self._give(p.base, base)
        else:
            self._take(p.base, base)
            self._give(p.quote, quote)
        order.filled_size, order.filled_value, order.status = base, quote, "FILLED"

    def cancel(self, order: Order) -> None:
        if order.hold_asset is not None:
            self.hold[order.hold_asset] -= order.hold_amount
            self._give(order.hold_asset, order.hold_amount)
            order.hold_asset, order.hold_amount = None, ZERO
        order.status = "CANCELLED"

    def send(self, currency: str, amount: Decimal, record: dict[str, Any]) -> None:
        if self.available.get(currency, ZERO) < amount:
            raise Refusal(*INSUFFICIENT)
        self.available[currency] -= amount
        self.sends.append(record)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for ``GET /_emulator/state``."""
        return {
            "balances": {
                c: {"available": str(self.available.get(c, ZERO)),
                    "hold": str(self.hold.get(c, ZERO))}
                for c in self.currencies()
            },
            "orders": [
                {"order_id": o.order_id, "client_order_id": o.client_order_id,
                 "product_id": o.product.product_id, "side": o.side, "type": o.kind,
                 "base_size": str(o.base_size), "price": None if o.price is None else str(o.price),
                 "status": o.status}
                for o in self.orders.values()
            ],
            "sends": list(self.sends),
        }
