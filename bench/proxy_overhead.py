"""What keyproxy adds to a signed Binance order: latency at p50/p99 and throughput.

Run: .venv/bin/python bench/proxy_overhead.py [--exchange binance] [--requests N]
                                              [--concurrency 1,32] [--rounds 3]

Starts a throw-away DevStack (emulator + vault + `keyproxy serve`, real processes on 127.0.0.1)
and sends the same signed `POST /api/v3/order` (LIMIT SELL GTC above the last price, so it
rests on the book) in three modes per concurrency level: `direct` to the emulator signed with the
real key, `bare` through bench/bare_proxy.py (a featureless aiohttp proxy that only re-signs with the
real key: issue 24's yardstick, Binance only), `floor` through the same proxy doing the least work
keyproxy's guarantees need (bench/bare_proxy.py --floor: verify, an audit line before forwarding, the
order id committed before relaying; what no keyproxy can go under on this machine, Binance only), and
`proxied` through keyproxy signed with a drop-in bot's virtual key. Every request
has a fresh timestamp, a unique newClientOrderId and its own HMAC signature, all computed before
its clock starts. Each mode keeps one aiohttp ClientSession with keep-alive connections. The
daemon's one JSON log line per request (stderr, to a file) is part of what is measured.

The emulator checks every new order against all orders it holds, so its cost per order grows
with the book (about +0.08 ms per 1,000 orders). To keep the baseline flat the benchmark resets
the emulator's state every RESET_EVERY orders, in-band and identically in both modes; the reset
is left out of the latencies but counted in the wall time. Each level runs `--rounds` times,
alternating which mode goes first; the table shows medians over rounds (min-max in brackets).

Also printed (Linux, from /proc): CPU time per request of the client, the emulator and the
daemon, and the CPU other processes took during the runs; client, emulator and daemon share
the machine, so a busy neighbour shows up in every figure. Exit status 1 when a target is
missed: added p50 <= 0.5 ms and p99 <= 1.5 ms at concurrency 1, and proxied throughput at
least half of direct at every higher level.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import hashlib
import hmac
import itertools
import json
import math
import re
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from keyproxy.emulator.devstack import DevStack, RedisServer, new_real_key

ORDER_PATH = "/api/v3/order"
# Rests on the book (the emulated BTCUSDT last price is 60000) and locks 0.0001 BTC.
ORDER_PARAMS = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.0001&price=70000"
BALANCES = {"USDT": "1000000", "BTC": "1000", "ETH": "100"}
RESET_EVERY = 200
TARGET_P50_MS, TARGET_P99_MS, TARGET_RATIO = 0.5, 1.5, 0.5
BARE_LATENCY_RATIO, BARE_RPS_RATIO = 1.3, 0.8  # issue 24: against bench/bare_proxy.py in the same run
FOREIGN_LOAD_LIMIT = 0.15  # CPUs other processes may take during a run before figures are suspect


@dataclass(frozen=True)
class Target:
    """Where one mode sends its orders and the key it signs them with."""

    mode: str
    url: URL
    api_key: str
    secret: bytes
    ccxt: CcxtSigner | HyperliquidSigner | None = None  # other exchanges: builds and signs each request


@dataclass(frozen=True)
class RunResult:
    latencies_ms: list[float]
    wall_s: float
    cpu_s: dict[str, float]  # CPU seconds used during the run, per process (Linux only)

    def pct(self, q: float) -> float:
        """Nearest-rank percentile of the request latencies, in ms."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s

    @property
    def foreign_load(self) -> float | None:
        """CPUs kept busy during the run by anything but client, emulator and daemon."""
        if "machine" not in self.cpu_s:
            return None
        ours = sum(v for k, v in self.cpu_s.items() if k != "machine")
        return max(self.cpu_s["machine"] - ours, 0.0) / self.wall_s

    def cpu_us(self, process: str) -> float | None:
        """CPU microseconds `process` spent per request, if it could be read."""
        used = self.cpu_s.get(process)
        return None if used is None else used / len(self.latencies_ms) * 1e6


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs of the machine have been busy (not idle, not waiting on I/O)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def emulator_pid(stack: DevStack, besides: tuple[int, ...] = ()) -> int | None:
    """The emulator is the child process of this one that is not the daemon (nor the bare proxy)."""
    me = os.getpid()
    try:
        children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    except OSError:
        return None
    others = [int(c) for c in children if int(c) != stack.daemon().pid and int(c) not in besides]
    return others[0] if len(others) == 1 else None


