"""A bot's policy and the facts of one request: plain values, parsed and validated once.

Stored as JSON in the vault with the bot; set at `bot add`, changed with
`bot set BOT key=value`. Every limit is optional: None means "no limit of
this kind", never "unknown".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, fields, replace
from decimal import Context, Decimal, InvalidOperation
from typing import Any

SCOPES = ("read", "trade", "withdraw", "transfer")
DEFAULT_ALLOW_IPS = ("127.0.0.1/32", "::1/128")


class PolicyError(ValueError):
    """A policy value is malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request would do, extracted by the exchange adapter (None: not applicable or unknown)."""

    action: str | None = None  # order | amend | cancel | leverage | withdraw | other
    symbol: str | None = None
    market: str | None = None  # the exchange's market type (spot, margin, usdm, coinm, linear, ...)
    side: str | None = None
    order_type: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    quote_quantity: Decimal | None = None
    leverage: Decimal | None = None
    reduce_only: bool = False
    # the order names one leg of a hedge-mode position (Bybit positionIdx 1/2, Binance positionSide LONG/SHORT, OKX
    # posSide long/short): its reduce-only flag shrinks that leg, which can grow the net position keyproxy caps (a
    # long and a short held together: closing the long leaves the short). Believed for a reduce-only bot and a halt
    # (the exchange lets it only close), never for a position cap or a loss limit (`decide.reduces`).
    hedged: bool = False
    asset: str | None = None
    # one name for an asset the exchange takes under several (Kraken's XXBT, XBT and BTC): what a daily withdrawal cap
    # counts (each spelling had a cap of its own: session 32's review), and an allowlist entry naming it matches each
    asset_id: str | None = None
    address: str | None = None
    network: str | None = None
    amount: Decimal | None = None
    memo: str | None = None  # a withdrawal's memo / tag / destination tag: on shared addresses it picks the account
    # How the exchange reads `quantity`: None in base units; "linear": contracts of `contract_size` base
    # units; "inverse": contracts worth `contract_size` quote units each. The pipeline fills
    # `contract_size` from instrument data the exchange published (never from the bot's request).
    contract: str | None = None
    contract_size: Decimal | None = None
    # A valuation field the exchange ignores for this order type, or two that contradict each other:
    # keyproxy cannot be sure which value executes, so a bot with a notional limit is refused.
    conflict: str | None = None
    # the conflict is over what the order trades (two sizes, or a type whose size keyproxy does not read), not only
    # over its price: no position cap or loss limit can hold it (a price-only conflict leaves the size sure)
    size_unsure: bool = False
    borrows: bool = False  # the order may borrow funds (margin auto-borrow): needs the transfer scope
    trigger_price: Decimal | None = None  # a stop / take-profit / trigger order's trigger (checked by price bands)
    trigger_relative: bool = False  # the trigger is an offset from the market (Kraken +x, x%): no band can check it
    # a limit the exchange sets itself when the trigger fires, above a buy's own limit (a Coinbase bracket's stop is
    # placed at its trigger + 5% for a buy): what a buy may pay at most, for valuation only
    stop_limit: Decimal | None = None
    # the exchange sets the price from the book (Binance priceMatch, pegged orders): valued and checked for crossing
    # as a market order; an amend saying so moves the order off the price the book holds
    book_priced: bool = False
    order_id: str | None = None  # an amend: the exchange's id of the order it changes (None: a client id, or none)
    # why keyproxy cannot follow this order's fills (a Hyperliquid TWAP fills as child orders no answer names):
    # no position or loss limit could hold it, so a bot bound by one is refused it
    untracked: str | None = None
    # a conditional order held off the order book till its trigger, when it becomes an order of its own (Binance's
    # Algo Service): it rests with no price to cross, and what it becomes is followed from the answers that name it
    conditional: bool = False
    orders: tuple[RequestFacts, ...] = ()  # a batch: every order it places or changes, read one by one
    # resting orders whose take-profit / stop-loss this request changes without changing their size or price (a
    # Bybit tp/sl-only amend), by the exchange's id (None: named by a client id): only the bot's own, by their id
    touches: tuple[str | None, ...] = ()
    # the resting orders a cancel (or a cancel-replace's cancel) names: by the exchange's ids, by client ids, or
    # every order of its scope (a cancel-all; a countdown that will cancel them): only the bot's own
    cancels: tuple[str, ...] = ()
    client_id: str | None = None  # an order's client id as the request names it (where the answer does not echo it)
    cancels_by_client: tuple[str, ...] = ()
    cancels_all: bool = False
    # a cancel-all of orders no open-orders listing shows (Binance conditional and algo orders, OKX spread and rfq
    # orders), which keyproxy does not attribute: refused once another bot placed anything in its scope
    cancels_unlisted: bool = False
    # a timer the exchange will run down and then cancel every order of the scope (a countdown, a cancel-all-after, a
    # disconnect-cancel-all): whose orders rest when it fires, no check made now can tell
    cancels_later: bool = False
    # the order asks the exchange to cancel other resting orders of the account: those it meets (self-trade
    # prevention: Bybit `smpType` CancelMaker / CancelBoth, Kraken `stptype` cancel-oldest / cancel-both), or those
    # in its way when it triggers (Bybit `closeOnTrigger`): the exchange sees one account, so they may be any bot's
    # (session 32's review: a 1 USD order cancelled another bot's where keyproxy's own self-cross check does not look)
    cancels_met: bool = False
    # the exchange routes the order over several order books (Binance's smart order routing fills a BTCUSDT order from
    # BTCUSDC's book too): keyproxy's self-cross check sees the order's own book only (session 32's review)
    routed: bool = False
    # an amend whose one price is its order's limit or its trigger, by the order's type (Kraken's EditOrder names
    # none): a stop's trigger where the book holds the order with no price (`decide.retriggered`)
    price_or_trigger: bool = False
    # an amend that cancels its order and places a new one under a new id (Kraken's EditOrder, Hyperliquid's modify;
    # not Kraken's AmendOrder, which keeps the id)
    replaces: bool = False
    # why keyproxy cannot follow the fills of what this request does, where nothing of it rests (an OKX spot margin
    # close-position: a market order no answer names): no position or loss limit could hold it
    unfollowed: str | None = None

    @property
    def withdrawn_asset(self) -> str:
        """The asset a withdrawal's daily cap counts it under."""
        return self.asset_id or self.asset or ""

    def placed(self) -> tuple[RequestFacts, ...]:
        """Every order this request places or changes (one for a single order, each leg of a batch)."""
        if self.orders:
            return self.orders
        return (self,) if self.action in ("order", "amend") else ()

    def not_reduce_only(self) -> RequestFacts:
        """These facts with no leg taken as reduce-only: an amend's own flag, where the exchange's amend keeps
        the flags the order was placed with (or ignores the parameter), says nothing of the order it leaves."""
        return replace(self, reduce_only=False, orders=tuple(replace(o, reduce_only=False) for o in self.orders))

    @property
    def scope(self) -> str:
        """Where the exchange keeps this order: `market:symbol`, the key of open-order counts."""
        return f"{self.market or '*'}:{self.symbol or '*'}"


