"""The transport-free decision core: one bot message in, a refusal or a signed message out.

Every transport (REST today, WebSocket frames next) is a thin edge over this: it turns what arrived
into an `IncomingRequest`, asks `Core` to route, admit and sign it, sends the `OutboundRequest` its
own way, and hands the exchange's answer back to `learn`. Identify, verify, replay, standing, source
address, policy, the audit line before forwarding, signing and the bookkeeping of answers exist once,
here (like httpx's auth flows and mitmproxy's layers, nothing here touches a socket). Two parts of `Core` live
beside it: who sent a message (core_identity.py) and what an answer teaches (core_answers.py); `Route` and
`Outcome` are in outcome.py.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, NoReturn

from keyproxy.exchanges.open_orders import SWITCHES
from keyproxy.fleet.charges import SharedCharges
from keyproxy.exchanges.base import (
    Adapter, BadRequest, Endpoint, EndpointClass, IncomingRequest, OutboundRequest,
    SignContext, UnknownEndpoint,
)
from keyproxy.policy.budget import Governor
from keyproxy.policy.decide import PRICED_CODES, Counters, Decision, decide, passes_halt, price_band
from keyproxy.policy.valuation import total_notional
from keyproxy.policy.model import RequestFacts, Usage
from keyproxy.proxy.exchange_budget import ExchangeBudget
from keyproxy.proxy.fleet_share import gather
from keyproxy.proxy.in_flight import InFlight
from keyproxy.proxy.nonce_turn import OWN, FairTurn, NonceTurn
from keyproxy.proxy.markets import REFERENCE_MAX_AGE, MarketBook, NeedReference, scope_reference
from keyproxy.proxy.answer_journal import AnswerJournal
from keyproxy.proxy.core_answers import CoreAnswers
from keyproxy.proxy.core_identity import CoreIdentity, strip_or_refuse
from keyproxy.proxy.learn_queue import LearnQueue
from keyproxy.proxy.order_owners import NeedOrders, NeedResting, OrderOwners
from keyproxy.proxy.outcome import Outcome, Route
from keyproxy.proxy.sweeps import NeedQuiet, Sweeps
from keyproxy.proxy.risk import RiskDesk
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import AccountEntry, BotEntry, Snapshot
from keyproxy.proxy.replay import ReplayCache
from keyproxy.proxy.stream_tokens import Held, StreamTokens
from keyproxy.state import StateStore
from keyproxy.nonces import NonceSequence
from keyproxy.usage import UsageBook

HEARTBEAT_PATH = "/_keyproxy/heartbeat"  # under an account: answered by keyproxy, never forwarded
HEARTBEAT_ENDPOINT = Endpoint(EndpointClass.READ, "keyproxy:heartbeat")
log = logging.getLogger("keyproxy.proxy")


class Core(CoreIdentity, CoreAnswers):
    """The decision for one message, whatever carried it; its counters, caches and stores live here."""

    def __init__(self, snapshot: Callable[[], Snapshot], before_forward: Callable[[Outcome], None] = lambda o: None,
                 nonces: NonceSequence | None = None, sequences: StateStore | None = None,
                 usage: UsageBook | None = None,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 governor: Governor | None = None) -> None:
        self._snapshot = snapshot
        self._before_forward = before_forward
        self._nonces = nonces
        self._sequences = sequences
        self.usage = usage
        self.clock_ms = clock_ms
        self.replays = ReplayCache()
        self.counters = Counters()
        self.in_flight = InFlight()  # orders sent, answers not yet read: they count against the caps
        self.sweeps = Sweeps(self.in_flight, self._account_of, lambda: self.clock_ms() / 1000)
        # the exchanges' own rate budgets, shared by every bot (its governor None: not governed)
        self.budget = ExchangeBudget(governor, self.in_flight, clock_ms)
        self.markets = MarketBook(lambda: self.clock_ms() / 1000)  # prices, contract sizes, market names
        # each bot's orders and positions from confirmed fills, its loss limits (docs/risk.md)
        self.risk = RiskDesk(sequences, self.markets, lambda: self.clock_ms() / 1000)
        self.owners = OrderOwners(usage, sequences, self.risk.book, clock_ms)  # who placed which order; open orders
        self.risk.book.on_spawn = self.owners.spawned  # what a triggered conditional order became is its bot's
        self.risk.book.on_spawn_unbooked = self.owners.spawned_unbooked
        self.risk.book.on_disown = self.owners.disowned  # an order the exchange made before the bot asked: not its
        self.tokens = StreamTokens(clock_ms)  # listenKeys and virtual stream tokens, bound to their bot's credential
        self.journal: AnswerJournal | None = None  # the daemon's: an order's answer written down before it is relayed
        # answers relayed before their bookkeeping, learned together at the end of the loop turn (learn_queue.py)
        self.learning = LearnQueue(sequences, self._learn_private, self._unlearned, self._learned) \
            if sequences is not None else None
        self._nonce_order: defaultdict[str, FairTurn] = defaultdict(FairTurn)
        self.last_seen: dict[str, float] = {}  # bot -> when it last sent an authenticated request (s)
        # in a fleet ([shared_state]) the counters that must hold across instances are charged by the fleet's
        # gate (fleet/gate.py, one Redis round trip), not here: see `SharedCharges`
        self.fleet = False
        self.shared_nonces: Any = None  # fleet/nonces.py FleetNonces: a real key's nonces across the fleet
        self.book_seen: Callable[[str], int] = lambda bot: 0  # fleet/book.py: the bot's book entries applied here

    @property
    def governor(self) -> Governor | None:
        return self.budget.governor

    def snapshot(self) -> Snapshot:
        return self._snapshot()

    def _account_of(self, bot: str) -> str | None:
        entry = self._snapshot().bot_named(bot)
        return entry.info.account if entry is not None else None

    def account(self, account_name: str, outcome: Outcome, snap: Snapshot | None = None) -> AccountEntry:
        """The account a message names, served by this version; refused otherwise."""
        snap = snap or self._snapshot()
        outcome.account = account_name
        account = snap.accounts.get(account_name)
        if account is None:
            raise Refused("unknown_account", f"no account named {account_name[:64]!r}")
        outcome.account_known = True
        if account.adapter is None or account.upstream is None or account.key is None:
            raise Refused("unknown_account", f"account {account_name!r}: exchange "
                          f"{account.info.exchange} is not supported by this version")
        outcome.adapter = account.adapter
        return account

    def route(self, account_name: str, method: str, path: str, outcome: Outcome,
              dialect: Adapter | None = None) -> Route:
        """Account, endpoint (from the adapter's fixed table) and origin (from its host table), or a refusal.

        `dialect` speaks for another transport's messages (a WebSocket API's frames); default: the REST adapter.
        """
        snap = self._snapshot()
        account = self.account(account_name, outcome, snap)
        adapter = dialect or account.adapter
        assert adapter is not None and account.upstream is not None
        endpoint = adapter.classify(method, path)
        origin = account.upstream.origin_for(account.adapter.websocket_origin_path(path) if dialect else path)
        if endpoint is None or origin is None:
            retired = adapter.retired(method, path)
            raise Refused("unknown_endpoint", retired or f"{method} {path[:200]} is not an endpoint keyproxy "
                          f"knows for {adapter.name}" + ("" if origin else " in this account's environment"))
        outcome.endpoint_class, outcome.endpoint = endpoint.cls.value, endpoint.name
        return Route(snap, account, adapter, endpoint, origin)

    def admit(self, route: Route, incoming: IncomingRequest, peer: str, outcome: Outcome,
              session: str | None = None) -> tuple[Route, IncomingRequest]:
        """Identify, verify, standing, source address and policy; the request with the bot's auth removed.

        `session` is the key id a connection logged on with (a WebSocket API `session.logon` whose
        signature this core verified): a message carrying no credential of its own is that bot's."""
        adapter, account = route.adapter, route.account
        try:
            endpoint = adapter.classify_request(incoming) or route.endpoint  # where the body decides the class
        except UnknownEndpoint as e:
            raise Refused("unknown_endpoint", e.message) from None
        except BadRequest as e:
            raise Refused("bad_request", e.message) from None
        if endpoint is not route.endpoint:
            route = Route(route.snap, account, adapter, endpoint, route.origin)
            outcome.endpoint_class, outcome.endpoint = endpoint.cls.value, endpoint.name
        now_ms = self.clock_ms()
        bot = self._identify(route.snap, account, adapter, incoming, outcome, now_ms)
        token = adapter.presented_stream_token(incoming) if bot is None else None
        logged_on = bot is None and (session is not None or token is not None)
        if token is not None:  # proven by the token keyproxy handed to exactly one bot
            held = self.tokens.held(route.snap, account.info.name, token)
            bot = held.bot if held is not None else None
            if bot is None or bot.info.account != account.info.name:
                raise Refused("unknown_bot", "this stream token was not obtained through keyproxy for this account: "
                              "request it through keyproxy")
            outcome.bot = bot.info.name
        elif logged_on:
            bot = route.snap.bots_by_key.get(session)  # type: ignore[arg-type]
            if bot is None or bot.info.account != account.info.name:
                raise Refused("unknown_bot", "the session's API key is no longer known: log on again")
            outcome.bot = bot.info.name
        if bot is None:
            if endpoint.cls is not EndpointClass.PUBLIC:
                raise Refused("unknown_bot", "no bot credential: send the virtual API key, or X-Keyproxy-Token")
            return route, strip_or_refuse(adapter, incoming)
        # the signature first: until it checks out, the request has not shown it is the bot it names,
        # so nothing below (and no anomaly finding) may act on that bot
        if self.fleet:
            outcome.shared = SharedCharges(bot.info.name)
        incoming, proven = self._authenticate(adapter, bot, endpoint, incoming, now_ms, logged_on, outcome.shared,
                                              outcome)
        outcome.bot, outcome.authenticated, outcome.credential = bot.info.name, True, bot.credential
        outcome.proven = proven
        if proven:  # the bot is alive (heartbeat_seconds): a key id alone, which is no secret, says nothing of it
            self.last_seen[bot.info.name] = now_ms / 1000
        elif not bot.allows_ip(peer):  # whoever sent a key id from elsewhere learns nothing of the bot, not even
            raise Refused("unknown_bot", "unknown API key")  # whether its credential is still valid
        self._check_standing(account, bot, now_ms)
        if not bot.allows_ip(peer):
            raise Refused("ip_denied", f"bot {bot.info.name!r} may not connect from {peer}")
        return self._decided(route, adapter, bot, incoming, now_ms, outcome)

    def _decided(self, route: Route, adapter: Adapter, bot: BotEntry, incoming: IncomingRequest, now_ms: int,
                 outcome: Outcome, fetched: bool = False) -> tuple[Route, IncomingRequest]:
        """The policy decision of an authenticated request. When it needs reference prices keyproxy does
        not hold fresh (`NeedReference`) or the orders resting where a cancel-all would cancel (`NeedResting`), the
        edge fetches them and resumes here once."""
        try:
            facts = self._check_policy(route.snap, route.account, adapter, bot, route.endpoint, incoming, now_ms,
                                       outcome, fetched)
        except (NeedReference, NeedResting, NeedOrders) as need:
            need.resume = lambda: self._decided(route, adapter, bot, incoming, self.clock_ms(), outcome, True)
            raise
        except NeedQuiet as wait:  # decided again once the other bots' requests before it went (sweeps.py), on
            # references fetched anew if the wait made them old
            wait.resume = lambda: self._decided(route, adapter, bot, incoming, self.clock_ms(), outcome)
            raise
        if bot.policy.max_open_orders is not None:
            outcome.track = (bot.info.name, facts)
            outcome.opens_mark = self.owners.opens_mark(bot.info.name)
            outcome.opens_since = now_ms
        if facts.action is None and route.endpoint.cls is EndpointClass.TRADE:
            outcome.unread_by = (bot.info.name, facts)
        if adapter.client_ids_answer_existing and (facts.action in ("order", "amend") or facts.client_id):
            # the bot's from its decision on: a read or stream showing its order before the answer is read, or after
            # a timeout (its retry is answered with that order), never makes the client id one of no bot's
            self.owners.claim_client_ids(route.account.info.name, adapter, bot.info.name, facts)
        if facts.action in ("order", "amend"):
            outcome.placed_by, outcome.decided_ms = (bot.info.name, facts), now_ms
            # on its way from this decision on: a request waiting for the account's nonce turn (Kraken) counts
            # against the caps of every decision after it; a refusal or a failure before sending gives it back
            # (`InFlight.land`); `sign` counts it again from its sending (a long wait must not expire it)
            self._on_its_way(outcome, now_ms / 1000)
        return route, incoming

    def _on_its_way(self, outcome: Outcome, now: float) -> None:
        """An order (or an amend raising sizes) counted on its way until its answer is read (IN_FLIGHT_S at most)."""
        if outcome.placed_by is None:
            return
        bot, facts = outcome.placed_by
        if facts.action == "order":
            self.in_flight.sent(bot, outcome.request_id, facts.placed() or (facts,), now)
        elif outcome.adds:  # an amend raising orders' sizes: counted on its way as what it adds
            self.in_flight.sent(bot, outcome.request_id, outcome.adds, now, places=False)

    def redecide(self, route: Route, incoming: IncomingRequest, peer: str, outcome: Outcome
                 ) -> tuple[Route, IncomingRequest]:
        """A fleet: the decision taken again on newer shared state (another instance changed something since
        this one decided). The signature stays verified; standing, source address and policy are decided
        anew on the new snapshot, with nothing charged twice."""
        snap = self._snapshot()
        account = self.account(route.account.info.name, outcome, snap)
        # the credential the signature was checked with, not the bot's name: one rotated out since (`bot rotate
        # --grace 0` after a leak) is gone from the new snapshot, or carries its grace's end
        bot = snap.bot_by_credential(outcome.credential) if outcome.credential else None
        if bot is None or bot.info.name != outcome.bot or bot.info.account != account.info.name \
                or bot.info.status not in ("active", "suspended"):
            raise Refused("unknown_bot", "unknown API key")
        now_ms = self.clock_ms()
        self._check_standing(account, bot, now_ms)
        if not bot.allows_ip(peer):
            raise Refused("ip_denied", f"bot {bot.info.name!r} may not connect from {peer}")
        if outcome.shared is not None:
            outcome.shared.reset_policy()
        route = replace(route, snap=snap, account=account)
        return self._decided(route, route.adapter, bot, incoming, now_ms, outcome)

    def turn(self, route: Route, who: str) -> NonceTurn:
        """The account's nonce order, for adapters whose real key needs keyproxy's own nonce sequence; `who` asks
        (the spender's name: its requests take their turns round-robin with every other asker's)."""
        adapter = route.adapter
        needs = adapter.needs_nonce and route.endpoint.cls is not EndpointClass.PUBLIC
        in_order = needs and adapter.ordered_nonces
        name = route.account.info.name
        return NonceTurn(self._nonce_order[name] if in_order else None, self.shared_nonces if needs else None, name,
                         in_order, adapter.nonce_in_ms, who)

    def account_turn(self, account: str, adapter: Any = None, who: str = OWN) -> NonceTurn:
        """The account's nonce order, for keyproxy's own calls with the real key (a Kraken WebSocket token); `who`:
        OWN (served first) for its safety calls."""
        ordered = adapter is None or adapter.ordered_nonces
        return NonceTurn(self._nonce_order[account], self.shared_nonces if adapter is not None else None, account,
                         ordered, adapter.nonce_in_ms if adapter is not None else False, who)

    def next_nonce(self, account: str, exchange: str, in_ms: bool = False, turn: NonceTurn | None = None) -> int:
        """The next nonce of the account's real key, from keyproxy's persistent sequence (µs, or ms); in a
        fleet above every nonce another instance used (`turn`)."""
        if self._nonces is None:
            raise Refused("unavailable", f"{exchange} needs keyproxy's nonce store")
        if turn is not None and turn.nonce is not None:  # the fleet's, exactly; this instance's sequence follows it
            self._nonces.next(account, per_ms=in_ms, floor=turn.nonce - 1)
            nonce = turn.nonce
        else:
            nonce = self._nonces.next(account, per_ms=in_ms, floor=turn.floor if turn is not None else 0)
        if turn is not None:
            turn.issued = nonce
        return nonce

    def sign(self, route: Route, incoming: IncomingRequest, outcome: Outcome,
             stream_token: str | None = None, turn: NonceTurn | None = None) -> OutboundRequest:
        """Signed with the real key, then the audit line: nothing goes upstream unless it was written.
        Call inside `turn(route)` (a nonce is issued here for adapters that need one). `stream_token`: the
        exchange's own token for a frame that presented a virtual one."""
        adapter, account = route.adapter, route.account
        assert account.upstream is not None and account.key is not None
        try:
            if route.snap is not self._snapshot() and outcome.credential is not None:
                self._still_standing(route, outcome)
            nonce = None
            if adapter.needs_nonce and route.endpoint.cls is not EndpointClass.PUBLIC:
                nonce = self.next_nonce(account.info.name, adapter.name, adapter.nonce_in_ms, turn)
            ctx = SignContext(route.origin, account.upstream.environment.name, self.clock_ms(), nonce, stream_token)
            try:
                outbound = adapter.sign(incoming, account.key, route.endpoint, ctx)
            except BadRequest as e:
                raise Refused("bad_request", e.message) from None
            self._before_forward(outcome)  # the audit line is written before anything goes upstream
        except BaseException:
            self.in_flight.land(outcome)  # never sent
            raise
        outcome.decision, outcome.signed, outcome.sent_token = "allow", True, stream_token
        self._on_its_way(outcome, self.clock_ms() / 1000)  # counted since its decision: its 60 s run from now
        return outbound

    def check_local_open_orders(self, shared: SharedCharges) -> None:
        """A fleet's order passing on this instance's own counters (Redis out of reach: a reduce-only order): the
        bot's open-order cap counted by this instance alone, as docs/fleet.md says, not left uncounted (the decision
        leaves it to the gate; session 25's review: ten reduce-only orders rested past a cap of two). The bot's
        orders on their way include this one (`_on_its_way`)."""
        if shared.open_orders is None or self.usage is None:
            return
        cap = shared.open_orders[1]
        held = self.usage.open_orders(shared.bot) + self.in_flight.count(shared.bot, self.clock_ms() / 1000)
        if held > cap:
            raise Refused("open_orders_exceeded", f"bot {shared.bot!r}: {held - shared.open_orders[0]} open orders "
                          f"through this instance (the fleet's count cannot be reached): the cap is {cap}")

    def _still_standing(self, route: Route, outcome: Outcome) -> None:
        """The configuration changed between the decision and the signing (the request waited for a Kraken key's
        nonce turn, a fleet's lease held by a frozen instance, a slow gate): a bot revoked, suspended or halted
        meanwhile, or its account's key quarantined, sends nothing (session 25's review: an order queued behind
        another instance's lease went out 6.5 s after `bot revoke` had returned)."""
        snap = self._snapshot()
        account = snap.accounts.get(route.account.info.name)
        bot = snap.bot_by_credential(outcome.credential) if outcome.credential else None
        if account is None or bot is None or bot.info.name != outcome.bot \
                or bot.info.status not in ("active", "suspended"):
            raise Refused("unknown_bot", "unknown API key")
        self._check_standing(account, bot, self.clock_ms())
        halted = snap.halt_reason(bot.info.name, account.info.name)
        if halted is not None and not passes_halt(route.endpoint.cls.value, outcome.facts or RequestFacts()):
            raise Refused("halted", f"bot {bot.info.name!r}: trading is halted: {halted}; only reads and cancels pass")

    def heartbeat(self, account_name: str, incoming: IncomingRequest, peer: str, outcome: Outcome) -> BotEntry:
        """`GET /<account>/_keyproxy/heartbeat`: a bot saying it is alive, signed like any of its requests
        (its token, or its virtual key in the exchange's own scheme over this path). Nothing goes upstream."""
        snap = self._snapshot()
        account = self.account(account_name, outcome, snap)  # refuses an account this version cannot serve
        assert account.adapter is not None
        outcome.endpoint_class, outcome.endpoint = HEARTBEAT_ENDPOINT.cls.value, HEARTBEAT_ENDPOINT.name
        now_ms = self.clock_ms()
        bot = self._identify(snap, account, account.adapter, incoming, outcome, now_ms)
        if bot is None:
            raise Refused("unknown_bot", "a heartbeat must carry the bot's credential")
        if not self._authenticate(account.adapter, bot, HEARTBEAT_ENDPOINT, incoming, now_ms)[1]:
            raise Refused("bad_signature", "a heartbeat must be signed")  # a key id alone says nothing of the bot
        outcome.authenticated = True
        self._check_standing(account, bot, now_ms)
        if not bot.allows_ip(peer):
            raise Refused("ip_denied", f"bot {bot.info.name!r} may not connect from {peer}")
        self.last_seen[bot.info.name] = now_ms / 1000
        outcome.decision = "allow"
        return bot

    def stream_bot(self, account: AccountEntry, token: str, peer: str, outcome: Outcome) -> Held:
        """Who a private event stream belongs to: the bot keyproxy handed this virtual stream token to, in good
        standing, allowed to read and connecting from its own addresses; with the exchange's token to open the
        stream with and the endpoint that handed it out. A token keyproxy never handed out is refused."""
        held = self.tokens.held(self._snapshot(), account.info.name, token)
        if held is None:
            raise Refused("unknown_bot", "this stream's token (listenKey) was not obtained through keyproxy for "
                          "this account: request it through keyproxy")
        bot = held.bot
        outcome.bot, outcome.authenticated, outcome.credential = bot.info.name, True, bot.credential
        self._check_standing(account, bot, self.clock_ms())
        if not bot.allows_ip(peer):
            raise Refused("ip_denied", f"bot {bot.info.name!r} may not connect from {peer}")
        if not may_read(bot):
            raise Refused("scope_denied", f"bot {bot.info.name!r} may not read this account (its scopes: "
                          f"{','.join(bot.policy.scopes) or 'none'})")
        return held

    def real_stream_token(self, route: Route, incoming: IncomingRequest, outcome: Outcome) -> str | None:
        """The exchange's stream token to send where a request presents the virtual one keyproxy handed its bot (a
        listenKey's keepalive or close, a listenToken's subscribe frame); None when it presents none. A token
        handed to another bot, or never handed out, is refused: nothing goes upstream."""
        virtual = route.adapter.named_stream_token(incoming)
        if virtual is None:
            return None
        name = route.account.info.name
        held = self.tokens.held(route.snap, name, virtual)
        if held is None or held.bot.info.name != outcome.bot:
            raise Refused("unknown_bot", "this stream token (listenKey) was not obtained through keyproxy by this "
                          "bot: request it through keyproxy")
        return held.real

    def keeps_stream_open(self, route: Route, incoming: IncomingRequest, outcome: Outcome) -> bool:
        """A bot's close of a stream token (Binance's `DELETE .../listenKey`) that must not reach the exchange:
        another bot still reads the account's stream with the same token (Binance hands every bot of an account
        the same listenKey; a close by one ended every bot's stream). The bot's own hold is released either way.
        In a fleet, holders through other instances are unknown here: a close is never forwarded (the exchange's
        token lapses an hour after the last keepalive)."""
        if outcome.bot is None:
            return False
        shared = self.tokens.release(route.snap, route.account.info.name, outcome.bot, incoming.path,
                                     route.adapter.named_stream_token(incoming))
        return shared or self.fleet

    def _check_policy(self, snap: Snapshot, account: AccountEntry, adapter: Adapter, bot: BotEntry,
                      endpoint: Endpoint, req: IncomingRequest, now_ms: int, outcome: Outcome,
                      fetched: bool = False) -> RequestFacts:
        """Scope, kill switch, hours, rate, trading and risk limits: one pure decision, then its charges.
        `fetched`: keyproxy has just asked the exchange for the references this order needs (or, for a cancel-all,
        the orders resting where it cancels)."""
        self.flush_learning()  # a decision resumed in the turn an answer was sent sees it learned, as a later one does
        limits = snap.account_limits.get(account.info.name)
        if limits is not None and limits.dead_man_seconds is not None:
            switch = SWITCHES.get(adapter.name)
            if switch is not None and endpoint.name in switch.endpoints:
                raise Refused("policy_denied", f"keyproxy keeps account {account.info.name!r}'s {switch.name} timer "
                              "armed (dead_man_seconds): a bot may not set or clear it")
        names = self.markets.names.get(account.info.name)
        if names:
            req = req.replace(markets=names)
        try:
            facts = adapter.facts(req, endpoint)
        except BadRequest as e:
            raise Refused("bad_request", e.message) from None
        if facts.action == "amend" and not adapter.amend_sets_reduce_only:
            facts = facts.not_reduce_only()  # a halt, reduce_only or position cap is never passed on its word
        facts = self.markets.named(account.info.name, facts)
        outcome.facts = facts
        now = now_ms / 1000
        policy, name = bot.policy, bot.info.name
        if names and policy.symbols:  # an allowlist names markets as the operator wrote them: Kraken's XXBTZUSD is
            policy = self.markets.named_policy(account.info.name, policy)  # XBTUSD, as the facts name it
        usage = Usage()
        if self.usage is not None:
            usage = Usage(
                # in a fleet the gate counts them across every instance (an instance sees only its own answers)
                open_orders=self.usage.open_orders(name) + self.in_flight.count(name, now)
                if policy.max_open_orders and facts.action == "order" and not self.fleet else 0,
                daily_notional=self.usage.daily("notional", name, now) if policy.daily_notional_cap else Decimal(0),
                daily_withdrawn=(self.usage.daily("withdraw", name, now, facts.withdrawn_asset)
                                 if policy.daily_withdrawal_cap and facts.action == "withdraw" else Decimal(0)))
        prices = self.markets.last_prices(account.info.name, facts)
        legs = facts.placed()
        # a reduce-only flag proves nothing where another bot may build a position while the order rests
        risk = self.risk.view(account.info.name, bot, limits, facts, now, account.adapter,
                              any(leg.reduce_only for leg in legs)
                              and _other_trader(snap, account.info.name, name, opening=True) is not None) \
            if legs else None
        if risk is not None:
            risk = self.in_flight.with_sent(risk, name, now, prices)
            if facts.action == "amend":
                outcome.adds = self.risk.in_flight_legs(facts, risk)
        references = {}
        banded = price_band(policy, limits) is not None
        valued = policy.max_order_notional is not None or policy.daily_notional_cap is not None \
            or policy.max_position_notional is not None
        sized = policy.position_capped  # a quote-sized order's size (quote / price) counts against the position
        throttle = snap.throttles.get(name)

        def refuse(decision: Decision) -> NoReturn:
            outcome.unheld = self.fleet and risk is not None and None in risk.amended
            where = f" for {endpoint.name}" if decision.code == "scope_denied" else ""
            raise Refused(decision.code, f"bot {name!r}: {decision.detail}{where}", decision.retry_after)

        def decided(references: dict[str, Decimal]) -> Decision:
            return decide(facts, endpoint.cls.value, policy, self.counters, now, bot=name,
                          account=account.info.name, halted=snap.halt_reason(name, account.info.name),
                          prices=prices, account_limits=limits, references=references, risk=risk,
                          usage=usage, throttle=throttle[1] if throttle and now < throttle[0] else None)

        # a loss-limited bot's positions keyproxy holds no price for: asked for before it may add to them (valued at
        # nothing, they hid any loss; session 27's review); still unpriced after, its risk-adding orders are refused
        unpriced = self.risk.unpriced_of(account.info.name, bot, limits) \
            if risk is not None and risk.loss_limited and not fetched and account.adapter is not None else []
        if ((banded or valued or sized) and facts.action in ("order", "amend")) or unpriced:
            max_age = (limits.reference_max_age if limits is not None else REFERENCE_MAX_AGE) if banded else None
            try:
                calls: tuple[tuple[str, Any], ...] = ()
                try:
                    references = self.markets.references(account.info.name, account.adapter, facts, max_age,
                                                         fetched, valued, sized) \
                        if facts.action in ("order", "amend") else {}
                except NeedReference as asked:
                    calls = asked.calls
                calls += tuple((scope.partition(":")[2], call) for scope in unpriced
                               if (call := scope_reference(account.adapter, scope)) is not None)
                if calls:
                    raise NeedReference(calls)
            except NeedReference as need:
                # decided first on what keyproxy holds: a request refused whatever the price (its scope, symbols,
                # rate, halt) makes keyproxy ask the exchange nothing, and what it asks is the bot's to pay (session
                # 27's review: a read-only bot's made-up symbols spent the account's weight on keyproxy's calls)
                early = decided({})
                if not early.allow and early.code not in PRICED_CODES:
                    refuse(early)
                need.bot, need.facts = name, facts
                raise
        decision = decided(references)
        if facts.placed():
            outcome.notional = total_notional(facts, prices)
        if not decision.allow:
            refuse(decision)
        if account.key is not None and (why := adapter.unsignable(req, account.key)) is not None:
            raise Refused("bad_request", why)  # allowed, but not with this key: nothing charged
        # only the bot's own orders: after its scope, rate and halt are checked (owner lookups and a cancel-all's
        # listing of resting orders cost far more, and a bot refused anyway must not make keyproxy do them)
        if facts.cancels_later and (other := _other_trader(snap, account.info.name, name)) is not None:
            raise Refused("policy_denied", f"bot {name!r}: this sets a timer that cancels every order of "
                          f"{facts.scope} when it runs out, whoever placed them, and bot {other!r} trades on this "
                          "account too: keyproxy's own dead-man's switch (dead_man_seconds) covers a shared account")
        if any(leg.cancels_met for leg in (facts, *facts.placed())) \
                and (other := _other_trader(snap, account.info.name, name)) is not None:
            raise Refused("policy_denied", f"bot {name!r}: this order asks the exchange to cancel other resting "
                          "orders of the account (the ones it meets: self-trade prevention; or, with Bybit's "
                          f"closeOnTrigger, the ones in its way), and bot {other!r} trades on this account too: the "
                          "exchange sees one account, so those may be another bot's orders")
        if not bot.policy.allow_self_cross and any(leg.routed for leg in facts.placed()) \
                and (other := _other_trader(snap, account.info.name, name)) is not None:
            raise Refused("self_cross", f"bot {name!r}: the exchange routes this order over several order books, where "
                          f"it may trade against bot {other!r}'s orders unseen by keyproxy's self-cross check "
                          "(allow_self_cross lets it)")
        if facts.cancels_all or facts.action in ("order", "amend"):  # a cancel-all and the orders around it in turn
            # in a fleet, a cancel-all the positions book judges on an account other bots trade waits for the book to
            # hold the other instances' newest orders (sweeps.py `_settle`); one judged by the exchange's listing
            # (markets the book does not hold) needs no book
            market = facts.scope.partition(":")[0]
            other = _other_trader(snap, account.info.name, name) if facts.cancels_all and self.fleet \
                and account.adapter is not None and (market == "*" or market in account.adapter.fill_markets) else None
            self.sweeps.check(account.info.name, name, outcome.request_id, facts, other is not None)
            if other is not None and self.sweeps.book_behind(account.info.name, outcome.request_id):
                raise Refused("shared_state_unavailable", f"bot {name!r}: this would cancel every order of "
                              f"{facts.scope}, and this instance's book may not yet hold the orders bot {other!r} "
                              "placed through another instance (the fleet's shared state is out of reach or behind): "
                              "retry, or cancel this bot's own orders by their ids", 1.0)
        if facts.touches or facts.action == "amend" or facts.cancels or facts.cancels_by_client or facts.cancels_all:
            if self.owners.only_own(account.info.name, adapter, bot.info.name, facts, request_id=outcome.request_id):
                # an order of no known owner may be another bot's on its way: its answer names the owner
                self.sweeps.check_unowned(account.info.name, name, outcome.request_id, facts)
                if any(leg.replaces for leg in facts.placed()) and bot.policy.max_open_orders is not None:
                    # the order that replaces one of no owner is the bot's, and its count never held the old one: a
                    # cancel of it then freed a place (session 32's review: Kraken's EditOrder, Hyperliquid's modify)
                    raise Refused("open_orders_exceeded", f"bot {name!r}: this amend names an order keyproxy has no "
                                  "owner for, and the order replacing it would rest uncounted under max_open_orders")
        if (facts.action in ("order", "amend") or facts.client_id) and adapter is not None:  # an amend's new client
            self.owners.own_client_ids(account.info.name, adapter, name, facts)  # id too (a Hyperliquid modify's `c`)
        shared = outcome.shared

        def commit_local() -> None:  # in a fleet, only when Redis cannot be asked (the gate counts the rest)
            if decision.orders:
                self.counters.remember(name, decision.orders, now)
            self.counters.apply(decision.charges, now)
            if self.usage is not None:  # committed before the request goes on (a crash overstates, never forgets)
                if decision.notional is not None and policy.daily_notional_cap:
                    self.usage.add_daily("notional", name, decision.notional, now)
                if decision.withdrawal is not None and policy.daily_withdrawal_cap:
                    self.usage.add_daily("withdraw", name, decision.withdrawal, now, facts.withdrawn_asset)

        if shared is None:
            commit_local()
            return facts
        # a fleet: the gate checks and charges these across every instance (decide saw this instance's
        # untouched counters, so only the fleet's count can refuse)
        shared.commit_local = commit_local
        capped = facts.action in ("order", "amend") and policy.position_capped
        gather(shared, decision, policy, facts, endpoint.cls, self.counters.buckets, outcome.request_id,
               book_seq=self.book_seen(name) if capped else None,
               exposure=self.risk.fleet_exposure(account.info.name, name, policy, facts, prices, risk)
               if capped else [], account=account.info.name)
        return facts

def may_read(bot: BotEntry) -> bool:
    """Whether the bot may read the account's private data (its `read` scope): a private stream is a read."""
    return "read" in bot.policy.scopes


def _other_trader(snap: Snapshot, account: str, bot: str, opening: bool = False) -> str | None:
    """Another bot of the account that may place orders (active or suspended, with the trade scope); `opening`:
    one that may open a position (not held to reduce-only orders by its policy)."""
    for entries in (snap.bots_by_key, snap.bots_by_token):
        for entry in entries.values():
            info = entry.info
            if info.account == account and info.name != bot and info.status in ("active", "suspended") \
                    and "trade" in entry.policy.scopes and not (opening and entry.policy.reduce_only):
                return str(info.name)
    return None
