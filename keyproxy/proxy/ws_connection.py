"""One bot socket and its upstream socket: the two relays of `proxy/websocket.py`'s edge.

Each request frame from the bot goes through the core as one `Outcome` (the edge's admission, then
`Core.sign`), waits in `pending` for the exchange's answer, which is matched to it by id, learned by the
core and relayed; events are relayed as they come. A watcher closes the socket when its bot may no longer
use it. Split from the edge (session 35) so each module reads on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from keyproxy.exchanges._fills import loads
from keyproxy.exchanges.base import (
    OLDEST_PENDING, Adapter, BadRequest, EndpointClass, IncomingRequest, OutboundRequest,
)
from keyproxy.policy.budget import Charge
from keyproxy.proxy.core import may_read
from keyproxy.proxy.exchange_budget import spender_of
from keyproxy.proxy.in_flight import IN_FLIGHT_S
from keyproxy.proxy.outcome import Outcome, Route, new_request_id
from keyproxy.proxy.refusal import STATUS, Refused, exchange_code
from keyproxy.proxy.ws_limits import (
    BOT_SEND_S, CLOSE_GOING_AWAY, CLOSE_POLICY, DRAIN_S, PRIVATE_NAME, FrameMeter,
)

if TYPE_CHECKING:
    from keyproxy.proxy.websocket import WebSocketEdge

log = logging.getLogger("keyproxy.proxy")


def without_token(text: str, real: str) -> str:
    """An exchange's message with its real stream token taken out: as written, and as JSON may escape it (a base64
    token's `/` as `\\/`: session 36's review), so no form of it reaches the bot."""
    for form in (real, real.replace("/", "\\/")):
        if form in text:
            text = text.replace(form, "")
    return text


@dataclass
class _Pending:
    route: Route
    out: OutboundRequest
    outcome: Outcome
    started: float
    pins_token: bool = False  # a private subscription with the real stream token: it stays valid on this socket
    charges: tuple[Charge, ...] = ()  # what it spent of the exchange's budgets: its answer corrects them


class Connection:
    """One bot socket and its upstream socket."""

    def __init__(self, edge: WebSocketEdge, bot_ws: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse,
                 account: str, path: str, dialect: Adapter | None, request: web.BaseRequest, key_version: int) -> None:
        self.edge, self.bot_ws, self.upstream = edge, bot_ws, upstream
        self.account, self.path, self.dialect = account, path, dialect
        self.peer = request.remote or ""
        self.transport = request.transport  # aborted when the bot stops reading (`_to_bot`)
        self.host = request.headers.get("Host", "")
        self.pending: dict[Any, _Pending] = {}
        self.bots: set[str] = set()  # bots that authenticated a frame on this socket
        self.public = False  # a market data stream: no credential named it (`WebSocketEdge.public_sockets`)
        self.credentials: set[str] = set()  # and the credentials they did it with (`BotEntry.credential`)
        self.key_version = key_version  # the real key's the handshake used: a rotation closes the socket
        self.private_stream = False  # a bot's event stream (listenKey): it takes no requests
        self.session: str | None = None  # the key id this connection logged on with (session.logon)
        self.authorized_since: int | None = None
        self.connected_since = int(time.time() * 1000)
        self.stream_token: tuple[str, int] | None = None  # the exchange's token this socket sends (Kraken)
        # the exchange's stream tokens this socket used -> the bot's virtual ones: a private stream's listenKey, a
        # subscribe frame's listenToken (Binance); what the exchange sends names only the virtual one
        self.aliases: dict[str, str] = {}
        self.readers: set[str] = set()  # bots that read on this socket (a private subscription): closed without read
        self.public_names_private: Callable[[str], bool] = lambda text: False  # a public relay's frame check
        self.relay_meter: FrameMeter | None = None  # and its messages' limit (`AdapterHooks.relay_frames`)
        self.spoke = False  # the bot sent a frame on it (an anonymous socket in use: `WebSocketEdge._evictable`)
        self.token_pinned = False  # a private subscription used it: valid for the socket's life
        self.closing: str | None = None
        self.bot_gone = False  # answers still read and learned, no longer relayed (`_drain`)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._from_bot()), asyncio.create_task(self._from_exchange()),
                 asyncio.create_task(self._watch())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self.pending and not tasks[1].done() and not self.edge.stopping:
                tasks[0].cancel()
                tasks[2].cancel()
                await self._drain(tasks[1])
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            for p in self.pending.values():  # the socket went away before the exchange answered
                p.outcome.code = p.outcome.code or "upstream_error"
                self.edge._core.fate_unknown(p.route, p.out, p.outcome)  # an order counts open; nothing waits for it
                self.edge._record(p.outcome, 502)
            self.pending.clear()
            if not self.bot_ws.closed:
                await self.bot_ws.close(code=CLOSE_POLICY if self.closing else CLOSE_GOING_AWAY,
                                        message=(self.closing or "the exchange closed the connection").encode()[:120])

    async def _drain(self, from_exchange: asyncio.Task[None]) -> None:
        """The bot went (closed its socket, sent a frame over the limit, was revoked) with frames still on their
        way: the exchange's answers are read and learned, never relayed, for DRAIN_S at most. An order placed
        there rests or fills whether the bot reads its answer or not; left unlearned it counted for IN_FLIGHT_S
        and then belonged to no one: a bot closing each socket at once placed past max_open_orders and
        max_position, a cap's worth every minute (session 23's review). While an order's answer is still to come the
        reading goes on up to IN_FLIGHT_S: a bot could queue slow answers ahead of its order and close, so the order's
        answer came after DRAIN_S, unread (session 36's review)."""
        self.bot_gone = True
        started = time.monotonic()
        while self.pending and not from_exchange.done() and not self.edge.stopping:
            orders = any(p.outcome.placed_by is not None for p in self.pending.values())
            left = started + (IN_FLIGHT_S if orders else DRAIN_S) - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait({from_exchange}, timeout=min(left, 0.05))

    # --- bot -> exchange ------------------------------------------------------------------------

    async def _from_bot(self) -> None:
        async for msg in self.bot_ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.spoke = True
                if self.private_stream:
                    await self._refuse(None, Refused("bad_request", "a user data stream takes no requests"), Outcome(
                        request_id=new_request_id(), account=self.account, path=self.path, source_ip=self.peer,
                        transport="ws"))
                elif self.dialect is None:  # a public stream: no credential, relayed; never a private stream's name
                    if self.public_names_private(msg.data):
                        await self._refuse(None, Refused("bad_request", PRIVATE_NAME), Outcome(
                            request_id=new_request_id(), account=self.account, path=self.path, source_ip=self.peer,
                            transport="ws"))
                    elif self.relay_meter is not None and not self.relay_meter.admit():
                        # session 34's review: 200 frames in 9 ms were relayed; Binance drops such a socket and may
                        # ban the IP for every bot: the bot's socket ends here instead, the message unsent
                        self.closing = self.relay_meter.refusal
                        return
                    else:
                        await self.upstream.send_str(msg.data)
                else:
                    await self._request(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await self._refuse(None, Refused("bad_request", "binary frames are not accepted"), Outcome(
                    request_id=new_request_id(), account=self.account, path=self.path, source_ip=self.peer,
                    transport="ws"))
            elif msg.type == aiohttp.WSMsgType.ERROR:
                self.closing = "frame over the size limit or malformed"
                return

    async def _request(self, text: str) -> None:
        core = self.edge._core
        outcome = Outcome(request_id=new_request_id(), method="WS", source_ip=self.peer, path=self.path,
                          account=self.account, adapter=self.dialect, transport="ws")
        frame_id: Any = None
        method = ""
        dialect: Any = self.dialect
        try:
            frame_id, method = dialect.ws_frame(text)
            # what the bot named, as visible text: no terminal escape reaches an audit line or a log (session 26)
            outcome.method = method[:64] if method[:64].isprintable() else method[:64].encode("unicode_escape").decode()
            if frame_id in self.pending:
                raise Refused("bad_request", "a frame with this id is still waiting for the exchange's answer")
            if len(self.pending) >= self.edge._limits.max_pending:
                raise Refused("unavailable", "too many frames waiting for the exchange; retry shortly")
            if self.edge.stopping:  # a frame sent now might not be answered before the socket closes, and an order's
                # answer never read is an order with no owner after the restart (session 27's review)
                raise Refused("unavailable", "keyproxy is shutting down; retry on a new connection", 1.0)
            route = core.route(self.account, method, self.path, outcome, dialect=dialect)
            incoming = IncomingRequest(method, self.path, "", {}, text.encode(), host=self.host,
                                       mount=f"/{self.account}")
            action = dialect.session_action(method)
            if action in ("logout", "status"):
                await self._session_answer(frame_id, action, outcome)
                return
            claimed = dialect.presented_key(incoming)
            route, incoming = await self.edge._admission.admit(route, incoming, self.peer, outcome,
                                                                 session=self.session)
            if outcome.authenticated and outcome.bot and outcome.bot not in self.bots:
                if self.edge.sockets_of(outcome.bot) >= self.edge._limits.max_per_bot:
                    raise Refused("rate_limited", f"bot {outcome.bot!r} already uses "
                                  f"{self.edge._limits.max_per_bot} sockets; close one first")
                self.bots.add(outcome.bot)
            if outcome.authenticated and outcome.credential:
                self.credentials.add(outcome.credential)
            if outcome.bot and route.endpoint.cls is EndpointClass.READ:  # a subscription reads on: scope watched
                self.readers.add(outcome.bot)
            if action == "logon":
                await self._session_answer(frame_id, action, outcome, claimed)
                return
            if action == "login":  # verified above: the connection is this bot's; the login goes upstream re-signed
                self.session, self.authorized_since = claimed, int(time.time() * 1000)
            virtual = dialect.presented_stream_token(incoming) if dialect.stream_token_request else None
            # Kraken: the account's own token, fetched by keyproxy; Binance: the one the bot's virtual one stands for
            real = await self._stream_token(route, outcome) if virtual else core.real_stream_token(route, incoming,
                                                                                                   outcome)
            if real is not None and not virtual:
                self.aliases[real] = dialect.named_stream_token(incoming)
            charges = core.budget.spend(route, incoming, outcome)  # the exchange's own budget, shared with REST
            async with core.turn(route, spender_of(outcome)) as turn:
                out = core.sign(route, incoming, outcome, stream_token=real, turn=turn)
                self.pending[frame_id] = _Pending(route, out, outcome, time.perf_counter(),
                                                  pins_token=bool(virtual) and method == "subscribe", charges=charges)
                await self.upstream.send_str(out.body.decode())
        except Refused as e:
            await self._refuse(frame_id, e, outcome, method)
        except BadRequest as e:
            await self._refuse(frame_id, bad_request(e), outcome, method)
        except Exception as e:  # never a traceback to the bot; the log gets the kind only
            log.error("internal error", extra={"kind": type(e).__name__, "request_id": outcome.request_id})
            await self._refuse(frame_id, Refused("internal_error", "internal error"), outcome, method)
        except asyncio.CancelledError:  # the socket closed while the frame waited (a token fetch, a listing)
            if not outcome.signed:  # never went upstream: what it held on its way goes now, not in IN_FLIGHT_S
                core.in_flight.land(outcome)
            raise

    async def _stream_token(self, route: Route, outcome: Outcome) -> str:
        """The real token for a frame that presented a virtual one (already checked by the core as the bot's)."""
        now = self.edge._core.clock_ms()
        fresh = self.stream_token is not None and now - self.stream_token[1] < self.edge._limits.stream_token_reuse_ms
        if self.stream_token is None or not (self.token_pinned or fresh):
            self.stream_token = await self.edge.stream_token(route, outcome)
            self.token_pinned = False
        return self.stream_token[0]

    async def _session_answer(self, frame_id: Any, action: str, outcome: Outcome, key: str | None = None) -> None:
        """session.logon (its signature verified by the core), .logout and .status, answered by keyproxy: the
        exchange never sees the virtual key, and keyproxy signs each of the session's requests itself."""
        now = int(time.time() * 1000)
        if action == "logon":
            self.session, self.authorized_since = key, now
        elif action == "logout":
            self.session = self.authorized_since = None
        outcome.decision = "allow"
        result = {"apiKey": self.session, "authorizedSince": self.authorized_since,
                  "connectedSince": self.connected_since, "returnRateLimits": False, "serverTime": now,
                  "userDataStream": False}
        self.edge._record(outcome, 200)
        await self.bot_ws.send_str(json.dumps({"id": frame_id, "status": 200, "result": result}))

    async def _refuse(self, frame_id: Any, e: Refused, outcome: Outcome, method: str = "") -> None:
        outcome.code = e.code
        outcome.decision = "deny"
        status = STATUS.get(e.code, 400)
        dialect: Any = self.dialect
        shaped = (dialect.ws_refusal(frame_id, method, exchange_code(e.code), e.message, status)
                  if dialect is not None else {"id": frame_id, "status": status, "error": {"msg": e.message}})
        answer: dict[str, Any] = {**shaped, "keyproxy_error": e.code, "request_id": outcome.request_id}
        if e.retry_after is not None:
            answer["retryAfter"] = int(time.time() * 1000 + e.retry_after * 1000)
        self.edge._react(outcome)
        self.edge._record(outcome, status)
        if not self.bot_ws.closed:
            await self.bot_ws.send_str(json.dumps(answer))
        if e.code in ("unknown_bot", "bot_suspended", "key_quarantined", "expired_credential") and \
                outcome.bot in self.bots:
            self.closing = f"keyproxy: {e.code}"
            await self.bot_ws.close(code=CLOSE_POLICY, message=self.closing.encode())

    # --- exchange -> bot ------------------------------------------------------------------------

    async def _from_exchange(self) -> None:
        async for msg in self.upstream:
            real = self.stream_token[0] if self.stream_token is not None else None  # never sent on to a bot
            if msg.type == aiohttp.WSMsgType.TEXT:
                text = without_token(msg.data, real) if real else msg.data
                for used, virtual in self.aliases.items():  # an event naming its listenKey, say
                    text = text.replace(used, virtual)
                answered = self._answered(text)
                if answered is not None:  # a token it hands out remembered before the bot sees it, as on REST
                    p, status = answered
                    # the exchange's own count and refusal for rate, learned as from a REST answer's headers
                    body = text.encode()
                    self._observe_budget(p, status, body)
                    self.edge._core.relayed(p.route, p.out, status, body, p.outcome)
                journaled = None
                if answered is not None and answered[0].outcome.placed_by is not None:
                    # an order's answer: in the answers journal before the bot sees it, else in state.db
                    p, status = answered
                    journaled = self.edge._core.journaled(p.route, p.out, status, text.encode(), p.outcome)
                    if journaled is None:
                        self._learn(answered, text)
                        answered = None
                # anything else is sent on first, then learned from (the bot's next frame overlaps the bookkeeping;
                # what it would teach errs safe if a crash lost it: a cancel unseen keeps an order counted, a fill
                # of an order the book holds is found by reconciliation): queued now, learned at the end of this
                # loop turn, after the frame is written, and whether or not the bot ever reads it
                if answered is not None:
                    p, status = answered
                    self.edge._core.learn(p.route, p.out, status, text.encode(), p.outcome, journaled, later=True)
                try:  # before the bot reads the event: it must not name one of them in an order it sends on it
                    self.edge._core.learn_stream_clients(self.account, self.dialect, text)
                except Refused as e:
                    self.closing = f"keyproxy: {e.message}"
                    return
                try:
                    await self._to_bot(text)
                finally:
                    if answered is not None:
                        self._recorded(answered[0], answered[1])
                    self.edge._core.learn_stream(self.account, self.dialect, text)  # fills pushed by the exchange
            elif msg.type == aiohttp.WSMsgType.BINARY:
                if self.dialect is not None:  # a signed socket's answers are JSON text: one keyproxy cannot read
                    # would leave an order unlearned, so the socket ends (its frames on their way stay counted)
                    self.closing = "the exchange sent a binary frame keyproxy cannot read on this socket"
                    return
                data = msg.data.replace(real.encode(), b"") if real else msg.data
                for used, virtual in self.aliases.items():
                    data = data.replace(used.encode(), virtual.encode())
                await self._to_bot(data)
            else:
                return

    async def _to_bot(self, data: str | bytes) -> None:
        """A frame from the exchange sent on to the bot, unless its socket is gone. One the bot does not take
        within BOT_SEND_S ends its socket: a bot that stopped reading (its buffers full) held this loop, so the
        exchange's answers to its orders went unread and unlearned, and once they lapsed from the orders on their
        way it placed past its caps (session 25's review). What is on its way is still read and learned (`_drain`)."""
        if self.bot_gone:
            return
        try:
            async with asyncio.timeout(BOT_SEND_S):
                if isinstance(data, str):
                    await self.bot_ws.send_str(data)
                else:
                    await self.bot_ws.send_bytes(data)
        except ConnectionError:  # the bot's socket closed under it
            self.bot_gone = True
        except TimeoutError:
            self.bot_gone = True
            self.closing = "keyproxy: the bot stopped reading its socket"
            log.warning("a bot's socket stopped reading for %.0f s: closed", BOT_SEND_S,
                        extra={"account": self.account, "bots": sorted(self.bots)})
            if self.transport is not None:
                self.transport.abort()

    def _observe_budget(self, p: _Pending, status: int, body: bytes) -> None:
        """The exchange's own count and refusal for rate in an answer frame, learned as from a REST answer's
        headers. An answer keyproxy cannot read for them keeps its own count: the answer is still learned and
        relayed (an error here must not stop the relay, nor leave an order unlearned)."""
        dialect: Any = self.dialect
        try:
            usage, hold = dialect.answer_usage(status, body)
            self.edge._core.budget.observe(p.route, p.charges, status, usage, body, p.outcome, hold)
        except Exception as e:  # noqa: BLE001 - an exchange's odd frame: the kind is logged, the relay goes on
            log.warning("an answer frame's rate limits could not be read; keeping keyproxy's count",
                        extra={"account": self.account, "kind": type(e).__name__})

    def _answered(self, text: str) -> tuple[_Pending, int] | None:
        """The frame of ours this text answers, if any (taken off the pending ones), and its status."""
        if not self.pending:
            return None
        doc = loads(text)
        answer = self.dialect.ws_answer(doc) if isinstance(doc, dict) and self.dialect is not None else None
        if answer is not None and answer[0] is OLDEST_PENDING:  # an answer without an id (Coinbase's)
            answer = (next(iter(self.pending)), answer[1])
        if answer is None or answer[0] not in self.pending:
            return None
        key, status = answer
        p = self.pending.pop(key)
        if p.pins_token and status == 200:
            self.token_pinned = True
        p.outcome.upstream_status = status
        p.outcome.upstream_ms = (time.perf_counter() - p.started) * 1000
        return p, status

    def _learn(self, answered: tuple[_Pending, int], text: str) -> None:
        """What the answer confirms (open orders, positions, the key's standing), then its records."""
        p, status = answered
        self.edge._core.learn(p.route, p.out, status, text.encode(), p.outcome)
        self._recorded(p, status)

    def _recorded(self, p: _Pending, status: int) -> None:
        """The answered frame's anomaly rules now, its audit line, metrics and log line just after."""
        self.edge._react(p.outcome)
        # the outcome's audit line, metrics and log line just after the answer is sent on, as REST's (the
        # request.forward line, written before the frame went upstream, is what fails closed)
        asyncio.get_running_loop().call_soon(self.edge._record, p.outcome, status)

    # --- live controls ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Close the socket once a bot that used it is revoked or suspended, a credential it authenticated with
        is rotated out or expires, or the account's key is quarantined or rotated (the exchange's socket was
        opened, and its session logged in, with the old key: the bot reconnects onto the new one); in a fleet,
        once this instance's state is stale (a revocation made through another instance may be waiting)."""
        while True:
            await asyncio.sleep(self.edge._limits.watch_interval)
            snap = self.edge._core.snapshot()
            sync = self.edge._admission.sync
            if self.bots and sync is not None and sync.stale():  # a revocation elsewhere may be waiting for it
                self.closing = "keyproxy: the fleet's shared state cannot be reached; reconnect when it is back"
                return
            account = snap.accounts.get(self.account)
            if account is None or account.info.status != "active":
                self.closing = "keyproxy: the account's key is not active"
                return
            if account.info.version != self.key_version:
                self.closing = "keyproxy: the account's key was rotated; reconnect"
                return
            for name in self.bots:
                bot = snap.bot_named(name)
                if bot is None or bot.info.status != "active":
                    self.closing = f"keyproxy: bot {name} is no longer active"
                    return
                if (self.private_stream or name in self.readers) and not may_read(bot):  # what it reads goes on
                    self.closing = f"keyproxy: bot {name} may no longer read this account"
                    return
            now = self.edge._core.clock_ms() / 1000
            for credential in self.credentials:
                entry = snap.bot_by_credential(credential)
                if entry is None or entry.valid_until is not None and now >= entry.valid_until:
                    self.closing = "keyproxy: a credential used on this socket was rotated out or expired"
                    return


def bad_request(e: BadRequest) -> Refused:
    return Refused("bad_request", e.message)
