"""What every WebSocket dialect shares: it speaks for one REST adapter of the same exchange.

A dialect (binance_ws, okx_ws, bybit_ws) reads one transport's frames; key types, native errors and
the host table stay the REST adapter's, so a bot's credential and refusals mean the same on both.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import AdapterHooks, IssuedBotKey, OutboundRequest


class WsDialect(AdapterHooks):
    needs_nonce = False

    def __init__(self, rest: Any) -> None:
        self._rest = rest
        self.name = rest.name
        self.environments = rest.environments
        self.relayed_response_headers = ()
        self.stream_token_request = rest.stream_token_request

    def issue_bot_key(self, key_type: str) -> IssuedBotKey:
        return self._rest.issue_bot_key(key_type)  # type: ignore[no-any-return]

    def prices(self, path: str, body: bytes) -> dict[str, Decimal]:
        return {}  # frames carry no public price answers keyproxy reads

    def native_error(self, code: str, message: str) -> dict[str, object]:
        return self._rest.native_error(code, message)  # type: ignore[no-any-return]

    def refusal_status(self, code: str, status: int) -> int:
        return status

    def amend_verdicts(self, req: OutboundRequest, status: int, body: bytes, legs: int) -> tuple[bool | None, ...]:
        """The REST reader's: an amend's answer frame carries what the REST answer does (OKX's `sCode`, Bybit's
        `retCode`, Kraken's `success`)."""
        return self._rest.amend_verdicts(req, status, body, legs)  # type: ignore[no-any-return]
