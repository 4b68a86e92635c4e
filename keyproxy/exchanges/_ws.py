"""What every WebSocket dialect shares: it speaks for one REST adapter of the same exchange.

A dialect (binance_ws, okx_ws, bybit_ws) reads one transport's frames; key types, native errors and
the host table stay the REST adapter's, so a bot's credential and refusals mean the same on both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.hooks import AdapterHooks
from keyproxy.exchanges.base import (
    BadRequest, DuplicateMember, IssuedBotKey, OutboundRequest, no_json_constants, no_lone_surrogates,
    unique_members,
)


MAX_FRAME_ID = 2 ** 53  # a frame id a JSON reader anywhere on the way (a float one too) reads back exactly


def load_frame(raw: bytes | str, numbers_as_text: bool = False) -> Any:
    """A bot's frame as JSON with member names unique in any case (`unique_members`), no NaN or Infinity, numbers
    kept as written when asked (Kraken's); BadRequest saying why when it is not (each dialect then checks its
    shape)."""
    try:
        frame = json.loads(raw, object_pairs_hook=unique_members, parse_constant=no_json_constants,
                           **({"parse_float": str, "parse_int": str} if numbers_as_text else {}))
    except (ValueError, RecursionError) as e:
        raise BadRequest(str(e) if isinstance(e, DuplicateMember) else "frame is not a JSON object") from None
    # a `\ud800` escape alone is valid JSON and no character: the frame could not be encoded again (to sign, to
    # send, to record), an internal error past its decision (session 36's review); looked for only where an escape
    # of a surrogate is written at all
    no_lone_surrogates(raw, frame)
    return frame


class WsDialect(AdapterHooks):
    needs_nonce = False

    def __init__(self, rest: Any) -> None:
        self._rest = rest
        self.name = rest.name
        self.environments = rest.environments
        self.relayed_response_headers = ()
        self.stream_token_request = rest.stream_token_request
        self.spawning_markets = rest.spawning_markets  # whose orders are whose: the REST adapter's, one account

    def id_per_market(self, order_id: str) -> bool:
        return self._rest.id_per_market(order_id)  # type: ignore[no-any-return]

    def client_id_forms(self, client_id: str) -> tuple[str, ...]:
        return self._rest.client_id_forms(client_id)  # type: ignore[no-any-return]

    def order_query_request(self, scope: str, order_id: str) -> tuple[str, str, str, bytes] | None:
        return self._rest.order_query_request(scope, order_id)  # type: ignore[no-any-return]

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

    def upstream_query(self, query: str) -> str:
        """The bot's socket query as it goes upstream (default: as it came)."""
        return query

    def answer_usage(self, status: int, body: bytes) -> tuple[Mapping[str, str], tuple[float, str | None] | None]:
        """What an answer frame says of the exchange's own budgets, as a REST answer would say it: its counts as
        the usage headers (lower-case names, as the budgets' `header`), and its refusal for rate as
        `rate_limit_hold`'s (seconds to send nothing, and the one budget named or None). The WebSocket edge hands
        both to the same `ExchangeBudget.observe` as REST. Default: nothing said (a dialect that knows its
        exchange's answers says; Binance's first)."""
        return {}, None

    def rate_limit_hold(self, status: int, headers: Mapping[str, str],
                        body: bytes | None) -> tuple[float, str | None] | None:
        """An answer frame's refusal for rate (`answer_usage`): the answer path asks the dialect as it asks a
        REST adapter."""
        return self.answer_usage(status, body)[1] if body is not None else None
