"""OKX v5 REST emulator (host www.okx.com, paths ``/api/v5/...``).

Written from OKX's documentation (see ``okx_auth``), independently of
keyproxy's adapters. Success answers are ``{"code": "0", "msg": "", "data": [...]}``.

Endpoints an unmodified ccxt 4.5.90 ``okx()`` (apiKey, secret, password; every
``urls['api']`` host pointed here) calls, all served:

* ``load_markets()``: ``GET /api/v5/asset/currencies`` (signed), then
  ``GET /api/v5/public/instruments`` with ``instType`` SPOT, FUTURES, SWAP and
  OPTION (the latter once per ``uly`` BTC-USD and ETH-USD).
* ``fetch_balance()``: ``GET /api/v5/account/balance`` (``{'type': 'funding'}``:
  ``GET /api/v5/asset/balances``).
* ``create_order()``: ``POST /api/v5/trade/batch-orders`` (a one-order list;
  ccxt's default) or ``POST /api/v5/trade/order``; ``fetch_open_orders()``:
  ``GET /api/v5/trade/orders-pending``; ``fetch_order()``: ``GET /api/v5/trade/order``;
  ``cancel_order()``: ``POST /api/v5/trade/cancel-order``; ``set_leverage()``:
  ``POST /api/v5/account/set-leverage``; ``withdraw()``: ``POST /api/v5/asset/withdrawal``.

Algo orders (``create_order`` with ``stopLossPrice``, ``takeProfitPrice`` or ``triggerPrice``; ``fetch_order``,
``cancel_order`` and ``fetch_open_orders`` with ``{"stop": True}``): ``okx_algo.py``.

python-okx 0.4.4 (OKX's official SDK) uses ``GET /api/v5/account/balance``,
``POST /api/v5/trade/order``, ``GET /api/v5/trade/orders-pending``,
``GET /api/v5/trade/order`` and ``POST /api/v5/trade/cancel-order``; it sends
``x-simulated-trading`` on every request (``flag`` "1" demo, "0" live).
``GET /api/v5/account/config`` shows the key's ``perm`` ("read_only,trade,withdraw").

Accounts-file ``permissions`` for an OKX key: ``read_only``, ``trade``,
``withdraw`` (booleans, OKX's permission names) and ``demo`` (true: a demo
trading key, only valid with ``x-simulated-trading: 1``); ``passphrase`` is required.
"""

from __future__ import annotations

import asyncio

import json
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from aiohttp import web

from keyproxy.emulator.accounts import AccountsError, EmulatedKey
from keyproxy.emulator.base import Clock, RequestNote
from keyproxy.emulator.rate_limits import OkxLimits
from keyproxy.emulator.okx_ws import OkxWs
from keyproxy.emulator.okx_account import (
    DEFAULT_PERMISSIONS,
    READ,
    TRADE,
    WITHDRAW,
    AccountHandlers,
    Call,
)
from keyproxy.emulator.okx_auth import (
    AuthOutcome,
    OkxError,
    Verifier,
    authenticate,
    permission_denied,
)
from keyproxy.emulator.candles import candle_opens
from keyproxy.emulator.okx_algo import AlgoOrders
from keyproxy.emulator.okx_data import INST_BY_CODE, INST_TYPES, INSTRUMENTS, fmt
from keyproxy.emulator.okx_orders import empty, instrument, new_order, text
from keyproxy.emulator.okx_state import Account, OrderRejected

PREFIX = "/api/v5/"
_BARS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1H": 3_600_000,
         "2H": 7_200_000, "4H": 14_400_000, "6H": 21_600_000, "12H": 43_200_000, "1D": 86_400_000,
         "1W": 604_800_000, "1M": 2_592_000_000}


