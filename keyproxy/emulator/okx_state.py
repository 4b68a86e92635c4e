"""Per-key account state for the OKX emulator: balances, orders, positions, withdrawals.

One balance pool per key stands in for OKX's trading and funding accounts.
No matching engine: every instrument has a fixed last price; market orders
and marketable limit orders fill there at once (``post_only`` ones are
cancelled instead, non-marketable ``ioc``/``fok`` ones too); other limit
orders rest with their funds frozen (spot) until cancelled. Derivative fills
only change the position (contracts); margin is not tracked. No fees.

Order documents carry the fields of OKX "Get order details" (``accFillSz``,
``avgPx``, ``cTime``, ``clOrdId``, ``fillPx``, ``instId``, ``ordId``,
``ordType``, ``px``, ``side``, ``state``, ``sz``, ``tdMode``, ``uTime``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.okx_data import USD_PRICE, Instrument, fmt

ZERO = Decimal(0)


class OrderRejected(Exception):
    """Per-order failure reported as ``sCode``/``sMsg`` inside a code "1" answer."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


@dataclass
class Order:
    """One order as the emulated exchange remembers it."""

    ord_id: str
    cl_ord_id: str
    tag: str
    inst: Instrument
    side: str
    ord_type: str
    td_mode: str
    sz: Decimal
    px: Decimal | None
    tgt_ccy: str
    c_time: int
    pos_side: str = ""
    reduce_only: bool = False
    state: str = "live"
    acc_fill_sz: Decimal = ZERO
    avg_px: Decimal = ZERO
    u_time: int = 0
    hold_ccy: str | None = None
    hold_amt: Decimal = ZERO
    trade_id: str = ""
    algo_id: str = ""  # the algo order that placed it when triggered (okx_algo.py)
    algo_cl_ord_id: str = ""

    @property
    def is_open(self) -> bool:
        return self.state in ("live", "partially_filled")

    def doc(self, lever: str) -> dict[str, Any]:
        i = self.inst
        filled = self.acc_fill_sz > 0
        fee_ccy = (i.base if self.side == "buy" else i.quote) if i.spot else i.settle
        return {
            "accFillSz": fmt(self.acc_fill_sz), "algoClOrdId": self.algo_cl_ord_id, "algoId": self.algo_id,
            "attachAlgoClOrdId": "", "attachAlgoOrds": [],
            "avgPx": fmt(self.avg_px) if filled else "",
            "cTime": str(self.c_time), "cancelSource": "", "cancelSourceReason": "",
            "category": "normal", "ccy": "", "clOrdId": self.cl_ord_id, "fee": "0",
            "feeCcy": fee_ccy, "fillPx": fmt(self.avg_px) if filled else "",
            "fillSz": fmt(self.acc_fill_sz) if filled else "0",
            "fillTime": str(self.u_time) if filled else "", "instId": i.inst_id,
            "instType": i.inst_type, "isTpLimit": "false", "lever": "" if i.spot else lever,
            "linkedAlgoOrd": {"algoId": ""}, "ordId": self.ord_id, "ordType": self.ord_type,
            "pnl": "0", "posSide": "" if i.spot else (self.pos_side or "net"),
            "px": "" if self.px is None else fmt(self.px), "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": fee_ccy,
            "reduceOnly": "true" if self.reduce_only else "false", "side": self.side,
            "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
            "state": self.state, "stpId": "", "stpMode": "cancel_maker", "sz": fmt(self.sz),
            "tag": self.tag, "tdMode": self.td_mode, "tgtCcy": self.tgt_ccy, "tpOrdPx": "",
            "tpTriggerPx": "", "tpTriggerPxType": "", "tradeId": self.trade_id,
            "uTime": str(self.u_time),
        }


