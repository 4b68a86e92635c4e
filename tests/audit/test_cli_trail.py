"""The audit trail as commands write it with no daemon running: real CLI subprocesses on one home."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import Home


def trail_lines(home: Home) -> list[bytes]:
    [f] = sorted((home.root / "data" / "keyproxy" / "audit").glob("audit-*.jsonl"))
    return f.read_bytes().splitlines(keepends=True)


def audit_file(home: Home) -> Path:
    [f] = sorted((home.root / "data" / "keyproxy" / "audit").glob("audit-*.jsonl"))
    return f


def set_up(home: Home) -> None:
    assert home.run("init").returncode == 0
    r = home.run("key", "add", "main", "--exchange", "binance",
                 input=json.dumps({"api_key": "A" * 24, "secret": "S" * 24}))
    assert r.returncode == 0, r.stderr


def test_lines_a_command_wrote_cannot_be_cut_unseen(home: Home) -> None:
    """A bot added and revoked with the daemon stopped, those lines then cut from the trail: verify says so, and
    the next command's lines go on from the line recorded, so the cut stays found (the review's PoC: it passed)."""
    set_up(home)
    kept = len(trail_lines(home))
    for args in (("bot", "add", "evil", "--account", "main", "--scope", "read"), ("bot", "revoke", "evil")):
        r = home.run(*args)
        assert r.returncode == 0, r.stderr
    assert any(b'"evil"' in line for line in trail_lines(home)[kept:])
    audit_file(home).write_bytes(b"".join(trail_lines(home)[:kept]))
    r = home.run("audit", "verify")
    assert r.returncode == 1 and "lines were removed from the end" in r.stdout, r.stdout
    r = home.run("bot", "add", "later", "--account", "main", "--scope", "read")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line)["event"] for line in trail_lines(home)[kept:]]
    assert events[0] == "trail.cut"
    r = home.run("audit", "verify")
    assert r.returncode == 1 and "were deleted, inserted or reordered" in r.stdout, r.stdout


def test_commands_run_at_once_keep_one_chain(home: Home) -> None:
    """Six `bot add` at once: each writes the trail in turn (one writer at a time), so the chain verifies and
    every seq is there once (the review's PoC forked it: seqs 3 and 4 written four times each)."""
    set_up(home)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: home.run("bot", "add", f"par{i}", "--account", "main", "--scope", "read"),
                                range(6)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    seqs = [json.loads(line)["seq"] for line in trail_lines(home)]
    assert seqs == list(range(1, len(seqs) + 1))
    r = home.run("audit", "verify")
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout
