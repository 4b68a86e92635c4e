"""Two keyproxy daemons sharing a real redis-server ([shared_state]): what an operator changes on one is in force
on the other before the command returns, and Redis never holds a secret."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path
from collections.abc import Iterator
from dataclasses import dataclass

import ccxt
import pytest

from keyproxy.emulator.devstack import HANDLED_SECRETS, DevStack, RealKey, new_real_key, point_ccxt_at
from tests.e2e.conftest import call, cancel_orders_of, hmac_sign, now_ms
from tests.redis_server import RedisServer


@dataclass
class Fleet:
    redis: RedisServer
    a: DevStack
    b: DevStack


def start_two(a: DevStack, b: DevStack, account: str, key: RealKey) -> None:
    """An emulator, a vault with `account` on `key`, and two daemons on copies of that vault."""
    a.start_emulator([key])
    a.init()
    a.add_account(account, key)
    # the second host starts from a copy of the same vault (as deploy/README.md says), then follows the fleet
    (b.root / "state").mkdir(mode=0o700)
    shutil.copy2(a.root / "state" / "vault.db", b.root / "state" / "vault.db")
    b.emulator_url = a.emulator_url
    a.start_daemon()
    b.start_daemon()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    server = RedisServer(root / "redis").start()
    a = DevStack(root / "a", extra_config=server.config() + 'instance = "host-a"\n')
    b = DevStack(root / "b", extra_config=server.config() + 'instance = "host-b"\n')
    try:
        start_two(a, b, "main", new_real_key())
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


def test_an_order_rate_holds_across_the_fleet_not_per_instance(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("sixty", "main", "read,trade", "--set", "orders_per_minute=6")
    both = [client(creds, on(fleet.a)), client(creds, on(fleet.b))]
    placed, refusals = [], []
    for i in range(10):
        try:
            placed.append(both[i % 2].create_order("BTC/USDT", "limit", "buy", 0.001, 20000))
        except ccxt.BaseError as e:
            refusals.append(str(e))
    assert len(placed) == 6, refusals  # 6 in all, not 6 on each
    assert all('"error": "rate_limited"' in r and "across the fleet" in r for r in refusals)
    for o in placed:
        both[0].cancel_order(o["id"], "BTC/USDT")  # cancels have their own budget


def test_a_daily_notional_cap_adds_up_across_the_fleet(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("capped", "main", "read,trade", "--set", "daily_notional_cap=50")
    on_a, on_b = client(creds, on(fleet.a)), client(creds, on(fleet.b))
    first = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)  # 20 USDT
    second = on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)  # 40
    refused(lambda: on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "daily_notional_exceeded")
    for o in (first, second):
        on_a.cancel_order(o["id"], "BTC/USDT")


def test_an_open_order_cap_counts_the_orders_every_instance_saw_confirmed(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("two-open", "main", "read,trade", "--set", "max_open_orders=2")
    on_a, on_b = client(creds, on(fleet.a)), client(creds, on(fleet.b))
    first = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    second = on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    time.sleep(0.3)  # each instance's answer reaches the fleet's count
    refused(lambda: on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "open_orders_exceeded")
    on_b.cancel_order(first["id"], "BTC/USDT")  # placed through A, cancelled through B
    time.sleep(0.3)
    third = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    for o in (second, third):
        on_a.cancel_order(o["id"], "BTC/USDT")


def fire_at_both(fleet: Fleet, creds: dict, quantity: str, first: int, count: int = 16) -> list[int]:  # type: ignore[type-arg]
    """`count` resting limit buys signed with `creds`, fired at once, alternately through A and B: statuses."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.conftest import binance_limit_buy

    def buy(i: int) -> int:
        return binance_limit_buy({**creds, "base_url": on(fleet.a if i % 2 else fleet.b)}, quantity, 20000 + i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(buy, range(first, first + count)))


def orders_since(fleet: Fleet, start: int) -> int:
    """Orders that reached the exchange since journal entry `start`."""
    return len([e for e in fleet.a.journal()[start:] if e.get("path") == "/api/v3/order" and e.get("method") == "POST"])


def cancel_open_orders(fleet: Fleet, name: str) -> None:
    """The bot's resting orders cancelled by the operator's sweep (no other bot may cancel them)."""
    cancel_orders_of(fleet.a, name)


