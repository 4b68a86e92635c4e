"""Nonce sequences: strictly increasing across clock steps, restarts and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyproxy.state import StateStore
from keyproxy.nonces import NonceSequence


def test_increasing_across_clock_steps(tmp_path: Path) -> None:
    clock = [1_000_000]
    seq = NonceSequence(StateStore(tmp_path / "s.db"), clock_us=lambda: clock[0], reserve_us=1000)
    a = seq.next("k")
    clock[0] -= 500_000  # the wall clock steps back
    b = seq.next("k")
    clock[0] += 10_000_000
    c = seq.next("k")
    assert a < b < c
    assert seq.next("other") == clock[0]  # sequences are per account


def test_never_backwards_after_restart_even_if_the_clock_is_behind(tmp_path: Path) -> None:
    clock = [5_000_000]
    seq = NonceSequence(StateStore(tmp_path / "s.db"), clock_us=lambda: clock[0], reserve_us=1000)
    issued = [seq.next("k") for _ in range(50)]
    clock[0] = 1  # restarted with a clock far behind
    seq2 = NonceSequence(StateStore(tmp_path / "s.db"), clock_us=lambda: clock[0], reserve_us=1000)
    assert seq2.next("k") > max(issued)


def test_a_millisecond_sequence_counts_ms_and_persists_its_ceiling_in_ms(tmp_path: Path) -> None:
    """Hyperliquid's nonces are ms timestamps within (now - 2 days, now + 1 day): a µs sequence would be
    refused, and a burst above 1000 per second runs ahead of the clock, never repeats."""
    clock = [1_790_000_000_000_000]  # µs
    seq = NonceSequence(StateStore(tmp_path / "s.db"), clock_us=lambda: clock[0], reserve_us=60_000_000)
    burst = [seq.next("hl", per_ms=True) for _ in range(5)]
    assert burst == list(range(1_790_000_000_000, 1_790_000_000_005))
    clock[0] = 1  # restart with a clock far behind: resumes above the persisted ms ceiling, still in ms
    again = NonceSequence(StateStore(tmp_path / "s.db"), clock_us=lambda: clock[0]).next("hl", per_ms=True)
    assert burst[-1] < again <= burst[-1] + 60_000 + 1


def test_keyproxys_own_nonces_are_in_the_exchanges_unit_and_a_us_ceiling_is_repaired(tmp_path: Path) -> None:
    """Session 32: a rotation's (and `key audit`'s, `doctor`'s) own nonce was drawn in µs for Hyperliquid, whose
    nonces are ms: the sequence's ceiling went to µs and every later nonce was outside Hyperliquid's window, so no
    order went again. Drawn in the adapter's unit now; a ceiling left in µs goes back to ms (none above it was used)."""
    from keyproxy.exchanges import default_adapters

    adapters = default_adapters()
    clock = [1_790_000_000_000_000]  # µs
    store = StateStore(tmp_path / "s.db")
    seq = NonceSequence(store, clock_us=lambda: clock[0])
    assert seq.for_adapter("hl", adapters["hyperliquid"]) == 1_790_000_000_000
    assert seq.for_adapter("kr", adapters["kraken"]) == 1_790_000_000_000_000
    assert seq.for_adapter("bn", adapters["binance"]) is None
    store.raise_nonce_ceiling("broken", 1_790_000_060_000_000)  # what a µs draw left
    repaired = NonceSequence(store, clock_us=lambda: clock[0]).next("broken", per_ms=True)
    assert 1_790_000_000_000 <= repaired <= 1_790_000_060_000 + 1
    assert store.nonce_ceiling("broken") < 10**14


def test_kill_9_never_repeats_a_nonce(tmp_path: Path) -> None:
    """A child hands out nonces as fast as it can; after each kill the next nonce is above all it printed."""
    db = tmp_path / "s.db"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pathlib import Path\nfrom keyproxy.nonces import NonceSequence\n"
            "from keyproxy.state import StateStore\n"
            "seq = NonceSequence(StateStore(Path(%r)), clock_us=lambda: 1, reserve_us=100)\n"
            "while True: print(seq.next('k'), flush=True)\n") % (str(Path(__file__).resolve().parents[1]), str(db))
    seen: list[int] = []
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started (on a loaded machine, an interpreter takes a while)
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        values = [int(v) for v in (first + out).split()[:-1]]  # the last line may be torn
        assert values and (not seen or values[0] > max(seen))
        seen += values
    after = NonceSequence(StateStore(db), clock_us=lambda: 1, reserve_us=100).next("k")
    assert after > max(seen)


def test_bot_sequences_only_advance_and_survive_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    assert store.advance_bot_sequence("b", 10) and store.advance_bot_sequence("b", 11)
    assert not store.advance_bot_sequence("b", 11) and not store.advance_bot_sequence("b", 5)
    assert store.advance_bot_sequence("other", 1)
    store.close()
    again = StateStore(tmp_path / "s.db")
    assert not again.advance_bot_sequence("b", 11) and again.advance_bot_sequence("b", 12)


