"""One bot request, top to bottom: route, identify, check, sign, forward, relay.

Steps 1-5 run before a single byte goes upstream; each refuses by raising
`Refused`. The server module renders refusals and records the outcome.
"""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

from keyproxy.exchanges.base import (
    AuthFailure, BadRequest, Endpoint, EndpointClass, IncomingRequest, OutboundRequest, SignContext,
)
from keyproxy.policy.decide import Counters, decide, notional
from keyproxy.policy.model import RequestFacts, Usage
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import AccountEntry, BotEntry, Snapshot
from keyproxy.proxy.replay import ReplayCache
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.secret import Secret
from keyproxy.state import NonceSequence, StateStore, UsageBook

TOKEN_HEADER = "x-keyproxy-token"
# Request headers a bot may pass on to the exchange; everything else (cookies,
# forwarding headers, the bot's own auth) stays here.
FORWARDED_REQUEST_HEADERS = ("accept", "user-agent")
SMALL_RESPONSE = 1 << 20


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_body_bytes: int = 1 << 20
    body_timeout: float = 10.0
    upstream_timeout: float = 10.0
    max_response_bytes: int = 64 << 20


@dataclass
class Outcome:
    """What happened to one request, for the log line and (later) the audit trail."""

    request_id: str
    method: str = ""
    account: str | None = None
    bot: str | None = None
    endpoint_class: str | None = None
    endpoint: str | None = None
    decision: str = "deny"
    code: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    started: float = field(default_factory=time.perf_counter)
    adapter: object | None = None  # for the exchange-shaped fields of an error answer
    source_ip: str | None = None
    path: str | None = None
    account_known: bool = False  # only known account names may become metric labels
    track: tuple[str, RequestFacts] | None = None  # (bot, facts) when the bot has an open-order cap
    key_rejected: bool = False  # the exchange said the real key is invalid, expired or not allowed
    facts: RequestFacts | None = None
    notional: Decimal | None = None


def new_request_id() -> str:
    return secrets.token_hex(8)


