"""Coinbase Advanced Trade's WebSocket as a dialect.

Per Coinbase's docs ("Advanced Trade WebSocket Overview", "WebSocket Authentication", "Channels"): a frame
is `{"type": "subscribe" | "unsubscribe", "channel", "product_ids", "jwt"}`; the `user` and
`futures_balance_summary` channels need the `jwt`, a CDP key's JWT like REST's (ES256 or EdDSA, `exp`
within 2 minutes of `nbf`) but naming no request (no `uri` claim); market channels take none. Each frame
is answered by a `subscriptions` message, or `{"type": "error", "message"}`; neither carries an id, and
Coinbase answers in order, so an answer settles the oldest frame waiting.

keyproxy's paths: `/` is `advanced-trade-ws.coinbase.com` (market data, and `user` too: ccxt.pro's one
URL), `/user` is `advanced-trade-ws-user.coinbase.com` (the docs' endpoint for user data).
A bot's JWT is verified with its virtual key and replaced by one keyproxy mints with the real key.
"""

from __future__ import annotations

import json
from typing import Any

from keyproxy.exchanges._ws import WsDialect, load_frame
from keyproxy.exchanges.base import (
    OrderUpdate,
    OLDEST_PENDING, BadRequest, BotKey, Endpoint, EndpointClass, IncomingRequest, OutboundRequest, RealKey,
    SignContext, Verified,
)
from keyproxy.exchanges.base import Reported, known_members
from keyproxy.exchanges.coinbase_fills import coinbase_stream_updates, coinbase_streamed_client_ids
from keyproxy.exchanges.coinbase_budget import WS_UNAUTHENTICATED
from keyproxy.policy.budget import Budget
from keyproxy.policy.model import RequestFacts

WS_PATHS = ("/", "/user")
PRIVATE_CHANNELS = frozenset({"user", "futures_balance_summary"})
PUBLIC_CHANNELS = frozenset({"heartbeats", "status", "ticker", "ticker_batch", "level2", "candles",
                             "market_trades"})


_MEMBERS = frozenset({"type", "product_ids", "channel", "jwt"})


def parse(raw: bytes | str) -> dict[str, Any]:
    frame = load_frame(raw)
    if not isinstance(frame, dict) or frame.get("type") not in ("subscribe", "unsubscribe"):
        raise BadRequest("a frame is a JSON object whose type is subscribe or unsubscribe")
    # Advanced Trade's members only (session 36's review: others went upstream beside a JWT of the real key)
    known_members(frame, _MEMBERS)
    channel = frame.get("channel")
    if channel not in PRIVATE_CHANNELS | PUBLIC_CHANNELS:
        raise BadRequest(f"unknown channel {str(channel)[:40]!r}")
    if "jwt" in frame and (not isinstance(frame["jwt"], str) or not frame["jwt"]):
        raise BadRequest("jwt must be a string")
    return frame


class CoinbaseWsApi(WsDialect):
    """The WebSocket dialect of a Coinbase account; JWTs checked and minted by `rest`."""

    fill_markets = frozenset({"spot"})  # fills come from the user channel (coinbase_fills.py)

    def stream_order_updates(self, text: str) -> tuple[OrderUpdate, ...]:
        return coinbase_stream_updates(text)

    client_ids_answer_existing = True  # the account's REST dialect's (orders are placed there)

    def streamed_client_ids(self, text: str) -> tuple[Reported, ...]:
        return coinbase_streamed_client_ids(text)

    def classify(self, method: str, path: str) -> Endpoint | None:
        return Endpoint(EndpointClass.READ, f"ws {method}") if method in ("subscribe", "unsubscribe") else None

    def classify_request(self, req: IncomingRequest) -> Endpoint | None:
        frame = parse(req.body)
        if frame["channel"] in PUBLIC_CHANNELS:
            return Endpoint(EndpointClass.PUBLIC, f"ws {frame['type']} {frame['channel']}", False)
        return Endpoint(EndpointClass.READ, f"ws {frame['type']} {frame['channel']}")

    def costs(self, req: IncomingRequest) -> tuple[tuple[Budget, int], ...]:
        """A frame with no JWT goes unauthenticated (sign() mints one only for a frame that came with one): the
        IP's 8 a second (session 33's review: public frames were relayed unmetered)."""
        return () if "jwt" in parse(req.body) else ((WS_UNAUTHENTICATED, 1),)

    def ws_frame(self, text: str) -> tuple[object, str]:
        frame = parse(text)
        return object(), frame["type"]  # no id: each frame its own key, answers settle the oldest

    def ws_answer(self, doc: dict[str, object]) -> tuple[object, int] | None:
        if doc.get("channel") == "subscriptions":
            return OLDEST_PENDING, 200
        if doc.get("type") == "error":
            return OLDEST_PENDING, 400
        return None

    def ws_refusal(self, key: object, method: str, code: str, message: str, status: int) -> dict[str, object]:
        return {"type": "error", "message": message}

    def presented_key(self, req: IncomingRequest) -> str | None:
        token = parse(req.body).get("jwt")
        return self._rest.jwt_key(token) if token else None  # type: ignore[no-any-return]

    def verify(self, req: IncomingRequest, bot: BotKey, endpoint: Endpoint, now_ms: int) -> Verified:
        """The JWT's signature, issuer and lifetime as on REST; no `uri` claim. No replay check: a JWT serves
        every subscribe for its 2 minutes (ccxt.pro reuses one), and a subscription moves nothing."""
        claims = self._rest.verify_jwt(parse(req.body)["jwt"], bot, now_ms)
        if "uri" in claims or "uris" in claims:
            raise BadRequest("a WebSocket JWT names no request: no uri claim")
        return Verified(req, replay_id="", expires_ms=0)

    def strip(self, req: IncomingRequest) -> IncomingRequest:
        """A frame no bot's JWT authenticated (this is called for those only): its `jwt`, if any, goes, so sign()
        mints none with the real key for it and it is charged as the unauthenticated frame it is (the regression
        review: a junk `jwt` made an anonymous frame both unmetered and signed)."""
        frame = parse(req.body)
        if "jwt" not in frame:
            return req
        del frame["jwt"]
        return IncomingRequest(req.method, req.path, req.query, req.headers, json.dumps(frame).encode())

    def sign(self, req: IncomingRequest, key: RealKey, endpoint: Endpoint, ctx: SignContext) -> OutboundRequest:
        frame = parse(req.body)
        if endpoint.cls is not EndpointClass.PUBLIC or "jwt" in frame:
            frame["jwt"] = self._rest.mint_jwt(key, None, ctx.now_ms // 1000)
        return OutboundRequest(req.method, ctx.origin, req.path, "", {}, json.dumps(frame).encode())

    def facts(self, req: IncomingRequest, endpoint: Endpoint) -> RequestFacts:
        return RequestFacts(action="other")  # subscriptions only: Coinbase takes no orders over the socket
