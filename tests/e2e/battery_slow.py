"""The slow-clients part of the hostile battery: many connections dribbling headers or bodies at the
listener while an honest bot trades (tests/e2e/test_hostile.py at CI size, bench/hostile.py at full size).

Every slow connection must be cut by keyproxy itself, by `proxy.header_timeout` (headers never
finished) or `proxy.body_timeout` (408 `request_timeout`), and the honest bot must be served
meanwhile at about its usual latency.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from keyproxy.emulator.devstack import DevStack
from tests.e2e.conftest import call, hmac_sign

DRIP_INTERVAL = 0.5  # one byte this often: never idle long enough for a per-read timeout to fire


@dataclass
class SlowResult:
    connections: int = 0
    cut: int = 0  # closed (or answered) by keyproxy before the harness gave up
    answered_408: int = 0  # slow bodies answered `request_timeout`
    never_cut: int = 0  # still open when the harness gave up: a deadline not enforced
    headers_cut_after: float = 0.0  # seconds from connecting to keyproxy's cut, slowest dribbled headers
    body_cut_after: float = 0.0  # the same, slowest dribbled body
    honest_before_ms: list[float] = field(default_factory=list)
    honest_during_ms: list[float] = field(default_factory=list)
    honest_failed: int = 0

    @staticmethod
    def percentile(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


async def _dribble(host: str, port: int, head: bytes, drip: bytes, give_up: float) -> tuple[float | None, bytes]:
    """Send `head`, then `drip` a byte at a time; the seconds until the server closed (None: never)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection(host, port)
    answer, i = b"", 0
    try:
        writer.write(head)
        while loop.time() - started < give_up:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), DRIP_INTERVAL)
            except TimeoutError:
                writer.write(drip[i % len(drip):i % len(drip) + 1])
                i += 1
                await writer.drain()
                continue
            if not chunk:
                return loop.time() - started, answer
            answer += chunk
    except (ConnectionError, OSError):
        return loop.time() - started, answer
    finally:
        writer.close()
    return None, answer


async def _attack(dev: DevStack, body_key: str, count: int, give_up: float,
                  connected: threading.Event) -> list[tuple[float | None, bytes]]:
    u = urllib.parse.urlsplit(dev.proxy_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    slow_head = f"GET /main/api/v3/time HTTP/1.1\r\nHost: {u.netloc}\r\n".encode()
    slow_body = (f"POST /main/api/v3/order HTTP/1.1\r\nHost: {u.netloc}\r\nX-MBX-APIKEY: {body_key}\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\n").encode()
    tasks = [asyncio.create_task(_dribble(host, port, slow_head if i % 2 == 0 else slow_body,
                                          b"X-Slow: 1\r\n" if i % 2 == 0 else b"a", give_up)) for i in range(count)]
    await asyncio.sleep(0.5)  # every connection opened and its first bytes sent
    connected.set()
    return await asyncio.gather(*tasks)


_last_ms = [0]


def _honest_call(bot: dict[str, Any]) -> float | None:
    """One signed balance read. Each in its own millisecond: two in one would be the same signed request, and
    keyproxy refuses the second as a replay (SECURITY.md); an answer can come back in under a millisecond."""
    while (now_ms := time.time_ns() // 1_000_000) <= _last_ms[0]:
        time.sleep(0.0002)
    _last_ms[0] = now_ms
    started = time.perf_counter()
    q = hmac_sign(bot["secret"], f"timestamp={now_ms}")
    ok = call(bot["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": bot["api_key"]}).status == 200
    return (time.perf_counter() - started) * 1000 if ok else None


def slow_clients(dev: DevStack, bot: dict[str, Any], body_key: str, count: int, header_timeout: float,
                 body_timeout: float) -> SlowResult:
    """`count` slow connections (half dribbling headers, half a body signed for `body_key`) while `bot`
    keeps asking for its balance; first, as long as the attack will last, its calls unhindered."""
    give_up = header_timeout + body_timeout + 10
    out = SlowResult(connections=count)
    deadline = time.monotonic() + max(header_timeout, body_timeout)
    while time.monotonic() < deadline:  # baseline, as long as the attack will last
        ms = _honest_call(bot)
        if ms is None:
            out.honest_failed += 1
        else:
            out.honest_before_ms.append(ms)
    connected, results = threading.Event(), []
    attacker = threading.Thread(target=lambda: results.extend(asyncio.run(
        _attack(dev, body_key, count, give_up, connected))))
    attacker.start()
    connected.wait(30)
    while attacker.is_alive():
        ms = _honest_call(bot)
        if ms is None:
            out.honest_failed += 1
        else:
            out.honest_during_ms.append(ms)
    attacker.join()
    for i, (seconds, answer) in enumerate(results):
        if seconds is None:
            out.never_cut += 1
            continue
        out.cut += 1
        if i % 2 == 0:
            out.headers_cut_after = max(out.headers_cut_after, seconds)
        else:
            out.body_cut_after = max(out.body_cut_after, seconds)
        out.answered_408 += answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    return out
