"""What an order is worth: the most it can execute at, in the quote currency (docs/policy.md, the valuation
tables per exchange). Pure; the policy decision (decide.py) and the risk desk value orders only here."""

from __future__ import annotations

from decimal import Decimal

from keyproxy.policy.model import RequestFacts


def needs_market_price(leg: RequestFacts) -> bool:
    """Valuing the order needs the market's price: a sell (a limit under the market sells at the market), or a
    buy without a limit price (a market or market-on-trigger buy pays what the market asks)."""
    if leg.contract == "inverse" or (leg.contract is None and leg.quote_quantity is not None):
        return False  # valued in quote units whatever the price
    return not ((leg.side or "").lower() == "buy" and leg.price is not None)


def worst_price(leg: RequestFacts, market: Decimal | None) -> Decimal | None:
    """The most one unit of the order can execute at, what caps value it by. A buy never pays above its limit
    price; a sell fills at its limit or better, so one priced under the market sells at the market, and a stop
    sells at about its trigger. A buy without a limit pays the market, or its trigger once triggered. None:
    the market's price is needed and keyproxy has seen none (a sell valued at its own price could pass a
    notional cap by any factor: a sell of 10 BTC at 0.01 executes at the market). A buy whose trigger makes the
    exchange place a limit of its own above the buy's (`stop_limit`) may pay that."""
    if not needs_market_price(leg):
        return leg.price if leg.stop_limit is None or leg.price is None else max(leg.price, leg.stop_limit)
    if market is None:
        return None
    return max(p for p in (leg.price, leg.trigger_price, market) if p is not None)


def notional(facts: RequestFacts, last_price: Decimal | None) -> Decimal | None:
    """Quote-currency value of one order, from the fields the exchange executes (the adapter leaves out
    the ones it ignores): quote quantity, else quantity x the most it can execute at (`worst_price`; x
    contract size for contracts). None when it cannot be valued."""
    price = worst_price(facts, last_price)
    if facts.quantity == 0 or facts.quote_quantity == 0:  # Bybit's qty 0, Kraken's margin volume 0: "the whole
        return None  # position", whatever it is: not a size
    if facts.contract is not None:
        if facts.quantity is None or facts.contract_size is None:
            return None
        if facts.contract == "inverse":  # each contract is worth contract_size in quote currency
            return facts.quantity * facts.contract_size
        return facts.quantity * facts.contract_size * price if price is not None else None
    if facts.quote_quantity is not None:
        return facts.quote_quantity
    if facts.quantity is not None and price is not None:
        return facts.quantity * price
    return None


def total_notional(facts: RequestFacts, prices: dict[str, Decimal]) -> Decimal | None:
    """The value of every order a request places (a batch: the sum of its legs); None if any leg cannot be valued."""
    total = Decimal(0)
    for leg in facts.placed():
        value = notional(leg, prices.get(leg.symbol or ""))
        if value is None:
            return None
        total += value
    return total


def order_size(leg: RequestFacts, last: Decimal | None) -> Decimal | None:
    """An order's size in base units (or contracts): a quote-sized order's at the lowest price it may execute at
    that keyproxy knows of (`last`, the last price seen; its limit; its trigger: a stop sized in quote that triggers
    below the last price buys more than it would now, session 32's review). A size of 0 is an exchange's "the whole
    position" (Bybit qty 0 with closeOnTrigger, Kraken margin volume 0): not known."""
    if leg.quantity == 0 or leg.quote_quantity == 0:
        return None
    if leg.quantity is not None:
        return leg.quantity
    if leg.quote_quantity is not None and last:
        lowest = min(p for p in (last, leg.price, leg.trigger_price) if p is not None and p > 0)
        return leg.quote_quantity / lowest
    return None