@dataclass
class Account:
    """State of the account behind one API key (amounts keyed by currency)."""

    key: EmulatedKey
    cash: dict[str, Decimal] = field(default_factory=dict)
    frozen: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    leverage: dict[str, str] = field(default_factory=dict)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)
    u_time: int = 0
    dead_man_at: int | None = None  # cancel-all-after: when every pending order is cancelled (ms)
    algo_orders: dict[str, Any] = field(default_factory=dict)  # algoId -> okx_algo.AlgoOrder

    @classmethod
    def fresh(cls, key: EmulatedKey) -> Account:
        return cls(key=key, cash=dict(key.balances))

    def available(self, ccy: str) -> Decimal:
        return self.cash.get(ccy, ZERO) - self.frozen.get(ccy, ZERO)

    def _add(self, ccy: str, delta: Decimal) -> None:
        self.cash[ccy] = self.cash.get(ccy, ZERO) + delta

    def lever(self, inst: Instrument) -> str:
        return self.leverage.get(inst.inst_id, "10" if inst.lever else "")

    # -- orders -------------------------------------------------------------
    def place(self, order: Order, now: int) -> None:
        """Fill, rest or cancel a validated order and move balances accordingly."""
        i = order.inst
        order.u_time = now
        px = order.px
        marketable = order.ord_type == "market" or (
            px is not None and (px >= i.last if order.side == "buy" else px <= i.last)
        )
        base_qty = self._base_qty(order)
        if i.spot:
            need_ccy, need = (i.quote, base_qty * (i.last if marketable else order.px or ZERO)) \
                if order.side == "buy" else (i.base, base_qty)
            if self.available(need_ccy) < need:
                raise OrderRejected(
                    "51008", f"Order failed. Insufficient {need_ccy} balance in account.")
        if marketable and order.ord_type == "post_only":
            order.state = "canceled"
        elif marketable:
            self._fill(order, base_qty, now)
        elif order.ord_type in ("ioc", "fok"):
            order.state = "canceled"
        elif i.spot:
            self.frozen[need_ccy] = self.frozen.get(need_ccy, ZERO) + need
            order.hold_ccy, order.hold_amt = need_ccy, need
        self.orders[order.ord_id] = order
        self.u_time = now

    @staticmethod
    def _base_qty(order: Order) -> Decimal:
        i = order.inst
        if not i.spot:
            return order.sz
        if order.ord_type == "market" and order.tgt_ccy == "quote_ccy":
            return order.sz / i.last
        return order.sz

    def _fill(self, order: Order, base_qty: Decimal, now: int) -> None:
        i = order.inst
        if i.spot:
            cost = base_qty * i.last
            sign = 1 if order.side == "buy" else -1
            self._add(i.base, sign * base_qty)
            self._add(i.quote, -sign * cost)
            order.acc_fill_sz = base_qty
        else:
            signed = order.sz if order.side == "buy" else -order.sz
            self.positions[i.inst_id] = self.positions.get(i.inst_id, ZERO) + signed
            order.acc_fill_sz = order.sz
        order.avg_px = i.last
        order.state = "filled"
        order.trade_id = str(int(order.ord_id) % 10**9)
        order.u_time = now

    def cancel(self, order: Order, now: int) -> None:
        if order.hold_ccy is not None:
            self.frozen[order.hold_ccy] = self.frozen.get(order.hold_ccy, ZERO) - order.hold_amt
            order.hold_amt = ZERO
        order.state = "canceled"
        order.u_time = now
        self.u_time = now

    def find(self, inst_id: str, ord_id: str, cl_ord_id: str) -> Order | None:
        """By ``ordId`` first, else by ``clOrdId`` (the docs: ordId wins when both are sent)."""
        if ord_id:
            order = self.orders.get(ord_id)
            return order if order is not None and order.inst.inst_id == inst_id else None
        matches = [o for o in self.orders.values()
                   if o.inst.inst_id == inst_id and o.cl_ord_id == cl_ord_id]
        return matches[-1] if matches else None

    # -- funding ----------------------------------------------------------------
    def withdraw(self, ccy: str, amount: Decimal, record: dict[str, Any], now: int) -> None:
        if self.available(ccy) < amount:
            raise OrderRejected("58350", "Insufficient balance")
        self._add(ccy, -amount)
        self.withdrawals.append(record)
        self.u_time = now

    # -- views ------------------------------------------------------------------
    def currencies(self, wanted: list[str] | None = None) -> list[str]:
        names = sorted(c for c in set(self.cash) | set(self.frozen))
        return [c for c in names if wanted is None or c in wanted]

    def detail(self, ccy: str, now: int) -> dict[str, Any]:
        cash, frozen = self.cash.get(ccy, ZERO), self.frozen.get(ccy, ZERO)
        usd = cash * USD_PRICE.get(ccy, ZERO)
        return {
            "accAvgPx": "", "availBal": fmt(cash - frozen), "availEq": fmt(cash - frozen),
            "borrowFroz": "", "cashBal": fmt(cash), "ccy": ccy, "crossLiab": "",
            "disEq": fmt(usd), "eq": fmt(cash), "eqUsd": fmt(usd), "fixedBal": "0",
            "frozenBal": fmt(frozen), "imr": "", "interest": "", "isoEq": "0", "isoLiab": "",
            "isoUpl": "", "liab": "", "maxLoan": "", "mgnRatio": "", "mmr": "",
            "notionalLever": "", "ordFrozen": fmt(frozen), "rewardBal": "0",
            "spotInUseAmt": "", "spotIsoBal": "0", "stgyEq": "0", "twap": "0",
            "uTime": str(self.u_time or now), "upl": "", "uplLiab": "",
        }

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for ``GET /_emulator/state``."""
        return {
            "balances": {
                c: {"cash": str(self.cash.get(c, ZERO)), "frozen": str(self.frozen.get(c, ZERO))}
                for c in self.currencies()
            },
            "orders": [
                {"ordId": o.ord_id, "clOrdId": o.cl_ord_id, "instId": o.inst.inst_id,
                 "side": o.side, "ordType": o.ord_type, "px": None if o.px is None else str(o.px),
                 "sz": str(o.sz), "state": o.state}
                for o in self.orders.values()
            ],
            "algo_orders": [{"algoId": o.algo_id, "algoClOrdId": o.algo_cl_ord_id, "instId": o.inst.inst_id,
                             "ordType": o.kind, "side": o.side, "state": o.state, "ordIdList": list(o.ord_ids)}
                            for o in self.algo_orders.values()],
            "positions": {k: str(v) for k, v in self.positions.items()},
            "leverage": dict(self.leverage),
            "withdrawals": list(self.withdrawals),
        }
