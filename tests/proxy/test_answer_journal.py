"""The answers journal's lines: written whole, read back as written, numbered past what state.db holds learned."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from keyproxy.exchanges.base import OutboundRequest
from keyproxy.policy.model import RequestFacts
from keyproxy.proxy.answer_journal import AnswerJournal, facts_doc, facts_of
from keyproxy.state import StateStore

LEG = RequestFacts(action="order", symbol="BTCUSDT", market="spot", side="BUY", quantity=Decimal("0.001"),
                   price=Decimal("20000.50"), client_id="c-1")
BATCH = RequestFacts(action="order", orders=(LEG, RequestFacts(action="order", symbol="ETHUSDT", reduce_only=True,
                                                               quantity=Decimal("1E+1"))),
                     cancels=("7", "8"), touches=(None, "9"), cancels_all=True)


def test_facts_go_through_a_line_unchanged() -> None:
    for facts in (LEG, BATCH, RequestFacts()):
        assert facts_of(facts_doc(facts)) == facts
    assert facts_of(facts_doc(BATCH)).orders[1].quantity == Decimal("10")


def test_lines_are_read_back_past_what_is_learned_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path, store)
    out = OutboundRequest("POST", "https://api.binance.com", "/api/v3/order", "symbol=BTCUSDT&signature=ab",
                          {"X-MBX-APIKEY": "REALKEY"}, b'{"params":{"apiKey":"REALKEY","x":"\xe9"}}')
    first = journal.write("main", "rest", out, 200, b'{"orderId":1}', "r1", "bot-a", LEG, "pt", blank="REALKEY")
    second = journal.write("main", "ws", out, 400, b'{"code":-2010}', "r2", "bot-b", BATCH, "p", blank="REALKEY")
    assert (first, second) == (1, 2)
    raw = (tmp_path / "answers.journal").read_bytes()
    assert b"REALKEY" not in raw and b"X-MBX-APIKEY" not in raw  # no credential on disk
    with open(tmp_path / "answers.journal", "ab") as f:
        f.write(b'{"n":3,"a":"main","x":"rest","m":"POST"')  # torn by a kill -9 mid-write
    entries = list(journal.unlearned())
    assert [e.number for e in entries] == [1, 2]
    assert entries[0].facts == LEG and entries[1].facts == BATCH and entries[0].roles == "pt"
    assert entries[1].out.body == b'{"params":{"apiKey":"","x":"\xe9"}}' and entries[1].status == 400
    assert entries[0].body == b'{"orderId":1}' and entries[1].transport == "ws" and entries[0].bot == "bot-a"
    with store.batch():
        journal.mark(1)
    assert [e.number for e in journal.unlearned()] == [2]
    again = AnswerJournal(tmp_path, store)  # a restart numbers past every line in the file
    assert again.write("main", "rest", out, 200, b"{}", "r3", "bot-a", LEG, "p") == 3
    again.emptied()
    assert (tmp_path / "answers.journal").read_bytes() == b""
    assert again.write("main", "rest", out, 200, b"{}", "r4", "bot-a", LEG, "p") == 4
    assert os.stat(tmp_path / "answers.journal").st_mode & 0o777 == 0o600
    store.close()


def test_a_journal_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    journal = AnswerJournal(tmp_path / "missing-dir", store)
    out = OutboundRequest("POST", "", "/api/v3/order", "", {}, b"")
    assert journal.write("main", "rest", out, 200, b"{}", "r1", "bot", LEG, "p") is None  # learned before relaying
    store.close()
