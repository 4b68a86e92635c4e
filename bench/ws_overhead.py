"""What keyproxy adds to a signed Binance WebSocket API order frame: latency at p50/p99 and frames/s.

Run: .venv/bin/python bench/ws_overhead.py [--frames N] [--concurrency 1,32] [--rounds 3]

Starts a throw-away DevStack (emulator + vault + `keyproxy serve`, real processes on 127.0.0.1) and
sends the same `order.place` frame (LIMIT SELL GTC above the last price, so it rests) in two modes:
`direct` on sockets to the emulator's `/ws-api/v3` signed with the real key, and `proxied` on sockets
to keyproxy's `/<account>/ws-api/v3` signed with a bot's virtual key (keyproxy verifies, decides,
audits and re-signs every frame). Each of `concurrency` sockets sends its frames one at a time and
waits for the answer; frames are signed before their clock starts. The sockets are opened before
timing, so no handshake is measured: the WebSocket path should add less than REST does (no HTTP
parsing per request). The emulator's state is reset between rounds. Medians over rounds are printed;
exit status 1 when the added p50 at concurrency 1 is above the 0.3 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from keyproxy.devstack import DevStack, new_real_key

ORDER = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.0001",
         "price": "70000"}
BALANCES = {"USDT": "1000000", "BTC": "1000", "ETH": "100"}
TARGET_P50_MS = 0.3
_ids = itertools.count(1)


def frame(api_key: str, secret: str) -> str:
    params: dict[str, Any] = {**ORDER, "apiKey": api_key, "timestamp": int(time.time() * 1000),
                              "newClientOrderId": f"b{next(_ids)}"}
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": next(_ids), "method": "order.place", "params": params})


async def run(url: str, creds: list[tuple[str, str]], frames: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of every frame and the wall time, over `concurrency` sockets opened beforehand; socket i
    signs with credential i % len(creds) (keyproxy lets one bot hold 16 sockets)."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(concurrency)]
        per_socket = frames // concurrency

        async def one(n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            api_key, secret = creds[n % len(creds)]
            for _ in range(per_socket):
                text = frame(api_key, secret)
                start = time.perf_counter()
                await ws.send_str(text)
                answer = json.loads((await ws.receive()).data)
                latencies.append((time.perf_counter() - start) * 1000)
                if answer.get("status") != 200:
                    raise SystemExit(f"frame refused: {answer}")

        began = time.perf_counter()
        await asyncio.gather(*(one(n, ws) for n, ws in enumerate(sockets)))
        wall = time.perf_counter() - began
        for ws in sockets:
            await ws.close()
    return latencies, wall


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reset(emulator_url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(emulator_url + "/_emulator/reset", method="POST"), timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    dev = DevStack(Path(tempfile.mkdtemp(prefix="kp-wsbench-")), log_level="info")
    key = new_real_key(balances=BALANCES)
    try:
        dev.serve_account("main", key)
        bots = [dev.add_bot(f"bench{n}", "main", "read,trade") for n in range(-(-max(levels) // 16))]
        assert dev.emulator_url is not None
        direct_url = dev.emulator_url.replace("http://", "ws://") + "/ws-api/v3"
        proxied_url = bots[0]["base_url"].replace("http://", "ws://") + "/ws-api/v3"
        real = [(key.credentials["api_key"], key.credentials["secret"])]
        virtual = [(b["api_key"], b["secret"]) for b in bots]
        print(f"{'concurrency':>11} {'mode':>8} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
        missed = False
        for level in levels:
            figures: dict[str, list[tuple[float, float, float]]] = {"direct": [], "proxied": []}
            for r in range(args.rounds):
                modes = ("direct", "proxied") if r % 2 == 0 else ("proxied", "direct")
                for mode in modes:
                    reset(dev.emulator_url)
                    url, creds = (direct_url, real) if mode == "direct" else (proxied_url, virtual)
                    lat, wall = asyncio.run(run(url, creds, args.frames, level))
                    figures[mode].append((pct(lat, 0.5), pct(lat, 0.99), len(lat) / wall))
            med = {m: tuple(statistics.median(f[i] for f in figures[m]) for i in range(3)) for m in figures}
            for mode in ("direct", "proxied"):
                p50, p99, rate = med[mode]
                print(f"{level:>11} {mode:>8} {p50:>8.3f} {p99:>8.3f} {rate:>9,.0f}")
            added50, added99 = med["proxied"][0] - med["direct"][0], med["proxied"][1] - med["direct"][1]
            ratio = med["proxied"][2] / med["direct"][2]
            print(f"{level:>11} {'added':>8} {added50:>+8.3f} {added99:>+8.3f}   ratio {ratio:.2f}")
            if level == 1 and added50 > TARGET_P50_MS:
                missed = True
        print(f"target: added p50 <= {TARGET_P50_MS} ms per frame at concurrency 1: {'missed' if missed else 'met'}")
        return 1 if missed else 0
    finally:
        dev.close()


if __name__ == "__main__":
    sys.exit(main())
