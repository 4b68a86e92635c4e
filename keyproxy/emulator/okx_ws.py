"""OKX's private WebSocket (`/ws/v5/private`, `/ws/v5/business`) on the emulator, written from OKX docs-v5
("WebSocket Login", "Order channel", "WS Place order / Cancel order"), independently of keyproxy's adapters.

`login`: args[0] = {apiKey, passphrase, timestamp (Unix seconds), sign = Base64(HMAC-SHA256(secret,
timestamp + "GET" + "/users/self/verify"))}, 30 s window; after it the connection's requests are unsigned.
`subscribe` to `orders` pushes `{"arg", "data": [order]}` whenever one of the account's orders changes (by
REST or WebSocket); `subscribe` to `account` ("Account channel") pushes the balance document of REST's
`/api/v5/account/balance`, a snapshot at once and an update on every order change. Order ops (`order`,
`batch-orders`, `cancel-order`) run the REST handlers and answer `{"id", "op", "code", "msg", "data"}`.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from keyproxy.emulator.base import serve_frames

from keyproxy.emulator.okx_account import Call
from keyproxy.emulator.okx_auth import OkxError
from keyproxy.emulator.okx_data import INST_BY_CODE
from keyproxy.emulator.okx_state import OrderRejected

VERIFY_PATH = "/users/self/verify"
WINDOW_S = 30


class OkxWs:
    """Sockets of one OKX emulator: who logged on, who subscribed to what."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.sessions: dict[web.WebSocketResponse, Any] = {}  # socket -> account
        self.channels: dict[web.WebSocketResponse, set[str]] = {}
        self._conn = itertools.count(1)

    async def serve(self, request: web.Request, record: Callable[[dict[str, Any]], None]) -> web.WebSocketResponse:
        def closed(ws: web.WebSocketResponse) -> None:
            self.sessions.pop(ws, None)
            self.channels.pop(ws, None)

        return await serve_frames(request, "okx", self._answer, record, closed)  # type: ignore[no-any-return]

    def _answer(self, ws: web.WebSocketResponse, text: str, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            frame = json.loads(text)
            op, args = frame["op"], frame.get("args") or []
        except (ValueError, KeyError, TypeError):
            return {"event": "error", "code": "60012", "msg": f"Invalid request: {text[:100]}"}
        entry["method"] = op
        if op == "login":
            return self._login(ws, args, entry)
        if op in ("subscribe", "unsubscribe"):
            arg = args[0] if args and isinstance(args[0], dict) else {}
            # candlesticks need no login (docs-v5 "Candlesticks channel"); every other channel does, in any arg
            if ws not in self.sessions and not all(isinstance(a, dict) and str(a.get("channel", "")).startswith(
                    "candle") for a in args):
                return {"event": "error", "code": "60011", "msg": "Please log in"}
            channels = self.channels.setdefault(ws, set())
            (channels.add if op == "subscribe" else channels.discard)(str(arg.get("channel")))
            if op == "subscribe" and arg.get("channel") == "account":  # OKX pushes a snapshot first
                asyncio.get_running_loop().create_task(self.publish_account(self.sessions[ws], "snapshot"))
            return {"event": op, "arg": arg, "connId": "emu"}
        account = self.sessions.get(ws)
        base = {"id": frame.get("id", ""), "op": op}
        if account is None:
            return {**base, "code": "60011", "msg": "Please log in", "data": []}
        now = int(self.emulator.clock() * 1000)
        try:
            args = [_by_code(a) if isinstance(a, dict) else a for a in args]
        except OkxError as e:
            return {**base, "code": e.code, "msg": e.msg, "data": []}
        handlers = {"order": lambda: self.emulator._place(Call(args[0], account, now), [args[0]]),
                    "batch-orders": lambda: self.emulator._place(Call(args, account, now), list(args)),
                    "cancel-order": lambda: self.emulator.cancel_order(Call(args[0], account, now))}
        if op not in handlers or not args:
            return {**base, "code": "60012", "msg": f"Unsupported operation {op}", "data": []}
        try:
            result = handlers[op]()
        except (OrderRejected, OkxError) as e:  # a parameter error answers the frame, as OKX does
            code = str(getattr(e, "code", "50014"))
            entry["error_code"] = int(code) if code.isdigit() else None
            return {**base, "code": code, "msg": str(getattr(e, "msg", e)), "data": []}
        entry["error_code"] = None if result["code"] == "0" else int(result["data"][0]["sCode"])
        return {**base, **result, "inTime": str(now * 1000), "outTime": str(now * 1000)}

    def _login(self, ws: web.WebSocketResponse, args: list[Any], entry: dict[str, Any]) -> dict[str, Any]:
        arg = args[0] if args and isinstance(args[0], dict) else {}
        api_key = str(arg.get("apiKey", ""))
        entry["api_key"] = api_key
        verifier = self.emulator.verifiers.get(api_key)
        ts = str(arg.get("timestamp", ""))
        if verifier is None:
            return {"event": "error", "code": "60005", "msg": "Invalid OK-ACCESS-KEY"}
        entry["signature_verified"] = verifier.verify((ts + "GET" + VERIFY_PATH).encode(), str(arg.get("sign", "")))
        now = self.emulator.clock()
        if not ts.isdigit() or abs(now - int(ts)) > WINDOW_S:
            return {"event": "error", "code": "60006", "msg": "Timestamp request expired"}
        if not hmac.compare_digest(str(arg.get("passphrase", "")).encode(), (verifier.key.passphrase or "").encode()):
            return {"event": "error", "code": "60024", "msg": "Wrong passphrase"}
        if not entry["signature_verified"]:
            return {"event": "error", "code": "60007", "msg": "Invalid sign"}
        self.sessions[ws] = self.emulator.accounts[api_key]
        return {"event": "login", "code": "0", "msg": "", "connId": f"emu{next(self._conn)}"}

    async def publish_account(self, account: Any, event: str = "event_update") -> None:
        """An `account` channel push (the REST balance's document) to the account's subscribed sockets."""
        doc = self.emulator.balance(Call({}, account, int(self.emulator.clock() * 1000)))
        for ws, acct in list(self.sessions.items()):
            if acct is account and "account" in self.channels.get(ws, ()) and not ws.closed:
                await ws.send_str(json.dumps({"arg": {"channel": "account", "uid": "1"}, "eventType": event,
                                              "curPage": 1, "lastPage": True, "data": doc}))

    async def publish(self, account: Any, order_doc: dict[str, Any]) -> None:
        """An `orders` channel push to every socket of the account subscribed to it."""
        for ws, acct in list(self.sessions.items()):
            if acct is account and "orders" in self.channels.get(ws, ()) and not ws.closed:
                await ws.send_str(json.dumps({"arg": {"channel": "orders", "instType": "ANY", "uid": "1"},
                                              "data": [order_doc]}))


def _by_code(arg: dict[str, Any]) -> dict[str, Any]:
    """An order op naming its instrument by `instIdCode` (OKX's WebSocket order ops take it; it wins over
    `instId` when both are sent)."""
    code = arg.get("instIdCode")
    if code is None:
        return arg
    inst_id = INST_BY_CODE.get(int(code)) if isinstance(code, int) or str(code).isdigit() else None
    if inst_id is None:
        raise OkxError(200, "51000", "Parameter instIdCode error")
    return {**arg, "instId": inst_id}
