"""The incident table stays bounded (older alerts pruned, records of actions kept) and is read a page at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from keyproxy import state as state_mod
from keyproxy.admin.controls import Controls
from keyproxy.errors import UsageError
from keyproxy.state import StateStore


def add(store: StateStore, n: int, actions: list[str]) -> int:
    return store.add_incident(float(n), "auth_failures", f"ip:net{n}", actions, "r", [f"req{n}"], ["look"])


def test_old_alerts_are_pruned_past_the_bound_and_records_of_actions_never(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_mod, "MAX_INCIDENTS", 50, raising=False)
    store = StateStore(tmp_path / "state.db")
    acted = [add(store, n, ["suspend_bot"] if n % 2 else ["halt", "cancel_orders"]) for n in range(30)]
    ids = [add(store, 100 + n, ["alert"]) for n in range(300)]
    acted += [add(store, 1000 + n, ["quarantine_key"]) for n in range(5)]
    ids += [add(store, 2000 + n, ["alert"]) for n in range(20)]
    kept = [row[0] for row in store.incidents()]
    newest = sorted(acted + ids)[-50:]
    assert set(newest) <= set(kept)  # the newest 50, whatever they are
    assert set(acted) <= set(kept)  # every record of an action, however old
    assert len(kept) == len(set(newest) | set(acted)) == 80  # and no older alert
    assert store.incident_count() == 80


def test_a_table_grown_by_an_older_version_shrinks_a_step_per_write(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path / "state.db")
    for n in range(400):
        add(store, n, ["alert"])
    monkeypatch.setattr(state_mod, "MAX_INCIDENTS", 10, raising=False)
    monkeypatch.setattr(state_mod, "PRUNE_INCIDENTS", 100, raising=False)
    add(store, 400, ["alert"])
    assert len(store.incidents()) == 301  # no write deletes more than PRUNE_INCIDENTS
    for n in range(4):
        add(store, 401 + n, ["alert"])
    assert len(store.incidents()) == 10


def test_the_record_and_its_pruning_are_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pruning that fails takes the new record with it (and the reverse): never half a write."""
    monkeypatch.setattr(state_mod, "MAX_INCIDENTS", 3, raising=False)
    store = StateStore(tmp_path / "state.db")
    for n in range(3):
        add(store, n, ["alert"])
    store._db.execute("CREATE TEMP TRIGGER keep BEFORE DELETE ON incidents BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        add(store, 3, ["alert"])
    assert [row[0] for row in store.incidents()] == [1, 2, 3]
    store._db.execute("DROP TRIGGER keep")
    assert add(store, 4, ["alert"]) == 4 and store.incident_count() == 3  # and the store writes on


def test_incidents_are_read_a_page_at_a_time(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    for n in range(500):
        add(store, n, ["alert"])
    controls = Controls(None, {}, "http://127.0.0.1:1", state=store)  # type: ignore[arg-type]
    page = controls.list_incidents()
    assert [i["id"] for i in page] == list(range(301, 501))  # the newest 200, oldest first
    older = controls.list_incidents(limit=50, before=page[0]["id"])
    assert [i["id"] for i in older] == list(range(251, 301))
    newer = controls.list_incidents(limit=3, since=10)
    assert [i["id"] for i in newer] == [11, 12, 13]  # following: the oldest above the id
    assert controls.list_incidents(since=500) == []
    assert controls.show_incident(7)["subject"] == "ip:net6"
    assert store.incident_count() == 500  # what `status` shows: one count, not every row read
    for bad in ({"limit": 0}, {"limit": 1_001}, {"limit": True}, {"limit": "5"}, {"before": -1}, {"since": 1.5}):
        with pytest.raises(UsageError):
            controls.list_incidents(**bad)  # type: ignore[arg-type]