class OrderSigner:
    """Order bodies with a fresh timestamp, a unique client order id and an HMAC signature."""

    def __init__(self, secret: bytes, prefix: str) -> None:
        self._secret = secret
        self._prefix = prefix
        self._seq = itertools.count()

    def body(self) -> bytes:
        payload = (f"{ORDER_PARAMS}&newClientOrderId={self._prefix}{next(self._seq)}"
                   f"&recvWindow=5000&timestamp={int(time.time() * 1000)}").encode()
        signature = hmac.new(self._secret, payload, hashlib.sha256).hexdigest().encode()
        return payload + b"&signature=" + signature


# Kraken, OKX and Bybit answer some errors with HTTP 200: a request only counts when it succeeded.
ERRORS_WITH_200 = re.compile(rb'"error": ?\["|"keyproxy_error"|"retCode": ?[1-9]|"code": ?"[1-9]|"status": ?"err"'
                             rb'|"error": ?"')


class _Captured(Exception):
    pass


# A signed read call per exchange, made by ccxt's own implicit method (so signed exactly as a bot signs).
CCXT_CALLS = {
    "kraken": ("hmac", "private_post_balance", {}),
    "okx": ("hmac", "private_get_account_balance", {}),
    "bybit": ("hmac", "private_get_v5_account_wallet_balance", {"accountType": "UNIFIED"}),
    "coinbase": ("ec", "v3_private_get_brokerage_accounts", {}),
}


