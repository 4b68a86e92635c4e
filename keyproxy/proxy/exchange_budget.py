"""The exchanges' own rate budgets on the request path: charged before a request goes upstream (or refused at
once with the exchange's own rate-limit answer), corrected from each answer (policy/budget.py keeps them)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from keyproxy.exchanges.base import Adapter, IncomingRequest
from keyproxy.policy.budget import KEY_ONLY, UNSIGNED, Charge, Governor
from keyproxy.proxy.fleet_share import way_out
from keyproxy.proxy.in_flight import InFlight
from keyproxy.proxy.refusal import Refused

if TYPE_CHECKING:
    from keyproxy.policy.budget import Budget
    from keyproxy.proxy.outcome import Outcome, Route
    from keyproxy.proxy.registry import AccountEntry

BAN_HOLD_S = 300.0  # a refusal for rate holding this long is a ban (Bybit's 403, Kraken's lockout)
log = logging.getLogger("keyproxy.proxy")


def spender_of(outcome: Outcome) -> str:
    """Whose share a request spends (of the exchange's budget, and of the requests on their way upstream): its bot's
    once proven; one naming a bot by its key id alone (no secret) a share of its own beside the bot's; one naming
    no bot `(unsigned)`'s (session 33's reviews; session 35's: the cap on requests on their way counted a key id's
    claim as the bot's, and anyone knowing the id filled the bot's places with slow public reads)."""
    if not outcome.bot:
        return UNSIGNED
    return outcome.bot if outcome.proven else f"{outcome.bot} {KEY_ONLY}"


class ExchangeBudget:
    """Every bot's requests (and keyproxy's own calls) against the exchange's budgets, through one governor."""

    def __init__(self, governor: Governor | None, in_flight: InFlight, clock_ms: Callable[[], int]) -> None:
        self.governor = governor
        self.in_flight = in_flight
        self.clock_ms = clock_ms

    def spend(self, route: Route, incoming: IncomingRequest, outcome: Outcome, reserve: bool = False
              ) -> tuple[Charge, ...]:
        """Charge the exchange's own budgets before the request goes upstream, or refuse it at once with the
        exchange's rate-limit answer, so no bot's request trips the exchange's limit (and its IP ban) for all.
        Cancels and reduce-only orders may use the budget's reserve, as may keyproxy's own reads that keep the
        limits true (`reserve`: the risk watch's); after a 429/418 nothing goes."""
        if self.governor is None:
            return ()
        adapter = route.adapter
        return self._spend(route.account, adapter.costs(incoming), adapter.budget_path(incoming), outcome,
                           reserve=reserve)

    def spend_connection(self, account: AccountEntry, path: str, bot: str | None,
                         outcome: Outcome) -> tuple[Charge, ...]:
        """A WebSocket handshake, before it goes upstream: what the exchange counts for opening one (Binance: 300
        a service per 5 minutes per IP), so a local process opening sockets in a loop is refused here, never
        gets the shared IP refused there. No bot is known at a WebSocket API handshake (a stream's is): one that
        names none spends the budgets alone, in no bot's share (the connection budget bounds a flood of them; the
        `(unsigned)` share is the public requests', which a handshake's weight must not crowd out)."""
        if self.governor is None or account.adapter is None:
            return ()
        # a socket may be how a bot gets out (its cancels go over it): the whole budget, the reserve too
        return self._spend(account, account.adapter.connection_costs(path), path, outcome, bot or "", reserve=True)

    def _spend(self, account: AccountEntry, costs: tuple[tuple[Budget, int], ...], path: str,
               outcome: Outcome, bot: str | None = None, reserve: bool = False) -> tuple[Charge, ...]:
        """`bot`: whose share it spends (None: the outcome's bot, or `(unsigned)`; "": no bot's, the budgets only)."""
        assert self.governor is not None
        charges = self._charges(account, costs, path)
        if not charges:
            return ()
        exchange = account.adapter.name  # type: ignore[union-attr]
        now = self.clock_ms() / 1000
        # a public request that carries no credential spends as one more bot, "(unsigned)": a flood of them
        # gets a share like any bot's, never the whole budget while signed bots are active
        # one that names a bot by its key id alone (`proven` False: a listenKey's creation, an SDK's public read)
        # spends a share of its own beside the bot's: a key id is no secret, and another bot's spent that bot's
        # share; in the unsigned one an anonymous flood starved the bot's listenKey (session 33's reviews)
        spender = bot if bot is not None else spender_of(outcome)
        wait = self.governor.spend(charges, reserve or way_out(outcome.facts), now, spender)
        if wait is not None:
            self.in_flight.land(outcome)  # never sent
            banned = any(self.governor.banned_until.get(c.key, 0) > now for c in charges)
            raise Refused("budget_exhausted", f"{exchange}'s own rate budget "
                          f"({', '.join(c.budget.name for c in charges)}), shared by every bot of this keyproxy, is "
                          f"{'closed: the exchange refused for rate' if banned else 'spent'}; retry in "
                          f"{math.ceil(wait)} s", wait)
        return charges

    def _charges(self, account: AccountEntry, costs: tuple[tuple[Budget, int], ...], path: str) -> tuple[Charge, ...]:
        assert self.governor is not None
        if not costs or account.adapter is None or account.upstream is None:
            return ()
        # a per-IP budget is the exchange environment's, whichever host and transport (Binance's WebSocket
        # API spends the REST API's weight); a per-account one is the account's
        exchange, ip_scope = account.adapter.name, f"{account.adapter.name}@{account.upstream.environment.name}"
        name = account.info.name
        resolve, tiers = self.governor.resolve, account.adapter.budget_tiers
        return tuple([Charge(resolve(exchange, name, budget, tiers),
                             ip_scope if budget.per == "ip" else f"{ip_scope} {path}" if budget.per == "ip-endpoint"
                             else f"{name} {path}" if budget.per == "endpoint" else name, cost)
                      for budget, cost in costs])

    def own(self, account: AccountEntry, spec: tuple[str, str, str, bytes]) -> tuple[Charge, ...]:
        """A call of keyproxy's own that must go whatever the budget says (a halt's cancels, a dead man's switch
        re-armed, a WebSocket token): counted on the budgets' meters, never refused, so the bots are refused
        before keyproxy's own calls push the exchange over its limit (session 33's review: they were not
        counted at all). In no bot's share."""
        if self.governor is None or account.adapter is None:
            return ()
        method, path, query, body = spec
        incoming = IncomingRequest(method, path, query, {}, body)
        charges = self._charges(account, account.adapter.costs(incoming), account.adapter.budget_path(incoming))
        self.governor.force(charges, self.clock_ms() / 1000)
        return charges

    def observe_own(self, account: AccountEntry, charges: tuple[Charge, ...], status: int,
                    headers: Mapping[str, str], body: bytes) -> None:
        """An own call's answer: the exchange's count and its refusal for rate, as a bot's answer's."""
        if account.adapter is not None:
            self._count(account.adapter, charges, headers, account.adapter.rate_limit_hold(status, headers, body))

    def observe(self, route: Route, charges: tuple[Charge, ...], status: int, headers: Mapping[str, str],
                body: bytes | None, outcome: Outcome,
                hold: tuple[float, str | None] | None | Literal[False] = False) -> None:
        """The exchange's refusal for rate (for the metrics: a ban, or a limit), and its own count, from an
        answer (`headers` looked up by lower-case name: aiohttp's are case-insensitive; `body` None when too
        large to buffer). `hold`: the refusal for rate when the caller read it already (a socket's answer frame,
        `WsDialect.answer_usage`), else read here."""
        if hold is False:
            hold = route.adapter.rate_limit_hold(status, headers, body)
        if hold is not None:
            outcome.rate_limit = "ban" if status == 418 or hold[0] >= BAN_HOLD_S else "limit"
        self._count(route.adapter, charges, headers, hold)

    def _count(self, adapter: Adapter, charges: tuple[Charge, ...], headers: Mapping[str, str],
               hold: tuple[float, str | None] | None) -> None:
        """The governor told the exchange's count and refusal for rate; a usage header it cannot read logged once
        (the governor says so only the first time, whichever answer, a bot's or keyproxy's own, carried it)."""
        if self.governor is None or not charges:
            return
        malformed = self.governor.observe(charges, headers, self.clock_ms() / 1000, *(hold or (None, None)))
        if malformed:
            log.warning("the exchange sent a usage header keyproxy cannot read; keeping its own count",
                        extra={"exchange": adapter.name, "header": malformed})
