"""Frames and bodies whose member names differ only in case, and WebSocket frames with members the exchange does not
document, are refused (session 34's WebSocket review): keyproxy decides on the member it reads, and an exchange whose
reader matches names regardless of case (Go's encoding/json does) could act on the other, such as an `Op` of
`order` beside the `op` of `subscribe` keyproxy decided."""

from __future__ import annotations

import pytest

from keyproxy.exchanges import binance_ws, bybit_ws, kraken_ws, okx_ws
from keyproxy.exchanges.base import BadRequest, DuplicateMember, unique_members

REFUSED = [
    (okx_ws.parse, '{"id":"1","op":"subscribe","args":[{"channel":"orders","instType":"ANY"}],"Op":"order"}', "'op'"),
    (okx_ws.parse, '{"id":"1","op":"order","args":[{"instId":"BTC-USDT","side":"buy","sz":"1","SZ":"100"}]}', "'sz'"),
    (okx_ws.parse, '{"id":"1","op":"subscribe","args":[{"channel":"orders"}],"ARGS":[{}]}', "'args'"),
    (okx_ws.parse, '{"id":"1","op":"subscribe","args":[{"channel":"orders"}],"order":{}}', "no member 'order'"),
    (bybit_ws.parse, '{"op":"subscribe","args":["order"],"extra":1}', "no member 'extra'"),
    (bybit_ws.parse, '{"op":"subscribe","args":["order"],"OP":"order.create"}', "'op'"),
    (kraken_ws.parse, '{"method":"subscribe","params":{"channel":"ticker"},"Method":"add_order"}', "'method'"),
    (kraken_ws.parse, '{"method":"subscribe","params":{"channel":"ticker"},"token":"t"}', "no member 'token'"),
    (binance_ws._parsed, '{"id":1,"method":"ping","params":{},"x":1}', "no member 'x'"),
    (binance_ws._parsed, '{"id":1,"method":"ping","params":{"symbol":"A","SYMBOL":"B"}}', "'symbol'"),
]


@pytest.mark.parametrize(("parse", "raw", "said"), REFUSED)
def test_a_frame_with_members_keyproxy_would_not_read_is_refused(parse, raw: str, said: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest) as e:
        parse(raw)
    assert said in str(e.value), str(e.value)


@pytest.mark.parametrize(("parse", "raw"), [
    (okx_ws.parse, '{"id":"1","op":"order","args":[{"instId":"BTC-USDT","sz":"1"}],"expTime":"1"}'),
    (bybit_ws.parse, '{"reqId":"1","header":{"X-BAPI-TIMESTAMP":"1"},"op":"order.create","args":[{}]}'),
    (bybit_ws.parse, '{"op":"subscribe","req_id":"1","args":["order"]}'),
    (kraken_ws.parse, '{"method":"subscribe","params":{"channel":"ticker"},"req_id":1}'),
    (binance_ws._parsed, '{"id":1,"method":"ping","params":{}}'),
])
def test_the_exchanges_documented_frames_pass(parse, raw: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(parse(raw), dict)


def test_rest_bodies_are_held_to_the_same_rule() -> None:
    """`unique_members` reads every JSON body a bot sends (Bybit, OKX, Coinbase, Hyperliquid, Binance batches)."""
    with pytest.raises(DuplicateMember):
        unique_members([("qty", "1"), ("Qty", "100")])
    with pytest.raises(DuplicateMember):  # U+017F folds to "s" (Go's encoding/json matches it so)
        unique_members([("sz", "1"), ("\u017fz", "1000")])
    assert unique_members([("a", 1), ("b", 2)]) == {"a": 1, "b": 2}
