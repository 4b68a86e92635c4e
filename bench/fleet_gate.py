"""The fleet's per-request Redis round trip alone: `FleetGate.check` against a local redis-server.

Run: .venv/bin/python bench/fleet_gate.py [--checks 3000]

Starts a throw-away `redis-server` (AOF on, as `doctor` asks) and makes `--checks` sequential gate checks
shaped like a Binance order's (a replay id, the bot's and the account's rate buckets, an open-order cap with
its in-flight reservation), the same for a position-capped bot (its book's entry number, the leg's size
reserved), one resting order's answer as the instance writes it (its open order, owner and in-flight release,
`FleetUsage`), then the same number of plain `GET`s on the same asyncio client for scale. Prints
p50/p99 wall time per call and the client's CPU per call, and which reply parser redis-py used (hiredis when
installed). Issue 22's target: the round trip under 0.2 ms at p50 on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from keyproxy.config import SharedStateSettings
from keyproxy.emulator.devstack import RedisServer
from keyproxy.fleet.charges import SharedCharges
from keyproxy.fleet.gate import FleetGate
from keyproxy.fleet.store import FleetStore
from keyproxy.fleet.usage import FleetUsage


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(store: FleetStore, checks: int) -> None:
    gate = FleetGate(store)
    client = store.aio()
    usage = FleetUsage(store)
    for what in ("gate check", "capped check", "answer write", "plain GET"):
        walls, cpu = [], time.process_time()
        for i in range(checks + 200):
            started = time.perf_counter()
            if what == "gate check":
                charges = SharedCharges("bench-bot", replays=[(f"bench-bot:{i}", 60_000, True)],
                                        buckets=[("bot:bench-bot:rps", 1e6, 1e6), ("account:main:orders", 1e6, 1e6)],
                                        open_orders=(1, 10**9), in_flight=(f"req-{i}", 0.001),
                                        pending=("main", f"bench-bot|req-{i}|spot:BTCUSDT"))
                verdict = await gate.check(charges, 0)
                assert verdict.kind == "ok", verdict
            elif what == "capped check":  # the same with a position cap: the book's number and the leg's size
                charges = SharedCharges("bench-bot", replays=[(f"bench-bot:c{i}", 60_000, True)],
                                        buckets=[("bot:bench-bot:rps", 1e6, 1e6), ("account:main:orders", 1e6, 1e6)],
                                        open_orders=(1, 10**9), in_flight=(f"req-c{i}", 0.001), book_seq=0,
                                        pending=("main", f"bench-bot|req-c{i}|spot:BTCUSDT"),
                                        exposure=[("spot:BTCUSDT", "buy", Decimal("0.001"), Decimal(-1), Decimal(0),
                                                   Decimal(10**9))])
                verdict = await gate.check(charges, 0)
                assert verdict.kind == "ok", verdict
            elif what == "answer write":  # what a resting order's answer queues: its open order, owner, release
                usage.change_open_orders("bench-bot", "spot:BTCUSDT", +1)
                usage.record_placed_orders("main", "bench-bot", "spot:BTCUSDT", (str(10**9 + i),), time.time())
                usage.land("bench-bot", f"req-{i}")
                usage.release("pending:main", f"bench-bot|req-{i}|spot:BTCUSDT")
                batch = [usage._queue.get_nowait() for _ in range(usage._queue.qsize())]
                await usage._write(client, batch)
            else:
                await client.get(store.key("version"))
            if i >= 200:  # the first 200 warm the connection and the script cache
                walls.append((time.perf_counter() - started) * 1000)
            if i == 199:
                cpu = time.process_time()
        cpu_us = (time.process_time() - cpu) / checks * 1e6
        print(f"{what:>12}: p50 {pct(walls, 0.5):.3f} ms  p99 {pct(walls, 0.99):.3f} ms  "
              f"mean {statistics.fmean(walls):.3f} ms  client CPU {cpu_us:.0f} us per call")
    stats = await client.info("commandstats")
    for command in ("evalsha", "eval", "exec", "get"):
        row = stats.get(f"cmdstat_{command}")
        if row:
            print(f"redis-server's own time per {command.upper()}: {row['usec_per_call']:.1f} us")
    await gate.close()
    await client.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--checks", type=int, default=3000)
    args = ap.parse_args()
    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "redis-py's own (pure Python)"
    with tempfile.TemporaryDirectory(prefix="keyproxy-gate-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            settings = SharedStateSettings(server.url, server.root / "password")
            store = FleetStore(settings, "bench-vault", b"k" * 32)
            print(f"fleet gate against a local redis-server, {args.checks} sequential calls; reply parser: {parser}")
            asyncio.run(measure(store, args.checks))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
