"""Sockets held open take nothing from REST (session 24's review): a handshake to a private WebSocket path carries
no credential and opens the exchange's socket, and 100 of them held silent used to take every upstream connection
REST shares, so every bot's REST request waited 10 s for a 504. WebSockets have an upstream pool of their own.
Real daemon and emulator (Binance's /ws-api/v3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from keyproxy.emulator.devstack import DevStack
from keyproxy.proxy.upstream import OWN_LIMIT, UpstreamClients
from tests.e2e.test_websocket_binance import ws_url
from tests.e2e.wsstack import exchange_stack

HELD = 110  # more than REST's pool holds (100)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with exchange_stack(tmp_path_factory.mktemp("ws-limits"), "main") as stack:
        yield stack


async def test_silent_sockets_leave_rest_its_connections(dev: DevStack) -> None:
    creds = dev.add_bot("ws-silent", "main", "read")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        held = [await session.ws_connect(ws_url(creds)) for _ in range(HELD)]
        try:
            started = time.monotonic()
            async with session.get(f"{creds['base_url']}/api/v3/time") as r:
                assert r.status == 200
            assert time.monotonic() - started < 2
        finally:
            await asyncio.gather(*(ws.close() for ws in held))


async def test_websockets_have_an_upstream_pool_of_their_own() -> None:
    clients = UpstreamClients()
    try:
        for loopback in (False, True):
            ws, rest = clients.ws_session(loopback), clients.session(loopback)
            assert ws is not rest and ws.connector is not rest.connector
            assert ws.connector.limit == 0 and rest.connector.limit == 100  # type: ignore[union-attr]
            # keyproxy's own safety calls (a halt's cancels, the dead man's switch): a pool of their own too, so bots
            # holding all of theirs never hold these up (session 36's review)
            own = clients.session(loopback, own=True)
            assert own.connector is not rest.connector and own.connector is not ws.connector
            assert own.connector.limit == OWN_LIMIT  # type: ignore[union-attr]
    finally:
        await clients.close()



async def test_a_bot_that_stops_reading_its_socket_loses_it_and_the_exchange_is_read_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Session 25's review (high): the loop that reads the exchange's socket also writes each frame to the bot, so a
    bot that stopped reading (its buffers full of answers it asked for) held that loop: the answers to its orders
    went unread and unlearned, and once their 60 s on their way ran out it placed past max_open_orders (6 resting
    at a cap of 3; /tmp/review25f/poc_stall.py). A frame the bot does not take within BOT_SEND_S ends its socket
    (the transport aborted: a close frame would wait on the same full buffer) and the loop reads on."""
    from types import SimpleNamespace

    from keyproxy.proxy import ws_connection

    monkeypatch.setattr(ws_connection, "BOT_SEND_S", 0.2)

    class Stalled:  # a bot socket whose buffers are full: a write never completes
        async def send_str(self, text: str) -> None:
            await asyncio.sleep(3600)

    aborted: list[bool] = []
    conn = SimpleNamespace(bot_gone=False, closing=None, bot_ws=Stalled(), account="main", bots={"staller"},
                           transport=SimpleNamespace(abort=lambda: aborted.append(True)))
    started = time.monotonic()
    await ws_connection.Connection._to_bot(conn, '{"id": 1}')  # type: ignore[arg-type]
    assert time.monotonic() - started < 2 and conn.bot_gone and aborted == [True]
    assert conn.closing == "keyproxy: the bot stopped reading its socket"
    await ws_connection.Connection._to_bot(conn, '{"id": 2}')  # type: ignore[arg-type]  # gone: nothing more is sent
    assert aborted == [True]


@pytest.mark.parametrize("order, waited", [(True, True), (False, False)])
async def test_an_orders_answer_is_read_after_the_bot_left_for_as_long_as_it_may_come(
        monkeypatch: pytest.MonkeyPatch, order: bool, waited: bool) -> None:
    """Session 36's review: once the bot left, the exchange's answers were read for DRAIN_S only; a bot queueing slow
    answers ahead of its order and closing its socket left the order's answer unread (counted IN_FLIGHT_S, then
    no one's). While an order is still to be answered the reading goes on up to IN_FLIGHT_S; other frames' answers
    are read for DRAIN_S."""
    from types import SimpleNamespace

    from keyproxy.proxy import ws_connection

    monkeypatch.setattr(ws_connection, "DRAIN_S", 0.2)
    monkeypatch.setattr(ws_connection, "IN_FLIGHT_S", 5.0)
    pending = {1: SimpleNamespace(outcome=SimpleNamespace(placed_by=("bot", None) if order else None))}

    async def exchange() -> None:  # the answer comes after DRAIN_S
        await asyncio.sleep(1.0)
        pending.clear()
        await asyncio.sleep(3600)

    conn = SimpleNamespace(pending=pending, bot_gone=False, edge=SimpleNamespace(stopping=False))
    reading = asyncio.create_task(exchange())
    started = time.monotonic()
    try:
        await ws_connection.Connection._drain(conn, reading)  # type: ignore[arg-type]
    finally:
        reading.cancel()
    took = time.monotonic() - started
    assert conn.bot_gone and (not pending) is waited
    assert (0.9 < took < 2) if waited else took < 0.6