@dataclass(frozen=True)
class Route:
    handler: str
    permission: str | None  # None: public endpoint


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "public/time"): Route("server_time", None),
    ("GET", "public/instruments"): Route("instruments", None),
    ("GET", "market/ticker"): Route("ticker", None),
    ("GET", "market/tickers"): Route("tickers", None),
    ("GET", "market/candles"): Route("candles", None),
    ("GET", "market/history-candles"): Route("candles", None),
    ("GET", "trade/fills"): Route("fills", READ),
    ("GET", "trade/fills-history"): Route("fills", READ),
    ("GET", "asset/currencies"): Route("currencies", READ),
    ("GET", "asset/balances"): Route("asset_balances", READ),
    ("GET", "account/balance"): Route("balance", READ),
    ("GET", "account/config"): Route("config", READ),
    ("GET", "account/positions"): Route("positions", READ),
    ("GET", "trade/order"): Route("get_order", READ),
    ("GET", "trade/orders-pending"): Route("orders_pending", READ),
    ("GET", "trade/orders-history"): Route("orders_history", READ),
    ("POST", "trade/order"): Route("place_order", TRADE),
    ("POST", "trade/batch-orders"): Route("batch_orders", TRADE),
    ("POST", "trade/cancel-order"): Route("cancel_order", TRADE),
    ("POST", "trade/cancel-all-after"): Route("cancel_all_after", TRADE),
    ("POST", "trade/order-algo"): Route("place_algo", TRADE),
    ("POST", "trade/cancel-algos"): Route("cancel_algos", TRADE),
    ("GET", "trade/order-algo"): Route("get_algo", READ),
    ("GET", "trade/orders-algo-pending"): Route("algo_pending", READ),
    ("GET", "trade/orders-algo-history"): Route("algo_history", READ),
    ("POST", "account/set-leverage"): Route("set_leverage", TRADE),
    ("POST", "asset/withdrawal"): Route("withdrawal", WITHDRAW),
}


