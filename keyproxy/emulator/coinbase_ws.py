"""Coinbase Advanced Trade's WebSocket (`wss://advanced-trade-ws.coinbase.com`, and
`advanced-trade-ws-user.coinbase.com` for user data) on the emulator, written from Coinbase's docs
("Advanced Trade WebSocket Overview", "Channels", "WebSocket Authentication"), independently of keyproxy's
adapters.

`{"type": "subscribe" | "unsubscribe", "channel", "product_ids", "jwt"}`: the `user` and
`futures_balance_summary` channels need a `jwt` (a CDP key's ES256 or EdDSA JWT like REST's, 2-minute
lifetime, no `uri` claim); market channels take one optionally. Each (un)subscribe is answered by a
`subscriptions` message; a refusal by `{"type": "error", "message"}`. Subscribing to `user` sends a snapshot
of the open orders, then an update whenever one of the account's orders changes (REST).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from keyproxy.emulator.base import serve_frames
from keyproxy.emulator.coinbase_auth import AuthResult, CoinbaseAuthError, verify_token
from keyproxy.emulator.coinbase_state import Account, Order, iso

PRIVATE_CHANNELS = frozenset({"user", "futures_balance_summary"})
PUBLIC_CHANNELS = frozenset({"heartbeats", "status", "ticker", "ticker_batch", "level2", "candles",
                             "market_trades"})


def _ws_order(order: Order) -> dict[str, Any]:
    """An order as the `user` channel shows it."""
    left = order.base_size - order.filled_size if order.status == "OPEN" else 0
    return {"order_id": order.order_id, "client_order_id": order.client_order_id, "product_id":
            order.product.alias or order.product.product_id, "order_side": order.side, "order_type": "Market" if
            order.kind == "market_market_ioc" else "Limit", "status": order.status,
            "limit_price": str(order.price or ""), "cumulative_quantity": str(order.filled_size),
            "leaves_quantity": str(left), "avg_price": str(order.filled_value / order.filled_size if
                                                          order.filled_size else 0),
            "total_fees": "0", "creation_time": iso(order.created)}


class CoinbaseWs:
    """The sockets of one Coinbase emulator and who subscribed to `user`."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.users: dict[web.WebSocketResponse, Account] = {}
        self._sequence = itertools.count(1)

    async def serve(self, request: web.Request, record: Callable[[dict[str, Any]], None]) -> web.WebSocketResponse:
        return await serve_frames(request, "coinbase", self._answer, record,  # type: ignore[no-any-return]
                                  lambda ws: self.users.pop(ws, None))

    def _message(self, channel: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"channel": channel, "client_id": "", "timestamp": iso(int(self.emulator.clock() * 1000)),
                "sequence_num": next(self._sequence), "events": events}

    def _answer(self, ws: web.WebSocketResponse, text: str, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            frame = json.loads(text)
            kind, channel = frame["type"], frame["channel"]
            assert kind in ("subscribe", "unsubscribe") and isinstance(channel, str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return {"type": "error", "message": "Failed to parse the subscription"}
        entry["method"] = kind
        if channel not in PRIVATE_CHANNELS | PUBLIC_CHANNELS:
            return {"type": "error", "message": f"unknown channel {channel[:40]}"}
        account = None
        if "jwt" in frame or channel in PRIVATE_CHANNELS:
            result = AuthResult()
            try:
                key = verify_token(frame.get("jwt"), verifiers=self.emulator.verifiers, now=self.emulator.clock(),
                                   result=result)
            except CoinbaseAuthError:
                entry["api_key"], entry["signature_verified"] = result.key_name, result.signature_verified
                return {"type": "error", "message": "authentication failure"}
            entry["api_key"], entry["signature_verified"] = key.api_key, True
            account = self.emulator.accounts[key.api_key]
        if channel == "user" and account is not None:
            if kind == "subscribe":
                self.users[ws] = account
                snapshot = [_ws_order(o) for o in account.orders.values() if o.status == "OPEN"]
                asyncio.get_running_loop().create_task(self._send(ws, self._message(
                    "user", [{"type": "snapshot", "orders": snapshot}])))
            else:
                self.users.pop(ws, None)
        products = frame.get("product_ids") if isinstance(frame.get("product_ids"), list) else []
        subscribed = {channel: products} if kind == "subscribe" else {}
        return self._message("subscriptions", [{"subscriptions": subscribed}])

    async def _send(self, ws: web.WebSocketResponse, doc: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # after the subscriptions answer
        if not ws.closed:
            await ws.send_str(json.dumps(doc))

    def publish(self, account: Account, orders: list[Order]) -> None:
        """A `user` update for changed orders, to every socket of the account subscribed to `user`."""
        if not orders:
            return
        for ws, acct in list(self.users.items()):
            if acct is account and not ws.closed:
                doc = self._message("user", [{"type": "update", "orders": [_ws_order(o) for o in orders]}])
                asyncio.get_running_loop().create_task(self._send(ws, doc))
