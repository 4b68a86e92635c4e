"""The replay ids read back from the audit trail at start (proxy/replay.py `recent_replays`, `ReplayCache.preload`):
newest first, stopping at the window's start, and a line written by hand can neither stop the daemon starting nor
pin ids past any request's window (session 34's regression review)."""

from __future__ import annotations

import json
from pathlib import Path

from keyproxy.proxy.replay import LOOKBACK_S, ReplayCache, digest, recent_replays

NOW = 2_000_000_000.0


def _trail(directory: Path, *lines: object) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "audit-000001.jsonl").write_text("".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def test_the_window_is_read_back_and_a_replay_after_a_restart_is_refused(tmp_path: Path) -> None:
    rid = digest("bot-key:signature")
    _trail(tmp_path,
           {"ts": NOW - 2 * LOOKBACK_S, "event": "request.forward", "replay": [digest("old"), int(NOW * 1000) + 5000]},
           {"ts": NOW - 5, "event": "request.forward", "replay": [rid, int(NOW * 1000) + 55_000]},
           {"ts": NOW - 1, "event": "request.done", "replay": [digest("logon"), int(NOW * 1000) + 30_000]})
    seen = list(recent_replays(tmp_path, NOW - LOOKBACK_S))
    assert [d for d, _ in seen] == [digest("logon"), rid]  # newest first; the line before the window ends the read
    cache = ReplayCache()
    assert cache.preload(seen, int(NOW * 1000)) == 2
    assert cache.first_sighting(rid, int(NOW * 1000) + 55_000, int(NOW * 1000)) is False


def test_a_hand_written_line_neither_stops_the_start_nor_pins_ids_for_ever(tmp_path: Path) -> None:
    forever = {"ts": NOW - 1, "event": "request.forward", "replay": [digest("pinned"), 10 ** 18]}
    _trail(tmp_path, "[" * 100_000 + "]" * 100_000, "not json", {"ts": "x", "replay": [digest("a"), 1]},
           {"ts": NOW - 1, "replay": ["short", int(NOW * 1000)]}, forever)
    seen = list(recent_replays(tmp_path, NOW - LOOKBACK_S))
    assert seen == [(digest("pinned"), int((NOW - 1) * 1000 + LOOKBACK_S * 1000))]  # clamped to its line's window