def test_vault_seen_only_rises_unless_restored_and_an_older_vault_is_refused(tmp_path: Path) -> None:
    from keyproxy.state import VaultRolledBack

    store = StateStore(tmp_path / "s.db")
    store.check_vault_current("v1", 0, tmp_path / "vault.db")  # never seen: nothing to compare with
    store.record_vault_seen("v1", 7)
    store.record_vault_seen("v1", 5)  # a late writer cannot lower the mark
    assert store.vault_seen("v1") == 7 and store.vault_seen("v2") is None
    store.check_vault_current("v1", 7, tmp_path / "vault.db")
    store.check_vault_current("v1", 9, tmp_path / "vault.db")  # changes made while keyproxy was not looking
    store.check_vault_current("v2", 1, tmp_path / "vault.db")  # another vault (a new init) has its own mark
    with pytest.raises(VaultRolledBack, match=r"\(6 changes, 7 seen before\).*vault restore --force"):
        store.check_vault_current("v1", 6, tmp_path / "vault.db")
    store.record_vault_seen("v1", 3, restored=True)  # `vault restore --force` of an older copy
    store.close()
    assert StateStore(tmp_path / "s.db").vault_seen("v1") == 3  # durable


def test_a_batch_is_one_transaction_and_a_failure_inside_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    with store.batch():
        store.set_usage("a", "1")
        store.record_placed_orders("acct", "bot", "spot", ("1",), 0.0)
        store.save_risk([("acct", "1", "bot", "spot:X", "buy", None, None, "0", "0", 0, 0.0)], [])
    with pytest.raises(RuntimeError), store.batch():
        store.set_usage("b", "2")
        store.save_risk([("acct", "2", "bot", "spot:X", "buy", None, None, "0", "0", 0, 0.0)], [])
        raise RuntimeError("a bug halfway")
    again = StateStore(tmp_path / "s.db")
    assert again.usage_items("") == {"a": "1"}
    assert [row[1] for row in again.risk_rows()[0]] == ["1"]
    assert again.placed_orders("acct") == {"1": ("bot", "spot")}


_OLD_ORDER_TABLES = (  # the order tables as versions before WITHOUT ROWID made them
    "CREATE TABLE placed_orders (account TEXT NOT NULL, order_id TEXT NOT NULL, bot TEXT NOT NULL,"
    " market TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (account, order_id))",
    "CREATE TABLE risk_orders (account TEXT NOT NULL, order_id TEXT NOT NULL, bot TEXT NOT NULL,"
    " scope TEXT NOT NULL, side TEXT NOT NULL, price TEXT, quantity TEXT, filled TEXT NOT NULL,"
    " filled_quote TEXT NOT NULL, final INTEGER NOT NULL, ts REAL NOT NULL, PRIMARY KEY (account, order_id))",
    "CREATE TABLE risk_positions (bot TEXT NOT NULL, scope TEXT NOT NULL, account TEXT NOT NULL,"
    " qty TEXT NOT NULL, day TEXT NOT NULL, day_qty TEXT NOT NULL, day_cash TEXT NOT NULL, day_mark TEXT,"
    " PRIMARY KEY (bot, scope))",
)


def _old_state_db(path: Path, orders: int) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    for statement in _OLD_ORDER_TABLES:
        db.execute(statement)
    db.executemany("INSERT INTO placed_orders VALUES ('main', ?, 'alpha', 'spot', ?)",
                   [(f"{i}@spot:BTCUSDT", float(i)) for i in range(orders)])
    db.executemany("INSERT INTO risk_orders VALUES ('main', ?, 'alpha', 'spot:BTCUSDT', 'BUY', '1', '2', '0', '0', 0,"
                   " ?)", [(str(i), float(i)) for i in range(orders)])
    db.execute("INSERT INTO risk_positions VALUES ('alpha', 'spot:BTCUSDT', 'main', '3', 'd', '0', '0', NULL)")
    db.commit()
    db.close()


def _tables(path: Path) -> dict[str, str]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return {name: sql for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_an_older_state_db_gets_its_order_tables_without_rowids_and_keeps_every_row(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _old_state_db(db, 1200)
    store = StateStore(db)
    tables = _tables(db)
    assert all("WITHOUT ROWID" in tables[t] for t in ("placed_orders", "risk_orders", "risk_positions"))
    assert not any(name.endswith("_rebuilt") for name in tables)
    assert len(store.placed_orders("main")) == 1200
    assert store.placed_owner("main", ("7@spot:BTCUSDT",)) == "alpha"
    orders, positions = store.risk_rows()
    assert len(orders) == 1200 and positions == [("alpha", "spot:BTCUSDT", "main", "3", "d", "0", "0", None)]
    store.record_placed_orders("main", "beta", "spot", ("9999@spot:BTCUSDT",), 1.0)  # and it takes new rows
    store.close()
    assert StateStore(db).placed_owner("main", ("9999@spot:BTCUSDT",)) == "beta"


def test_a_kill_9_while_the_order_tables_are_rebuilt_leaves_the_old_tables_or_the_new_ones(tmp_path: Path) -> None:
    """The rebuild is one transaction: killed at any instant, the next start finds every row, in the old tables
    (and rebuilds them) or in the new ones."""
    code = ("import sys; sys.path.insert(0, %r)\nfrom pathlib import Path\nfrom keyproxy.state import StateStore\n"
            "print('go', flush=True)\nStateStore(Path(sys.argv[1]))\nprint('done', flush=True)\n"
            ) % str(Path(__file__).resolve().parents[1])
    outcomes = set()
    for attempt in range(8):
        db = tmp_path / f"state-{attempt}.db"
        _old_state_db(db, 30_000)
        proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "go\n"
        time.sleep(0.01 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        outcomes.add("rebuilt" if "WITHOUT ROWID" in _tables(db)["placed_orders"] else "old")
        store = StateStore(db)
        assert len(store.placed_orders("main")) == 30_000 and len(store.risk_rows()[0]) == 30_000
        assert "WITHOUT ROWID" in _tables(db)["risk_orders"]
        store.close()
    assert "old" in outcomes  # at least one kill landed before the commit (the check above then rebuilt it)
