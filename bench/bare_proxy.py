"""A featureless re-signing proxy: the reference keyproxy's request path is measured against (issue 24).

Never part of the package. Binance's HMAC only: a request to `/<anything>/<path>` has its `signature`
parameter (query or form body) replaced by the real key's HMAC-SHA256 over the rest, its `X-MBX-APIKEY`
set to the real key, and goes to `--upstream` over one pooled keep-alive session; the answer is relayed
as it came. A WebSocket upgrade is relayed to the same path upstream, each frame's `apiKey` and `signature`
(Binance's WebSocket API) swapped for the real key's. No verification, policy, audit, metrics, logging or
limits: what aiohttp itself costs for a proxy that re-signs. Same server flavour as keyproxy (aiohttp's
low-level server).

With `--floor DIR` it is the *floor proxy*: the bare proxy plus the least work keyproxy's guarantees need,
each done the cheapest way (for REST orders): the bot's HMAC and timestamp checked (constant time), one
token bucket, one audit line (orjson, HMAC-chained, `os.write` to an append-only file) before the request is
forwarded, the answer parsed and its order id committed to SQLite (WAL, synchronous=NORMAL, one transaction)
before it is relayed, and one audit line for the answer after. No adapters, no policy model, no metrics, no
anomaly rules, no positions book: what the guarantees themselves cost in one Python process. keyproxy's
cost above the floor is its own; the floor's above the bare proxy, the price of the guarantees on this machine.

Run: python bench/bare_proxy.py --upstream http://127.0.0.1:PORT --key-file FILE [--floor DIR]
FILE holds the real API key and its secret, then (for --floor) the bot's virtual key and secret, a line each
(never argv). Prints `listening http://...` once it serves; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL


def resign(payload: bytes, secret: bytes) -> bytes:
    """`a=1&b=2&signature=x` -> `a=1&b=2&signature=<HMAC of a=1&b=2>`; no signature: returned as it is."""
    head, sep, _ = payload.partition(b"&signature=")
    if not sep:
        return payload
    return head + b"&signature=" + hmac.new(secret, head, hashlib.sha256).hexdigest().encode()


class Floor:
    """The guarantees' least work: verify, one bucket, an audit line before forwarding, the order id committed
    before relaying, an audit line after."""

    def __init__(self, directory: Path, bot_key: str, bot_secret: bytes) -> None:
        import orjson

        self._dumps = lambda doc: orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        self._loads = orjson.loads
        self.bot_key, self._bot_secret = bot_key, bot_secret
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(directory / "audit.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._mac = hmac.new(os.urandom(32), digestmod=hashlib.sha256)
        self._seq, self._prev = 0, "0" * 64
        self._db = sqlite3.connect(directory / "state.db", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS placed (order_id TEXT PRIMARY KEY, bot TEXT NOT NULL, "
                         "ts REAL NOT NULL) WITHOUT ROWID")
        self._tokens, self._filled = 1e9, time.monotonic()

    def verify(self, payload: bytes) -> bool:
        """The bot's HMAC over the request without its signature, compared in constant time; a fresh timestamp;
        one token taken."""
        head, sep, signature = payload.partition(b"&signature=")
        if not sep or not hmac.compare_digest(hmac.new(self._bot_secret, head, hashlib.sha256).hexdigest().encode(),
                                              signature):
            return False
        stamp = head.partition(b"timestamp=")[2].partition(b"&")[0]
        if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 5000:
            return False
        now = time.monotonic()
        self._tokens = min(1e9, self._tokens + (now - self._filled) * 1e6) - 1
        self._filled = now
        return self._tokens >= 0

    def audit(self, event: str, **fields: object) -> None:
        """One HMAC-chained line, written to the OS (what keyproxy's default `fsync = "interval"` does per line)."""
        self._seq += 1
        line = {**fields, "event": event, "seq": self._seq, "ts": round(time.time(), 6), "prev": self._prev}
        keyed = self._mac.copy()
        keyed.update(self._dumps(line))
        line["mac"] = keyed.hexdigest()
        data = self._dumps(line) + b"\n"
        if os.write(self._fd, data) != len(data):
            raise OSError("short write")
        self._prev = hashlib.sha256(data[:-1]).hexdigest()

    def record(self, answer: bytes) -> None:
        """The order id the exchange gave, committed before the bot hears of it."""
        doc = self._loads(answer) if answer else None
        if isinstance(doc, dict) and "orderId" in doc:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO placed VALUES (?, ?, ?)",
                                 (str(doc["orderId"]), self.bot_key[:8], time.time()))


