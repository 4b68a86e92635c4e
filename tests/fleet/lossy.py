"""A TCP proxy between a client and Redis that can lose one reply: Redis ran the command, the client never
hears it, and its connection breaks (what a reset after the server's write looks like to the client)."""

from __future__ import annotations

import asyncio
import urllib.parse

from keyproxy.config import SharedStateSettings


class LossyProxy:
    def __init__(self, shared: SharedStateSettings) -> None:
        self.shared = shared
        self.drop = asyncio.Event()  # set: the next reply Redis sends is dropped, and that connection closed
        self.hold = False  # set: Redis's replies are held (a stalled connection), and delivered once it is unset
        self._server: asyncio.Server | None = None

    async def start(self) -> SharedStateSettings:
        """Settings that reach Redis through the proxy."""
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        parts = urllib.parse.urlsplit(self.shared.url)
        return SharedStateSettings(url=parts._replace(netloc=f"{parts.hostname}:{port}").geturl(),
                                   password_file=self.shared.password_file, timeout=self.shared.timeout)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _pipe(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        parts = urllib.parse.urlsplit(self.shared.url)
        redis_r, redis_w = await asyncio.open_connection(parts.hostname, parts.port)

        async def up() -> None:
            while data := await client_r.read(65536):
                redis_w.write(data)
        task = asyncio.create_task(up())
        try:
            while data := await redis_r.read(65536):
                while self.hold:
                    await asyncio.sleep(0.02)
                if self.drop.is_set():  # Redis answered: this reply never reaches the client
                    self.drop.clear()
                    break
                client_w.write(data)
        except asyncio.CancelledError:
            pass  # the test ended with this connection open
        finally:
            task.cancel()
            client_w.close()
            redis_w.close()
