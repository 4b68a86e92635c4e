"""Exchange accounts in the vault: each real key a version of its account, sealed field by field, so a rotation
keeps the previous key until it is retired (`rollback`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from keyproxy.errors import AlreadyExists, IntegrityError, NotFound, StateError
from keyproxy.secret import Secret
from keyproxy.vault import _crypto
from keyproxy.vault.records import SECRET_FIELDS, AccountInfo, Credentials, NewAccount, check_name, validate_new_account


def _aad(vault_id: str, kind: str, record_id: int, version: int, field: str) -> bytes:
    return f"keyproxy/v1|{vault_id}|{kind}|{record_id}|{version}|{field}".encode()


def _active_version(db: sqlite3.Connection, name: str) -> tuple[int, int]:
    """(account id, active version) of the account named so, in the caller's transaction."""
    row = db.execute("SELECT id, active_version FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no account named {name!r}")
    return row  # type: ignore[no-any-return]


class AccountsMixin:
    """Account methods of `Vault` (see store.py for the transaction and sealing helpers)."""

    _db: sqlite3.Connection
    _meta: dict[str, str]
    _seal_key: bytes
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _seal: Callable[[sqlite3.Connection, Secret | None, bytes], bytes | None]
    fingerprint: Callable[[Secret], str]

    def add_account(self, acct: NewAccount, *, now: float | None = None) -> AccountInfo:
        validate_new_account(acct)
        now = time.time() if now is None else now
        with self._write() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (acct.name,)).fetchone():
                raise AlreadyExists(f"account {acct.name!r} already exists")
            cur = db.execute(
                "INSERT INTO accounts (name, exchange, key_type, active_version, created_at, rotated_at,"
                " rotate_every, base_url, insecure_upstream, environment) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                (acct.name, acct.exchange, acct.key_type, now, now, acct.rotate_every,
                 acct.base_url, int(acct.insecure_upstream), acct.environment),
            )
            self._insert_version(db, int(cur.lastrowid or 0), 1, acct.credentials, now)
        return self.account(acct.name)

    def _insert_version(self, db: sqlite3.Connection, account_id: int, version: int,
                        creds: Credentials, now: float) -> None:
        vid = self._meta["vault_id"]
        sealed = {
            field: self._seal(db, value, _aad(vid, "account", account_id, version, field))
            for field, value in creds.fields().items()
        }
        db.execute(
            "INSERT INTO account_versions (account_id, version, created_at, fingerprint,"
            " api_key, secret, passphrase, private_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account_id, version, now, self.fingerprint(creds.api_key),
             *(sealed[f] for f in SECRET_FIELDS)),
        )

    _ACCOUNT_SELECT = (
        "SELECT a.name, a.exchange, a.key_type, a.status, a.active_version, v.fingerprint,"
        " a.created_at, a.rotated_at, a.rotate_every, a.base_url, a.insecure_upstream,"
        " (SELECT COUNT(*) FROM account_versions w WHERE w.account_id = a.id), a.environment"
        " FROM accounts a JOIN account_versions v ON v.account_id = a.id AND v.version = a.active_version"
    )

    @staticmethod
    def _info(row: tuple[Any, ...]) -> AccountInfo:
        return AccountInfo(
            name=row[0], exchange=row[1], key_type=row[2], status=row[3], version=row[4],
            fingerprint=row[5], created_at=row[6], rotated_at=row[7], rotate_every=row[8],
            base_url=row[9], insecure_upstream=bool(row[10]), versions=row[11], environment=row[12],
        )

    def list_accounts(self) -> list[AccountInfo]:
        rows = self._db.execute(self._ACCOUNT_SELECT + " ORDER BY a.name").fetchall()
        return [self._info(r) for r in rows]

    def account(self, name: str) -> AccountInfo:
        check_name("account", name)
        row = self._db.execute(self._ACCOUNT_SELECT + " WHERE a.name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no account named {name!r}")
        return self._info(row)

    def credentials(self, name: str, version: int | None = None) -> Credentials:
        """Open the sealed fields of one account version (the active one by default)."""
        check_name("account", name)
        row = self._db.execute(
            "SELECT a.id, v.version, v.api_key, v.secret, v.passphrase, v.private_key FROM accounts a"
            " JOIN account_versions v ON v.account_id = a.id"
            " AND v.version = COALESCE(?, a.active_version) WHERE a.name = ?",
            (version, name),
        ).fetchone()
        if row is None:
            raise NotFound(f"no account named {name!r}" + (f" with version {version}" if version else ""))
        account_id, ver, *blobs = row
        opened: dict[str, Secret | None] = {}
        for field, blob in zip(SECRET_FIELDS, blobs, strict=True):
            if blob is None:
                opened[field] = None
                continue
            aad = _aad(self._meta["vault_id"], "account", account_id, ver, field)
            try:
                opened[field] = Secret(_crypto.unseal(self._seal_key, bytes(blob), aad))
            except (_crypto.SealError, TypeError):
                raise IntegrityError(
                    f"account {name!r} (version {ver}, field {field}) failed its integrity check:"
                    " the vault record was altered or moved"
                ) from None
        return Credentials(**opened)  # type: ignore[arg-type]

    def rotate_account(self, name: str, creds: Credentials, *, now: float | None = None) -> AccountInfo:
        """Add the new credential as the next version and make it active, in one transaction.

        The old version stays (for `rollback`) until `retire_previous`; but a key the exchange revoked is replaced
        for good: the account is active again and its older versions are forgotten in the same transaction (no
        rollback returns to a revoked key). Session 35's review: `key restore` said "rotate it instead", and a
        rotation left the account revoked, so removing it (and its bots) was the only way out.
        """
        info = self.account(name)
        from keyproxy.vault.records import check_credentials

        check_credentials(info.exchange, info.key_type, creds)
        now = time.time() if now is None else now
        with self._write() as db:
            account_id, active, top = db.execute(
                "SELECT a.id, a.active_version, (SELECT MAX(version) FROM account_versions WHERE account_id = a.id)"
                " FROM accounts a WHERE a.name = ?", (name,)).fetchone()
            version = int(top) + 1
            self._insert_version(db, account_id, version, creds, now)
            db.execute("UPDATE accounts SET active_version = ?, rotated_at = ? WHERE id = ?",
                       (version, now, account_id))
            if db.execute("SELECT status FROM accounts WHERE id = ?", (account_id,)).fetchone()[0] == "revoked":
                db.execute("UPDATE accounts SET status = 'active' WHERE id = ?", (account_id,))
                db.execute("DELETE FROM account_versions WHERE account_id = ? AND version != ?", (account_id, version))
        return self.account(name)

    def rollback_account(self, name: str) -> AccountInfo:
        """Make the newest version below the active one active again."""
        check_name("account", name)
        with self._write() as db:
            row = _active_version(db, name)
            prev = db.execute("SELECT MAX(version) FROM account_versions WHERE account_id = ? AND version < ?",
                              row).fetchone()[0]
            if prev is None:
                raise StateError(f"account {name!r} has no previous key version to roll back to")
            db.execute("UPDATE accounts SET active_version = ? WHERE id = ?", (prev, row[0]))
        return self.account(name)

    def retire_previous(self, name: str) -> int:
        """Forget every version but the active one; returns how many were removed."""
        check_name("account", name)
        with self._write() as db:
            return db.execute("DELETE FROM account_versions WHERE account_id = ? AND version != ?",
                              _active_version(db, name)).rowcount

    def set_account_status(self, name: str, status: str) -> bool:
        """active | quarantined | revoked; True when it changed. A revoked key never returns to active."""
        assert status in ("active", "quarantined", "revoked")
        check_name("account", name)
        with self._write() as db:
            row = db.execute("SELECT status FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no account named {name!r}")
            if row[0] == "revoked" and status != "revoked":
                raise StateError(f"account {name!r}: its key was revoked at the exchange; rotate it instead "
                                 "(`keyproxy key rotate`)")
            if row[0] == status:
                return False
            db.execute("UPDATE accounts SET status = ? WHERE name = ?", (status, name))
        return True

    def remove_account(self, name: str) -> None:
        check_name("account", name)
        with self._write() as db:
            if db.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no account named {name!r}")