class OkxEmulator(AccountHandlers, AlgoOrders):
    """OKX v5, as far as ccxt and python-okx can tell."""

    name = "okx"
    owns_priority = 1  # /api/v5/ lies inside binance's /api/: app.py asks okx first

    def __init__(self, keys: list[EmulatedKey], clock: Clock) -> None:
        for key in keys:
            if key.key_type != "hmac" or not key.passphrase:
                raise AccountsError(f"accounts: okx key {key.api_key[:8]}... needs key_type "
                                    "hmac, a secret and a passphrase")
        self.clock = clock
        self.keys = list(keys)
        self.verifiers = {k.api_key: Verifier(k) for k in keys}
        self.rate = OkxLimits()  # off until a test sets it (rate_limits.py)
        self.ws = OkxWs(self)
        self.reset()

    def reset(self) -> None:
        self.accounts = {k.api_key: Account.fresh(k) for k in self.keys}
        self._ids = count(700_000_000_000_000_001)
        self.reset_algo()

    def state(self) -> dict[str, Any]:
        return {key: acct.snapshot() for key, acct in self.accounts.items()}

    def owns(self, path: str) -> bool:
        return path.startswith(PREFIX)

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        """The endpoint's limit per key and 2 s first, when a test set one (HTTP 429 50011 over it)."""
        api_key = request.headers.get("OK-ACCESS-KEY")
        if api_key and self.rate.refused(api_key, request.path, self.clock()):
            return self._error(note, OkxError(429, "50011", "Too Many Requests"))
        return await self._handle(request, body, note)

    async def _handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        note.exchange = self.name
        sub = request.path[len(PREFIX):]
        route = ROUTES.get((request.method, sub))
        if route is None:
            if any(p == sub for _, p in ROUTES):
                return self._error(note, OkxError(405, "50115", "Invalid request method."))
            return web.Response(
                status=404, text=f"emulator: no OKX endpoint {request.method} {request.path}"
            )
        now = int(self.clock() * 1000)
        in_time = str(int(self.clock() * 1_000_000))
        try:
            account = None
            if route.permission is not None:
                note.api_key = request.headers.get("OK-ACCESS-KEY") or None
                outcome = AuthOutcome()
                try:
                    key = authenticate(headers=request.headers, method=request.method,
                                       request_path=request.raw_path, body=body,
                                       verifiers=self.verifiers, now_ms=now, outcome=outcome)
                finally:
                    note.signature_verified = outcome.signature_verified
                if not {**DEFAULT_PERMISSIONS, **key.permissions}.get(route.permission):
                    raise permission_denied()
                account = self.accounts[key.api_key]
            params = dict(request.query) if request.method == "GET" else _json_body(request, body)
            handler: Callable[[Call], Any] = getattr(self, route.handler)
            result = handler(Call(params, account, now))
        except OkxError as err:
            return self._error(note, err)
        except OrderRejected as rej:  # request-level: parameter errors are HTTP 400
            status = 400 if rej.code in ("50002", "50014", "50015", "51000") else 200
            return self._error(note, OkxError(status, rej.code, rej.msg))
        if isinstance(result, dict):  # order endpoints build their own envelope
            if result["code"] != "0":
                note.error_code = int(result["data"][0]["sCode"]) if result["data"] else None
            out_time = str(int(self.clock() * 1_000_000))
            return web.json_response({**result, "inTime": in_time, "outTime": out_time})
        return web.json_response({"code": "0", "msg": "", "data": result})

    @staticmethod
    def _error(note: RequestNote, err: OkxError) -> web.Response:
        note.error_code = int(err.code)
        return web.json_response(err.body(), status=err.status)

    # -- public ---------------------------------------------------------------
    def server_time(self, call: Call) -> list[dict[str, str]]:
        return [{"ts": str(call.now)}]

    def instruments(self, call: Call) -> list[dict[str, Any]]:
        q = call.query
        inst_type = text(q, "instType")
        if not inst_type:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        if inst_type not in INST_TYPES:
            raise OkxError(400, "51000", "Parameter instType error")
        family = text(q, "instFamily") or text(q, "uly")
        if inst_type == "OPTION" and not family:
            raise OkxError(400, "50015", "Either parameter uly or instFamily is required.")
        return [
            i.doc() for i in INSTRUMENTS.values()
            if i.inst_type == inst_type
            and (not family or i.family == family)
            and (not text(q, "instId") or i.inst_id == text(q, "instId"))
        ]

    def _ticker(self, inst_id: str, now: int) -> dict[str, Any]:
        i = INSTRUMENTS[inst_id]
        last = fmt(i.last)
        return {"instType": i.inst_type, "instId": i.inst_id, "last": last, "lastSz": "1",
                "askPx": fmt(i.last + i.tick), "askSz": "1", "bidPx": fmt(i.last - i.tick),
                "bidSz": "1", "open24h": last, "high24h": last, "low24h": last,
                "volCcy24h": "1000", "vol24h": "1000", "ts": str(now), "sodUtc0": last,
                "sodUtc8": last}

    def ticker(self, call: Call) -> list[dict[str, Any]]:
        try:
            inst = instrument(call.query)
        except OrderRejected as rej:
            raise OkxError(400 if rej.code == "50014" else 200, rej.code, rej.msg) from None
        return [self._ticker(inst.inst_id, call.now)]

    def tickers(self, call: Call) -> list[dict[str, Any]]:
        inst_type = text(call.query, "instType")
        if not inst_type:
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        return [self._ticker(i.inst_id, call.now) for i in INSTRUMENTS.values()
                if i.inst_type == inst_type]

    def candles(self, call: Call) -> list[list[str]]:
        """`market/candles` (and history-candles): newest first; `after`/`before` are open times (ms)."""
        try:
            inst = instrument(call.query)
        except OrderRejected as rej:
            raise OkxError(400 if rej.code == "50014" else 200, rej.code, rej.msg) from None
        bar = _BARS.get(text(call.query, "bar") or "1m")
        if bar is None:
            raise OkxError(400, "51000", "Parameter bar error")
        limit = text(call.query, "limit") or "100"
        if not limit.isdigit() or not 1 <= int(limit) <= 300:
            raise OkxError(400, "51000", "Parameter limit error")
        after, before = text(call.query, "after"), text(call.query, "before")
        end = int(after) - 1 if after.isdigit() else None  # older than `after`
        opens = candle_opens(bar, call.now, int(limit), int(before) + 1 if before.isdigit() else None, end)
        last, newest = fmt(inst.last), call.now // bar * bar
        return [[str(t), last, last, last, last, "10", "10", fmt(inst.last * 10), "0" if t == newest else "1"]
                for t in reversed(opens)]

    def fills(self, call: Call) -> list[dict[str, Any]]:
        """`trade/fills`: one fill per filled order (fee 0), newest first; `instId`/`ordId` filter."""
        inst_id, ord_id = text(call.query, "instId"), text(call.query, "ordId")
        out = []
        for o in sorted(call.acct.orders.values(), key=lambda o: int(o.ord_id), reverse=True):
            if o.acc_fill_sz <= 0 or inst_id and o.inst.inst_id != inst_id or ord_id and o.ord_id != ord_id:
                continue
            out.append({"instType": o.inst.inst_type, "instId": o.inst.inst_id, "tradeId": o.trade_id or o.ord_id,
                        "ordId": o.ord_id, "clOrdId": o.cl_ord_id, "billId": o.ord_id, "tag": "",
                        "fillPx": fmt(o.avg_px), "fillSz": fmt(o.acc_fill_sz), "side": o.side,
                        "posSide": o.pos_side or "net", "execType": "T", "feeCcy": o.inst.quote, "fee": "0",
                        "ts": str(o.u_time), "fillTime": str(o.u_time)})
        return out[:100]

    # -- trading ------------------------------------------------------------------
    def _place(self, call: Call, requests: list[Any]) -> dict[str, Any]:
        data = []
        for req in requests:
            ord_id = str(next(self._ids))
            cl = text(req, "clOrdId") if isinstance(req, dict) else ""
            tag = text(req, "tag") if isinstance(req, dict) else ""
            entry = {"clOrdId": cl, "ordId": "", "tag": tag, "ts": str(call.now)}
            try:
                order = new_order(req, call.acct, ord_id, call.now)
                call.acct.place(order, call.now)
                data.append({**entry, "ordId": ord_id, "sCode": "0", "sMsg": "Order placed"})
                self._changed(call.acct, order)
            except OrderRejected as rej:
                data.append({**entry, "sCode": rej.code, "sMsg": rej.msg})
        failed = sum(1 for d in data if d["sCode"] != "0")
        if not failed:
            return {"code": "0", "msg": "", "data": data}
        if failed == len(data):
            return {"code": "1", "msg": "All operations failed", "data": data}
        return {"code": "2", "msg": "Bulk operation partially succeeded", "data": data}

    def _changed(self, account: Any, order: Any) -> None:
        """An order changed (REST or WebSocket): the `orders` channel of the account's sockets hears of it."""
        if self.ws.sessions:
            asyncio.get_running_loop().create_task(self.ws.publish(account, order.doc(account.lever(order.inst))))
            asyncio.get_running_loop().create_task(self.ws.publish_account(account))

    def place_order(self, call: Call) -> dict[str, Any]:
        return self._place(call, [call.params])

    def batch_orders(self, call: Call) -> dict[str, Any]:
        orders = call.params if isinstance(call.params, list) else [call.params]
        if not orders or len(orders) > 20:
            raise OkxError(200, "51111", "Maximum 20 orders can be placed in bulk")
        return self._place(call, orders)

    def _find(self, call: Call, missing: tuple[str, str]) -> Any:
        q = call.query
        code = q.get("instIdCode")
        inst_id = text(q, "instId") or (INST_BY_CODE.get(code, "") if isinstance(code, int) else "")
        if not inst_id:
            raise empty("instId")
        ord_id, cl_ord_id = text(q, "ordId"), text(q, "clOrdId")
        if not ord_id and not cl_ord_id:
            raise OrderRejected("51003", "Either client order ID or order ID is required.")
        order = call.acct.find(inst_id, ord_id, cl_ord_id)
        if order is None:
            raise OrderRejected(*missing)
        return order

    def cancel_all_after(self, call: Call) -> list[dict[str, Any]]:
        """The dead-man's switch: `timeOut` 10-120 s arms (re-arms) it, 0 disarms; when it expires every
        pending order of the key is cancelled (`fire_timers`)."""
        raw = text(call.query, "timeOut")
        if not raw.isdigit() or (int(raw) != 0 and not 10 <= int(raw) <= 120):
            raise OkxError(200, "51000", "Parameter timeOut error")
        call.acct.dead_man_at = call.now + int(raw) * 1000 if int(raw) else None
        return [{"triggerTime": str(call.acct.dead_man_at or 0), "tag": "", "ts": str(call.now)}]

    def fire_timers(self) -> None:
        now = int(self.clock() * 1000)
        for acct in self.accounts.values():
            if acct.dead_man_at is not None and acct.dead_man_at <= now:
                acct.dead_man_at = None
                for order in list(acct.orders.values()):
                    if order.state in ("live", "partially_filled"):
                        acct.cancel(order, now)
                        self._changed(acct, order)

    def get_order(self, call: Call) -> list[dict[str, Any]]:
        order = self._find(call, ("51603", "Order does not exist"))
        return [order.doc(call.acct.lever(order.inst))]

    def cancel_order(self, call: Call) -> dict[str, Any]:
        q = call.query
        entry = {"clOrdId": text(q, "clOrdId"), "ordId": text(q, "ordId"), "ts": str(call.now)}
        try:
            order = self._find(call, ("51400", "Cancellation failed as the order does not exist."))
            if order.state == "canceled":
                raise OrderRejected(
                    "51401", "Cancellation failed as the order is already canceled.")
            if order.state == "filled":
                raise OrderRejected(
                    "51402", "Cancellation failed as the order is already completed.")
        except OrderRejected as rej:
            if rej.code in ("50014", "51003"):
                raise
            return {"code": "1", "msg": "All operations failed",
                    "data": [{**entry, "sCode": rej.code, "sMsg": rej.msg}]}
        call.acct.cancel(order, call.now)
        self._changed(call.acct, order)
        entry.update(clOrdId=order.cl_ord_id, ordId=order.ord_id)
        return {"code": "0", "msg": "", "data": [{**entry, "sCode": "0", "sMsg": ""}]}

    def _orders(self, call: Call, open_: bool) -> list[dict[str, Any]]:
        q = call.query
        orders = [o for o in call.acct.orders.values() if o.is_open == open_
                  and text(q, "instType") in ("", o.inst.inst_type)
                  and text(q, "instId") in ("", o.inst.inst_id)
                  and text(q, "ordType") in ("", o.ord_type)
                  and text(q, "state") in ("", o.state)]
        limit = int(text(q, "limit") or 100) if text(q, "limit").isdigit() else 100
        return [o.doc(call.acct.lever(o.inst)) for o in reversed(orders)][: min(limit, 100)]

    def orders_pending(self, call: Call) -> list[dict[str, Any]]:
        return self._orders(call, open_=True)

    def orders_history(self, call: Call) -> list[dict[str, Any]]:
        if not text(call.query, "instType"):
            raise OkxError(400, "50014", "Parameter instType can not be empty.")
        return self._orders(call, open_=False)

