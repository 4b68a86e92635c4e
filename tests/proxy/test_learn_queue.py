"""The answers of one loop turn learned in one state.db transaction, one that raises undone alone
(proxy/learn_queue.py), and the journal lines they mark recorded as that one transaction leaves them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from keyproxy.exchanges.base import OutboundRequest
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.answer_journal import AnswerJournal
from keyproxy.proxy.learn_queue import LearnQueue
from keyproxy.state import StateStore

OUT = OutboundRequest("POST", "", "/api/v3/order", "", {}, b"")
LEG = RequestFacts(action="order", symbol="BTCUSDT", market="spot")


class Books:
    """What the queue reports back, and a bookkeeping step that writes state.db rows (and raises when told)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.failed: list[str] = []
        self.learned: list[str] = []
        self.transactions = 0

    def learn(self, name: str, fail: bool = False) -> None:
        self.transactions += not self.store._db.in_transaction  # counted outside a transaction only
        self.store.set_usage(f"learned|{name}", "1")
        if fail:
            raise ValueError("disk said no")

    def queue(self) -> LearnQueue:
        return LearnQueue(self.store, self.learn, lambda item: self.failed.append(item[0]),
                          lambda item: self.learned.append(item[0]))


def test_the_answers_of_one_turn_share_one_transaction_and_one_that_raises_is_undone_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path / "state.db")
    books = Books(store)
    queue = books.queue()

    async def turn() -> None:
        for name, fail in (("a", False), ("b", True), ("c", False)):
            queue.add((name, fail))
        assert len(queue) == 3 and store.usage_items("learned") == {}  # nothing learned inside the turn
        await asyncio.sleep(0)  # the turn ends: the flush runs

    asyncio.run(turn())
    assert books.transactions == 0  # every step ran inside the one transaction the flush opened
    assert set(store.usage_items("learned")) == {"learned|a", "learned|c"}  # b's row rolled back alone
    assert books.learned == ["a", "c"] and books.failed == ["b"] and len(queue) == 0
    assert "disk said no" not in caplog.text  # logged by its kind only
    assert [getattr(r, "kind", None) for r in caplog.records] == ["ValueError"]
    store.close()


def test_a_commit_that_fails_counts_every_answer_as_rolled_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    books = Books(store)
    queue = books.queue()
    blocker = sqlite3.connect(tmp_path / "state.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the flush cannot begin its transaction
    store._db.execute("PRAGMA busy_timeout = 0")

    async def turn() -> None:
        queue.add(("a", False))
        queue.add(("b", False))
        await asyncio.sleep(0)

    asyncio.run(turn())  # never raises: the answers were sent already
    assert books.failed == ["a", "b"] and books.learned == []
    blocker.rollback()
    blocker.close()
    assert store.usage_items("learned") == {}
    store.close()


def four_lines(tmp_path: Path) -> tuple[StateStore, AnswerJournal]:
    """A journal holding four answers' lines, none learned."""
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    for i in range(4):
        journal.write("main", "rest", OUT, 200, b"{}", f"r{i}", "bot", LEG, "p")
    return store, journal


def test_lines_marked_in_one_transaction_raise_the_base_together(tmp_path: Path) -> None:
    store, journal = four_lines(tmp_path)
    with store.batch():  # learned in the order the bots read them: 2, 1, 4 (3 is still on its way)
        for number in (2, 1, 4):
            journal.mark(number)
    for number in (2, 1, 4):
        journal.done(number)
    assert [e.number for e in journal.unlearned()] == [3]
    assert store.usage_items(journal.key)[journal.key] == "2"  # 1 raised the base past 2, marked before it
    store.close()


def test_a_line_rolled_back_inside_the_transaction_is_not_counted_by_the_lines_after_it(tmp_path: Path) -> None:
    store, journal = four_lines(tmp_path)
    with store.batch():
        journal.mark(1)
        with pytest.raises(ValueError), store.savepoint():
            journal.mark(2)
            raise ValueError("its bookkeeping failed after the mark")
        journal.failed(2)
        journal.mark(3)  # 2 is not learned: 3 is a row of its own, the base stays at 1
    journal.done(1)
    journal.done(3)
    assert [e.number for e in journal.unlearned()] == [2, 4]
    assert [e.number for e in AnswerJournal(tmp_path, store).unlearned()] == [2, 4]  # as a restart reads it
    store.close()


def test_orders_whose_bookkeeping_failed_to_commit_still_count_on_their_way(tmp_path: Path) -> None:
    """Session 21's review: an answer's order left the in-flight count inside the transaction (`answered`), so a
    commit that failed (disk full, I/O error) rolled its open-order count back and left it counted nowhere, every
    answer of the turn at once. It leaves only once the commit holds (`Core._learned`)."""
    import contextlib
    import time
    from collections.abc import Iterator
    from decimal import Decimal

    from keyproxy.exchanges.binance import Binance
    from keyproxy.proxy.core import Core
    from keyproxy.proxy.outcome import Outcome
    from keyproxy.usage import UsageBook

    store = StateStore(tmp_path / "state.db")
    core = Core(lambda: None, sequences=store, usage=UsageBook(store))  # type: ignore[arg-type,return-value]
    leg = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=Decimal(1),
                       price=Decimal(10))
    order = OutboundRequest("POST", "", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=10",
                            {}, b"")
    outcomes = [Outcome(request_id=f"r{i}", placed_by=("bot", leg), track=("bot", leg)) for i in range(2)]
    for o in outcomes:
        core.in_flight.sent("bot", o.request_id, (leg,), time.time())
    real_batch, depth = store.batch, [0]

    @contextlib.contextmanager
    def commit_fails() -> Iterator[None]:
        """The flush's transaction: its bookkeeping runs, then its COMMIT fails and it is rolled back."""
        depth[0] += 1
        try:
            with real_batch():
                yield
                if depth[0] == 1:
                    raise sqlite3.OperationalError("database or disk is full")
        finally:
            depth[0] -= 1

    async def turn() -> None:
        for i, o in enumerate(outcomes):
            body = b'{"symbol":"BTCUSDT","orderId":%d,"status":"NEW","side":"BUY","price":"10","origQty":"1",' \
                   b'"executedQty":"0","cummulativeQuoteQty":"0","type":"LIMIT","fills":[]}' % (i + 5)
            core.learning.add(("acct", Binance(), order, 200, body, o, None))  # type: ignore[union-attr]
        await asyncio.sleep(0)

    store.batch = commit_fails  # type: ignore[method-assign]
    asyncio.run(turn())
    assert store.placed_orders("acct") == {}  # rolled back
    assert core.in_flight.count("bot", time.time()) == 2  # still counted on their way
    usage = core.usage
    assert usage is not None and all(store.usage_items(k).get(k) == v for k, v in usage._cache.items())  # no
    # open-order count kept in memory that state.db rolled back
    store.batch = real_batch  # type: ignore[method-assign]
    asyncio.run(turn())
    assert set(store.placed_orders("acct")) == {"5@spot:BTCUSDT", "6@spot:BTCUSDT"}
    assert core.in_flight.count("bot", time.time()) == 0  # learned: counted from their answers now
    store.close()


def test_a_flush_never_raises_into_the_decision_that_ran_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Session 21's second review: telling an answer it was learned (its journal line done, which may write
    state.db) raised out of the flush into whichever bot's decision had run it, and the answers after it were never
    told (their orders stayed counted on their way for good). Each is told alone now; a failure is logged."""
    store = StateStore(tmp_path / "state.db")
    told: list[int] = []

    def learned(item: tuple[object, ...]) -> None:
        if item[0] == 1:
            raise sqlite3.OperationalError("database is locked")
        told.append(int(item[0]))  # type: ignore[call-overload]

    queue = LearnQueue(store, lambda *item: None, lambda item: None, learned)

    async def turn() -> None:
        for n in (1, 2, 3):
            queue.add((n,))
        queue.flush()  # as a decision does: nothing escapes

    asyncio.run(turn())
    assert told == [2, 3] and len(queue) == 0
    assert [getattr(r, "kind", None) for r in caplog.records] == ["OperationalError"]
    store.close()


def test_an_answer_whose_reading_raises_still_reaches_the_bot_and_is_queued(tmp_path: Path) -> None:
    """Queued before it is written (so a bot that stops reading cannot keep it unlearned), an answer's first
    reading (the key's standing, a partly refused call's settlement) now runs before the write: one that raises
    must not keep the answer from the bot, as it did not when it ran after the write. Logged; still queued."""
    from types import SimpleNamespace

    from keyproxy.exchanges.base import EndpointClass
    from keyproxy.proxy.core import Core
    from keyproxy.proxy.outcome import Outcome

    def unreadable(*args: object) -> None:
        raise ValueError("odd answer")

    store = StateStore(tmp_path / "state.db")
    core = Core(lambda: None, sequences=store)  # type: ignore[arg-type,return-value]
    adapter = SimpleNamespace(key_rejected=unreadable, settled_answer=unreadable)
    route = SimpleNamespace(account=SimpleNamespace(info=SimpleNamespace(name="acct")),
                            endpoint=SimpleNamespace(cls=EndpointClass.TRADE), adapter=adapter)
    outcome = Outcome(request_id="r1", placed_by=("bot", LEG))

    async def turn() -> None:
        core.learn(route, OUT, 200, b"{}", outcome, None, later=True)  # type: ignore[arg-type]
        assert len(core.learning) == 1  # type: ignore[arg-type]
        core.learning._waiting.clear()  # type: ignore[union-attr]  # (its bookkeeping is not what this tests)

    asyncio.run(turn())
    with pytest.raises(ValueError):  # learned at once (before the answer is relayed): it raises, as before
        core.learn(route, OUT, 200, b"{}", outcome)  # type: ignore[arg-type]
    store.close()
