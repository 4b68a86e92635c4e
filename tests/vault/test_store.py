"""The vault file: sealing per record, binding, master sources, modes, plaintext absence."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import keyring
import keyring.backend
import pytest

from keyproxy.errors import (
    AlreadyExists, IntegrityError, MasterKeyUnavailable, NotFound, UsageError, VaultError, VaultLocked,
)
from keyproxy.secret import Secret
from keyproxy.vault import Credentials, FileSource, KeyringSource, NewAccount, Vault
from keyproxy.vault.master import KEYRING_SERVICE, write_key_file
from tests.vault.helpers import hmac_account, passphrase_source


def test_round_trip_all_fields(vault: Vault) -> None:
    creds = Credentials(api_key=Secret("AK"), secret=Secret("SK"), passphrase=Secret("PP"))
    vault.add_account(NewAccount("okx-main", "okx", "hmac", creds))
    opened = vault.credentials("okx-main")
    assert opened.api_key == Secret("AK") and opened.secret == Secret("SK") and opened.passphrase == Secret("PP")
    assert opened.private_key is None
    info = vault.account("okx-main")
    assert (info.exchange, info.key_type, info.status, info.version) == ("okx", "hmac", "active", 1)
    assert len(info.fingerprint) == 12 and "AK" not in repr(info)


def test_fingerprint_is_keyed_per_vault(tmp_path: Path, key_file: Path) -> None:
    a = Vault.create(tmp_path / "a" / "v.db", FileSource(key_file))
    b = Vault.create(tmp_path / "b" / "v.db", FileSource(key_file))
    assert a.fingerprint(Secret("same")) != b.fingerprint(Secret("same"))


def _swap_blobs(path: Path, first: str, second: str) -> None:
    db = sqlite3.connect(path)
    q = "SELECT v.secret FROM account_versions v JOIN accounts a ON a.id = v.account_id WHERE a.name = ?"
    b1, b2 = db.execute(q, (first,)).fetchone()[0], db.execute(q, (second,)).fetchone()[0]
    upd = ("UPDATE account_versions SET secret = ? WHERE account_id = "
           "(SELECT id FROM accounts WHERE name = ?)")
    db.execute(upd, (b2, first))
    db.execute(upd, (b1, second))
    db.commit()
    db.close()


def test_swapped_blobs_fail_to_open_and_others_still_open(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        for name in ("alpha", "bravo", "charlie"):
            v.add_account(hmac_account(name))
    _swap_blobs(path, "alpha", "bravo")
    with Vault.open(path, lambda kind: FileSource(key_file)) as v:
        for name in ("alpha", "bravo"):
            with pytest.raises(IntegrityError, match=f"account '{name}'"):
                v.credentials(name)
        assert v.credentials("charlie").secret == Secret("SK-charlie")
        assert len(v.check_integrity()) == 2
        assert [a.name for a in v.list_accounts()] == ["alpha", "bravo", "charlie"]


def test_blob_moved_to_another_field_fails(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        v.add_account(hmac_account("alpha"))
    db = sqlite3.connect(path)
    db.execute("UPDATE account_versions SET api_key = secret")
    db.commit()
    db.close()
    with Vault.open(path, lambda kind: FileSource(key_file)) as v, pytest.raises(IntegrityError, match="api_key"):
        v.credentials("alpha")


def test_removed_record_cannot_be_replayed_onto_a_new_one(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        v.add_account(hmac_account("old"))
        db = sqlite3.connect(path)
        old_blob = db.execute("SELECT secret FROM account_versions").fetchone()[0]
        v.remove_account("old")
        v.add_account(hmac_account("new"))
        db.execute("UPDATE account_versions SET secret = ?", (old_blob,))
        db.commit()
        db.close()
        with pytest.raises(IntegrityError):
            v.credentials("new")


def test_wrong_master_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Vault.create(path, passphrase_source("right")).close()
    with pytest.raises(VaultLocked, match="vault locked: wrong master key"):
        Vault.open(path, lambda kind: passphrase_source("wrong"))
    Vault.open(path, lambda kind: passphrase_source("right")).close()


def test_wrong_key_file_is_refused(tmp_path: Path, key_file: Path) -> None:
    other = tmp_path / "other.key"
    write_key_file(other)
    Vault.create(tmp_path / "v.db", FileSource(key_file)).close()
    with pytest.raises(VaultLocked):
        Vault.open(tmp_path / "v.db", lambda kind: FileSource(other))


@pytest.mark.parametrize("content", [b"", b"short", b"z" * 64, b"\x00" * 33])
def test_malformed_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    bad.chmod(0o600)
    with pytest.raises(MasterKeyUnavailable, match="32 random bytes or 64 hex digits"):
        Vault.create(tmp_path / "v.db", FileSource(bad))
    assert not (tmp_path / "v.db").exists()


def test_hex_key_file_is_accepted(tmp_path: Path) -> None:
    kf = tmp_path / "hex.key"
    kf.write_text("ab" * 32 + "\n")
    kf.chmod(0o600)
    Vault.create(tmp_path / "v.db", FileSource(kf)).close()
    Vault.open(tmp_path / "v.db", lambda kind: FileSource(kf)).close()


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_source_round_trip_and_rekey(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, KeyringSource()) as v:
        v.add_account(hmac_account("alpha"))
        vid = v.status()["vault_id"]
    assert list(memory_keyring.entries) == [(KEYRING_SERVICE, f"vault-{vid}-g1")]
    with Vault.open(path, lambda kind: KeyringSource()) as v:
        v.rekey(KeyringSource())
    # the new generation's entry exists and the old one is gone
    assert list(memory_keyring.entries) == [(KEYRING_SERVICE, f"vault-{vid}-g2")]
    with Vault.open(path, lambda kind: KeyringSource()) as v:
        assert v.credentials("alpha").secret == Secret("SK-alpha")


def test_missing_keyring_entry_names_the_recovery(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    Vault.create(tmp_path / "v.db", KeyringSource()).close()
    memory_keyring.entries.clear()
    with pytest.raises(MasterKeyUnavailable, match="keyring has no entry"):
        Vault.open(tmp_path / "v.db", lambda kind: KeyringSource())


def test_headless_keyring_is_refused_with_alternatives(tmp_path: Path) -> None:
    import keyring.backends.fail

    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(MasterKeyUnavailable, match="passphrase .* key file"):
            Vault.create(tmp_path / "v.db", KeyringSource())
    finally:
        keyring.set_keyring(previous)
    assert not (tmp_path / "v.db").exists()


def test_rekey_between_sources(tmp_path: Path, key_file: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, passphrase_source("one")) as v:
        v.add_account(hmac_account("alpha"))
        v.rekey(FileSource(key_file))
    with Vault.open(path, lambda kind: FileSource(key_file)) as v:
        v.rekey(KeyringSource())
    with Vault.open(path, lambda kind: KeyringSource()) as v:
        v.rekey(passphrase_source("two"))
    with pytest.raises(VaultLocked):
        Vault.open(path, lambda kind: passphrase_source("one"))
    with Vault.open(path, lambda kind: passphrase_source("two")) as v:
        assert v.credentials("alpha").secret == Secret("SK-alpha")
        assert v.status()["master_generation"] == 4
    assert memory_keyring.entries == {}


def test_no_plaintext_in_vault_or_wal(tmp_path: Path, key_file: Path) -> None:
    canaries = []
    path = tmp_path / "state" / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        for i in range(20):
            ak, sk, pp = (f"KPCANARY{kind}{i:02d}" + "x" * 20 for kind in ("AK", "SK", "PP"))
            canaries += [ak, sk, pp]
            v.add_account(NewAccount(f"acct{i}", "okx", "hmac",
                                     Credentials(Secret(ak), Secret(sk), Secret(pp))))
        # while open, the WAL holds the recent pages: search it too
        files = [p for p in path.parent.iterdir() if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files)
        blob = b"".join(p.read_bytes() for p in files)
        assert not [c for c in canaries if c.encode() in blob]
    blob = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    assert not [c for c in canaries if c.encode() in blob]
    assert b"KPCANARY" not in blob


def test_modes(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "new" / "dir" / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        v.add_account(hmac_account("alpha"))
        for p in path.parent.iterdir():
            assert p.stat().st_mode & 0o777 == 0o600, p
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_create_refuses_to_overwrite(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, FileSource(key_file)) as v:
        v.add_account(hmac_account("alpha"))
    with pytest.raises(AlreadyExists):
        Vault.create(path, FileSource(key_file))
    with Vault.open(path, lambda kind: FileSource(key_file)) as v:
        assert v.account("alpha")


@pytest.mark.parametrize("content", [b"", b"hello world, not a database" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 5000])
def test_non_vault_file_gets_a_clear_message(tmp_path: Path, key_file: Path, content: bytes) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(content)
    with pytest.raises(VaultError, match=str(path)):
        Vault.open(path, lambda kind: FileSource(key_file))


def test_plain_sqlite_database_is_not_a_vault(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(VaultError, match="not a keyproxy vault|vault database error"):
        Vault.open(path, lambda kind: FileSource(key_file))


def test_missing_vault_says_how_to_create(tmp_path: Path, key_file: Path) -> None:
    with pytest.raises(VaultError, match="keyproxy init"):
        Vault.open(tmp_path / "none.db", lambda kind: FileSource(key_file))


@pytest.mark.parametrize("params", [
    {"alg": "argon2id", "memory_kib": 4 * 1024 * 1024 * 1024, "iterations": 3, "lanes": 4},
    {"alg": "argon2id", "memory_kib": 262144, "iterations": 1_000_000, "lanes": 4},
    {"alg": "argon2id", "memory_kib": 262144, "iterations": 3, "lanes": 2**24},
    {"alg": "argon2id", "memory_kib": "0x40000", "iterations": 3, "lanes": 4},
    {"alg": "argon2id", "memory_kib": -5, "iterations": 3, "lanes": 4},
    {"alg": "scrypt", "memory_kib": 262144, "iterations": 3, "lanes": 4},
])
def test_hostile_kdf_header_is_rejected_before_work(tmp_path: Path, params: dict) -> None:  # type: ignore[type-arg]
    path = tmp_path / "v.db"
    Vault.create(path, passphrase_source("pw")).close()
    db = sqlite3.connect(path)
    current = json.loads(db.execute("SELECT value FROM meta WHERE name='master_params'").fetchone()[0])
    db.execute("UPDATE meta SET value = ? WHERE name = 'master_params'", (json.dumps({**current, **params}),))
    db.commit()
    db.close()
    start = time.perf_counter()
    with pytest.raises(VaultError, match="vault header"):
        Vault.open(path, lambda kind: passphrase_source("pw"))
    assert time.perf_counter() - start < 0.5


def test_tampered_salt_length_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Vault.create(path, passphrase_source("pw")).close()
    db = sqlite3.connect(path)
    current = json.loads(db.execute("SELECT value FROM meta WHERE name='master_params'").fetchone()[0])
    db.execute("UPDATE meta SET value = ? WHERE name = 'master_params'", (json.dumps({**current, "salt": ""}),))
    db.commit()
    db.close()
    with pytest.raises(VaultError, match="vault header"):
        Vault.open(path, lambda kind: passphrase_source("pw"))


@pytest.mark.parametrize("acct, message", [
    (hmac_account("Bad Name"), "invalid account name"),
    (hmac_account("-x"), "invalid account name"),
    (hmac_account("a" * 65), "invalid account name"),
    (NewAccount("a", "ftx", "hmac", Credentials(Secret("k"), Secret("s"))), "unknown exchange"),
    (NewAccount("a", "binance", "dsa", Credentials(Secret("k"), Secret("s"))), "unknown key type"),
    (NewAccount("a", "kraken", "rsa", Credentials(Secret("k"), Secret("s"))), "kraken keys are of type hmac"),
    (NewAccount("a", "binance", "hmac", Credentials(Secret(""), Secret("s"))), "api_key is empty"),
    (NewAccount("a", "binance", "hmac", Credentials(Secret("k"), Secret(""))), "secret is empty"),
    (NewAccount("a", "binance", "hmac", Credentials(Secret("k"))), "secret is empty"),
    (NewAccount("a", "okx", "hmac", Credentials(Secret("k"), Secret("s"))), "need a passphrase"),
    (NewAccount("a", "binance", "ed25519", Credentials(Secret("k"))), "needs private_key"),
    (NewAccount("a", "binance", "ed25519", Credentials(Secret("k"), private_key=Secret("junk"))),
     "not an unencrypted PEM"),
])
def test_bad_input_writes_nothing(vault: Vault, acct: NewAccount, message: str) -> None:
    before = vault.status()
    with pytest.raises(UsageError, match=message):
        vault.add_account(acct)
    assert vault.status() == before and vault.list_accounts() == []


def test_private_key_type_must_match(vault: Vault) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    def pem(key) -> Secret:  # type: ignore[no-untyped-def]
        return Secret(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))

    rsa_pem = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(UsageError, match="not a ed25519 key"):
        vault.add_account(NewAccount("a", "binance", "ed25519", Credentials(Secret("k"), private_key=rsa_pem)))
    vault.add_account(NewAccount("a", "binance", "rsa", Credentials(Secret("k"), private_key=rsa_pem)))
    ed_pem = pem(ed25519.Ed25519PrivateKey.generate())
    vault.add_account(NewAccount("b", "binance", "ed25519", Credentials(Secret("k"), private_key=ed_pem)))
    assert vault.credentials("b").private_key == ed_pem


def test_duplicate_and_missing_accounts(vault: Vault) -> None:
    vault.add_account(hmac_account("alpha"))
    with pytest.raises(AlreadyExists):
        vault.add_account(hmac_account("alpha", secret="other"))
    assert vault.credentials("alpha").secret == Secret("SK-alpha")
    with pytest.raises(NotFound):
        vault.account("nope")
    with pytest.raises(NotFound):
        vault.remove_account("nope")
    vault.remove_account("alpha")
    assert vault.list_accounts() == []


def test_secret_never_shows_in_repr_or_str() -> None:
    s = Secret("KPCANARYxyz")
    creds = Credentials(api_key=s, secret=s)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr(creds), str(creds)):
        assert "KPCANARY" not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s == Secret("KPCANARYxyz") and s != Secret("KPCANARYxyw")


def test_coinbase_ed25519_keys_in_their_base64_form(vault: Vault) -> None:
    """CDP hands out Ed25519 keys as base64(seed || public key), not PEM; the vault takes that form."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    good = base64.b64encode(seed + public).decode()
    vault.add_account(NewAccount("cb", "coinbase", "ed25519", Credentials(Secret("uuid"), private_key=Secret(good))))
    bad = base64.b64encode(seed + bytes(32)).decode()
    with pytest.raises(UsageError, match="does not match"):
        vault.add_account(NewAccount("cb2", "coinbase", "ed25519", Credentials(Secret("u"), private_key=Secret(bad))))
    with pytest.raises(UsageError, match="64 bytes"):
        vault.add_account(NewAccount("cb3", "coinbase", "ed25519",
                                     Credentials(Secret("u"), private_key=Secret(base64.b64encode(seed).decode()))))
