"""The exchanges' own rate budgets, shared by every bot behind keyproxy (issue 19).

An exchange counts requests per egress IP (Binance request weight, Bybit's 600 per 5 s), per account
(Binance orders, OKX's sub-account order rate), per account and endpoint (Bybit, OKX) or per key with
decay (Kraken's call counter), never per bot; bots sharing a keyproxy are blind to each other's use, so
the exchange answers 429 and then bans the IP for everyone. The `Governor` spends each budget before a
request goes upstream, corrects its view from the exchange's own usage headers after each answer, keeps
a reserve for the way out (cancels and reduce-only orders), shares each budget fairly between the bots
using it (a bot over its share waits first; an idle bot's share is lent), and, once the exchange has
refused for rate, sends nothing on that budget until the Retry-After it was given.

Pure and in memory: the adapter says what a request costs (`Adapter.costs`), the pipeline asks
`spend` before forwarding and tells `observe` what came back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["fixed", "rolling", "decay"]
UNSIGNED = "(unsigned)"  # the share of public requests no bot signed
KEY_ONLY = "(key id)"  # after a bot's name: the share of requests naming the bot by its key id alone
# the shares only a key id (no secret) claims, `<bot> (key id)`, weigh 1 together, however many are active: a bot
# spending as itself, as `(unsigned)`, as its own key id and as every other bot's held 4 of 5 shares of an account
# with two bots, the other bot 1/5 of the budget (session 36's review); now 3 of 4. Not a quarter each (the first
# cut): SDKs that send the key id with every public read (python-binance, Binance's own) spend there, and one such
# bot alone got a quarter of a ccxt bot's reads (session 36's regression review). The unsigned share keeps a whole
# weight: every ccxt bot's market lists load through it


def key_only(spender: str) -> bool:
    """Whether a share is one only a key id claims (anyone who knows the id may spend it)."""
    return spender.endswith(f" {KEY_ONLY}")


# a request spent this close to a fixed window's end counts in the next window too: the exchange counts it in the
# window it arrives in (its way there, and the two clocks, may carry it over the edge)
EDGE_S = 1.0


@dataclass(frozen=True, slots=True)
class Budget:
    """One thing an exchange counts.

    `kind`: "fixed" windows aligned to the epoch (Binance: calendar minutes), "rolling" windows (any
    `window_s` span holds at most `limit`: Bybit, OKX), or "decay" (Kraken's counter: at most `limit`,
    falling by one every `window_s` seconds). `per`: "ip" (every account of the exchange environment behind
    this keyproxy shares it), "account", "endpoint" (the account's, per request path) or "ip-endpoint" (the IP's, per
    request path: Binance's `/sapi/`)."""

    name: str  # REQUEST_WEIGHT, ORDERS_10S ...
    per: str
    limit: int
    window_s: float
    header: str | None = None  # the answer header carrying the exchange's own count (lower-case)
    kind: Kind = "fixed"
    header_counts: Literal["used", "remaining"] = "used"
    limit_header: str | None = None  # the answer header carrying the exchange's current limit (Bybit)
    share: float = 1.0  # this instance's part of the limit in a fleet (`Governor.set_fleet`); 1 alone

    @property
    def span(self) -> float:
        """Seconds one request's cost stays counted (a decaying counter: until it is empty again)."""
        return self.limit * self.window_s if self.kind == "decay" else self.window_s


class Charge:
    """What one request costs against one budget, and whose budget it is (`scope`: host or account); `key`
    names the meter. A plain slotted class: one is made per budget per request."""

    __slots__ = ("budget", "scope", "cost", "key")

    def __init__(self, budget: Budget, scope: str, cost: int) -> None:
        self.budget, self.scope, self.cost = budget, scope, cost
        self.key = f"{scope}|{budget.name}"

    def __repr__(self) -> str:
        return f"Charge({self.key}, {self.cost})"


class _Meter:
    """One budget's use in time, of its budget's kind (the governor keeps one per scope and one per bot)."""

    __slots__ = ("budget", "limit", "kind", "window", "index", "used_", "log", "at", "carry")

    def __init__(self, budget: Budget) -> None:
        self.budget, self.limit, self.kind, self.window = budget, budget.limit, budget.kind, budget.window_s
        self.index, self.used_, self.at, self.carry = -1, 0.0, 0.0, 0.0
        self.log: deque[tuple[float, int]] = deque()

    def used(self, now: float) -> float:
        kind = self.kind
        if kind == "fixed":
            index = now // self.window
            return self.used_ if self.index == index else self.carry if self.index == index - 1 else 0.0
        if kind == "rolling":
            log, edge = self.log, now - self.window
            while log and log[0][0] <= edge:
                self.used_ -= log.popleft()[1]
            return self.used_
        return max(0.0, self.used_ - (now - self.at) / self.window)

    def add(self, cost: float, now: float, carried: bool = True) -> None:
        """`carried` False: a correction from the exchange's own count, which is the window it counted in only."""
        kind = self.kind
        if kind == "fixed":
            index = now // self.window
            if index != self.index:
                self.index, self.used_, self.carry = index, self.carry if index == self.index + 1 else 0.0, 0.0
            self.used_ += cost
            if carried and (index + 1) * self.window - now < EDGE_S:
                # the exchange counts a request in the window it reaches it in: one sent this close to the edge may
                # land in the next, which would then take a whole budget more (session 33's review: a burst at
                # second 59.75 and another after the minute turned, 429 then 418 from Binance)
                self.carry += cost
        elif kind == "rolling":
            self.used(now)
            self.log.append((now, int(cost)))
            self.used_ += cost
        else:
            self.used_, self.at = self.used(now) + cost, now

    def wait(self, ceiling: float, cost: float, now: float) -> float:
        """Seconds until `cost` more fits under `ceiling`; 0 when it fits now."""
        used = self.used(now)
        if used + cost <= ceiling:
            return 0.0
        kind, window = self.kind, self.window
        if kind == "fixed":
            # the next window starts with this one's last second carried: a wait to its start that still would
            # not fit there is a wait to the window after (a Retry-After the bot would be refused at again)
            index = now // window
            carried = self.carry if self.index == index else 0.0
            return (index + 1) * window - now + (window if carried + cost > ceiling else 0.0)
        if kind == "rolling":
            freed = 0.0
            for t, c in self.log:
                freed += c
                if used - freed + cost <= ceiling:
                    return max(0.001, t + window - now)
            return window
        return (used + cost - ceiling) * window

    def at_least(self, used: float, now: float) -> None:
        """The exchange counts more than we do (traffic keyproxy did not send): believe it."""
        gap = used - self.used(now)
        if gap > 0:
            self.add(gap, now, carried=False)


class _Pool:
    """The bots spending one budget: each one's meter and when it last spent, and the active bots' total
    weight as last counted (recounted when a bot joins or returns, and at least every eighth of the window;
    between counts a bot gone idle still counts, which only makes shares smaller)."""

    __slots__ = ("bots", "weight", "counted_at", "span", "key_ids")

    def __init__(self, span: float) -> None:
        self.bots: dict[str, tuple[_Meter, list[float]]] = {}
        self.weight, self.counted_at, self.span = 0.0, -math.inf, span  # span: when a bot counts as idle
        self.key_ids = 0  # the active shares only a key id claims, as last counted (together they weigh 1)


@dataclass
class Governor:
    """Budgets in use: `spend` before forwarding, `observe` each answer. `reserve` is the share of every
    budget only the way out may use (cancels, reduce-only orders); `shares` weighs bots (default 1)."""

    reserve: float = 0.1
    shares: Mapping[str, float] = field(default_factory=dict)  # bot -> weight of its share
    limits: Mapping[str, int] = field(default_factory=dict)  # "exchange.BUDGET" -> limit (the config's override)
    tiers: Mapping[str, str] = field(default_factory=dict)  # account -> its tier at the exchange (Kraken)
    meters: dict[str, _Meter] = field(default_factory=dict)
    pools: dict[str, _Pool] = field(default_factory=dict)  # charge key -> the bots spending that budget
    banned_until: dict[str, float] = field(default_factory=dict)  # charge key -> until (epoch seconds)
    refused: int = 0
    refused_by_bot: dict[str, int] = field(default_factory=dict)
    malformed: set[str] = field(default_factory=set)  # usage headers the exchange sent unreadable (logged once)
    _resolved: dict[tuple[str, str, str], Budget] = field(default_factory=dict)  # (exchange, account, name)
    _spends: int = 0
    # a fleet ([shared_state]): each instance keeps its part of every budget, 1/N of a key's (account,
    # endpoint) and 1/M of an IP's (M instances on this host); alone: 1
    fleet_shares: dict[str, float] = field(default_factory=lambda: {"ip": 1.0, "account": 1.0, "endpoint": 1.0,
                                                                    "ip-endpoint": 1.0})

    def set_fleet(self, instances: int, on_this_host: int) -> None:
        """The live instances of a fleet (all, and on this host), from the heartbeats: budgets split evenly,
        never over the exchange's limit together. An instance that dies gives its part back after its
        heartbeat lapses."""
        shares = {"ip": 1 / max(1, on_this_host), "account": 1 / max(1, instances),
                  "endpoint": 1 / max(1, instances), "ip-endpoint": 1 / max(1, on_this_host)}
        if shares != self.fleet_shares:
            self.fleet_shares = shares
            self._resolved.clear()

    def configure(self, reserve: float, shares: Mapping[str, float], limits: Mapping[str, int],
                  tiers: Mapping[str, str]) -> None:
        """A reloaded config, in force from the next request (budgets are resolved again)."""
        self.reserve, self.shares, self.limits, self.tiers = reserve, dict(shares), dict(limits), dict(tiers)
        self._resolved.clear()

    def resolve(self, exchange: str, account: str, budget: Budget,
                tier_budgets: Mapping[str, tuple[Budget, ...]]) -> Budget:
        """The budget as this account has it: its tier's (`tier_budgets`, the adapter's), then the config's
        limit. Computed once per account and budget, so every request charges the same Budget object."""
        key = (exchange, account, budget.name)
        resolved = self._resolved.get(key)
        if resolved is None:
            tier = self.tiers.get(account)
            if tier is not None:
                budget = next((b for b in tier_budgets.get(tier, ()) if b.name == budget.name), budget)
            limit = self.limits.get(f"{exchange}.{budget.name}")
            resolved = budget if limit is None else replace(budget, limit=limit)
            share = self.fleet_shares.get(resolved.per, 1.0)
            if share < 1:
                resolved = replace(resolved, limit=max(1, math.floor(resolved.limit * share)), share=share)
            self._resolved[key] = resolved
        return resolved

    def _meter(self, charge: Charge) -> _Meter:
        meter = self.meters.get(charge.key)
        if meter is None:
            meter = self.meters[charge.key] = _Meter(charge.budget)
        elif meter.budget is not charge.budget and meter.budget != charge.budget:  # the config changed its limit
            meter.budget, meter.limit, meter.window = charge.budget, charge.budget.limit, charge.budget.window_s
        return meter

    def spend(self, charges: tuple[Charge, ...], way_out: bool, now: float, bot: str = "") -> float | None:
        """Charge every budget, or none: None when the request may go, else the seconds to wait (the
        window's end, the exchange's ban, or the bot's share coming free)."""
        wait, banned, spending, pools, keep = 0.0, self.banned_until, [], self.pools, 1 - self.reserve
        for c in charges:
            if banned and banned.get(c.key, 0.0) > now:
                wait = max(wait, banned[c.key] - now)
                continue
            meter = self._meter(c)
            # a budget of a few (a fleet's part of OKX's 3 sockets a second) keeps one for ordinary requests: the
            # reserve's floor left 0 and refused every one of them (session 34's regression review)
            ceiling = meter.limit if way_out else max(min(1, meter.limit), math.floor(meter.limit * keep))
            pool = entry = None
            if bot:
                pool = pools.get(c.key)
                if pool is None:
                    pool = pools[c.key] = _Pool(c.budget.span)
                entry = pool.bots.get(bot)
                if entry is None:
                    entry = pool.bots[bot] = (_Meter(c.budget), [-math.inf])
            spending.append((c.cost, meter, entry))
            if wait == 0:
                wait = meter.wait(ceiling, c.cost, now)
                if wait == 0 and pool is not None and entry is not None:
                    wait = self._share_wait(c, meter, ceiling, bot, pool, entry, now)
        self._spends += 1
        if self._spends % 4096 == 0:
            self.sweep(now)
        if wait > 0:
            self.refused += 1
            self.refused_by_bot[bot] = self.refused_by_bot.get(bot, 0) + 1
            return wait
        for cost, meter, entry in spending:
            meter.add(cost, now)
            if entry is not None:
                entry[0].add(cost, now)
                entry[1][0] = now
        return None

    def force(self, charges: tuple[Charge, ...], now: float) -> None:
        """Count a call that goes whatever the budgets say (keyproxy's own: a halt's cancels, a switch's re-arm) on
        the shared meters: the bots' requests after it are refused sooner, never it."""
        for c in charges:
            self._meter(c).add(c.cost, now)

    def _weight(self, spender: str, key_ids: int) -> float:
        """A share's weight: the config's for a bot (default 1); a key id's claim 1 / the active such claims."""
        if key_only(spender):
            return 1.0 / max(1, key_ids)
        return self.shares.get(spender, 1.0) if self.shares else 1.0

    def _share_wait(self, c: Charge, meter: _Meter, ceiling: float, bot: str, pool: _Pool,
                    entry: tuple[_Meter, list[float]], now: float) -> float:
        """Fair share: a bot within its share spends while the budget lasts; a bot over it may only borrow
        what no other active bot (one that spent within the last window) still has coming of its share."""
        span = pool.span
        if now - entry[1][0] >= span or now - pool.counted_at > span / 2:  # (re)joining, or time to recount
            active = [b for b, (_, seen) in pool.bots.items() if b == bot or now - seen[0] < span]
            pool.key_ids = sum(1 for b in active if key_only(b))
            pool.weight = sum(self._weight(b, pool.key_ids) for b in active)
            pool.counted_at = now
        weight = self._weight(bot, pool.key_ids)
        if pool.weight <= weight:  # alone on the budget
            return 0.0
        mine = entry[0].used(now)
        if mine + c.cost <= ceiling * weight / pool.weight:
            return 0.0
        # over its share (by the last count): count exactly, and lend only what nobody else has coming
        others = [(b, self._weight(b, pool.key_ids), m) for b, (m, seen) in pool.bots.items()
                  if b != bot and now - seen[0] < span]
        total_weight = weight + sum(w for _, w, _ in others)
        if mine + c.cost <= ceiling * weight / total_weight:
            return 0.0
        # a bot may borrow what its own key id's share has coming (python-binance sends the key id with its public
        # reads: alone on the account, one such read held half the budget from the bot's own signed requests;
        # session 36's regression review); another bot's stays kept
        own_key = f"{bot} {KEY_ONLY}"
        owed = sum(max(0.0, ceiling * w / total_weight - m.used(now)) for b, w, m in others if b != own_key)
        if meter.used(now) + c.cost + owed <= ceiling:
            return 0.0
        return entry[0].wait(ceiling * weight / total_weight, c.cost, now) or c.budget.window_s

    def observe(self, charges: tuple[Charge, ...], headers: Mapping[str, str], now: float,
                hold: float | None = None, only: str | None = None) -> str | None:
        """Learn from an answer: the exchange's own count and limit (it also counts traffic keyproxy did not
        send), and its refusal for rate: `hold` seconds in which nothing goes on the request's budgets (`only`
        that budget, by name, when the exchange said which; `!NAME`: every one of them but that one; `~PART`:
        those whose name holds PART, as `~ORDERS` the order counts of whichever market the request was in). A
        malformed header keeps our count; the first time a header is malformed its name is returned (for one
        log line).

        The correction goes to the shared meter only, never to a bot's share: when the exchange counts more
        than keyproxy did, the gap is traffic of the whole IP or account (a neighbour's heavy request answered
        a moment earlier, another program on the host, a weight keyproxy's table has too low), and nothing in
        this answer says whose. Charging it to the bot whose answer happened to carry the header would let one
        bot's heavy requests starve another's share. Each bot's share stays what its own requests cost by the
        adapter's tables (`Adapter.costs`), which is why those tables must cover every endpoint keyproxy
        forwards; the shared meter, corrected here, still stops everyone before the exchange would."""
        first_malformed = None
        for c in charges:
            b = c.budget
            meter = self._meter(c)
            if hold is not None and (only is None or only == b.name or only[:1] == "!" and only[1:] != b.name
                                     or only[:1] == "~" and only[1:] in b.name):
                self.banned_until[c.key] = max(self.banned_until.get(c.key, 0.0), now + hold)
            for name in (b.limit_header, b.header):
                if name and name in headers and _whole(headers[name]) is None and name not in self.malformed:
                    self.malformed.add(name)
                    first_malformed = first_malformed or name
            if b.limit_header and (limit := _whole(headers.get(b.limit_header))) is not None and limit > 0:
                meter.limit = max(1, math.floor(limit * b.share))
            count = _whole(headers.get(b.header)) if b.header else None
            if count is None:
                continue
            # the exchange counts the whole key's (or IP's) use, every instance's: in a fleet this instance may
            # use no more than what is left of the whole, so its count is at least its part minus that
            whole = meter.limit if b.share >= 1 else round(meter.limit / b.share)
            used = count if b.header_counts == "used" else whole - count
            meter.at_least(used - (whole - meter.limit), now)
        return first_malformed

    def usage(self, now: float) -> dict[str, float]:
        """Charge key -> share of its budget in use now (for metrics and `status`)."""
        return {key: m.used(now) / m.limit for key, m in self.meters.items() if m.limit}

    def report(self, now: float) -> list[dict[str, object]]:
        """Each budget in use, for `keyproxy status`: whose, what, used of its limit, and how long it is closed."""
        out: list[dict[str, object]] = []
        for key, m in sorted(self.meters.items()):
            scope, _, name = key.rpartition("|")
            closed = max(0.0, self.banned_until.get(key, 0.0) - now)
            used = m.used(now)
            if used or closed:
                out.append({"scope": scope, "budget": name, "used": round(used, 2), "limit": m.limit,
                            "closed_s": round(closed, 1),
                            "bots": sorted(b for b, (bm, _) in (self.pools[key].bots.items() if key in self.pools
                                                                 else ()) if bm.used(now))})
        return out

    def sweep(self, now: float) -> None:
        """Forget bots idle for two windows and empty meters (bounded memory under many scopes)."""
        for key, pool in list(self.pools.items()):
            for b, (m, seen) in list(pool.bots.items()):
                if now - seen[0] > 2 * m.budget.span:
                    del pool.bots[b]
            if not pool.bots:
                del self.pools[key]
        for key, m in list(self.meters.items()):
            if m.used(now) == 0 and self.banned_until.get(key, 0.0) <= now and key not in self.pools:
                del self.meters[key]
        for key, until in list(self.banned_until.items()):
            if until <= now:
                del self.banned_until[key]


def _whole(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None
