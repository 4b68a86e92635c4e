"""What keyproxy knows of an account's markets, only from the exchange's own answers.

Prices (valuing orders that name none, and the price bands' reference with the time each was seen),
contract sizes and the names of markets an exchange numbers (Hyperliquid's asset index, OKX's
`instIdCode`) come from public answers: a bot's, relayed, or keyproxy's own calls. Never from a field of
a bot's request.

Price bands (docs/risk.md): an order whose reference is missing or older than the account's
`reference_max_age` makes `references` raise `NeedReference` before anything is decided or charged; the
edge (proxy/market_data.py) fetches it with the public call the adapter names (`Adapter.reference_request`)
and resumes the same decision once. After that fetch a missing reference is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from keyproxy.exchanges.base import Adapter, IncomingRequest
from keyproxy.policy.decide import needs_reference
from keyproxy.policy.valuation import needs_market_price
from keyproxy.policy.model import BotPolicy, RequestFacts, normalize_symbol
from keyproxy.proxy.refusal import Refused

PublicCall = tuple[str, str, str, bytes]  # method, path, query, body
MAX_REFERENCES = 100_000  # (account, symbol) pairs with a time seen; the least recently seen forgotten first
REFERENCE_MAX_AGE = 10  # seconds, when the account sets no reference_max_age
# a price older than this values an order at the market only after keyproxy asked again (if that fails, the
# older price is what there is): a sell valued at an hour-old price undervalues it by the hour's rise
VALUATION_MAX_AGE = 60.0


class NeedReference(Exception):  # noqa: N818 - a request for data, not an error; never reaches a bot
    """The decision needs reference prices keyproxy does not hold fresh: fetch `calls`, then `resume()`."""

    def __init__(self, calls: tuple[tuple[str, PublicCall], ...]) -> None:
        super().__init__("reference prices needed")
        self.calls = calls  # (symbol, the public call whose answer prices it)
        self.resume: Callable[[], Any] = lambda: None  # set by the core: the same decision, once more
        self.bot = ""  # set by the core: whose share of the exchange's budget the calls spend
        self.facts: RequestFacts | None = None  # set by the core: the request's (a way out may use the reserve)


def scope_reference(adapter: Adapter | None, scope: str) -> PublicCall | None:
    """The public call whose answer prices a scope (`market:symbol`: a position's), None where there is none."""
    market, _, symbol = scope.partition(":")
    return adapter.reference_request(RequestFacts(symbol=symbol, market=market)) \
        if adapter is not None and symbol else None


class MarketBook:
    """Prices, reference times, contract sizes and market names per account."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock  # seconds, the core's clock
        self.prices: dict[tuple[str, str], Decimal] = {}  # (account, symbol) -> last price seen
        self._seen: dict[tuple[str, str], float] = {}  # (account, symbol) -> when its price was seen
        self.contract_sizes: dict[tuple[str, str], Decimal] = {}  # (account, market:symbol) -> size published
        self.names: dict[str, dict[str, str]] = {}  # account -> market id (`#<id>`) -> name published
        self.listed: set[str] = set()  # accounts whose whole market lists keyproxy fetched itself
        # (account, id(policy)) -> (the policy, how many names it was named with, its allowlist named as facts are)
        self._named_policies: dict[tuple[str, int], tuple[BotPolicy, int, BotPolicy]] = {}

    # --- learning from answers -------------------------------------------------

    def learn(self, account: str, adapter: Adapter, path: str, body: bytes) -> None:
        """Market names, prices and contract sizes from a public answer."""
        self.learn_prices(account, adapter.prices(path, body))
        for scope, size in adapter.contract_sizes(path, body).items():
            self.contract_sizes[(account, scope)] = size
        names = adapter.market_names(path, body)
        if names:
            self.names.setdefault(account, {}).update(names)

    def learn_reference(self, account: str, adapter: Adapter, symbol: str, path: str, body: bytes) -> None:
        """keyproxy's own reference call answered: its prices, the one asked for under the order's own
        spelling when the answer names a single market otherwise (Kraken answers `XBTUSD` as `XXBTZUSD`)."""
        prices = adapter.prices(path, body)
        if symbol not in prices and len(prices) == 1:
            prices = {symbol: next(iter(prices.values()))}
        self.learn_prices(account, prices)

    def learn_prices(self, account: str, prices: dict[str, Decimal]) -> None:
        now = self._clock()
        names = self.names.get(account, {})
        for symbol, price in prices.items():
            key = (account, names.get("#" + symbol, symbol))  # a market's one name (Kraken's XXBTZUSD is XBTUSD)
            self.prices[key] = price
            self._seen.pop(key, None)
            self._seen[key] = now  # re-inserted: the least recently seen first
        while len(self._seen) > MAX_REFERENCES:
            self.prices.pop(key := next(iter(self._seen)), None)
            self._seen.pop(key)

    # --- reading ----------------------------------------------------------------

    def last_prices(self, account: str, facts: RequestFacts) -> dict[str, Decimal]:
        """The last price seen of every symbol the request names (valuation, whatever its age)."""
        out = {}
        for leg in (facts, *facts.orders):
            price = self.prices.get((account, leg.symbol)) if leg.symbol else None
            if price is not None:
                out[leg.symbol or ""] = price
        return out

    def age(self, account: str, symbol: str) -> float | None:
        """Seconds since the symbol's price was seen (for `status`), None if never."""
        seen = self._seen.get((account, symbol))
        return None if seen is None else max(0.0, self._clock() - seen)

    def references(self, account: str, adapter: Adapter | None, facts: RequestFacts, max_age: float | None,
                   fetched: bool, valued: bool = False, sized: bool = False) -> dict[str, Decimal]:
        """The prices seen within `max_age` of every order leg a price band checks (`max_age` None: no band);
        `NeedReference` for the missing ones the exchange can be asked for, unless keyproxy has just asked
        (`fetched`). `valued`: the bot has a notional limit, so a leg valued at the market's price
        (`needs_market_price`: a sell, a buy without a limit) whose symbol has no price seen within
        VALUATION_MAX_AGE is asked for too (with none at all, such an order cannot be valued and is refused);
        `sized`: the bot has a position cap, so a quote-sized leg (its size is quote / price) is asked for alike."""
        now = self._clock()
        found: dict[str, Decimal] = {}
        calls: dict[PublicCall, str] = {}
        for leg in facts.placed():
            if not leg.symbol:
                continue
            key = (account, leg.symbol)
            banded = max_age is not None and needs_reference(leg)
            if banded and now - self._seen.get(key, float("-inf")) <= max_age:  # type: ignore[operator]
                found[leg.symbol] = self.prices[key]
            elif (banded or (valued and needs_market_price(leg) or sized and leg.quote_quantity is not None)
                  and now - self._seen.get(key, float("-inf")) > VALUATION_MAX_AGE) \
                    and not fetched and adapter is not None:
                call = adapter.reference_request(leg)
                if call is not None:
                    calls.setdefault(call, leg.symbol)
        if calls:
            raise NeedReference(tuple((symbol, call) for call, symbol in calls.items()))
        return found

    # --- markets named by number --------------------------------------------------

    def named_policy(self, account: str, policy: BotPolicy) -> BotPolicy:
        """The policy with its `symbols` allowlist named as the facts are (`#<spelling>` -> the market's one name,
        where the exchange publishes several spellings: Kraken), so an operator's `XXBTZUSD` or `BTC/USD` allows
        what the facts call `XBTUSD`; and a market named by the exchange in a form the allowlist's spelling drops
        (Hyperliquid's `PURR/USDC`, `@107`, `kPEPE`) allowed as the operator wrote it. An entry of digits alone is
        never read as a market's number (`#<asset>`, Hyperliquid's): `@1` is spot pair @1, never perp asset 1
        (session 32's review). Cached per policy until more names are learned."""
        names = self.names.get(account, {})
        cached = self._named_policies.get((account, id(policy)))
        if cached is not None and cached[0] is policy and cached[1] == len(names):
            return cached[2]
        assert policy.symbols is not None
        allowed = set(policy.symbols)
        spelled = (names[k] for s in policy.symbols if not s.isdigit() and (k := "#" + s) in names)
        as_written = (name for key, name in names.items() if not key.startswith("*")
                      and name not in allowed and normalize_symbol(name) in allowed)
        symbols = tuple(dict.fromkeys((*policy.symbols, *spelled, *as_written)))
        named = policy if symbols == policy.symbols else replace(policy, symbols=symbols)
        if len(self._named_policies) > 1024:
            self._named_policies.clear()
        self._named_policies[(account, id(policy))] = (policy, len(names), named)
        return named

    def book_scope(self, account: str, scope: str) -> str:
        """The scope of the order book a product trades on, where several products trade on one (`*<name>` among
        the names: Coinbase's BTC-USDC on BTC-USD's book), for what the exchange reports under either product."""
        names = self.names.get(account)
        market, _, symbol = scope.partition(":")
        if not names or not symbol or (name := names.get("#" + symbol)) is None or name == symbol \
                or "*" + name not in names:
            return scope
        return f"{market}:{name}"

    def missing(self, account: str, adapter: Adapter, incoming: IncomingRequest) -> bool:
        """Whether the request names a market id keyproxy has no name for yet (`fetch it first`)."""
        known = self.names.get(account, {})
        return any(m not in known for m in adapter.market_ids(incoming))

    def named(self, account: str, facts: RequestFacts) -> RequestFacts:
        """Markets named by id (`#<asset>`) get the name the exchange published; an unknown id is refused,
        since no symbol limit could be checked against it. Contract orders get the contract size the
        exchange published (never a size from the request)."""
        def resolved(leg: RequestFacts) -> RequestFacts:
            if leg.symbol and leg.symbol.startswith("#"):
                known = self.names.get(account)
                name = known.get(leg.symbol) if known else None
                if not known:  # the market list could not be had yet (the exchange's answer failed or is on its way)
                    raise Refused("unavailable", "keyproxy does not hold the exchange's market list yet; retry", 1.0)
                if name is None:
                    raise Refused("bad_request", f"market {leg.symbol[1:]} is not among the markets the exchange "
                                  "published (keyproxy asks for its market list when it meets a name it does not know)")
                leg = replace(leg, symbol=name)
            if leg.contract is not None:
                leg = replace(leg, contract_size=self.contract_sizes.get((account, leg.scope)))
            return leg
        if facts.orders:
            return replace(facts, orders=tuple(resolved(leg) for leg in facts.orders))
        return resolved(facts)