def _json_body(request: web.Request, body: bytes) -> Any:
    """POST parameters: a JSON object (or a list for batch endpoints)."""
    if not body.strip():
        return {}
    if request.content_type != "application/json":
        raise OkxError(400, "50006", 'Invalid Content_Type, please use "application/json" format')
    try:
        return json.loads(body)
    except ValueError:
        raise OkxError(400, "50002", "Json data format error") from None


def create(keys: list[EmulatedKey], clock: Clock = time.time) -> OkxEmulator:
    """Module entry point used by ``keyproxy.emulator.app``."""
    return OkxEmulator(keys, clock)


DEFAULT_BALANCES = {"USDT": "100000", "USDC": "100000", "BTC": "10", "ETH": "100"}


def new_key(
    key_type: str = "hmac",
    permissions: dict[str, Any] | None = None,
    balances: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh OKX-shaped key: (accounts-file entry, credentials for ``keyproxy key add``).

    OKX API keys are UUIDs, secret keys 32 upper-case hex characters, and the
    passphrase is chosen by the user when the key is created.
    """
    if key_type != "hmac":
        raise ValueError(f"okx keys are HMAC only, not {key_type!r}")
    api_key = str(uuid.uuid4())
    secret = secrets.token_hex(16).upper()
    passphrase = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    entry = {
        "exchange": "okx",
        "api_key": api_key,
        "key_type": "hmac",
        "secret": secret,
        "passphrase": passphrase,
        "permissions": {**DEFAULT_PERMISSIONS, **(permissions or {})},
        "balances": dict(balances or DEFAULT_BALANCES),
    }
    return entry, {"api_key": api_key, "secret": secret, "passphrase": passphrase}
