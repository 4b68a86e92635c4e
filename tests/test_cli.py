"""The CLI as an operator uses it: real subprocesses, no terminal, secrets only on stdin."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import Home

CANARY_KEY = "KPCANARYAPIKEY0123456789abcdef"
CANARY_SECRET = "KPCANARYSECRET0123456789abcdef"


def creds(api_key: str = CANARY_KEY, secret: str = CANARY_SECRET) -> str:
    return json.dumps({"api_key": api_key, "secret": secret})


def assert_no_canary(*texts: str) -> None:
    for t in texts:
        assert "KPCANARY" not in t


def test_init_add_list_show_remove(home: Home) -> None:
    r = home.run("init")
    assert r.returncode == 0, r.stderr
    assert "master key: passphrase" in r.stdout
    r = home.run("key", "add", "main", "--exchange", "binance", input=creds())
    assert r.returncode == 0, r.stderr
    r = home.run("key", "list", "--json")
    assert r.returncode == 0
    [acct] = json.loads(r.stdout)
    assert acct["name"] == "main" and acct["exchange"] == "binance" and len(acct["fingerprint"]) == 12
    r2 = home.run("key", "show", "main")
    assert acct["fingerprint"] in r2.stdout
    r3 = home.run("key", "remove", "main")
    assert r3.returncode == 2 and "--yes" in r3.stderr  # a usage error: confirm, or pass --yes
    r4 = home.run("key", "remove", "main", "--yes")
    assert r4.returncode == 0
    assert json.loads(home.run("key", "list", "--json").stdout) == []
    assert_no_canary(r.stdout, r.stderr, r2.stdout, r3.stderr, r4.stdout)


def test_init_refuses_to_overwrite(home: Home) -> None:
    assert home.run("init").returncode == 0
    before = home.vault.read_bytes()
    r = home.run("init")
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    assert home.vault.read_bytes() == before


def test_wrong_passphrase(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert home.run("init").returncode == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)
    r = home.run("key", "list", env={"KEYPROXY_PASSPHRASE_FILE": str(wrong)})
    assert (r.returncode, r.stderr.strip()) == (1, "keyproxy: vault locked: wrong master key")


def test_headless_init_without_passphrase_names_the_sources(home: Home) -> None:
    env = dict(home.env)
    del env["KEYPROXY_PASSPHRASE_FILE"]
    home.env = env
    r = home.run("init")
    assert r.returncode == 1
    assert "NoKeyringError" in r.stderr and "KEYPROXY_PASSPHRASE_FILE" in r.stderr and "key file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not home.vault.exists()


def test_key_file_source(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kf = tmp_path / "k.bin"
    kf.write_bytes(bytes(range(32)))
    kf.chmod(0o600)
    assert home.run("--key-file", str(kf), "init", "--master-key", "file").returncode == 0
    r = home.run("--key-file", str(kf), "key", "add", "a", "--exchange", "binance", input=creds())
    assert r.returncode == 0, r.stderr
    r = home.run("vault", "status", "--json", env={"KEYPROXY_KEY_FILE": str(kf)})
    assert json.loads(r.stdout)["master_source"] == "file"


@pytest.mark.parametrize("args, stdin, message", [
    (["key", "add", "Bad!", "--exchange", "binance"], creds(), "invalid account name"),
    (["key", "add", "a", "--exchange", "ftx"], creds(), "unknown exchange 'ftx'; known: binance, bybit"),
    (["key", "add", "a", "--exchange", "binance", "--key-type", "dsa"], creds(), "unknown key type"),
    (["key", "add", "a", "--exchange", "binance"], creds(secret=""), "secret is empty"),
    (["key", "add", "a", "--exchange", "binance"], "not json " + CANARY_SECRET, "stdin is not valid JSON"),
    (["key", "add", "a", "--exchange", "binance"], json.dumps({"api_key": "k", "secrett": "s"}),
     "unknown credential field"),
    (["key", "add", "a", "--exchange", "binance"], json.dumps({"api_key": 5}), "must be a string"),
    (["key", "add", "a", "--exchange", "binance"], json.dumps({"api_key": CANARY_KEY + "\r\nX-Injected: 1",
                                                                "secret": CANARY_SECRET}), "control character"),
    (["key", "add", "a", "--exchange", "binance"], "", "stdin is not valid JSON"),
    (["key", "add", "a", "--exchange", "okx"], creds(), "okx keys need a passphrase"),
    (["key", "add", "a", "--exchange", "binance", "--base-url", "http://evil.example"], creds(), "--base-url"),
    (["key", "add", "a", "--exchange", "binance", "--base-url", "http://127.0.0.1:9"], creds(), "--insecure-upstream"),
    (["key", "add", "a", "--exchange", "binance", "--base-url", "https://evil.example"], creds(),
     "not one of binance's hosts"),
    (["key", "add", "a", "--exchange", "binance", "--rotate-every", "soon"], creds(), "invalid duration"),
    (["key", "show", "nope"], "", "no account named 'nope'"),
    (["key", "remove", "nope", "--yes"], "", "no account named 'nope'"),
])
def test_bad_input_is_one_line_and_writes_nothing(home: Home, args: list[str], stdin: str, message: str) -> None:
    assert home.run("init").returncode == 0
    assert home.run("key", "add", "existing", "--exchange", "binance", input=creds("AK2", "SK2")).returncode == 0
    before = sqlite3.connect(home.vault).execute("SELECT COUNT(*) FROM account_versions").fetchone()
    r = home.run(*args, input=stdin)
    # asked wrongly (a bad value): usage, 2; asked for what is not there: an expected failure, 1
    assert r.returncode == (1 if message.startswith("no account named") else 2), r
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert_no_canary(r.stdout, r.stderr)
    after = sqlite3.connect(home.vault).execute("SELECT COUNT(*) FROM account_versions").fetchone()
    assert before == after


def test_duplicate_account(home: Home) -> None:
    home.run("init")
    assert home.run("key", "add", "a", "--exchange", "binance", input=creds()).returncode == 0
    r = home.run("key", "add", "a", "--exchange", "binance", input=creds("x", "y"))
    assert r.returncode == 1 and "already exists" in r.stderr


def test_usage_errors_exit_2(home: Home) -> None:
    assert home.run().returncode == 2
    assert home.run("key", "add").returncode == 2
    assert home.run("frobnicate").returncode == 2


def test_corrupt_vault_file_is_named(home: Home) -> None:
    home.vault.parent.mkdir(parents=True)
    home.vault.write_bytes(b"this is no database" * 300)
    r = home.run("key", "list")
    assert r.returncode == 1 and str(home.vault) in r.stderr and "not a keyproxy vault" in r.stderr


def test_tampered_record_is_named_and_others_open(home: Home) -> None:
    home.run("init")
    for name in ("alpha", "bravo", "charlie"):
        added = home.run("key", "add", name, "--exchange", "binance", input=creds(f"AK{name}", f"SK{name}"))
        assert added.returncode == 0
    db = sqlite3.connect(home.vault)
    db.execute("UPDATE account_versions SET secret = (SELECT secret FROM account_versions WHERE account_id ="
               " (SELECT id FROM accounts WHERE name='charlie')) WHERE account_id ="
               " (SELECT id FROM accounts WHERE name='alpha')")
    db.commit()
    db.close()
    r = home.run("vault", "status")
    assert r.returncode == 1
    assert "account 'alpha'" in r.stdout and "bravo" not in r.stdout.split("integrity:")[1]
    assert "charlie" not in r.stdout.split("integrity:")[1]
    assert json.loads(home.run("key", "list", "--json").stdout)[2]["name"] == "charlie"


def test_rekey_changes_the_passphrase(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home.run("init")
    assert home.run("key", "add", "a", "--exchange", "binance", input=creds()).returncode == 0
    new = tmp_path / "new-pass"
    new.write_text("a brand new passphrase\n")
    new.chmod(0o600)
    r = home.run("vault", "rekey", "--new-passphrase-file", str(new))
    assert r.returncode == 0, r.stderr and "generation 2" in r.stdout
    assert home.run("key", "list").returncode == 1  # old passphrase no longer opens it
    r = home.run("vault", "status", "--json", env={"KEYPROXY_PASSPHRASE_FILE": str(new)})
    st = json.loads(r.stdout)
    assert st["master_generation"] == 2 and st["integrity_problems"] == [] and st["accounts"] == 1


def test_secrets_never_in_argv_help(home: Home) -> None:
    r = home.run("key", "add", "--help")
    assert "--secret" not in r.stdout and "--api-key" not in r.stdout and "stdin" in r.stdout


def test_config_errors_name_file_and_key(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[vault]\npaht = 'x'\n")
    r = home.run("--config", str(cfg), "key", "list")
    assert r.returncode == 1 and f"{cfg}: vault.paht: unknown key" in r.stderr


def test_demo_runs(home: Home) -> None:
    r = home.run("demo", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "raw vault files searched for the key and secret: not found" in r.stdout
    assert "8 verified with the REAL key; virtual key seen upstream: False" in r.stdout
    assert "watch_orders event: ['open']" in r.stdout  # ccxt.pro through the WebSocket API
    assert "3 verified with the REAL key (each checked and re-signed by keyproxy); virtual key seen upstream: False" \
        in r.stdout
    assert "withdrawal requests that reached the exchange: 0" in r.stdout
    assert "secrets in it: none" in r.stdout
    assert "anomaly rule forbidden_scope acted: suspend_bot" in r.stdout
    # a revoked credential is no credential
    assert "bad_signature" in r.stdout and "unknown_bot - unknown API key" in r.stdout


def test_where_an_unexpected_error_arose_names_code_only() -> None:
    """The CLI's and the daemon's 'internal error' lines name the code location for a bug report,
    never a value: the exception's text can carry anything."""
    from keyproxy.errors import where

    def reconcile() -> None:
        raise RuntimeError("KPCANARY-value-in-the-message")

    try:
        reconcile()
    except RuntimeError as e:
        located = where(e)
    assert located.startswith("test_cli.py:") and located.endswith(" in reconcile"), located
    assert "KPCANARY" not in located
    assert where(RuntimeError("never raised")) == "unknown location"


