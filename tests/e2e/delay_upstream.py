"""A pass-through in front of the emulator that answers one path after a delay (an exchange slow to answer a
request that holds the account's nonce turn). Runs on its own thread and loop, in the test's process."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web


def start(target: str, slow: str, delay: float) -> str:
    """The pass-through's base URL: requests whose path contains `slow` are answered `delay` seconds late."""
    ready: dict[str, str] = {}
    up = threading.Event()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if slow in request.path:
            await asyncio.sleep(delay)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(request.method, target + request.path_qs, data=body or None,
                                       headers=headers) as answer:
                data = await answer.read()
                relayed = {k: v for k, v in answer.headers.items() if k.lower() not in
                           ("content-length", "transfer-encoding", "content-encoding", "connection")}
                return web.Response(status=answer.status, body=data, headers=relayed)

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        ready["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        up.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    if not up.wait(10):
        raise RuntimeError("the delaying pass-through did not start")
    return ready["url"]
