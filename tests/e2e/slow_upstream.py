"""A stand-in exchange that answers every request after DELAY seconds (for timeout and shutdown tests); with a
second argument, an answer of that many bytes (for bots that do not read their answers)."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(float(sys.argv[1]))
    if len(sys.argv) > 2:
        return web.json_response({"slow": True, "pad": "x" * int(sys.argv[2])})
    return web.json_response({"slow": True})


async def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"slow upstream on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