def scopes_overlap(scopes: tuple[str, ...], others: tuple[str, ...]) -> bool:
    """Whether any of two sets of `market:symbol` scopes may name the same orders (`*` stands for any)."""
    for scope in scopes:
        market, _, symbol = scope.partition(":")
        for other in others:
            m, _, s = other.partition(":")
            if (market == m or "*" in (market, m)) and (symbol == s or "*" in (symbol, s)):
                return True
    return False


@dataclass(frozen=True, slots=True)
class BotPolicy:
    scopes: tuple[str, ...] = ("read",)
    allow_ips: tuple[str, ...] = DEFAULT_ALLOW_IPS
    requests_per_second: float | None = None
    burst: int | None = None
    orders_per_minute: int | None = None
    cancels_per_minute: int | None = None
    symbols: tuple[str, ...] | None = None
    max_order_notional: Decimal | None = None
    max_open_orders: int | None = None
    daily_notional_cap: Decimal | None = None  # sum of order notionals per UTC day
    max_leverage: Decimal | None = None
    reduce_only: bool = False
    # "ASSET:NETWORK:ADDRESS" ("*" network: any), optionally ";memo=MEMO" (must match) or ";memo=*" (any);
    # without a memo part a withdrawal carrying a memo is refused (the memo picks who is credited)
    withdraw_addresses: tuple[str, ...] | None = None
    max_withdrawal: Decimal | None = None
    daily_withdrawal_cap: Decimal | None = None  # per asset, per UTC day
    active_hours: tuple[str, ...] | None = None  # "HH:MM-HH:MM" UTC windows
    # silent (no authenticated request) this long: keyproxy cancels the bot's resting orders (proxy/heartbeat.py)
    heartbeat_seconds: int | None = None
    # pre-trade risk (docs/risk.md): a buy priced more than this percentage above keyproxy's own reference
    # price, a sell below it, or a trigger that far either side, is refused (price_out_of_band)
    price_band_pct: Decimal | None = None
    # the same order (market, symbol, side, size, price, trigger) more than this many times within
    # duplicate_window_seconds is refused (duplicate_order): a bot in a loop
    duplicate_orders: int | None = None
    duplicate_window_seconds: int = 60
    # the bot's position per symbol (from fills the exchange confirmed, in the exchange's order units: base,
    # or contracts) plus its resting orders on the same side plus this order may not exceed this
    max_position: Decimal | None = None
    max_position_notional: Decimal | None = None  # the same in quote currency, at the order's (or last) price
    # today's (UTC) P&L below minus this, in the quote currency: only orders that reduce a position pass
    max_daily_loss: Decimal | None = None
    on_loss_limit: str = "halt"  # "halt": refuse risk-increasing orders; "cancel": also cancel its resting orders
    allow_self_cross: bool = False  # an order crossing another bot's resting order on the account is refused
    # more fills than this within 60 s fires the fill_burst anomaly rule (default action: halt the bot)
    max_fills_per_minute: int | None = None

    @property
    def position_capped(self) -> bool:
        """A cap on the bot's position (in units or in value): it needs the positions book."""
        return self.max_position is not None or self.max_position_notional is not None

    def loss_limited(self, limits: AccountLimits | None) -> bool:
        """A daily loss limit binds the bot: its own, or its account's."""
        return self.max_daily_loss is not None or (limits is not None and limits.max_daily_loss is not None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, Decimal):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[k] = v
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BotPolicy:
        """A stored policy: an empty list an older keyproxy stored reads as cleared (which it meant then), and a number
        it stored outside today's bounds as the nearest bound (`_as_stored`): a bot that traded before an upgrade
        is never refused for it (session 35's regression review: `daily_notional_cap=1e16` left the bot out)."""
        known = {f.name for f in fields(cls)}
        return parse_policy({k: None if v == [] else _as_stored(v) for k, v in doc.items() if k in known})


