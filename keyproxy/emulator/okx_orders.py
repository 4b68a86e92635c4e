"""Order parameter validation for the OKX emulator ("Place order", v5).

Parameters: ``instId``, ``tdMode`` (``cash`` for spot without margin;
``cross``/``isolated`` for derivatives), ``side``, ``ordType`` (``market``,
``limit``, ``post_only``, ``fok``, ``ioc``), ``sz``, ``px``, ``clOrdId``
(up to 32 alphanumerics), ``tag`` (up to 16), ``posSide``, ``reduceOnly``,
``tgtCcy`` (``base_ccy``/``quote_ccy``, "only applicable to SPOT market
orders": a spot market buy is sized in quote currency by default; ignored
otherwise, as ccxt sends ``base_ccy`` with spot limit orders too). Empty
strings count as absent (the official python-okx SDK sends every optional
parameter as ``""``).
The account is in net position mode, so ``posSide`` long/short is refused.

Failures are per-order ``sCode``/``sMsg`` pairs (ccxt's okx error table:
50014, 51000, 51001, 51008, 51016, 51020, 51121).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from keyproxy.emulator.okx_data import INSTRUMENTS, Instrument
from keyproxy.emulator.okx_state import Account, Order, OrderRejected

_CL_ORD_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9]{0,16}$")
_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
ORD_TYPES = ("market", "limit", "post_only", "fok", "ioc")


def text(params: dict[str, Any], name: str) -> str:
    """A parameter as text; None, empty and JSON null are all ''."""
    value = params.get(name)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def empty(name: str) -> OrderRejected:
    return OrderRejected("50014", f"Parameter {name} can not be empty.")


def bad(name: str) -> OrderRejected:
    return OrderRejected("51000", f"Parameter {name} error")


def decimal(params: dict[str, Any], name: str) -> Decimal:
    raw = text(params, name)
    if not raw:
        raise empty(name)
    if not _DECIMAL_RE.match(raw):
        raise bad(name)
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - regex guards
        raise bad(name) from None
    if value <= 0:
        raise bad(name)
    return value


def instrument(params: dict[str, Any]) -> Instrument:
    inst_id = text(params, "instId")
    if not inst_id:
        raise empty("instId")
    inst = INSTRUMENTS.get(inst_id)
    if inst is None:
        raise OrderRejected("51001", "Instrument ID or Spread ID doesn't exist.")
    return inst


def order_basics(params: Any) -> tuple[Instrument, str, str]:
    """What every order request names (a regular order's and an algo order's): instrument, trade mode, side."""
    if not isinstance(params, dict):
        raise OrderRejected("50002", "Json data format error")
    inst = instrument(params)
    td_mode = text(params, "tdMode")
    if not td_mode:
        raise empty("tdMode")
    if td_mode not in (("cash", "cross", "isolated", "spot_isolated") if inst.spot else ("cross", "isolated")):
        raise bad("tdMode")
    side = text(params, "side")
    if not side:
        raise empty("side")
    if side not in ("buy", "sell"):
        raise bad("side")
    return inst, td_mode, side


def new_order(params: Any, acct: Account, ord_id: str, now: int) -> Order:
    """Validate one place-order request for ``acct``; raise OrderRejected on failure."""
    inst, td_mode, side = order_basics(params)
    ord_type = text(params, "ordType")
    if not ord_type:
        raise empty("ordType")
    if ord_type not in ORD_TYPES:
        raise bad("ordType")
    sz = decimal(params, "sz")
    tgt_ccy = text(params, "tgtCcy")
    if tgt_ccy not in ("", "base_ccy", "quote_ccy"):
        raise bad("tgtCcy")
    if inst.spot and ord_type == "market" and not tgt_ccy:
        tgt_ccy = "quote_ccy" if side == "buy" else "base_ccy"
    sized_in_quote = inst.spot and ord_type == "market" and tgt_ccy == "quote_ccy"
    if not sized_in_quote:
        if sz % inst.lot != 0:
            raise OrderRejected("51121", "Order quantity must be a multiple of the lot size.")
        if sz < inst.min_sz:
            raise OrderRejected(
                "51020", "Your order should meet or exceed the minimum order amount.")
    px: Decimal | None = None
    if ord_type != "market":
        px = decimal(params, "px")
        if px % inst.tick != 0:
            raise bad("px")
    pos_side = text(params, "posSide")
    if pos_side not in ("", "net") or (inst.spot and pos_side):
        raise bad("posSide")
    cl_ord_id, tag = text(params, "clOrdId"), text(params, "tag")
    if cl_ord_id and not _CL_ORD_ID_RE.match(cl_ord_id):
        raise bad("clOrdId")
    if not _TAG_RE.match(tag):
        raise bad("tag")
    if cl_ord_id and any(o.is_open and o.cl_ord_id == cl_ord_id for o in acct.orders.values()):
        raise OrderRejected("51016", "Duplicated client order ID")
    reduce_only = text(params, "reduceOnly")
    if reduce_only not in ("", "true", "false"):
        raise bad("reduceOnly")
    return Order(
        ord_id=ord_id, cl_ord_id=cl_ord_id, tag=tag, inst=inst, side=side, ord_type=ord_type,
        td_mode=td_mode, sz=sz, px=px, tgt_ccy=tgt_ccy, c_time=now, pos_side=pos_side,
        reduce_only=reduce_only == "true",
    )
