"""The fleet's gate against a real Redis: one atomic check, nothing charged unless everything holds."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

from keyproxy.config import SharedStateSettings
from keyproxy.fleet.charges import SharedCharges
from keyproxy.fleet.gate import FleetGate
from keyproxy.fleet.store import FleetStore

KEY = b"k" * 32  # the vault's fleet key, as Vault.fleet_key derives one


def check(shared: SharedStateSettings, *charges: SharedCharges, applied: int = 0) -> list[str]:
    async def run() -> list[str]:
        gate = FleetGate(FleetStore(shared, "vault-1", KEY))
        try:
            return [(await gate.check(c, applied)).kind for c in charges]
        finally:
            await gate.close()
    return asyncio.run(run())


def order(bot: str = "b1", replay: str | None = None, seq: int | None = None) -> SharedCharges:
    c = SharedCharges(bot, buckets=[("bot:b1:orders", 1 / 60, 3.0)])
    if replay:
        c.replays.append((replay, 60_000, True))
    c.sequence = seq
    return c


def test_a_bucket_is_spent_once_across_every_caller(shared: SharedStateSettings) -> None:
    assert check(shared, *[order() for _ in range(5)]) == ["ok", "ok", "ok", "rate", "rate"]
    assert check(shared, order()) == ["rate"]  # another instance (another client) sees the same bucket


def test_a_bucket_whose_limit_differs_between_instances_carries_its_level_over(shared: SharedStateSettings) -> None:
    """Session 25's review: a changed rate or capacity started the bucket full, so a bot alternating between two
    instances whose pinned limits differed (a rolling config change) found it full on every request: 60 of 60 passed
    a limit of 6 a minute. The level carries over now, capped by the new capacity."""
    def other(capacity: float) -> SharedCharges:
        return SharedCharges("b1", buckets=[("bot:b1:orders", capacity / 60, capacity)])
    assert check(shared, order(), order(), order()) == ["ok", "ok", "ok"]
    assert check(shared, other(2.0), order(), other(2.0), order()) == ["rate", "rate", "rate", "rate"]
    assert check(shared, other(4.0)) == ["rate"]  # a raised capacity refills at its rate, not at once


def test_a_batch_takes_one_token_per_order_or_none(shared: SharedStateSettings) -> None:
    batch = SharedCharges("b1", buckets=[("bot:b1:orders", 1 / 60, 3.0)] * 4)
    assert check(shared, batch, order(), order(), order(), order()) == ["rate", "ok", "ok", "ok", "rate"]


def test_replay_ids_and_sequences_hold_across_the_fleet(shared: SharedStateSettings) -> None:
    assert check(shared, order(replay="sig-1"), order(replay="sig-1")) == ["ok", "replay"]
    assert check(shared, order(seq=10), order(seq=10), order(seq=9), order(seq=11)) == ["ok", "sequence",
                                                                                         "sequence", "ok"]
    dump = b"".join(k for k in FleetStore(shared, "vault-1", KEY)._redis.scan_iter())
    assert b"sig-1" not in dump  # replay ids (signatures, queries) are hashed


def test_a_refused_check_charges_nothing(shared: SharedStateSettings) -> None:
    replayed = order(replay="sig-2")
    assert check(shared, order(replay="sig-2")) == ["ok"]
    assert check(shared, replayed) == ["replay"]
    assert check(shared, order(), order()) == ["ok", "ok"]  # the refused one took no token (3 in all)
    assert check(shared, order()) == ["rate"]


def test_daily_caps_add_up_across_the_fleet(shared: SharedStateSettings) -> None:
    def spend(amount: str) -> SharedCharges:
        return SharedCharges("b1", caps=[("notional", "", Decimal(amount), Decimal("50"), "daily_notional_exceeded")])
    assert check(shared, spend("20"), spend("20"), spend("20"), spend("10")) == ["ok", "ok", "cap", "ok"]


def test_a_daily_cap_counts_the_day_by_redis_clock_not_the_instances(shared: SharedStateSettings) -> None:
    """Session 25's review: each instance named the day's key by its own clock, so with one instance's clock ahead a
    bot spent its cap through one at 23:58 and again through the other in the same UTC day. Redis's clock picks."""
    import time

    def spend(now: float) -> str:
        async def run() -> str:
            gate = FleetGate(FleetStore(shared, "vault-1", KEY))
            try:
                c = SharedCharges("clock", caps=[("notional", "", Decimal("600"), Decimal("1000"), "x")])
                return (await gate.check(c, 0, now=now)).kind
            finally:
                await gate.close()
        return asyncio.run(run())
    assert spend(time.time()) == "ok"
    assert spend(time.time() + 86_400 - 1) == "cap"  # an instance whose clock runs (almost) a day ahead
    assert spend(time.time() - 86_400 + 1) == "cap"  # ... or behind: the same day at Redis


