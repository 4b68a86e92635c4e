"""The hostile battery (shared by tests/e2e/test_hostile.py at CI size and bench/hostile.py at full size).

Every part runs against real processes on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from keyproxy.emulator.devstack import DevStack

CANARY = "KPCANARYhostile0123456789"
PUBLIC_PATHS = {"/api/v3/time"}  # the only path of the battery's requests that needs no key


def _valid(host: str, i: int) -> bytes:
    return (f"GET /main/api/v3/account?timestamp={i}&signature=00 HTTP/1.1\r\nHost: {host}\r\n"
            f"X-MBX-APIKEY: {CANARY}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").encode()


SHAPES = [
    lambda h, r: b"GET /main/api/v3/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                          # CL + TE smuggling
    lambda h, r: b"POST /main/api/v3/order HTTP/1.1\r\nHost: " + h.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5;ext=\n\r\nhello\r\n0\r\n\r\n",                                      # chunk extension newline
    lambda h, r: b"GET /main/api/v3/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\nHost: evil\r\n\r\n",  # two Hosts
    lambda h, r: b"GET http://evil/main/api/v3/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\n\r\n",    # absolute form
    lambda h, r: b"GET /main/api/v3/%2e%2e/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\n\r\n",
    lambda h, r: b"GET /main/api/v3/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\nX: " + b"A" * 20000 + b"\r\n\r\n",
    lambda h, r: b"GET /main/\xff\xfe/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\n\r\n",          # non-UTF-8
    lambda h, r: bytes(r.getrandbits(8) for _ in range(r.randint(1, 400))),                       # noise
    lambda h, r: b"GET /main/api/v3/time HTTP/1.1\r\nHost: " + h.encode() + b"\r\nAuthorization: Bearer "
                 + CANARY.encode() + b"\x01\r\n\r\n",                                          # bad header char
    lambda h, r: b"CONNECT api.binance.com:443 HTTP/1.1\r\nHost: api.binance.com\r\n\r\n",
]


def _mutate(data: bytes, r: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(r.randint(1, 6)):
        i = r.randrange(len(data))
        op = r.random()
        if op < 0.4:
            data[i] = r.getrandbits(8)
        elif op < 0.7:
            del data[i]
        else:
            data[i:i] = bytes([r.choice(b"\r\n\x00: %/.?&=\xff")])
    return bytes(data)


@dataclass
class MalformedResult:
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)  # keyproxy's `error` codes in the answers
    reached_exchange: int = 0
    echoed_canary: int = 0
    hangs: int = 0
    tracebacks: int = 0
    daemon_alive: bool = True

    def count(self, answer: bytes | None) -> None:
        if answer is None:
            self.hangs += 1
            return
        self.sent += 1
        status = status_of(answer)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        try:
            code = str(json.loads(answer.partition(b"\r\n\r\n")[2]).get("error"))
        except (ValueError, AttributeError):
            code = "none"
        self.codes[code] = self.codes.get(code, 0) + 1
        if CANARY.encode() in answer:
            self.echoed_canary += 1


def malformed(dev: DevStack, count: int, seed: int = 7) -> MalformedResult:
    """Send `count` malformed, oversized, smuggling-shaped and non-UTF-8 requests over raw sockets."""
    r = random.Random(seed)
    u = urllib.parse.urlsplit(dev.proxy_url)
    host = u.netloc
    out = MalformedResult()
    start = len(dev.journal())
    for i in range(count):
        data = SHAPES[i % len(SHAPES)](host, r) if i % 2 == 0 else _mutate(_valid(host, i), r)
        out.count(exchange_raw(u.hostname or "127.0.0.1", u.port or 80, data))
    # requests that parse fully and carry a fake key are refused before upstream; only public time may pass
    return _finish(dev, out, start)


def exchange_raw(host: str, port: int, data: bytes) -> bytes | None:
    """Send `data` on a new connection and read until the server closes; None: it hung."""
    answer = b""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(data)
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except TimeoutError:
                # an incomplete request: the server rightly waits for more; say we are done
                s.shutdown(socket.SHUT_WR)
                s.settimeout(5)
                while chunk := s.recv(65536):
                    answer += chunk
    except TimeoutError:
        return None  # neither an answer nor a close after we finished sending
    except OSError:
        pass  # the server closed on us: fine
    return answer


def status_of(answer: bytes) -> str:
    """The answer's status code; "closed": the connection closed without one."""
    if not answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        return "closed"
    return answer.split(b" ", 2)[1].decode(errors="replace")


def _finish(dev: DevStack, out: MalformedResult, start: int) -> MalformedResult:
    out.reached_exchange = len([e for e in dev.journal()[start:] if e["path"] not in PUBLIC_PATHS])
    log = dev.daemon_log()
    out.tracebacks = log.count("Traceback")
    out.echoed_canary += log.count(CANARY)
    out.daemon_alive = dev.daemon().poll() is None
    return out


@dataclass
class KillResult:
    kills: int = 0
    vault_opened: int = 0
    lost_bots: int = 0
    audit_ok: int = 0
    audit_problems: list[str] = field(default_factory=list)


def kill_nine(dev: DevStack, kills: int, seed: int = 11) -> KillResult:
    """kill -9 the daemon at random moments under traffic and admin writes; each time the vault opens,
    every acknowledged bot is there, and the audit chain verifies up to its last complete line."""
    import threading

    from tests.e2e.conftest import call, hmac_sign

    r = random.Random(seed)
    out = KillResult()
    acknowledged: list[str] = []
    port = int(dev.proxy_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
    for k in range(kills):  # the daemon is running at the top of each round
        stop = threading.Event()
        bot = dev.add_bot(f"k{k}", "main", "read")
        acknowledged.append(f"k{k}")

        def traffic() -> None:
            while not stop.is_set():
                try:
                    q = hmac_sign(bot["secret"], f"timestamp={time.time_ns() // 1000}")
                    call(bot["base_url"], "GET", "/api/v3/account", q, headers={"X-MBX-APIKEY": bot["api_key"]})
                except OSError:
                    return

        worker = threading.Thread(target=traffic)
        worker.start()
        time.sleep(r.uniform(0.05, 0.4))
        os.kill(dev.daemon().pid, signal.SIGKILL)
        dev.daemon().wait(10)
        stop.set()
        worker.join(10)
        dev._procs.pop("daemon")  # noqa: SLF001 - the harness owns its processes
        out.kills += 1
        bots = {b["name"] for b in json.loads(dev.cli("bot", "list", "--json").stdout)}
        out.vault_opened += 1
        out.lost_bots += len([b for b in acknowledged if b not in bots])
        verify = dev.cli("audit", "verify", "--json", check=False)
        result: Any = (json.loads(verify.stdout) if verify.stdout.startswith("{")
                       else {"ok": False, "problem": verify.stderr})
        if result["ok"] or "truncated tail" in str(result.get("problem")):
            out.audit_ok += 1  # a torn last line is expected after kill -9; it is cut on the next start
        else:
            out.audit_problems.append(str(result.get("problem")))
        dev.start_daemon(port)
    return out
