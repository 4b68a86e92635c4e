"""The policy decision: a pure function of the request's facts, the bot's policy, counters and time.

`decide` returns a `Decision`; it never mutates the counters but lists the
charges to apply when the request is allowed. `Decision()` built with no
arguments denies, so a forgotten branch cannot allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from keyproxy.policy.counters import Counters, OrderShape, in_hours, order_shape, rate_limits
from keyproxy.policy.model import AccountLimits, BotPolicy, RequestFacts, Usage
from keyproxy.policy.risk_view import Amended, RiskView, amended_leg, retriggered
from keyproxy.policy.valuation import notional, order_size, total_notional, worst_price


class DenyCode(StrEnum):
    SCOPE = "scope_denied"
    RATE = "rate_limited"
    SYMBOL = "symbol_denied"
    NOTIONAL = "notional_exceeded"
    NOTIONAL_UNKNOWN = "notional_unknown"
    OPEN_ORDERS = "open_orders_exceeded"
    DAILY_NOTIONAL = "daily_notional_exceeded"
    LEVERAGE = "leverage_exceeded"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"
    ADDRESS = "address_denied"
    WITHDRAWAL = "withdrawal_limit"
    HOURS = "outside_hours"
    PRICE_BAND = "price_out_of_band"
    REFERENCE = "reference_unavailable"
    DUPLICATE = "duplicate_order"
    POSITION = "position_exceeded"
    LOSS = "loss_limit"
    SELF_CROSS = "self_cross"
    UNDECIDED = "policy_denied"


# deny codes a price keyproxy does not hold yet could change (any other refusal stands whatever the price)
PRICED_CODES = frozenset({DenyCode.NOTIONAL, DenyCode.NOTIONAL_UNKNOWN, DenyCode.DAILY_NOTIONAL, DenyCode.PRICE_BAND,
                          DenyCode.REFERENCE, DenyCode.POSITION, DenyCode.LOSS})

# deny codes of the pre-trade risk controls -> the rule named in keyproxy_risk_refusals_total{rule}
RISK_RULES = {DenyCode.PRICE_BAND.value: "price_band", DenyCode.REFERENCE.value: "price_band",
              DenyCode.DUPLICATE.value: "duplicate_orders", DenyCode.POSITION.value: "max_position",
              DenyCode.LOSS.value: "max_daily_loss", DenyCode.SELF_CROSS.value: "self_cross"}


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool = False
    code: str = DenyCode.UNDECIDED.value
    detail: str = "no rule allowed this request"
    charges: tuple[str, ...] = ()  # token buckets to take one token from
    retry_after: float | None = None
    notional: Decimal | None = None  # to add to the bot's daily traded notional
    withdrawal: Decimal | None = None  # to add to the bot's daily withdrawn amount of the asset
    orders: tuple[OrderShape, ...] = ()  # to remember for the bot's duplicate_orders window


def allowed(charges: tuple[str, ...], notional: Decimal | None = None, withdrawal: Decimal | None = None,
            orders: tuple[OrderShape, ...] = ()) -> Decision:
    return Decision(True, "", "", charges, None, notional, withdrawal, orders)


def deny(code: DenyCode, detail: str, retry_after: float | None = None) -> Decision:
    return Decision(False, code.value, detail, (), retry_after)


def decide(facts: RequestFacts, endpoint_class: str, policy: BotPolicy, counters: Counters, now: float, *,
           bot: str, account: str, halted: str | None = None, last_price: Decimal | None = None,
           account_limits: AccountLimits | None = None, usage: Usage = Usage(),
           throttle: float | None = None, prices: dict[str, Decimal] | None = None,
           references: dict[str, Decimal] | None = None, risk: RiskView | None = None) -> Decision:
    """Allow or deny one request. `halted` is the reason of a kill switch covering this bot, if any.

    A batch (`facts.orders`) is decided as a whole from its legs: every leg must pass, and every
    limit counts every leg (open orders, orders per minute, daily notional). `prices` are the last
    relayed prices by symbol (a batch may name several); `last_price` is the one of `facts.symbol`;
    `references` the prices by symbol that are young enough to be the price band's reference.
    """
    known = dict(prices or {})
    if last_price is not None and facts.symbol:
        known.setdefault(facts.symbol, last_price)
    legs = facts.placed()
    if endpoint_class != "public" and endpoint_class not in policy.scopes:
        return deny(DenyCode.SCOPE, f"the bot lacks the {endpoint_class} scope")
    if endpoint_class == "trade" and any(leg.borrows for leg in (facts, *legs)) and "transfer" not in policy.scopes:
        return deny(DenyCode.SCOPE, "the order borrows funds (margin auto-borrow), which needs the transfer scope")
    harmless = _harmless(endpoint_class, facts)
    if halted is not None and not passes_halt(endpoint_class, facts):
        return deny(DenyCode.HALTED, f"trading is halted: {halted}; only reads and cancels pass")
    if policy.active_hours and not harmless and not in_hours(policy.active_hours, now):
        return deny(DenyCode.HOURS, f"outside the bot's active hours ({', '.join(policy.active_hours)} UTC)")

    charges: list[str] = []
    limits = rate_limits(f"bot:{bot}", policy, facts.action)
    if account_limits is not None:
        limits += rate_limits(f"account:{account}", account_limits, facts.action)
    if throttle is not None:  # a temporary limit set by the rate_spike anomaly rule
        limits.append((f"throttle:{bot}", throttle, max(1.0, throttle)))
    for key, rate, capacity in limits:
        tokens = max(1, len(legs)) if key.endswith(":orders") else 1  # a batch of n orders is n orders
        if tokens > capacity:
            return deny(DenyCode.RATE, f"a batch of {tokens} orders is more than rate limit "
                        f"{key.split(':')[-1]} ever allows at once")
        wait = counters.bucket(key, rate, capacity, now).wait(now, tokens)
        if wait > 0:
            return deny(DenyCode.RATE, f"rate limit {key.split(':')[-1]} reached", retry_after=wait)
        charges.extend([key] * tokens)

    value = None
    valued = facts  # what the notional limits read: an amend keeping its order's price is worth that price
    if facts.action == "amend" and (policy.max_order_notional is not None or policy.daily_notional_cap is not None):
        valued = _amends_priced(facts, risk)
    if endpoint_class == "trade":
        trade = _trade_checks(valued, policy, known, account_limits)
        if trade is None:
            trade = _risk_checks(facts, policy, references or {}, account_limits, counters, bot, now)
        if trade is None and risk is not None:
            trade = _position_checks(facts, policy, risk, known)
        if trade is not None:
            return trade
        if facts.action == "order" and policy.max_open_orders is not None:
            if usage.open_orders + len(legs) > policy.max_open_orders:
                return deny(DenyCode.OPEN_ORDERS, f"{usage.open_orders} open orders and {len(legs)} more: "
                            f"the cap is {policy.max_open_orders}")
        if legs:
            value = total_notional(valued, known)
            if policy.daily_notional_cap is not None:
                if value is None:
                    return deny(DenyCode.NOTIONAL_UNKNOWN, "cannot value this order against the daily cap")
                if usage.daily_notional + value > policy.daily_notional_cap:
                    return deny(DenyCode.DAILY_NOTIONAL, f"today's traded notional would reach "
                                f"{(usage.daily_notional + value).normalize():f}, above the daily cap "
                                f"{policy.daily_notional_cap.normalize():f}")
    if endpoint_class == "withdraw":
        withdrawal = _withdraw_checks(facts, policy, usage)
        if withdrawal is not None:
            return withdrawal
    shapes = tuple(order_shape(leg) for leg in legs) if policy.duplicate_orders and facts.action == "order" else ()
    return allowed(tuple(charges), value, facts.amount if facts.action == "withdraw" else None, shapes)


def _amends_priced(facts: RequestFacts, risk: RiskView | None) -> RequestFacts:
    """An amend's legs as the notional limits value them: a leg that names no new price keeps its order's, which
    the exchange goes on executing at (a size-only amend of a sell resting far above the market is worth that
    price, not the market's): the positions book's price and side, else refused as unvalued (session 22's review)."""
    legs = facts.placed()
    out = []
    for i, leg in enumerate(legs):
        held = risk.amended[i] if risk is not None and i < len(risk.amended) else None
        if held is not None and not leg.side:  # an edit names no side (Kraken's EditOrder): the order's
            leg = replace(leg, side=held.side.upper())
        if held is not None and (trigger := retriggered(leg, held.price)) is not leg:
            out.append(trigger)  # valued as an order at market
            continue
        if leg.price is None and not leg.book_priced and leg.quote_quantity is None:
            order = held
            if order is not None and order.price is not None:
                leg = replace(leg, price=order.price, side=leg.side or order.side)
            else:
                leg = replace(leg, conflict=leg.conflict or "an amend that keeps its order's price, of an order "
                              "keyproxy does not hold: name the new price too")
        out.append(leg)
    if facts.orders:
        return replace(facts, orders=tuple(out))
    return out[0] if out else facts


def price_band(policy: BotPolicy, account_limits: AccountLimits | None) -> Decimal | None:
    """The bot's own band, else its account's default."""
    if policy.price_band_pct is not None:
        return policy.price_band_pct
    return account_limits.price_band_pct if account_limits is not None else None


def needs_reference(leg: RequestFacts) -> bool:
    """An order leg the price band checks: it names a limit or trigger price and is not reduce-only."""
    return (leg.price is not None or leg.trigger_price is not None) and not leg.reduce_only


def _risk_checks(facts: RequestFacts, policy: BotPolicy, references: dict[str, Decimal],
                 account_limits: AccountLimits | None, counters: Counters, bot: str, now: float) -> Decision | None:
    """Price bands and repeated orders (docs/risk.md); reduce-only orders and cancels always pass."""
    band = price_band(policy, account_limits)
    legs = facts.placed()
    if band is not None:
        for leg in legs:
            refused = _band_check(leg, band, references.get(leg.symbol or ""),
                                  account_limits.reference_max_age if account_limits is not None else 10)
            if refused is not None:
                return refused
    if policy.duplicate_orders is not None and facts.action == "order":
        for leg in legs:
            if leg.reduce_only:
                continue
            seen = counters.repeats(bot, order_shape(leg), policy.duplicate_window_seconds, now)
            if seen >= policy.duplicate_orders:
                return deny(DenyCode.DUPLICATE, f"the same order ({leg.side or '?'} {leg.symbol or '?'}) was already "
                            f"placed {seen} times in {policy.duplicate_window_seconds} s: the cap is "
                            f"{policy.duplicate_orders} (duplicate_orders)")
    return None


def _harmless(endpoint_class: str, facts: RequestFacts) -> bool:
    """A request that takes on no risk: a read, a public call, a cancel."""
    return endpoint_class in ("public", "read") or facts.action == "cancel"


def passes_halt(endpoint_class: str, facts: RequestFacts) -> bool:
    """What a kill switch lets through: reads, cancels and orders whose every leg is reduce-only (the exchange lets
    them only close). The decision's rule, and the one `Core.sign` applies again to a request that waited."""
    legs = facts.placed()
    return _harmless(endpoint_class, facts) or (
        facts.action in ("order", "amend") and bool(legs) and all(leg.reduce_only for leg in legs))


def reduces(leg: RequestFacts, position: Decimal, resting: Decimal = Decimal(0), believed: bool = True) -> bool:
    """An order that can only bring the bot's position toward zero: a sell of at most what the bot holds less
    what its resting sells (`resting`, same side) may already sell, a buy likewise against a short. Without
    `resting`, a bot holding 1 could rest any number of sells of 1, each "reducing", and go short by all of them
    but one. A reduce-only flag is believed alone where it can only close the bot's own position (`believed`:
    RiskView.believes_reduce_only); where another bot holds a position in the scope it is judged like a spot sell,
    since the exchange measures it against the account's position, every bot's: a bot holding nothing closed
    another bot's long with a reduce-only sell and was short by all of it, past its cap (session 23's review). Never
    believed for a hedge leg (RequestFacts.hedged)."""
    if leg.reduce_only and not leg.hedged and believed:
        return True
    side, qty = (leg.side or "").lower(), leg.quantity
    if qty is None or leg.contract is not None and leg.quote_quantity is not None:
        return False
    return 0 < qty and ((side == "sell" and qty + resting <= position)
                        or (side == "buy" and qty + resting <= -position))


def _position_checks(facts: RequestFacts, policy: BotPolicy, risk: RiskView, prices: dict[str, Decimal]
                     ) -> Decision | None:
    """Daily loss, position limit and crossing another bot's order, leg by leg (docs/risk.md). The legs of
    one batch add up: each is checked with the earlier ones as if they already rested."""
    capped = policy.position_capped
    added: dict[tuple[str, str], Decimal] = {}  # (scope, side) -> the sizes of this batch's earlier legs
    for i, leg in enumerate(facts.placed()):
        if facts.action == "amend":
            order = risk.amended[i] if i < len(risk.amended) else None
            refused, after, shrinks = _amend_leg(leg, order, capped, risk)
            if refused is None and after is None and order is None:  # not in the book: its own leg may cross
                refused = _crossing(i, risk, policy)
            if refused is not None:
                return refused
            if after is None:
                continue
            if shrinks:  # passes, and what it leaves resting counts for the batch's later legs
                key = (after.scope, (after.side or "").lower())
                added[key] = added.get(key, Decimal(0)) + (after.quantity or Decimal(0))
                continue
            leg = after
        position = risk.positions.get(leg.scope, Decimal(0))
        side = (leg.side or "").lower()
        same_side = (risk.open_sell if side == "sell" else risk.open_buy).get(leg.scope, Decimal(0))
        earlier = added.get((leg.scope, side), Decimal(0))
        size = order_size(leg, prices.get(leg.symbol or ""))
        if size is not None:
            added[(leg.scope, side)] = earlier + size
        if reduces(leg, position, same_side + earlier, believed=risk.believes_reduce_only(leg.scope)):
            continue
        if risk.loss is not None:
            return deny(DenyCode.LOSS, f"{risk.loss}: only orders that reduce a position pass")
        if leg.scope in risk.unread and (capped or risk.loss_limited):
            code, key = (DenyCode.POSITION, "max_position") if capped else (DenyCode.LOSS, "max_daily_loss")
            return deny(code, f"keyproxy does not read fills in {leg.market or 'this'} markets of this exchange yet, "
                        f"so {key} cannot hold there: only reduce-only orders pass")
        refused = _crossing(i, risk, policy)
        if refused is not None:
            return refused
        if capped:
            refused = _position_cap(leg, policy, risk, position, prices.get(leg.symbol or ""), earlier)
            if refused is not None:
                return refused
    return None


def _crossing(i: int, risk: RiskView, policy: BotPolicy) -> Decision | None:
    """Leg `i` would trade against another bot's resting order (the view found it) and the bot may not."""
    if i < len(risk.crossing) and risk.crossing[i] is not None and not policy.allow_self_cross:
        return deny(DenyCode.SELF_CROSS, f"the order would trade against order {risk.crossing[i]} of another "
                    "bot on this account (allow_self_cross)")
    return None


def _amend_leg(leg: RequestFacts, order: Amended | None, capped: bool, risk: RiskView
               ) -> tuple[Decision | None, RequestFacts | None, bool]:
    """An amend leg: (a refusal; the order it leaves behind, checked as a new one unless it only shrinks at
    its price and side (never more risk, so it passes: the third value); None: nothing binds it). An order
    keyproxy cannot find passes only for a bot no position or loss limit binds, since nothing shows what it
    would leave resting (an amend naming no order id never gets here: `_trade_checks`)."""
    lossy = risk.loss_limited or risk.loss is not None
    if order is None:
        # nothing to hold it to; or, for a bot only a position cap binds, a new price of an order whose size stays
        # (a loss limit is bound by the price too: an order keyproxy does not hold fills as nobody's loss)
        if not (capped or lossy) or (leg.quantity is None and leg.quote_quantity is None and not lossy):
            return None, None, False
        return deny(DenyCode.POSITION if capped else DenyCode.LOSS,
                    f"keyproxy does not hold order {leg.order_id or '(named by a client id)'} among the bot's orders "
                    "(amend it by the exchange's order id), so it cannot tell what the amend would leave resting "
                    f"against {'max_position' if capped else 'the daily loss limit'}"), None, False
    if not order.own:
        return deny(DenyCode.UNDECIDED, f"order {leg.order_id} was placed by another bot on this account: a bot "
                    "amends only its own orders"), None, False
    if leg.side and leg.side.lower() != order.side and not order.may_turn:
        return deny(DenyCode.UNDECIDED, f"the amend names side {leg.side.upper()} for order {leg.order_id}, a "
                    f"{order.side.upper()}: an amend does not turn an order here, so keyproxy cannot tell what the "
                    "exchange would make of it"), None, False
    after = amended_leg(leg, order)
    if after is None:
        refused = capped or lossy
        return deny(DenyCode.POSITION, "cannot read the amend's new size against the bot's position or loss limit") \
            if refused else None, None, False
    shrinks = after.quantity is not None and after.quantity <= order.remaining and after.price == order.price \
        and after.side == order.side and after.trigger_price is None  # a new trigger moves when it trades
    return None, after, shrinks


def _position_cap(leg: RequestFacts, policy: BotPolicy, risk: RiskView, position: Decimal,
                  last: Decimal | None, earlier: Decimal = Decimal(0)) -> Decision | None:
    """Position + same-side resting orders (with `earlier`: this batch's earlier legs on the side) + this
    order, against max_position (units) and max_position_notional (at the order's price, else the last
    price keyproxy saw)."""
    size = order_size(leg, last)
    if size is None:
        return deny(DenyCode.POSITION, "cannot read the order's size against the bot's position cap")
    buy = (leg.side or "").lower() == "buy"
    resting = (risk.open_buy.get(leg.scope, Decimal(0)) if buy else risk.open_sell.get(leg.scope, Decimal(0))) + earlier
    after = (position if buy else -position) + resting + size
    said = (f"position {position.normalize():f} plus resting {'buys' if buy else 'sells'} {resting.normalize():f} "
            f"plus this order {size.normalize():f} would reach {after.normalize():f} {leg.symbol}")
    if policy.max_position is not None and after > policy.max_position:
        return deny(DenyCode.POSITION, f"{said}: the cap is {policy.max_position.normalize():f}")
    if policy.max_position_notional is not None:
        price = worst_price(leg, last)
        if price is None:
            return deny(DenyCode.POSITION, "no market price to value the position against max_position_notional "
                        "(keyproxy could not fetch the symbol's ticker)")
        if after * price > policy.max_position_notional:
            return deny(DenyCode.POSITION, f"{said}, worth {(after * price).normalize():f}: the cap is "
                        f"{policy.max_position_notional.normalize():f}")
    return None


def _band_check(leg: RequestFacts, band: Decimal, reference: Decimal | None, max_age: int) -> Decision | None:
    """A buy's limit price at most `band`% above the reference, a sell's at most `band`% below, a trigger
    within `band`% either side. An order the exchange prices itself (market, pegged) has no price here."""
    if leg.reduce_only:
        return None
    if leg.conflict is not None:
        return deny(DenyCode.PRICE_BAND, f"cannot check this order's price against the band: {leg.conflict}")
    if leg.trigger_relative:
        return deny(DenyCode.PRICE_BAND, "cannot check this order's trigger against the band: it is given relative "
                    "to the market (+x, -x, #x, x%)")
    if not needs_reference(leg):
        return None
    if reference is None:
        return deny(DenyCode.REFERENCE, f"no reference price for {leg.symbol or '(no symbol)'} younger than "
                    f"{max_age} s, and keyproxy could not fetch one from the exchange: the price band "
                    "cannot be checked")
    high, low = reference * (100 + band) / 100, reference * (100 - band) / 100
    side = (leg.side or "").lower()
    price = leg.price
    if price is not None and ((side != "sell" and price > high) or (side != "buy" and price < low)):
        return deny(DenyCode.PRICE_BAND, f"{side or 'order'} price {price.normalize():f} is more than "
                    f"{band.normalize():f}% {'above' if price > reference else 'below'} the reference price "
                    f"{reference.normalize():f} of {leg.symbol}")
    trigger = leg.trigger_price
    if trigger is not None and not low <= trigger <= high:
        return deny(DenyCode.PRICE_BAND, f"trigger price {trigger.normalize():f} is more than {band.normalize():f}% "
                    f"from the reference price {reference.normalize():f} of {leg.symbol}")
    return None


def _trade_checks(facts: RequestFacts, policy: BotPolicy, prices: dict[str, Decimal],
                  account_limits: AccountLimits | None) -> Decision | None:
    valued = policy.max_order_notional is not None or policy.daily_notional_cap is not None
    limited = policy.symbols is not None or valued or policy.reduce_only or policy.max_leverage is not None \
        or policy.max_open_orders is not None or policy.orders_per_minute is not None \
        or (account_limits is not None and account_limits.orders_per_minute is not None) \
        or _risk_limited(policy, account_limits)
    if facts.action is None and limited:  # an endpoint that may place orders in a shape keyproxy cannot read
        return deny(DenyCode.SYMBOL if policy.symbols is not None else DenyCode.NOTIONAL_UNKNOWN,
                    "keyproxy cannot read this endpoint's order details, and the bot has trading limits")
    untracked = facts.untracked or next((leg.untracked for leg in facts.placed() if leg.untracked), None)
    unfollowed = untracked or facts.unfollowed
    if unfollowed is not None and (positioned := _positioned(policy, account_limits)) is not None:
        return deny(DenyCode.POSITION if positioned == "max_position" else DenyCode.LOSS,  # reducing too
                    f"{unfollowed}: keyproxy cannot follow those fills, so {positioned} could not hold")
    if policy.max_open_orders is not None and any(
            leg.conditional and (leg.price is not None or leg.book_priced) for leg in facts.placed()):
        # a limit order once triggered (Binance STOP, TAKE_PROFIT) rests as an order of its own, which no answer
        # counts open (session 29's review)
        return deny(DenyCode.OPEN_ORDERS, "a conditional limit order rests as an order of its own once triggered, "
                    "which keyproxy cannot count open, so max_open_orders could not hold (a market stop or "
                    "take-profit passes)")
    if untracked is not None and valued:
        # what they trade (a position-wide stop closes the account's whole position, every bot's share) is valued
        # nowhere and counted against no daily cap (session 27's review)
        return deny(DenyCode.NOTIONAL_UNKNOWN, f"{untracked}: keyproxy cannot value or count what those orders "
                    "trade, so the bot's notional limits could not hold")
    if untracked is not None and policy.max_open_orders is not None:
        # the children rest under ids no answer names: uncounted, a bot could keep any number of them resting (a
        # position's take-profit or stop-loss set with no order placed too: Bybit's `trading-stop`, a tp/sl amend)
        return deny(DenyCode.OPEN_ORDERS, f"{untracked}: keyproxy cannot count those orders, so max_open_orders "
                    "could not hold")
    if policy.symbols is not None and facts.action in ("leverage", "other"):
        if (facts.symbol is None and facts.action == "leverage") or (
                facts.symbol is not None and facts.symbol not in policy.symbols):
            return deny(DenyCode.SYMBOL, f"symbol {facts.symbol or '(none)'} is not in the bot's allowlist")
    for leg in facts.placed():
        if facts.action == "amend" and leg.order_id is None:  # every bot's client ids are in the open-orders answer
            return deny(DenyCode.UNDECIDED, "name the order to amend by the exchange's order id: keyproxy cannot "
                        "tell whose order a client id names, and a bot amends only its own orders")
        refused = _order_checks(leg, policy, prices.get(leg.symbol or ""), valued)
        if refused is not None:
            return refused
        if leg.size_unsure and (positioned := _positioned(policy, account_limits)) is not None:
            # what it trades is as unsure as what it is worth (session 35's review: a Kraken add_order with both
            # order_qty and cash_order_qty was sized by the cash amount under max_position, and executed 0.5 BTC)
            return deny(DenyCode.POSITION if positioned == "max_position" else DenyCode.LOSS,
                        f"cannot be sure what this order trades: {leg.conflict or 'its size'}; {positioned} could "
                        "not hold")
    if facts.leverage is not None and policy.max_leverage is not None and facts.leverage > policy.max_leverage:
        return deny(DenyCode.LEVERAGE, f"leverage {facts.leverage.normalize():f} is above the cap "
                    f"{policy.max_leverage.normalize():f}")
    if facts.action == "leverage" and facts.leverage is None and policy.max_leverage is not None:
        return deny(DenyCode.LEVERAGE, "cannot read the requested leverage")
    return None


def _positioned(policy: BotPolicy, limits: AccountLimits | None) -> str | None:
    """The limit that needs the bot's position (max_position, max_daily_loss), if it has one."""
    if policy.position_capped:
        return "max_position"
    return "max_daily_loss" if policy.loss_limited(limits) else None


def _risk_limited(policy: BotPolicy, account_limits: AccountLimits | None) -> bool:
    """The bot has a pre-trade risk limit that an order keyproxy cannot read would get past (docs/risk.md)."""
    return price_band(policy, account_limits) is not None or policy.position_capped \
        or policy.loss_limited(account_limits) or policy.duplicate_orders is not None


def _order_checks(leg: RequestFacts, policy: BotPolicy, last_price: Decimal | None, valued: bool
                  ) -> Decision | None:
    """One order (alone or a batch's leg): symbol, reduce-only, valuation, notional, leverage."""
    if policy.symbols is not None and (leg.symbol is None or leg.symbol not in policy.symbols):
        return deny(DenyCode.SYMBOL, f"symbol {leg.symbol or '(none)'} is not in the bot's allowlist")
    if policy.reduce_only and not leg.reduce_only:
        return deny(DenyCode.REDUCE_ONLY, "the bot may only place reduce-only orders")
    if valued and leg.conflict is not None:
        return deny(DenyCode.NOTIONAL_UNKNOWN, f"cannot be sure what this order is worth: {leg.conflict}")
    if policy.max_order_notional is not None:
        value = notional(leg, last_price)
        if value is None:
            why = ("no contract size known for this instrument: fetch the exchange's instrument list "
                   "through keyproxy first" if leg.contract is not None and leg.contract_size is None else
                   "no price, quote quantity or recent price for the symbol")
            return deny(DenyCode.NOTIONAL_UNKNOWN, f"cannot value this order ({why})")
        if value > policy.max_order_notional:
            return deny(DenyCode.NOTIONAL, f"order notional {value.normalize():f} is above the cap "
                        f"{policy.max_order_notional.normalize():f}")
    if leg.leverage is not None and policy.max_leverage is not None and leg.leverage > policy.max_leverage:
        return deny(DenyCode.LEVERAGE, f"leverage {leg.leverage.normalize():f} is above the cap "
                    f"{policy.max_leverage.normalize():f}")
    return None


def _memo_allowed(entry_memo: str | None, memo: str | None) -> bool:
    if entry_memo == "*":
        return True
    if entry_memo is None:
        return not memo
    return memo == entry_memo


def _withdraw_checks(facts: RequestFacts, policy: BotPolicy, usage: Usage) -> Decision | None:
    if policy.withdraw_addresses is not None:
        ok = False
        for entry in policy.withdraw_addresses:
            target, sep, entry_memo = entry.partition(";memo=")
            asset, network, address = target.split(":", 2)
            if asset in ((facts.asset or "").upper(), facts.asset_id) \
                    and (network == "*" or (facts.network or "").upper() == network) \
                    and facts.address == address and _memo_allowed(entry_memo if sep else None, facts.memo):
                ok = True
        if not ok:
            return deny(DenyCode.ADDRESS, "destination (address and memo) is not in the bot's allowlist for this "
                        "asset and network")
    if policy.max_withdrawal is not None:
        if facts.amount is None:
            return deny(DenyCode.WITHDRAWAL, "cannot read the withdrawal amount")
        if facts.amount > policy.max_withdrawal:
            return deny(DenyCode.WITHDRAWAL, f"amount {facts.amount.normalize():f} is above the cap "
                        f"{policy.max_withdrawal.normalize():f}")
    if policy.daily_withdrawal_cap is not None:
        if facts.amount is None:
            return deny(DenyCode.WITHDRAWAL, "cannot read the withdrawal amount")
        if usage.daily_withdrawn + facts.amount > policy.daily_withdrawal_cap:
            return deny(DenyCode.WITHDRAWAL, f"today's withdrawals of {facts.asset} would exceed the daily cap "
                        f"{policy.daily_withdrawal_cap.normalize():f}")
    return None