def test_repeated_orders_are_counted_across_the_fleet(shared: SharedStateSettings) -> None:
    """duplicate_orders = 2 in a 60 s window: the third same order is refused, whichever instance it reaches;
    another order is its own; a reduce-only repeat passes (and still counts); a refused check adds nothing."""
    def placing(shape: str, checked: bool = True, cap: int = 2) -> SharedCharges:
        return SharedCharges("b1", duplicates=[(shape, 60.0, cap, checked)])
    assert check(shared, placing("s1"), placing("s1"), placing("s1"), placing("s2")) == ["ok", "ok", "duplicate", "ok"]
    assert check(shared, placing("s1", checked=False), placing("s1")) == ["ok", "duplicate"]
    batch = SharedCharges("b1", duplicates=[("s3", 60.0, 1, True), ("s3", 60.0, 1, True)])
    assert check(shared, batch, placing("s3", cap=1)) == ["duplicate", "ok"]  # the batch's own repeat; none added
    short = SharedCharges("b1", duplicates=[("s4", 0.2, 1, True)])
    assert check(shared, short, SharedCharges("b1", duplicates=[("s4", 0.2, 1, True)])) == ["ok", "duplicate"]
    import time
    time.sleep(0.3)  # the window has passed
    assert check(shared, SharedCharges("b1", duplicates=[("s4", 0.2, 1, True)])) == ["ok"]


def test_an_instance_behind_the_fleets_version_is_told_so_and_charged_nothing(shared: SharedStateSettings) -> None:
    store = FleetStore(shared, "vault-1", KEY)
    version = store.set_halt("bot", "b1", "drill", 1.0)
    assert check(shared, order(), applied=version - 1) == ["stale"]
    assert check(shared, order(), order(), order(), applied=version) == ["ok", "ok", "ok"]


def test_an_unreachable_redis_is_a_verdict_not_an_exception() -> None:
    dead = SharedStateSettings(url="redis://127.0.0.1:1/0", timeout=0.2)
    assert check(dead, order()) == ["unavailable"]


def test_open_orders_are_counted_from_every_instances_answers(shared: SharedStateSettings) -> None:
    from keyproxy.fleet.usage import FleetUsage

    async def run() -> list[str]:
        store = FleetStore(shared, "vault-1", KEY)
        a, b = FleetUsage(store), FleetUsage(store)  # two instances' answers
        tasks = [asyncio.create_task(u.run()) for u in (a, b)]
        a.change_open_orders("b1", "spot:BTCUSDT", +1)
        b.change_open_orders("b1", "spot:ETHUSDT", +1)
        await asyncio.sleep(0.3)
        gate = FleetGate(store)
        place = SharedCharges("b1", open_orders=(1, 2))
        kinds = [(await gate.check(place, 0)).kind]  # 2 open: the cap
        b.change_open_orders("b1", "spot:*", -1)  # a cancel naming no symbol, relayed by B
        await asyncio.sleep(0.3)
        kinds.append((await gate.check(place, 0)).kind)
        a.reset_open_orders("b1", "spot")
        a.set_open_orders("b1", "spot:BTCUSDT", 2)
        await asyncio.sleep(0.3)
        kinds.append((await gate.check(place, 0)).kind)
        kinds.append((await gate.check(SharedCharges("b1", open_orders=(1, 3)), 0)).kind)
        for t in tasks:
            t.cancel()
        await gate.close()
        return kinds
    assert asyncio.run(run()) == ["open", "ok", "open", "ok"]


def test_a_fleet_version_that_went_back_is_refused_not_ignored(shared: SharedStateSettings) -> None:
    """Redis lost writes or was reset: an instance that applied version 5 must not take 2 for current."""
    store = FleetStore(shared, "vault-1", KEY)
    for _ in range(2):
        store.set_halt("bot", "b1", "drill", 1.0)
    assert check(shared, order(), applied=5) == ["back"]


