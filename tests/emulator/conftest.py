"""Fixtures for the exchange-emulator tests: real aiohttp servers on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from keyproxy.emulator.accounts import EmulatedKey
from keyproxy.emulator.app import RunningEmulator, build_app, start

Starter = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def emulator_factory() -> AsyncIterator[Starter]:
    """Start emulators on 127.0.0.1:0; all are closed at teardown."""
    running: list[RunningEmulator] = []

    async def _start(
        keys: list[EmulatedKey], clock: Callable[[], float] = time.time, **kw: Any
    ) -> RunningEmulator:
        emu = await start(build_app(keys, clock=clock, **kw))
        running.append(emu)
        return emu

    yield _start
    for emu in running:
        await emu.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