# every number a limit takes lies in here: beyond it a float overflows to inf or underflows to 0, which a rate reads
# as no limit at all (session 35's review: requests_per_second=1e-400 was stored as 0.0 and let every request
# through; 1e999 as inf, which the vault then could not read back, so a revocation never reached the daemon)
NUMBER_RANGE = (Decimal("1e-12"), Decimal("1e15"))
SIGNIFICANT_DIGITS = 30


def _as_stored(value: Any) -> Any:
    """A stored number past NUMBER_RANGE or SIGNIFICANT_DIGITS, brought within them (a cap of 1e16 is 1e15, no
    looser in practice; a rate of 1e-13, 1e-12); anything else as it is (an infinity or a NaN stays refused)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return value
    if not d.is_finite() or d <= 0:
        return value
    fitted = min(max(d, NUMBER_RANGE[0]), NUMBER_RANGE[1])
    if len(fitted.as_tuple().digits) > SIGNIFICANT_DIGITS:
        fitted = Context(prec=SIGNIFICANT_DIGITS).plus(fitted)
    return value if fitted is d else str(fitted)


def _decimal(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > 1000):
        raise PolicyError(f"{key}: must be a positive number, not {str(value)[:64]!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise PolicyError(f"{key}: must be a positive number, not {value!r}") from None
    if not d.is_finite() or d <= 0:
        raise PolicyError(f"{key}: must be a positive number, not {value!r}")
    if not NUMBER_RANGE[0] <= d <= NUMBER_RANGE[1]:
        raise PolicyError(f"{key}: must be between {NUMBER_RANGE[0]} and {NUMBER_RANGE[1]}, not {value!r}")
    if len(d.as_tuple().digits) > SIGNIFICANT_DIGITS:  # what is stored reads back: its digits, not its typing, count
        raise PolicyError(f"{key}: at most {SIGNIFICANT_DIGITS} significant digits, not {str(value)[:64]!r}")
    return d


def _int(key: str, value: Any) -> int:
    d = _decimal(key, value)
    if d != d.to_integral_value():
        raise PolicyError(f"{key}: must be a whole number, not {value!r}")
    return int(d)


def _list(key: str, value: Any) -> list[str]:
    """A list's items; an empty one is refused (session 35's review: `symbols=,` read as no items was stored as an
    empty allowlist, which reads back as none at all, so every symbol passed): `KEY=none` clears a list."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise PolicyError(f"{key}: must be a list of strings")
    if not items:
        raise PolicyError(f"{key}: an empty list; clear it with none ({key}=none on the command line, {key} = "
                          '"none" in the config file)')
    return items


