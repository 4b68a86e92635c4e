"""Tamper evidence: every edit, deletion, insertion, reordering and truncation is named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from keyproxy.audit.trail import AuditTrail, AuditUnavailable, canonical, mac_of, trail_files, verify

KEY = b"k" * 32


def make_trail(tmp_path: Path, n: int = 10, **kw) -> AuditTrail:  # type: ignore[no-untyped-def]
    trail = AuditTrail(tmp_path / "audit", KEY, **kw)
    for i in range(n):
        trail.append("request.done", bot=f"b{i % 3}", account="main", status=200)
    return trail


def lines_of(tmp_path: Path) -> list[bytes]:
    [f] = trail_files(tmp_path / "audit")
    return f.read_bytes().splitlines(keepends=True)


def rewrite(tmp_path: Path, lines: list[bytes]) -> None:
    [f] = trail_files(tmp_path / "audit")
    f.write_bytes(b"".join(lines))


def check(tmp_path: Path) -> tuple[bool, str | None]:
    r = verify(trail_files(tmp_path / "audit"), KEY)
    return r.ok, r.problem


def test_untouched_trail_verifies(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    assert check(tmp_path) == (True, None)
    assert verify(trail_files(tmp_path / "audit"), KEY).lines == 10


def test_edited_field_is_named(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    lines[4] = lines[4].replace(b'"status":200', b'"status":500')
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 5" in problem and "MAC mismatch" in problem  # type: ignore[operator]


def test_deleted_line_is_named(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    del lines[3]
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 4" in problem and "seq 5 where 4 was expected" in problem  # type: ignore[operator]


def test_swapped_lines_are_named(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    lines[2], lines[3] = lines[3], lines[2]
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 3" in problem  # type: ignore[operator]


def test_forged_line_without_the_key_is_named(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    prev = json.loads(lines[5])
    forged = {"seq": prev["seq"] + 1, "ts": prev["ts"], "event": "request.done", "bot": "x", "prev": "0" * 64}
    forged["mac"] = mac_of(b"not the key" * 3, forged)
    lines.insert(6, canonical(forged) + b"\n")
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 7" in problem and "MAC mismatch" in problem  # type: ignore[operator]


def test_forged_line_with_the_key_still_breaks_the_chain(tmp_path: Path) -> None:
    """Even an insider with the key cannot insert a line without rewriting all that follow."""
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    prev = json.loads(lines[5])
    forged = {"seq": prev["seq"] + 1, "ts": prev["ts"], "event": "request.done", "prev": "0" * 64}
    forged["mac"] = mac_of(KEY, forged)
    lines.insert(6, canonical(forged) + b"\n")
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 7" in problem  # type: ignore[operator]


def test_truncated_tail_is_named(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    [f] = trail_files(tmp_path / "audit")
    f.write_bytes(f.read_bytes()[:-20])
    ok, problem = check(tmp_path)
    assert not ok and "line 10" in problem and "truncated tail" in problem  # type: ignore[operator]


def test_lines_cut_from_the_end_are_found_with_the_recorded_head(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    lines = lines_of(tmp_path)
    rewrite(tmp_path, lines[:7])
    assert check(tmp_path) == (True, None)  # on its own the shorter file is consistent...
    r = verify(trail_files(tmp_path / "audit"), KEY, recorded_head=10)
    assert not r.ok and "removed from the end" in r.problem  # type: ignore[operator]


def test_wrong_key_fails_at_line_1(tmp_path: Path) -> None:
    make_trail(tmp_path).close()
    r = verify(trail_files(tmp_path / "audit"), b"x" * 32)
    assert not r.ok and "line 1" in r.problem  # type: ignore[operator]


def test_chain_continues_across_restart_and_rotation(tmp_path: Path) -> None:
    t = make_trail(tmp_path, 5, max_bytes=600)
    t.close()
    t = AuditTrail(tmp_path / "audit", KEY, max_bytes=600)
    assert t.head.seq == 5
    for _ in range(10):
        t.append("admin", op="bot.add", bot="x", uid=0)
    t.close()
    files = trail_files(tmp_path / "audit")
    assert len(files) > 2
    r = verify(files, KEY)
    assert r.ok and r.lines == 15 and r.last_seq == 15
    files[1].unlink()  # a whole middle file deleted
    r = verify(trail_files(tmp_path / "audit"), KEY)
    assert not r.ok


def test_torn_line_from_a_crash_is_cut_on_resume(tmp_path: Path) -> None:
    make_trail(tmp_path, 3).close()
    [f] = trail_files(tmp_path / "audit")
    torn = b'{"seq":4,"ts":1,"ev'  # kill -9 in the middle of a write
    with open(f, "ab") as fh:
        fh.write(torn)
    t = AuditTrail(tmp_path / "audit", KEY)
    assert t.recovered_bytes == len(torn) and t.head.seq == 3
    t.append("daemon.start")
    t.close()
    assert check(tmp_path) == (True, None)


def test_unwritable_trail_raises_then_recovers_with_a_valid_chain(tmp_path: Path) -> None:
    t = make_trail(tmp_path, 3)
    [f] = trail_files(tmp_path / "audit")
    moved = f.with_suffix(".moved")
    os.rename(f, moved)
    f.mkdir()  # the trail file replaced by a directory
    with pytest.raises(AuditUnavailable):
        t.append("request.forward")
    with pytest.raises(AuditUnavailable):
        t.append("request.forward")
    f.rmdir()
    os.rename(moved, f)
    t.append("request.forward", bot="b")
    t.close()
    r = verify(trail_files(tmp_path / "audit"), KEY)
    assert r.ok and r.last_seq == 4


def test_fsync_always_mode(tmp_path: Path) -> None:
    make_trail(tmp_path, 3, fsync="always").close()
    assert check(tmp_path) == (True, None)


def test_only_catalogued_events_are_written(tmp_path: Path) -> None:
    """Every line a reader of the trail meets is documented in audit/events.py."""
    from keyproxy.audit.events import EVENTS

    t = AuditTrail(tmp_path / "audit", KEY)
    with pytest.raises(ValueError, match="not in the catalogue"):
        t.append("made.up")
    assert all(isinstance(text, str) and text for text in EVENTS.values())


@pytest.mark.parametrize("fields", [
    {},  # nothing but the trail's own fields
    {"a": 1, "zz": "last", "mac_like": [1, 2], "ma": None},  # keys either side of "mac", and next to it
    {"bot": "b\u00e9\u4e2d", "path": "/api/v3/order?x=\"q\"\\", "nested": {"z": 1, "a": {"y": 2.5, "b": True}}},
    {"note": "\n\t\u0000", "amount": 1e16, "tiny": 1.5e-7, "big": 2**70},
])
def test_each_line_is_the_canonical_encoding_of_its_fields_and_mac(tmp_path: Path, fields: dict) -> None:
    """append encodes a line once, splitting it around "mac"; the bytes must be what canonical() gives, the MAC
    what mac_of() gives, for any field names and values (verify depends on both)."""
    trail = AuditTrail(tmp_path / "audit", KEY)
    written = trail.append("request.done", **fields)
    trail.close()
    [raw] = lines_of(tmp_path)
    assert raw == canonical(written) + b"\n"
    without = {k: v for k, v in written.items() if k != "mac"}
    assert written["mac"] == mac_of(KEY, without) and json.loads(raw) == written
    assert check(tmp_path) == (True, None)


def _legacy_line(seq: int, prev: str, **fields: object) -> bytes:
    """A line as keyproxy wrote it before the trail moved to orjson: json, sorted keys, ASCII-escaped."""
    import hashlib
    import hmac as hmac_mod

    line = {**fields, "seq": seq, "ts": 1.0, "event": "request.done", "prev": prev}
    legacy = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode
    line["mac"] = hmac_mod.new(KEY, legacy(line).encode(), hashlib.sha256).hexdigest()
    return legacy(line).encode()


def test_a_trail_begun_by_an_older_version_verifies_across_the_change_of_encoder(tmp_path: Path) -> None:
    """Lines in the legacy json form (ASCII-escaped) then lines in orjson's (UTF-8): one chain, both MACs
    accepted; an edit of either kind of line is still named."""
    import hashlib

    first = _legacy_line(1, "0" * 64, bot="b\u00e9", status=200)
    second = _legacy_line(2, hashlib.sha256(first).hexdigest(), bot="b", status=200)
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "audit-000001.jsonl").write_bytes(first + b"\n" + second + b"\n")
    trail = AuditTrail(tmp_path / "audit", KEY)
    trail.append("request.done", bot="b\u00e9\u4e2d", status=201)
    trail.close()
    lines = lines_of(tmp_path)
    assert b"\\u00e9" in lines[0] and "b\u00e9\u4e2d".encode() in lines[2]  # each in its own encoder's form
    assert check(tmp_path) == (True, None)
    for i in (0, 2):
        edited = list(lines)
        edited[i] = edited[i].replace(b'"status":20', b'"status":50')
        rewrite(tmp_path, edited)
        ok, problem = check(tmp_path)
        assert not ok and f"line {i + 1}" in problem and "MAC mismatch" in problem  # type: ignore[operator]


def test_a_line_reencoded_in_the_other_form_keeps_its_mac_but_breaks_the_chain(tmp_path: Path) -> None:
    """Rewriting a line's bytes in the legacy form keeps its MAC valid (same fields) but the next line's `prev`
    names the bytes as written: the substitution is still found."""
    trail = AuditTrail(tmp_path / "audit", KEY)
    for _ in range(3):
        trail.append("request.done", bot="b\u00e9", account="main", status=200)  # orjson writes it as UTF-8
    trail.close()
    lines = lines_of(tmp_path)
    parsed = json.loads(lines[1])
    legacy = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=True, indent=None).encode()
    assert legacy + b"\n" != lines[1]  # the same fields, \u-escaped
    rewrite(tmp_path, [*lines[:1], legacy + b"\n", *lines[2:]])
    ok, problem = check(tmp_path)
    assert not ok and "line 3" in problem and "does not chain" in problem  # type: ignore[operator]
    # bytes that parse to the same fields but are in neither form keyproxy writes: named at the line itself
    rewrite(tmp_path, [*lines[:1], legacy.replace(b'"status":200', b'"status": 200') + b"\n", *lines[2:]])
    ok, problem = check(tmp_path)
    assert not ok and "line 2" in problem and "canonical form" in problem  # type: ignore[operator]


def test_a_member_named_twice_in_a_line_is_found(tmp_path: Path) -> None:
    """The MAC covers the parsed fields, and a parser keeps one of a member named twice (json the last, others
    the first): a member put in front of the last line (whose bytes no next line's `prev` covers yet) is found."""
    make_trail(tmp_path, n=3).close()
    lines = lines_of(tmp_path)
    lines[2] = lines[2].replace(b"{", b'{"bot":"innocent",', 1)
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 3" in problem and "canonical form" in problem  # type: ignore[operator]


def test_a_trail_cut_before_a_restart_goes_on_from_the_recorded_line(tmp_path: Path) -> None:
    """Lines cut from the end while keyproxy was stopped (state.db recorded seq 10): the chain goes on from seq 10,
    not from the cut end, so the lines written after the restart cannot hide the cut from verify."""
    make_trail(tmp_path, n=10).close()
    rewrite(tmp_path, lines_of(tmp_path)[:6])
    trail = AuditTrail(tmp_path / "audit", KEY, recorded_seq=10)
    for _ in range(5):
        trail.append("request.done", bot="b", account="main", status=200)
    trail.close()
    added = [json.loads(x) for x in lines_of(tmp_path)[6:]]
    assert [(x["event"], x["seq"]) for x in added[:2]] == [("trail.cut", 11), ("request.done", 12)]
    assert (added[0]["found_seq"], added[0]["recorded_seq"]) == (6, 10)
    ok, problem = check(tmp_path)
    assert not ok and "line 7" in problem and "seq 11 where 7 was expected" in problem  # type: ignore[operator]
    # a trail that ends where keyproxy recorded, or past it (state.db's head is written each second), goes on as ever
    fresh = tmp_path / "fresh"
    make_trail(fresh, n=4).close()
    AuditTrail(fresh / "audit", KEY, recorded_seq=3).close()
    trail = AuditTrail(fresh / "audit", KEY, recorded_seq=4)
    trail.append("daemon.start")
    trail.close()
    assert check(fresh) == (True, None)


def test_the_newest_file_deleted_while_the_trail_writes_is_found(tmp_path: Path) -> None:
    """The file under the path went away while open (the newest of several removed): the trail reopens the newest
    left, and goes on from the line it last wrote, so the gap stays in the chain."""
    trail = make_trail(tmp_path, n=30, max_bytes=2000)
    while trail_files(tmp_path / "audit")[-1].stat().st_size == 0:  # the newest file holds lines
        trail.append("request.done", bot="b", account="main", status=200)
    files = trail_files(tmp_path / "audit")
    assert len(files) >= 3
    written = trail.head.seq
    files[-1].unlink()
    trail.append("request.done", bot="b", account="main", status=200)
    trail.close()
    last = [json.loads(x) for f in trail_files(tmp_path / "audit") for x in f.read_bytes().splitlines()][-2:]
    assert [(x["event"], x["seq"]) for x in last] == [("trail.cut", written + 1), ("request.done", written + 2)]
    result = verify(trail_files(tmp_path / "audit"), KEY)
    assert not result.ok and f"seq {written + 1} where" in result.problem  # type: ignore[operator]


def test_the_only_file_deleted_while_the_trail_writes_is_said_in_the_chain(tmp_path: Path) -> None:
    trail = make_trail(tmp_path, n=5)
    trail_files(tmp_path / "audit")[0].unlink()
    trail.append("request.done", bot="b", account="main", status=200)
    trail.close()
    lines = [json.loads(x) for x in lines_of(tmp_path)]
    assert [(x["event"], x["seq"]) for x in lines] == [("trail.cut", 6), ("request.done", 7)]
    assert (lines[0]["found_seq"], lines[0]["recorded_seq"]) == (0, 5)
    assert not verify(trail_files(tmp_path / "audit"), KEY).ok


def test_the_head_state_db_may_record_is_the_fsynced_one(tmp_path: Path) -> None:
    """A power loss can take lines written but not fsynced (`fsync = "interval"`): state.db records only what was
    fsynced, so a restart after one never reads the lost lines as cut."""
    import asyncio

    trail = make_trail(tmp_path, n=3)
    assert (trail.head.seq, trail.synced.seq) == (3, 0)

    async def one_interval() -> None:
        task = asyncio.create_task(trail.run_flusher())
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(one_interval())
    assert trail.synced.seq == 3
    trail.append("request.done", bot="b", account="main", status=200)
    assert trail.synced.seq == 3
    trail.close()
    assert trail.synced.seq == 4
    always = AuditTrail(tmp_path / "audit", KEY, fsync="always")
    always.append("request.done", bot="b", account="main", status=200)
    assert always.synced.seq == always.head.seq == 5
    always.close()
