"""The answers journal's lines: written whole, read back as written, each learned once whatever the order."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from keyproxy.exchanges.base import OutboundRequest
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy import answer_journal
from keyproxy.proxy.answer_journal import AnswerJournal, facts_doc, facts_of, orphans
from keyproxy.state import StateStore

LEG = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=Decimal("0.001"),
                   price=Decimal("20000.50"), client_id="c-1")
BATCH = RequestFacts(action="order", orders=(LEG, RequestFacts(action="order", symbol="ETHUSDT", reduce_only=True,
                                                               quantity=Decimal("1E+1"))),
                     cancels=("7", "8"), touches=(None, "9"), cancels_all=True)
OUT = OutboundRequest("POST", "https://api.binance.com", "/api/v3/order", "symbol=BTCUSDT&signature=ab",
                      {"X-MBX-APIKEY": "REALKEY"}, b'{"params":{"apiKey":"REALKEY","token":"WSTOKEN","x":"\xe9"}}')


def learn(store: StateStore, journal: AnswerJournal, number: int) -> None:
    with store.batch():
        journal.mark(number)
    journal.done(number)


def test_facts_go_through_a_line_unchanged() -> None:
    for facts in (LEG, BATCH, RequestFacts()):
        assert facts_of(facts_doc(facts)) == facts
    assert facts_of(facts_doc(BATCH)).orders[1].quantity == Decimal("10")


def test_lines_are_read_back_as_written_without_credentials_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    first = journal.write("main", "rest", OUT, 200, b'{"orderId":1}', "r1", "bot-a", LEG, "pt",
                          blank=("REALKEY", "WSTOKEN"), decided_ms=1_796_385_600_250)
    second = journal.write("main", "ws", OUT, 400, b'{"code":-2010}', "r2", "bot-b", BATCH, "p",
                           blank=("REALKEY", "WSTOKEN"))
    assert (first, second) == (1, 2)
    raw = (tmp_path / "answers.journal").read_bytes()
    assert b"REALKEY" not in raw and b"WSTOKEN" not in raw and b"X-MBX-APIKEY" not in raw  # no credential on disk
    with open(tmp_path / "answers.journal", "ab") as f:
        f.write(b'{"n":3,"a":"main","x":"rest","m":"POST"')  # torn by a kill -9 mid-write
    entries = list(journal.unlearned())
    assert [e.number for e in entries] == [1, 2]
    assert entries[0].facts == LEG and entries[1].facts == BATCH and entries[0].roles == "pt"
    assert entries[1].out.body == b'{"params":{"apiKey":"","token":"","x":"\xe9"}}' and entries[1].status == 400
    assert entries[0].body == b'{"orderId":1}' and entries[1].transport == "ws" and entries[0].bot == "bot-a"
    assert (entries[0].decided_ms, entries[1].decided_ms) == (1_796_385_600_250, None)  # the orders' time, if known
    assert os.stat(tmp_path / "answers.journal").st_mode & 0o777 == 0o600
    store.close()


def test_lines_learned_out_of_order_are_each_learned_once(tmp_path: Path) -> None:
    """Session 20's review: one "last learned" number lost a slow bot's line learned after a later one (or learned
    the later one twice). Each learned line is recorded on its own."""
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    for i in range(3):
        journal.write("main", "rest", OUT, 200, b"{}", f"r{i}", "bot", LEG, "p")
    learn(store, journal, 2)  # the second answer's bot read first; the first is still being relayed
    assert [e.number for e in journal.unlearned()] == [1, 3]  # a kill -9 now: both learned again, 2 not
    learn(store, journal, 1)
    learn(store, journal, 3)
    assert list(journal.unlearned()) == []
    again = AnswerJournal(tmp_path, store)  # a restart numbers past every line and record
    again.emptied()
    assert (tmp_path / "answers.journal").read_bytes() == b"" and list(again.unlearned()) == []
    assert again.write("main", "rest", OUT, 200, b"{}", "r4", "bot", LEG, "p") == 4
    assert [e.number for e in again.unlearned()] == [4]
    assert not [k for k in store.usage_items("journal|0|")]  # the per-line records went with the file
    store.close()


def test_a_failed_write_leaves_no_half_line_to_swallow_the_next(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # a disk filling up mid-line
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(answer_journal.os, "write", half)
    assert journal.write("main", "rest", OUT, 200, b"{}", "r1", "bot", LEG, "p") is None  # learned before relaying
    monkeypatch.setattr(answer_journal.os, "write", real_write)
    assert journal.write("main", "rest", OUT, 200, b"{}", "r2", "bot", LEG, "p") == 1
    assert [e.request_id for e in journal.unlearned()] == ["r2"]
    store.close()


def test_a_line_whose_learning_failed_keeps_the_file_for_the_next_start(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answer_journal, "MAX_JOURNAL_BYTES", 10)
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    journal.write("main", "rest", OUT, 200, b"{}", "r1", "bot", LEG, "p")
    journal.write("main", "rest", OUT, 200, b"{}", "r2", "bot", LEG, "p")
    journal.failed(1)
    learn(store, journal, 2)
    assert [e.number for e in journal.unlearned()] == [1]  # not emptied: the next start learns it
    journal.write("main", "rest", OUT, 200, b"{}", "r3", "bot", LEG, "p")
    journal.give_up(1)
    learn(store, journal, 3)
    assert (tmp_path / "answers.journal").read_bytes() == b""  # every line learned, past the bound: emptied
    store.close()


def test_a_journal_that_cannot_be_written_says_so_and_orphans_are_found(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path / "missing-dir", store)
    assert journal.write("main", "rest", OUT, 200, b"{}", "r1", "bot", LEG, "p") is None
    for name in ("answers.journal", "answers-1.journal", "answers-3.journal", "answers-x.journal"):
        (tmp_path / name).write_bytes(b"")
    assert orphans(tmp_path, 2) == [3] and orphans(tmp_path, 1) == [1, 3]
    store.close()
