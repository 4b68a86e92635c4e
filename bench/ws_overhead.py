"""What keyproxy adds to a WebSocket order frame: latency at p50/p99 and frames/s.

Run: .venv/bin/python bench/ws_overhead.py [--exchange binance|okx|bybit|kraken] [--frames N]
     [--concurrency 1,32] [--rounds 3]

Binance (the default): each frame is signed (`order.place`, keyproxy verifies and re-signs it). OKX and
Bybit: each socket logs in once (`login`, `auth`), then every `order` / `order.create` frame is decided as
the logged-in bot's. Kraken: every `add_order` frame carries a token (virtual through keyproxy, swapped for
the real one). Coinbase takes no orders over its socket (its per-subscribe JWT mint is measured by
bench/signing.py).

Starts a throw-away DevStack (emulator + vault + `keyproxy serve`, real processes on 127.0.0.1) and
sends the same `order.place` frame (LIMIT SELL GTC above the last price, so it rests) in two modes:
`direct` on sockets to the emulator's `/ws-api/v3` signed with the real key, and `proxied` on sockets
to keyproxy's `/<account>/ws-api/v3` signed with a bot's virtual key (keyproxy verifies, decides,
audits and re-signs every frame). Each of `concurrency` sockets sends its frames one at a time and
waits for the answer; frames are signed before their clock starts. The sockets are opened before
timing, so no handshake is measured: the WebSocket path should add less than REST does (no HTTP
parsing per request). Binance also runs `bare`: the same sockets through bench/bare_proxy.py, a relay that
only swaps the signature (what aiohttp costs), and prints keyproxy's added p50 against it. The emulator's
state is reset between rounds. Medians over rounds are printed;
exit status 1 when the added p50 at concurrency 1 is above the 0.3 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from keyproxy.emulator.devstack import DevStack, new_real_key

ORDER = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.0001",
         "price": "70000"}
BALANCES = {"USDT": "1000000", "BTC": "1000", "ETH": "100"}
TARGET_P50_MS = 0.3
_ids = itertools.count(1)


Creds = dict[str, str]


def binance_frame(c: Creds) -> str:
    params: dict[str, Any] = {**ORDER, "apiKey": c["api_key"], "timestamp": int(time.time() * 1000),
                              "newClientOrderId": f"b{next(_ids)}"}
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(c["secret"].encode(), text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": next(_ids), "method": "order.place", "params": params})


def okx_login(c: Creds) -> str:
    stamp = str(int(time.time()))
    sign = base64.b64encode(hmac.new(c["secret"].encode(), (stamp + "GET/users/self/verify").encode(),
                                     hashlib.sha256).digest()).decode()
    return json.dumps({"op": "login", "args": [{"apiKey": c["api_key"], "passphrase": c["passphrase"],
                                                "timestamp": stamp, "sign": sign}]})


def bybit_auth(c: Creds) -> str:
    expires = int(time.time() * 1000) + 10_000
    sign = hmac.new(c["secret"].encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"req_id": "a", "op": "auth", "args": [c["api_key"], expires, sign]})


@dataclass(frozen=True)
class Venue:
    path: str
    frame: Callable[[Creds], str]
    ok: Callable[[dict[str, Any]], bool]
    login: Callable[[Creds], str] | None = None


VENUES = {
    "binance": Venue("/ws-api/v3", binance_frame, lambda a: a.get("status") == 200),
    "okx": Venue("/ws/v5/private", lambda c: json.dumps({"id": str(next(_ids)), "op": "order", "args": [{
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "20000", "sz": "0.001"}]}),
        lambda a: a.get("code") == "0", okx_login),
    "bybit": Venue("/v5/trade", lambda c: json.dumps({
        "reqId": str(next(_ids)), "header": {"X-BAPI-TIMESTAMP": str(int(time.time() * 1000))},
        "op": "order.create", "args": [{"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                        "orderType": "Limit", "qty": "0.001", "price": "20000"}]}),
        lambda a: a.get("retCode") == 0, bybit_auth),
    "kraken": Venue("/v2", lambda c: json.dumps({"method": "add_order", "req_id": next(_ids), "params": {
        "order_type": "limit", "side": "buy", "order_qty": 0.001, "limit_price": 20000, "symbol": "BTC/USD",
        "token": c["token"]}}), lambda a: a.get("success") is True),
}


async def answer(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next answer on the socket (order events, which carry a channel or an arg, are skipped)."""
    while True:
        doc = json.loads((await ws.receive()).data)
        if "channel" not in doc and "arg" not in doc and "topic" not in doc:
            return doc  # type: ignore[no-any-return]


