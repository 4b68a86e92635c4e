"""The concurrency part of the hostile battery: 32 bots trading while keys rotate, bots are revoked
and rotated, and the config reloads (tests/e2e/test_hostile.py at CI size, bench/hostile.py at full size).

Every request carries a tag (its `newClientOrderId`, or the `origClientOrderId` it asks about), so each
answer the bots saw can be matched with what the exchange emulator received and which real key signed
it. Every admin change is timed by the moment its command returned (acknowledged): a request sent after
that moment must see the change, one sent before it started must not, and one sent in between may see
either. The checks are those of issue 10: nothing signed with a revoked or rotated-out bot credential
reaches the exchange, nothing is signed with a key superseded before the request was sent, no order over
a limit that a reload set (or past the kill switch) gets through, and no 5xx answer at all.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from keyproxy.emulator.devstack import DevStack, RealKey, new_real_key
from tests.e2e.conftest import hmac_sign

PINNED_LIMIT = 100  # max_order_notional a reload sets for the pinned bots; every order is 0.01 x 20000 = 200
REFUSED_CREDENTIAL = {"unknown_bot", "expired_credential"}


@dataclass
class Sent:
    """One request a bot sent, and what it got back."""

    bot: str
    credential: str  # the virtual API key it was signed with
    method: str
    tag: str
    sent: float  # time.monotonic() just before the request was written
    status: int = 0
    error: str | None = None


@dataclass
class Change:
    """An admin change, from the moment its command started to the moment it returned."""

    op: str
    subject: str
    started: float
    acked: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConcurrencyResult:
    requests: int = 0
    reached_exchange: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    admin_ops: dict[str, int] = field(default_factory=dict)
    dead_credential_tried: int = 0   # requests sent with a credential already revoked or rotated out
    dead_credential_through: list[str] = field(default_factory=list)
    superseded_key_used: list[str] = field(default_factory=list)
    over_limit_through: list[str] = field(default_factory=list)
    limit_not_lifted: list[str] = field(default_factory=list)
    failed_active: list[str] = field(default_factory=list)  # a live bot's request that failed for no reason
    server_errors: list[str] = field(default_factory=list)
    forwarded_twice: list[str] = field(default_factory=list)
    unverified_signatures: int = 0
    tracebacks: int = 0
    daemon_alive: bool = True

    @property
    def violations(self) -> list[str]:
        return (self.dead_credential_through + self.superseded_key_used + self.over_limit_through
                + self.limit_not_lifted + self.failed_active + self.server_errors + self.forwarded_twice)


class _Bot(threading.Thread):
    """A trading bot: a limit IOC order (expires unfilled: no balance moves), then a query of it."""

    def __init__(self, name: str, account: str, creds: dict[str, Any], stop: threading.Event) -> None:
        super().__init__(name=f"bot-{name}", daemon=True)
        self.bot, self.account, self.creds, self.stop = name, account, creds, stop
        self.lock = threading.Lock()
        self.dead: list[dict[str, Any]] = []  # credentials to try once more after their death was acknowledged
        self.revoked = False
        self.sent: list[Sent] = []
        self._conn: http.client.HTTPConnection | None = None
        self._seq = 0

    def replace(self, new: dict[str, Any] | None) -> None:
        """Called by the admin after `bot rotate` (new credential) or `bot revoke` (None) returned."""
        with self.lock:
            self.dead.append(self.creds)
            if new is None:
                self.revoked = True
            else:
                self.creds = new

    def run(self) -> None:
        while True:
            stopping = self.stop.is_set()  # read first: every change made before the stop is flushed below
            with self.lock:
                dead, self.dead = self.dead, []
                creds, revoked = self.creds, self.revoked
            for old in dead:  # a bot that did not hear of the change, on a kept-alive connection
                self._order(old)
            if revoked or stopping:
                break
            order = self._order(creds)
            if order.status == 200:
                self._query(creds, order.tag)
        if self._conn:
            self._conn.close()

    def _order(self, creds: dict[str, Any]) -> Sent:
        self._seq += 1
        tag = f"{self.bot}o{self._seq}"
        body = hmac_sign(creds["secret"], "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.01"
                                          f"&price=20000&newClientOrderId={tag}&timestamp={time.time_ns() // 1000}")
        return self._send(creds, "POST", "/api/v3/order", "", body, tag)

    def _query(self, creds: dict[str, Any], tag: str) -> None:
        query = hmac_sign(creds["secret"], f"symbol=BTCUSDT&origClientOrderId={tag}&timestamp={time.time_ns() // 1000}")
        self._send(creds, "GET", "/api/v3/order", query, "", tag)

    def _send(self, creds: dict[str, Any], method: str, path: str, query: str, body: str, tag: str) -> Sent:
        u = urllib.parse.urlsplit(creds["base_url"])
        record = Sent(self.bot, creds["api_key"], method, tag, time.monotonic())
        self.sent.append(record)
        headers = {"X-MBX-APIKEY": creds["api_key"]}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            try:
                record.sent = time.monotonic()
                self._conn.request(method, u.path + path + (f"?{query}" if query else ""),
                                   body=body.encode() or None, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed a kept-alive connection between requests: reconnect once, as SDKs do
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    record.error = "connection_lost"
                    return record
                continue
            record.status = resp.status
            if resp.status != 200:
                try:
                    record.error = json.loads(raw).get("error")
                except ValueError:
                    record.error = "not_json"
            if resp.getheader("Connection", "").lower() == "close":
                self._conn.close()
                self._conn = None
            return record
        return record


def _set_pinned(dev: DevStack, bots: list[str], limited: bool) -> None:
    config = dev.root / "keyproxy.toml"
    base = config.read_text().split("\n# --- battery ---\n")[0]
    tables = "".join(f"[bots.{b}]\nmax_order_notional = {PINNED_LIMIT}\n" for b in bots) if limited else ""
    staged = config.with_suffix(".staged")  # replaced whole: a SIGHUP never reads a half-written file
    staged.write_text(base + "\n# --- battery ---\n" + tables)
    os.replace(staged, config)


def start_stack(dev: DevStack, spares: int) -> dict[str, list[RealKey]]:
    """Two accounts, each with its active key and `spares` more registered at the exchange for rotations
    (the keys of one account see its orders, as at Binance); the daemon running."""
    accounts = {a: [new_real_key() for _ in range(1 + spares)] for a in ("alpha", "beta")}
    for account, keys in accounts.items():
        for key in keys:
            key.emulated["account"] = account
    dev.start_emulator([k for keys in accounts.values() for k in keys])
    dev.init()
    for name, keys in accounts.items():
        dev.add_account(name, keys[0])
    dev.start_daemon()
    return accounts


def concurrency(dev: DevStack, accounts: dict[str, list[RealKey]], bots: int = 32, seconds: float = 15.0,
                seed: int = 5) -> ConcurrencyResult:
    """Run `bots` bots over `accounts` (name -> [active key, spare keys for rotations...]) for `seconds`
    while an admin rotates keys, retires old versions, revokes, rotates and adds bots, halts and resumes
    an account, and reloads a config that pins a notional limit on some bots on and off; then check
    every request."""
    r = random.Random(seed)
    names = list(accounts)
    stop = threading.Event()
    fleet: dict[str, _Bot] = {}

    def launch(name: str) -> _Bot:
        account = names[len(fleet) % len(names)]
        bot = _Bot(name, account, dev.add_bot(name, account, "read,trade"), stop)
        fleet[name] = bot
        bot.start()
        return bot

    pinned = [f"c{i}" for i in range(0, bots, 8)]
    _set_pinned(dev, pinned, False)
    dev.cli("reload")
    for i in range(bots):
        launch(f"c{i}")
    spare = {a: list(keys[1:]) for a, keys in accounts.items()}
    # the key each account signs with, and when a change to the next one was started and acknowledged
    key_history: dict[str, list[tuple[str, float, float]]] = {
        a: [(keys[0].credentials["api_key"], 0.0, 0.0)] for a, keys in accounts.items()}
    changes: list[Change] = []
    limited = False
    ends = time.monotonic() + seconds
    ops = ["key_rotate", "bot_revoke", "reload", "bot_rotate", "halt", "key_retire", "reload", "bot_add", "sighup",
           "resume"]
    halted: str | None = None
    step = 0
    while time.monotonic() < ends or step < len(ops):  # every kind of change at least once, however slow
        op = ops[step % len(ops)]
        step += 1
        live = [b for b in fleet.values() if not b.revoked and b.bot not in pinned]
        started = time.monotonic()
        if op == "key_rotate":
            candidates = [a for a in names if spare[a]]
            if not candidates:
                continue
            account = r.choice(candidates)
            key = spare[account].pop(0)
            dev.cli("key", "rotate", account, input=json.dumps(key.credentials))
            key_history[account].append((key.credentials["api_key"], started, time.monotonic()))
            changes.append(Change(op, account, started, time.monotonic()))
        elif op == "key_retire":
            account = r.choice(names)
            dev.cli("key", "retire", account, check=False)  # "no previous version" is fine
            changes.append(Change(op, account, started, time.monotonic()))
        elif op == "bot_revoke" and len(live) > bots // 2:
            victim = r.choice(live)
            dev.cli("bot", "revoke", victim.bot)
            changes.append(Change(op, victim.bot, started, time.monotonic(), {"credential": victim.creds["api_key"]}))
            victim.replace(None)
        elif op == "bot_rotate" and live:
            victim = r.choice(live)
            new = json.loads(dev.cli("bot", "rotate", victim.bot, "--grace", "0").stdout)
            new.setdefault("base_url", victim.creds["base_url"])
            changes.append(Change(op, victim.bot, started, time.monotonic(), {"credential": victim.creds["api_key"]}))
            victim.replace(new)
        elif op == "reload":
            limited = not limited
            _set_pinned(dev, pinned, limited)
            dev.cli("reload")
            changes.append(Change(op, "limited" if limited else "free", started, time.monotonic()))
        elif op == "bot_add":
            launch(f"c{len(fleet)}")
            changes.append(Change(op, f"c{len(fleet) - 1}", started, time.monotonic()))
        elif op == "halt":
            halted = r.choice(names)  # the kill switch for one account: its orders stop, reads go on
            dev.cli("halt", "--account", halted, "--reason", "battery")
            changes.append(Change(op, halted, started, time.monotonic()))
        elif op == "resume" and halted:
            dev.cli("resume", "--account", halted)
            changes.append(Change(op, halted, started, time.monotonic()))
            halted = None
        elif op == "sighup":
            dev.daemon().send_signal(signal.SIGHUP)  # the same file again: nothing may change
            changes.append(Change(op, "same file", started, time.monotonic()))
        time.sleep(r.uniform(0.1, 0.4))
    stop.set()
    for bot in fleet.values():
        bot.join(60)
    return _check(dev, fleet, pinned, key_history, changes)


def _journal_by_tag(dev: DevStack) -> dict[tuple[str, str], list[dict[str, Any]]]:
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in dev.journal():
        if e["path"] != "/api/v3/order":
            continue
        params = urllib.parse.parse_qs(e["body"] if e["method"] == "POST" else e["query"])
        tag = (params.get("newClientOrderId") or params.get("origClientOrderId") or [""])[0]
        seen.setdefault((e["method"], tag), []).append(e)
    return seen


def _check(dev: DevStack, fleet: dict[str, _Bot], pinned: list[str],
           key_history: dict[str, list[tuple[str, float, float]]], changes: list[Change]) -> ConcurrencyResult:
    out = ConcurrencyResult()
    out.admin_ops = dict(Counter(c.op for c in changes))
    journal = _journal_by_tag(dev)
    out.reached_exchange = sum(len(v) for v in journal.values())
    out.unverified_signatures = sum(1 for v in journal.values() for e in v if not e["signature_verified"])
    # when each bot credential died (its revoke/rotate command started, and returned)
    death = {c.detail["credential"]: (c.started, c.acked) for c in changes if c.op in ("bot_revoke", "bot_rotate")}
    reloads = [c for c in changes if c.op == "reload"]
    halts = [c for c in changes if c.op in ("halt", "resume")]
    statuses: Counter[str] = Counter()
    for bot in fleet.values():
        for s in bot.sent:
            out.requests += 1
            statuses[f"{s.status} {s.error}" if s.error else str(s.status)] += 1
            what = f"{s.method} {s.tag} by {s.bot}: {s.status} {s.error}"
            arrived = journal.get((s.method, s.tag), [])
            if len(arrived) > 1:
                out.forwarded_twice.append(what)
            if s.status >= 500 or s.error == "connection_lost":
                out.server_errors.append(what)
            died = death.get(s.credential)
            if died and s.sent > died[1]:
                out.dead_credential_tried += 1
                if arrived or s.error not in REFUSED_CREDENTIAL:
                    out.dead_credential_through.append(what)
                continue
            for e in arrived:  # signed with a key superseded before the request was sent?
                history = key_history[bot.account]
                allowed = {k for i, (k, _, _) in enumerate(history)
                           if i + 1 >= len(history) or history[i + 1][2] > s.sent}
                if e["api_key"] not in allowed:
                    out.superseded_key_used.append(f"{what} signed with {e['api_key'][:8]}...")
            if died and s.sent >= died[0]:
                continue  # sent while its credential was being revoked or rotated: either answer is right
            halt = _halt_state(halts, bot.account, s.sent) if s.method == "POST" else "free"
            if halt == "halted":
                if arrived or s.error != "halted":
                    out.over_limit_through.append(what)
                continue
            state = _limit_state(reloads, s.sent) if bot.bot in pinned and s.method == "POST" else "free"
            if state == "limited":  # the kill switch is checked first: during a halt's change either code
                if arrived or s.error not in ("notional_exceeded", "halted" if halt == "either" else "-"):
                    out.over_limit_through.append(what)
            elif state == "free" and halt == "free":
                if s.status != 200 or not arrived:
                    (out.limit_not_lifted if s.error in ("notional_exceeded", "halted") else out.failed_active
                     ).append(what)
    out.statuses = dict(sorted(statuses.items()))
    log = dev.daemon_log()
    out.tracebacks = log.count("Traceback")
    out.daemon_alive = dev.daemon().poll() is None
    return out


def _limit_state(reloads: list[Change], sent: float) -> str:
    """'limited' or 'free' if the last reload acknowledged before `sent` decides it, else 'either'."""
    state = "free"
    for c in reloads:
        if c.acked <= sent:
            state = c.subject
        elif c.started <= sent:
            return "either"
    return state


def _halt_state(halts: list[Change], account: str, sent: float) -> str:
    """'halted' or 'free' for `account`'s orders sent at `sent`, or 'either' while a halt/resume was under way."""
    state = "free"
    for c in halts:
        if c.subject != account:
            continue
        if c.acked <= sent:
            state = "halted" if c.op == "halt" else "free"
        elif c.started <= sent:
            return "either"
    return state
