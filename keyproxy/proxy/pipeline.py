"""The REST edge: one bot HTTP request through the core, then to the exchange and back.

`Core` (core.py) decides; this module owns aiohttp's request and response: reading the body with
its limits, forwarding with the shared session, and relaying the answer with its size caps.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from keyproxy.exchanges.base import EndpointClass, IncomingRequest, OutboundRequest, text_problem
from keyproxy.policy.budget import Charge, Governor
from keyproxy.proxy.core import HEARTBEAT_PATH, Core, NonceTurn
from keyproxy.proxy.exchange_budget import spender_of
from keyproxy.proxy.outcome import Outcome, Route, new_request_id
from keyproxy.proxy.admission import Admission
from keyproxy.proxy.market_data import MarketData
from keyproxy.proxy.public_cache import Cached, PublicCache, max_age
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import Snapshot
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.proxy.ws_limits import BOT_SEND_S
from keyproxy.state import StateStore
from keyproxy.nonces import NonceSequence
from keyproxy.usage import UsageBook

__all__ = ["Outcome", "Pipeline", "ProxyLimits", "new_request_id", "split_target"]

# Request headers a bot may pass on to the exchange; everything else (cookies,
# forwarding headers, the bot's own auth) stays here.
FORWARDED_REQUEST_HEADERS = ("accept", "user-agent")
# Answers up to this size are buffered whatever their framing (Content-Length or chunked), so every
# private answer goes through the same bookkeeping; larger ones are streamed (see `_forward`).
BUFFERED_RESPONSE = 8 << 20
# requests of one bot (or, together, of no bot: unsigned market data) on their way to the exchange at once: half the
# upstream pool (UpstreamClients' 100 connections), so one bot never holds it all (session 35's review: a bot that
# did not read its large answers held every connection, and other bots' requests and keyproxy's own calls timed out)
UPSTREAM_PER_BOT = 50
# what aiohttp raises before a request's first byte is written: no connection from the pool in time, or none opened
NOT_SENT = (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_body_bytes: int = 1 << 20
    body_timeout: float = 10.0
    upstream_timeout: float = 10.0
    max_response_bytes: int = 64 << 20


class Pipeline:
    """The REST edge over the core."""

    def __init__(self, snapshot: Callable[[], Snapshot], clients: UpstreamClients, limits: ProxyLimits,
                 before_forward: Callable[[Outcome], None] = lambda o: None,
                 nonces: NonceSequence | None = None, sequences: StateStore | None = None,
                 usage: UsageBook | None = None,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 governor: Governor | None = None, public_ttls: Mapping[str, float] | None = None) -> None:
        self.core = Core(snapshot, before_forward, nonces, sequences, usage, clock_ms, governor)
        self._public_ttls = dict(public_ttls or {})  # "exchange:/path" -> seconds ([governor.cache])
        self._clients = clients
        self._limits = limits
        self._on_their_way: Counter[str] = Counter()  # bot -> its requests forwarded and not yet answered (read)
        # one for every request; a connection (from the pool, or opened) is had within `connect` or the request is
        # known unsent (NOT_SENT), well inside `total`, whose expiry leaves a request's fate unknown
        connect = min(5.0, limits.upstream_timeout / 2)
        self._timeout = aiohttp.ClientTimeout(total=limits.upstream_timeout, connect=connect, sock_connect=connect)
        self.market_data = MarketData(self.core, clients, limits.upstream_timeout)  # keyproxy's own public calls
        self.admission = Admission(self.core, self.market_data)  # in a fleet the daemon gives it the fleet's gate
        self._cache = PublicCache()  # identical public GETs shared by every bot (public_cache.py)

    async def handle(self, request: web.BaseRequest, outcome: Outcome) -> web.StreamResponse:
        outcome.method, outcome.source_ip = request.method, request.remote
        account_name, path, query = split_target(request.raw_path)
        outcome.path = path
        if path == HEARTBEAT_PATH:  # answered here: never routed to the exchange
            incoming = await self._incoming(request, account_name, path, query)
            bot = self.core.heartbeat(account_name, incoming, request.remote or "", outcome)
            return web.json_response({"bot": bot.info.name, "heartbeat_seconds": bot.policy.heartbeat_seconds})
        route = self.core.route(account_name, request.method, path, outcome)
        incoming = await self._incoming(request, account_name, path, query)
        headers = incoming.headers
        route, incoming = await self.admission.admit(route, incoming, request.remote or "", outcome)
        ttl = self._public_ttl(route, request.method, path) if route.endpoint.cls is EndpointClass.PUBLIC else 0
        if not ttl:
            return await self._send(request, route, incoming, headers, outcome)
        key = (route.origin, request.method, path, query)
        cached = self._cache.get(key)
        if cached is None:
            own: list[web.StreamResponse] = []

            async def load() -> Cached | None:
                response = await self._send(request, route, incoming, headers, outcome)
                own.append(response)
                if response.status != 200 or outcome.no_store or not isinstance(response, web.Response) \
                        or not isinstance(response.body, bytes):
                    return None
                return Cached(response.status, dict(response.headers), response.body, outcome.max_age)

            cached, loaded = await self._cache.fetch(key, ttl, load)
            if loaded:
                return own[0]
            if cached is None:  # the answer we waited for was not one to share: ask on our own
                return await self._send(request, route, incoming, headers, outcome)
            outcome.cache = "shared"
        else:
            outcome.cache = "hit"
        outcome.decision, outcome.upstream_status = "allow", cached.status
        return web.Response(status=cached.status, body=cached.body, headers=cached.headers)

    async def _incoming(self, request: web.BaseRequest, account_name: str, path: str, query: str) -> IncomingRequest:
        """The bot's request as the core reads it: body read within its limits, header names lower-case."""
        body = await self._read_body(request)
        if (problem := text_problem(body) if body else None) or (problem := text_problem(query) if query else None):
            raise Refused("bad_request", problem)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return IncomingRequest(request.method, path, query, headers, body, host=request.headers.get("Host", ""),
                               mount=f"/{account_name}")

    def _public_ttl(self, route: Route, method: str, path: str) -> float:
        """Seconds a public answer is shared by every bot: the config's `[governor.cache]`, else the adapter's."""
        configured = self._public_ttls.get(f"{route.adapter.name}:{path}") if method == "GET" else None
        return configured if configured is not None else route.adapter.public_ttl(method, path)

    async def _send(self, request: web.BaseRequest, route: Route, incoming: IncomingRequest, headers: Mapping[str, str],
                    outcome: Outcome) -> web.StreamResponse:
        """The exchange's budget charged, signed (the audit line written), forwarded, answered."""
        real = self.core.real_stream_token(route, incoming, outcome) if outcome.bot else None  # a keepalive's
        closed = route.adapter.stream_close_answer(incoming.method, incoming.path)
        if closed is not None and self.core.keeps_stream_open(route, incoming, outcome):
            outcome.decision, outcome.cache = "allow", "local"  # answered as the exchange would: nothing sent
            return web.Response(status=200, body=closed, content_type="application/json")
        who = spender_of(outcome)  # a key id's claim is not the bot's: it must not take the bot's places
        if self._on_their_way[who] >= UPSTREAM_PER_BOT:  # refused before anything is spent, signed or sent
            raise Refused("rate_limited", f"{UPSTREAM_PER_BOT} requests of this bot are already on their way to the "
                          "exchange (or being read by it); retry when they are answered", 1.0)
        charges = self.core.budget.spend(route, incoming, outcome)
        self._on_their_way[who] += 1
        try:
            async with self.core.turn(route, who) as turn:
                outbound = self.core.sign(route, incoming, outcome, stream_token=real, turn=turn)
                for name in FORWARDED_REQUEST_HEADERS:
                    if name in headers and name not in {h.lower() for h in outbound.headers}:
                        outbound.headers[name] = headers[name]
                return await self._forward(request, outbound, route, outcome, turn, charges)
        finally:
            self._on_their_way[who] -= 1
            if self._on_their_way[who] <= 0:
                del self._on_their_way[who]

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self._limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused("body_too_large", f"request body over {limit} bytes")
        if request.content.is_eof():  # all of it arrived with the headers (a bot's usual request): no wait
            body = request.content.read_nowait()
            if len(body) > limit:
                raise Refused("body_too_large", f"request body over {limit} bytes")
            return body
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self._limits.body_timeout):
                while True:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise Refused("body_too_large", f"request body over {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused("request_timeout", "request body not received in time") from None
        return b"".join(chunks)

    async def _forward(self, request: web.BaseRequest, out: OutboundRequest, route: Route, outcome: Outcome,
                       turn: NonceTurn, charges: tuple[Charge, ...] = ()) -> web.StreamResponse:
        account, endpoint = route.account, route.endpoint
        assert account.upstream is not None
        session = self._clients.session(account.upstream.insecure_loopback)
        started = time.perf_counter()
        relay: web.Response | None = None  # written to the bot once the exchange's connection is back in the pool
        learned_first = True  # its bookkeeping done before it is written: aiohttp writes it, after a shared load
        try:
            async with session.request(out.method, URL(out.url, encoded=True), headers=out.headers,
                                       data=out.body or None, allow_redirects=False, timeout=self._timeout) as resp:
                turn.release()  # the exchange has seen the nonce: the next request may go
                outcome.upstream_status = resp.status
                cache_control = resp.headers.get("Cache-Control", "").lower()
                outcome.no_store = "no-store" in cache_control or "private" in cache_control
                outcome.max_age = max_age(cache_control)
                headers = _relayed_headers(resp.headers, route.adapter.relayed_response_headers)
                limit = self._limits.max_response_bytes
                if resp.content_length is not None and resp.content_length > limit:
                    raise self._too_large(route, out, resp.status, outcome)
                # Sizes count the decoded bytes (aiohttp inflates gzip/deflate), so a small compressed
                # answer cannot relay more than the limit or buffer more than BUFFERED_RESPONSE.
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large(route, out, resp.status, outcome)
                    chunks.append(chunk)
                    if size > BUFFERED_RESPONSE:
                        self.core.budget.observe(route, charges, resp.status, resp.headers, None, outcome)
                        return await self._stream_rest(request, resp, headers, chunks, size, route, outcome,
                                                       out, started)
                body = b"".join(chunks)
                outcome.upstream_ms = (time.perf_counter() - started) * 1000
                self.core.budget.observe(route, charges, resp.status, resp.headers, body, outcome)
                if endpoint.cls is not EndpointClass.PUBLIC:
                    body = self.core.relayed(route, out, resp.status, body, outcome)
                # an order's answer is in the answers journal before the bot sees it (a kill -9 just after the bot
                # read it must not leave an order the bot knows of and keyproxy does not: a restart learns it again),
                # else learned (in state.db) before it is relayed
                journaled = self.core.journaled(route, out, resp.status, body, outcome) \
                    if outcome.placed_by is not None else None
                if endpoint.cls is EndpointClass.PUBLIC or outcome.placed_by is not None and journaled is None:
                    self.core.learn(route, out, resp.status, body, outcome)
                else:
                    # anything else is sent first, then learned from (the bot's next request overlaps the
                    # bookkeeping); what it would teach errs safe if lost (a cancel unseen keeps an order counted):
                    # queued now, learned with this loop turn's others once the answer is written, and whether or
                    # not the bot is still there to read it
                    self.core.learn(route, out, resp.status, body, outcome, journaled, later=True)
                    learned_first = False
                relay = web.Response(status=resp.status, body=body, headers=headers)
        except NOT_SENT as e:  # no connection was had (none free in time, none opened): nothing reached the exchange
            outcome.upstream_ms = (time.perf_counter() - started) * 1000
            self.core.in_flight.land(outcome)
            raise Refused("upstream_error", f"cannot reach the exchange ({type(e).__name__}); nothing was sent: "
                          "safe to retry") from None
        except TimeoutError:
            outcome.upstream_ms = (time.perf_counter() - started) * 1000
            self.core.fate_unknown(route, out, outcome)  # an order counts as open until a listing says otherwise
            if endpoint.cls in (EndpointClass.TRADE, EndpointClass.WITHDRAW, EndpointClass.TRANSFER):
                raise Refused("upstream_timeout", "the exchange did not answer in time; the request's fate is "
                              "unknown: query its status before resubmitting (keyproxy never retries it)") from None
            raise Refused("upstream_timeout", "the exchange did not answer in time") from None
        except aiohttp.ClientError as e:  # sent, or partly: its answer not read
            self.core.fate_unknown(route, out, outcome)
            raise Refused("upstream_error", f"the exchange's answer could not be read ({type(e).__name__}); the "
                          "request may have reached it: query its status before resubmitting") from None
        # the answer is read whole and learned: the bot reads it with the exchange's connection free, and within
        # BOT_SEND_S (session 35's review: a bot that did not read 8 MiB answers held all 100 of the shared pool's
        # connections, every other bot's requests and keyproxy's own calls timed out, and an order's answer it was
        # slow to read turned into an upstream timeout, its fate "unknown" and uncounted once that lapsed)
        assert relay is not None  # every other way out of the block returned or raised
        if not learned_first:  # what queues its learning writes it here, so the learning follows the write
            await _write_within(request, relay, outcome)
        # else aiohttp writes it once the handler returns: a shared market-list load (`_public`) is handed to the
        # bots waiting on it first, never held by a bot slow to read (session 35's regression review)
        return relay

    def _too_large(self, route: Route, out: OutboundRequest, status: int, outcome: Outcome) -> Refused:
        """An answer over `max_response_bytes`, never relayed: learned as one too large to read (an order counts as
        resting, no cancel is believed), so an order the exchange may have placed is never forgotten (session 28)."""
        if route.endpoint.cls is not EndpointClass.PUBLIC:
            self.core.learn(route, out, status, b"", outcome)
        return Refused("upstream_error", "exchange answer larger than the configured limit")

    async def _stream_rest(self, request: web.BaseRequest, resp: aiohttp.ClientResponse, headers: dict[str, str],
                           chunks: list[bytes], size: int, route: Route, outcome: Outcome, out: OutboundRequest,
                           started: float) -> web.StreamResponse:
        """An answer over BUFFERED_RESPONSE: relayed as it comes, up to the size limit. Its bookkeeping
        runs on no body (order answers and key refusals are small; see `Core.learn`). An answer that hands out a
        stream token is never relayed unread: the token would reach the bot."""
        if route.adapter.grants_stream_token(out.path):
            raise Refused("upstream_error", "the exchange's token answer is too large to read")
        if route.adapter.reports_client_ids(out.path):
            # its orders' client ids must be read before the bot sees them (`CoreAnswers.relayed`): ask for fewer
            raise Refused("upstream_error", "the exchange's order listing is too large for keyproxy to read: ask "
                          "for fewer orders (a smaller limit)")
        self.core.learn(route, out, resp.status, b"", outcome)
        stream = web.StreamResponse(status=resp.status, headers=headers)
        await _within(request, stream.prepare(request), outcome)
        for chunk in chunks:
            await _within(request, stream.write(chunk), outcome)
        limit = self._limits.max_response_bytes
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise ConnectionAbortedError("exchange answer over the size limit")
            await _within(request, stream.write(chunk), outcome)  # the exchange's connection is held meanwhile
        await _within(request, stream.write_eof(), outcome)
        outcome.upstream_ms = (time.perf_counter() - started) * 1000
        return stream


async def _write_within(request: web.BaseRequest, answer: web.Response, outcome: Outcome) -> None:
    await _within(request, answer.prepare(request), outcome)  # type: ignore[arg-type]
    await _within(request, answer.write_eof(), outcome)


async def _within(request: web.BaseRequest, write: Awaitable[object], outcome: Outcome) -> None:
    """One write to the bot, taken within BOT_SEND_S; a bot that does not read loses its connection (aborted: a
    close would wait on the same full buffer), as its WebSocket does (`ws_connection.Connection._to_bot`)."""
    try:
        async with asyncio.timeout(BOT_SEND_S):
            await write
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise BotNotReading(f"the bot did not read its answer within {BOT_SEND_S:g} s "
                            f"(request {outcome.request_id})") from None
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError: the bot closed its connection meanwhile
        # never an aiohttp.ClientError to `_forward`, which would take it for the exchange's and learn the answer
        # again as one of unknown fate (session 36's regression review)
        raise BotNotReading(f"the bot closed its connection before its answer was written "
                            f"(request {outcome.request_id})") from None


class BotNotReading(ConnectionResetError):
    """The bot did not take its answer (within BOT_SEND_S: its connection aborted; or it closed it): the front door
    records the exchange's status for it, in one log line, never as an internal error."""


@functools.lru_cache(maxsize=64)
def _header_rules(allowed: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """An adapter's relayed header names: (exact names, prefixes of `name*`), read once per adapter."""
    return frozenset(a for a in allowed if not a.endswith("*")), tuple(a[:-1] for a in allowed if a.endswith("*"))


def _relayed_headers(upstream: object, allowed: tuple[str, ...]) -> dict[str, str]:
    exact, prefixes = _header_rules(allowed)
    out = {}
    for name, value in upstream.items():  # type: ignore[attr-defined]
        low = name.lower()
        if low in exact or (prefixes and low.startswith(prefixes)):
            out[name] = value
    return out


def split_target(raw: str, stream_names: bool = False) -> tuple[str, str, str]:
    """`/<account>/<path>?<query>` -> (account, /path, query), refusing anything that could steer it.

    The path stays percent-encoded. Refused: absolute-form targets, `..` or
    `.` segments, empty segments (`//host`), backslashes, and encoded `/`,
    `\\` or `.` in the path, since an upstream could decode them differently.
    `@` is refused too, except in a WebSocket upgrade (`stream_names`): market stream names carry it
    (`/ws/btcusdt@trade`), and the WebSocket edge relays such a path only to a public stream.
    """
    if not raw.startswith("/"):
        raise Refused("bad_request", "request target must be a path (absolute-form is refused)")
    path, _, query = raw.partition("?")
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered or "%2e" in lowered or "%00" in lowered:
        raise Refused("bad_request", "encoded separators or dots are not allowed in the path")
    segments = path.split("/")[1:]
    # a WebSocket at the exchange's root (Coinbase's): `/<account>` alone is its `/`
    minimum = 1 if stream_names else 2
    if len(segments) < minimum or any(s in ("", ".", "..") for s in segments) or ("@" in path and not stream_names):
        raise Refused("bad_request", "path must be /<account>/<exchange path> with no empty, . or .. segments")
    if not (raw.isascii() and raw.isprintable()) or " " in raw:  # only 0x21-0x7E
        raise Refused("bad_request", "request target has characters outside printable ASCII")
    return segments[0], "/" + "/".join(segments[1:]), query
