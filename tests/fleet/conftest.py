"""A real redis-server per module for the fleet's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyproxy.config import SharedStateSettings
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared(redis_server: RedisServer) -> SharedStateSettings:
    redis_server.client().flushall()
    return SharedStateSettings(url=redis_server.url, password_file=redis_server.root / "password", timeout=1.0)
