"""Accounts-file validation, loopback guard and the ``python -m keyproxy.emulator`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from keyproxy.emulator.accounts import AccountsError, dump_accounts, load_accounts, parse_accounts
from keyproxy.emulator.app import build_app, check_loopback
from keyproxy.emulator.keys import new_ed25519_key, new_emulated_key, new_rsa_key

REPO = Path(__file__).resolve().parents[2]


def _doc(**entry):
    base = {"exchange": "binance", "api_key": "k" * 64, "key_type": "hmac", "secret": "s"}
    base.update(entry)
    return {"keys": [{k: v for k, v in base.items() if v is not None}]}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"nokeys": []}, "top level"),
        (_doc(key_type="dsa"), "'key_type' must be one of"),
        (_doc(secret=None), "hmac key needs a non-empty 'secret'"),
        (_doc(key_type="ed25519"), "must not have 'secret'"),
        (_doc(key_type="ed25519", secret=None, public_key="nope"), "PEM 'BEGIN PUBLIC KEY'"),
        (
            _doc(key_type="ed25519", secret=None, public_key=new_rsa_key()[1]),
            "not an ed25519 public key",
        ),
        (
            _doc(key_type="rsa", secret=None, public_key=new_ed25519_key()[1]),
            "not an rsa public key",
        ),
        (_doc(balances={"USDT": "lots"}), "not a decimal"),
        (_doc(balances={"USDT": "-1"}), ">= 0"),
        (_doc(permissions=[]), "'permissions' must be an object"),
        (_doc(account=""), "'account' must be a non-empty string"),
        ({"keys": _doc()["keys"] * 2}, "listed twice"),
    ],
)
def test_accounts_validation(doc, fragment):
    with pytest.raises(AccountsError, match="accounts: ") as info:
        parse_accounts(doc)
    assert fragment in str(info.value)


def test_accounts_round_trip_and_exchange_checks(tmp_path):
    keys = [new_emulated_key(t)[0] for t in ("hmac", "ed25519", "rsa")]
    keys[0].account = "main"
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(dump_accounts(keys)))
    assert load_accounts(path) == keys
    with pytest.raises(AccountsError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_accounts(tmp_path / "bad.json")
    with pytest.raises(AccountsError, match="not 64 alphanumerics"):
        build_app(parse_accounts(_doc(api_key="short")))
    with pytest.raises(AccountsError, match="'ftx' is not emulated"):
        build_app(parse_accounts(_doc(exchange="ftx")))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_hosts_refused(host):
    with pytest.raises(ValueError, match="refusing to listen"):
        check_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_accepted(host):
    check_loopback(host)


def _run(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "keyproxy.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_cli_serves_prints_port_and_writes_journal(tmp_path):
    key, _ = new_emulated_key("hmac")
    accounts, journal = tmp_path / "accounts.json", tmp_path / "journal.jsonl"
    accounts.write_text(json.dumps(dump_accounts([key])))
    proc = _run(
        "--host", "127.0.0.1", "--port", "0", "--accounts", str(accounts), "--journal", str(journal)
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("emulator listening on http://127.0.0.1:"), (
            line,
            proc.stderr.read(),
        )
        url = line.rsplit(" ", 1)[1]
        with urllib.request.urlopen(url + "/api/v3/time", timeout=5) as resp:
            assert "serverTime" in json.load(resp)
        (entry,) = [json.loads(x) for x in journal.read_text().splitlines()]
        assert entry["path"] == "/api/v3/time" and entry["status"] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_cli_refuses_non_loopback_and_bad_accounts(tmp_path):
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"keys": []}))
    proc = _run("--host", "0.0.0.0", "--port", "0", "--accounts", str(accounts))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "not a loopback address" in err
    accounts.write_text(json.dumps({"keys": [{"exchange": "binance"}]}))
    proc = _run("--port", "0", "--accounts", str(accounts))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "keys[0]: 'api_key'" in err
