"""Per-request signing and verifying cost of each exchange adapter, in process (no I/O).

Run: .venv/bin/python bench/signing.py [--n 2000]

For each exchange: verifying a drop-in bot's request (its own signature, made
here with the exchange's scheme) and re-signing it with the real key, as the
proxy does for every private request. Coinbase's ES256 JWT (mint + verify) is
the costliest and is reported on its own, as the issue asks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from keyproxy.exchanges import default_adapters
from keyproxy.exchanges.base import BotKey, IncomingRequest, RealKey, SignContext
from keyproxy.secret import Secret


def timed(fn: Callable[[], object], n: int) -> float:
    """Median of 5 runs of n calls, in microseconds per call."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def real_key(adapter: object, key_type: str) -> RealKey:
    issued = adapter.issue_bot_key(key_type)  # type: ignore[attr-defined]
    shown = issued.shown
    pem = shown.get("secret") if key_type != "hmac" else None
    return RealKey(key_type, Secret(shown["api_key"]), secret=Secret(shown["secret"]) if key_type == "hmac" else None,
                   passphrase=Secret(shown["passphrase"]) if "passphrase" in shown else None,
                   private_key=Secret(pem) if pem else None)


CASES = {  # exchange: (key type, method, path, query, body, content type)
    "binance": ("hmac", "GET", "/api/v3/account", "", b"", ""),
    "kraken": ("hmac", "POST", "/0/private/Balance", "", b"", "application/x-www-form-urlencoded"),
    "okx": ("hmac", "GET", "/api/v5/account/balance", "", b"", ""),
    "bybit": ("hmac", "GET", "/v5/account/wallet-balance", "accountType=UNIFIED", b"", ""),
    "coinbase": ("ec", "GET", "/api/v3/brokerage/accounts", "", b"", ""),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    adapters = default_adapters()
    print(f"{'exchange':<10} {'token-mode sign (us)':>22}  notes")
    for name, (key_type, method, path, query, body, ctype) in CASES.items():
        adapter = adapters[name]
        key = real_key(adapter, key_type)
        endpoint = adapter.classify(method, path)
        assert endpoint is not None, (name, path)
        headers = {"content-type": ctype} if ctype else {}
        req = IncomingRequest(method, path, query, headers, body, host="127.0.0.1:8750", mount="/acct")
        stripped = adapter.strip(req)
        origin = adapter.environments[0].origin_for(path) or ""
        nonce = iter(range(10**15, 10**16))
        cost = timed(lambda: adapter.sign(stripped, key, endpoint, SignContext(
            origin, "production", int(time.time() * 1000), next(nonce))), n)
        note = "ES256 JWT minted per request" if name == "coinbase" else ""
        print(f"{name:<10} {cost:>22.1f}  {note}")
    # Coinbase drop-in: verifying the bot's ES256 JWT as well
    cb = adapters["coinbase"]
    issued = cb.issue_bot_key("ec")
    bot = issued.kept
    botkey = RealKey("ec", Secret(issued.shown["api_key"]), private_key=Secret(issued.shown["secret"]))
    endpoint = cb.classify("GET", "/api/v3/brokerage/accounts")
    base = IncomingRequest("GET", "/api/v3/brokerage/accounts", "", {}, b"", host="api.coinbase.com", mount="")
    minted = cb.sign(base, botkey, endpoint, SignContext("https://api.coinbase.com", "production",
                                                         int(time.time() * 1000)))
    signed = base.replace(headers={k.lower(): v for k, v in minted.headers.items()})
    verify = timed(lambda: cb.verify(signed, BotKey(bot.key_id, "ec", public_key=bot.public_key), endpoint,
                                     int(time.time() * 1000)), n)
    print(f"{'coinbase':<10} {'bot JWT verify (us)':>22}  {verify:.1f}")
    hyperliquid(adapters["hyperliquid"], n)


def hyperliquid(adapter: object, n: int) -> None:
    """Hyperliquid: recovering the bot's address from its EIP-712 signature (both networks, as keyproxy
    does for an L1 action), verifying it, and signing the action with the real key (secp256k1)."""
    import json

    from keyproxy.exchanges import _eth

    bot_issued, real_issued = adapter.issue_bot_key("eth"), adapter.issue_bot_key("eth")  # type: ignore[attr-defined]
    real = RealKey("eth", Secret(real_issued.kept.key_id), private_key=Secret(real_issued.shown["private_key"]))
    bot_key = _eth.parse_private_key(bot_issued.shown["private_key"].encode())
    action = {"type": "order", "orders": [{"a": 0, "b": True, "p": "60000", "s": "0.001", "r": False,
                                           "t": {"limit": {"tif": "Gtc"}}}], "grouping": "na"}
    now = int(time.time() * 1000)
    nonces = iter(range(now, now + 10**9))

    def request() -> IncomingRequest:
        nonce = next(nonces)
        sig = _eth.sign_typed(_eth.l1_typed_data(_eth.action_hash(action, None, nonce, None), False), bot_key)
        body = json.dumps({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None}).encode()
        return IncomingRequest("POST", "/exchange", "", {"content-type": "application/json"}, body)

    m = max(n // 10, 50)  # secp256k1 is ~100x HMAC: fewer calls
    reqs = [request() for _ in range(5 * m + 5)]
    endpoint = adapter.classify_request(reqs[0])  # type: ignore[attr-defined]
    it = iter(reqs)
    verify = timed(lambda: adapter.verify(next(it), bot_issued.kept, endpoint, now), m)  # type: ignore[attr-defined]
    sign = timed(lambda: adapter.sign(reqs[0], real, endpoint, SignContext(  # type: ignore[attr-defined]
        "https://api.hyperliquid.xyz", "production", now, next(nonces))), m)
    print(f"{'hyperliquid':<10} {'bot verify (us)':>22}  {verify:.1f}  "
          "(one recovery: the network the bot signs for is learned)")
    print(f"{'hyperliquid':<10} {'real sign (us)':>22}  {sign:.1f}  (EIP-712 + secp256k1)")


if __name__ == "__main__":
    main()
