"""The exchange-budget governor (issue 19): its cost per request, and N bots with and without it.

Run: .venv/bin/python bench/governor.py [--n 200000] [--bots 8] [--seconds 10] [--skip-fleet]

1. In process: Binance's cost lookup (`Binance.costs`) plus `Governor.spend` for a signed order (three budgets:
   request weight per IP, orders per account per 10 s and per day) and for a read (weight only), by one of
   eight bots sharing the budgets (fair shares on), and `Governor.observe` reading an answer's usage headers.
   Target: under 10 µs a request.
2. The public cache: a shared exchangeInfo answered from memory vs a public request forwarded upstream (p50
   over loopback, through the daemon).
3. A fleet: N unmodified ccxt bots, their own limiter off, hammer fetch_balance / fetch_ticker / order+cancel
   for S seconds straight at the emulator (Binance's weight limit scaled down to 400 a minute, 429 then 418)
   and then through keyproxy told the same limit: the exchange's 429s and 418s, the bots' local refusals and
   how many cancels succeeded, each way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyproxy.exchanges.base import IncomingRequest  # noqa: E402
from keyproxy.exchanges.binance import Binance  # noqa: E402
from keyproxy.policy.budget import Charge, Governor  # noqa: E402

LIMIT = 400


def _spend_us(request: IncomingRequest, n: int) -> float:
    adapter, governor = Binance(), Governor(reserve=0.1)
    origin, bots = "binance@production", [f"bot{i}" for i in range(8)]
    start = time.perf_counter()
    for i in range(n):
        costs = adapter.costs(request)
        charges = tuple([Charge(b, origin if b.per == "ip" else "main", c) for b, c in costs])  # as Core does
        assert governor.spend(charges, False, i * 0.5, bots[i % 8]) is None  # 2 a second (simulated): all paid
    return (time.perf_counter() - start) / n * 1e6


def in_process(n: int, rounds: int = 5) -> None:
    """Median of `rounds` runs (this is a shared VM: single runs vary by half)."""
    order = IncomingRequest("POST", "/api/v3/order", "symbol=BTCUSDT&side=SELL", {}, b"")
    read = IncomingRequest("GET", "/api/v3/account", "", {}, b"")
    orders = statistics.median(_spend_us(order, n) for _ in range(rounds))
    reads = statistics.median(_spend_us(read, n) for _ in range(rounds))
    governor = Governor(reserve=0.1)
    charges = tuple([Charge(b, "binance@production" if b.per == "ip" else "main", c)
                     for b, c in Binance().costs(order)])
    headers = {"x-mbx-used-weight-1m": "42", "x-mbx-order-count-10s": "3", "x-mbx-order-count-1d": "3"}
    start = time.perf_counter()
    for i in range(n):
        governor.observe(charges, headers, i * 0.5)
    observe = (time.perf_counter() - start) / n * 1e6
    print(f"costs + spend, 8 bots sharing with fair shares (median of {rounds}): an order (3 budgets: weight, "
          f"orders per 10 s, per day) {orders:.2f} us; a read (1 budget) {reads:.2f} us; "
          f"observe (3 headers): {observe:.2f} us (n={n})")


def _get_ms(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
    return (time.perf_counter() - start) * 1000


def _limits(dev: Any, **change: Any) -> dict[str, Any]:
    request = urllib.request.Request(f"{dev.emulator_url}/_emulator/limits", data=json.dumps(change).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _hammer(ex: Any, seconds: float, markets: dict[str, Any], tally: dict[str, int], lock: threading.Lock,
            ccxt: Any) -> None:
    ex.set_markets(markets)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        try:
            if i % 3 == 0:
                ex.fetch_balance()
            elif i % 3 == 1:
                ex.fetch_ticker("BTC/USDT")
            else:
                order = ex.create_order("BTC/USDT", "limit", "sell", 0.001, 200000)
                try:
                    ex.cancel_order(order["id"], "BTC/USDT")
                    kind = "cancels"
                except Exception:  # noqa: BLE001 - a failed cancel is the finding
                    kind = "cancel_failures"
                with lock:
                    tally[kind] += 1
        except ccxt.DDoSProtection as e:
            with lock:
                tally["limited_locally" if "budget_exhausted" in str(e) else "refused_by_exchange"] += 1
            time.sleep(0.01)
        except ccxt.BaseError:
            with lock:
                tally["other_errors"] += 1


def _run(bots: list[Any], seconds: float, markets: dict[str, Any], ccxt: Any) -> dict[str, int]:
    tally = dict.fromkeys(("cancels", "cancel_failures", "limited_locally", "refused_by_exchange", "other_errors"), 0)
    lock = threading.Lock()
    threads = [threading.Thread(target=_hammer, args=(b, seconds, markets, tally, lock, ccxt)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return tally


def fleet(n_bots: int, seconds: float) -> None:
    import ccxt

    from keyproxy.emulator.devstack import DevStack, new_real_key, point_ccxt_at

    def bot(api_key: str, secret: str, base_url: str) -> Any:
        return point_ccxt_at(ccxt.binance({"apiKey": api_key, "secret": secret, "enableRateLimit": False,
                                           "options": {"defaultType": "spot", "fetchCurrencies": False}}), base_url)

    config = f'[governor]\nreserve = 0.1\n[governor.limits]\n"binance.REQUEST_WEIGHT" = {LIMIT}\n'
    with tempfile.TemporaryDirectory() as tmp, DevStack(Path(tmp), extra_config=config) as dev:
        key = new_real_key("hmac", balances={"USDT": "1000000", "BTC": "100"})
        dev.serve_account("main", key)
        loader = dev.add_bot("loader", "main", "read")
        first = bot(loader["api_key"], loader["secret"], loader["base_url"])
        markets = first.load_markets()

        # the public cache: a hit vs a public request forwarded upstream
        info = f"{dev.proxy_url}/main/api/v3/exchangeInfo"
        _get_ms(info)
        hits = [_get_ms(info) for _ in range(200)]
        forwarded = [_get_ms(f"{dev.proxy_url}/main/api/v3/time") for _ in range(200)]
        print(f"public cache hit (exchangeInfo): p50 {statistics.median(hits):.3f} ms; forwarded public request "
              f"(time): p50 {statistics.median(forwarded):.3f} ms")

        time.sleep(60 - time.time() % 60 + 0.5)  # a fresh minute of weight for each run
        _limits(dev, binance_weight_per_minute=LIMIT, ban_seconds=30)
        creds = key.credentials
        before = _limits(dev)["answered"]
        direct = _run([bot(creds["api_key"], creds["secret"], dev.emulator_url) for _ in range(n_bots)],
                      seconds, markets, ccxt)
        after_direct = _limits(dev, binance_weight_per_minute=None)["answered"]
        time.sleep(31)  # the emulator's ban ends
        time.sleep(60 - time.time() % 60 + 0.5)
        _limits(dev, binance_weight_per_minute=LIMIT, ban_seconds=30)
        bots = []
        for i in range(n_bots):
            c = dev.add_bot(f"hammer{i}", "main", "read,trade")
            bots.append(bot(c["api_key"], c["secret"], c["base_url"]))
        proxied = _run(bots, seconds, markets, ccxt)
        after = _limits(dev)["answered"]
        for name, tally, (a, b) in (("direct", direct, (before, after_direct)),
                                    ("through keyproxy", proxied, (after_direct, after))):
            print(f"{n_bots} bots {name} for {seconds:g} s (weight limit {LIMIT}/min): exchange answered "
                  f"{b['429'] - a['429']} x 429, {b['418'] - a['418']} x 418; bots limited locally "
                  f"{tally['limited_locally']}, refused by the exchange {tally['refused_by_exchange']}; cancels "
                  f"{tally['cancels']} ok, {tally['cancel_failures']} failed; other errors {tally['other_errors']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--bots", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-fleet", action="store_true")
    args = ap.parse_args()
    in_process(args.n)
    if not args.skip_fleet:
        fleet(args.bots, args.seconds)


if __name__ == "__main__":
    main()
