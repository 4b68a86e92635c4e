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
    assert r.returncode == 2 and "empty list; clear it with none (symbols=none" in r.stderr, r.stderr
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


def test_a_rekey_takes_the_new_passphrase_file_named_not_the_environments(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`KEYPROXY_PASSPHRASE` beat `--new-passphrase-file`: the rekey said done, and the vault then opened with the
    environment's passphrase only, not the one the operator wrote down."""
    kf = tmp_path / "k.bin"
    kf.write_bytes(bytes(range(32)))
    kf.chmod(0o600)
    assert home.run("--key-file", str(kf), "init", "--master-key", "file").returncode == 0
    new = tmp_path / "new-pass"
    new.write_text("the passphrase the operator keeps\n")
    new.chmod(0o600)
    r = home.run("--key-file", str(kf), "vault", "rekey", "--to", "passphrase", "--new-passphrase-file", str(new),
                 env={"KEYPROXY_PASSPHRASE": "some other value"})
    assert r.returncode == 0, r.stderr
    r = home.run("vault", "status", "--json", env={"KEYPROXY_PASSPHRASE_FILE": str(new)})
    assert r.returncode == 0 and json.loads(r.stdout)["master_source"] == "passphrase", r.stderr


def test_a_backup_never_follows_a_symlink_at_its_name(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ready(home)
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "elsewhere")
    r = home.run("vault", "backup", str(link))
    assert r.returncode != 0 and "exists; refusing to overwrite it" in r.stderr, r.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_tls_init_writes_its_key_only_into_a_private_directory(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A fixed temporary name in a shared directory let a planted symlink receive the private key."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / ".key.pem.tmp").symlink_to(tmp_path / "stolen")
    r = home.run("tls", "init", "--dir", str(shared))
    assert r.returncode != 0 and "not a private directory" in r.stderr, r.stderr
    assert not (tmp_path / "stolen").exists() and not (shared / "key.pem").exists()
    for days in ("-1", "100000000"):
        r = home.run("tls", "init", "--dir", str(tmp_path / "tls"), "--days", days)
        assert r.returncode != 0 and "--days must be 1 to 3650" in r.stderr and "internal" not in r.stderr, r.stderr
    r = home.run("tls", "init", "--dir", str(tmp_path / "tls"))
    assert r.returncode == 0 and (tmp_path / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600, r.stderr


def test_init_never_changes_the_mode_of_a_directory_it_did_not_make(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`init` with the vault in a shared directory made that directory 0700 (as root, /tmp itself)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    r = home.run("--vault", str(shared / "vault.db"), "init")
    assert r.returncode != 0 and "not a private directory" in r.stderr, r.stderr
    assert shared.stat().st_mode & 0o7777 == 0o1777 and not (shared / "vault.db").exists()
    mine = tmp_path / "mine"  # the user's own, readable by others: made private, as doctor expects
    mine.mkdir(mode=0o750)
    mine.chmod(0o750)
    assert home.run("--vault", str(mine / "vault.db"), "init").returncode == 0
    assert mine.stat().st_mode & 0o777 == 0o700 and (mine / "vault.db").stat().st_mode & 0o777 == 0o600


def test_odd_input_is_one_line_never_an_internal_error(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ready(home)
    r = home.run("key", "add", "odd", "--exchange", "binance", input='{"api_key": "a", "secret": "\\ud800"}')
    assert r.returncode == 2 and "not valid text" in r.stderr, r.stderr
    r = home.run("incidents", "show", "99999999999999999999")
    assert r.returncode == 2 and "an incident id is a whole number" in r.stderr, r.stderr
    r = home.run("serve", "--port", "99999")
    assert r.returncode == 2 and "--port must be 0 to 65535" in r.stderr, r.stderr
    for name, text in (("latin1.toml", "# caf\xe9\n".encode("latin-1")),
                       ("tiers.toml", b'[governor.tiers]\nmain = ["x"]\n')):
        cfg = tmp_path / name
        cfg.write_bytes(text)
        r = home.run("--config", str(cfg), "config", "check")
        assert r.returncode != 0 and "internal error" not in r.stderr and str(cfg) in r.stderr, r.stderr


def test_a_fifo_or_a_device_named_as_a_file_is_refused_not_waited_on(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A FIFO given as --config, --passphrase-file, --private-key-file or to `audit verify` blocked until killed;
    /dev/zero ran out of memory."""
    import os

    ready(home)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for args in (("--config", str(fifo), "key", "list"), ("--config", "/dev/zero", "key", "list"),
                 ("audit", "verify", str(fifo)), ("audit", "verify", "/dev/zero"),
                 ("key", "add", "pem", "--exchange", "binance", "--key-type", "ed25519", "--private-key-file",
                  str(fifo))):
        r = home.run(*args, timeout=30, input='{"api_key": "x"}')
        assert r.returncode != 0 and "internal error" not in r.stderr, (args, r.stderr)
    r = home.run("key", "list", env={"KEYPROXY_PASSPHRASE_FILE": str(fifo)}, timeout=30)
    assert r.returncode != 0 and "internal error" not in r.stderr, r.stderr


def test_a_restore_only_reads_its_backup(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Opening the backup itself turned it to WAL mode (its bytes changed) and, from a read-only directory,
    failed with `attempt to write a readonly database`."""
    ready(home)
    shelf = tmp_path / "shelf"
    shelf.mkdir(mode=0o700)
    backup = shelf / "vault.bak"
    assert home.run("vault", "backup", str(backup)).returncode == 0
    before = backup.read_bytes()
    shelf.chmod(0o500)
    backup.chmod(0o400)
    try:
        r = home.run("vault", "restore", str(backup), "--force")
        assert r.returncode == 0, r.stderr
        assert backup.read_bytes() == before and sorted(p.name for p in shelf.iterdir()) == ["vault.bak"]
        assert home.run("key", "list").returncode == 0
    finally:
        shelf.chmod(0o700)


def test_a_file_where_the_audit_directory_belongs_is_said_plainly(home: Home) -> None:
    """`key add` and `halt` ended in internal errors (FileExistsError), while `doctor` said "no audit trail yet"."""
    ready(home)
    audit_dir = max(home.root.rglob("audit-*.jsonl")).parent
    for f in audit_dir.iterdir():
        f.unlink()
    audit_dir.rmdir()
    audit_dir.write_text("not a directory\n")
    r = home.run("halt", "--all", "--reason", "x")
    assert r.returncode != 0 and "audit trail not writable" in r.stderr and "internal" not in r.stderr, r.stderr
    r = home.run("doctor", "--offline")
    assert "is not a directory: nothing can be audited" in r.stdout, r.stdout + r.stderr


def test_doctor_reports_a_damaged_state_database_and_goes_on(home: Home) -> None:
    ready(home)
    assert home.run("halt", "--all", "--reason", "x").returncode == 0  # state.db exists
    state_db = next(home.root.rglob("state.db"))
    for extra in ("-wal", "-shm"):
        state_db.with_name(state_db.name + extra).unlink(missing_ok=True)
    state_db.write_bytes(b"this is not a database" * 100)
    r = home.run("doctor", "--offline")
    assert r.returncode == 1 and "FAIL  state: cannot open" in r.stdout and "audit" in r.stdout, r.stdout + r.stderr


def test_a_restore_of_what_is_no_vault_file_is_one_line(home: Home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    ready(home)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for source in (tmp_path / "missing.db", tmp_path, fifo, "/dev/zero"):
        r = home.run("vault", "restore", str(source), "--force", timeout=30)
        assert r.returncode != 0 and "internal error" not in r.stderr, (source, r.stderr)
    assert home.run("key", "list").returncode == 0
