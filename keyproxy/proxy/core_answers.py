"""The core's part that learns from the exchange's answers: what must hold before a private answer is relayed, the
answers journal, and the bookkeeping of open orders, owners and positions (in one state.db transaction an answer)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from keyproxy.errors import KeyproxyError
from keyproxy.exchanges.base import Adapter, EndpointClass, KeyRejection, OutboundRequest, Reported
from keyproxy.proxy.answer_journal import AnswerJournal
from keyproxy.proxy.in_flight import IN_FLIGHT_S, InFlight
from keyproxy.proxy.learn_queue import Learning, LearnQueue
from keyproxy.proxy.markets import MarketBook
from keyproxy.proxy.order_owners import OrderOwners
from keyproxy.proxy.outcome import Outcome, Route
from keyproxy.proxy.refusal import Refused
from keyproxy.proxy.registry import AccountEntry, Snapshot
from keyproxy.proxy.risk import RiskDesk
from keyproxy.proxy.stream_tokens import StreamTokens
from keyproxy.proxy.sweeps import Sweeps
from keyproxy.state import StateStore
from keyproxy.usage import UsageBook

log = logging.getLogger("keyproxy.proxy")
# the status `fate_unknown` learns a request under: it went upstream and no answer was read (0 is no HTTP status)
FATE_UNKNOWN = 0


class CoreAnswers:
    """`Core`'s answer side (its state is `Core`'s: see there)."""

    _sequences: StateStore | None
    _snapshot: Callable[[], Snapshot]
    usage: UsageBook | None
    clock_ms: Callable[[], int]
    in_flight: InFlight
    sweeps: Sweeps
    markets: MarketBook
    risk: RiskDesk
    owners: OrderOwners
    tokens: StreamTokens
    journal: AnswerJournal | None
    learning: LearnQueue | None
    account: Callable[..., AccountEntry]  # `Core.account`
    route: Callable[..., Route]  # `Core.route`

    def relayed(self, route: Route, out: OutboundRequest, status: int, body: bytes, outcome: Outcome) -> bytes:
        """What must hold before the bot sees a private answer: a stream token in it that trades on the
        exchange's own WebSocket (Kraken's) replaced by a virtual one bound to the bot, and a stream token it
        hands out (a Binance listenKey) remembered as the bot's. Returns the answer to relay; `learn` follows
        (before the answer is sent for an order or an amend, just after for the rest: the edges say why). And the
        client ids of orders placed outside keyproxy it reports, recorded before the bot can name one
        (`OrderOwners.learn_outside`; refused `unavailable` where a fleet's record cannot be read or written)."""
        holder = (outcome.bot, outcome.credential) if outcome.authenticated and outcome.bot and outcome.credential \
            else None
        if route.adapter.client_ids_answer_existing and 200 <= status < 300 and body and out.method == "GET" \
                and route.adapter.reports_client_ids(out.path):
            self._learn_outside(route.account.info.name, route.adapter, route.adapter.reported_client_ids(
                out, status, body))
        return self.tokens.relayed(route.adapter, (route.account.info.name, route.account.info.version), out.path,
                                   status, body, holder)

    def journaled(self, route: Route, out: OutboundRequest, status: int, body: bytes, outcome: Outcome) -> int | None:
        """An order's (or amend's) answer written to the answers journal before it is relayed, so it may be learned
        just after (`learn(..., journaled=n)`); None: it must be learned first (not an order, no journal, or the
        journal cannot be written)."""
        if self.journal is None or outcome.placed_by is None or not body:
            return None
        bot, facts = outcome.placed_by
        roles = "p" + ("t" if outcome.track is not None else "")
        key = route.account.key
        # credentials a request carries in its parameters: the real API key (Binance's WebSocket API frames), the
        # stream token the frame went upstream with (Kraken's WebSocket v2 token, which trades the account)
        blank = (key.api_key.reveal_str() if key is not None else "", outcome.sent_token or "")
        number = self.journal.write(route.account.info.name, "rest" if route.adapter is route.account.adapter
                                    else "ws", out, status, body, outcome.request_id, bot, facts, roles, blank,
                                    outcome.decided_ms)
        if number is not None:
            self.in_flight.held_for_learning(outcome, status)
        return number

    def replay_journal(self, journal: AnswerJournal | None = None) -> int:
        """At start, before serving: the answers the journal holds and state.db does not, learned in order (a kill
        -9 came between an answer's relay and its bookkeeping). How many. `journal`: another worker's (one a run
        with more workers left), learned through it."""
        own = self.journal
        if journal is not None:
            self.journal = journal
        try:
            return self._replay()
        finally:
            self.journal = own

    def _replay(self) -> int:
        if self.journal is None:
            return 0
        learned = 0
        for entry in tuple(self.journal.unlearned()):
            outcome = Outcome(request_id=entry.request_id, method=entry.out.method, path=entry.out.path,
                              bot=entry.bot, transport=entry.transport)
            try:
                account = self.account(entry.account, outcome)
                dialect = account.adapter.websocket(entry.out.path) if entry.transport == "ws" and account.adapter \
                    else None
                if entry.transport == "ws" and dialect is None:
                    raise Refused("unknown_endpoint", f"no WebSocket dialect for {entry.out.path[:80]}")
                route = self.route(entry.account, entry.out.method, entry.out.path, outcome, dialect=dialect)
                outcome.placed_by, outcome.decided_ms = (entry.bot, entry.facts), entry.decided_ms
                outcome.track = (entry.bot, entry.facts) if "t" in entry.roles else None
                self.learn(route, entry.out, entry.status, entry.body, outcome, journaled=entry.number)
            except Exception as e:  # a line that cannot be learned must not keep the daemon from starting
                log.error("a journalled order answer could not be learned again: the positions book finds the "
                          "order at reconciliation; its open-order count and owner record are not kept",
                          extra={"error": str(e)[:200], "kind": type(e).__name__, "request_id": entry.request_id})
                self.journal.give_up(entry.number)
                continue
            learned += 1
        self.journal.emptied()
        return learned

    def learn(self, route: Route, out: OutboundRequest, status: int, body: bytes, outcome: Outcome,
              journaled: int | None = None, later: bool = False) -> None:
        """What keyproxy learns from an answer: prices and contract sizes (public), whether the exchange
        refused the real key, and the bot's open orders and positions (after `relayed`, for a private
        answer). `body` is b"" when the answer was too large to read: adapters then count conservatively
        (an order counts as resting, no cancel is believed). `journaled`: the answers journal's line of this
        answer, marked learned in the same state.db transaction. `later`: an answer already sent on, whose
        open orders and positions are learned with the others of this loop turn (`LearnQueue`); whether the key was
        refused is known when this returns."""
        account, endpoint, adapter = route.account, route.endpoint, route.adapter
        name = account.info.name
        if endpoint.cls is EndpointClass.PUBLIC:
            if status == 200 and body:
                self.markets.learn(name, adapter, out.path, body)
                if adapter.fill_markets:  # public order answers (Hyperliquid's userFills, orderStatus)
                    self.risk.learn(name, adapter, None, out, status, body)
            return
        try:
            rejection = adapter.key_rejected(status, body, out.method, out.path)
            outcome.key_rejected = rejection is KeyRejection.INVALID
            outcome.key_denied = rejection is KeyRejection.DENIED
            if outcome.placed_by is not None:  # a call refused in part that placed or cancelled orders anyway
                status, body = adapter.settled_answer(out, status, body)
        except Exception as e:
            if not later:
                raise
            # the answer is about to reach the bot whatever this reading says: it goes, and its bookkeeping is
            # still queued on what was read (an answer sent before this raised used to be sent all the same)
            log.error("an exchange answer could not be read for the key's standing", extra={
                "kind": type(e).__name__, "request_id": outcome.request_id})
        learning = (name, adapter, out, status, body, outcome, journaled)
        if later and self.learning is not None:
            self.learning.add(learning)
            return
        self.flush_learning()  # the answers that arrived before this one are learned before it
        try:
            self._learn_private(*learning)
        except BaseException:
            self._unlearned(learning)
            raise
        self._learned(learning)

    def fate_unknown(self, route: Route, out: OutboundRequest, outcome: Outcome) -> None:
        """A request that went upstream and whose answer will never be read (the call timed out or failed after it
        was sent, the bot's socket ended with its frame on its way). An order (or an amend raising sizes) may rest
        or fill: it is learned as an answer keyproxy could not read, so its places count in state.db until a
        listing sets the count (it counted for IN_FLIGHT_S only, then belonged to no one: session 35's review);
        anything else stays on its way till it lapses."""
        if route.endpoint.cls is EndpointClass.PUBLIC or not _counted_unread(route.adapter, outcome, FATE_UNKNOWN):
            self.in_flight.unanswered(outcome)  # not an order, or nothing would ever set such a count right
            return
        try:
            self.learn(route, out, FATE_UNKNOWN, b"", outcome)
        except Exception as e:  # state.db refused the transaction: still counted on its way, till it lapses
            self.in_flight.unanswered(outcome)
            log.error("an order of unknown fate could not be recorded as open", extra={
                "kind": type(e).__name__, "request_id": outcome.request_id})

    def flush_learning(self) -> None:
        """The answers waiting for their bookkeeping learned now: before a decision, an answer learned at once, a
        pushed order update, and at shutdown."""
        if self.learning is not None and len(self.learning):
            self.learning.flush()

    def _unlearned(self, learning: Learning) -> None:
        """An answer's bookkeeping rolled back: its journal line is learned again at the next start, its order
        counted as unanswered meanwhile."""
        outcome, journaled = learning[5], learning[6]
        self.sweeps.release(outcome.request_id)  # its answer was read: a cancel-all holds other bots' orders no more
        if self.usage is not None:
            self.usage.forget_cached()  # its open-order changes were rolled back with it
        if journaled is not None and self.journal is not None:
            self.journal.failed(journaled)
            self.in_flight.hold(outcome, self.clock_ms() / 1000 + IN_FLIGHT_S)

    def _learned(self, learning: Learning) -> None:
        """An answer's bookkeeping committed: its order counts from the answer now, no longer as on its way (not
        before the commit: a transaction that fails leaves it counted on its way, `_unlearned`)."""
        status, body, outcome, journaled = learning[3:7]
        if outcome.placed_by is None or (status < 500 and body):
            self.in_flight.answered(outcome)
        else:  # "status unknown" (or unread): it may rest or fill, so it counts as on its way till it lapses
            self.in_flight.unanswered(outcome)
            if _counted_unread(learning[1], outcome, status):  # its places are in state.db now: not twice
                self.in_flight.counted_open(outcome)
        if journaled is not None and self.journal is not None:
            self.journal.done(journaled)

    def _learn_private(self, name: str, adapter: Adapter, out: OutboundRequest, status: int, body: bytes,
                       outcome: Outcome, journaled: int | None) -> None:
        """A private answer's bookkeeping, one state.db transaction (with its journal line's mark)."""
        with self._sequences.batch() if self._sequences is not None else contextlib.nullcontext():
            if outcome.track is not None:  # one state.db transaction for all this answer's bookkeeping
                # an order's "status unknown" (5xx: "execution status is UNKNOWN and could have been a success", as
                # Binance puts it) or no answer at all (`fate_unknown`) counts as one keyproxy could not read: open
                unknown = _counted_unread(adapter, outcome, status)
                self.owners.track_open_orders(name, adapter, outcome.track, out, 200 if unknown else status,
                                              b"" if unknown else body, outcome.opens_mark, outcome.opens_since)
            # the ids the exchange gave the orders this bot placed, read once for both books
            ids = adapter.placed_order_ids(status, body) if outcome.placed_by is not None else ()
            if outcome.placed_by is not None:
                self.owners.attribute(name, adapter, outcome.placed_by, ids,
                                      client_ids=adapter.placed_client_ids(status, body))
            elif outcome.unread_by is not None and 200 <= status < 300 and body:
                self.owners.attribute(name, adapter, outcome.unread_by, adapter.placed_order_ids(status, body),
                                      new_only=True, client_ids=adapter.placed_client_ids(status, body))
            if 200 <= status < 300 and body:
                self.risk.learn(name, adapter, outcome.placed_by, out, status, body, ids, outcome.decided_ms)
                if out.method == "GET":
                    self.owners.learn_resting_clients(name, adapter, out, status, body)
            if outcome.facts is not None and outcome.facts.action == "cancel":
                self.owners.changed(name)  # a listing of resting orders from before it is stale
                self.owners.forget_cancelled(name, adapter, outcome.bot, outcome.facts, out, status, body)
            if journaled is not None and self.journal is not None:
                self.journal.mark(journaled)

    def learn_read(self, account_name: str, adapter: Adapter, call: tuple[str, str, str, bytes], status: int,
                   body: bytes) -> None:
        """The answer to a read of keyproxy's own about one order (`NeedOrders`), learned as a bot's read of it is:
        what the stop it came from names (its owner), after the answers relayed before it."""
        if not 200 <= status < 300 or not body:
            return
        self.flush_learning()
        method, path, query, sent = call
        out = OutboundRequest(method, "", path, query, {}, sent)
        with self._sequences.batch() if self._sequences is not None else contextlib.nullcontext():
            self.risk.learn(account_name, adapter, None, out, status, body)
            self.owners.learn_resting_clients(account_name, adapter, out, status, body)

    def learn_stream(self, account_name: str, dialect: Adapter | None, text: str) -> None:
        """Order updates the exchange pushed on a private WebSocket (fills, cancels): into the positions book, after
        the answers relayed before them (an order's fill after its placement)."""
        self.flush_learning()
        adapter = self._stream_adapter(account_name, dialect)
        if adapter is not None:
            self.risk.learn_stream(account_name, adapter, text)

    def learn_stream_clients(self, account_name: str, dialect: Adapter | None, text: str) -> None:
        """The client ids of orders placed outside keyproxy that a pushed event reports (`OrderOwners.learn_outside`),
        recorded before the bot reads the event: it must not name one in an order it sends on reading it."""
        adapter = self._stream_adapter(account_name, dialect)
        if adapter is not None and adapter.client_ids_answer_existing:
            self._learn_outside(account_name, adapter, adapter.streamed_client_ids(text))

    def _stream_adapter(self, account_name: str, dialect: Adapter | None) -> Adapter | None:
        """What reads a pushed event: the socket's dialect, else the account's adapter (None: no longer served)."""
        account = self._snapshot().accounts.get(account_name)
        return dialect or (account.adapter if account is not None else None)

    def _learn_outside(self, account: str, adapter: Adapter, reported: tuple[Reported, ...]) -> None:
        if not reported:
            return  # nothing to record: no transaction (most frames)
        try:
            with self._sequences.batch() if self._sequences is not None else contextlib.nullcontext():
                self.owners.learn_outside(account, adapter, reported)
        except KeyproxyError:
            raise Refused("unavailable", "keyproxy could not record the orders this answer reports in the fleet's "
                          "shared state, so it is not relayed", 1.0) from None


def _counted_unread(adapter: Adapter, outcome: Outcome, status: int) -> bool:
    """An order whose fate is unknown (a 5xx, or no answer: `fate_unknown`) counted open as an answer keyproxy could
    not read, where a listing will set the count right."""
    return outcome.placed_by is not None and (status >= 500 or status == FATE_UNKNOWN) and adapter.listings_set_counts
