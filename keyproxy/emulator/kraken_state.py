"""Per-key account state for the Kraken emulator: balances, holds, orders, withdrawals.

Order documents follow Kraken's spec (krakenfx/api-specs
``schemas/objects/user/orders/order.yaml`` and the OpenOrders / QueryOrders
examples): ``refid``, ``userref``, ``cl_ord_id``, ``status``, ``opentm``,
``descr`` {pair (altname), type, ordertype, price, price2, leverage, order,
close}, ``vol``, ``vol_exec``, ``cost``, ``fee``, ``price``, ``oflags``...
BalanceEx reports ``balance`` and ``hold_trade`` (available = balance - hold).

No matching engine: every pair has a fixed last price; market orders and
marketable limit orders fill there at once, other limit orders rest with
their funds held until cancelled. Fees are not charged.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.kraken_auth import KrakenError
from keyproxy.emulator.kraken_data import ASSETS, Pair, asset_id, fmt

ZERO = Decimal(0)
INSUFFICIENT_FUNDS = "EOrder:Insufficient funds"
_ID_ALPHABET = string.ascii_uppercase + string.digits


def kraken_id(first: str) -> str:
    """Kraken-style id such as order ``OQCLML-BW3P3-BUCMWZ`` or trade ``TCCCTY-WE2O6-P3NB37``."""
    groups = ["".join(secrets.choice(_ID_ALPHABET) for _ in range(n)) for n in (5, 5, 6)]
    return first + "-".join(groups)


@dataclass
class Order:
    """One order as the emulated exchange remembers it."""

    txid: str
    pair: Pair
    side: str
    ordertype: str
    vol: Decimal
    price: Decimal  # limit price; 0 for market orders
    opentm: float
    oflags: str
    userref: int | None = None
    cl_ord_id: str | None = None
    status: str = "open"
    vol_exec: Decimal = ZERO
    cost: Decimal = ZERO
    avg_price: Decimal = ZERO
    closetm: float | None = None
    reason: str | None = None
    hold_asset: str | None = None
    hold_amount: Decimal = ZERO
    ioc: bool = False
    trades: list[str] = field(default_factory=list)

    def description(self) -> str:
        """The ``descr.order`` text, e.g. ``buy 1.25000000 XBTUSD @ limit 37500.0``."""
        text = f"{self.side} {self.pair.volume(self.vol)} {self.pair.altname} @ {self.ordertype}"
        if self.ordertype == "limit":
            text += f" {self.pair.price(self.price)}"
        return text

    def doc(self, with_trades: bool) -> dict[str, Any]:
        p = self.pair
        out: dict[str, Any] = {
            "refid": None,
            "userref": self.userref,
            "status": self.status,
            "opentm": self.opentm,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": p.altname,
                "type": self.side,
                "ordertype": self.ordertype,
                "price": p.price(self.price) if self.ordertype == "limit" else "0",
                "price2": "0",
                "leverage": "none",
                "order": self.description(),
                "close": "",
            },
            "vol": p.volume(self.vol),
            "vol_exec": p.volume(self.vol_exec),
            "cost": fmt(self.cost, p.cost_decimals),
            "fee": fmt(ZERO, p.cost_decimals),
            "price": p.price(self.avg_price),
            "stopprice": "0.00000",
            "limitprice": "0.00000",
            "misc": "",
            "oflags": self.oflags,
        }
        if self.cl_ord_id is not None:
            out["cl_ord_id"] = self.cl_ord_id
        if self.status in ("closed", "canceled", "expired"):
            out["reason"] = self.reason
            out["closetm"] = self.closetm
        if with_trades and self.trades:
            out["trades"] = list(self.trades)
        return out


@dataclass
class Account:
    """State of the account behind one API key (amounts keyed by Kraken asset id)."""

    key: EmulatedKey
    total: dict[str, Decimal] = field(default_factory=dict)
    hold: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    dead_man_at: float | None = None  # CancelAllOrdersAfter: when every open order is cancelled

    @classmethod
    def fresh(cls, key: EmulatedKey) -> Account:
        total: dict[str, Decimal] = {}
        for name, amount in key.balances.items():
            ident = asset_id(name) or name
            total[ident] = total.get(ident, ZERO) + amount
        return cls(key=key, total=total)

    def available(self, asset: str) -> Decimal:
        return self.total.get(asset, ZERO) - self.hold.get(asset, ZERO)

    def _move(self, asset: str, delta: Decimal) -> None:
        self.total[asset] = self.total.get(asset, ZERO) + delta

    # -- orders -------------------------------------------------------------
    def place(self, order: Order, now: float) -> Order:
        """Fill or rest a validated order, moving or holding funds."""
        p = order.pair
        marketable = order.ordertype == "market" or (
            order.price >= p.last if order.side == "buy" else order.price <= p.last
        )
        need_asset, need = (p.quote, order.vol * (p.last if marketable else order.price)) if (
            order.side == "buy"
        ) else (p.base, order.vol)
        if self.available(need_asset) < need:
            raise KrakenError(INSUFFICIENT_FUNDS)
        if marketable and "post" in order.oflags.split(","):
            order.status, order.reason, order.closetm = "canceled", "Post only order", now
        elif marketable:
            self._fill(order, now)
        elif order.ioc:
            order.status, order.reason, order.closetm = "canceled", "Immediate or cancel", now
        else:
            self.hold[need_asset] = self.hold.get(need_asset, ZERO) + need
            order.hold_asset, order.hold_amount = need_asset, need
        self.orders[order.txid] = order
        return order

    def _fill(self, order: Order, now: float) -> None:
        p = order.pair
        cost = order.vol * p.last
        if order.side == "buy":
            self._move(p.quote, -cost)
            self._move(p.base, order.vol)
        else:
            self._move(p.base, -order.vol)
            self._move(p.quote, cost)
        order.vol_exec, order.cost, order.avg_price = order.vol, cost, p.last
        order.status, order.closetm = "closed", now
        order.trades.append(kraken_id("T"))

    def cancel(self, order: Order, now: float) -> None:
        if order.hold_asset is not None:
            self.hold[order.hold_asset] = self.hold.get(order.hold_asset, ZERO) - order.hold_amount
            order.hold_amount = ZERO
        order.status, order.reason, order.closetm = "canceled", "User requested", now

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.status in ("pending", "open")]

    # -- funding --------------------------------------------------------------
    def withdraw(self, asset: str, amount: Decimal, record: dict[str, Any]) -> None:
        if self.available(asset) < amount:
            raise KrakenError("EFunding:Insufficient funds")
        self._move(asset, -amount)
        self.withdrawals.append(record)

    # -- views ----------------------------------------------------------------
    def assets(self) -> list[str]:
        return sorted(set(self.total) | set(self.hold))

    def balance_doc(self) -> dict[str, str]:
        return {a: fmt(self.total.get(a, ZERO), _decimals(a)) for a in self.assets()}

    def balance_ex_doc(self) -> dict[str, dict[str, str]]:
        return {
            a: {
                "balance": fmt(self.total.get(a, ZERO), _decimals(a)),
                "hold_trade": fmt(self.hold.get(a, ZERO), _decimals(a)),
            }
            for a in self.assets()
        }

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for ``GET /_emulator/state``."""
        return {
            "balances": {
                a: {"total": str(self.total.get(a, ZERO)), "hold": str(self.hold.get(a, ZERO))}
                for a in self.assets()
            },
            "orders": [
                {"txid": o.txid, "pair": o.pair.altname, "type": o.side,
                 "ordertype": o.ordertype, "price": str(o.price), "vol": str(o.vol),
                 "status": o.status}
                for o in self.orders.values()
            ],
            "withdrawals": list(self.withdrawals),
        }


def _decimals(asset: str) -> int:
    known = ASSETS.get(asset)
    return known.decimals if known else 8