class NonceTurn:
    """An account's nonce order, held from the nonce's issue until the exchange has answered.

    Kraken refuses a nonce below one it has already seen, so a request must not overtake the one
    issued before it (on another connection, say): requests that carry keyproxy's nonce for one
    key go to the exchange one at a time, as a single client's would.
    """

    def __init__(self, lock: asyncio.Lock | None) -> None:
        self._lock = lock

    async def __aenter__(self) -> NonceTurn:
        if self._lock is not None:
            await self._lock.acquire()
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Pipeline:
    def __init__(self, snapshot: Callable[[], Snapshot], clients: UpstreamClients, limits: ProxyLimits,
                 before_forward: Callable[[Outcome], None] = lambda o: None,
                 nonces: NonceSequence | None = None, sequences: StateStore | None = None,
                 usage: UsageBook | None = None,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._snapshot = snapshot
        self._before_forward = before_forward
        self._clients = clients
        self._nonces = nonces
        self._sequences = sequences
        self.usage = usage
        self._limits = limits
        self._clock_ms = clock_ms
        self.replays = ReplayCache()
        self.counters = Counters()
        self.prices: dict[tuple[str, str], Decimal] = {}  # (account, symbol) -> last price seen
        self._nonce_order: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, request: web.BaseRequest, outcome: Outcome) -> web.StreamResponse:
        snap = self._snapshot()
        outcome.method, outcome.source_ip = request.method, request.remote
        account_name, path, query = split_target(request.raw_path)
        outcome.account, outcome.path = account_name, path
        account = snap.accounts.get(account_name)
        if account is None:
            raise Refused("unknown_account", f"no account named {account_name[:64]!r}")
        outcome.account_known = True
        if account.adapter is None or account.upstream is None or account.key is None:
            raise Refused("unknown_account", f"account {account_name!r}: exchange "
                          f"{account.info.exchange} is not supported by this version")
        adapter = account.adapter
        outcome.adapter = adapter
        endpoint = adapter.classify(request.method, path)
        origin = account.upstream.origin_for(path)
        if endpoint is None or origin is None:
            raise Refused("unknown_endpoint", f"{request.method} {path[:200]} is not an endpoint keyproxy "
                          f"knows for {adapter.name}" + ("" if origin else " in this account's environment"))
        outcome.endpoint_class, outcome.endpoint = endpoint.cls.value, endpoint.name
        body = await self._read_body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        incoming = IncomingRequest(request.method, path, query, headers, body,
                                   host=request.headers.get("Host", ""), mount=f"/{account_name}")
        refine = getattr(adapter, "classify_request", None)  # where the body decides the class (Coinbase v2 sends)
        if refine is not None:
            endpoint = refine(incoming) or endpoint
            outcome.endpoint_class, outcome.endpoint = endpoint.cls.value, endpoint.name
        now_ms = self._clock_ms()
        bot = self._identify(snap, account, incoming, outcome, now_ms)
        if bot is None:
            if endpoint.cls is not EndpointClass.PUBLIC:
                raise Refused("unknown_bot", "no bot credential: send the virtual API key, or X-Keyproxy-Token")
            incoming = _strip_or_refuse(adapter, incoming)
        else:
            peer = request.remote or ""
            if not bot.allows_ip(peer):
                raise Refused("ip_denied", f"bot {bot.info.name!r} may not connect from {peer}")
            incoming = self._authenticate(adapter, bot, endpoint, incoming, now_ms)
            facts = self._check_policy(snap, account, bot, endpoint, incoming, now_ms, outcome)
            if bot.policy.max_open_orders is not None:
                outcome.track = (bot.info.name, facts)
        needs_nonce = adapter.needs_nonce and endpoint.cls is not EndpointClass.PUBLIC
        async with NonceTurn(self._nonce_order[account.info.name] if needs_nonce else None) as turn:
            nonce = None
            if needs_nonce:
                if self._nonces is None:
                    raise Refused("unavailable", f"{adapter.name} needs keyproxy's nonce store")
                nonce = self._nonces.next(account.info.name)
            ctx = SignContext(origin, account.upstream.environment.name, now_ms, nonce)
            try:
                outbound = adapter.sign(incoming, account.key, endpoint, ctx)
            except BadRequest as e:
                raise Refused("bad_request", e.message) from None
            for name in FORWARDED_REQUEST_HEADERS:
                if name in headers and name not in {h.lower() for h in outbound.headers}:
                    outbound.headers[name] = headers[name]
            self._before_forward(outcome)  # the audit line is written before anything goes upstream
            outcome.decision = "allow"
            return await self._forward(request, outbound, endpoint, account, outcome, turn)

    def _check_policy(self, snap: Snapshot, account: AccountEntry, bot: BotEntry, endpoint: Endpoint,
                      req: IncomingRequest, now_ms: int, outcome: Outcome) -> RequestFacts:
        """Scope, kill switch, hours, rate and trading limits: one pure decision, then its charges."""
        assert account.adapter is not None
        try:
            facts = account.adapter.facts(req, endpoint)
        except BadRequest as e:
            raise Refused("bad_request", e.message) from None
        outcome.facts = facts
        now = now_ms / 1000
        policy, name = bot.policy, bot.info.name
        usage = Usage()
        if self.usage is not None:
            usage = Usage(
                open_orders=self.usage.open_orders(name) if policy.max_open_orders and facts.action == "order" else 0,
                daily_notional=self.usage.daily("notional", name, now) if policy.daily_notional_cap else Decimal(0),
                daily_withdrawn=(self.usage.daily("withdraw", name, now, facts.asset or "")
                                 if policy.daily_withdrawal_cap and facts.action == "withdraw" else Decimal(0)))
        last_price = self.prices.get((account.info.name, facts.symbol)) if facts.symbol else None
        throttle = snap.throttles.get(name)
        decision = decide(facts, endpoint.cls.value, policy, self.counters, now, bot=name,
                          account=account.info.name, halted=snap.halt_reason(name, account.info.name),
                          last_price=last_price, account_limits=snap.account_limits.get(account.info.name),
                          usage=usage, throttle=throttle[1] if throttle and now < throttle[0] else None)
        if facts.action == "order":
            outcome.notional = notional(facts, last_price)
        if not decision.allow:
            where = f" for {endpoint.name}" if decision.code == "scope_denied" else ""
            raise Refused(decision.code, f"bot {name!r}: {decision.detail}{where}", decision.retry_after)
        self.counters.apply(decision.charges, now)
        if self.usage is not None:  # committed before the request goes on (a crash overstates, never forgets)
            if decision.notional is not None and policy.daily_notional_cap:
                self.usage.add_daily("notional", name, decision.notional, now)
            if decision.withdrawal is not None and policy.daily_withdrawal_cap:
                self.usage.add_daily("withdraw", name, decision.withdrawal, now, facts.asset or "")
        return facts

    def _identify(self, snap: Snapshot, account: AccountEntry, req: IncomingRequest,
                  outcome: Outcome, now_ms: int) -> BotEntry | None:
        token = req.headers.get(TOKEN_HEADER)
        if token is not None:
            bot = snap.bots_by_token.get(snap.token_digest(Secret(token)))
            if bot is None or bot.info.mode != "token":
                raise Refused("unknown_bot", "unknown keyproxy token")
        else:
            assert account.adapter is not None
            key_id = account.adapter.presented_key(req)
            if key_id is None:
                return None
            bot = snap.bots_by_key.get(key_id)
            if bot is None:
                raise Refused("unknown_bot", "unknown API key")
        # a bot's credential opens its own account only (never another bot's account)
        if bot.info.account != account.info.name:
            raise Refused("unknown_bot", "this credential does not belong to this account")
        outcome.bot = bot.info.name  # named in the record even when refused below
        if bot.info.status == "suspended":
            raise Refused("bot_suspended", f"bot {bot.info.name!r} is suspended (an anomaly rule or an operator); "
                          "an operator lifts it with `keyproxy bot restore`")
        if bot.info.status != "active":
            raise Refused("unknown_bot", f"bot {bot.info.name!r} is {bot.info.status}")
        if bot.valid_until is not None and now_ms / 1000 >= bot.valid_until:
            raise Refused("expired_credential", f"this credential of bot {bot.info.name!r} has expired "
                          "(TTL or a rotation's grace period); renew or use the new credential")
        if account.info.status != "active":
            raise Refused("key_quarantined", f"account {account.info.name!r}'s key is {account.info.status}: "
                          "no request uses it until an operator restores or rotates it")
        return bot

    def _authenticate(self, adapter: object, bot: BotEntry, endpoint: Endpoint, req: IncomingRequest,
                      now_ms: int) -> IncomingRequest:
        if bot.info.mode == "token":
            return _strip_or_refuse(adapter, req)
        assert bot.key is not None
        try:
            verified = adapter.verify(req, bot.key, endpoint, now_ms)  # type: ignore[attr-defined]
        except AuthFailure as e:
            raise Refused(e.code, e.message) from None
        except BadRequest as e:
            raise Refused("bad_request", e.message) from None
        if verified.sequence is not None:
            # the bot's own nonce must increase (Kraken's rule), durably: a restart does not reopen old ones
            if self._sequences is None or not self._sequences.advance_bot_sequence(bot.info.name, verified.sequence):
                raise Refused("replayed_request", "nonce is not above this bot's previous one")
        if verified.replay_id:
            seen = self.replays.first_sighting(verified.replay_id, verified.expires_ms, now_ms)
            if seen is None:
                raise Refused("unavailable", "too many signed requests in flight; retry shortly")
            if not seen:
                raise Refused("replayed_request", "this signed request was already received")
        return verified.request

    def _track_open_orders(self, adapter: object, track: tuple[str, RequestFacts], out: OutboundRequest,
                           body: bytes) -> None:
        """Keep the bot's open-order count: +1 per resting order, -1 per cancel, reset by its own queries."""
        if self.usage is None:
            return
        bot, facts = track
        symbol = facts.symbol or "*"
        if facts.action == "order":
            rests = getattr(adapter, "order_rests", None)
            if rests is None or rests(out.path, body):
                self.usage.change_open_orders(bot, symbol, +1)
        elif facts.action == "cancel":
            self.usage.change_open_orders(bot, symbol, -1)
        else:
            counted = getattr(adapter, "open_orders_count", None)
            result = counted(out.path, out.query, body) if counted else None
            if result is not None:
                self.usage.set_open_orders(bot, result[0], result[1])

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self._limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused("body_too_large", f"request body over {limit} bytes")
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

    async def _forward(self, request: web.BaseRequest, out: OutboundRequest, endpoint: Endpoint,
                       account: AccountEntry, outcome: Outcome, turn: NonceTurn) -> web.StreamResponse:
        assert account.upstream is not None and account.adapter is not None
        session = self._clients.session(account.upstream.insecure_loopback)
        timeout = aiohttp.ClientTimeout(total=self._limits.upstream_timeout, sock_connect=5)
        started = time.perf_counter()
        try:
            async with session.request(out.method, URL(out.url, encoded=True), headers=out.headers,
                                       data=out.body or None, allow_redirects=False, timeout=timeout) as resp:
                turn.release()  # the exchange has seen the nonce: the next request may go
                outcome.upstream_status = resp.status
                headers = _relayed_headers(resp.headers, account.adapter.relayed_response_headers)
                limit = self._limits.max_response_bytes
                if resp.content_length is not None and resp.content_length > limit:
                    raise Refused("upstream_error", "exchange answer larger than the configured limit")
                if resp.content_length is not None and resp.content_length <= SMALL_RESPONSE:
                    body = await resp.read()
                    outcome.upstream_ms = (time.perf_counter() - started) * 1000
                    if endpoint.cls is EndpointClass.PUBLIC and resp.status == 200:
                        for symbol, price in account.adapter.prices(out.path, body).items():
                            self.prices[(account.info.name, symbol)] = price
                    rejected = getattr(account.adapter, "key_rejected", None)  # some exchanges answer 200 errors
                    if rejected is not None and endpoint.cls is not EndpointClass.PUBLIC:
                        outcome.key_rejected = bool(rejected(resp.status, body))
                    if outcome.track is not None and 200 <= resp.status < 300:
                        self._track_open_orders(account.adapter, outcome.track, out, body)
                    return web.Response(status=resp.status, body=body, headers=headers)
                stream = web.StreamResponse(status=resp.status, headers=headers)
                await stream.prepare(request)
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise ConnectionAbortedError("exchange answer over the size limit")
                    await stream.write(chunk)
                await stream.write_eof()
                outcome.upstream_ms = (time.perf_counter() - started) * 1000
                return stream
        except TimeoutError:
            outcome.upstream_ms = (time.perf_counter() - started) * 1000
            if endpoint.cls in (EndpointClass.TRADE, EndpointClass.WITHDRAW, EndpointClass.TRANSFER):
                raise Refused("upstream_timeout", "the exchange did not answer in time; the request's fate is "
                              "unknown: query its status before resubmitting (keyproxy never retries it)") from None
            raise Refused("upstream_timeout", "the exchange did not answer in time") from None
        except aiohttp.ClientError as e:
            raise Refused("upstream_error", f"cannot reach the exchange ({type(e).__name__})") from None