async def serve(upstream: str, api_key: str, secret: bytes, floor: Floor | None = None) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(),
                                    auto_decompress=False)

    async def relay_ws(request: web.BaseRequest, path: str) -> web.StreamResponse:
        """Binance's WebSocket API: each frame's `apiKey` and `signature` swapped for the real key's, answers
        relayed as they come (what aiohttp costs for a WebSocket relay that re-signs)."""
        bot = web.WebSocketResponse(max_msg_size=0)
        await bot.prepare(request)
        async with session.ws_connect(f"{upstream.replace('http', 'ws', 1)}/{path}", max_msg_size=0) as up:
            async def answers() -> None:
                async for msg in up:
                    await bot.send_str(msg.data)

            relay = asyncio.create_task(answers())
            async for msg in bot:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                params = frame.get("params")
                if isinstance(params, dict) and "signature" in params:
                    params = {k: v for k, v in params.items() if k != "signature"}
                    params["apiKey"] = api_key
                    text = "&".join(f"{k}={v}" for k, v in sorted(params.items())).encode()
                    params["signature"] = hmac.new(secret, text, hashlib.sha256).hexdigest()
                    frame["params"] = params
                await up.send_str(json.dumps(frame))
            relay.cancel()
        return bot

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        _, _, rest = request.raw_path.lstrip("/").partition("/")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await relay_ws(request, rest)
        path, _, query = rest.partition("?")
        body = await request.read()
        request_id = ""
        if floor is not None:
            if request.headers.get("X-MBX-APIKEY") != floor.bot_key or not floor.verify(body or query.encode()):
                return web.Response(status=401, body=b'{"code":-1022,"msg":"bad signature"}')
            request_id = uuid.uuid4().hex[:16]
            floor.audit("request.sent", request_id=request_id, bot=floor.bot_key[:8], method=request.method,
                        path=path)
        query_b = resign(query.encode(), secret) if query else b""
        headers = {"X-MBX-APIKEY": api_key}
        if body:
            headers["Content-Type"] = request.headers.get("Content-Type", "application/x-www-form-urlencoded")
        url = URL(f"{upstream}/{path}" + (f"?{query_b.decode()}" if query_b else ""), encoded=True)
        async with session.request(request.method, url, data=resign(body, secret) if body else None,
                                   headers=headers, allow_redirects=False) as resp:
            answer = await resp.read()
            if floor is not None:
                floor.record(answer)
            relayed = web.Response(status=resp.status, body=answer,
                                   headers={"Content-Type": resp.headers.get("Content-Type", "application/json")})
        if floor is not None:  # after the answer is on its way, as keyproxy's request.done line
            await relayed.prepare(request)
            await relayed.write_eof()
            floor.audit("request.done", request_id=request_id, status=resp.status)
        return relayed

    server = web.Server(handle, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await session.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--key-file", required=True, type=Path)
    ap.add_argument("--floor", type=Path, help="be the floor proxy, its audit file and state.db in this directory")
    args = ap.parse_args()
    lines = [line.strip() for line in args.key_file.read_text().split("\n")]
    floor = Floor(args.floor, lines[2], lines[3].encode()) if args.floor else None
    asyncio.run(serve(args.upstream.rstrip("/"), lines[0], lines[1].encode(), floor))


if __name__ == "__main__":
    main()
