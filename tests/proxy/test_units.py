"""Pure parts of the proxy: target splitting, replay cache, address filters, the no-retry guard."""

from __future__ import annotations

import aiohttp
import pytest

from keyproxy.proxy import server
from keyproxy.proxy.pipeline import split_target
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.replay import ReplayCache
from keyproxy.proxy.upstream import FilteringResolver, UpstreamClients, is_loopback_address, is_public_address


@pytest.mark.parametrize("target, expected", [
    ("/main/api/v3/order", ("main", "/api/v3/order", "")),
    ("/main/api/v3/order?symbol=BTCUSDT&x=%20", ("main", "/api/v3/order", "symbol=BTCUSDT&x=%20")),
    ("/main/sapi/v1/capital/config/getall?timestamp=1", ("main", "/sapi/v1/capital/config/getall", "timestamp=1")),
])
def test_split_target(target: str, expected: tuple[str, str, str]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", [
    "http://evil/main/api", "main/api", "/main", "/main/", "/main//evil", "/main/./api", "/main/../x/api",
    "/main/api%2Fv3", "/main/api%5cv3", "/main/%2e%2e/api", "/main/api\\v3", "/main/a@evil/api",
    "/main/api/v3/order%00", "/main/api/v3/ord\u00e9r", "/main/api/v3/order?x=\x7f",
])
def test_split_target_refuses(target: str) -> None:
    with pytest.raises(Refused) as e:
        split_target(target)
    assert e.value.code == "bad_request"


def test_a_websocket_may_name_the_exchange_root() -> None:
    """Coinbase's WebSocket lives at its host's root: `/<account>` alone is `/` on an upgrade only."""
    assert split_target("/cb", stream_names=True) == ("cb", "/", "")
    assert split_target("/cb/user", stream_names=True) == ("cb", "/user", "")
    for target in ("/", "/..", "/.", "/cb/", "/cb//x", "/c\u00e9"):
        with pytest.raises(Refused):
            split_target(target, stream_names=True)


def test_replay_cache() -> None:
    cache = ReplayCache(max_entries=3)
    assert cache.first_sighting("a", expires_ms=100, now_ms=0) is True
    assert cache.first_sighting("a", expires_ms=100, now_ms=50) is False
    assert cache.first_sighting("a", expires_ms=300, now_ms=200) is True  # the old one expired
    assert cache.first_sighting("b", 500, 200) and cache.first_sighting("c", 500, 200)
    assert cache.first_sighting("d", 500, 200) is None  # full of live ids: refuse rather than forget
    assert cache.first_sighting("d", 900, 600) is True  # after expiry there is room again


def test_replay_cache_agrees_with_a_plain_model_over_random_sightings() -> None:
    """Expired ids leave by a heap, a few per sighting: the answers and the size must be what remembering every
    id until its expiry gives, including ids seen again after they expired."""
    import random

    rng = random.Random(7)
    cache, model = ReplayCache(max_entries=50), {}  # type: ignore[var-annotated]
    now = 0
    for _ in range(20_000):
        now += rng.randint(0, 3)
        rid, expires = f"r{rng.randint(0, 80)}", now + rng.choice((5, 50, 200))
        live = {k: v for k, v in model.items() if v >= now}
        if rid in live:
            want: bool | None = False
        elif len({k for k, v in live.items() if v >= now}) >= 50:
            want = None
        else:
            want = True
            live[rid] = expires
        model = live
        assert cache.first_sighting(rid, expires, now) is want
        assert len(cache) == len(model)


# smokescreen's corpus (stripe/smokescreen pkg/smokescreen/smokescreen_test.go) plus our own
@pytest.mark.parametrize("address, public", [
    ("169.254.169.254", False), ("127.255.255.255", False), ("::1", False), ("ff02::2", False),
    ("255.255.255.255", False), ("100.64.0.1", False), ("100.127.255.254", False), ("10.0.0.1", False),
    ("192.168.1.1", False), ("172.16.0.1", False), ("0.0.0.0", False), ("::ffff:127.0.0.1", False),
    ("64:ff9b::a00:1", False), ("2002:a00:1::1", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("fe80::1", False), ("fc00::1", False), ("not-an-ip", False),
    ("100.63.255.254", True), ("100.128.0.1", True), ("52.84.150.34", True), ("2606:4700::6810:84e5", True),
])
def test_public_address_filter(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_loopback_filter() -> None:
    assert is_loopback_address("127.0.0.1") and is_loopback_address("::1")
    assert not is_loopback_address("10.0.0.1") and not is_loopback_address("x")


async def test_resolver_refuses_names_that_resolve_inward() -> None:
    resolver = FilteringResolver(is_public_address)
    with pytest.raises(OSError, match="no permitted address"):
        await resolver.resolve("localhost", 443)
    await resolver.close()


async def test_sessions_never_retry_a_request() -> None:
    """aiohttp retries DELETE/PUT once on a dropped pooled connection; we switch that off.

    If an aiohttp upgrade renames the private attribute, this fails and the
    switch must be redone, rather than orders being resent silently.
    """
    assert "_retry_connection" in aiohttp.ClientSession.ATTRS
    clients = UpstreamClients()
    try:
        assert clients.public._retry_connection is False  # type: ignore[attr-defined]
        assert clients.loopback._retry_connection is False  # type: ignore[attr-defined]
    finally:
        await clients.close()


def test_c_parser_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    server.assert_c_parser()
    from aiohttp import http_parser

    monkeypatch.setattr(http_parser, "HttpRequestParser", http_parser.HttpRequestParserPy)
    with pytest.raises(RuntimeError, match="C HTTP parser"):
        server.assert_c_parser()


def test_allowed_hosts() -> None:
    assert server.allowed_hosts("127.0.0.1", 8750) == frozenset({"127.0.0.1:8750", "localhost:8750", "[::1]:8750"})
    assert server.allowed_hosts("10.1.2.3", 9000) == frozenset({"10.1.2.3:9000"})
