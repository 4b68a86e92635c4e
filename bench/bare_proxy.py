"""A featureless re-signing proxy: the reference keyproxy's request path is measured against (issue 24).

Never part of the package. Binance's HMAC only: a request to `/<anything>/<path>` has its `signature`
parameter (query or form body) replaced by the real key's HMAC-SHA256 over the rest, its `X-MBX-APIKEY`
set to the real key, and goes to `--upstream` over one pooled keep-alive session; the answer is relayed
as it came. A WebSocket upgrade is relayed to the same path upstream, each frame's `apiKey` and `signature`
(Binance's WebSocket API) swapped for the real key's. No verification, policy, audit, metrics, logging or
limits: what aiohttp itself costs for a proxy that re-signs. Same server flavour as keyproxy (aiohttp's
low-level server).

Run: python bench/bare_proxy.py --upstream http://127.0.0.1:PORT --key-file FILE
FILE holds two lines, the real API key and its secret (never argv). Prints `listening http://...` once
it serves; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
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


async def serve(upstream: str, api_key: str, secret: bytes) -> None:
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
        query_b = resign(query.encode(), secret) if query else b""
        headers = {"X-MBX-APIKEY": api_key}
        if body:
            headers["Content-Type"] = request.headers.get("Content-Type", "application/x-www-form-urlencoded")
        url = URL(f"{upstream}/{path}" + (f"?{query_b.decode()}" if query_b else ""), encoded=True)
        async with session.request(request.method, url, data=resign(body, secret) if body else None,
                                   headers=headers, allow_redirects=False) as resp:
            answer = await resp.read()
            return web.Response(status=resp.status, body=answer,
                                headers={"Content-Type": resp.headers.get("Content-Type", "application/json")})

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
    args = ap.parse_args()
    api_key, secret = args.key_file.read_text().split("\n")[:2]
    asyncio.run(serve(args.upstream.rstrip("/"), api_key.strip(), secret.strip().encode()))


if __name__ == "__main__":
    main()
