"""Deadlines and failures around the exchange: slow bots, slow or dead upstreams, shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.conftest import call, hmac_sign, now_ms

CONFIG = """
[proxy]
header_timeout = 2
body_timeout = 1
upstream_timeout = 1.5
shutdown_grace = 5
"""


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, dict, dict]]:  # type: ignore[type-arg]
    dev = DevStack(tmp_path_factory.mktemp("slow"), extra_config=CONFIG)
    slow = subprocess.Popen([sys.executable, str(Path(__file__).with_name("slow_upstream.py")), "3"],
                            stdout=subprocess.PIPE, text=True, env=dev.env)
    big = subprocess.Popen([sys.executable, str(Path(__file__).with_name("slow_upstream.py")), "0", str(6 << 20)],
                           stdout=subprocess.PIPE, text=True, env=dev.env)  # 6 MiB answers, at once
    try:
        slow_url = slow.stdout.readline().split()[-1]  # type: ignore[union-attr]
        big_url = big.stdout.readline().split()[-1]  # type: ignore[union-attr]
        fast_key, slow_key = new_real_key(), new_real_key()
        dev.start_emulator([fast_key])
        dev.init()
        dev.add_account("fast", fast_key)
        dev.cli("key", "add", "slow", "--exchange", "binance", "--base-url", slow_url, "--insecure-upstream",
                input=json.dumps(slow_key.credentials))
        dev.cli("key", "add", "big", "--exchange", "binance", "--base-url", big_url, "--insecure-upstream",
                input=json.dumps(new_real_key().credentials))
        with socket.socket() as s:  # a port with nothing listening
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        dev.cli("key", "add", "dead", "--exchange", "binance", "--base-url", f"http://127.0.0.1:{dead_port}",
                "--insecure-upstream", input=json.dumps(new_real_key().credentials))
        dev.start_daemon()
        bots = {name: dev.add_bot(f"bot-{name}", name, "read,trade") for name in ("fast", "slow", "dead", "big")}
        yield dev, bots, {"slow_url": slow_url}
    finally:
        dev.close()
        for proc in (slow, big):
            proc.kill()
            proc.wait()


def order(creds: dict) -> tuple[str, dict]:  # type: ignore[type-arg]
    body = hmac_sign(creds["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                                      f"&price=20000&timestamp={now_ms()}")
    return body, {"X-MBX-APIKEY": creds["api_key"]}


def test_upstream_timeout_on_a_trade_says_fate_unknown(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, bots, _ = slow_stack
    body, headers = order(bots["slow"])
    started = time.monotonic()
    ans = call(bots["slow"]["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert (ans.status, ans.body["error"]) == (504, "upstream_timeout")
    assert "query" in ans.body["message"] and "never retries" in ans.body["message"]
    assert time.monotonic() - started < 3


def test_unreachable_upstream_is_502(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, bots, _ = slow_stack
    q = hmac_sign(bots["dead"]["secret"], f"timestamp={now_ms()}")
    ans = call(bots["dead"]["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": bots["dead"]["api_key"]})
    assert (ans.status, ans.body["error"]) == (502, "upstream_error")


def test_one_bot_never_holds_the_whole_upstream_pool(slow_stack) -> None:  # type: ignore[no-untyped-def]
    """Session 35's review: a bot that did not read its large answers held all 100 connections of the shared
    upstream pool, and every other bot's requests (and keyproxy's own calls) timed out. A bot has at most
    UPSTREAM_PER_BOT requests on their way; past that it is refused before anything is sent, and another bot's
    request still goes."""
    from concurrent.futures import ThreadPoolExecutor

    from keyproxy.proxy.pipeline import UPSTREAM_PER_BOT

    dev, bots, _ = slow_stack
    slow = bots["slow"]

    def account(_: int) -> tuple[int, str | None]:
        q = hmac_sign(slow["secret"], f"timestamp={now_ms()}")
        ans = call(slow["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": slow["api_key"]})
        return ans.status, ans.body.get("error") if isinstance(ans.body, dict) else None

    with ThreadPoolExecutor(UPSTREAM_PER_BOT + 10) as pool:
        futures = [pool.submit(account, i) for i in range(UPSTREAM_PER_BOT + 10)]
        time.sleep(0.5)  # the slow upstream holds every one of them
        fast = bots["fast"]
        q = hmac_sign(fast["secret"], f"timestamp={now_ms()}")
        assert call(fast["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": fast["api_key"]}
                    ).status == 200
        results = [f.result() for f in futures]
    refused = [r for r in results if r == (429, "rate_limited")]
    assert len(refused) >= 10 and all(r[1] in ("upstream_timeout", "rate_limited") for r in results), results


def test_requests_naming_a_bot_by_its_key_id_alone_never_take_its_places_on_the_way(slow_stack) -> None:  # type: ignore[no-untyped-def]
    """Session 35's regression review: the per-bot cap on requests on their way counted a request under the bot
    its key id named, proven or not, so anyone who knew a bot's key id (no secret) filled the bot's places with
    slow public reads and the bot's own signed requests were refused. Unproven ones count in a share of their own."""
    from concurrent.futures import ThreadPoolExecutor

    from keyproxy.proxy.pipeline import UPSTREAM_PER_BOT

    dev, bots, _ = slow_stack
    slow = bots["slow"]

    def public(i: int) -> int:
        return call(slow["base_url"], "GET", "/api/v3/depth", f"symbol=BTCUSDT&limit={i + 1}",
                    headers={"X-MBX-APIKEY": slow["api_key"]}).status

    with ThreadPoolExecutor(UPSTREAM_PER_BOT + 10) as pool:
        futures = [pool.submit(public, i) for i in range(UPSTREAM_PER_BOT + 10)]
        time.sleep(0.5)  # the slow upstream holds them
        q = hmac_sign(slow["secret"], f"timestamp={now_ms()}")
        ans = call(slow["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": slow["api_key"]})
        statuses = [f.result() for f in futures]
    assert statuses.count(429) >= 10, statuses  # the key-id share is capped too
    assert (ans.status, ans.body["error"]) == (504, "upstream_timeout"), ans.body  # went: not refused as rate_limited


