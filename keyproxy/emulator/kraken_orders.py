"""AddOrder validation for the Kraken emulator.

Parameters as documented in krakenfx/api-specs
``schemas/requests/trading/orders/add.yaml``: ``pair`` (id or altname),
``type`` (buy/sell), ``ordertype``, ``volume`` (base asset), ``price``,
``oflags`` (post, fcib, fciq, nompp, viqc), ``timeinforce`` (GTC, IOC, GTD),
``userref`` (int32) / ``cl_ord_id`` (mutually exclusive), ``validate``.
Only ``limit`` and ``market`` orders are emulated; other order types, GTD and
``viqc`` are refused with ``EGeneral:Invalid arguments:<field>`` rather than
emulated half-way. Error texts: support.kraken.com "API error messages"
(``EQuery:Unknown asset pair``, ``EOrder:Order minimum not met``,
``EOrder:Cost minimum not met``, ``EOrder:Insufficient funds``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from keyproxy.emulator.kraken_auth import KrakenError, invalid_argument
from keyproxy.emulator.kraken_data import find_pair, places_of
from keyproxy.emulator.kraken_state import Account, Order, kraken_id

_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_FLAGS = {"post", "fcib", "fciq", "nompp", "viqc"}
_INT32 = 2**31


def truthy(value: Any) -> bool:
    """Form bodies carry booleans as text ("true", ccxt sends "True"); JSON as booleans."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def parse_amount(value: Any) -> Decimal | None:
    """A non-negative decimal from a form string or JSON number/string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value)
    if not _DECIMAL_RE.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - regex guards
        return None


def _userref(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise invalid_argument("userref") from None
    if not -_INT32 <= number < _INT32:
        raise invalid_argument("userref")
    return number


def order_filter(params: dict[str, Any]) -> Callable[[Order], bool]:
    """OpenOrders / ClosedOrders ``userref`` and ``cl_ord_id`` filters."""
    userref = _userref(params.get("userref"))
    cl_ord_id = params.get("cl_ord_id")

    def keep(order: Order) -> bool:
        if userref is not None and order.userref != userref:
            return False
        return cl_ord_id in (None, "") or order.cl_ord_id == str(cl_ord_id)

    return keep


def add_order(params: dict[str, Any], acct: Account, now: float) -> tuple[Order, bool]:
    """Validate an AddOrder request; returns (order, validate_only)."""
    pair_name = str(params.get("pair") or "")
    if not pair_name:
        raise invalid_argument("pair")
    pair = find_pair(pair_name)
    if pair is None:
        raise KrakenError("EQuery:Unknown asset pair")
    side = params.get("type")
    if side not in ("buy", "sell"):
        raise invalid_argument("type")
    ordertype = params.get("ordertype")
    if ordertype not in ("limit", "market"):
        raise invalid_argument("ordertype")
    raw_flags = str(params.get("oflags") or "")
    flags = [f for f in raw_flags.split(",") if f]
    if any(f not in _FLAGS for f in flags) or ("fcib" in flags and "fciq" in flags):
        raise invalid_argument("oflags")
    if "viqc" in flags:
        raise invalid_argument("viqc")
    volume = parse_amount(params.get("volume"))
    if volume is None or volume <= 0 or places_of(volume) > pair.lot_decimals:
        raise invalid_argument("volume")
    price = Decimal(0)
    if ordertype == "limit":
        parsed = parse_amount(params.get("price"))
        if parsed is None or parsed <= 0 or places_of(parsed) > pair.pair_decimals:
            raise invalid_argument("price")
        if parsed % pair.tick != 0:
            raise invalid_argument("price")
        price = parsed
    tif = str(params.get("timeinforce") or "GTC")
    if tif not in ("GTC", "IOC"):
        raise invalid_argument("timeinforce")
    userref = _userref(params.get("userref"))
    cl_ord_id = params.get("cl_ord_id")
    if cl_ord_id in ("", None):
        cl_ord_id = None
    elif userref is not None:
        raise invalid_argument("cl_ord_id")
    if volume < pair.ordermin:
        raise KrakenError("EOrder:Order minimum not met")
    if volume * (price if ordertype == "limit" else pair.last) < pair.costmin:
        raise KrakenError("EOrder:Cost minimum not met")
    if cl_ord_id is not None and any(o.cl_ord_id == str(cl_ord_id) for o in acct.open_orders()):
        raise invalid_argument("cl_ord_id")
    order = Order(
        txid=kraken_id("O"),
        pair=pair,
        side=str(side),
        ordertype=str(ordertype),
        vol=volume,
        price=price,
        opentm=round(now, 4),
        oflags=",".join(flags) or ("fcib" if side == "sell" else "fciq"),
        userref=userref,
        cl_ord_id=None if cl_ord_id is None else str(cl_ord_id),
        ioc=tif == "IOC",
    )
    return order, truthy(params.get("validate"))
