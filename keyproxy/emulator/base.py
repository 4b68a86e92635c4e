"""The contract between the generic emulator app and one exchange module.

Each exchange lives in its own module (``binance.py``; later ``kraken.py``,
``okx.py``...) exposing ``create(keys, clock) -> ExchangeEmulator``. The app
only routes by path prefix, journals and guards loopback; everything that
is exchange-specific (paths, auth, error shapes, state) stays in the module.
"""

from __future__ import annotations

import json

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

Clock = Callable[[], float]


@dataclass
class RequestNote:
    """What an exchange module learned about a request, for the journal."""

    exchange: str | None = None
    api_key: str | None = None
    signature_verified: bool | None = None
    error_code: int | str | None = None  # str: exchanges whose errors have no number (Kraken)


class ExchangeEmulator(Protocol):
    """One emulated exchange served from the shared loopback port."""

    name: str

    def owns(self, path: str) -> bool:
        """True if ``path`` belongs to this exchange's REST API."""
        ...

    async def handle(self, request: web.Request, body: bytes, note: RequestNote) -> web.Response:
        """Answer one request exactly as the exchange would."""
        ...

    def reset(self) -> None:
        """Back to the balances of the accounts file; orders etc. forgotten."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-able state for ``GET /_emulator/state``."""
        ...


async def serve_frames(request: Any, exchange: str, answer: Callable[[Any, str, dict[str, Any]], dict[str, Any]],
                       record: Callable[[dict[str, Any]], None], closed: Callable[[Any], None]) -> Any:
    """One private WebSocket: each text frame answered by `answer(socket, text, journal entry)` and journaled
    (transport "ws"); `closed(socket)` forgets the socket's session when it goes."""
    from aiohttp import WSMsgType, web

    ws = web.WebSocketResponse()
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            entry: dict[str, Any] = {"exchange": exchange, "transport": "ws", "path": request.path,
                                     "body": msg.data, "api_key": None, "signature_verified": None,
                                     "error_code": None}
            reply = answer(ws, msg.data, entry)
            record(entry)
            await ws.send_str(json.dumps(reply))
    finally:
        closed(ws)
    return ws
