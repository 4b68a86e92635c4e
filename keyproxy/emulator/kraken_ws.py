"""Kraken's spot WebSocket v2 (`wss://ws-auth.kraken.com/v2`) on the emulator, written from Kraken's docs
("Spot WebSocket v2": authentication, `executions`, `balances`, `add_order`, `cancel_order`, `cancel_all`),
independently of keyproxy's adapters.

A private frame carries `params.token`, a token from REST `GetWebSocketsToken`: "used within 15 minutes of
creation, but it does not expire once a successful WebSockets connection and private subscription has been
made". Requests are `{"method", "params", "req_id"}`; answers `{"method", "req_id", "success", "result" |
"error", "time_in", "time_out"}`; `ping` answers `pong`. Subscribing to `executions` pushes an order update
whenever one of the account's orders changes (REST or WebSocket); `balances` sends a snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from keyproxy.emulator.base import serve_frames
from keyproxy.emulator.kraken_auth import KrakenError
from keyproxy.emulator.kraken_orders import add_order
from keyproxy.emulator.kraken_state import Account, Order

TOKEN_FIRST_USE_S = 900
PRIVATE_CHANNELS = frozenset({"executions", "balances", "level3"})
PUBLIC_CHANNELS = frozenset({"ticker", "book", "ohlc", "trade", "instrument", "status", "heartbeat"})
INVALID_SESSION = "ESession:Invalid session"


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _symbol(order: Order) -> str:
    return order.pair.wsname.replace("XBT", "BTC")  # v2 names pairs BTC/USD


class KrakenWs:
    """Tokens handed out by REST, and the sockets that use them."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (api key, created)
        self.used: set[str] = set()
        self.channels: dict[web.WebSocketResponse, tuple[Account, set[str]]] = {}

    def new_token(self, api_key: str, now: float) -> dict[str, Any]:
        token = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        self.tokens[token] = (api_key, now)
        return {"token": token, "expires": TOKEN_FIRST_USE_S}

    async def serve(self, request: web.Request, record: Callable[[dict[str, Any]], None]) -> web.WebSocketResponse:
        def closed(ws: web.WebSocketResponse) -> None:
            self.channels.pop(ws, None)

        return await serve_frames(request, "kraken", self._answer, record, closed)  # type: ignore[no-any-return]

    def _account(self, params: dict[str, Any], entry: dict[str, Any]) -> Account:
        token = params.get("token")
        found = self.tokens.get(token) if isinstance(token, str) else None
        entry["signature_verified"] = False
        if found is None:
            raise KrakenError(INVALID_SESSION)
        api_key, created = found
        entry["api_key"] = api_key
        if token not in self.used and self.emulator.clock() - created > TOKEN_FIRST_USE_S:
            raise KrakenError(INVALID_SESSION)
        self.used.add(str(token))
        entry["signature_verified"] = True
        return self.emulator.accounts[api_key]  # type: ignore[no-any-return]

    def _answer(self, ws: web.WebSocketResponse, text: str, entry: dict[str, Any]) -> dict[str, Any]:
        now = self.emulator.clock()
        try:
            frame = json.loads(text)
            method, params = frame["method"], frame.get("params") or {}
            assert isinstance(method, str) and isinstance(params, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            return {"error": "EGeneral:Invalid arguments", "success": False, "time_in": _stamp(now),
                    "time_out": _stamp(now)}
        entry["method"] = method
        base = {"method": method, "req_id": frame.get("req_id"), "time_in": _stamp(now), "time_out": _stamp(now)}
        if method == "ping":
            return {**base, "method": "pong"}
        try:
            return {**base, "success": True, "result": self._run(ws, method, params, entry, now)}
        except KrakenError as err:
            entry["error_code"] = err.errors[0]
            return {**base, "success": False, "error": err.errors[0]}

    def _run(self, ws: web.WebSocketResponse, method: str, params: dict[str, Any], entry: dict[str, Any],
             now: float) -> dict[str, Any]:
        channel = params.get("channel")
        if method in ("subscribe", "unsubscribe") and channel in PUBLIC_CHANNELS:
            return {"channel": channel}
        account = self._account(params, entry)
        if method in ("subscribe", "unsubscribe"):
            if channel not in PRIVATE_CHANNELS:
                raise KrakenError("EGeneral:Invalid arguments:channel")
            _, channels = self.channels.setdefault(ws, (account, set()))
            (channels.add if method == "subscribe" else channels.discard)(str(channel))
            if method == "subscribe" and channel == "balances":
                asyncio.get_running_loop().create_task(self._send(ws, self._balances(account)))
            return {"channel": channel, "snapshot": True}
        if method == "add_order":
            rest = {"pair": str(params.get("symbol", "")).replace("BTC", "XBT"), "type": params.get("side"),
                    "ordertype": params.get("order_type"), "volume": str(params.get("order_qty", "")),
                    "price": str(params.get("limit_price", "")), "cl_ord_id": params.get("cl_ord_id")}
            order, _ = add_order(rest, account, now)
            before = self.emulator.order_states(account)
            account.place(order, now)
            self.emulator.orders_changed(account, before)
            return {"order_id": order.txid, **({"cl_ord_id": order.cl_ord_id} if order.cl_ord_id else {})}
        if method == "cancel_order":
            ids = params.get("order_id")
            targets = [account.orders.get(str(i)) for i in (ids if isinstance(ids, list) else [ids])]
            if not targets or any(o is None or o.status not in ("pending", "open") for o in targets):
                raise KrakenError("EOrder:Unknown order")
            before = self.emulator.order_states(account)
            for o in targets:
                account.cancel(o, now)  # type: ignore[arg-type]
            self.emulator.orders_changed(account, before)
            return {"order_id": targets[0].txid}  # type: ignore[union-attr]
        if method == "cancel_all":
            before = self.emulator.order_states(account)
            open_orders = account.open_orders()
            for o in open_orders:
                account.cancel(o, now)
            self.emulator.orders_changed(account, before)
            return {"count": len(open_orders)}
        raise KrakenError("EGeneral:Unknown method")

    @staticmethod
    def _balances(account: Account) -> dict[str, Any]:
        data = [{"asset": "BTC" if a == "XXBT" else a.removeprefix("Z") if len(a) == 4 and a[0] in "XZ" else a,
                 "asset_class": "currency", "balance": float(account.total.get(a, 0))} for a in account.assets()]
        return {"channel": "balances", "type": "snapshot", "data": data, "sequence": 1}

    async def _send(self, ws: web.WebSocketResponse, doc: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # after the subscribe's answer
        if not ws.closed:
            await ws.send_str(json.dumps(doc))

    def publish(self, account: Account, orders: list[Order]) -> None:
        """An `executions` update for each changed order, to the account's subscribed sockets."""
        data = [{"order_id": o.txid, "symbol": _symbol(o), "side": o.side, "order_type": o.ordertype,
                 "order_qty": float(o.vol), "limit_price": float(o.price), "cum_qty": float(o.vol_exec),
                 "order_status": {"open": "new", "closed": "filled"}.get(o.status, o.status),
                 "exec_type": {"open": "new", "closed": "filled"}.get(o.status, o.status),
                 "timestamp": _stamp(o.closetm or o.opentm)} for o in orders]
        for ws, (acct, channels) in list(self.channels.items()):
            if acct is account and "executions" in channels and data and not ws.closed:
                doc = {"channel": "executions", "type": "update", "data": data, "sequence": 2}
                asyncio.get_running_loop().create_task(self._send(ws, doc))