def test_orders_fired_at_both_instances_at_once_cannot_all_pass_the_open_order_cap(fleet: Fleet) -> None:
    """A compromised bot firing sixteen orders at once, half through each instance: each order holds its place
    fleet-wide from the gate's check until its answer is read, so at most two of them reach the exchange."""
    creds = fleet.a.add_bot("burst-two", "main", "read,trade", "--set", "max_open_orders=2")
    start = len(fleet.a.journal())
    statuses = fire_at_both(fleet, creds, "0.001", 0)
    assert statuses.count(200) == orders_since(fleet, start) <= 2 and statuses.count(403) >= 14, statuses
    cancel_open_orders(fleet, "burst-two")


def test_a_bot_cannot_cancel_another_bots_order_placed_through_the_other_instance(fleet: Fleet) -> None:
    """The own-orders check reads the fleet's attribution record where this instance's has no entry: an order
    placed through A by one bot cannot be cancelled through B by another, by client id (which only the record
    knows) or by the exchange's id; its owner cancels it through B."""
    owner_creds = fleet.a.add_bot("fleet-cx-owner", "main", "read,trade")
    other = client(fleet.a.add_bot("fleet-cx-other", "main", "read,trade"), on(fleet.b))
    owner = client(owner_creds, on(fleet.a))
    placed = owner.create_order("BTC/USDT", "limit", "buy", 0.001, 20000, {"newClientOrderId": "fleet-cx-1"})
    time.sleep(1.0)  # A's record reaches Redis from its write-behind queue within milliseconds
    refused(lambda: other.cancel_order(None, "BTC/USDT", {"origClientOrderId": "fleet-cx-1"}), "policy_denied")
    refused(lambda: other.cancel_order(placed["id"], "BTC/USDT"), "policy_denied")
    client(owner_creds, on(fleet.b)).cancel_order(placed["id"], "BTC/USDT")


def test_positions_and_resting_orders_learned_on_one_instance_count_on_the_other(fleet: Fleet) -> None:
    """The positions book is the fleet's (fleet/book.py): a bot's fill through A counts against its
    max_position on B, and another bot's resting bid placed through A refuses a crossing sell sent to B."""
    from tests.e2e.test_risk_positions import eventually, series

    maker_creds = fleet.a.add_bot("maker-a", "main", "read,trade")
    bid = client(maker_creds, on(fleet.a)).create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    creds = fleet.a.add_bot("sized-fleet", "main", "read,trade", "--set", "max_position=0.01")
    on_a, on_b = client(creds, on(fleet.a)), client(creds, on(fleet.b))
    on_a.create_order("BTC/USDT", "market", "buy", 0.008)  # filled at once, learned by A from its answer
    assert eventually(lambda: series(fleet.b, "keyproxy_bot_position", bot="sized-fleet",
                                     scope="spot:BTCUSDT") == 0.008, timeout=5)  # B holds it too
    start = len(fleet.a.journal())
    refused(lambda: on_b.create_order("BTC/USDT", "limit", "buy", 0.003, 20000), "position_exceeded")
    taker = client(fleet.a.add_bot("taker-b", "main", "read,trade"), on(fleet.b))
    refused(lambda: taker.create_order("BTC/USDT", "limit", "sell", 0.001, 19000), "self_cross")
    # no order reached the exchange (keyproxy's own reads of an order by id, GET, may: the reconciliation's)
    assert [e for e in fleet.a.journal()[start:] if e["path"] == "/api/v3/order" and e["method"] == "POST"] == []
    client(maker_creds, on(fleet.b)).cancel_order(bid["id"], "BTC/USDT")  # B learns the cancel itself
    on_b.create_order("BTC/USDT", "market", "sell", 0.008)  # reducing passes, on either
    assert eventually(lambda: series(fleet.a, "keyproxy_bot_position", bot="sized-fleet",
                                     scope="spot:BTCUSDT") == 0.0, timeout=5)  # and A learns it from B


