"""The WebSocket edge: a bot's socket, each request frame through the core, the exchange's answers back.

`ws://127.0.0.1:8750/<account>/<the exchange's own WebSocket path>`: keyproxy opens one upstream
socket per bot socket, to the origin the account's host table gives for that path (a loopback
emulator: `ws://` to it). Every request frame becomes one `Outcome` and one pass through `Core`
(route, identify, verify, replay, standing, source address, policy, audit line, re-sign), exactly as
a REST request does; a refusal is answered on the socket in the exchange's error shape with the
frame's id, and nothing goes upstream. Answers are matched to their request by id for the core's
bookkeeping and the outcome's record; events (user data streams) are relayed as they come.

Live controls reach open sockets: every frame is decided on the current snapshot, and a watcher
closes a socket whose bot was revoked or suspended or whose key was quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from keyproxy.exchanges.base import Adapter, BadRequest, KeyRejection
from keyproxy.proxy.core import Core
from keyproxy.proxy.outcome import Outcome, Route
from keyproxy.proxy.registry import AccountEntry
from keyproxy.proxy.admission import Admission
from keyproxy.proxy.market_data import MarketData
from keyproxy.proxy.own_calls import SEND_ERRORS, OwnCalls
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.proxy.ws_connection import Connection, bad_request
from keyproxy.proxy.ws_limits import (  # noqa: F401 - SocketLimits and ws_origin are imported from here too
    ANONYMOUS_GRACE_S, CLOSE_GOING_AWAY, CLOSE_POLICY, PRIVATE_NAME, PUBLIC, FrameMeter, SocketLimits, evictable,
    ws_origin,
)

log = logging.getLogger("keyproxy.proxy")


class WebSocketEdge:
    def __init__(self, core: Core, clients: UpstreamClients, limits: SocketLimits,
                 record: Callable[[Outcome, int], None], react: Callable[[Outcome], None] = lambda o: None,
                 count: Callable[[str, int], None] = lambda account, n: None,
                 admission: Admission | None = None) -> None:
        self._core = core
        # the awaited part of the decision, shared with REST: market data the core asks for, a fleet's gate
        self._admission = admission or Admission(core, MarketData(core, clients))
        self._clients = clients
        self._own = OwnCalls(core, clients)  # keyproxy's own signed calls (a Kraken WebSocket token)
        self._limits = limits
        self._record = record
        self._react = react
        self._count = count  # the open-connections gauge, by account
        self.sockets: set[web.WebSocketResponse] = set()
        self.connections: set[Connection] = set()
        self._token_fetch: dict[str, asyncio.Lock] = {}
        # handshakes past the caps' checks and not yet open, counted against the caps: a burst of them cannot
        # pass the check together while each awaits the exchange's socket
        self._opening: Counter[str] = Counter()
        self.stopping = False  # SIGTERM: `close_all` waited for the answers; no socket drains past it

    def sockets_of(self, bot: str) -> int:
        return sum(1 for c in self.connections if bot in c.bots) + self._opening[bot]

    def public_sockets(self) -> int:
        """Market data sockets open or opening (no credential named them)."""
        return sum(1 for c in self.connections if c.public) + self._opening[PUBLIC]

    async def handle(self, request: web.BaseRequest, account_name: str, path: str, query: str,
                     outcome: Outcome) -> web.StreamResponse:
        """The handshake (refused before the upgrade with an HTTP error), then the two relays."""
        outcome.method, outcome.path, outcome.endpoint, outcome.transport = "GET", path, "ws connect", "ws"
        if self._full() and not self._evictable():
            raise Refused("unavailable", "keyproxy holds as many WebSocket connections as it allows; retry later")
        account = self._core.account(account_name, outcome)
        adapter = account.adapter
        assert adapter is not None and account.upstream is not None
        dialect = adapter.websocket(path)
        try:
            token = adapter.stream_listen_key(path, query) if dialect is None else None
        except BadRequest as e:
            raise bad_request(e) from None
        holding = self._core.stream_bot(account, token, request.remote or "", outcome) if token else None
        stream_bot, real = (holding.bot.info.name, holding.real) if holding is not None else (None, None)
        if stream_bot is not None and self.sockets_of(stream_bot) >= self._limits.max_per_bot:
            raise Refused("rate_limited", f"bot {stream_bot!r} already has {self._limits.max_per_bot} open sockets")
        public = dialect is None and stream_bot is None and adapter.relays_websocket(path)
        if dialect is None and stream_bot is None and not public:
            raise Refused("unknown_endpoint", f"{path[:200]} is not a WebSocket path keyproxy knows for {adapter.name}")
        if public and adapter.names_private_stream(f"{path}?{query}"):
            raise Refused("bad_request", PRIVATE_NAME)
        if "@" in path and not public:
            raise Refused("bad_request", "only a market data stream's path may name a stream with @")
        # a user data stream goes to the host of the market whose endpoint handed out its listenKey
        origin = account.upstream.origin_for(adapter.private_stream_origin_path(path, holding.issued_by)
                                             if holding is not None else adapter.websocket_origin_path(path))
        if origin is None:
            raise Refused("unknown_endpoint", f"{path[:200]} has no host in this account's environment")
        try:  # what of the bot's socket query goes upstream: refused here, before anything is spent or opened
            query = dialect.upstream_query(query) if dialect is not None else query  # type: ignore[attr-defined]
        except BadRequest as e:
            raise bad_request(e) from None
        sync = self._admission.sync
        if sync is not None and sync.stale() and not public:  # a revocation elsewhere may be waiting (session 34)
            raise Refused("shared_state_unavailable", "this keyproxy has not reached the fleet's shared state for "
                          "a while: no socket that carries a bot's data opens until it is back", 1.0)
        if public and self.public_sockets() >= self._limits.max_sockets // 2:
            # a market data stream needs no credential: a flood of them must leave room for the bots' signed
            # sockets (session 33's review: 512 public sockets refused every bot's WebSocket API handshake)
            raise Refused("unavailable", "keyproxy holds as many market data sockets as it allows (half of "
                          "max_sockets); retry later")
        self._core.budget.spend_connection(account, path, stream_bot, outcome)  # the exchange counts them per IP
        if self._full() and not await self._evict_anonymous():
            raise Refused("unavailable", "keyproxy holds as many WebSocket connections as it allows; retry later")
        held = ["", stream_bot] if stream_bot is not None else ["", PUBLIC] if public else [""]
        self._opening.update(held)
        try:
            alias = (real, token) if real is not None and token is not None else None
            return await self._open(request, account_name, account, adapter, dialect, path, query, origin, stream_bot,
                                    outcome, held, alias)
        finally:
            self._opening.subtract(held)
            for name in [n for n, count in self._opening.items() if count <= 0]:
                del self._opening[name]

    def _full(self) -> bool:
        """Every socket keyproxy allows is open or opening."""
        return len(self.sockets) + self._opening[""] >= self._limits.max_sockets

    def _evictable(self) -> Connection | None:
        return evictable(self.connections, self.public_sockets(), self._limits.max_sockets)

    async def _evict_anonymous(self) -> bool:
        """Close `_evictable`'s socket (session 34's review: sockets that never logged in held max_sockets and
        refused every bot's handshake); checked after the handshake's own checks and spend, so a handshake that
        is refused closes nothing. False when there is none."""
        victim = self._evictable()
        if victim is None:
            return False
        victim.closing = (f"keyproxy: no bot authenticated on this socket within {ANONYMOUS_GRACE_S:g} s, and "
                          "another needed its place")
        log.warning("closed a socket no bot authenticated on, to make room", extra={"account": victim.account})
        await victim.bot_ws.close(code=CLOSE_POLICY, message=victim.closing.encode()[:120])
        self.sockets.discard(victim.bot_ws)  # its place is free now; `_open`'s cleanup finds it gone
        return True

    async def _open(self, request: web.BaseRequest, account_name: str, account: AccountEntry, adapter: Adapter,
                    dialect: Adapter | None, path: str, query: str, origin: str, stream_bot: str | None,
                    outcome: Outcome, held: list[str], alias: tuple[str, str] | None = None) -> web.StreamResponse:
        """The exchange's socket, the bot's upgrade, then the two relays; `held`: this handshake's reservations
        against the caps, released once the socket counts among the open ones. `alias`: (the exchange's stream
        token, the bot's virtual one) of a private event stream: the real one in the URL, the virtual one in what
        the bot is sent."""
        assert account.upstream is not None
        session = self._clients.ws_session(account.upstream.insecure_loopback)
        upstream_path = adapter.websocket_upstream_path(path)
        if alias is not None:
            upstream_path, query = upstream_path.replace(alias[1], alias[0]), query.replace(alias[1], alias[0])
        url = ws_origin(origin) + upstream_path + (f"?{query}" if query else "")
        try:
            upstream = await asyncio.wait_for(session.ws_connect(
                url, timeout=aiohttp.ClientWSTimeout(ws_close=5), max_msg_size=0, autoping=True,
                heartbeat=self._limits.heartbeat, compress=0), self._limits.upstream_timeout)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Refused("upstream_error", f"cannot reach the exchange's WebSocket ({type(e).__name__})") from None
        bot_ws = web.WebSocketResponse(heartbeat=self._limits.heartbeat, max_msg_size=self._limits.max_frame_bytes,
                                       compress=False)
        try:
            await bot_ws.prepare(request)
        except Exception:
            await upstream.close()
            raise
        outcome.decision = "allow"
        conn = Connection(self, bot_ws, upstream, account_name, path, dialect, request, account.info.version)
        conn.public_names_private = adapter.names_private_stream
        frames = adapter.relay_frames(path) if dialect is None else None
        conn.relay_meter = FrameMeter(*frames) if frames else None
        conn.public = PUBLIC in held
        if stream_bot is not None:  # a private event stream: it closes when its bot may no longer read
            conn.bots.add(stream_bot)
            if outcome.credential:
                conn.credentials.add(outcome.credential)
            conn.private_stream = True
            conn.aliases[alias[0]] = alias[1]
        self.sockets.add(bot_ws)
        self.connections.add(conn)
        self._opening.subtract(held)  # counted as open now
        held.clear()
        self._count(account_name, 1)
        try:
            await conn.run()
        finally:
            self._count(account_name, -1)
            self.connections.discard(conn)
            self.sockets.discard(bot_ws)
            await upstream.close()
        return bot_ws

    async def stream_token(self, route: Route, outcome: Outcome) -> tuple[str, int]:
        """The exchange's own stream token for the account (Kraken's WebSocket token): the cached one while
        fresh, else fetched with keyproxy's own signed call, in the account's nonce order. Never a bot's."""
        core, account = self._core, route.account
        name = account.info.name
        async with self._token_fetch.setdefault(name, asyncio.Lock()):
            cached = core.tokens.real.get((name, account.info.version))
            if cached is not None and core.clock_ms() - cached[1] < self._limits.stream_token_reuse_ms:
                return cached
            rest: Any = account.adapter
            spec = rest.stream_token_request
            assert spec is not None
            try:
                status, body = await self._own.send(account, spec)
            except SEND_ERRORS as e:
                raise Refused("upstream_error", "cannot obtain the exchange's WebSocket token "
                              f"({type(e).__name__})") from None
            tokens = rest.listen_keys(spec[1], body) if 200 <= status < 300 else ()
            if not tokens:
                outcome.key_rejected = rest.key_rejected(status, body, spec[0], spec[1]) is KeyRejection.INVALID
                said = body[:120].decode("utf-8", "replace")
                raise Refused("upstream_error", f"the exchange refused keyproxy a WebSocket token: {said}")
            fetched = core.tokens.real[(name, account.info.version)] = (tokens[0], core.clock_ms())
            return fetched

    async def close_all(self, grace: float) -> None:
        """SIGTERM: every socket gets a going-away close once its in-flight frames are answered (at most
        `grace` seconds: a frame the exchange never answers is recorded as upstream_error)."""
        self.stopping = True
        deadline = time.monotonic() + grace
        while any(c.pending for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=CLOSE_GOING_AWAY, message=b"keyproxy is shutting down"), grace)
