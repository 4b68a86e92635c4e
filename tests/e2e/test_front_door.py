"""What reaches the listener that a bot's SDK would never send: refused, never forwarded, never echoed."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import pytest

from tests.e2e.conftest import Stack, hmac_sign, now_ms

CANARY = "KPCANARYe2e0123456789abcdef"


def raw(stack: Stack, data: bytes, read_timeout: float = 10) -> bytes:
    u = urllib.parse.urlsplit(stack.dev.proxy_url)
    with socket.create_connection((u.hostname, u.port), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def host(stack: Stack) -> str:
    return urllib.parse.urlsplit(stack.dev.proxy_url).netloc


def status_and_body(answer: bytes) -> tuple[int, dict]:  # type: ignore[type-arg]
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


@pytest.mark.parametrize("target, extra, code", [
    ("http://evil.example/acct-hmac/api/v3/time", "", "bad_request"),          # absolute-form
    ("/acct-hmac/api/v3/../v3/time", "", "bad_request"),
    ("/acct-hmac/api/v3/%2e%2e/v3/time", "", "bad_request"),
    ("/acct-hmac/api%2fv3/time", "", "bad_request"),
    ("/acct-hmac//evil.example/api/v3/time", "", "bad_request"),
    ("/acct-hmac/api/v3/time\\..", "", "bad_request"),
    ("/acct-hmac/@evil.example/api/v3/time", "", "bad_request"),
    ("/acct-hmac/api/v3/time", "X-Forwarded-Host: evil.example\r\n", "bad_request"),
    ("/acct-hmac/api/v3/time", "Origin: http://evil.example\r\n", "browser_denied"),
    ("/acct-hmac/api/v3/time", "Sec-Fetch-Mode: cors\r\n", "browser_denied"),
])
def test_destination_cannot_be_steered(stack: Stack, target: str, extra: str, code: str) -> None:
    start = len(stack.dev.journal())
    answer = raw(stack, f"GET {target} HTTP/1.1\r\nHost: {host(stack)}\r\n{extra}Connection: close\r\n\r\n".encode())
    status, body = status_and_body(answer)
    assert body.get("error") == code, answer[:300]
    assert 400 <= status < 500
    assert stack.dev.journal()[start:] == []


@pytest.mark.parametrize("host_header", ["evil.example", "evil.example:80", "127.0.0.1", "attacker.127.0.0.1.nip.io"])
def test_dns_rebinding_host_values_are_refused(stack: Stack, host_header: str) -> None:
    answer = raw(stack, f"GET /acct-hmac/api/v3/time HTTP/1.1\r\nHost: {host_header}\r\n"
                        "Connection: close\r\n\r\n".encode())
    assert status_and_body(answer) == (403, status_and_body(answer)[1]) and b"host_denied" in answer


def test_connect_is_refused(stack: Stack) -> None:
    answer = raw(stack, "CONNECT api.binance.com:443 HTTP/1.1\r\nHost: api.binance.com:443\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 4")


@pytest.mark.parametrize("request_bytes", [
    b"GET /acct-hmac/api/v3/account HTTP/1.1\r\nHost: HOST\r\nX-MBX-APIKEY: " + CANARY.encode() + b"\x01\r\n\r\n",
    b"GET /acct-hmac/api/v3/account?signature=" + CANARY.encode() + b" HTTP/1.1 junk\r\nHost: HOST\r\n\r\n",
    b"GET /acct-hmac/api/v3/account HTTP/1.1\r\nHost: HOST\r\nAuthorization: Bearer "
    + CANARY.encode() * 400 + b"\r\n\r\n",
    b"POST /acct-hmac/api/v3/order HTTP/1.1\r\nHost: HOST\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /acct-hmac/api/v3/time HTTP/1.1\r\nHost: HOST\r\nHost: other\r\n\r\n",
])
def test_malformed_requests_get_our_json_and_echo_nothing(stack: Stack, request_bytes: bytes) -> None:
    start = len(stack.dev.journal())
    answer = raw(stack, request_bytes.replace(b"HOST", host(stack).encode()))
    status, body = status_and_body(answer)
    assert status in (400, 403), answer[:200]
    assert body.get("error") in ("bad_request", "host_denied") and "request_id" in body
    assert CANARY.encode() not in answer
    assert stack.dev.journal()[start:] == []
    time.sleep(0.2)
    assert CANARY not in stack.dev.daemon_log()


def test_body_over_the_limit_is_413(stack: Stack) -> None:
    creds = stack.bot("bigbody")
    body = "symbol=BTCUSDT&note=" + "x" * (1 << 20) + f"&timestamp={now_ms()}"
    head = (f"POST /acct-hmac/api/v3/order HTTP/1.1\r\nHost: {host(stack)}\r\nX-MBX-APIKEY: {creds['api_key']}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n")
    start = len(stack.dev.journal())
    status, ans = status_and_body(raw(stack, head.encode() + body.encode()))
    assert (status, ans.get("error")) == (413, "body_too_large")
    assert stack.dev.journal()[start:] == []


def test_header_order_of_bot_auth_is_not_forwarded(stack: Stack) -> None:
    """Cookies, forwarding headers and the bot's key never reach the exchange."""
    creds = stack.bot("headers")
    q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
    start = len(stack.dev.journal())
    answer = raw(stack, (f"GET /acct-hmac/api/v3/account?{q} HTTP/1.1\r\nHost: {host(stack)}\r\n"
                         f"X-MBX-APIKEY: {creds['api_key']}\r\nCookie: session={CANARY}\r\n"
                         f"X-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 200")
    [entry] = stack.dev.journal()[start:]
    sent = {k.lower(): v for k, v in entry["headers"].items()}
    assert "cookie" not in sent and "x-forwarded-for" not in sent
    assert sent["x-mbx-apikey"] == stack.keys["acct-hmac"].credentials["api_key"]


def test_health_endpoints_answer_ok_and_say_nothing_else(stack: Stack) -> None:
    import urllib.request

    for url in (stack.dev.proxy_url + "/_keyproxy/health", stack.dev.metrics_url.replace("/metrics", "/health")):
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert (answer.status, json.loads(answer.read())) == (200, {"status": "ok"})
