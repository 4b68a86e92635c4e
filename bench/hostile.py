"""The hostile battery at full size: malformed and generated requests, kill -9 under traffic, and
32 bots trading through rotations, revocations and reloads.

Run: .venv/bin/python bench/hostile.py [--malformed 10000] [--generated 10000] [--slow 500]
                                       [--kills 1000] [--bots 32] [--seconds 300]
Prints what the CI-size tests (tests/e2e/test_hostile.py) assert, at the sizes asked for; figures in
docs/reliability.md. A part given 0 is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keyproxy.config import ProxySettings  # noqa: E402
from keyproxy.emulator.devstack import DevStack, new_real_key  # noqa: E402
from tests.e2e.battery import MalformedResult, kill_nine, malformed  # noqa: E402
from tests.e2e.battery_concurrency import concurrency, start_stack  # noqa: E402
from tests.e2e.battery_generated import generated  # noqa: E402
from tests.e2e.battery_slow import SlowResult, slow_clients  # noqa: E402


def _requests(name: str, m: MalformedResult, seconds: float) -> bool:
    print(f"{name}: {m.sent} sent in {seconds:.1f} s; answers {dict(sorted(m.statuses.items()))}; "
          f"codes {dict(sorted(m.codes.items(), key=lambda kv: -kv[1]))}; reached the exchange {m.reached_exchange}; "
          f"hangs {m.hangs}; tracebacks {m.tracebacks}; canary echoed {m.echoed_canary}; daemon alive {m.daemon_alive}")
    return m.reached_exchange == m.hangs == m.tracebacks == m.echoed_canary == 0 and m.daemon_alive and not any(
        s.startswith("5") for s in m.statuses)


def _slow(dev: DevStack, count: int) -> bool:
    d = ProxySettings()  # production deadlines
    honest, slowpoke = dev.add_bot("honest", "main", "read"), dev.add_bot("slowpoke", "main", "read,trade")
    r = slow_clients(dev, honest, slowpoke["api_key"], count, d.header_timeout, d.body_timeout)

    def pct(values: list[float]) -> str:
        return f"p50 {SlowResult.percentile(values, 50):.1f} ms, p99 {SlowResult.percentile(values, 99):.1f} ms"

    print(f"slow clients: {count} connections (half dribbling headers, half a body; deadlines "
          f"{d.header_timeout:g} s / {d.body_timeout:g} s): cut by keyproxy {r.cut}, never cut {r.never_cut}, "
          f"408 request_timeout {r.answered_408}; slowest cut after {r.headers_cut_after:.2f} s (headers), "
          f"{r.body_cut_after:.2f} s (body); honest bot before: {len(r.honest_before_ms)} calls, "
          f"{pct(r.honest_before_ms)}; during: {len(r.honest_during_ms)} calls, {pct(r.honest_during_ms)}; "
          f"failed {r.honest_failed}")
    return r.never_cut == r.honest_failed == 0 and r.cut == count and r.answered_408 == count // 2


def hostile_parts(args: argparse.Namespace) -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="keyproxy-hostile-") as tmp, \
            DevStack(Path(tmp), log_level="info",
                     extra_config="[anomaly.auth_failures]\nenabled = false\n[governor]\nenabled = false\n") as dev:
        key = new_real_key()
        dev.serve_account("main", key)
        if args.malformed:
            started = time.monotonic()
            ok &= _requests("malformed", malformed(dev, args.malformed), time.monotonic() - started)
        if args.generated:
            started = time.monotonic()
            bot = dev.add_bot("probed", "main", "read,trade")
            try:
                ok &= _requests("generated", generated(dev, args.generated, bot["api_key"]), time.monotonic() - started)
            except AssertionError as e:  # hypothesis shrank a failing request: print it
                print(f"generated: FAILED: {e}")
                ok = False
        if args.slow:
            ok &= _slow(dev, args.slow)
        if args.kills:
            started = time.monotonic()
            k = kill_nine(dev, args.kills)
            print(f"kill -9: {k.kills} kills in {time.monotonic() - started:.1f} s; vault opened {k.vault_opened}; "
                  f"bots lost {k.lost_bots}; audit chain verified up to its last complete line {k.audit_ok}"
                  + (f"; problems {k.audit_problems[:3]}" if k.audit_problems else ""))
            ok &= k.lost_bots == 0 and k.audit_ok == k.kills == k.vault_opened
    return ok


def concurrency_part(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="keyproxy-concurrency-") as tmp, \
            DevStack(Path(tmp), log_level="info", extra_config="[governor]\nenabled = false\n") as dev:
        accounts = start_stack(dev, spares=max(3, int(args.seconds / 10)))
        c = concurrency(dev, accounts, bots=args.bots, seconds=args.seconds)
        print(f"concurrency: {args.bots} bots for {args.seconds:.0f} s: {c.requests} requests, {c.reached_exchange} "
              f"reached the exchange; admin changes {c.admin_ops}; answers {c.statuses}; requests with a dead "
              f"credential {c.dead_credential_tried}, through {len(c.dead_credential_through)}; signed with a "
              f"superseded key {len(c.superseded_key_used)}; over a reloaded limit through "
              f"{len(c.over_limit_through)}; live bots' requests failed {len(c.failed_active)}; 5xx "
              f"{len(c.server_errors)}; forwarded twice {len(c.forwarded_twice)}; unverified signatures "
              f"{c.unverified_signatures}; tracebacks {c.tracebacks}; daemon alive {c.daemon_alive}")
        for line in c.violations[:10]:
            print(f"  violation: {line}")
        return not c.violations and c.unverified_signatures == c.tracebacks == 0 and c.daemon_alive


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--malformed", type=int, default=10_000)
    ap.add_argument("--generated", type=int, default=10_000)
    ap.add_argument("--slow", type=int, default=500, help="slow connections held open at once")
    ap.add_argument("--kills", type=int, default=1_000)
    ap.add_argument("--bots", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=300.0, help="concurrency part's length (0: skip it)")
    args = ap.parse_args()
    ok = hostile_parts(args)
    if args.seconds:
        ok &= concurrency_part(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