DUPLICATE_WINDOW_RANGE = (1, 86_400)
FILLS_MAX = 10_000  # a minute's fills keyproxy remembers per bot (proxy/positions.py)
DUPLICATE_ORDERS_MAX = 1000  # below the repeats keyproxy remembers per order (policy/decide.py)
BAND_MAX = Decimal(100)  # a sell band of 100% or more would never refuse anything
REFERENCE_AGE_RANGE = (1, 300)  # seconds a reference price may be old; longer is no reference at all


def _band(value: Any) -> Decimal:
    pct = _decimal("price_band_pct", value)
    if pct >= BAND_MAX:
        raise PolicyError(f"price_band_pct: must be a percentage above 0 and below 100, not {value!r}")
    return pct


LOSS_ACTIONS = ("halt", "cancel")


def _quote_amount(key: str, value: Any) -> Decimal:
    """A positive amount; a currency after it is refused (limits are in each market's own units)."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9.]+\s*[A-Za-z]{2,10}\s*", value):
        raise PolicyError(f"{key}: a plain number in the market's own units (quote currency for a loss), "
                          f"without a currency name, not {value!r}")
    return _decimal(key, value)


def _count_in(key: str, value: Any, most: int) -> int:
    count = _int(key, value)
    if count > most:
        raise PolicyError(f"{key}: must be 1 to {most}, not {count}")
    return count


def _seconds_in(key: str, value: Any, bounds: tuple[int, int]) -> int:
    seconds = _int(key, value)
    if not bounds[0] <= seconds <= bounds[1]:
        raise PolicyError(f"{key}: must be {bounds[0]} to {bounds[1]} seconds, not {seconds}")
    return seconds


HEARTBEAT_RANGE = (2, 86_400)  # under 2 s a busy event loop or a GC pause would read as a silent bot
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")


def parse_policy(doc: dict[str, Any], base: BotPolicy | None = None) -> BotPolicy:
    """Validate `doc` (from config, CLI or the vault) over `base`; errors name the key."""
    known = {f.name for f in fields(BotPolicy)}
    changes: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in known:
            raise PolicyError(f"{key}: unknown policy key (known: {', '.join(sorted(known))})")
        if value is None or value == "none":
            if key in ("scopes", "allow_ips", "reduce_only", "duplicate_window_seconds", "on_loss_limit",
                       "allow_self_cross"):
                raise PolicyError(f"{key}: cannot be cleared")
            changes[key] = None
            continue
        if key == "scopes":
            scopes = tuple(dict.fromkeys(_list(key, value)))
            for s in scopes:
                if s == "admin":
                    raise PolicyError("scopes: the admin scope is never granted to a bot")
                if s not in SCOPES:
                    raise PolicyError(f"scopes: unknown scope {s!r} (known: {', '.join(SCOPES)})")
            if not scopes:
                raise PolicyError("scopes: at least one scope is needed")
            changes[key] = scopes
        elif key == "allow_ips":
            nets = []
            for item in _list(key, value):
                try:
                    nets.append(str(ipaddress.ip_network(item, strict=False)))
                except ValueError:
                    raise PolicyError(f"allow_ips: invalid CIDR {item!r}") from None
            changes[key] = tuple(dict.fromkeys(nets))
        elif key in ("requests_per_second",):
            changes[key] = float(_decimal(key, value))
        elif key == "heartbeat_seconds":
            seconds = _int(key, value)
            if not HEARTBEAT_RANGE[0] <= seconds <= HEARTBEAT_RANGE[1]:
                raise PolicyError(f"heartbeat_seconds: must be {HEARTBEAT_RANGE[0]} to {HEARTBEAT_RANGE[1]} seconds, "
                                  f"not {seconds}")
            changes[key] = seconds
        elif key in ("burst", "orders_per_minute", "cancels_per_minute", "max_open_orders"):
            changes[key] = _int(key, value)
        elif key == "duplicate_orders":
            changes[key] = _count_in(key, value, DUPLICATE_ORDERS_MAX)
        elif key == "max_fills_per_minute":
            changes[key] = _count_in(key, value, FILLS_MAX)
        elif key == "price_band_pct":
            changes[key] = _band(value)
        elif key == "duplicate_window_seconds":
            changes[key] = _seconds_in(key, value, DUPLICATE_WINDOW_RANGE)
        elif key in ("max_order_notional", "max_leverage", "max_withdrawal", "daily_notional_cap",
                     "daily_withdrawal_cap"):
            changes[key] = _decimal(key, value)
        elif key in ("reduce_only", "allow_self_cross"):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise PolicyError(f"{key}: must be true or false, not {value!r}")
            changes[key] = value
        elif key in ("max_position", "max_position_notional", "max_daily_loss"):
            changes[key] = _quote_amount(key, value)
        elif key == "on_loss_limit":
            if value not in LOSS_ACTIONS:
                raise PolicyError(f"on_loss_limit: must be one of {', '.join(LOSS_ACTIONS)}, not {value!r}")
            changes[key] = value
        elif key == "symbols":
            changes[key] = tuple(dict.fromkeys(normalize_symbol(s) for s in _list(key, value)))
        elif key == "withdraw_addresses":
            entries = []
            for item in _list(key, value):
                target, sep, memo = item.partition(";memo=")
                parts = target.split(":", 2)
                if len(parts) != 3 or not all(parts) or ";" in target + memo or (sep and not memo):
                    raise PolicyError(f"withdraw_addresses: {item!r} is not ASSET:NETWORK:ADDRESS[;memo=MEMO|*]")
                entries.append(f"{parts[0].upper()}:{parts[1].upper()}:{parts[2]}" + (f";memo={memo}" if sep else ""))
            changes[key] = tuple(entries)
        elif key == "active_hours":
            windows = _list(key, value)
            for w in windows:
                if not _HOURS.fullmatch(w):
                    raise PolicyError(f"active_hours: {w!r} is not HH:MM-HH:MM (UTC)")
            changes[key] = tuple(windows)
    return replace(base or BotPolicy(), **changes)


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """Limits shared by every bot of one account, and defaults for them (`[accounts.NAME]` in the config)."""

    requests_per_second: float | None = None
    burst: int | None = None
    orders_per_minute: int | None = None
    cancels_per_minute: int | None = None
    # the exchange's own cancel-on-silence timer, kept armed by keyproxy (exchanges/open_orders.py SWITCHES)
    dead_man_seconds: int | None = None
    price_band_pct: Decimal | None = None  # for the account's bots that set none of their own
    reference_max_age: int = 10  # seconds: an older reference price is fetched again, or the order refused
    max_daily_loss: Decimal | None = None  # the sum of the account's bots' P&L today (quote currency)


ACCOUNT_LIMIT_KEYS = ("requests_per_second", "burst", "orders_per_minute", "cancels_per_minute", "dead_man_seconds",
                      "price_band_pct", "reference_max_age", "max_daily_loss")
DEAD_MAN_RANGE = (5, 86_400)  # the widest any exchange accepts; each exchange's own bounds are checked per account


def parse_account_limits(doc: dict[str, Any]) -> AccountLimits:
    for key in doc:
        if key not in ACCOUNT_LIMIT_KEYS:
            raise PolicyError(f"{key}: unknown account limit (known: {', '.join(ACCOUNT_LIMIT_KEYS)})")
    rate = doc.get("requests_per_second")
    return AccountLimits(
        requests_per_second=float(_decimal("requests_per_second", rate)) if rate is not None else None,
        **{k: _int(k, doc[k]) for k in ("burst", "orders_per_minute", "cancels_per_minute") if k in doc},
        dead_man_seconds=_dead_man(doc["dead_man_seconds"]) if "dead_man_seconds" in doc else None,
        price_band_pct=_band(doc["price_band_pct"]) if "price_band_pct" in doc else None,
        max_daily_loss=_quote_amount("max_daily_loss", doc["max_daily_loss"]) if "max_daily_loss" in doc else None,
        reference_max_age=(_seconds_in("reference_max_age", doc["reference_max_age"], REFERENCE_AGE_RANGE)
                           if "reference_max_age" in doc else 10),
    )


def _dead_man(value: Any) -> int:
    seconds = _int("dead_man_seconds", value)
    low, high = DEAD_MAN_RANGE
    if not low <= seconds <= high:
        raise PolicyError(f"dead_man_seconds: must be {low} to {high} seconds, not {seconds}")
    return seconds


@dataclass(frozen=True, slots=True)
class Usage:
    """What a bot has used so far, read from keyproxy's durable counters."""

    open_orders: int = 0
    daily_notional: Decimal = Decimal(0)
    daily_withdrawn: Decimal = Decimal(0)  # of the asset the request withdraws


def normalize_symbol(symbol: str) -> str:
    """BTC/USDT, btc-usdt, BTCUSDT -> BTCUSDT: one spelling for allowlists and facts."""
    return re.sub(r"[^A-Z0-9]", "", symbol.upper().split(":", 1)[0])


def minutes_of_day(window: str) -> tuple[int, int]:
    m = _HOURS.fullmatch(window)
    assert m is not None
    return int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))


def policy_field_names() -> list[str]:
    return [f.name for f in fields(BotPolicy)]