def test_orders_on_their_way_hold_their_place_on_every_instance_until_answered(shared: SharedStateSettings) -> None:
    """Two instances' orders fired at once: each reservation is made with the check, so the last slot goes once;
    a landed order gives its place back, and one never answered stops counting when its reservation expires."""
    from keyproxy.fleet.usage import FleetUsage

    async def run() -> list[str]:
        store = FleetStore(shared, "vault-1", KEY)
        a_usage, gate_a, gate_b = FleetUsage(store), FleetGate(store), FleetGate(store)
        task = asyncio.create_task(a_usage.run())

        def order_from(instance: str, n: int, ttl: float = 60.0) -> SharedCharges:
            return SharedCharges("b1", open_orders=(1, 2), in_flight=(f"{instance}-{n}", ttl))

        first = order_from("a", 1)
        kinds = [(await gate_a.check(first, 0)).kind, (await gate_b.check(order_from("b", 1), 0)).kind]
        kinds.append((await gate_a.check(order_from("a", 2), 0)).kind)  # 2 on their way: the cap
        a_usage.land("b1", first.flight_member() or "")  # A read its answer: it did not rest
        await asyncio.sleep(0.3)
        short = order_from("a", 3, ttl=0.2)
        kinds.append((await gate_a.check(short, 0)).kind)  # the freed place
        kinds.append((await gate_b.check(order_from("b", 2), 0)).kind)  # full again
        await asyncio.sleep(0.4)  # A's order never got an answer: its place expires
        kinds.append((await gate_b.check(order_from("b", 3), 0)).kind)
        task.cancel()
        for gate in (gate_a, gate_b):
            await gate.close()
        return kinds
    assert asyncio.run(run()) == ["ok", "ok", "open", "ok", "open", "ok"]


def test_the_gate_outlives_a_redis_restart(tmp_path) -> None:
    """The gate's own connections: one Redis closed is replaced (once, as redis-py retries), and a Redis that
    lost its scripts gets the script again; while Redis is down the verdict is `unavailable`, not an error."""
    from keyproxy.emulator.devstack import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    settings = SharedStateSettings(url=server.url, password_file=server.root / "password", timeout=1.0)

    def replay_only(replay: str) -> SharedCharges:
        return SharedCharges("b1", replays=[(replay, 60_000, True)])

    async def run() -> list[str]:
        gate = FleetGate(FleetStore(settings, "vault-1", KEY))
        kinds = [(await gate.check(replay_only("r1"), 0)).kind]
        server.stop()
        kinds.append((await gate.check(replay_only("r2"), 0)).kind)
        server.start()
        kinds.append((await gate.check(replay_only("r3"), 0)).kind)  # a new connection, the script loaded again
        await gate.check(replay_only("r4"), 0)  # an idle connection again
        server.stop()
        server.start()
        kinds.append((await gate.check(replay_only("r5"), 0)).kind)  # its idle connection is dead: a new one
        await gate.close()
        return kinds
    try:
        assert asyncio.run(run()) == ["ok", "unavailable", "ok", "ok"]
    finally:
        server.stop()


def test_a_check_cut_short_never_leaves_its_reply_for_the_next(shared: SharedStateSettings,
                                                                 redis_server) -> None:
    """A check that timed out or was cancelled while Redis held it: that connection is closed (Redis drops what
    it had not run), so the next check reads its own answer, never the late one's "ok"."""
    async def run() -> list[str]:
        gate = FleetGate(FleetStore(shared, "vault-1", KEY))
        assert (await gate.check(order(replay="seen"), 0)).kind == "ok"  # and one idle connection
        redis_server.client().execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        kinds = [(await gate.check(order(replay="late"), 0)).kind]  # shared.timeout is 1 s
        await asyncio.sleep(0.7)
        kinds.append((await gate.check(order(replay="seen"), 0)).kind)  # its own answer: a replay
        redis_server.client().execute_command("CLIENT", "PAUSE", "600", "WRITE")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(gate.check(order(replay="cancelled"), 0), 0.1)
        await asyncio.sleep(0.7)
        kinds.append((await gate.check(order(replay="seen"), 0)).kind)
        kinds.append((await gate.check(order(replay="late"), 0)).kind)  # never run: Redis dropped it
        await gate.close()
        return kinds
    assert asyncio.run(run()) == ["unavailable", "replay", "replay", "ok"]


