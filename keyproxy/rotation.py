"""Staged key rotation: check a new real key with a read call at the exchange, then switch.

The switch itself is one vault transaction (the new version becomes active,
the old one stays as the previous version for `key rollback`); the daemon
then swaps its registry snapshot whole, so a request in flight finishes with
the key it started with and the next one uses the new key.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from keyproxy.exchanges.base import IncomingRequest, RealKey, SignContext, Upstream
from keyproxy.proxy.upstream import UpstreamClients


async def verify_key(adapter: Any, upstream: Upstream, key: RealKey, clients: UpstreamClients,
                     nonce: int | None = None) -> tuple[bool, str]:
    """(ok, what the exchange answered) for the adapter's read call signed with `key`."""
    method, path, query, body = adapter.verify_request
    endpoint = adapter.classify(method, path)
    origin = upstream.origin_for(path)
    if endpoint is None or origin is None:
        return False, f"{adapter.name} has no verification endpoint in this environment"
    headers = {"content-type": "application/x-www-form-urlencoded"} if method == "POST" else {}
    request = IncomingRequest(method, path, query, headers, body)
    out = adapter.sign(request, key, endpoint, SignContext(origin, upstream.environment.name,
                                                           int(time.time() * 1000), nonce))
    session = clients.session(upstream.insecure_loopback)
    try:
        async with session.request(out.method, out.url, headers=out.headers, data=out.body or None,
                                   allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            answer = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        return False, f"the exchange could not be reached ({type(e).__name__})"
    rejected = adapter.key_rejected(resp.status, answer) if hasattr(adapter, "key_rejected") else False
    text = answer[:200].decode("utf-8", "replace")
    if 200 <= resp.status < 300 and not rejected and b'"error":["E' not in answer.replace(b" ", b""):
        return True, f"HTTP {resp.status}"
    return False, f"HTTP {resp.status}: {text}"
