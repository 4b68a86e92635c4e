"""OKX's private WebSocket dialect: frames, the login (verified, then replaced), facts of the REST twins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from keyproxy.exchanges.base import AuthFailure, BadRequest, BotKey, IncomingRequest, RealKey, SignContext
from keyproxy.exchanges.okx import Okx
from keyproxy.exchanges.okx_ws import OkxWsApi
from keyproxy.secret import Secret

REST = Okx()
WS = REST.websocket("/ws/v5/private")
BOT = BotKey("bot-key", "hmac", secret=Secret("VIRTUALSECRET"), passphrase=Secret("virtual-pass"))
NOW_S = 1_800_000_000


def frame(doc: dict) -> IncomingRequest:  # type: ignore[type-arg]
    text = json.dumps(doc)
    _, method = WS.ws_frame(text)  # type: ignore[union-attr]
    return IncomingRequest(method, "/ws/v5/private", "", {}, text.encode())


def login(ts: int = NOW_S, secret: str = "VIRTUALSECRET", passphrase: str = "virtual-pass") -> IncomingRequest:
    sign = base64.b64encode(hmac.new(secret.encode(), f"{ts}GET/users/self/verify".encode(), hashlib.sha256).digest())
    return frame({"op": "login", "args": [{"apiKey": "bot-key", "passphrase": passphrase, "timestamp": str(ts),
                                           "sign": sign.decode()}]})


def test_the_dialect_serves_the_private_paths_only() -> None:
    assert isinstance(WS, OkxWsApi) and isinstance(REST.websocket("/ws/v5/business"), OkxWsApi)
    assert REST.websocket("/ws/v5/public") is None and REST.relays_websocket("/ws/v5/public")
    for bad in ("[]", '{"args": []}', '{"op": "order", "args": {}}', '{"op": "order", "args": [1]}',
                '{"op": "order", "id": 5}', '{"op":"x","op":"y"}', '{"op": "order", "args": []}',
                '{"op": "cancel-order", "id": "", "args": []}'):  # an op without an id: its answer names none
        with pytest.raises(BadRequest):
            WS.ws_frame(bad)  # type: ignore[union-attr]
    assert WS.classify("teleport", "/ws/v5/private") is None  # type: ignore[union-attr]


def test_the_login_is_verified_with_the_virtual_credential_and_replaced() -> None:
    req = login()
    assert WS.presented_key(req) == "bot-key"  # type: ignore[union-attr]
    endpoint = WS.classify("login", "/ws/v5/private")  # type: ignore[union-attr]
    WS.verify(req, BOT, endpoint, NOW_S * 1000 + 5000)  # type: ignore[union-attr]
    for bad, code in ((login(secret="WRONG"), "bad_signature"), (login(passphrase="nope"), "bad_signature"),
                      (login(ts=NOW_S - 60), "stale_request")):
        with pytest.raises(AuthFailure) as err:
            WS.verify(bad, BOT, endpoint, NOW_S * 1000)  # type: ignore[union-attr]
        assert err.value.code == code
    real = RealKey("hmac", Secret("REALKEY"), secret=Secret("REALSECRET"), passphrase=Secret("real-pass"))
    out = WS.sign(req, real, endpoint, SignContext("wss://ws.okx.com:8443", "production", NOW_S * 1000, None))  # type: ignore[union-attr]
    arg = json.loads(out.body)["args"][0]
    expected = base64.b64encode(hmac.new(b"REALSECRET", f"{NOW_S}GET/users/self/verify".encode(),
                                         hashlib.sha256).digest()).decode()
    assert (arg["apiKey"], arg["passphrase"], arg["sign"]) == ("REALKEY", "real-pass", expected)


def test_order_ops_have_the_facts_of_their_rest_twins() -> None:
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "20000", "sz": "2"}
    req = frame({"id": "1", "op": "order", "args": [order]})
    f = WS.facts(req, WS.classify("order", "/ws/v5/private"))  # type: ignore[union-attr]
    assert (f.action, f.quantity, f.price) == ("order", Decimal("2"), Decimal("20000"))
    with pytest.raises(BadRequest):  # a single op with two orders: keyproxy would read the first only
        WS.facts(frame({"id": "9", "op": "order", "args": [order, {**order, "sz": "300"}]}),
                 WS.classify("order", "/ws/v5/private"))  # type: ignore[union-attr]
    batch = frame({"id": "2", "op": "batch-orders", "args": [order, {**order, "sz": "3"}]})
    assert len(WS.facts(batch, WS.classify("batch-orders", "/ws/v5/private")).orders) == 2  # type: ignore[union-attr]
    cancel = frame({"id": "3", "op": "cancel-order", "args": [{"instId": "BTC-USDT", "ordId": "1"}]})
    assert WS.facts(cancel, WS.classify("cancel-order", "/ws/v5/private")).action == "cancel"  # type: ignore[union-attr]
    sub = frame({"op": "subscribe", "args": [{"channel": "orders", "instType": "ANY"}]})
    assert WS.facts(sub, WS.classify("subscribe", "/ws/v5/private")).action == "other"  # type: ignore[union-attr]


def test_answers_and_refusals_in_okx_shapes() -> None:
    assert WS.ws_answer({"event": "login", "code": "0"}) == ("login", 200)  # type: ignore[union-attr]
    assert WS.ws_answer({"id": "7", "op": "order", "code": "1", "data": []}) == ("id:7", 400)  # type: ignore[union-attr]
    assert WS.ws_answer({"arg": {"channel": "orders"}, "data": []}) is None  # type: ignore[union-attr]  # an event
    op = WS.ws_refusal("id:7", "order", "notional_exceeded", "too big", 403)  # type: ignore[union-attr]
    assert op == {"id": "7", "op": "order", "code": "51005", "msg": "too big", "data": []}
    assert WS.ws_refusal("login", "login", "bad_signature", "no", 401)["event"] == "error"  # type: ignore[union-attr]