def test_a_bot_that_does_not_read_its_answer_is_cut_off_and_recorded_with_the_exchanges_status(slow_stack
                                                                                                ) -> None:  # type: ignore[no-untyped-def]
    """Session 35's regression review: a bot that took no answer within BOT_SEND_S was cut off with an "internal
    error" (status 500) in the log and the audit. Now its connection is aborted, one warning says why, the audit
    line records what the exchange answered, and the daemon serves the next request."""
    from keyproxy.proxy.ws_limits import BOT_SEND_S

    dev, bots, _ = slow_stack
    big = bots["big"]
    u = urllib.parse.urlsplit(dev.proxy_url)
    q = hmac_sign(big["secret"], f"timestamp={now_ms()}")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        s.connect((u.hostname, u.port))
        s.sendall(f"GET /big/api/v3/account?{q} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                  f"X-MBX-APIKEY: {big['api_key']}\r\n\r\n".encode())
        time.sleep(BOT_SEND_S + 2)  # never reads: 6 MiB cannot fit the socket's buffers
        log = dev.daemon_log()
        assert "did not read its answer in time, or closed its connection" in log
        assert "internal error" not in log and "request handling failed" not in log
    done = [json.loads(x) for f in sorted(dev.audit_dir.rglob("audit-*.jsonl")) for x in f.read_text().splitlines()
            if '"/api/v3/account"' in x and '"big"' in x and "request.done" in x]
    assert done and done[-1]["status"] == 200 and done[-1]["upstream_status"] == 200, done
    q = hmac_sign(big["secret"], f"timestamp={now_ms()}")
    assert call(big["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": big["api_key"]}).status == 200


def _open(dev: DevStack) -> socket.socket:
    u = urllib.parse.urlsplit(dev.proxy_url)
    return socket.create_connection((u.hostname, u.port), timeout=10)


def test_slow_headers_are_cut_off(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, _, _ = slow_stack
    with _open(dev) as s:
        s.sendall(b"GET /fast/api/v3/time HTTP/1.1\r\nHost: x")
        started = time.monotonic()
        try:
            while s.recv(1024):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 5  # header deadline 2 s, not aiohttp's default hour


def test_slow_body_is_cut_off_and_others_are_served(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, bots, _ = slow_stack
    u = urllib.parse.urlsplit(dev.proxy_url)
    with _open(dev) as s:
        s.sendall((f"POST /fast/api/v3/order HTTP/1.1\r\nHost: {u.netloc}\r\n"
                   f"X-MBX-APIKEY: {bots['fast']['api_key']}\r\n"
                   f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nsym").encode())
        started = time.monotonic()
        # meanwhile another bot is served at once
        q = hmac_sign(bots["fast"]["secret"], f"timestamp={now_ms()}")
        assert call(bots["fast"]["base_url"], "GET", "/api/v3/account", q,
                    headers={"X-MBX-APIKEY": bots["fast"]["api_key"]}).status == 200
        answer = s.recv(4096)
        assert b"request_timeout" in answer and answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4


def test_an_order_never_sent_holds_no_place_and_says_so(slow_stack) -> None:  # type: ignore[no-untyped-def]
    """An upstream that refuses the connection received nothing: the order is not counted on its way (it held a
    place for 60 s) and the bot is told it may retry."""
    dev, _, _ = slow_stack
    capped = dev.add_bot("dead-capped", "dead", "read,trade", "--set", "max_open_orders=1")
    for _ in range(2):
        body, headers = order(capped)
        ans = call(capped["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
        assert (ans.status, ans.body["error"]) == (502, "upstream_error"), ans.body
        assert "nothing was sent: safe to retry" in ans.body["message"]


def test_an_order_of_unknown_fate_keeps_its_place_past_a_restart(slow_stack) -> None:  # type: ignore[no-untyped-def]
    """Session 35's review: an order whose answer never came (the exchange too slow) counted on its way for
    IN_FLIGHT_S, in memory, then nowhere: it may rest, and a capped bot placed past max_open_orders. It is learned as
    an answer keyproxy could not read (open, in state.db), as a listing would set right, and a restart keeps it."""
    dev, _, _ = slow_stack
    capped = dev.add_bot("slow-capped", "slow", "read,trade", "--set", "max_open_orders=1")
    body, headers = order(capped)
    ans = call(capped["base_url"], "POST", "/api/v3/order", body=body, headers=headers)
    assert (ans.status, ans.body["error"]) == (504, "upstream_timeout")
    dev.stop_daemon()
    dev.start_daemon()  # on a port of its own
    body, headers = order(capped)
    ans = call(f"{dev.proxy_url}/slow", "POST", "/api/v3/order", body=body, headers=headers)
    assert (ans.status, ans.body["error"]) == (403, "open_orders_exceeded"), ans.body


def test_sigterm_lets_the_request_in_flight_finish(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, bots, info = slow_stack
    # 1 s upstream: within the 1.5 s upstream timeout, so it completes during shutdown
    slow = subprocess.Popen([sys.executable, str(Path(__file__).with_name("slow_upstream.py")), "1"],
                            stdout=subprocess.PIPE, text=True, env=dev.env)
    try:
        url = slow.stdout.readline().split()[-1]  # type: ignore[union-attr]
        dev.cli("key", "add", "onesec", "--exchange", "binance", "--base-url", url, "--insecure-upstream",
                input=json.dumps(new_real_key().credentials))
        creds = dev.add_bot("bot-onesec", "onesec", "read")
        q = hmac_sign(creds["secret"], f"timestamp={now_ms()}")
        result = {}
        t = threading.Thread(target=lambda: result.update(ans=call(creds["base_url"], "GET", "/api/v3/account", q,
                                                                    headers={"X-MBX-APIKEY": creds["api_key"]})))
        t.start()
        time.sleep(0.4)
        assert dev.stop_daemon(signal.SIGTERM) == 0
        t.join(10)
        assert result["ans"].status == 200 and result["ans"].body == {"slow": True}
    finally:
        slow.kill()
        slow.wait()
        dev.start_daemon()  # leave the module's daemon running for any later test


def test_refuses_a_non_loopback_listener(slow_stack) -> None:  # type: ignore[no-untyped-def]
    dev, _, _ = slow_stack
    out = dev.cli("serve", "--host", "0.0.0.0", "--port", "0", check=False)
    assert out.returncode == 2 and "not a loopback address" in out.stderr


async def test_a_bot_that_does_not_read_its_answer_loses_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 35's review: a REST answer was written to the bot while the exchange's connection was held, with no
    deadline; now it is written after the connection is back in the pool, each write within BOT_SEND_S, and a bot
    that does not take it has its connection aborted (as its WebSocket would)."""
    import asyncio
    from types import SimpleNamespace

    from keyproxy.proxy import pipeline

    monkeypatch.setattr(pipeline, "BOT_SEND_S", 0.2)
    aborted: list[bool] = []
    request = SimpleNamespace(transport=SimpleNamespace(abort=lambda: aborted.append(True)))
    started = time.monotonic()
    with pytest.raises(ConnectionResetError, match="did not read its answer"):
        await pipeline._within(request, asyncio.sleep(3600), SimpleNamespace(request_id="r1"))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2 and aborted == [True]



async def test_a_bot_gone_before_its_answer_is_written_is_no_exchange_failure() -> None:
    """Session 36's regression review: a write to a bot that closed its connection raised aiohttp's
    ClientConnectionResetError, an aiohttp.ClientError, which the forwarding took for the exchange's failure and
    learned the answer again as one of unknown fate. It is the bot's (BotNotReading)."""
    import aiohttp

    from keyproxy.proxy import pipeline
    from types import SimpleNamespace

    async def closed() -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    with pytest.raises(pipeline.BotNotReading, match="closed its connection") as gone:
        await pipeline._within(SimpleNamespace(transport=None), closed(), SimpleNamespace(request_id="r1"))  # type: ignore[arg-type]
    assert not isinstance(gone.value, aiohttp.ClientError)
