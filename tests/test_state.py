"""Nonce sequences: strictly increasing across clock steps, restarts and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyproxy.state import NonceSequence, StateStore


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


def test_kill_9_never_repeats_a_nonce(tmp_path: Path) -> None:
    """A child hands out nonces as fast as it can; after each kill the next nonce is above all it printed."""
    db = tmp_path / "s.db"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pathlib import Path\nfrom keyproxy.state import NonceSequence, StateStore\n"
            "seq = NonceSequence(StateStore(Path(%r)), clock_us=lambda: 1, reserve_us=100)\n"
            "while True: print(seq.next('k'), flush=True)\n") % (str(Path(__file__).resolve().parents[1]), str(db))
    seen: list[int] = []
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        values = [int(v) for v in out.split()[:-1]]  # the last line may be torn
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