def test_an_amend_through_one_instance_of_an_order_placed_through_the_other_meets_the_cap(fleet: Fleet) -> None:
    """A futures order placed through A and amended (ccxt's edit_order) through B: B holds A's order from the
    fleet's book (catching its book up first when A's entry has not arrived yet), so an amend that fits passes
    there at once and one past max_position is refused; A then measures a new buy against the amended size (B's
    amend reached A's book)."""
    from tests.e2e.test_risk_positions import eventually

    creds = fleet.a.add_bot("amend-fleet", "main", "read,trade", "--set", "max_position=0.1")

    def futures(base_url: str) -> ccxt.binance:
        ex = point_ccxt_at(ccxt.binance({"apiKey": creds["api_key"], "secret": creds["secret"]}), base_url)
        ex.load_markets()
        return ex
    on_a, on_b = futures(on(fleet.a)), futures(on(fleet.b))
    placed = on_a.create_order("BTC/USDT:USDT", "limit", "buy", 0.005, 20000)
    # at once: B may not hold A's entry yet, and catches its book up before deciding (it refused a capped bot's
    # amend of an order it did not hold before, until the entry arrived)
    assert on_b.edit_order(placed["id"], "BTC/USDT:USDT", "limit", "buy", 0.08, 20000)["amount"] == 0.08
    refused(lambda: on_b.edit_order(placed["id"], "BTC/USDT:USDT", "limit", "buy", 1, 20000), "position_exceeded")

    def refused_on_a() -> bool:  # 0.08 resting + 0.03 > 0.1, once A applied B's amend
        try:
            probe = on_a.create_order("BTC/USDT:USDT", "limit", "buy", 0.03, 20000)
        except ccxt.InvalidOrder as e:
            return "position_exceeded" in str(e)
        on_a.cancel_order(probe["id"], "BTC/USDT:USDT")  # A had not applied it yet: try again
        return False
    assert eventually(refused_on_a, timeout=5)
    on_a.cancel_all_orders("BTC/USDT:USDT")


def test_buys_fired_at_both_instances_at_once_cannot_all_pass_the_position_cap(fleet: Fleet) -> None:
    """max_position = 0.01 and sixteen resting buys of 0.003 fired at once, half through each instance: each
    leg's size is reserved by the gate from its check until its answer is read, and counted in every instance's
    book from then on, so at most three reach the exchange (0.009), not six (three per instance) or sixteen.
    Repeated: the second round finds the first round's three resting and lets nothing through."""
    creds = fleet.a.add_bot("sized-burst", "main", "read,trade", "--set", "max_position=0.01")
    start = len(fleet.a.journal())
    statuses = fire_at_both(fleet, creds, "0.003", 0)
    again = fire_at_both(fleet, creds, "0.003", 16)
    assert statuses.count(200) <= 3 and statuses.count(403) >= 13, statuses
    assert statuses.count(200) + again.count(200) == orders_since(fleet, start) <= 3, (statuses, again)
    cancel_open_orders(fleet, "sized-burst")


async def test_an_order_refused_after_the_gate_gives_its_place_back_at_once(fleet: Fleet) -> None:
    """An order frame on a bot's 17th socket is refused (16 sockets per bot) after the gate reserved its place
    among the bot's orders on their way: the place goes back with the refusal, so the bot's next order still
    fits `max_open_orders = 1` (before, the reservation held the slot for its 60 s)."""
    import aiohttp

    from tests.e2e.test_websocket_binance import ORDER, signed

    creds = fleet.a.add_bot("ws-one-slot", "main", "read,trade", "--set", "max_open_orders=1")
    url = on(fleet.a).replace("http://", "ws://") + "/ws-api/v3"
    async with aiohttp.ClientSession() as s:
        sockets = [await s.ws_connect(url) for _ in range(17)]
        try:
            # a light signed read (weight 6; account.status weighs 20), of a symbol no other test of the module rests
            # orders on: a listing of the account's orders sets the bot's count to what it shows, and orders other
            # tests left resting on BTCUSDT would fill the bot's one place
            for n, ws in enumerate(sockets[:16]):
                await ws.send_str(json.dumps(signed(creds, "openOrders.status",
                                                    {"symbol": "LTCBTC", "recvWindow": 5000 + n}, n)))
                assert json.loads((await ws.receive(timeout=10)).data)["status"] == 200
            await sockets[16].send_str(json.dumps(signed(creds, "order.place", ORDER, "over")))
            over = json.loads((await sockets[16].receive(timeout=10)).data)
            assert over.get("keyproxy_error") == "rate_limited", over
            # the release is queued with the instance's other writes to Redis: within milliseconds, a few seconds
            # on a loaded machine (the reservation it frees would hold the place for 60 s)
            for attempt in range(50):
                await asyncio.sleep(0.1)
                frame = signed(creds, "order.place", {**ORDER, "recvWindow": 6000 + attempt}, f"ok{attempt}")
                await sockets[0].send_str(json.dumps(frame))
                placed = json.loads((await sockets[0].receive(timeout=10)).data)
                if placed.get("keyproxy_error") != "open_orders_exceeded":
                    break
            assert placed["status"] == 200, placed
            cancel = {"symbol": "BTCUSDT", "orderId": placed["result"]["orderId"]}
            await sockets[0].send_str(json.dumps(signed(creds, "order.cancel", cancel, "tidy")))
            assert json.loads((await sockets[0].receive(timeout=10)).data)["status"] == 200
        finally:
            for ws in sockets:
                await ws.close()


