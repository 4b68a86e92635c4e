"""Binance USD-M futures user data streams on the emulator: REST listenKeys and the private stream socket.

Written from Binance's USD-M futures docs ("User Data Streams": "Start User Data Stream" `POST
/fapi/v1/listenKey` answers `{"listenKey"}` and returns the account's active key if it has one;
"Keepalive" `PUT` extends it and answers the key; "Close" `DELETE`; the stream is
`wss://fstream.binance.com/private/ws?listenKey=<key>` (ccxt 4.5.90 `get_private_ws_url`), and its events
are `ORDER_TRADE_UPDATE` and `ACCOUNT_UPDATE`; COIN-M the same with `/dapi/v1/listenKey` and
`wss://dstream.binance.com/ws/<listenKey>`), independently of keyproxy's adapters.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from typing import Any

from aiohttp import WSMsgType, web

from keyproxy.emulator.binance_auth import BinanceError

PRIVATE_PATH = "/private/ws"
UNKNOWN_KEY = (400, -1125, "This listenKey does not exist.")


class UserStreams:
    """listenKeys per account, and the sockets reading each key's events."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # listenKey -> account
        self.sockets: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.tokens: dict[str, tuple[Any, int]] = {}  # margin listenToken -> (account, expirationTime ms)

    def new_token(self, account: Any, now: int, validity: str | None) -> dict[str, Any]:
        """Margin "Create listenToken" (`POST /sapi/v1/userListenToken`): validity in ms, default and max 24 h."""
        day = 24 * 3600 * 1000
        try:
            span = min(int(validity), day) if validity else day
        except ValueError:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'validity'.") from None
        token = secrets.token_urlsafe(51)
        self.tokens[token] = (account, now + span)
        return {"token": token, "expirationTime": now + span}

    def token_account(self, token: str) -> tuple[Any, int]:
        """The account a listenToken reads; -1209 for an unknown or expired one (WebSocket API docs)."""
        found = self.tokens.get(token)
        if found is None:
            raise BinanceError(400, -1209, "Invalid listenToken.")
        return found

    def _key_of(self, account: Any) -> str | None:
        return next((k for k, a in self.keys.items() if a is account), None)

    def start(self, account: Any) -> dict[str, str]:
        key = self._key_of(account) or secrets.token_urlsafe(48).replace("-", "a").replace("_", "b")[:64]
        self.keys[key] = account
        return {"listenKey": key}

    def keepalive(self, account: Any) -> dict[str, str]:
        key = self._key_of(account)
        if key is None:
            raise BinanceError(*UNKNOWN_KEY)
        return {"listenKey": key}

    def close(self, account: Any) -> dict[str, Any]:
        key = self._key_of(account)
        if key is not None:
            self.keys.pop(key)
            for ws in self.sockets.pop(key, set()):
                await_close = ws.close(code=1000, message=b"listenKey closed")
                asyncio.get_running_loop().create_task(await_close)
        return {}

    async def serve(self, request: web.Request, key: str | None = None) -> web.StreamResponse:
        """USD-M `/private/ws?listenKey=`; COIN-M `/ws/<listenKey>` (dstream) passes the key from the path."""
        key = request.query.get("listenKey", "") if key is None else key
        if key not in self.keys:
            return web.json_response({"code": UNKNOWN_KEY[1], "msg": UNKNOWN_KEY[2]}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets[key].add(ws)
        try:
            async for msg in ws:  # the private stream takes no requests; a frame is ignored
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets[key].discard(ws)
        return ws

    async def publish(self, account: Any, order: dict[str, Any], balances: list[tuple[str, str]], now: int) -> None:
        """`ORDER_TRADE_UPDATE` for a futures order placed or cancelled, then `ACCOUNT_UPDATE` with its balances."""
        key = self._key_of(account)
        if key is None or not self.sockets.get(key):
            return
        status = order.get("status", "NEW")
        update = {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": {
            "s": order.get("symbol"), "c": order.get("clientOrderId"), "S": order.get("side"),
            "o": order.get("type"), "f": order.get("timeInForce", "GTC"), "q": order.get("origQty"),
            "p": order.get("price"), "ap": order.get("avgPrice", "0"), "sp": "0", "x": status if status in (
                "NEW", "CANCELED", "EXPIRED") else "TRADE", "X": status, "i": order.get("orderId"),
            "l": "0", "z": order.get("executedQty", "0"), "L": "0", "N": "USDT", "n": "0", "T": now, "t": 0,
            "b": "0", "a": "0", "m": False, "R": bool(order.get("reduceOnly")), "wt": "CONTRACT_PRICE",
            "ot": order.get("type"), "ps": "BOTH", "cp": False, "rp": "0"}}
        account_update = {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
            "m": "ORDER", "B": [{"a": asset, "wb": amount, "cw": amount, "bc": "0"} for asset, amount in balances],
            "P": []}}
        for ws in list(self.sockets.get(key, ())):
            if not ws.closed:
                await ws.send_str(json.dumps(update))
                await ws.send_str(json.dumps(account_update))


async def serve_market(request: web.Request, now_ms: Any) -> web.StreamResponse:
    """Market data streams, spot (`/ws`, `/ws/<stream>`, `/stream?streams=`) and USD-M (`/public/ws`,
    `/market/ws`): `SUBSCRIBE` frames answered
    `{"result": null, "id"}`; each `<symbol>@ticker` / `@miniTicker` stream gets one `24hrTicker` /
    `24hrMiniTicker` event at the emulated last price (docs: web-socket-streams.md "Live Subscribing",
    "Individual Symbol (Mini) Ticker Streams"; the mini event's extra fields are ignored by clients)."""
    from keyproxy.emulator.binance_data import MARKETS, fmt

    ws = web.WebSocketResponse()
    await ws.prepare(request)
    combined = request.path.endswith("/stream")
    venue = "fapi" if request.path.startswith(("/public/", "/market/")) else "spot"  # USD-M: fstream

    async def ticker(stream: str) -> None:
        symbol, _, kind = stream.partition("@")
        market = MARKETS[venue].get(symbol.upper())
        if kind not in ("ticker", "miniTicker") or market is None:
            return
        event = {"e": "24hrMiniTicker" if kind == "miniTicker" else "24hrTicker", "E": int(now_ms()),
                 "s": market.symbol, "c": fmt(market.last),
                 "o": fmt(market.last), "h": fmt(market.last), "l": fmt(market.last), "v": "1000", "q": "0",
                 "p": "0", "P": "0", "w": fmt(market.last), "b": fmt(market.last - market.tick),
                 "a": fmt(market.last + market.tick), "B": "1", "A": "1", "O": 0, "C": 0, "F": 0, "L": 0, "n": 0}
        await ws.send_str(json.dumps({"stream": stream, "data": event} if combined else event))

    for stream in [s for s in request.query.get("streams", "").split("/") if s] + (
            [request.match_info["stream"]] if "stream" in request.match_info else []):
        await ticker(stream)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            frame = json.loads(msg.data)
            streams = frame["params"] if frame.get("method") == "SUBSCRIBE" else []
            await ws.send_str(json.dumps({"result": None, "id": frame.get("id")}))
        except (ValueError, KeyError, TypeError, AttributeError):
            await ws.send_str(json.dumps({"error": {"code": 2, "msg": "Invalid request"}}))
            continue
        for stream in streams if isinstance(streams, list) else []:
            await ticker(str(stream))
    return ws