def _strip_or_refuse(adapter: object, req: IncomingRequest) -> IncomingRequest:  # noqa: D103
    try:
        return adapter.strip(req)  # type: ignore[attr-defined,no-any-return]
    except BadRequest as e:
        raise Refused("bad_request", e.message) from None


def _relayed_headers(upstream: object, allowed: tuple[str, ...]) -> dict[str, str]:
    exact = {a for a in allowed if not a.endswith("*")}
    prefixes = tuple(a[:-1] for a in allowed if a.endswith("*"))
    out = {}
    for name, value in upstream.items():  # type: ignore[attr-defined]
        low = name.lower()
        if low in exact or (prefixes and low.startswith(prefixes)):
            out[name] = value
    return out


def split_target(raw: str) -> tuple[str, str, str]:
    """`/<account>/<path>?<query>` -> (account, /path, query), refusing anything that could steer it.

    The path stays percent-encoded. Refused: absolute-form targets, `..` or
    `.` segments, empty segments (`//host`), backslashes, and encoded `/`,
    `\\` or `.` in the path, since an upstream could decode them differently.
    """
    if not raw.startswith("/"):
        raise Refused("bad_request", "request target must be a path (absolute-form is refused)")
    path, _, query = raw.partition("?")
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered or "%2e" in lowered or "%00" in lowered:
        raise Refused("bad_request", "encoded separators or dots are not allowed in the path")
    segments = path.split("/")[1:]
    if len(segments) < 2 or any(s in ("", ".", "..") for s in segments) or "@" in path:
        raise Refused("bad_request", "path must be /<account>/<exchange path> with no empty, . or .. segments")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in raw):
        raise Refused("bad_request", "request target has characters outside printable ASCII")
    return segments[0], "/" + "/".join(segments[1:]), query