def test_a_signed_request_sent_to_one_instance_cannot_be_replayed_to_the_other(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("replayed", "main", "read,trade")
    query = hmac_sign(creds["secret"], f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001"
                      f"&price=20000&timestamp={now_ms()}")
    headers = {"X-MBX-APIKEY": creds["api_key"]}
    first = call(on(fleet.a), "POST", "/api/v3/order", body=query, headers=headers)
    assert first.status == 200, first.body
    again = call(on(fleet.b), "POST", "/api/v3/order", body=query, headers=headers)
    assert (again.status, again.body.get("error")) == (401, "replayed_request"), again.body
    client(creds, on(fleet.a)).cancel_order(str(first.body["orderId"]), "BTC/USDT")


def test_a_change_whose_notice_was_lost_is_still_in_force_on_the_next_request(fleet: Fleet) -> None:
    """An instance that never got the stream notice is behind the fleet's version: the gate says so, the
    instance catches up, and the request is decided on the newer state."""
    creds = fleet.a.add_bot("unnoticed", "main", "read,trade")
    on_b = client(creds, on(fleet.b))
    on_b.cancel_order(on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"], "BTC/USDT")
    from keyproxy.config import SharedStateSettings
    from keyproxy.fleet.store import FleetStore
    from keyproxy.vault import Vault
    from tests.vault.helpers import passphrase_source

    with Vault.open(fleet.a.root / "state" / "vault.db", lambda kind: passphrase_source("devstack passphrase")) as v:
        store = FleetStore(SharedStateSettings(fleet.redis.url, fleet.redis.root / "password"), v.vault_id,
                           v.fleet_key())
    # a halt written as an instance writes one, but its notice never reaches the stream
    store._edit_control(lambda c: c["halts"].append(["bot", "unnoticed", "lost notice", time.time()]), notify=False)
    refused(lambda: on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "halted")
    fleet.b.cli("resume", "--bot", "unnoticed")


def test_an_order_decided_again_on_newer_state_is_not_its_own_duplicate(fleet: Fleet) -> None:
    """`duplicate_orders = 1`: the first decision remembers the order's shape; when the gate finds the
    instance behind and the request is decided again, that shape is taken back first, or the order would
    be refused as a repeat of itself."""
    creds = fleet.a.add_bot("decided-twice", "main", "read,trade", "--set", "duplicate_orders=1")
    on_b = client(creds, on(fleet.b))
    on_b.fetch_balance()
    from keyproxy.config import SharedStateSettings
    from keyproxy.fleet.store import FleetStore
    from keyproxy.vault import Vault
    from tests.vault.helpers import passphrase_source

    with Vault.open(fleet.a.root / "state" / "vault.db", lambda kind: passphrase_source("devstack passphrase")) as v:
        store = FleetStore(SharedStateSettings(fleet.redis.url, fleet.redis.root / "password"), v.vault_id,
                           v.fleet_key())
    # a change that does not concern this bot, whose notice never reaches B: B's next request is decided twice
    store._edit_control(lambda c: c["halts"].append(["bot", "someone-else", "lost notice", time.time()]),
                        notify=False)
    placed = on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    on_b.cancel_order(placed["id"], "BTC/USDT")
    refused(lambda: on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "duplicate_order")  # a repeat still is
    fleet.b.cli("resume", "--bot", "someone-else")


def test_the_same_order_through_either_instance_is_one_repeat(fleet: Fleet) -> None:
    """duplicate_orders counts the bot's orders across the fleet: the same order placed through A and then
    through B is a repeat (before, each instance counted its own)."""
    creds = fleet.a.add_bot("repeater", "main", "read,trade", "--set", "duplicate_orders=1")
    on_a, on_b = client(creds, on(fleet.a)), client(creds, on(fleet.b))
    first = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    refused(lambda: on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "duplicate_order")
    other = on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20001)  # another order is its own
    for placed in (first, other):
        on_a.cancel_order(placed["id"], "BTC/USDT")


def test_a_bot_heartbeating_through_one_instance_is_not_silent_to_the_other(fleet: Fleet) -> None:
    """heartbeat_seconds: the bot sends only to A; B must not take it for silent and cancel its orders. B hears of
    A's requests through the instances' heartbeats (each second, so a second or two late: 5 s leaves room on a
    loaded machine, where 3 s once did not); 8 s of requests, so a B that never heard would have acted."""
    creds = fleet.a.add_bot("beating", "main", "read,trade", "--set", "heartbeat_seconds=5")
    on_a = client(creds, on(fleet.a))
    resting = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    for _ in range(8):
        time.sleep(1)
        on_a.fetch_balance()
    assert on_a.fetch_order(resting["id"], "BTC/USDT")["status"] == "open"
    on_a.cancel_order(resting["id"], "BTC/USDT")
    for dev in (fleet.a, fleet.b):  # neither instance took it for silent
        incidents = json.loads(dev.cli("incidents", "list", "--json").stdout)
        assert [i for i in incidents if "beating" in json.dumps(i)] == [], incidents


def test_halt_cancel_orders_on_one_instance_finds_a_bots_orders_placed_through_the_other(fleet: Fleet) -> None:
    mine = fleet.a.add_bot("cancelled-everywhere", "main", "read,trade")
    other = fleet.a.add_bot("kept-everywhere", "main", "read,trade")
    placed = [client(mine, on(fleet.a)).create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"]
              for _ in range(2)]
    kept = client(other, on(fleet.a)).create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"]
    time.sleep(0.3)  # A's attributions reach the fleet
    proc = fleet.b.cli("halt", "--bot", "cancelled-everywhere", "--cancel-orders", "--json", check=False)
    [summary] = json.loads(proc.stdout)["accounts"]
    assert sorted(c["order_id"] for c in summary["cancelled"]) == sorted(placed), summary
    assert client(other, on(fleet.b)).fetch_order(kept, "BTC/USDT")["status"] == "open"
    fleet.b.cli("resume", "--bot", "cancelled-everywhere")
    client(other, on(fleet.b)).cancel_order(kept, "BTC/USDT")


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


def test_status_lists_the_instances_and_doctor_checks_redis(fleet: Fleet) -> None:
    weighed = client(fleet.a.add_bot("weighed", "main", "read,trade"), on(fleet.a))
    weighed.cancel_order(weighed.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"], "BTC/USDT")
    status = json.loads(fleet.a.cli("status", "--json").stdout)
    # two live instances: each keeps half of the key's daily order budget (Binance: 200,000 a day)
    orders = [b for b in status["budgets"] if b["budget"] == "ORDERS_1D"]
    assert orders and orders[0]["limit"] == 100_000, status["budgets"]
    st = status["fleet"]
    assert st["reachable"] and st["where"] == fleet.redis.url
    instances = {i["instance"]: i for i in st["instances"]}
    assert instances["host-a"]["this"] and instances["host-b"]["live"] and instances["host-b"]["lag"] == 0
    text = fleet.b.cli("status").stdout
    assert f"fleet {fleet.redis.url}: version " in text and "instance host-b (this instance" in text
    doctor = json.loads(fleet.a.cli("doctor", "--offline", "--json", check=False).stdout)
    shared = [f for f in doctor if f["check"] == "shared state"]
    assert shared and shared[0]["level"] == "ok" and "AOF on; 2 live instances" in shared[0]["what"], shared
    fleet.redis.client().config_set("maxmemory-policy", "volatile-lru")  # without maxmemory: never evicts
    doctor = json.loads(fleet.a.cli("doctor", "--offline", "--json", check=False).stdout)
    assert [f["level"] for f in doctor if f["check"] == "shared state"] == ["ok"], doctor
    fleet.redis.client().config_set("maxmemory", "1gb")  # TTL'd counters would go first
    try:
        doctor = json.loads(fleet.a.cli("doctor", "--offline", "--json", check=False).stdout)
    finally:
        fleet.redis.client().config_set("maxmemory", "0")
        fleet.redis.client().config_set("maxmemory-policy", "noeviction")
    assert any(f["check"] == "shared state" and f["level"] == "warn" and "volatile-lru" in f["what"]
               for f in doctor), doctor


def test_audit_verify_checks_every_instances_trail_and_export_merges_them(fleet: Fleet) -> None:
    creds = fleet.a.add_bot("audited", "main", "read")
    client(creds, on(fleet.a)).fetch_balance()
    client(creds, on(fleet.b)).fetch_balance()
    time.sleep(1.5)  # a heartbeat publishes each trail's head
    trails = [str(fleet.a.audit_dir), str(fleet.b.audit_dir)]
    reports = json.loads(fleet.a.cli("audit", "verify", *trails, "--json").stdout)
    assert [(r["instance"], r["ok"]) for r in reports] == [("host-a", True), ("host-b", True)]
    rows = [json.loads(x) for x in fleet.a.cli("audit", "export", "--since", "0", "--bot", "audited", "--trail",
                                               trails[0], "--trail", trails[1]).stdout.splitlines()]
    assert {r["instance"] for r in rows} == {"host-a", "host-b"}
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    # a trail cut short on its host (its newest lines removed) is caught against the head its instance published
    newest = sorted(fleet.b.audit_dir.glob("audit-*.jsonl"))[-1]
    cut = fleet.a.root / "cut-trail"
    cut.mkdir()
    for f in sorted(fleet.b.audit_dir.glob("audit-*.jsonl")):
        lines = f.read_bytes().splitlines(keepends=True)
        (cut / f.name).write_bytes(b"".join(lines[:-3] if f == newest else lines))
    proc = fleet.a.cli("audit", "verify", str(cut), check=False)
    assert proc.returncode == 1 and "instance host-b" in proc.stdout and "FAILED" in proc.stdout, proc.stdout


def test_redis_unreachable_refuses_orders_lets_cancels_and_reads_through_and_recovers(fleet: Fleet) -> None:
    """For STALE_S (3 s) after B last confirmed the fleet's version, reads and cancels pass on its own counters
    (a blip stops no bot getting out) and orders are refused; after it, every bot request is refused (a revocation
    made through A may be waiting: session 34's fleet review)."""
    from keyproxy.fleet.charges import STALE_S

    creds = fleet.a.add_bot("outage", "main", "read,trade")
    on_b = client(creds, on(fleet.b))
    resting = on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    on_b.fetch_balance()  # B's gate has just found it current
    fleet.redis.stop()
    stopped = time.monotonic()
    try:
        assert on_b.fetch_balance()["total"]["USDT"] > 0  # reads pass on the instance's own counters
        assert on_b.cancel_order(resting["id"], "BTC/USDT")["status"] == "canceled"  # so do cancels
        assert time.monotonic() - stopped < STALE_S, "too slow a machine to show the grace"
        start = len(fleet.a.journal())
        refused(lambda: on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000), "shared_state_unavailable")
        assert [e for e in fleet.a.journal()[start:] if e["path"] == "/api/v3/order"] == []
        time.sleep(max(1.5, STALE_S + 0.5 - (time.monotonic() - stopped)))  # the follower notices; the grace ends
        assert "keyproxy_shared_state_up 0.0" in fleet.b.metrics()
        refused(lambda: on_b.fetch_balance(), "shared_state_unavailable")
    finally:
        fleet.redis.start()
    deadline = time.monotonic() + 10
    while True:  # reconnects by itself
        try:
            on_b.cancel_order(on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"], "BTC/USDT")
            break
        except ccxt.BaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    while "keyproxy_shared_state_up 1.0" not in fleet.b.metrics():  # the follower is back too
        assert time.monotonic() < deadline + 10
        time.sleep(0.2)



def test_a_vault_change_waiting_for_a_dead_instances_lease_stalls_no_bot(fleet: Fleet) -> None:
    """An instance killed while it held the fleet's write lease leaves it for LEASE_MS. A vault change on A
    waits for it, but on the asyncio client: A keeps answering its bots meanwhile (before, the wait was a
    blocking loop on A's event loop, and every request on A waited with it)."""
    import threading

    from keyproxy.config import SharedStateSettings
    from keyproxy.fleet.store import FleetStore
    from keyproxy.vault import Vault
    from tests.vault.helpers import passphrase_source

    with Vault.open(fleet.a.root / "state" / "vault.db", lambda kind: passphrase_source("devstack passphrase")) as v:
        store = FleetStore(SharedStateSettings(fleet.redis.url, fleet.redis.root / "password"), v.vault_id,
                           v.fleet_key())
    reader = client(fleet.a.add_bot("lease-reader", "main", "read"), on(fleet.a))
    store._redis.set(store.key("lease"), "a-killed-instance", px=2500)  # as the dead instance left it
    added: list[float] = []

    def add() -> None:
        started = time.monotonic()
        fleet.a.add_bot("added-meanwhile", "main", "read")
        added.append(time.monotonic() - started)
    change = threading.Thread(target=add)
    change.start()
    time.sleep(0.3)  # the change is waiting for the lease now
    waits = []
    for _ in range(5):
        started = time.monotonic()
        reader.fetch_balance()
        waits.append(time.monotonic() - started)
    change.join(20)
    assert max(waits) < 0.5, waits  # answered while the change waited
    assert added and added[0] > 1.5, added  # and the change did wait for the lease to lapse
    assert fleet.b.cli("bot", "show", "added-meanwhile").returncode == 0


def test_kill_9_of_one_instance_stops_no_bot(fleet: Fleet) -> None:
    """The failover docs/fleet.md tests: a bot that knows both instances' URLs moves to the other when one
    stops answering; every bot, the dead instance's too, is served there at once, with its open orders."""
    creds = fleet.a.add_bot("survivor", "main", "read,trade")
    on_a = client(creds, on(fleet.a))
    resting = on_a.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
    fleet.a.stop_daemon(signal.SIGKILL)
    with pytest.raises(ccxt.NetworkError):
        on_a.fetch_balance()
    on_b = client(creds, on(fleet.b))  # the bot's second base URL
    assert on_b.fetch_order(resting["id"], "BTC/USDT")["status"] == "open"
    assert on_b.cancel_order(resting["id"], "BTC/USDT")["status"] == "canceled"
    on_b.cancel_order(on_b.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)["id"], "BTC/USDT")
    st = json.loads(fleet.b.cli("status", "--json").stdout)["fleet"]
    assert {i["instance"] for i in st["instances"]} >= {"host-a", "host-b"}


FLEET_SECONDS = float(os.environ.get("KEYPROXY_FLEET_SECONDS", "30"))  # read before the fixtures scrub KEYPROXY_*
KRAKEN_BOT = """
import json, sys, time, krakenex
creds, base_url, seconds = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
api = krakenex.API(creds["api_key"], creds["secret"])
api.uri = base_url
errors, calls, end = [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    errors += api.query_private("Balance" if calls % 2 else "OpenOrders")["error"]
    calls += 1
print(json.dumps({"errors": errors, "calls": calls}))
"""


def test_three_kraken_bots_on_two_instances_share_one_key_with_zero_nonce_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Kraken refuses a nonce below one it has seen: instances take the key's turn in Redis, each above the
    highest nonce any of them used, for 30 s (KEYPROXY_FLEET_SECONDS to change it)."""
    import subprocess
    import sys

    seconds = FLEET_SECONDS
    server = RedisServer(tmp_path / "redis").start()
    limits = '\n[governor.limits]\n"kraken.CALL_COUNTER" = 1000000\n'  # the emulator does not count calls here
    a = DevStack(tmp_path / "a", extra_config=limits + server.config())
    b = DevStack(tmp_path / "b", extra_config=limits + server.config())
    try:
        start_two(a, b, "shared", new_real_key(exchange="kraken"))
        bots = [a.add_bot(f"k{i}", "shared", "read") for i in range(3)]
        start = len(a.journal())
        procs = [subprocess.Popen([sys.executable, "-c", KRAKEN_BOT, json.dumps(bot),
                                   f"{(a if i % 2 == 0 else b).proxy_url}/shared", str(seconds)],
                                  stdout=subprocess.PIPE, text=True, env=a.env) for i, bot in enumerate(bots)]
        results = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
        assert [r["errors"] for r in results] == [[], [], []]
        arrived = [e for e in a.journal()[start:] if e.get("api_key")]
        assert len(arrived) == sum(r["calls"] for r in results) > 30
        assert not [e for e in arrived if e.get("error_code")], "the exchange refused some requests"
        assert all(e["signature_verified"] for e in arrived)
        print(f"fleet, one Kraken key on two instances: {len(arrived)} private requests from 3 bots in {seconds:g} s, "
              "0 nonce errors")  # -s shows it
    finally:
        a.close()
        b.close()
        server.stop()


def test_serve_workers_share_one_port_and_act_as_one_fleet(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`serve --workers 2`: two processes on one port (SO_REUSEPORT); connections land on both, each keeps
    its own audit trail, a revocation reaches both, SIGTERM stops both. A passphrase given in the environment
    leaves the parent's (session 35's review: its /proc/PID/environ showed it for the whole run)."""
    from tests.e2e.conftest import account_call

    server = RedisServer(tmp_path / "redis").start()
    dev = DevStack(tmp_path / "w", extra_config=server.config())
    try:
        key = new_real_key()
        dev.start_emulator([key])
        dev.init()
        dev.add_account("main", key)
        passphrase = (dev.root / "passphrase").read_text().rstrip("\n")
        with_file = dev.env
        dev.env = {k: v for k, v in with_file.items() if k != "KEYPROXY_PASSPHRASE_FILE"} | {
            "KEYPROXY_PASSPHRASE": passphrase}
        dev.start_daemon(0, "--workers", "2")
        dev.env = with_file
        assert passphrase.encode() not in Path(f"/proc/{dev.daemon().pid}/environ").read_bytes()
        creds = dev.add_bot("spread", "main", "read")
        assert [account_call(creds)[0] for _ in range(20)] == [200] * 20  # a new connection each
        deadline = time.monotonic() + 5  # a request's done line is written just after its answer is sent
        while True:
            served = [sum(f.read_text().count('"request.done"') for f in d.glob("audit-*.jsonl"))
                      for d in (dev.audit_dir, dev.audit_dir / "worker-1")]
            if sum(served) == 20 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sum(served) == 20 and min(served) > 0, served  # the kernel spread them over both
        instances = json.loads(dev.cli("status", "--json").stdout)["fleet"]["instances"]
        assert sorted(i["instance"][-3:] for i in instances if i["live"]) == ["-w0", "-w1"]
        dev.cli("bot", "revoke", "spread")
        assert {account_call(creds)[1].get("error") for _ in range(20)} == {"unknown_bot"}
        assert dev.stop_daemon() == 0
        reports = json.loads(dev.cli("audit", "verify", str(dev.audit_dir), str(dev.audit_dir / "worker-1"),
                                     "--json").stdout)
        assert all(r["ok"] for r in reports), reports
    finally:
        dev.close()
        server.stop()


def test_workers_need_shared_state_and_a_worker_cannot_be_started_by_hand(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dev = DevStack(tmp_path / "alone")
    dev.init()
    proc = dev.cli("serve", "--workers", "2", "--port", "0", check=False)
    assert proc.returncode == 2 and "--workers needs [shared_state]" in proc.stderr
    shared = DevStack(tmp_path / "shared", extra_config='\n[shared_state]\nurl = "redis://127.0.0.1:1/0"\n')
    shared.init()
    proc = shared.cli("serve", "--worker", "1/2", "--port", "0", check=False)
    assert proc.returncode == 2 and "set by `serve --workers N`" in proc.stderr


