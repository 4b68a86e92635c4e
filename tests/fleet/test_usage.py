"""The fleet's writer of what an instance learned (fleet/usage.py) against a real Redis: each change applied
once however often its transaction is sent, a change Redis refuses dropped without taking the others with it,
and a writer that cannot write makes this instance refuse what counts on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from keyproxy.config import SharedStateSettings
from keyproxy.fleet.store import FleetStore
from keyproxy.fleet.usage import FleetUsage
from tests.fleet.lossy import LossyProxy

KEY = b"k" * 32


async def drained(usage: FleetUsage, until: float = 3.0) -> None:
    await usage.drained(until)  # the queue empty and its last batch written (or `until` passed)


def test_a_transaction_whose_reply_was_lost_is_applied_once(shared: SharedStateSettings, redis_server) -> None:
    """The review's finding 5: the writer sent a whole MULTI/EXEC again after its reply was lost, applying an
    open-order decrement twice and writing a book entry twice. Each carries a marker now."""
    store = FleetStore(shared, "vault-1", KEY)
    numbers: list[int] = []

    async def run() -> None:
        proxy = LossyProxy(shared)
        usage = FleetUsage(FleetStore(await proxy.start(), "vault-1", KEY))
        task = asyncio.create_task(usage.run())
        usage.set_open_orders("b1", "spot:BTCUSDT", 3)
        await drained(usage)
        proxy.drop.set()  # the next transaction runs, and its reply is lost
        usage.change_open_orders("b1", "spot:BTCUSDT", -1)
        usage.publish(store.key("book"), store.key("bookseq:b1"), {"b": "b1", "e": "[]"}, 1000, numbers.append)
        deadline = time.monotonic() + 3
        while not numbers and time.monotonic() < deadline:  # written, once its second sending was answered
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        proxy.close()
    asyncio.run(run())
    r = redis_server.client()
    assert r.hget(store.key("open:b1"), "spot:BTCUSDT") == b"2"  # 3 - 1, not 3 - 2
    assert r.xlen(store.key("book")) == 1 and numbers == [1]


def test_a_change_redis_refuses_is_dropped_and_the_rest_stand(shared: SharedStateSettings, redis_server) -> None:
    """A change Redis refuses inside the transaction (here a key of the wrong type) used to fail the whole
    batch, which was sent again forever: nothing after it was ever written. Now it is dropped and logged."""
    store = FleetStore(shared, "vault-1", KEY)
    r = redis_server.client()
    r.set(store.key("open:broken"), "not a hash")

    async def run() -> FleetUsage:
        usage = FleetUsage(store)
        task = asyncio.create_task(usage.run())
        usage.change_open_orders("broken", "spot:BTCUSDT", 1)
        usage.change_open_orders("b1", "spot:BTCUSDT", 1)
        await drained(usage)
        usage.change_open_orders("b1", "spot:BTCUSDT", 1)  # and the writer goes on
        await drained(usage)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return usage
    usage = asyncio.run(run())
    assert r.hget(store.key("open:b1"), "spot:BTCUSDT") == b"2" and usage.dropped == 1
    assert not usage.stuck()


def test_a_writer_whose_reply_is_held_is_stuck_before_its_connection_times_out(shared: SharedStateSettings) -> None:
    """Session 34's fleet review: a stalled connection (Redis's replies held) fails only at its socket timeout, and
    the instance said it was stuck only STUCK_S after that failure: for ~9 s capped orders passed on counts that lacked
    what it had learned. A batch unwritten for STUCK_S is stuck now, whatever the connection says."""
    from keyproxy.fleet import usage as usage_module

    async def run() -> list[bool]:
        proxy = LossyProxy(SharedStateSettings(url=shared.url, password_file=shared.password_file, timeout=30.0))
        usage = FleetUsage(FleetStore(await proxy.start(), "vault-1", KEY))
        task = asyncio.create_task(usage.run())
        usage.change_open_orders("held", "spot:BTCUSDT", 1)
        await drained(usage)
        proxy.hold = True
        usage.change_open_orders("held", "spot:BTCUSDT", 1)
        await asyncio.sleep(usage_module.STUCK_S + 0.5)
        seen = [usage.stuck()]
        assert seen == [True], "not stuck while its batch waited"
        proxy.hold = False
        seen.append(await usage.drained(5.0))
        seen.append(usage.stuck())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        proxy.close()
        return seen
    assert asyncio.run(run()) == [True, True, False]


def test_a_writer_that_cannot_write_is_stuck(tmp_path) -> None:
    """Redis gone: the writer retries, and after STUCK_S says so (the admission then refuses checks that count on
    what this instance learned); back once it writes again."""
    from keyproxy.emulator.devstack import RedisServer
    from keyproxy.fleet import usage as usage_module

    server = RedisServer(tmp_path / "redis").start()
    settings = SharedStateSettings(url=server.url, password_file=server.root / "password", timeout=0.5)

    async def run() -> list[bool]:
        usage = FleetUsage(FleetStore(settings, "vault-1", KEY))
        task = asyncio.create_task(usage.run())
        server.stop()
        usage.change_open_orders("b1", "spot:BTCUSDT", 1)
        await asyncio.sleep(usage_module.STUCK_S + 1.0)
        seen = [usage.stuck()]
        server.start()
        await drained(usage, until=5)
        seen.append(usage.stuck())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen
    try:
        assert asyncio.run(run()) == [True, False]
    finally:
        server.stop()


def test_the_fleets_record_of_who_placed_what_is_pruned_with_the_instances(shared: SharedStateSettings, redis_server,
                                                                            tmp_path) -> None:
    """Session 20's review (low): the fleet's `placed:{account}` hash only grew (a week's expiry, renewed at every
    order), so a bot flooding orders through a fleet grew Redis without bound while each instance's state.db kept
    MAX_PLACED_ORDERS. What an instance prunes from its own record now goes from the fleet's too."""
    from keyproxy.state import MAX_PLACED_ORDERS, PRUNE_EVERY, StateStore

    fleet = FleetStore(shared, "vault-1", KEY)
    state = StateStore(tmp_path / "state.db")

    async def run() -> None:
        usage = FleetUsage(fleet)
        state.placed_mirror = usage
        task = asyncio.create_task(usage.run())
        state.record_placed_orders("acct", "victim", "spot", ("v1", "v2"), 1.0)
        state.record_placed_orders("acct", "flood", "spot", tuple(f"f{i}" for i in range(MAX_PLACED_ORDERS)), 2.0)
        state.record_placed_orders("acct", "flood", "spot", tuple(f"g{i}" for i in range(PRUNE_EVERY)), 3.0)
        await drained(usage, 10.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(run())
    held = {k.decode() for k in redis_server.client().hkeys(fleet.key("placed:acct"))}
    local = {oid for oid, _ in state._db.execute("SELECT order_id, bot FROM placed_orders WHERE account = 'acct'")}
    assert len(local) == MAX_PLACED_ORDERS and held == local  # the fleet holds what the instance holds
    assert {"v1", "v2", "g0"} <= held and "f0" not in held  # the flooder's oldest went, never the victim's
    state.close()


def test_a_client_id_another_bot_reused_through_another_instance_stays_that_bots(shared: SharedStateSettings,
                                                                                 redis_server, tmp_path) -> None:
    """Session 21's review (high): a bot whose client id a victim reused through instance B still owned it on
    instance A (A's own record was read first), so it cancelled the victim's order by client id through A; and
    flooding A pruned that record from the fleet's too (an unconditional HDEL), so no instance but B knew the
    victim's. Now a cancel by client id is refused when either record names another bot, and a pruned record
    leaves the fleet's only while the fleet's still names the pruned bot."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.policy.model import RequestFacts
    from keyproxy.proxy.order_owners import OrderOwners
    from keyproxy.proxy.positions import PositionBook
    from keyproxy.proxy.refusal import Refused
    from keyproxy.state import MAX_PLACED_ORDERS, PRUNE_EVERY, StateStore, client_key, placed_key

    cid = placed_key(client_key("c1"), "spot:BTCUSDT")
    a, b, c = (StateStore(tmp_path / f"{n}.db") for n in "abc")  # c: an instance that recorded nothing itself
    cancel = RequestFacts(action="cancel", symbol="BTCUSDT", market="spot", cancels_by_client=("c1",))

    def refused_on(state: StateStore, bot: str) -> bool:
        try:
            OrderOwners(None, state, PositionBook(None, lambda: 0.0), lambda: 0).only_own("acct", Binance(), bot,
                                                                                          cancel)
        except Refused:
            return True
        return False

    async def run() -> None:
        ua, ub = FleetUsage(FleetStore(shared, "vault-1", KEY)), FleetUsage(FleetStore(shared, "vault-1", KEY))
        a.placed_mirror, b.placed_mirror, c.placed_mirror = ua, ub, ua
        tasks = [asyncio.create_task(ua.run()), asyncio.create_task(ub.run())]
        a.record_placed_orders("acct", "mallory", "spot", (cid,), 1.0)  # mallory's order under c1, through A
        await drained(ua)
        b.record_placed_orders("acct", "victim", "spot", ("555@spot:BTCUSDT", cid), 2.0)  # c1 reused, through B
        await drained(ub)
        assert refused_on(a, "mallory") and refused_on(c, "mallory")  # A's own record no longer wins
        a.record_placed_orders("acct", "mallory", "spot", tuple(f"f{i}" for i in range(MAX_PLACED_ORDERS)), 3.0)
        a.record_placed_orders("acct", "mallory", "spot", tuple(f"g{i}" for i in range(PRUNE_EVERY)), 4.0)
        await drained(ua, 10.0)  # A pruned mallory's c1 record: the fleet's names the victim, and stays
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(run())
    assert a.local_owner("acct", (cid,)) is None and c.placed_owner("acct", (cid,)) == "victim"
    assert refused_on(a, "mallory") and refused_on(c, "mallory") and not refused_on(b, "victim")
    for state in (a, b, c):
        state.close()


def test_a_pruned_record_leaves_the_fleets_only_if_not_written_since(shared: SharedStateSettings, redis_server,
                                                                     tmp_path) -> None:
    """Session 21's second review: the prune's compare-and-delete compared only `[bot, market]`, so instance A
    pruning a victim's old record of client id c1 wiped the fleet's record of the victim's newer, live order under
    c1 (placed through B): on A, and any instance without its own record, c1 was nobody's, and another bot cancelled
    it. Each record's time is kept beside it (`placedts:`): one written since is not removed."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.policy.model import RequestFacts
    from keyproxy.proxy.order_owners import OrderOwners
    from keyproxy.proxy.positions import PositionBook
    from keyproxy.proxy.refusal import Refused
    from keyproxy.state import StateStore, client_key, placed_key

    cid = placed_key(client_key("c1"), "spot:BTCUSDT")
    a, b = StateStore(tmp_path / "a.db"), StateStore(tmp_path / "b.db")

    async def run() -> None:
        ua, ub = FleetUsage(FleetStore(shared, "vault-1", KEY)), FleetUsage(FleetStore(shared, "vault-1", KEY))
        a.placed_mirror, b.placed_mirror = ua, ub
        tasks = [asyncio.create_task(ua.run()), asyncio.create_task(ub.run())]
        a.record_placed_orders("acct", "victim", "spot", (cid,), 0.5)  # an old order under c1, through A
        a.record_placed_orders("acct", "victim", "spot", tuple(f"v{i}" for i in range(20_000)), 1.0)
        await drained(ua, 10.0)
        b.record_placed_orders("acct", "victim", "spot", ("555@spot:BTCUSDT", cid), 2.0)  # c1 again, live, via B
        await drained(ub)
        # mallory floods A past the bound, levelling down to the victim's count: the victim's oldest (c1) goes
        a.record_placed_orders("acct", "mallory", "spot", tuple(f"m{i}" for i in range(20_499)), 3.0)
        await drained(ua, 10.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(run())
    assert a.local_owner("acct", (cid,)) is None  # pruned on A
    assert a.placed_owners("acct", (cid,)) == ["victim"]  # the fleet's record of the live order stands
    with pytest.raises(Refused, match="placed by another bot"):
        OrderOwners(None, a, PositionBook(None, lambda: 0.0), lambda: 0).only_own(
            "acct", Binance(), "mallory", RequestFacts(action="cancel", symbol="BTCUSDT", market="spot",
                                                       cancels_by_client=("c1",)))
    for state in (a, b):
        state.close()


def test_a_refusal_that_passes_fails_the_batch_which_is_written_once_redis_takes_writes(
        shared: SharedStateSettings, redis_server) -> None:
    """Session 23's review (medium): the batch script caught every refusal per change, so Redis refusing writes for
    a while (out of memory here; READONLY after a failover, MISCONF) dropped an order's open-order count, owner
    record and book entry for good, and the instance never said it was stuck. Such a refusal fails the whole batch
    now: the writer is stuck meanwhile, and writes it all once Redis takes writes again."""
    store = FleetStore(shared, "vault-1", KEY)
    r = redis_server.client()
    numbers: list[int] = []

    async def run() -> tuple[FleetUsage, bool]:
        usage = FleetUsage(store)
        task = asyncio.create_task(usage.run())
        r.config_set("maxmemory", "1")
        try:
            usage.change_open_orders("b1", "spot:BTCUSDT", 1)
            usage.record_placed_orders("acct", "b1", "spot", ("12345",), ts=time.time())
            usage.publish(store.key("book"), store.key("bookseq:b1"), {"b": "b1", "e": "[]"}, 1000, numbers.append)
            await drained(usage)
            stuck = usage.stuck()
        finally:
            r.config_set("maxmemory", "0")
        await drained(usage, until=5.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return usage, stuck
    usage, stuck = asyncio.run(run())
    assert stuck and not usage.stuck() and usage.dropped == 0
    assert r.hget(store.key("open:b1"), "spot:BTCUSDT") == b"1" and r.hget(store.key("placed:acct"), "12345")
    assert r.xlen(store.key("book")) == 1 and numbers == [1]


def test_a_listing_adds_the_opens_other_instances_learned_since_it_was_decided(shared: SharedStateSettings,
                                                                               redis_server) -> None:
    """Session 28: a listing (or cancel-all) through one instance sets the fleet's count to what it saw plus the orders
    other instances learned open since it was decided (they may not have been listed); its own instance's it adds
    itself, exactly. The diff review's cases: an instance's own opens learned just before its cancel-all are not
    added back (the cancel-all took them), nor another's learned well before its listing (the listing showed them)."""
    store = FleetStore(shared, "vault-1", KEY)

    async def run() -> None:
        a, b = FleetUsage(FleetStore(shared, "vault-1", KEY)), FleetUsage(FleetStore(shared, "vault-1", KEY))
        tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        for _ in range(3):  # A's own orders, learned open
            a.change_open_orders("b1", "spot:BTCUSDT", +1)
        b.change_open_orders("b1", "spot:ETHUSDT", +1)  # one through B, well before the listings below
        await drained(a)
        await drained(b)
        await asyncio.sleep(0.3)
        a.reset_open_orders("b1", "spot", int(time.time() * 1000))  # A's cancel-all, decided now: took all four
        await drained(a)
        assert {k: int(v) for k, v in redis_server.client().hgetall(store.key("open:b1")).items()} == {
            b"spot:BTCUSDT": 0, b"spot:ETHUSDT": 0}
        decided = int(time.time() * 1000)  # A lists BTCUSDT (sees none); meanwhile B learns one open there
        await asyncio.sleep(0.1)
        b.change_open_orders("b1", "spot:BTCUSDT", +1)
        await drained(b)
        a.set_open_orders("b1", "spot:BTCUSDT", 0, decided)
        await drained(a)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(run())
    assert redis_server.client().hget(store.key("open:b1"), "spot:BTCUSDT") == b"1"  # B's, kept


def test_a_stops_client_id_is_held_across_instances(shared: SharedStateSettings, redis_server, tmp_path) -> None:
    """Session 31's review: the placement check read this instance's record only, so a bot placed an order under
    another bot's stop's clientAlgoId through an instance that never saw the stop, and the order the stop became
    (carrying that client id) was then nobody's. Every instance's record is read now, in every form."""
    from keyproxy.exchanges.binance import Binance
    from keyproxy.policy.model import RequestFacts
    from keyproxy.proxy.order_owners import OrderOwners
    from keyproxy.proxy.positions import PositionBook
    from keyproxy.proxy.refusal import Refused
    from keyproxy.state import StateStore, client_key

    a, b = StateStore(tmp_path / "a.db"), StateStore(tmp_path / "b.db")
    order = RequestFacts(action="order", symbol="BTCUSDT", market="usdm", side="BUY", order_type="LIMIT",
                         client_id="stop-x")

    async def run() -> None:
        ua, ub = FleetUsage(FleetStore(shared, "vault-1", KEY)), FleetUsage(FleetStore(shared, "vault-1", KEY))
        a.placed_mirror, b.placed_mirror = ua, ub
        tasks = [asyncio.create_task(ua.run()), asyncio.create_task(ub.run())]
        a.record_placed_orders("acct", "victim", "usdm", (client_key("algo#stop-x"),), 1.0)  # the stop, through A
        await drained(ua)
        owners = OrderOwners(None, b, PositionBook(None, lambda: 0.0), lambda: 0)
        with pytest.raises(Refused, match="names an order bot 'victim' placed"):
            owners.own_client_ids("acct", Binance(), "mallory", order)  # through B, which never saw the stop
        owners.own_client_ids("acct", Binance(), "victim", order)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(run())
    for state in (a, b):
        state.close()


def test_a_client_id_placed_outside_keyproxy_is_in_redis_before_its_answer_is_relayed(
        shared: SharedStateSettings, redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Session 33's review: the record of an order placed outside keyproxy went to Redis through the writer's queue,
    after the answer naming it was relayed, so a bot listing through one instance and ordering through another took
    the operator's order 10 times in 30. It is written before `record_outside` returns, no writer running; where
    Redis is out of reach, nothing is recorded and the caller refuses the answer."""
    from keyproxy.errors import KeyproxyError
    from keyproxy.state import OUTSIDE, StateStore

    store = StateStore(tmp_path / "state.db")
    fleet = FleetStore(shared, "vault-1", KEY)
    store.placed_mirror = FleetUsage(fleet)  # its writer never runs here
    store.record_outside("cb", (("cid:op-1", "spot", 1.0), ("cid:op-2", "spot", 1.0)))
    other = StateStore(tmp_path / "other.db")  # another instance: its own state.db, the same Redis
    other.placed_mirror = FleetUsage(FleetStore(shared, "vault-1", KEY))
    assert other.placed_owner("cb", ("cid:op-2",)) == OUTSIDE
    assert other.recorded("cb", ["cid:op-1", "cid:none"]) == {"cid:op-1"}
    store.placed_mirror = FleetUsage(FleetStore(SharedStateSettings(url="redis://127.0.0.1:1/0", timeout=0.2),
                                                "vault-1", KEY))  # out of reach
    with pytest.raises(KeyproxyError):
        store.record_outside("cb", (("cid:op-3", "spot", 2.0),))
    assert store.local_owner("cb", ("cid:op-3",)) is None
