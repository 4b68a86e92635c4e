"""End-to-end fixtures: a real emulator, a real vault and a real daemon, as separate processes."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyproxy.emulator.devstack import DevStack, RealKey, new_real_key

KEY_TYPES = ("hmac", "ed25519", "rsa")


@dataclass
class Stack:
    dev: DevStack
    keys: dict[str, RealKey]  # account name -> real key

    def bot(self, name: str, account: str = "acct-hmac", scope: str = "read,trade", *extra: str) -> dict:  # type: ignore[type-arg]
        return self.dev.add_bot(name, account, scope, *extra)

    def private_journal(self, since: int = 0) -> list[dict]:  # type: ignore[type-arg]
        return [e for e in self.dev.journal()[since:] if "exchangeInfo" not in e["path"]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    dev = DevStack(tmp_path_factory.mktemp("stack"))
    keys = {f"acct-{t}": new_real_key(t) for t in KEY_TYPES}
    keys["acct-nowd"] = new_real_key("hmac")
    try:
        dev.start_emulator(list(keys.values()))
        dev.init()
        for name, key in keys.items():
            dev.add_account(name, key)
        dev.start_daemon()
        yield Stack(dev, keys)
    finally:
        dev.close()


def one_account_stack(tmp_path_factory: pytest.TempPathFactory, name: str, **permissions: bool) -> Iterator[DevStack]:
    """A module's stack: the emulator with one Binance key of these permissions, its account `main`, the daemon."""
    stack = DevStack(tmp_path_factory.mktemp(name))
    key = new_real_key(permissions=permissions)
    try:
        stack.start_emulator([key])
        stack.init()
        stack.add_account("main", key)
        stack.start_daemon()
        yield stack
    finally:
        stack.close()


def hmac_sign(secret: str, query: str) -> str:
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


_LAST_MS = [0]


def now_ms() -> int:
    """The time in ms, a new value on each call: two requests signed in one millisecond would be the same
    signed request, which keyproxy refuses the second time as a replay, and an answer can come back faster."""
    while (now := int(time.time() * 1000)) <= _LAST_MS[0]:
        time.sleep(0.0002)
    _LAST_MS[0] = now
    return now


@dataclass
class Answer:
    status: int
    body: dict  # type: ignore[type-arg]
    raw: bytes


def call(base_url: str, method: str, path: str, query: str = "", body: str = "",
         headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request to keyproxy with http.client (nothing between us and the socket)."""
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = dict(headers or {})
    if body:
        h.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn.request(method, u.path + path + (f"?{query}" if query else ""), body=body.encode() or None, headers=h)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    return Answer(resp.status, doc if isinstance(doc, dict) else {"list": doc}, raw)


def binance_limit_buy(creds: dict, quantity: str, price: int) -> int:  # type: ignore[type-arg]
    """One signed Binance resting limit buy of BTCUSDT through keyproxy with a bot's virtual key: the status."""
    query = hmac_sign(creds["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity={quantity}"
                      f"&price={price}&timestamp={now_ms()}")
    headers = {"X-MBX-APIKEY": creds["api_key"]}
    return call(creds["base_url"], "POST", "/api/v3/order", body=query, headers=headers).status


def all_output(dev: DevStack) -> str:
    """Every log the stack wrote, for secret searches."""
    return "".join(p.read_text(errors="replace") for p in Path(dev.logs).glob("*"))


def account_call(creds: dict, secret: str | None = None, source: str = "127.0.0.1") -> tuple[int, dict]:  # type: ignore[type-arg]
    """A signed Binance account read from `source` (a loopback address), for tests of who may call."""
    u = urllib.parse.urlsplit(creds["base_url"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(source, 0))
    conn.request("GET", u.path + "/api/v3/account?" + hmac_sign(secret or creds["secret"], f"timestamp={now_ms()}"),
                 headers={"X-MBX-APIKEY": creds["api_key"]})
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, body


def cancel_orders_of(dev: DevStack, *bots: str) -> None:
    """Tidy up as the operator: each bot's resting orders cancelled by keyproxy's own sweep (a bot may cancel only
    its own orders, so no other bot of the account can do it), the bot resumed after."""
    for name in bots:
        dev.cli("halt", "--bot", name, "--cancel-orders", "--reason", "test tidy-up")
        dev.cli("resume", "--bot", name)


def cancel_own_orders(ex: object, symbol: str) -> None:
    """A ccxt client's own resting orders on `symbol` cancelled one by one (the account's open-orders answer also
    lists other bots' orders, which keyproxy refuses it to cancel)."""
    import ccxt

    for order in ex.fetch_open_orders(symbol):  # type: ignore[attr-defined]
        try:
            ex.cancel_order(order["id"], symbol)  # type: ignore[attr-defined]
        except ccxt.BaseError as e:
            if "policy_denied" not in str(e):
                raise


def restart_with_fault(dev: DevStack, sitecustomize: str, where: Path) -> None:
    """The stack's daemon stopped and started again (same port) with `sitecustomize` on its path for that run only:
    a fault injected into the daemon (a crash tests' kill at an exact point); nothing of keyproxy's is replaced."""
    import os

    port = urllib.parse.urlsplit(dev.proxy_url).port
    dev.stop_daemon()
    where.mkdir(parents=True, exist_ok=True)
    (where / "sitecustomize.py").write_text(sitecustomize)
    plain = dev.env["PYTHONPATH"]
    dev.env["PYTHONPATH"] = os.pathsep.join([plain, str(where)])
    try:
        dev.start_daemon(port)
    finally:
        dev.env["PYTHONPATH"] = plain
