"""Binance's WebSocket API (`/ws-api/v3`) on the emulator: request frames answered as Binance does.

Written from binance-spot-api-docs `web-socket-api.md` ("Request format", "Request security",
"SIGNED request example", "User Data Stream requests"), independently of keyproxy's adapters:
a signed request's payload is every param but `signature`, sorted by name, `k=v` joined with `&`;
the key is `params.apiKey`. Trading and account methods run the REST emulator's own handlers on the
same account state, so an order placed by REST or over the socket produces the same
`executionReport` on a `userDataStream.subscribe.signature` subscription.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from keyproxy.emulator.binance_auth import BinanceError, check_timing
from keyproxy.emulator.binance_data import MARKETS, fmt
from keyproxy.emulator.binance_limits import weight
from keyproxy.emulator.binance_state import ZERO

# method -> (REST route it runs, security): the WebSocket API's methods mirror the REST endpoints
METHODS: dict[str, tuple[tuple[str, str] | None, str]] = {
    "order.place": (("POST", "/api/v3/order"), "SIGNED"),
    "order.test": (("POST", "/api/v3/order/test"), "SIGNED"),
    "order.cancel": (("DELETE", "/api/v3/order"), "SIGNED"),
    "order.cancelReplace": (("POST", "/api/v3/order/cancelReplace"), "SIGNED"),
    "order.status": (("GET", "/api/v3/order"), "SIGNED"),
    "openOrders.status": (("GET", "/api/v3/openOrders"), "SIGNED"),
    "openOrders.cancelAll": (("DELETE", "/api/v3/openOrders"), "SIGNED"),
    "account.status": (("GET", "/api/v3/account"), "SIGNED"),
    "userDataStream.subscribe.signature": (None, "SIGNED"),
    "userDataStream.unsubscribe": (None, "NONE"),
    "userDataStream.subscribe.listenToken": (None, "TOKEN"),  # margin: the token from POST /sapi/v1/userListenToken
    "ping": (("GET", "/api/v3/ping"), "NONE"),
    "time": (("GET", "/api/v3/time"), "NONE"),
    "exchangeInfo": (("GET", "/api/v3/exchangeInfo"), "NONE"),
}
WS_PATH = "/ws-api/v3"


def signed_payload(params: dict[str, Any]) -> bytes:
    def text(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return "&".join(f"{k}={text(v)}" for k, v in sorted(params.items()) if k != "signature").encode()


class WsApi:
    """The socket side of one Binance emulator: sessions, subscriptions, events."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.subscriptions: dict[int, tuple[web.WebSocketResponse, Any]] = {}  # id -> (socket, account)
        self._ids = itertools.count()

    async def serve(self, request: web.Request, record: Callable[[dict[str, Any]], None]) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                answer, entry = self._answer(ws, msg.data)
                record(entry)
                hold = request.get("hold_after")
                if hold is not None and (seconds := hold(msg.data)):
                    await asyncio.sleep(seconds)
                binary = request.get("binary")
                if binary is not None and binary(msg.data):
                    await ws.send_bytes(json.dumps(answer).encode())
                else:
                    await ws.send_str(json.dumps(answer))
        finally:
            for sid in [s for s, (sock, _) in self.subscriptions.items() if sock is ws]:
                self.subscriptions.pop(sid, None)
        return ws

    def _answer(self, ws: web.WebSocketResponse, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
        entry: dict[str, Any] = {"exchange": "binance", "transport": "ws", "path": WS_PATH, "body": text,
                                 "api_key": None, "signature_verified": None, "error_code": None}
        frame_id = None
        try:
            frame = json.loads(text)
            frame_id = frame.get("id")
            method, params = frame["method"], dict(frame.get("params") or {})
            entry["method"] = method
            spec = METHODS.get(method)
            if spec is None:
                raise BinanceError(400, -1020, "Unsupported operation.")
            route, security = spec
            # the WebSocket API shares the REST API's IP weight (web-socket-api.md "Rate limits"): weighed as the
            # REST route it runs, 2 for a user data stream method
            query = "&".join(f"{k}={v}" for k, v in params.items() if k not in ("apiKey", "signature"))
            limits = self.emulator.limits
            limited = limits.charge(weight(*route, query) if route else 2, self.emulator.clock())
            if limited is not None:
                status, retry_after = limited
                now_ms = int(self.emulator.clock() * 1000)
                until = now_ms + int(retry_after * 1000)
                message = (f"Way too much request weight used; IP banned until {until}." if status == 418 else
                           f"Too much request weight used; current limit is {limits.per_minute} request weight "
                           "per 1 MINUTE.") + " Please use WebSocket Streams for live updates to avoid bans."
                entry["status"], entry["error_code"] = status, -1003
                return {"id": frame_id, "status": status, "error": {
                    "code": -1003, "msg": message, "data": {"serverTime": now_ms, "retryAfter": until}},
                    "rateLimits": self._rate_limits()}, entry
            account = key = None
            if security == "SIGNED":
                key, account = self._authenticate(params, entry)
            if security == "TOKEN":
                account, expires = self.emulator.streams.token_account(str(params.get("listenToken", "")))
                sid = next(self._ids)
                self.subscriptions[sid] = (ws, account)
                result: Any = {"subscriptionId": sid, "expirationTime": expires}
            elif method == "userDataStream.subscribe.signature":
                sid = next(self._ids)
                self.subscriptions[sid] = (ws, account)
                result = {"subscriptionId": sid}
            elif method == "userDataStream.unsubscribe":
                self.subscriptions.pop(int(params.get("subscriptionId", -1)), None)
                result = {}
            else:
                assert route is not None
                result = self.emulator.run_route(route, {k: str(v) if not isinstance(v, bool) else
                                                         ("true" if v else "false") for k, v in params.items()
                                                         if k not in ("apiKey", "signature")}, account, key)
            entry["status"] = 200
            return {"id": frame_id, "status": 200, "result": result, "rateLimits": self._rate_limits()}, entry
        except BinanceError as err:
            entry["status"], entry["error_code"] = err.status, err.code
            return {"id": frame_id, "status": err.status, "error": err.body()}, entry
        except (ValueError, KeyError, TypeError, AttributeError):
            entry["status"], entry["error_code"] = 400, -1102
            return {"id": frame_id, "status": 400, "error": {"code": -1102, "msg": "Malformed request."}}, entry

    def _rate_limits(self) -> list[dict[str, Any]]:
        """An answer's `rateLimits`: the IP's request weight used this minute (web-socket-api.md)."""
        limits = self.emulator.limits
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": limits.per_minute or 6000, "count": limits.used}]

    def _authenticate(self, params: dict[str, Any], entry: dict[str, Any]) -> tuple[Any, Any]:
        api_key = params.get("apiKey")
        entry["api_key"] = api_key
        verifier = self.emulator.verifiers.get(api_key)
        if verifier is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = params.get("signature")
        if not isinstance(signature, str):
            raise BinanceError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                           "or malformed.")
        check_timing({k: str(v) for k, v in params.items()}, Decimal(str(self.emulator.clock())) * 1000)
        entry["signature_verified"] = verifier.verify(signed_payload(params), signature)
        if not entry["signature_verified"]:
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        return verifier.key, self.emulator.accounts[api_key]

    async def publish(self, account: Any, order_doc: dict[str, Any], now: int) -> None:
        """An `executionReport` for every subscription of the account the order belongs to."""
        event = {"e": "executionReport", "E": now, "s": order_doc.get("symbol"),
                 "c": order_doc.get("clientOrderId"), "S": order_doc.get("side"), "o": order_doc.get("type"),
                 "f": order_doc.get("timeInForce", "GTC"), "q": order_doc.get("origQty"),
                 "p": order_doc.get("price"), "x": "CANCELED" if order_doc.get("status") == "CANCELED" else "NEW",
                 "X": order_doc.get("status"), "i": order_doc.get("orderId"),
                 "z": order_doc.get("executedQty", "0"), "T": now, "O": now, "Z": "0", "w": True}
        market = MARKETS["spot"].get(str(order_doc.get("symbol")))
        assets = (market.base, market.quote) if market is not None else ()
        # "outboundAccountPosition": the balances the order changed (docs: user-data-stream.md)
        position = {"e": "outboundAccountPosition", "E": now, "u": now,
                    "B": [{"a": a, "f": fmt(account.free.get(a, ZERO)), "l": fmt(account.locked.get(a, ZERO))}
                          for a in assets]}
        for sid, (ws, acct) in list(self.subscriptions.items()):
            if acct is account and not ws.closed:
                await ws.send_str(json.dumps({"subscriptionId": sid, "event": event}))
                if assets:
                    await ws.send_str(json.dumps({"subscriptionId": sid, "event": position}))
