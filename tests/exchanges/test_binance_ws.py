"""Binance WebSocket API dialect: payload, verification, re-signing, facts of the mirrored REST endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from keyproxy.exchanges import _sign
from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, BotKey, EndpointClass, IncomingRequest, RealKey, SignContext,
)
from keyproxy.exchanges.binance import Binance
from keyproxy.exchanges.binance_ws import WS_API_PATH, parse_frame, payload
from keyproxy.secret import Secret

# Binance's own example: web-socket-api.md, "SIGNED request example (HMAC)"
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "newOrderRespType": "ACK", "recvWindow": 100, "timestamp": 1645423376532,
              "apiKey": DOC_KEY}
DOC_SIGNATURE = "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"

dialect = Binance().websocket(WS_API_PATH)
assert dialect is not None


def frame(method: str, params: dict, frame_id: object = "1") -> IncomingRequest:  # type: ignore[type-arg]
    return IncomingRequest(method, WS_API_PATH, "", {}, json.dumps({"id": frame_id, "method": method,
                                                                    "params": params}).encode())


def signed(params: dict, secret: str, key: str) -> dict:  # type: ignore[type-arg]
    p = {**params, "apiKey": key}
    p["signature"] = hmac.new(secret.encode(), payload(p).encode(), hashlib.sha256).hexdigest()
    return p


def test_payload_and_signature_match_binance_docs() -> None:
    p = signed({k: v for k, v in DOC_PARAMS.items() if k != "apiKey"}, DOC_SECRET, DOC_KEY)
    assert p["signature"] == DOC_SIGNATURE
    bot = BotKey(DOC_KEY, "hmac", secret=Secret(DOC_SECRET))
    req = frame("order.place", p)
    assert dialect.presented_key(req) == DOC_KEY
    endpoint = dialect.classify("order.place", WS_API_PATH)
    assert endpoint is not None and endpoint.cls is EndpointClass.TRADE
    verified = dialect.verify(req, bot, endpoint, now_ms=1645423376532 + 50)
    assert "apiKey" not in json.loads(verified.request.body)["params"]
    with pytest.raises(AuthFailure) as e:
        dialect.verify(req, bot, endpoint, now_ms=1645423376532 + 101)
    assert e.value.code == "stale_request"
    upper = frame("order.place", {**p, "signature": p["signature"].upper()})
    assert dialect.verify(upper, bot, endpoint, 1645423376540).replay_id == verified.replay_id  # one request
    with pytest.raises(AuthFailure):
        dialect.verify(frame("order.place", {**p, "price": "1.00"}), bot, endpoint, 1645423376540)


def test_resigned_with_the_real_key_and_valued_like_rest() -> None:
    bot_secret = "b" * 64
    p = signed({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.5",
                "price": "20000", "timestamp": 1_700_000_000_000}, bot_secret, "virtual")
    req = frame("order.place", p)
    endpoint = dialect.classify("order.place", WS_API_PATH)
    assert endpoint is not None
    facts = dialect.facts(dialect.verify(req, BotKey("virtual", "hmac", secret=Secret(bot_secret)), endpoint,
                                         1_700_000_000_100).request, endpoint)
    assert (facts.action, facts.symbol, facts.quantity, facts.price) == ("order", "BTCUSDT", Decimal("0.5"),
                                                                         Decimal("20000"))
    real = RealKey("hmac", Secret("REALKEY"), secret=Secret("r" * 64))
    stripped = dialect.strip(req)
    out = dialect.sign(stripped, real, endpoint, SignContext("ws://127.0.0.1:1", "loopback", 1_700_000_000_200))
    sent = json.loads(out.body)
    assert sent["id"] == "1" and sent["method"] == "order.place" and sent["params"]["apiKey"] == "REALKEY"
    expected = hmac.new(b"r" * 64, payload(sent["params"]).encode(), hashlib.sha256).hexdigest()
    assert sent["params"]["signature"] == expected
    assert bot_secret not in out.body.decode() and "virtual" not in out.body.decode()


def test_ed25519_real_key_signs_base64_without_percent_encoding() -> None:
    private_pem, public_pem = _sign.new_keypair_pem("ed25519")
    real = RealKey("ed25519", Secret("REAL"), private_key=Secret(private_pem.decode()))
    endpoint = dialect.classify("account.status", WS_API_PATH)
    assert endpoint is not None
    out = dialect.sign(frame("account.status", {"timestamp": 1}), real, endpoint, SignContext("ws://x", "loopback", 5))
    params = json.loads(out.body)["params"]
    assert "%" not in params["signature"]
    assert _sign.verify_b64_signature(public_pem, params["signature"], payload(params).encode())


@pytest.mark.parametrize("raw", [b"[]", b"{}", b'{"id": 1}', b'{"method": "ping"}', b'{"id": true, "method": "x"}',
                                 b'{"id": 1, "method": "x", "params": []}', b"not json",
                                 b'{"id": 1, "id": 2, "method": "x"}',
                                 b'{"id": 1, "method": "x", "params": {"a": NaN}}'])
def test_malformed_frames_are_bad_requests(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_frame(raw)


def test_unknown_methods_and_paths_are_not_classified() -> None:
    assert dialect.classify("order.teleport", WS_API_PATH) is None
    assert dialect.classify("order.place", "/ws-api/v4") is None
    public = dialect.classify("ping", WS_API_PATH)
    assert public is not None and public.cls is EndpointClass.PUBLIC and not public.signed


def test_streams_public_relayed_private_by_listen_key() -> None:
    """Market data streams carry no credential; a futures user stream is opened by a listenKey keyproxy relayed."""
    rest = Binance()
    assert all(rest.relays_websocket(p) for p in ("/ws", "/ws/btcusdt@trade", "/stream", "/public/ws", "/market/ws"))
    assert not any(rest.relays_websocket(p) for p in ("/private/ws", "/ws-api/v3", "/ws-fapi/v1", "/wsx"))
    assert rest.stream_listen_key("/private/ws", "listenKey=abc") == "abc"
    assert rest.stream_listen_key("/public/ws", "listenKey=abc") is None
    for bad in ("", "listenKey=", "listenKey=a&listenKey=b"):
        with pytest.raises(BadRequest):
            rest.stream_listen_key("/private/ws", bad)
    key = "A1" * 32  # COIN-M: /ws/<listenKey> at dstream; a market stream name has an '@'
    assert rest.stream_listen_key(f"/ws/{key}", "") == key and rest.stream_listen_key("/ws/btcusdt@trade", "") is None
    env = rest.environments[0]
    assert env.origin_for(rest.websocket_origin_path(f"/ws/{key}")) == "wss://dstream.binance.com"
    assert env.origin_for(rest.websocket_origin_path("/ws/btcusdt@trade")) == "wss://stream.binance.com:9443"
    assert env.origin_for("/ws-api/v3") == "wss://ws-api.binance.com:443"
    assert env.origin_for("/private/ws") == "wss://fstream.binance.com"
    assert env.origin_for("/ws/btcusdt@trade") == "wss://stream.binance.com:9443"


def test_a_stream_token_reaches_a_bot_only_as_its_virtual_one_and_goes_upstream_real() -> None:
    """Session 26's review: a listenKey (or margin listenToken) is a bearer credential for the account's private
    stream: the answers that hand one out are re-written with a virtual one, and the real one is put back where the
    virtual one is presented (a keepalive's `listenKey`, a subscribe frame's `listenToken`)."""
    rest = Binance()
    minted: list[str] = []

    def mint(real: str) -> str:
        minted.append(real)
        return "V" * 64

    for path, answer in (("/fapi/v1/listenKey", b'{"listenKey":"REAL"}'),
                         ("/sapi/v1/userDataStream", b'{"listenKey":"REAL"}'),
                         ("/sapi/v1/userListenToken", b'{"token":"REAL","expirationTime":1}')):
        assert rest.grants_stream_token(path)
        assert b"REAL" not in rest.swap_stream_token(answer, mint) and b"V" * 64 in rest.swap_stream_token(answer, mint)
    assert b"REAL" not in rest.swap_stream_token(b'not json REAL', mint)  # unreadable: not relayed
    assert not rest.grants_stream_token("/api/v3/account")
    token = Binance.virtual_stream_token()
    assert len(token) == 64 and token.isalnum() and token != Binance.virtual_stream_token()
    keepalive = IncomingRequest("PUT", "/sapi/v1/userDataStream", f"listenKey={'V' * 64}", {}, b"")
    assert rest.named_stream_token(keepalive) == "V" * 64
    assert rest.presented_stream_token(keepalive) is None  # on REST the API key says whose it is, never the token
    assert rest.named_stream_token(IncomingRequest("PUT", "/sapi/v1/userDataStream", "listenKey=a&listenKey=b",
                                                   {}, b"")) is None
    assert rest.named_stream_token(IncomingRequest("GET", "/api/v3/account", "listenKey=a", {}, b"")) is None
    assert rest.named_stream_token(IncomingRequest("PUT", "/sapi/v1/userDataStream", "", {}, b"{}")) is None
    assert rest.grants_stream_token("/sapi/v1/margin/listen-key")  # any listenKey endpoint, listed or not
    real = RealKey("hmac", Secret("realkey"), secret=Secret("r" * 64))
    endpoint = rest.classify("PUT", "/sapi/v1/userDataStream")
    assert endpoint is not None
    out = rest.sign(keepalive, real, endpoint, SignContext("https://api.binance.com", "production", 1, None, "R" * 60))
    assert out.query == "listenKey=" + "R" * 60
    subscribe = frame("userDataStream.subscribe.listenToken", {"listenToken": "V" * 64})
    ws_endpoint = dialect.classify("userDataStream.subscribe.listenToken", WS_API_PATH)
    assert ws_endpoint is not None
    out = dialect.sign(subscribe, real, ws_endpoint, SignContext("ws://x", "loopback", 5, None, "R" * 60))
    assert json.loads(out.body)["params"]["listenToken"] == "R" * 60


def test_a_public_stream_names_no_user_data_stream() -> None:
    """Session 26's review: `/public/ws/<listenKey>`, `/ws/%72dk...` (decoded upstream) and a SUBSCRIBE naming a
    listenKey reached a user data stream through the public relay, which checks no credential."""
    rest = Binance()
    key = "rdkKG5" + "a1" * 29
    for text in (f"/public/ws/{key}?", f"/market/ws/f{key}?", f"/ws/%72{key[1:]}?", f"/stream?streams={key}",
                 f"/stream?streams=btcusdt@trade/{key}", json.dumps({"method": "SUBSCRIBE", "params": [key], "id": 1}),
                 '{"method":"SUBSCRIBE","params":["' + key[:10] + "\\u0061" + key[11:] + '"],"id":1}'):
        assert rest.names_private_stream(text), text
    for text in ("/ws/btcusdt@trade?", "/stream?streams=btcusdt@trade/ethusdt@depth20@100ms",
                 json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "!miniTicker@arr"], "id": 1})):
        assert not rest.names_private_stream(text), text


def test_a_user_data_stream_goes_to_the_host_of_the_market_that_handed_out_its_key() -> None:
    """`/ws/<listenKey>` is USD-M's, margin's or COIN-M's stream by the endpoint that gave the key (session 26's diff
    review: a margin key's stream went to COIN-M's host); `/private/ws/<listenKey>` is python-binance's USD-M URL."""
    rest = Binance()
    env = rest.environments[0]
    key = "A1" * 32
    for issued_by, origin in (("/fapi/v1/listenKey", "wss://fstream.binance.com"),
                              ("/sapi/v1/userDataStream", "wss://stream.binance.com:9443"),
                              ("/dapi/v1/listenKey", "wss://dstream.binance.com"), ("", "wss://dstream.binance.com"),
                              ("/sapi/v1/margin/listen-key", "wss://margin-stream.binance.com"),
                              ("/papi/v1/listenKey", None), ("/sapi/v1/equity/listenKey", None)):
        assert env.origin_for(rest.private_stream_origin_path(f"/ws/{key}", issued_by)) == origin, issued_by
    assert env.origin_for(rest.private_stream_origin_path(f"/private/ws/{key}", "")) == "wss://fstream.binance.com"
    assert rest.stream_listen_key(f"/private/ws/{key}", "") == key
    assert env.origin_for("/market/stream") == env.origin_for("/public/stream") == "wss://fstream.binance.com"
