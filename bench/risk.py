"""Pre-trade risk checks (issue 25): what they add to one order's decision.

Run: .venv/bin/python bench/risk.py [--n 50000] [--resting 50]

In process, as the core runs them for a Binance spot limit order: the market book's reference lookup, the
risk desk's view (positions, resting sizes, another bot's crossing order among `--resting` resting orders
of eight bots on the account, the bot's day P&L against its loss limit) and `decide` with every control
on (price band, duplicate orders, max_position, max_daily_loss, self-cross), against `decide` for the same
order with none of them. Prints the median of five runs (this is a shared VM). Target: the difference
under 20 µs an order.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyproxy.exchanges.base import OrderUpdate  # noqa: E402
from keyproxy.exchanges.binance import Binance  # noqa: E402
from keyproxy.policy.decide import Counters, decide  # noqa: E402
from keyproxy.policy.model import AccountLimits, RequestFacts, parse_policy  # noqa: E402
from keyproxy.proxy.markets import MarketBook  # noqa: E402
from keyproxy.proxy.registry import BotEntry  # noqa: E402
from keyproxy.proxy.risk import RiskDesk  # noqa: E402

D = Decimal
SCOPE = "spot:BTCUSDT"


class _Info:
    def __init__(self, name: str) -> None:
        self.name, self.account, self.status = name, "main", "active"


def _desk(resting: int) -> RiskDesk:
    now = time.time()
    markets = MarketBook(lambda: now)
    markets.learn_prices("main", {"BTCUSDT": D("60000")})
    desk = RiskDesk(None, markets, lambda: now)
    for i in range(resting):  # eight bots' resting orders on the account, none crossing the bench's order
        bot, side = f"bot{i % 8}", "sell" if i % 2 else "buy"
        leg = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side=side, quantity=D("0.01"),
                           price=D(70000 + i) if side == "sell" else D(50000 - i))
        desk.book.placed("main", bot, (leg,), (str(i),))
    fill = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=D("0.02"),
                        price=D("59000"))
    desk.book.placed("main", "bot0", (fill,), ("f",))
    desk.book.apply("main", [OrderUpdate("f", SCOPE, "buy", D("59000"), D("0.02"), D("0.02"), D("1180"), True)])
    return desk


def _run(n: int, resting: int, risk_on: bool) -> float:
    desk = _desk(resting)
    keys = {"price_band_pct": "5", "duplicate_orders": "1000", "max_position": "1", "max_daily_loss": "500"} \
        if risk_on else {}
    policy = parse_policy({"scopes": "read,trade", **keys})
    bot = BotEntry(_Info("bot0"), None, None, (), policy)  # type: ignore[arg-type]
    limits = AccountLimits()
    binance, counters = Binance(), Counters()
    start = time.perf_counter()
    for i in range(n):
        now = 1_000_000.0 + i * 0.001
        facts = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", order_type="LIMIT",
                             quantity=D("0.001"), price=D(59000 + (i % 997)))  # 997 shapes: no duplicate
        references, risk = {}, None
        if risk_on:
            references = desk.markets.references("main", binance, facts, 10, False)
            risk = desk.view("main", bot, limits, facts, now, binance)
        d = decide(facts, "trade", policy, counters, now, bot="bot0", account="main", account_limits=limits,
                   references=references, risk=risk)
        assert d.allow, d.detail
        if d.orders:
            counters.remember("bot0", d.orders, now)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--resting", type=int, default=50)
    args = ap.parse_args()
    off = statistics.median(_run(args.n, args.resting, False) for _ in range(5))
    on = statistics.median(_run(args.n, args.resting, True) for _ in range(5))
    print(f"decide, no risk controls:            {off:6.1f} µs an order")
    print(f"decide + every risk control ({args.resting} resting): {on:6.1f} µs an order")
    print(f"risk controls add:                   {on - off:6.1f} µs an order (target: under 20)")


if __name__ == "__main__":
    main()
