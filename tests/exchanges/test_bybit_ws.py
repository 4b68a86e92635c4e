"""Bybit's private WebSocket dialect: frames, the auth (verified, then replaced), facts of the REST twins."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from keyproxy.exchanges.base import AuthFailure, BadRequest, BotKey, IncomingRequest, RealKey, SignContext
from keyproxy.exchanges.bybit import Bybit
from keyproxy.exchanges.bybit_ws import BybitWsApi
from keyproxy.secret import Secret

REST = Bybit()
WS = REST.websocket("/v5/trade")
BOT = BotKey("botkey", "hmac", secret=Secret("VIRTUALSECRET"))
NOW = 1_800_000_000_000


def frame(doc: dict, path: str = "/v5/trade") -> IncomingRequest:  # type: ignore[type-arg]
    text = json.dumps(doc)
    _, method = WS.ws_frame(text)  # type: ignore[union-attr]
    return IncomingRequest(method, path, "", {}, text.encode())


def auth(expires: int = NOW + 10_000, secret: str = "VIRTUALSECRET") -> IncomingRequest:
    sig = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return frame({"req_id": 1, "op": "auth", "args": ["botkey", expires, sig]})


def test_paths_frames_and_public_relay() -> None:
    assert isinstance(WS, BybitWsApi) and isinstance(REST.websocket("/v5/private"), BybitWsApi)
    assert REST.relays_websocket("/v5/public/linear") and not REST.relays_websocket("/v5/private")
    env = REST.environments[0]
    assert env.origin_for("/v5/private") == "wss://stream.bybit.com"
    assert env.origin_for("/v5/order/create") == "https://api.bybit.com"
    for bad in ("[]", '{"args": []}', '{"op": "auth", "args": {}}', '{"op": "x", "reqId": true}'):
        with pytest.raises(BadRequest):
            WS.ws_frame(bad)  # type: ignore[union-attr]


def test_the_auth_is_verified_and_replaced() -> None:
    endpoint = WS.classify("auth", "/v5/trade")  # type: ignore[union-attr]
    assert WS.presented_key(auth()) == "botkey"  # type: ignore[union-attr]
    WS.verify(auth(), BOT, endpoint, NOW)  # type: ignore[union-attr]
    for bad, code in ((auth(secret="WRONG"), "bad_signature"), (auth(NOW - 1), "stale_request"),
                      (auth(NOW + 3_600_000), "stale_request")):
        with pytest.raises(AuthFailure) as err:
            WS.verify(bad, BOT, endpoint, NOW)  # type: ignore[union-attr]
        assert err.value.code == code
    real = RealKey("hmac", Secret("REALKEY"), secret=Secret("REALSECRET"))
    out = WS.sign(auth(), real, endpoint, SignContext("wss://stream.bybit.com", "production", NOW, None))  # type: ignore[union-attr]
    key, expires, sig = json.loads(out.body)["args"]
    assert key == "REALKEY" and expires == NOW + 10_000
    assert sig == hmac.new(b"REALSECRET", f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()


def test_trade_ops_have_the_facts_of_their_rest_twins() -> None:
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "2",
             "price": "0.1"}
    req = frame({"reqId": "1", "op": "order.create", "args": [order]})
    f = WS.facts(req, WS.classify("order.create", "/v5/trade"))  # type: ignore[union-attr]
    assert (f.action, f.quantity, f.conflict is not None) == ("order", Decimal("2"), True)  # the decoy price
    with pytest.raises(BadRequest):  # two requests in one op: keyproxy would read the first only
        WS.facts(frame({"reqId": "2", "op": "order.create", "args": [order, {**order, "qty": "200"}]}),
                 WS.classify("order.create", "/v5/trade"))  # type: ignore[union-attr]
    assert WS.ws_answer({"reqId": "1", "retCode": 0, "op": "order.create"}) == ("req:1", 200)  # type: ignore[union-attr]
    assert WS.ws_answer({"topic": "order", "data": []}) is None  # type: ignore[union-attr]
    refusal = WS.ws_refusal("req:1", "order.create", "notional_exceeded", "too big", 403)  # type: ignore[union-attr]
    assert refusal["reqId"] == "1" and refusal["retCode"] and refusal["op"] == "order.create"
