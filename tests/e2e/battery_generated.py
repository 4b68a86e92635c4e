"""Hypothesis-generated hostile requests (part of the battery; tests/e2e/test_hostile.py at CI size,
bench/hostile.py at full size).

Paths, query parameters, headers, bodies and signatures come from hypothesis strategies: arbitrary
Unicode and raw bytes, percent-encodings, control characters, wrong Content-Lengths, a bot's real API
key or a canary one beside signatures that cannot verify. Each request goes over a raw socket; every
answer must come (no hang), be no 5xx and echo nothing; afterwards the exchange must have received none.
"""

from __future__ import annotations

import time
import urllib.parse

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from keyproxy.emulator.devstack import DevStack
from tests.e2e.battery import CANARY, MalformedResult, _finish, exchange_raw, status_of

PRIVATE_PATHS = ["/api/v3/order", "/api/v3/account", "/api/v3/openOrders", "/api/v3/myTrades", "/fapi/v1/order",
                 "/fapi/v1/leverage", "/sapi/v1/capital/withdraw/apply", "/sapi/v1/account/apiRestrictions"]
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "G\u00c9T", "get"]
PARAMS = ["symbol", "side", "type", "timeInForce", "quantity", "price", "quoteOrderQty", "timestamp", "recvWindow",
          "newClientOrderId", "leverage", "coin", "address", "amount", "network", "signature"]
HEADERS = ["Content-Type", "Transfer-Encoding", "Content-Length", "Authorization", "X-Keyproxy-Token", "Origin",
           "Connection", "Expect", "X-Forwarded-For", "Host", "X-MBX-APIKEY", "Cookie"]
FRAMING_NEUTRAL_HEADERS = ["Authorization", "X-Keyproxy-Token", "Origin", "X-Forwarded-For", "X-MBX-APIKEY", "Cookie",
                           "Content-Type", "Referer", "Sec-Fetch-Site", "Accept", "User-Agent", "Accept-Encoding",
                           "X-Request-Id", "Cache-Control"]

_text = st.text(max_size=30)
_value = st.one_of(_text, st.integers().map(str), st.floats().map(repr),
                   st.sampled_from(["BTCUSDT", "NaN", "1e400", "-1", "0x10", "", "%00", "BUY", "MARKET", "0.001"]))
_pairs = st.lists(st.tuples(st.one_of(st.sampled_from(PARAMS), _text), _value), max_size=8)
_signature = st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), _text,
                       st.binary(max_size=80).map(bytes.hex))
_segment = st.one_of(st.text(max_size=16).map(lambda t: urllib.parse.quote(t, safe="")),
                     st.text(max_size=16), st.sampled_from(["..", "%2e%2e", ".", "%2F", "api", "v3"]))
_quoted = st.text(max_size=16).map(lambda t: urllib.parse.quote(t, safe=""))
_framed_path = st.one_of(st.sampled_from(PRIVATE_PATHS), st.sampled_from(PRIVATE_PATHS),
                         st.tuples(st.sampled_from(PRIVATE_PATHS), _quoted).map("/".join),
                         st.lists(_quoted, min_size=1, max_size=5).map(lambda p: "/" + "/".join(p)))
_path = st.one_of(st.sampled_from(PRIVATE_PATHS), st.sampled_from(PRIVATE_PATHS), st.sampled_from(PRIVATE_PATHS),
                  st.tuples(st.sampled_from(PRIVATE_PATHS), _segment).map("/".join),
                  st.lists(_segment, min_size=1, max_size=5).map(lambda p: "/" + "/".join(p)))


def _encode(pairs: list[tuple[str, str]], raw: bool) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs) if raw else urllib.parse.urlencode(pairs)


@st.composite
def hostile_request(draw: st.DrawFn, host: str, bot_key: str) -> bytes:
    """One request as bytes. A quarter are wild at the HTTP level (raw bytes in the target, binary header
    values, wrong or missing Content-Length, no Host, odd methods); the rest are well framed, so that
    they get past the HTTP parser to keyproxy's own checks with generated paths, parameters and signatures."""
    wild = draw(st.integers(0, 3)) == 0
    method = draw(st.sampled_from(METHODS if wild else ["GET", "POST", "DELETE", "PUT"]))
    account = draw(st.sampled_from(["main", "main", "main", "nosuch", "", "%6dain", "main/.."]))
    path = draw(_path if wild else _framed_path)
    fresh = [("timestamp", str(time.time_ns() // 1_000_000))] if draw(st.booleans()) else []
    pairs = fresh + draw(_pairs) + [("signature", draw(_signature))]
    raw_encoding = wild and draw(st.booleans())
    in_body = draw(st.booleans())
    query = "" if in_body else _encode(pairs, raw_encoding)
    body = (_encode(pairs, raw_encoding).encode("utf-8", "surrogatepass") if in_body
            else draw(st.one_of(st.just(b""), st.binary(max_size=300))))
    key = draw(st.sampled_from([CANARY, bot_key, bot_key, ""]))
    headers = [(b"Host", host.encode())] if not wild or draw(st.booleans()) else []
    if key:
        headers.append((b"X-MBX-APIKEY", key.encode()))
    if in_body:
        headers.append((b"Content-Type", b"application/x-www-form-urlencoded"))
    value = st.binary(max_size=60) if wild else st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                         max_size=60).map(str.encode)
    names = HEADERS if wild else FRAMING_NEUTRAL_HEADERS
    headers += draw(st.lists(st.tuples(st.sampled_from(names).map(str.encode), value), max_size=3))
    framing = draw(st.sampled_from(["length", "none", "wrong"])) if wild else "length"
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong":
        headers.append((b"Content-Length", str(draw(st.integers(-3, len(body) + 3))).encode()))
    headers.append((b"Connection", b"close"))
    target = f"/{account}{path}" + (f"?{query}" if query else "")
    head = f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogatepass")
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body


def generated(dev: DevStack, count: int, bot_key: str, seed_value: int = 3) -> MalformedResult:
    """Send `count` hypothesis-generated requests; raises (with the smallest failing request) on the first
    hang, 5xx or echoed canary. `bot_key`: a real bot's API key, so signatures get checked, and fail."""
    u = urllib.parse.urlsplit(dev.proxy_url)
    assert u.hostname and u.port
    host, port = u.hostname, u.port
    out = MalformedResult()
    start = len(dev.journal())

    @seed(seed_value)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(hostile_request(u.netloc, bot_key))
    def probe(data: bytes) -> None:
        answer = exchange_raw(host, port, data)
        out.count(answer)
        assert answer is not None, f"no answer and no close: {data[:300]!r}"
        assert not status_of(answer).startswith("5"), f"{answer[:300]!r} for {data[:300]!r}"
        assert CANARY.encode() not in answer, f"canary echoed for {data[:300]!r}"

    probe()
    return _finish(dev, out, start)
