"""What one request is and what became of it: `Route` (where it goes) and `Outcome` (its record), shared by the
core, both edges and the recorder."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from decimal import Decimal

from keyproxy.exchanges.base import Adapter, Endpoint
from keyproxy.fleet.charges import SharedCharges
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.registry import AccountEntry, Snapshot


@dataclass(slots=True)
class Outcome:
    """What happened to one request, for the log line and (later) the audit trail."""

    request_id: str
    method: str = ""
    account: str | None = None
    bot: str | None = None
    endpoint_class: str | None = None
    endpoint: str | None = None
    decision: str = "deny"
    signed: bool = False  # signed with the real key (and its forward line written): it may have reached the exchange
    code: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    started: float = field(default_factory=time.perf_counter)
    adapter: object | None = None  # for the exchange-shaped fields of an error answer
    source_ip: str | None = None
    path: str | None = None
    account_known: bool = False  # only known account names may become metric labels
    track: tuple[str, RequestFacts] | None = None  # (bot, facts) when the bot has an open-order cap
    opens_mark: int | None = None  # with `track`: the bot's orders learned open at its decision (a listing's base)
    opens_since: int | None = None  # with `track`: when it was decided (ms): in a fleet, a listing's base in Redis
    placed_by: tuple[str, RequestFacts] | None = None  # (bot, facts) of a request that may place or amend orders
    decided_ms: int | None = None  # with `placed_by`: when decided (an order the exchange made before is not its)
    # (bot, facts) of a trade request keyproxy cannot read (an order list, a form-encoded batch), sent for a bot no
    # trading limit binds: the orders its answer names are still that bot's, for `halt --bot B --cancel-orders`
    unread_by: tuple[str, RequestFacts] | None = None
    adds: tuple[RequestFacts, ...] = ()  # an amend: what its legs add to the orders they change (RiskDesk)
    # a refused amend named an order this instance's book does not hold: a fleet catches its book up, decides again
    unheld: bool = False
    authenticated: bool = False  # the bot's signature (or token) checked out: only then may findings act on it
    proven: bool = True  # False: authenticated by a key id alone (a key-only endpoint): findings never act on it
    credential: str | None = None  # which of the bot's credentials checked out (`BotEntry.credential`)
    key_rejected: bool = False  # the exchange said the real key is invalid, expired, revoked or IP-restricted
    key_denied: bool = False  # the exchange said the real key lacks a permission this request needs
    facts: RequestFacts | None = None
    notional: Decimal | None = None
    transport: str = "rest"  # rest | ws (a WebSocket request frame or connection)
    cache: str | None = None  # "hit": answered from the shared public-data cache; "shared": another request's answer;
    # "local": answered by keyproxy as the exchange would, nothing sent (a listenKey close other bots still need)
    no_store: bool = False  # the exchange marked its answer no-store/private: never shared
    # the replay ids its check recorded (digests) and when they expire (ms): in its forward line, so a restart
    # refuses the request's replay within its window (ReplayCache.preload)
    replay: list[object] | None = None
    rate_limit: str | None = None  # the exchange refused for rate: "limit", or "ban" (418, a hold of minutes)
    max_age: float | None = None  # the exchange's Cache-Control max-age (no-cache: 0): a shared answer's ceiling
    shared: SharedCharges | None = None  # in a fleet: what the request spends of the shared state (fleet/gate.py)
    sent_token: str | None = None  # the real stream token the request went upstream with (never in a record)


def new_request_id() -> str:
    return os.urandom(8).hex()  # secrets.token_hex(8) without its two wrappers (one per request)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes: its account (real key, host table), adapter, endpoint and upstream origin."""

    snap: Snapshot
    account: AccountEntry
    adapter: Adapter
    endpoint: Endpoint
    origin: str