async def run(venue: Venue, url: str, creds: list[Creds], frames: int,
              concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of every frame and the wall time, over `concurrency` sockets opened (and logged in)
    beforehand; socket i uses credential i % len(creds) (keyproxy lets one bot hold 16 sockets)."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(concurrency)]
        if venue.login is not None:
            await asyncio.sleep(1.0)  # a new second: the previous run's logins are not replays of these
            for n, ws in enumerate(sockets):
                await ws.send_str(venue.login(creds[n % len(creds)]))
                logged = await answer(ws)
                if logged.get("code") not in ("0", None) or logged.get("success") is False:
                    raise SystemExit(f"login refused: {logged}")
        per_socket = frames // concurrency

        async def one(n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            for _ in range(per_socket):
                text = venue.frame(creds[n % len(creds)])
                start = time.perf_counter()
                await ws.send_str(text)
                doc = await answer(ws)
                latencies.append((time.perf_counter() - start) * 1000)
                if not venue.ok(doc):
                    raise SystemExit(f"frame refused: {doc}")

        began = time.perf_counter()
        await asyncio.gather(*(one(n, ws) for n, ws in enumerate(sockets)))
        wall = time.perf_counter() - began
        for ws in sockets:
            await ws.close()
    return latencies, wall


def kraken_token(c: Creds, base_url: str) -> str:
    import ccxt

    from keyproxy.emulator.devstack import point_ccxt_at

    client = point_ccxt_at(ccxt.kraken({"apiKey": c["api_key"], "secret": c["secret"]}), base_url)
    return client.privatePostGetWebSocketsToken()["result"]["token"]  # type: ignore[no-any-return]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reset(emulator_url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(emulator_url + "/_emulator/reset", method="POST"), timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchange", choices=sorted(VENUES), default="binance")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    # the governor would (rightly) refuse this load above the exchange's budgets: bench/governor.py measures it
    dev = DevStack(Path(tempfile.mkdtemp(prefix="kp-wsbench-")), log_level="info",
                   extra_config="[governor]\nenabled = false\n")
    venue = VENUES[args.exchange]
    cleanup: list[Any] = []
    key = new_real_key(balances=BALANCES) if args.exchange == "binance" else new_real_key(exchange=args.exchange)
    try:
        dev.serve_account("main", key)
        # a login is accepted once (OKX signs it over a timestamp in seconds): one bot per socket there
        count = max(levels) if venue.login else -(-max(levels) // 16)
        bots = [dev.add_bot(f"bench{n}", "main", "read,trade") for n in range(count)]
        assert dev.emulator_url is not None
        direct_url = dev.emulator_url.replace("http://", "ws://") + venue.path
        proxied_url = bots[0]["base_url"].replace("http://", "ws://") + venue.path
        real: list[Creds] = [dict(key.credentials)]
        virtual: list[Creds] = [dict(b) for b in bots]
        if args.exchange == "kraken":  # the real token from Kraken, each bot's virtual one through keyproxy
            real[0]["token"] = kraken_token(real[0], dev.emulator_url)
            for c in virtual:
                c["token"] = kraken_token(c, c["base_url"])
        urls = {"direct": direct_url, "proxied": proxied_url}
        if args.exchange == "binance":  # bench/bare_proxy.py relays the same socket with the re-signing alone
            from proxy_overhead import start_bare_proxy

            bare_proc, bare_url = start_bare_proxy(dev.root, dev.emulator_url, key.credentials)
            cleanup.append(bare_proc)
            urls["bare"] = bare_url.replace("http://", "ws://") + "/main" + venue.path
        print(f"{args.exchange}: {venue.path}")
        print(f"{'concurrency':>11} {'mode':>8} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
        missed = False
        for level in levels:
            figures: dict[str, list[tuple[float, float, float]]] = {m: [] for m in urls}
            for r in range(args.rounds):
                modes = list(urls) if r % 2 == 0 else list(reversed(urls))
                for mode in modes:
                    reset(dev.emulator_url)
                    url, creds = urls[mode], (real if mode == "direct" else virtual)
                    lat, wall = asyncio.run(run(venue, url, creds, args.frames, level))
                    figures[mode].append((pct(lat, 0.5), pct(lat, 0.99), len(lat) / wall))
            med = {m: tuple(statistics.median(f[i] for f in figures[m]) for i in range(3)) for m in figures}
            for mode in urls:
                p50, p99, rate = med[mode]
                print(f"{level:>11} {mode:>8} {p50:>8.3f} {p99:>8.3f} {rate:>9,.0f}")
            added50, added99 = med["proxied"][0] - med["direct"][0], med["proxied"][1] - med["direct"][1]
            ratio = med["proxied"][2] / med["direct"][2]
            print(f"{level:>11} {'added':>8} {added50:>+8.3f} {added99:>+8.3f}   ratio {ratio:.2f}")
            if "bare" in med:  # the same relay with nothing but the re-signing: what aiohttp itself costs
                bare50 = med["bare"][0] - med["direct"][0]
                print(f"{level:>11} {'vs bare':>8} added p50 {added50:.3f} / {bare50:.3f} ms = "
                      f"{added50 / bare50 if bare50 > 0 else float('inf'):.2f}x; frames/s "
                      f"{med['proxied'][2] / med['bare'][2]:.2f}x the bare relay's")
            if level == 1 and added50 > TARGET_P50_MS:
                missed = True
        print(f"target: added p50 <= {TARGET_P50_MS} ms per frame at concurrency 1: {'missed' if missed else 'met'}")
        return 1 if missed else 0
    finally:
        for proc in cleanup:
            proc.terminate()
            proc.wait(timeout=10)
        dev.close()


if __name__ == "__main__":
    sys.exit(main())