def test_a_position_capped_bots_orders_on_their_way_count_on_every_instance(shared: SharedStateSettings) -> None:
    """Each leg's size is reserved with the check, so buys fired through two instances at once cannot together
    pass the cap; a sell within what the position lets it reduce passes while the reductions on their way
    leave room; a landed order gives its size back; and a book older than the bot's newest entry is refused."""
    from keyproxy.fleet.usage import FleetUsage

    D = Decimal

    def buy(request: str, size: str, base: str = "0") -> SharedCharges:
        return SharedCharges("b1", in_flight=(request, 60.0), book_seq=0,
                             exposure=[("spot:BTCUSDT", "buy", D(size), D(-1), D(base), D("0.01"))])

    def sell(request: str, size: str) -> SharedCharges:  # holding 0.008: may reduce 0.008, cap 0.01 short
        return SharedCharges("b1", in_flight=(request, 60.0), book_seq=0,
                             exposure=[("spot:BTCUSDT", "sell", D(size), D("0.008"), D("-0.008"), D("0.01"))])

    async def run() -> list[str]:
        store = FleetStore(shared, "vault-1", KEY)
        usage, gate_a, gate_b = FleetUsage(store), FleetGate(store), FleetGate(store)
        task = asyncio.create_task(usage.run())
        first = buy("a1", "0.006")
        kinds = [(await gate_a.check(first, 0)).kind, (await gate_b.check(buy("b1", "0.005"), 0)).kind]
        verdict = await gate_b.check(buy("b2", "0.004"), 0)  # 0.006 + 0.004 = 0.01: the edge passes
        kinds.append(verdict.kind)
        kinds.append((await gate_a.check(buy("a2", "0.0001"), 0)).kind)
        for name, member in first.exposure_members():
            usage.release(name, member)  # A read its answer (the book counts it from its entry now)
        await asyncio.sleep(0.3)
        kinds.append((await gate_a.check(buy("a3", "0.006"), 0)).kind)
        kinds += [(await gate_a.check(sell(f"s{i}", "0.004"), 0)).kind for i in range(2)]  # within the 0.008 held
        kinds += [(await gate_b.check(sell(f"s{i}", "0.004"), 0)).kind for i in (2, 3)]  # short 0.004, then 0.008
        kinds.append((await gate_a.check(sell("s4", "0.004"), 0)).kind)  # short 0.012 if all fill: past the cap
        store._redis.set(store.key("bookseq:b1"), 5)
        stale = await gate_b.check(buy("b9", "0.0001"), 0)
        kinds += [stale.kind, str(stale.used)]
        ahead = buy("b10", "0.0001")
        ahead.book_seq = 9  # a book past the bot's newest: Redis numbered its entries anew (it lost data)
        kinds.append((await gate_b.check(ahead, 0)).kind)
        task.cancel()
        for gate in (gate_a, gate_b):
            await gate.close()
        return kinds
    assert asyncio.run(run()) == ["ok", "position", "ok", "position", "ok", "ok", "ok", "ok", "ok", "position",
                                  "book", "5", "book"]


def test_a_redis_that_accepts_and_never_answers_cannot_hold_a_request(tmp_path) -> None:
    """A server that takes the connection and says nothing (a hung Redis, a TLS proxy in front of a dead one):
    the check is `unavailable` within [shared_state] timeout, taking the connection (AUTH, HELLO) included."""
    import time

    async def run() -> tuple[str, float]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 20)
            await asyncio.sleep(30)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        (tmp_path / "password").write_text("fleet-test-password\n")
        settings = SharedStateSettings(url=f"redis://127.0.0.1:{port}/0", password_file=tmp_path / "password",
                                       timeout=0.5)
        gate = FleetGate(FleetStore(settings, "vault-1", KEY))
        started = time.monotonic()
        verdict = await asyncio.wait_for(gate.check(order(), 0), 10)
        elapsed = time.monotonic() - started
        server.close()
        return verdict.kind, elapsed
    kind, elapsed = asyncio.run(run())
    assert kind == "unavailable" and elapsed < 2.0, (kind, elapsed)


def test_a_check_whose_reply_was_lost_is_not_charged_twice(shared: SharedStateSettings, redis_server) -> None:
    """The review's finding 8: Redis ran the check, the connection broke before its reply came back, and the gate
    sent it again on a new connection: charged twice, and an order with a replay id refused as its own replay.
    A proxy between the gate and Redis drops exactly one reply; the check sent again finds its marker."""
    from tests.fleet.lossy import LossyProxy

    async def run() -> list[str]:
        proxy = LossyProxy(shared)
        gate = FleetGate(FleetStore(await proxy.start(), "vault-1", KEY))
        kinds = [(await gate.check(order(replay="first"), 0)).kind]  # and an idle connection
        proxy.drop.set()
        kinds.append((await gate.check(order(replay="lost"), 0)).kind)  # run, reply lost, sent again
        kinds.append((await gate.check(order(replay="lost"), 0)).kind)  # now it is a replay
        await gate.close()
        proxy.close()
        return kinds
    assert asyncio.run(run()) == ["ok", "ok", "replay"]
    tokens = redis_server.client().get(FleetStore(shared, "vault-1", KEY).key("tokens:bot:b1:orders")).decode()
    assert float(tokens.split()[0]) < 1.01  # capacity 3: two checks charged, not three (plus a refill's trickle)