class CcxtSigner:
    """Signed requests for any exchange, built by ccxt and captured before ccxt would send them."""

    def __init__(self, exchange: str, creds: dict[str, str], sign_base: str, send_base: str) -> None:
        import ccxt

        from keyproxy.emulator.devstack import point_ccxt_at

        config = {"apiKey": creds["api_key"], "secret": creds.get("secret") or creds.get("private_key"),
                  "enableRateLimit": False}
        if creds.get("passphrase"):
            config["password"] = creds["passphrase"]
        self._ex = getattr(ccxt, exchange)(config)
        if sign_base:
            point_ccxt_at(self._ex, sign_base)
        self._send_base = send_base
        self._signed_for_target = bool(sign_base)
        if exchange == "kraken":
            # Kraken's nonce must increase per key, even within one millisecond; time-based like
            # keyproxy's own, since the direct and proxied runs share the real key's sequence.
            last_nonce = [0]

            def nonce() -> int:
                last_nonce[0] = max(time.time_ns() // 1000, last_nonce[0] + 1)
                return last_nonce[0]

            self._ex.nonce = nonce
        if exchange == "okx":
            # Two byte-identical signed requests in the same millisecond are one request replayed, and
            # keyproxy refuses the second; a real bot's requests differ, so give each its own millisecond.
            last = [0]

            def unique_ms() -> int:
                last[0] = max(int(time.time() * 1000), last[0] + 1)
                return last[0]

            self._ex.milliseconds = unique_ms
        self._method, self._params = CCXT_CALLS[exchange][1], CCXT_CALLS[exchange][2]
        self._captured: dict[str, object] = {}

        def capture(url: str, method: str = "GET", headers: object = None, body: object = None) -> object:
            self._captured = {"url": url, "method": method, "headers": headers or {}, "body": body}
            raise _Captured

        self._ex.fetch = capture

    def request(self) -> tuple[str, URL, dict[str, str], bytes | None]:
        try:
            getattr(self._ex, self._method)(dict(self._params))
        except _Captured:
            pass
        c = self._captured
        url = str(c["url"]) if self._signed_for_target else re.sub(r"^https?://[^/]+", self._send_base, str(c["url"]))
        body = c["body"]
        return (str(c["method"]), URL(url, encoded=True), dict(c["headers"]),  # type: ignore[arg-type]
                body.encode() if isinstance(body, str) else body)  # type: ignore[return-value]


class HyperliquidSigner:
    """Hyperliquid orders (a resting BTC limit buy below the emulator's mid), each with its own nonce and
    EIP-712 signature made before its clock starts, signed as ccxt signs them (mainnet phantom agent)."""

    ACTION = {"type": "order", "orders": [{"a": 0, "b": True, "p": "60000", "s": "0.001", "r": False,
                                           "t": {"limit": {"tif": "Gtc"}}}], "grouping": "na"}

    def __init__(self, private_key: str, send_base: str) -> None:
        from keyproxy.exchanges import _eth

        self._eth = _eth
        self._key = _eth.parse_private_key(private_key.encode())
        self._url = URL(send_base + "/exchange")
        self._last = 0

    def request(self) -> tuple[str, URL, dict[str, str], bytes | None]:
        self._last = nonce = max(int(time.time() * 1000), self._last + 1)
        eth = self._eth
        signature = eth.sign_typed(eth.l1_typed_data(eth.action_hash(self.ACTION, None, nonce, None), True), self._key)
        body = {"action": self.ACTION, "nonce": nonce, "signature": signature, "vaultAddress": None}
        return "POST", self._url, {"Content-Type": "application/json"}, json.dumps(body).encode()


class Bench:
    """One session per mode, plus a control session that resets the emulator."""

    def __init__(self, emulator_url: str, targets: list[Target], max_concurrency: int,
                 pids: dict[str, int]) -> None:
        self._pids = pids
        self._reset_url = URL(emulator_url + "/_emulator/reset")
        self._control = aiohttp.ClientSession()
        self._sessions = {t.mode: new_session(t, max_concurrency) for t in targets}
        self._runs = itertools.count()

    async def close(self) -> None:
        for session in (self._control, *self._sessions.values()):
            await session.close()

    async def reset_emulator(self) -> None:
        async with self._control.post(self._reset_url) as resp:
            resp.raise_for_status()

    async def run(self, target: Target, requests: int, concurrency: int) -> RunResult:
        """Send `requests` signed requests from `concurrency` workers; every answer must be 200."""
        session = self._sessions[target.mode]
        signer = OrderSigner(target.secret, f"b{next(self._runs)}{target.mode[0]}")
        issued = itertools.count()
        latencies: list[float] = []

        async def worker() -> None:
            while (n := next(issued)) < requests:
                if n % RESET_EVERY == 0:
                    await self.reset_emulator()
                if target.ccxt is not None:
                    method, url, headers, data = target.ccxt.request()
                else:
                    method, url, headers, data = "POST", target.url, {}, signer.body()
                started = time.perf_counter()
                async with session.request(method, url, data=data, headers=headers) as resp:
                    answer = await resp.read()
                latencies.append((time.perf_counter() - started) * 1000)
                if resp.status != 200 or ERRORS_WITH_200.search(answer[:400]):
                    raise RuntimeError(f"{target.mode}: HTTP {resp.status}: {answer[:300]!r}")

        cpu_before = self._cpu()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu_after = self._cpu()
        used = {p: cpu_after[p] - cpu_before[p] for p in cpu_before if p in cpu_after}
        return RunResult(latencies, wall, used)

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of this client, the emulator, the daemon and the whole machine."""
        now = {"client": time.process_time()}
        for name, pid in self._pids.items():
            if (used := cpu_seconds(pid)) is not None:
                # `serve --workers N`: the daemon is its workers (children of the process DevStack started)
                now[name] = used + (sum(cpu_seconds(c) or 0.0 for c in child_pids(pid)) if name == "daemon" else 0.0)
        if (busy := machine_busy_seconds()) is not None:
            now["machine"] = busy
        return now


def new_session(target: Target, concurrency: int) -> aiohttp.ClientSession:
    headers = ({} if target.ccxt is not None else
               {"X-MBX-APIKEY": target.api_key, "Content-Type": "application/x-www-form-urlencoded"})
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                 headers=headers, cookie_jar=aiohttp.DummyCookieJar())


Results = dict[tuple[str, int], list[RunResult]]


async def measure(emulator_url: str, targets: list[Target], pids: dict[str, int], requests: int,
                  warmup: int, levels: list[int], rounds: int) -> Results:
    results: Results = {(t.mode, level): [] for t in targets for level in levels}
    bench = Bench(emulator_url, targets, max(levels), pids)
    try:
        for level in levels:
            for target in targets:
                await bench.run(target, warmup, level)
            for r in range(rounds):
                for target in targets if r % 2 == 0 else targets[::-1]:
                    results[(target.mode, level)].append(await bench.run(target, requests, level))
    finally:
        await bench.close()
    return results


def _median(runs: list[RunResult], stat: Callable[[RunResult], float]) -> float:
    return statistics.median(stat(r) for r in runs)


def _cell(runs: list[RunResult], stat: Callable[[RunResult], float], fmt: str) -> str:
    values = [stat(r) for r in runs]
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({min(values):{fmt}}-{max(values):{fmt}})"
    return text


def report(results: Results, levels: list[int]) -> bool:
    """Print the table and the verdict against the targets; True when all targets are met."""
    def p50(r: RunResult) -> float:
        return r.pct(50)

    def p99(r: RunResult) -> float:
        return r.pct(99)

    def rps(r: RunResult) -> float:
        return r.rps

    ok = True
    modes = [m for m in ("direct", "bare", "floor", "proxied") if (m, levels[0]) in results]
    print(f"{'conc':>4}  {'mode':<8} {'p50 ms':<20} {'p99 ms':<20} {'req/s':<16}")
    for level in levels:
        direct, proxied = results[("direct", level)], results[("proxied", level)]
        for name in modes:
            runs = results[(name, level)]
            cells = [_cell(runs, p50, ".3f"), _cell(runs, p99, ".3f"), _cell(runs, rps, ".0f")]
            print(f"{level:>4}  {name:<8} {cells[0]:<20} {cells[1]:<20} {cells[2]:<16}")
        add50 = _median(proxied, p50) - _median(direct, p50)
        add99 = _median(proxied, p99) - _median(direct, p99)
        ratio = _median(proxied, rps) / _median(direct, rps)
        print(f"{level:>4}  {'added':<8} {add50:<+20.3f} {add99:<+20.3f} ratio {ratio:.2f}")
        if "bare" in modes:  # issue 24's yardstick: keyproxy against a featureless re-signing proxy
            bare = results[("bare", level)]
            bare50 = _median(bare, p50) - _median(direct, p50)

            def against_bare(runs: list[RunResult], added: float) -> str:
                return (f"added p50 {added:.3f} / {bare50:.3f} ms = "
                        f"{added / bare50 if bare50 > 0 else float('inf'):.2f}x; req/s "
                        f"{_median(runs, rps) / _median(bare, rps):.2f}x the bare proxy's")

            print(f"{level:>4}  {'vs bare':<8} {against_bare(proxied, add50)} "
                  f"(issue 24 targets: <= {BARE_LATENCY_RATIO}x at concurrency 1, >= {BARE_RPS_RATIO}x above)")
            if "floor" in modes:  # the guarantees' least work: what no keyproxy on this machine can go under
                floor = results[("floor", level)]
                floor50 = _median(floor, p50) - _median(direct, p50)
                print(f"{level:>4}  {'floor':<8} {against_bare(floor, floor50)}; keyproxy above the floor: "
                      f"{add50 - floor50:+.3f} ms at p50, req/s {_median(proxied, rps) / _median(floor, rps):.2f}x")
        if level == 1:
            met = add50 <= TARGET_P50_MS and add99 <= TARGET_P99_MS
            goal = f"added p50 <= {TARGET_P50_MS} ms and p99 <= {TARGET_P99_MS} ms"
        else:
            met = ratio >= TARGET_RATIO
            goal = f"proxied/direct throughput >= {TARGET_RATIO}"
        ok &= met
        print(f"      target at concurrency {level}: {goal}: {'met' if met else 'MISSED'}")
    print(f"CPU per request, us (median over rounds; {os.cpu_count()} CPUs shared by all three):")
    for level, mode in itertools.product(levels, modes):
        runs, cells = results[(mode, level)], []
        for process in ("client", "emulator", "daemon", "bare", "floor"):
            values = [v for r in runs if (v := r.cpu_us(process)) is not None]
            if values and (process not in ("daemon", "bare", "floor")
                           or mode == {"daemon": "proxied", "bare": "bare", "floor": "floor"}[process]):
                cells.append(f"{process} {statistics.median(values):4.0f}")
        print(f"{level:>4}  {mode:<8} " + "  ".join(cells))
    loads = [x for runs in results.values() for r in runs if (x := r.foreign_load) is not None]
    if loads:
        noisy = max(loads) > FOREIGN_LOAD_LIMIT
        print(f"other processes during the runs: {statistics.median(loads):.2f} CPUs median, "
              f"{max(loads):.2f} max" + ("  (disturbed: rerun when it is quiet)" if noisy else ""))
    return ok


def start_bare_proxy(tmp: Path, upstream: str, credentials: dict[str, str],
                     floor_bot: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """bench/bare_proxy.py on a free port, the real key (and for the floor proxy the bot's virtual one) handed
    over in a 0600 file (never argv)."""
    name = "floor" if floor_bot else "bare"
    key_file = tmp / f"{name}-key"
    lines = [credentials["api_key"], credentials["secret"]] + ([floor_bot["api_key"], floor_bot["secret"]]
                                                               if floor_bot else [])
    key_file.touch(0o600)
    key_file.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_proxy.py")), "--upstream", upstream,
                             "--key-file", str(key_file), *(["--floor", str(tmp / name)] if floor_bot else [])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"bare proxy did not start: {line!r}")
    return proc, line.split()[1]


def loop_lag(metrics: str) -> str:
    """The daemon's `keyproxy_event_loop_lag_seconds` over the whole run (warm-up and pauses included): how
    long something held the event loop every request shares. Percentiles are bucket bounds."""
    import re

    buckets = [(float(le), int(float(n))) for le, n in
               re.findall(r'keyproxy_event_loop_lag_seconds_bucket\{le="([0-9.e+-]+)"\} ([0-9.e+]+)', metrics)]
    count = next((int(float(n)) for n in re.findall(r"keyproxy_event_loop_lag_seconds_count ([0-9.e+]+)", metrics)), 0)
    total = next((float(n) for n in re.findall(r"keyproxy_event_loop_lag_seconds_sum ([0-9.e+-]+)", metrics)), 0.0)
    if not count:
        return "event loop lag: no samples (metrics disabled?)"

    def bound(share: float) -> str:
        le = next((le for le, n in buckets if n >= share * count), None)
        return f"<= {le * 1000:g} ms" if le is not None else "> 2500 ms"

    return (f"event loop lag (25 ms timer, {count} samples): mean {total / count * 1000:.2f} ms, "
            f"p50 {bound(0.5)}, p99 {bound(0.99)}, max {bound(1.0)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--exchange", choices=["binance", *CCXT_CALLS, "hyperliquid"], default="binance",
                    help="binance and hyperliquid: signed orders; the others: a signed balance read, signed by ccxt")
    ap.add_argument("--requests", type=int, default=5000, help="timed requests per run")
    ap.add_argument("--warmup", type=int, default=500, help="untimed requests per mode and level")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs per mode and level")
    ap.add_argument("--concurrency", default="1,32", help="comma list of concurrency levels")
    ap.add_argument("--fsync", choices=["interval", "always"], default="interval",
                    help="the daemon's audit durability ([audit] fsync)")
    ap.add_argument("--policy", choices=["none", "realistic"], default="none",
                    help="realistic: scopes, IP list, rate limits, symbol list and a notional cap on the bot")
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "auto"], default="asyncio",
                    help="the daemon's event loop (keyproxy serve --loop)")
    ap.add_argument("--log-level", choices=["info", "debug"], default="info",
                    help="info is production (allowed requests are not logged); debug logs every request")
    ap.add_argument("--shared-state", choices=["none", "redis"], default="none",
                    help="redis: the daemon is one instance of a fleet ([shared_state], a local redis-server): "
                         "every request makes the fleet's one Redis round trip (docs/fleet.md)")
    ap.add_argument("--workers", type=int, default=1,
                    help="keyproxy serve --workers N (needs --shared-state redis): processes sharing the port")
    args = ap.parse_args()
    if args.workers > 1 and args.shared_state != "redis":
        ap.error("--workers N needs --shared-state redis")
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.exchange == "kraken" and max(levels) > 1:
        # one key's nonces must arrive in order: concurrent private requests on one Kraken key fail
        # at Kraken itself (EAPI:Invalid nonce), so only the sequential level means anything
        print("kraken: measuring concurrency 1 only (one key's requests must arrive in nonce order)")
        levels = [1]
    if min(args.requests, args.rounds, *levels) < 1 or args.warmup < 0:
        ap.error("--requests, --rounds and every concurrency level must be positive")

    # the governor would (rightly) refuse this load above Binance's budgets: bench/governor.py measures it
    config = f'[audit]\nfsync = "{args.fsync}"\n[governor]\nenabled = false\n'
    with tempfile.TemporaryDirectory(prefix="keyproxy-bench-") as tmp, contextlib.ExitStack() as cleanup:
        if args.shared_state == "redis":
            redis_server = RedisServer(Path(tmp) / "redis").start()
            cleanup.callback(redis_server.stop)
            config += redis_server.config()
        stack = cleanup.enter_context(DevStack(Path(tmp), extra_config=config, log_level=args.log_level))
        direct_key = None
        if args.exchange == "binance":
            real = new_real_key("hmac", balances=BALANCES)
        elif args.exchange == "hyperliquid":
            from eth_account import Account

            # direct mode signs with a second approved agent: the emulator keeps nonces per signer, so the
            # direct runs and keyproxy's own nonce sequence never meet in one window
            real = new_real_key("eth", exchange="hyperliquid")
            direct = Account.create()
            real.emulated["permissions"]["agents"].append(str(direct.address).lower())
            direct_key = "0x" + bytes(direct.key).hex()
        else:
            real = new_real_key(CCXT_CALLS[args.exchange][0], exchange=args.exchange)
        emulator_url = stack.start_emulator([real])
        stack.init()
        stack.add_account("bench", real)
        stack.start_daemon(0, "--loop", args.loop, *(["--workers", str(args.workers)] if args.workers > 1 else []))
        limits = []
        if args.policy == "realistic":  # generous enough never to refuse the benchmark's orders
            limits = ["--allow-ip", "127.0.0.1/32", "--allow-ip", "::1/128",
                      "--set", "requests_per_second=100000", "--set", "burst=100000",
                      "--set", "orders_per_minute=10000000",
                      "--set", "symbols=" + ("BTC,ETH" if args.exchange == "hyperliquid" else "BTCUSDT,ETHUSDT"),
                      "--set", "max_order_notional=100"]
        bot = stack.add_bot("bench-bot", "bench", "read,trade", *limits)
        bare_proc = floor_proc = None
        if args.exchange == "binance":
            bare_proc, bare_url = start_bare_proxy(Path(tmp), emulator_url, real.credentials)
            floor_proc, floor_url = start_bare_proxy(Path(tmp), emulator_url, real.credentials, bot)
            targets = [
                Target("direct", URL(emulator_url + ORDER_PATH), real.credentials["api_key"],
                       real.credentials["secret"].encode()),
                Target("bare", URL(bare_url + "/bench" + ORDER_PATH), bot["api_key"], bot["secret"].encode()),
                Target("floor", URL(floor_url + "/bench" + ORDER_PATH), bot["api_key"], bot["secret"].encode()),
                Target("proxied", URL(bot["base_url"] + ORDER_PATH), bot["api_key"],
                       bot["secret"].encode()),
            ]
        elif args.exchange == "hyperliquid":
            assert direct_key is not None
            targets = [Target("direct", URL(emulator_url), "", b"", HyperliquidSigner(direct_key, emulator_url)),
                       Target("proxied", URL(bot["base_url"]), "", b"",
                              HyperliquidSigner(bot["private_key"], bot["base_url"]))]
        else:  # direct: signed for the exchange's own host (Coinbase's JWT names it), sent to the emulator
            targets = [
                Target("direct", URL(emulator_url), "", b"",
                       CcxtSigner(args.exchange, real.credentials, "", emulator_url)),
                Target("proxied", URL(bot["base_url"]), "", b"",
                       CcxtSigner(args.exchange, bot, bot["base_url"], bot["base_url"])),
            ]
        what = f"POST {ORDER_PATH} (resting LIMIT order)" if args.exchange == "binance" else \
            "POST /exchange (resting limit order, EIP-712)" if args.exchange == "hyperliquid" else \
            f"{CCXT_CALLS[args.exchange][1]} (signed read, built by ccxt)"
        print(f"keyproxy proxy overhead, {args.exchange} {what}: "
              f"{args.rounds} x {args.requests} timed requests per mode and level, "
              f"{args.warmup} warm-up; audit fsync={args.fsync}, policy={args.policy}, log={args.log_level}, "
              f"loop={args.loop}, shared state={args.shared_state}, workers={args.workers}")
        pids = {"daemon": stack.daemon().pid}
        if bare_proc is not None and floor_proc is not None:
            pids["bare"], pids["floor"] = bare_proc.pid, floor_proc.pid
        if (emulator := emulator_pid(stack, (bare_proc.pid, floor_proc.pid) if bare_proc and floor_proc else ())) \
                is not None:
            pids["emulator"] = emulator
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
              f"daemon pid {pids['daemon']}", flush=True)
        results = asyncio.run(measure(emulator_url, targets, pids, args.requests, args.warmup,
                                      levels, args.rounds))
        for proc in (bare_proc, floor_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        ok = report(results, levels)
        print(loop_lag(stack.metrics()))
        audited = sum(f.read_text().count('"event":"request.done"') for f in stack.audit_dir.rglob("audit-*.jsonl"))
        expected = len(levels) * (args.warmup + args.rounds * args.requests)
        print(f"audit trail: {audited} request.done lines (expected {expected})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
