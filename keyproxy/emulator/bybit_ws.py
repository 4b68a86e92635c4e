"""Bybit's private WebSockets (`/v5/private`, `/v5/trade`) on the emulator, written from Bybit's v5 docs
("WebSocket Connect: Authentication", "Order" topic, "WebSocket Trade"), independently of keyproxy's adapters.

`auth`: `{"op": "auth", "args": [apiKey, expires (ms, in the future), signature]}` with signature =
hex HMAC-SHA256(secret, "GET/realtime" + expires) (base64 RSA for RSA keys). `subscribe` to `order`
pushes `{"topic": "order", "data": [order]}` whenever one of the account's orders changes (REST or
WebSocket), and `wallet` the unified account (REST wallet-balance's `list`) after each such change. On
`/v5/trade`, `order.create` / `order.cancel` run the REST handlers and answer
`{"reqId", "retCode", "retMsg", "op", "data", "header"}`; with rate limits set (rate_limits.py) each op counts in
its REST endpoint's per-UID window, reported in `header` as X-Bapi-Limit / -Status / -Reset-Timestamp, and is
answered retCode 10006 over it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from keyproxy.emulator.base import serve_frames

from keyproxy.emulator.bybit_handlers import Call
from keyproxy.emulator.bybit_auth import BybitError


TRADE_PATHS = {"order.create": "/v5/order/create", "order.cancel": "/v5/order/cancel"}


class BybitWs:
    """Sockets of one Bybit emulator: who authenticated, who subscribed to orders."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.sessions: dict[web.WebSocketResponse, Any] = {}  # socket -> (key, account)
        self.topics: dict[web.WebSocketResponse, set[str]] = {}
        self.api_keys: dict[web.WebSocketResponse, str] = {}  # the key each socket authenticated with

    async def serve(self, request: web.Request, record: Callable[[dict[str, Any]], None]) -> web.WebSocketResponse:
        def closed(ws: web.WebSocketResponse) -> None:
            self.sessions.pop(ws, None)
            self.topics.pop(ws, None)
            self.api_keys.pop(ws, None)

        return await serve_frames(request, "bybit", self._answer, record, closed)  # type: ignore[no-any-return]

    def _answer(self, ws: web.WebSocketResponse, text: str, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            frame = json.loads(text)
            op, args = frame["op"], frame.get("args") or []
        except (ValueError, KeyError, TypeError):
            return {"success": False, "ret_msg": "error:request not json", "op": ""}
        entry["method"] = op
        now = int(self.emulator.clock() * 1000)
        if op == "ping":
            return {"success": True, "ret_msg": "pong", "op": "ping", "req_id": frame.get("req_id", "")}
        if op == "auth":
            return self._auth(ws, args, entry, now, frame.get("req_id", ""))
        if op == "subscribe":
            if ws not in self.sessions:
                return {"success": False, "ret_msg": "Request not authorized", "op": op,
                        "req_id": frame.get("req_id", "")}
            self.topics.setdefault(ws, set()).update(str(a) for a in args)
            return {"success": True, "ret_msg": "", "op": op, "req_id": frame.get("req_id", ""), "conn_id": "emu"}
        base = {"reqId": frame.get("reqId", ""), "op": op, "header": {"Timenow": str(now)}, "connId": "emu"}
        if ws not in self.sessions:
            return {**base, "retCode": 10003, "retMsg": "Request not authorized", "data": {}}
        key, account = self.sessions[ws]
        handlers = {"order.create": self.emulator.create_order, "order.cancel": self.emulator.cancel_order}
        if op not in handlers or not args or not isinstance(args[0], dict):
            return {**base, "retCode": 10404, "retMsg": f"unsupported op {op}", "data": {}}
        # the account's limit "for this op type", the REST endpoint's window (rate_limits.py), in the answer's header
        window = self.emulator.rate.endpoint(self.api_keys[ws], TRADE_PATHS[op])
        if window is not None:
            seconds = self.emulator.clock()
            refused = window.hit(seconds)
            base["header"].update({"X-Bapi-Limit": str(window.limit), "X-Bapi-Limit-Status": str(window.remaining()),
                                   "X-Bapi-Limit-Reset-Timestamp":
                                       str(int((window.reset_at(seconds) if refused else seconds) * 1000))})
            if refused:
                self.emulator.rate.answered["10006"] += 1
                entry["error_code"] = 10006
                return {**base, "retCode": 10006, "retMsg": "Too many visits!", "data": {}}
        try:
            data = handlers[op](Call(args[0], key, account, now))
        except BybitError as err:
            entry["error_code"] = err.code
            return {**base, "retCode": err.code, "retMsg": err.msg, "data": {}}
        return {**base, "retCode": 0, "retMsg": "OK", "data": data}

    def _auth(self, ws: web.WebSocketResponse, args: list[Any], entry: dict[str, Any], now: int,
              req_id: str) -> dict[str, Any]:
        fail = {"success": False, "op": "auth", "req_id": req_id, "conn_id": "emu"}
        if len(args) != 3:
            return {**fail, "ret_msg": "Params Error"}
        api_key, expires, signature = (str(a) for a in args)
        entry["api_key"] = api_key
        verifier = self.emulator.verifiers.get(api_key)
        if verifier is None or api_key in self.emulator.revoked:
            return {**fail, "ret_msg": "Invalid apikey"}
        entry["signature_verified"] = verifier.verify(f"GET/realtime{expires}".encode(), signature)
        if not expires.isdigit() or int(expires) <= now:
            return {**fail, "ret_msg": "Params Error: expires is expired"}
        if not entry["signature_verified"]:
            return {**fail, "ret_msg": "Invalid sign"}
        self.sessions[ws] = (verifier.key, self.emulator.accounts[api_key])
        self.api_keys[ws] = api_key
        return {"success": True, "ret_msg": "", "op": "auth", "req_id": req_id, "conn_id": "emu"}

    async def drop(self) -> int:
        """Close every authenticated socket, as a network cut would; how many."""
        sockets = [ws for ws in self.sessions if not ws.closed]
        for ws in sockets:
            await ws.close(code=1001, message=b"emulated network cut")
        return len(sockets)

    async def publish_wallet(self, account: Any, now: int) -> None:
        """A `wallet` topic push (the unified account, as REST's wallet-balance lists it) after an order change."""
        for ws, (_, acct) in list(self.sessions.items()):
            if acct is account and "wallet" in self.topics.get(ws, ()) and not ws.closed:
                await ws.send_str(json.dumps({"id": f"emu-w-{now}", "topic": "wallet", "creationTime": now,
                                              "data": account.wallet_doc(None)["list"]}))

    async def publish(self, account: Any, order_doc: dict[str, Any], now: int) -> None:
        """An `order` topic push to every socket of the account subscribed to it."""
        for ws, (_, acct) in list(self.sessions.items()):
            if acct is account and "order" in self.topics.get(ws, ()) and not ws.closed:
                await ws.send_str(json.dumps({"id": f"emu-{now}", "topic": "order", "creationTime": now,
                                              "data": [order_doc]}))
