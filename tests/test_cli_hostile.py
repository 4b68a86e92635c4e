"""Session 35's review of the operator surface as a careless or hostile user: the real CLI in a subprocess."""

from __future__ import annotations

import json

import pytest

from keyproxy.admin.controls import Controls
from keyproxy.errors import UsageError
from tests.conftest import Home
from tests.test_cli import creds
from tests.test_cli_operator import ready


def test_serve_host_must_be_an_ip_literal(home: Home) -> None:
    """`127.evil.example` passed the loopback check as a name starting with "127." and could resolve anywhere."""
    ready(home)
    for host in ("127.evil.example", "127.0.0.1.nip.io"):
        r = home.run("serve", "--host", host, "--port", "1")
        assert r.returncode == 2 and "--host: must be an IP address" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_an_empty_allowlist_is_refused_not_stored_as_none(home: Home) -> None:
    """`symbols=,` was stored as an empty allowlist, which reads back as no allowlist: every symbol passed."""
    ready(home)
    assert home.run("bot", "set", "b1", "symbols=ETHUSDT").returncode == 0
    r = home.run("bot", "set", "b1", "symbols=,")
    assert r.returncode == 2 and "empty list; write symbols=none" in r.stderr, r.stderr
    shown = json.loads(home.run("bot", "show", "b1", "--json").stdout)
    assert shown["policy"]["symbols"] == ["ETHUSDT"]


def test_a_rate_a_float_cannot_hold_is_refused(home: Home) -> None:
    """1e999 was stored as inf (which the vault then could not read back: every later `bot set` and a revocation
    failed), 1e-400 as 0 (no limit at all)."""
    ready(home)
    for value in ("1e999", "1e-400"):
        r = home.run("bot", "set", "b1", f"requests_per_second={value}")
        assert r.returncode == 2 and "requests_per_second: must be between" in r.stderr, r.stderr
    assert home.run("bot", "set", "b1", "requests_per_second=5").returncode == 0


def test_status_shows_what_a_bot_sent_escaped(home: Home) -> None:
    """A halt's reason (an anomaly rule's carries a withdrawal address a bot sent) reached the terminal raw."""
    ready(home)
    assert home.run("halt", "--bot", "b1", "--reason", "to 0xabc\x1b]0;owned\x07\x1b[2J").returncode == 0
    out = home.run("status").stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "to 0xabc\\x1b]0;owned\\x07\\x1b[2J" in out


def test_a_secret_pasted_as_a_field_name_is_not_echoed(home: Home) -> None:
    ready(home)
    pasted = "KPCANARYSECRET0123456789abcdefXYZ"
    doc = json.loads(creds())
    r = home.run("key", "add", "other", "--exchange", "binance", input=json.dumps({**doc, pasted: ""}))
    assert r.returncode == 2 and "1 more whose name is not shown" in r.stderr, r.stderr
    assert pasted not in r.stderr and pasted[:12] not in r.stderr
    r = home.run("key", "add", "other", "--exchange", "binance", input=json.dumps({**doc, "apikey": "x"}))
    assert r.returncode == 2 and "apikey" in r.stderr  # a typo is still named


def test_a_damaged_last_audit_line_is_one_clear_line_everywhere(home: Home) -> None:
    """A last line `{}` made `halt --all` and `bot revoke` (the kill switch) internal errors with a traceback in
    the log; a non-ASCII MAC made `audit verify` one."""
    ready(home)
    newest = max(home.root.rglob("audit-*.jsonl"))
    with open(newest, "ab") as f:
        f.write(b"{}\n")
    for args in (("halt", "--all", "--reason", "x"), ("bot", "revoke", "b1")):
        r = home.run(*args)
        assert r.returncode != 0 and "audit trail damaged" in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = newest.read_bytes().splitlines()
    forged = json.loads(lines[-2])
    forged["mac"] = "\u00e9" * 64
    newest.write_bytes(b"\n".join(lines[:-2] + [json.dumps(forged).encode()]) + b"\n")
    r = home.run("audit", "verify")
    assert r.returncode == 1 and "MAC mismatch" in r.stdout and "internal error" not in r.stderr, (r.stdout, r.stderr)
    with open(newest, "ab") as f:
        f.write(b'[1]\n{"ts": "x", "seq": 9}\n' + b"[" * 100_000 + b"\n")
    r = home.run("audit", "export", "--since", "0")
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr


def test_a_halt_of_everything_with_a_target_is_refused() -> None:
    """Over the admin socket `{"scope": "all", "target": "x"}` was listed as a halt, stopped nothing, and no resume
    lifted it."""
    controls = Controls(None, {}, "http://127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="names no target"):
        controls.halt("all", "x", "reason")
