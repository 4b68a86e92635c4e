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
    make_trail(tmp_path, n=3).close()
    lines = lines_of(tmp_path)
    parsed = json.loads(lines[1])
    lines[1] = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=True, indent=None).encode()
    lines[1] = lines[1].replace(b'"status":200', b'"status": 200') + b"\n"
    rewrite(tmp_path, lines)
    ok, problem = check(tmp_path)
    assert not ok and "line 3" in problem and "does not chain" in problem  # type: ignore[operator]
