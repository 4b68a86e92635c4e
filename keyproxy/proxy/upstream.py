"""The only way out: two shared aiohttp sessions that reach exchange hosts and nothing else.

- The public session verifies TLS, never follows redirects, and its resolver
  drops any address that is not global unicast (loopback, private, link-local,
  CGNAT, NAT64/6to4/Teredo embeddings), so a poisoned resolver cannot turn an
  exchange name into an internal address (smokescreen's rule).
- The loopback session serves accounts explicitly configured with a loopback
  emulator (`--insecure-upstream`) and resolves to loopback addresses only.
Neither retries a request: an order sent twice is two orders.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_EMBEDDING_NETS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
                                                           "2001::/32", "100.64.0.0/10"))


def is_public_address(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return False
    if any(ip in net for net in _EMBEDDING_NETS if net.version == ip.version):
        return False
    return ip.is_global and not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


def is_loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class FilteringResolver(AbstractResolver):
    """Resolve with the default resolver, then keep only addresses that pass `accept`."""

    def __init__(self, accept: Any) -> None:
        self._inner = DefaultResolver()
        self._accept = accept

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = [r for r in await self._inner.resolve(host, port, family) if self._accept(r["host"])]
        if not results:
            raise OSError(f"{host} resolves to no permitted address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _no_retry(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    # aiohttp silently retries idempotent methods (DELETE, PUT) once when a pooled
    # connection turns out closed; for an exchange that can mean a second cancel or
    # amend. No public switch exists; tests/proxy/test_upstream.py guards this attribute.
    session._retry_connection = False  # type: ignore[attr-defined]
    return session


# connections of keyproxy's own safety calls, every account's: a halt's sweep sends CANCEL_CONCURRENCY (4) at once per
# account, beside the dead man's switches and reconciliation
OWN_LIMIT = 64


def _rest_pool(limit: int, ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """A REST pool of `limit` connections: public hosts over TLS (`ctx`), or loopback ones (None); never retries."""
    resolver = FilteringResolver(is_public_address if ctx is not None else is_loopback_address)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=limit, resolver=resolver) if ctx is not None else \
        aiohttp.TCPConnector(limit=limit, resolver=resolver)
    return _no_retry(aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False,
                                           cookie_jar=aiohttp.DummyCookieJar()))


class UpstreamClients:
    def __init__(self, *, limit: int = 100) -> None:
        ctx = ssl.create_default_context()
        self.public, self.loopback = _rest_pool(limit, ctx), _rest_pool(limit, None)

        # WebSockets hold their connection for their life: a pool of their own, bounded by the edge's socket caps
        # (SocketLimits), never REST's, so sockets held open cannot leave REST requests waiting for a connection
        # (session 24's review: 100 silent sockets took the shared pool, and REST timed out for every bot)
        self.ws_public = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=0, resolver=FilteringResolver(is_public_address)),
            trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
        self.ws_loopback = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, resolver=FilteringResolver(is_loopback_address)),
            trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

        # keyproxy's own safety calls (a halt's cancels, the dead man's switch, reconciliation): a pool of their own,
        # so bots holding every connection of theirs (a pool's worth of slow reads) never hold these up
        self.own_public, self.own_loopback = _rest_pool(OWN_LIMIT, ctx), _rest_pool(OWN_LIMIT, None)

    def session(self, insecure_loopback: bool, own: bool = False) -> aiohttp.ClientSession:
        """The bots' pool, or (`own`) the one of keyproxy's own safety calls."""
        if own:
            return self.own_loopback if insecure_loopback else self.own_public
        return self.loopback if insecure_loopback else self.public

    def ws_session(self, insecure_loopback: bool) -> aiohttp.ClientSession:
        return self.ws_loopback if insecure_loopback else self.ws_public

    async def close(self) -> None:
        for session in (self.public, self.loopback, self.ws_public, self.ws_loopback, self.own_public,
                        self.own_loopback):
            await session.close()
