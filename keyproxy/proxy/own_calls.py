"""keyproxy's own signed calls to an exchange, not a bot's.

`OwnCalls.send` is the one way the daemon makes them with an account's live key (in the account's nonce
order: a Kraken WebSocket token, incident-response cancels, dead-man's switches). `verify_key` checks a new
real key with a read call before `key rotate` switches to it; `audit_key` asks the exchange what a key may do for
`key audit`. Both go out through the proxy's own upstream sessions, so the
same host table, resolver filter and no-retry rule apply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from keyproxy.exchanges.base import BadRequest, IncomingRequest, RealKey, SignContext, Upstream
from keyproxy.exchanges.open_orders import HeldSocketSpec
from keyproxy.proxy.nonce_turn import FOR_BOTS, OWN
from keyproxy.proxy.registry import AccountEntry
from keyproxy.proxy.upstream import UpstreamClients


Seen = Callable[[int, Mapping[str, str], bytes], None]  # an answer's status, headers (case-insensitive) and body


class Sender(Protocol):
    """What sends a listing's calls: `OwnCalls`, or market_data's budget-charged `_Charged`."""

    async def send(self, account: AccountEntry, spec: tuple[str, str, str, bytes]) -> tuple[int, bytes]: ...


# an own call that failed: not sent (the key cannot sign), no answer, or an answer that does not read (a
# sweep's ListingError is a ValueError)
SEND_ERRORS = (aiohttp.ClientError, TimeoutError, ValueError, BadRequest)


class OwnCalls:
    """Signed calls with an account's real key, in the account's nonce order where the exchange needs one."""

    def __init__(self, core: Any, clients: UpstreamClients, safety: bool = False) -> None:
        """`safety`: the calls that keep the limits true and stop trading (a halt's cancels, the dead man's switch,
        reconciliation, a key's revocation): a connection pool of their own and the account's turn before any
        bot's (nonce_turn.OWN). Others (made for a bot's decision: a listing, a reference price, a WebSocket token)
        share the bots' pool and take their turn as one more asker (session 36's review: a bot's requests could
        make such calls jump the queue)."""
        self._core = core
        self._clients = clients
        self._safety = safety

    async def send(self, account: AccountEntry, spec: tuple[str, str, str, bytes],
                   seen: Seen | None = None) -> tuple[int, bytes]:
        """(status, body); `seen` is handed the answer's status, headers and body first (the caller charged the
        exchange's budget and counts the answer). Without it the call is counted on the budgets (never refused:
        `ExchangeBudget.own`) and its answer read for their counts."""
        adapter: Any = account.adapter
        assert account.upstream is not None and account.key is not None
        name = account.info.name
        if seen is None:
            budget = self._core.budget
            charges = budget.own(account, spec)
            seen = (lambda status, headers, body: budget.observe_own(account, charges, status, headers, body)) \
                if charges else None
        if not adapter.needs_nonce:
            return await signed_call(adapter, account.upstream, account.key, self._clients, spec, seen=seen,
                                     own=self._safety)
        async with self._core.account_turn(name, adapter, OWN if self._safety else FOR_BOTS) as turn:
            nonce = self._core.next_nonce(name, adapter.name, adapter.nonce_in_ms, turn)
            return await signed_call(adapter, account.upstream, account.key, self._clients, spec, nonce, seen,
                                     own=self._safety)


    async def open_socket(self, account: AccountEntry, spec: HeldSocketSpec) -> aiohttp.ClientWebSocketResponse:
        """keyproxy's own private socket: opened to the account's host for `spec.path`, logged in with the
        real key (the adapter's dialect signs the login, as it does a bot's), subscribed. ValueError with what
        the exchange said when it refused either; the socket is closed then."""
        from keyproxy.proxy.websocket import ws_origin

        adapter: Any = account.adapter
        assert account.upstream is not None and account.key is not None
        dialect = adapter.websocket(spec.path)
        origin = account.upstream.origin_for(adapter.websocket_origin_path(spec.path))
        if dialect is None or origin is None:
            raise ValueError(f"{adapter.name} has no private socket {spec.path} in this environment")
        method = str(spec.login.get("op", ""))
        frame = IncomingRequest(method, spec.path, "", {}, json.dumps(spec.login).encode())
        signed = dialect.sign(frame, account.key, dialect.classify(method, spec.path),
                              SignContext(origin, account.upstream.environment.name, int(time.time() * 1000)))
        session = self._clients.ws_session(account.upstream.insecure_loopback)  # held open: never REST's pool
        ws = await session.ws_connect(ws_origin(origin) + adapter.websocket_upstream_path(spec.path),
                                      timeout=aiohttp.ClientWSTimeout(ws_close=5), autoping=True, compress=0)
        try:
            for what, text in (("login", signed.body.decode()), ("subscription", json.dumps(spec.subscribe))):
                await ws.send_str(text)
                refused = spec.refused(await ws.receive_json(timeout=10))
                if refused is not None:
                    raise ValueError(f"the exchange refused keyproxy's {what}: {refused}")
        except BaseException:
            await ws.close()
            raise
        return ws


def what_failed(e: BaseException) -> str:
    """One of SEND_ERRORS in a line for the operator: what a refusal said, else only the kind."""
    if isinstance(e, BadRequest):
        return e.message[:200]
    return str(e)[:200] if isinstance(e, ValueError) else type(e).__name__


async def signed_call(adapter: Any, upstream: Upstream, key: RealKey, clients: UpstreamClients,
                      spec: tuple[str, str, str, bytes], nonce: int | None = None,
                      seen: Seen | None = None, own: bool = False) -> tuple[int, bytes]:
    """Send one request of keyproxy's own (not a bot's), signed with `key`; (status, body). `own`: through the
    pool of keyproxy's own safety calls."""
    method, path, query, body = spec
    endpoint = adapter.classify(method, path)
    origin = upstream.origin_for(path)
    if endpoint is None or origin is None:
        raise ValueError(f"{adapter.name} has no {path} in this environment")
    headers = {"content-type": "application/x-www-form-urlencoded"} if method == "POST" else {}
    out = adapter.sign(IncomingRequest(method, path, query, headers, body), key, endpoint,
                       SignContext(origin, upstream.environment.name, int(time.time() * 1000), nonce))
    session = clients.session(upstream.insecure_loopback, own)
    async with session.request(out.method, out.url, headers=out.headers, data=out.body or None,
                               allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        answer = await resp.read()
        if seen is not None:
            seen(resp.status, resp.headers, answer)
        return resp.status, answer


async def _hyperliquid_standing(adapter: Any, upstream: Upstream, key: RealKey,
                                clients: UpstreamClients) -> tuple[Any, str, str]:
    """(KeyPermissions or None, what it is, the signer's address) of the vault's Hyperliquid key, from the
    master's public `extraAgents` list."""
    from keyproxy.exchanges.permissions import hyperliquid_request, hyperliquid_standing

    signer = adapter.signer_address(key)
    master = key.api_key.reveal().decode("ascii", "replace")
    status, body = await signed_call(adapter, upstream, key, clients, hyperliquid_request(master))
    if status != 200:
        raise ValueError(f"the exchange answered HTTP {status}: {body[:160].decode('utf-8', 'replace')}")
    perms, what = hyperliquid_standing(body, signer, master)
    return perms, what, signer


async def verify_key(adapter: Any, upstream: Upstream, key: RealKey, clients: UpstreamClients,
                     nonce: int | None = None) -> tuple[bool, str]:
    """(ok, what the exchange answered) for the adapter's read call signed with `key`."""
    if adapter.name == "hyperliquid":  # no signed read exists: the new key must be the master or an agent of it
        try:
            perms, what, _ = await _hyperliquid_standing(adapter, upstream, key, clients)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return False, f"the exchange could not be asked ({type(e).__name__}: {str(e)[:120]})"
        return perms is not None, what
    try:
        status, answer = await signed_call(adapter, upstream, key, clients, adapter.verify_request, nonce)
    except (aiohttp.ClientError, TimeoutError) as e:
        return False, f"the exchange could not be reached ({type(e).__name__})"
    except (ValueError, BadRequest) as e:  # nothing was sent: the key cannot sign, or no such endpoint here
        return False, f"the key cannot sign a request: {what_failed(e)}"
    rejected = adapter.key_rejected(status, answer)  # invalid, or denied this read: either fails
    text = answer[:200].decode("utf-8", "replace")
    if 200 <= status < 300 and not rejected and b'"error":["E' not in answer.replace(b" ", b""):
        return True, f"HTTP {status}"
    return False, f"HTTP {status}: {text}"


async def audit_key(exchange: str, adapter: Any, upstream: Upstream, key: RealKey, clients: UpstreamClients,
                    bot_scopes: set[str], nonce: int | None = None) -> dict[str, Any]:
    """Ask the exchange what the real key may do and compare it with what the account's bots need."""
    from keyproxy.exchanges.permissions import findings

    if exchange == "hyperliquid":
        try:
            perms_or_none, what, signer = await _hyperliquid_standing(adapter, upstream, key, clients)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return {"ok": False, "unreachable": True, "warnings": [f"cannot ask the exchange ({type(e).__name__})"]}
        signer_info = {"address": signer, "role": "master" if perms_or_none and perms_or_none.withdraw else "agent",
                       "approved": perms_or_none is not None, "what": what}
        if perms_or_none is None:
            return {"ok": False, "warnings": [what], "signer": signer_info, "bot_scopes": sorted(bot_scopes)}
        warnings = findings(perms_or_none, bot_scopes)
        return {"ok": not warnings, "warnings": warnings, "signer": signer_info, "permissions": {
            "trade": perms_or_none.trade, "withdraw": perms_or_none.withdraw, "transfer": perms_or_none.transfer,
            "ip_restricted": None, "expires_at": perms_or_none.expires_at}, "bot_scopes": sorted(bot_scopes)}
    spec = adapter.key_info_request
    if spec is None:
        return {"ok": False, "warnings": [f"{exchange} offers no key-info endpoint keyproxy reads"]}
    try:
        status, body = await signed_call(adapter, upstream, key, clients, spec, nonce)
    except (aiohttp.ClientError, TimeoutError) as e:
        return {"ok": False, "unreachable": True, "warnings": [f"cannot ask the exchange ({type(e).__name__})"]}
    except (ValueError, BadRequest) as e:  # nothing was sent: the stored key cannot sign
        said = e.message if isinstance(e, BadRequest) else str(e)
        return {"ok": False, "unsigned": True, "warnings": [f"the stored key cannot sign a request: {said[:160]}"]}
    if not 200 <= status < 300 or adapter.key_rejected(status, body):
        return {"ok": False, "rejected": True,
                "warnings": [f"the exchange answered HTTP {status}: {body[:160].decode('utf-8', 'replace')}"]}
    try:
        perms = adapter.key_permissions(body)
    except (ValueError, AttributeError, TypeError) as e:
        return {"ok": False, "warnings": [f"unreadable key-info answer ({e})"]}
    warnings = findings(perms, bot_scopes)
    return {"ok": not warnings, "warnings": warnings, "permissions": {
        "trade": perms.trade, "withdraw": perms.withdraw, "transfer": perms.transfer,
        "ip_restricted": perms.ip_restricted, "expires_at": perms.expires_at}, "bot_scopes": sorted(bot_scopes)}


async def exchange_clock(upstream: Upstream, clients: UpstreamClients, path: str) -> tuple[bytes, float]:
    """GET the exchange's public time endpoint; (answer, this host's time midway through the call)."""
    origin = upstream.origin_for(path)
    if origin is None:
        raise ValueError(f"no host for {path} in this environment")
    before = time.time()
    async with clients.session(upstream.insecure_loopback).get(origin + path,
                                                               timeout=aiohttp.ClientTimeout(total=10)) as resp:
        body = await resp.read()
    return body, (before + time.time()) / 2