def test_a_passphrase_file_others_can_read_is_refused(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The passphrase has leaked to every user of the host already: refused, as the private key file is."""
    assert home.run("init").returncode == 0
    home.passphrase_file.chmod(0o644)
    r = home.run("key", "list")
    assert r.returncode == 1 and "can be read by other users (mode 0o644)" in r.stderr and "chmod 600" in r.stderr
    assert r.stderr.count("\n") == 1 and "correct horse" not in r.stderr
    home.passphrase_file.chmod(0o600)
    assert home.run("key", "list").returncode == 0


def test_a_systemd_credential_is_read_whatever_its_group_bits(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """systemd writes a credential 0400 and grants the service user by ACL, whose mask shows as 0440: the unit's
    credentials directory is private to it, so its files are read; the same mode elsewhere is refused."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    kf = creds / "keyproxy-master"
    kf.write_bytes(bytes(range(32)))
    kf.chmod(0o440)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    r = home.run("--key-file", str(kf), "init", "--master-key", "file", env=env)
    assert r.returncode == 0, r.stderr
    assert home.run("--key-file", str(kf), "key", "list", env=env).returncode == 0
    r = home.run("--key-file", str(kf), "key", "list")
    assert r.returncode == 1 and "can be read by other users (mode 0o440)" in r.stderr
