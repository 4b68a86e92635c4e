"""Two keyproxy daemons sharing a real redis-server ([shared_state]): what an operator changes on one is in force
on the other before the command returns, and Redis never holds a secret."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import ccxt
import pytest

from keyproxy.devstack import HANDLED_SECRETS, DevStack, new_real_key, point_ccxt_at
from tests.redis_server import RedisServer


@dataclass
class Fleet:
    redis: RedisServer
    a: DevStack
    b: DevStack


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    server = RedisServer(root / "redis").start()
    a = DevStack(root / "a", extra_config=server.config() + 'instance = "host-a"\n')
    b = DevStack(root / "b", extra_config=server.config() + 'instance = "host-b"\n')
    key = new_real_key()
    try:
        a.start_emulator([key])
        a.init()
        a.add_account("main", key)
        # the second host starts from a copy of the same vault (as deploy/README.md says), then follows the fleet
        (b.root / "state").mkdir(mode=0o700)
        shutil.copy2(a.root / "state" / "vault.db", b.root / "state" / "vault.db")
        b.emulator_url = a.emulator_url
        a.start_daemon()
        b.start_daemon()
        yield Fleet(server, a, b)
    finally:
        a.close()
        b.close()
        server.stop()


def client(creds: dict, base_url: str) -> ccxt.binance:  # type: ignore[type-arg]
    ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"],
                                     "options": {"defaultType": "spot"}}), base_url)
    ex.load_markets()
    return ex


def on(dev: DevStack) -> str:
    assert dev.proxy_url
    return dev.proxy_url + "/main"


def refused(call, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ccxt.BaseError) as e:
        call()
    assert f'"error": "{code}"' in str(e.value), str(e.value)


def test_a_bot_added_on_one_instance_works_on_the_other_at_once(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("everywhere", "main", "read,trade")
    started = time.monotonic()
    balance = client(creds, on(fleet.b)).fetch_balance()  # the first request to B, right after `bot add` on A
    assert balance["total"]["USDT"] > 0
    assert time.monotonic() - started < 30
    assert client(creds, on(fleet.a)).fetch_balance()["total"]["USDT"] > 0


def test_a_bot_revoked_on_one_instance_is_refused_by_the_other_on_its_next_request(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("revoked-soon", "main", "read,trade")
    on_b = client(creds, on(fleet.b))
    on_b.fetch_balance()
    fleet.a.cli("bot", "revoke", "revoked-soon")
    start = len(fleet.a.journal())
    refused(on_b.fetch_balance, "unknown_bot")
    assert [e for e in fleet.a.journal()[start:] if "exchangeInfo" not in e["path"]] == []


def test_a_halt_on_one_instance_stops_orders_on_the_other_and_a_resume_lifts_it(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("halted-everywhere", "main", "read,trade")
    on_a = client(creds, on(fleet.a))
    order = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    assert "halted account main" in fleet.b.cli("halt", "--account", "main", "--reason", "fleet drill").stdout
    refused(lambda: on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "halted")
    assert on_a.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"  # cancels pass
    status = json.loads(fleet.a.cli("status", "--json").stdout)
    assert [h["reason"] for h in status["halts"]] == ["fleet drill"]
    fleet.a.cli("resume", "--account", "main")
    on_b = client(creds, on(fleet.b))
    on_b.cancel_order(on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"], "BTC/USDT")


def test_a_restarted_instance_serves_the_changes_it_missed(fleet: Fleet) -> None:
    fleet.b.stop_daemon()
    creds = fleet.a.add_bot("added-while-b-was-down", "main", "read")
    fleet.b.start_daemon()
    assert client(creds, on(fleet.b)).fetch_balance()["total"]["USDT"] > 0


def test_redis_holds_no_secret_and_no_virtual_secret(fleet: Fleet) -> None:
    fleet.a.add_bot("scanned", "main", "read,trade")
    dump = fleet.redis.dump()
    assert b"vault" in dump and b"SQLite format 3" in dump  # the sealed vault image is there
    leaks = [s[:6] for s in HANDLED_SECRETS if s.encode() in dump]
    assert leaks == []
    assert fleet.redis.password.encode() not in dump


def test_a_password_in_the_url_is_refused(fleet: Fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = DevStack(tmp_path / "bad", extra_config='\n[shared_state]\nurl = "redis://:hunter2@127.0.0.1:1/0"\n')
    proc = dev.cli("config", "check", check=False)
    assert proc.returncode != 0
    assert "must not carry a password" in proc.stderr and "hunter2" not in proc.stderr
