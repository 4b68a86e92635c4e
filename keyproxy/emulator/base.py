"""The contract between the generic emulator app and one exchange module.

Each exchange lives in its own module (``binance.py``; later ``kraken.py``,
``okx.py``...) exposing ``create(keys, clock) -> ExchangeEmulator``. The app
only routes by path prefix, journals and guards loopback; everything that
is exchange-specific (paths, auth, error shapes, state) stays in the module.
"""

from __future__ import annotations

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
