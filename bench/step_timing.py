"""Each step of keyproxy's request path timed inside the daemon, under a benchmark's load.

Run: .venv/bin/python bench/step_timing.py [--transport ws|rest] [--frames N] [--steps module:Qual.name,...]

Starts `bench/ws_overhead.py` (one connection, Binance `order.place` frames) or `bench/proxy_overhead.py`
(concurrency 1, Binance orders) with `bench/step_timing/sitecustomize.py` on the daemon's path: the methods
listed are wrapped with a timer, and each one's median (µs, over the last 4,000 calls, its callees included)
is printed. A profiler says what share of the daemon's samples a step takes; this says what the step costs
where it runs: between two requests of a benchmark at concurrency 1 the process sleeps, and code runs with
cold caches at two to three times what a loop over it measures. Each wrapper adds well under a microsecond.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
P, E = "keyproxy.proxy", "keyproxy.exchanges"
COMMON = [f"{P}.core:Core.admit", f"{P}.core:Core._authenticate", f"{P}.core:Core._check_policy",
          f"{P}.risk:RiskDesk.view", f"{P}.core:Core.sign", f"{P}.recorder:Recorder.before_forward",
          "keyproxy.audit.trail:AuditTrail.append", "keyproxy.anomaly.respond:Responder.observe",
          f"{P}.core:Core.learn", f"{P}.risk:RiskDesk.learn", f"{P}.order_owners:OrderOwners.attribute",
          "keyproxy.state:StateStore.record_placed_orders", "keyproxy.state:StateStore.save_risk",
          f"{P}.recorder:Recorder.finish"]
STEPS = {
    "ws": [f"{E}.binance_ws:BinanceWsApi.verify", f"{E}.binance_ws:BinanceWsApi.facts",
           f"{E}.binance_ws:BinanceWsApi.sign", f"{E}.binance_ws:BinanceWsApi.order_updates",
           f"{E}.binance_ws:BinanceWsApi.read_placed_ids"],
    "rest": [f"{E}.binance:Binance.verify", f"{E}.binance:Binance.facts", f"{E}.binance:Binance.sign",
             f"{E}.binance:Binance.order_updates", f"{E}.binance:Binance.read_placed_ids"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--transport", choices=("ws", "rest"), default="ws")
    ap.add_argument("--frames", type=int, default=8000, help="requests or frames to send (at least 4,000)")
    ap.add_argument("--steps", help="comma-separated module:Qual.name to time instead of the defaults "
                                    "(the first must run once per request)")
    ap.add_argument("--shared-state", choices=["none", "redis"], default="none",
                    help="rest only: the daemon as one instance of a fleet (proxy_overhead.py's --shared-state)")
    args = ap.parse_args()
    steps = args.steps.split(",") if args.steps else [COMMON[0], *STEPS[args.transport], *COMMON[1:]]
    with tempfile.TemporaryDirectory(prefix="kp-steps-") as tmp:
        out = Path(tmp) / "steps.tsv"
        env = {**os.environ, "KEYPROXY_BENCH_PATH": str(HERE / "step_timing"), "KP_STEP_TIMING": ",".join(steps),
               "KP_STEP_TIMING_OUT": str(out)}
        bench = ([sys.executable, str(HERE / "ws_overhead.py"), "--frames", str(args.frames), "--rounds", "1",
                  "--concurrency", "1"] if args.transport == "ws" else
                 [sys.executable, str(HERE / "proxy_overhead.py"), "--requests", str(args.frames), "--warmup", "200",
                  "--rounds", "1", "--concurrency", "1", "--shared-state", args.shared_state])
        run = subprocess.run(bench, env=env, capture_output=True, text=True, check=False)  # exits 1: target missed
        summary = [line for line in run.stdout.splitlines() if "vs bare" in line]
        if not out.exists():
            sys.stderr.write(run.stdout[-2000:] + run.stderr[-2000:] + "\nno step timings were written\n")
            return 1
        last = out.read_text().splitlines()[-1]
    print(f"{args.transport}: {summary[0].strip() if summary else '(no summary line)'}")
    print(f"{'step':58} median us (its callees included)")
    for field in last.split("\t"):
        name, _, value = field.rpartition("=")
        print(f"  {name:56} {value:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
