"""A stand-in exchange whose every answer is a gzip bomb: a small body that inflates to MB megabytes."""

from __future__ import annotations

import asyncio
import sys
import zlib

from aiohttp import web


def bomb(megabytes: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = b"\0" * (1 << 20)
    return b"".join(z.compress(block) for _ in range(megabytes)) + z.flush()


async def main() -> None:
    body = bomb(int(sys.argv[1]))

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"gzip upstream on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
