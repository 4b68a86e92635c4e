"""OKX v5 algo orders (emulator side): stops, take-profits and trigger orders.

From OKX's docs-v5 "Order Book Trading > Algo Trading" pages ("Place algo order", "Cancel algo order", "Get algo
order details", "Get algo order list", "Get algo order history"), apart from keyproxy's adapter:

* ``POST /api/v5/trade/order-algo`` takes one JSON object: ``instId``, ``tdMode``, ``side``, ``ordType``
  (``conditional``, ``oco``, ``trigger``, ``move_order_stop``, ``twap``, ``iceberg``, ``chase``), ``sz`` (or
  ``closeFraction``), ``algoClOrdId``, ``tag``, ``reduceOnly``, ``tgtCcy``; a ``conditional`` / ``oco`` order
  ``tpTriggerPx``/``tpOrdPx``/``slTriggerPx``/``slOrdPx`` (an order price of "-1": at the market), a ``trigger``
  order ``triggerPx`` and ``orderPx``. Answered ``{"algoId", "algoClOrdId", "sCode", "sMsg", "tag"}``.
* ``POST /api/v5/trade/cancel-algos`` takes a list (ten at most) of ``{"algoId"|"algoClOrdId", "instId"}``.
* ``GET /api/v5/trade/order-algo`` (``algoId`` or ``algoClOrdId``), ``GET /api/v5/trade/orders-algo-pending``
  (``ordType`` mandatory: one kind, or ``conditional,oco``) and ``GET /api/v5/trade/orders-algo-history``
  (``ordType``, and ``state`` or ``algoId``: exactly one); newest first, pages of 100 by ``after``/``before``.

States: ``live``, then ``effective`` (triggered: the order it placed in ``ordIdList`` and ``ordId``, which names the
algo order in its ``algoId``), ``canceled`` or ``order_failed``. Prices move only by the test hook ``POST
/_emulator/price`` (``set_price``): a move past a live order's trigger fires it. Trailing, TWAP, iceberg and chase
orders rest and never fire.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import count
from typing import Any

from keyproxy.emulator.base import Clock
from keyproxy.emulator.okx_account import Call
from keyproxy.emulator.okx_data import INSTRUMENTS, Instrument, fmt
from keyproxy.emulator.okx_orders import bad, decimal, empty, new_order, order_basics, text
from keyproxy.emulator.okx_state import Account, OrderRejected

KINDS = ("conditional", "oco", "trigger", "move_order_stop", "twap", "iceberg", "chase")
_STATES = ("effective", "canceled", "order_failed")  # what the history is asked for
_CLIENT_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
FIRST_ALGO_ID = 900_000_000_000_000_001  # an id space apart from ordId's


@dataclass
class AlgoOrder:
    algo_id: str
    algo_cl_ord_id: str
    tag: str
    inst: Instrument
    kind: str
    side: str
    td_mode: str
    params: dict[str, str]
    placed_last: Decimal  # the last price at placement: which way a trigger order fires
    c_time: int
    state: str = "live"
    ord_ids: list[str] = field(default_factory=list)
    actual_side: str = ""
    fail_code: str = ""
    u_time: int = 0
    trigger_time: str = ""

    def fires(self, last: Decimal) -> str | None:
        """"sl" / "tp" / "trigger": which leg a move of the last price to `last` fires (None: none)."""
        if self.state != "live":
            return None
        p = self.params.get
        sell = self.side == "sell"
        if self.kind in ("conditional", "oco"):
            sl, tp = p("slTriggerPx"), p("tpTriggerPx")
            if sl and (last <= Decimal(sl) if sell else last >= Decimal(sl)):
                return "sl"
            if tp and (last >= Decimal(tp) if sell else last <= Decimal(tp)):
                return "tp"
        if self.kind == "trigger" and p("triggerPx"):
            at = Decimal(p("triggerPx") or "0")
            if last >= at if at >= self.placed_last else last <= at:
                return "trigger"
        return None

    def doc(self) -> dict[str, Any]:
        p = self.params.get
        i = self.inst
        return {
            "instType": i.inst_type, "instId": i.inst_id, "ccy": "", "ordId": self.ord_ids[-1] if self.ord_ids else "",
            "ordIdList": list(self.ord_ids), "algoId": self.algo_id, "clOrdId": "", "algoClOrdId": self.algo_cl_ord_id,
            "sz": p("sz", ""), "closeFraction": p("closeFraction", ""), "ordType": self.kind, "side": self.side,
            "posSide": "" if i.spot else (p("posSide") or "net"), "tdMode": self.td_mode, "tgtCcy": p("tgtCcy", ""),
            "state": self.state, "lever": "", "tpTriggerPx": p("tpTriggerPx", ""),
            "tpTriggerPxType": p("tpTriggerPxType", "last" if p("tpTriggerPx") else ""), "tpOrdPx": p("tpOrdPx", ""),
            "slTriggerPx": p("slTriggerPx", ""),
            "slTriggerPxType": p("slTriggerPxType", "last" if p("slTriggerPx") else ""), "slOrdPx": p("slOrdPx", ""),
            "triggerPx": p("triggerPx", ""), "triggerPxType": p("triggerPxType", "last" if p("triggerPx") else ""),
            "ordPx": p("orderPx", ""), "actualSz": p("sz", "") if self.ord_ids else "",
            "actualPx": self._order_price(self.actual_side) or "" if self.ord_ids else "",
            "actualSide": self.actual_side, "triggerTime": self.trigger_time, "reduceOnly": p("reduceOnly", "false"),
            "failCode": self.fail_code, "callbackRatio": p("callbackRatio", ""),
            "callbackSpread": p("callbackSpread", ""), "activePx": p("activePx", ""), "tag": self.tag,
            "attachAlgoOrds": [], "last": fmt(INSTRUMENTS[i.inst_id].last),
            "cTime": str(self.c_time), "uTime": str(self.u_time or self.c_time),
        }

    def _order_price(self, leg: str) -> str | None:
        """The order price of the leg that fired ("-1" or none: at the market, None)."""
        price = self.params.get({"sl": "slOrdPx", "tp": "tpOrdPx", "trigger": "orderPx"}.get(leg, ""))
        return None if price in (None, "", "-1") else price


def _algo(params: Any, algo_id: str, now: int) -> AlgoOrder:
    """Validate one place-algo-order request (OKX's sCodes: 50014 missing, 51000 malformed, 51001 instrument)."""
    inst, td_mode, side = order_basics(params)
    kind = text(params, "ordType")
    if kind not in KINDS:
        raise empty("ordType") if not kind else bad("ordType")
    if not text(params, "closeFraction"):
        decimal(params, "sz")
    if kind in ("conditional", "oco"):
        if not text(params, "slTriggerPx") and not text(params, "tpTriggerPx"):
            raise empty("slTriggerPx")
        for name in ("slTriggerPx", "tpTriggerPx"):
            if text(params, name):
                decimal(params, name)
        for name in ("slOrdPx", "tpOrdPx"):
            if text(params, name) and text(params, name) != "-1":
                decimal(params, name)
    if kind == "trigger":
        decimal(params, "triggerPx")
        if text(params, "orderPx") != "-1":
            decimal(params, "orderPx")
    client = text(params, "algoClOrdId")
    if client and not _CLIENT_RE.match(client):
        raise bad("algoClOrdId")
    flat = {k: text(params, k) for k in params if not isinstance(params[k], (list, dict))}
    return AlgoOrder(algo_id, client, text(params, "tag"), inst, kind, side, td_mode, flat,
                     INSTRUMENTS[inst.inst_id].last, now)


def _page(orders: list[AlgoOrder], q: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first, `after` (older than) / `before` (newer than) an algoId, `limit` up to 100."""
    after, before = text(q, "after"), text(q, "before")
    chosen = [o for o in reversed(orders)
              if (not after.isdigit() or int(o.algo_id) < int(after))
              and (not before.isdigit() or int(o.algo_id) > int(before))]
    limit = min(int(text(q, "limit")), 100) if text(q, "limit").isdigit() else 100
    return [o.doc() for o in chosen[:limit]]


class AlgoOrders:
    """The algo-order handlers and the price hook (mixed into `OkxEmulator`)."""

    _ids: count[int]
    accounts: dict[str, Account]
    clock: Clock
    _changed: Callable[[Any, Any], None]

    def reset_algo(self) -> None:
        self._algo_ids = count(FIRST_ALGO_ID)
        for inst_id, original in getattr(self, "_moved", {}).items():
            INSTRUMENTS[inst_id] = original  # prices a test moved go back
        self._moved: dict[str, Instrument] = {}

    def place_algo(self, call: Call) -> dict[str, Any]:
        algo_id = str(next(self._algo_ids))
        params = call.params
        entry = {"algoId": "", "clOrdId": "", "algoClOrdId": text(params, "algoClOrdId") if isinstance(params, dict)
                 else "", "tag": text(params, "tag") if isinstance(params, dict) else ""}
        try:
            order = _algo(params, algo_id, call.now)
            if order.algo_cl_ord_id and any(o.state == "live" and o.algo_cl_ord_id == order.algo_cl_ord_id
                                            for o in call.acct.algo_orders.values()):
                raise OrderRejected("51065", "algoClOrdId already exists.")
        except OrderRejected as rej:
            return {"code": "1", "msg": "", "data": [{**entry, "sCode": rej.code, "sMsg": rej.msg}]}
        call.acct.algo_orders[algo_id] = order
        return {"code": "0", "msg": "", "data": [{**entry, "algoId": algo_id, "sCode": "0", "sMsg": ""}]}

    def cancel_algos(self, call: Call) -> dict[str, Any]:
        wanted = call.params if isinstance(call.params, list) else [call.params]
        if not wanted or len(wanted) > 10:
            raise OrderRejected("51000", "Parameter algoId error")
        data = []
        for w in wanted:
            w = w if isinstance(w, dict) else {}
            order = self._algo_named(call.acct, text(w, "algoId"), text(w, "algoClOrdId"))
            entry = {"algoId": text(w, "algoId"), "clOrdId": "", "algoClOrdId": text(w, "algoClOrdId"), "tag": ""}
            if order is None or order.inst.inst_id != text(w, "instId") or order.state != "live":
                data.append({**entry, "sCode": "51400", "sMsg": "Cancellation failed as the order does not exist."})
                continue
            order.state, order.u_time = "canceled", call.now
            data.append({**entry, "algoId": order.algo_id, "algoClOrdId": order.algo_cl_ord_id, "sCode": "0",
                         "sMsg": ""})
        failed = sum(1 for d in data if d["sCode"] != "0")
        code = "0" if not failed else "1" if failed == len(data) else "2"
        return {"code": code, "msg": "", "data": data}

    @staticmethod
    def _algo_named(acct: Account, algo_id: str, client: str) -> AlgoOrder | None:
        if algo_id:  # "algoId wins when both are sent"
            return acct.algo_orders.get(algo_id)
        found = [o for o in acct.algo_orders.values() if client and o.algo_cl_ord_id == client]
        return found[-1] if found else None

    def get_algo(self, call: Call) -> list[dict[str, Any]]:
        q = call.query
        if not text(q, "algoId") and not text(q, "algoClOrdId"):
            raise OrderRejected("51000", "Parameter algoId error")
        order = self._algo_named(call.acct, text(q, "algoId"), text(q, "algoClOrdId"))
        if order is None:
            raise OrderRejected("51603", "Order does not exist")
        return [order.doc()]

    def _listed(self, call: Call, open_: bool) -> list[dict[str, Any]]:
        q = call.query
        kinds = text(q, "ordType").split(",")
        if not text(q, "ordType"):
            raise OrderRejected("50014", "Parameter ordType can not be empty.")
        if any(k not in KINDS for k in kinds) or (len(kinds) > 1 and sorted(kinds) != ["conditional", "oco"]):
            raise OrderRejected("51000", "Parameter ordType error")
        orders = [o for o in call.acct.algo_orders.values()
                  if o.kind in kinds and (o.state == "live") == open_
                  and text(q, "instType") in ("", o.inst.inst_type) and text(q, "instId") in ("", o.inst.inst_id)
                  and text(q, "algoId") in ("", o.algo_id) and text(q, "state") in ("", o.state)]
        return _page(orders, q)

    def algo_pending(self, call: Call) -> list[dict[str, Any]]:
        return self._listed(call, open_=True)

    def algo_history(self, call: Call) -> list[dict[str, Any]]:
        q = call.query
        if bool(text(q, "state")) == bool(text(q, "algoId")) or text(q, "state") not in ("", *_STATES):
            raise OrderRejected("51000", "Parameter state error")
        return self._listed(call, open_=False)

    def set_price(self, symbol: str, price: Decimal, venue: str = "") -> list[str]:
        """The test hook (`POST /_emulator/price`, symbol an instId such as `BTC-USDT`): the instrument's last price
        moves to `price`, and every live algo order it passes fires, placing its order. Returns the algoIds fired."""
        inst = INSTRUMENTS[symbol]
        self._moved.setdefault(symbol, inst)
        INSTRUMENTS[symbol] = dataclasses.replace(inst, last=price)
        fired = []
        for acct in self.accounts.values():
            for order in list(acct.algo_orders.values()):
                leg = order.fires(price) if order.inst.inst_id == symbol else None
                if leg is not None:
                    self._fire(acct, order, leg, price)
                    fired.append(order.algo_id)
        return fired

    def _fire(self, acct: Account, algo: AlgoOrder, leg: str, price: Decimal) -> None:
        now = int(self.clock() * 1000)
        p = algo.params
        limit = algo._order_price(leg)
        params = {"instId": algo.inst.inst_id, "tdMode": algo.td_mode, "side": algo.side,
                  "ordType": "limit" if limit else "market", "sz": p.get("sz", ""), "tgtCcy": p.get("tgtCcy", ""),
                  "reduceOnly": p.get("reduceOnly", ""), **({"px": limit} if limit else {})}
        ord_id = str(next(self._ids))
        algo.trigger_time, algo.u_time = str(now), now
        algo.actual_side = leg if algo.kind in ("conditional", "oco") else ""
        try:
            order = new_order(params, acct, ord_id, now)
            order.algo_id, order.algo_cl_ord_id = algo.algo_id, algo.algo_cl_ord_id
            acct.place(order, now)
        except OrderRejected as rej:
            algo.state, algo.fail_code = "order_failed", rej.code
            return
        algo.state = "effective"
        algo.ord_ids.append(ord_id)
        self._changed(acct, order)
