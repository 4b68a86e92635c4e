"""What the exchange-budget governor costs per request, in process (issue 19: under 10 µs).

Run: .venv/bin/python bench/governor.py [--n 200000]

Times Binance's cost lookup (`Binance.costs`) plus `Governor.spend` for a signed order (two budgets:
request weight per IP, orders per account), and `Governor.observe` reading an answer's usage headers.
The N-bots-against-the-emulator comparison is tests/e2e/test_governor.py (not a benchmark yet).
"""

from __future__ import annotations

import argparse
import time

from keyproxy.exchanges.base import IncomingRequest
from keyproxy.exchanges.binance import Binance
from keyproxy.policy.budget import Charge, Governor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args().n
    adapter, governor = Binance(), Governor(reserve=0.1)
    origin = "binance@production"
    order = IncomingRequest("POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL", {}, b"")
    headers = {"x-mbx-used-weight-1m": "42", "x-mbx-order-count-10s": "3"}
    start = time.perf_counter()
    for i in range(n):
        costs = adapter.costs(order)
        charges = tuple(Charge(b, origin if b.per == "ip" else "main", c) for b, c in costs)
        assert governor.spend(charges, False, i * 0.25) is None  # 4 orders a second (simulated): all paid
    spend = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for i in range(n):
        governor.observe(charges, headers, i * 0.25)
    observe = (time.perf_counter() - start) / n * 1e6
    print(f"costs + spend: {spend:.2f} us per request; observe: {observe:.2f} us per answer (n={n})")


if __name__ == "__main__":
    main()
