"""The vault file: SQLite (WAL, synchronous=FULL), one transaction per change.

Layout: a `meta` table (vault id, master-key source and its parameters, the
wrapped data key, generation counters) and one row per sealed secret field.
Each field is sealed under a key derived from the random data key, with
associated data naming vault, record kind, record id, version and field, so a
blob copied anywhere else fails to open. Record ids come from AUTOINCREMENT
and are never reused, so a deleted record's blob cannot be replayed either.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from keyproxy.errors import AlreadyExists, IntegrityError, VaultError, VaultLocked
from keyproxy.secret import Secret
from keyproxy.vault import _crypto
from keyproxy.vault.accounts import AccountsMixin
from keyproxy.vault.bots import BOTS_SCHEMA, BotsMixin
from keyproxy.vault.master import MasterSource

FORMAT = "keyproxy-vault/1"
SourceFor = Callable[[str], MasterSource]

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    exchange TEXT NOT NULL,
    key_type TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    active_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    rotated_at REAL NOT NULL,
    rotate_every INTEGER,
    base_url TEXT,
    insecure_upstream INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE account_versions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    api_key BLOB NOT NULL,
    secret BLOB,
    passphrase BLOB,
    private_key BLOB,
    PRIMARY KEY (account_id, version)
);
"""


# Schema changes after format 1, applied in order on open; `schema` in meta counts them.
MIGRATIONS = (
    BOTS_SCHEMA,
    "ALTER TABLE accounts ADD COLUMN environment TEXT",  # production | testnet | demo (NULL: by base_url)
    "ALTER TABLE bots ADD COLUMN passphrase BLOB",  # a bot's virtual passphrase (OKX), sealed
    # bot credential lifetimes: expiry (TTL), and the previous credential kept through a rotation's grace
    "ALTER TABLE bots ADD COLUMN expires_at REAL",
    "ALTER TABLE bots ADD COLUMN generation INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE bots ADD COLUMN prev_key_id TEXT",
    "ALTER TABLE bots ADD COLUMN prev_secret BLOB",
    "ALTER TABLE bots ADD COLUMN prev_public_key TEXT",
    "ALTER TABLE bots ADD COLUMN prev_token_digest TEXT",
    "ALTER TABLE bots ADD COLUMN prev_passphrase BLOB",
    "ALTER TABLE bots ADD COLUMN prev_until REAL",
)


# the meta rows that are this host's, never a fleet's: which master key unlocks the vault here
_HOST_META = ("master_source", "master_params", "master_generation", "wrapped_data_key")


def _wrap_aad(vault_id: str, generation: int, kind: str) -> bytes:
    return f"keyproxy/v1|{vault_id}|datakey|{generation}|{kind}".encode()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _sqlite_problem(path: Path, e: sqlite3.Error) -> VaultError:
    if isinstance(e, sqlite3.DatabaseError) and "not a database" in str(e):
        return VaultError(f"{path} is not a keyproxy vault (not an SQLite database)")
    return VaultError(f"{path}: vault database error: {e}")


def ensure_private_dir(directory: Path) -> None:
    """`directory` created 0700 (with its parents), or an existing one of this user's that no one else may write in,
    made 0700: a shared or another user's directory is refused, never chmod-ed (session 35's review: `init` with the
    vault in a shared directory made it 0700, /tmp included), and no secret is written where another user could
    replace it."""
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)  # whatever the umask
        return
    st = os.stat(directory)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise VaultError(f"{directory}: not a private directory (another user's, or others may write in it); "
                         "use a directory of your own, mode 0700")
    if st.st_mode & 0o077:  # the user's own, others may read it: made private, as doctor expects (0700)
        os.chmod(directory, 0o700)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(dest: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A file that appears at `dest` whole or not at all (the one way the vault writes a file).

    Yields a private temporary name (mode 0600) in `dest`'s directory to write and close; then it is
    fsynced and linked into place (never over an existing file; `overwrite`: renamed over it), and the
    directory fsynced. On any error, or a crash at any instant, `dest` is untouched and the temporary
    name goes (now, or by `sweep_temp_files` on the next open).
    """
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # fails if `dest` appeared meanwhile: no overwrite race
            except FileExistsError:
                raise AlreadyExists(f"{dest} exists; refusing to overwrite it") from None
        _fsync_dir(dest.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class Vault(AccountsMixin, BotsMixin):
    """An unlocked vault. Create with `Vault.create` or `Vault.open`; close when done."""

    def __init__(self, path: Path, db: sqlite3.Connection, meta: dict[str, str],
                 data_key: bytes, source: MasterSource) -> None:
        self.path = path
        self._db = db
        self._meta = meta
        self._seal_key = _crypto.subkey(data_key, "vault-enc")
        self._fingerprint_key = _crypto.subkey(data_key, "fingerprint")
        self._token_key = _crypto.subkey(data_key, "bot-token")
        self._data_key = data_key
        self._source = source
        self.replica: Any = None  # a fleet's copy of this vault (fleet/replica.py): every write goes through it

    @property
    def vault_id(self) -> str:
        return self._meta["vault_id"]

    # --- lifecycle ----------------------------------------------------------

    @classmethod
    def create(cls, path: Path, source: MasterSource) -> Vault:
        """Create a new vault at `path`; never overwrites. Atomic: the file appears whole or not at all."""
        path = Path(path)
        ensure_private_dir(path.parent)
        sweep_temp_files(path)
        if path.exists():
            raise AlreadyExists(f"a vault already exists at {path}; refusing to overwrite it")
        vault_id = uuid.uuid4().hex
        data_key = _crypto.new_key()
        master_key, params = source.create(vault_id, 1)
        meta = {
            "format": FORMAT,
            "vault_id": vault_id,
            "created_at": repr(time.time()),
            "master_source": source.kind,
            "master_params": json.dumps(params, sort_keys=True),
            "master_generation": "1",
            "wrapped_data_key": base64.b64encode(
                _crypto.seal(master_key, data_key, _wrap_aad(vault_id, 1, source.kind))
            ).decode(),
            "seal_count": "1",
            "schema": "0",
        }
        try:
            with _atomic_file(path) as tmp:
                db = sqlite3.connect(tmp, isolation_level=None)
                try:
                    db.execute("PRAGMA journal_mode=DELETE")
                    db.execute("PRAGMA synchronous=FULL")
                    db.execute("BEGIN")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                    db.execute("COMMIT")
                finally:
                    db.close()
        except AlreadyExists:
            raise AlreadyExists(f"a vault already exists at {path}; refusing to overwrite it") from None
        return cls.open(path, lambda kind: source, _known_key=master_key)

    @classmethod
    def open(cls, path: Path, source_for: SourceFor, *, _known_key: bytes | None = None,
             maintain: bool = True) -> Vault:
        """Open and unlock the vault at `path`; `source_for(kind)` supplies the master-key source.

        `maintain=False` (doctor) changes nothing: no temp-file sweep, no schema migration.
        """
        path = Path(path)
        if not path.exists():
            raise VaultError(f"no vault at {path}; create one with `keyproxy init`")
        if not path.is_file():
            raise VaultError(f"{path} is not a keyproxy vault (not a regular file)")
        if maintain:
            sweep_temp_files(path)
        try:
            db = _connect(path)
            rows = db.execute("SELECT name, value FROM meta").fetchall()
        except sqlite3.Error as e:
            with contextlib.suppress(Exception):
                db.close()
            raise _sqlite_problem(path, e) from None
        try:
            meta = dict(rows)
            if meta.get("format") != FORMAT:
                raise VaultError(f"{path} is not a keyproxy vault (format {meta.get('format')!r})")
            source = source_for(meta["master_source"])
            params = json.loads(meta["master_params"])
            master_key = _known_key or source.recover(meta["vault_id"], params)
            aad = _wrap_aad(meta["vault_id"], int(meta["master_generation"]), meta["master_source"])
            try:
                data_key = _crypto.unseal(master_key, base64.b64decode(meta["wrapped_data_key"]), aad)
            except (_crypto.SealError, ValueError):
                raise VaultLocked("vault locked: wrong master key") from None
        except (KeyError, ValueError) as e:
            db.close()
            raise VaultError(f"{path}: vault header is damaged ({type(e).__name__})") from None
        except BaseException:
            db.close()
            raise
        vault = cls(path, db, meta, data_key, source)
        if maintain:
            vault._migrate()
        return vault

    def _migrate(self) -> None:
        done = int(self._meta.get("schema", "0"))
        if done >= len(MIGRATIONS):
            return
        with self._write() as db:
            for statement in MIGRATIONS[done:]:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(len(MIGRATIONS)),))
        self._meta["schema"] = str(len(MIGRATIONS))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: concurrent writers queue instead of racing. In a fleet the change is
        made under the fleet's write lease on the newest copy and shared once committed (fleet/replica.py)."""
        with self.replica.writing(self) if self.replica is not None else contextlib.nullcontext():
            with self._transaction() as db:
                yield db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _sqlite_problem(self.path, e) from None
        try:
            yield self._db
            # every committed change counts: a restore can tell an older copy from a newer one
            self._db.execute("INSERT INTO meta VALUES ('changes', '1') ON CONFLICT(name) DO UPDATE SET"
                             " value = CAST(value AS INTEGER) + 1")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise _sqlite_problem(self.path, e) from None

    def _seal(self, db: sqlite3.Connection, value: Secret | None, aad: bytes) -> bytes | None:
        if value is None:
            return None
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'seal_count'")
        return _crypto.seal(self._seal_key, value.reveal(), aad)

    # --- accounts -----------------------------------------------------------

    def audit_key(self) -> bytes:
        """The key that MACs audit lines: only a holder of the master key can forge one."""
        return _crypto.subkey(self._data_key, "audit-mac")

    def fleet_key(self) -> bytes:
        """The key that MACs what a fleet keeps in Redis (the vault image, halts): whoever can write to Redis
        but holds no master key cannot un-revoke a bot, lift a halt or point an account elsewhere."""
        return _crypto.subkey(self._data_key, "fleet-mac")

    def fingerprint(self, api_key: Secret) -> str:
        return _crypto.mac_hex(self._fingerprint_key, api_key.reveal())[:12]

    def check_integrity(self) -> list[str]:
        """Open every sealed record; return one message per record that fails."""
        problems = []
        rows = self._db.execute(
            "SELECT a.name, v.version FROM accounts a JOIN account_versions v ON v.account_id = a.id"
            " ORDER BY a.name, v.version"
        ).fetchall()
        for name, version in rows:
            try:
                self.credentials(name, version)
            except IntegrityError as e:
                problems.append(str(e))
        return problems

    # --- master key ---------------------------------------------------------

    def rekey(self, new_source: MasterSource) -> None:
        """Rewrap the data key under a new master key, in one transaction.

        The new key is made (and, for the keyring, stored under a new entry)
        before the commit; the old one is discarded only after it. A crash at
        any point leaves a header whose master key still exists.
        """
        vid = self._meta["vault_id"]
        generation = int(self._meta["master_generation"]) + 1
        new_key, params = new_source.create(vid, generation)
        wrapped = base64.b64encode(
            _crypto.seal(new_key, self._data_key, _wrap_aad(vid, generation, new_source.kind))
        ).decode()
        updates = {
            "master_source": new_source.kind,
            "master_params": json.dumps(params, sort_keys=True),
            "master_generation": str(generation),
            "wrapped_data_key": wrapped,
        }
        old_source, old_params = self._source, json.loads(self._meta["master_params"])
        with self._write() as db:
            db.executemany("UPDATE meta SET value = ? WHERE name = ?", [(v, k) for k, v in updates.items()])
        self._meta.update(updates)
        self._source = new_source
        old_source.discard(old_params)

    def image(self) -> bytes:
        """The vault file as bytes (sealed blobs, clear metadata): what a fleet shares. Without this host's
        master-key header (the wrapped data key and its KDF parameters): a copy of Redis or its AOF gives no
        passphrase to guess offline, and each host keeps its own master-key source."""
        mem = sqlite3.connect(":memory:")
        try:
            self._db.backup(mem)
            mem.executemany("UPDATE meta SET value = '' WHERE name = ?", [(n,) for n in _HOST_META])
            mem.commit()
            return mem.serialize()
        finally:
            mem.close()

    def adopt(self, image: bytes) -> None:
        """Replace this vault's contents with another instance's newer copy of the same vault, in one
        transaction (SQLite's backup into this connection): a kill -9 leaves the old or the new whole."""
        buf = bytearray(image)
        if len(buf) < 100 or not buf.startswith(b"SQLite format 3\x00"):
            raise VaultError("the fleet's copy of the vault is not a SQLite file")
        buf[18] = buf[19] = 1  # a WAL-mode image opens in memory only as rollback-journal
        src = sqlite3.connect(":memory:")
        try:
            src.deserialize(bytes(buf))
            meta = dict(src.execute("SELECT name, value FROM meta").fetchall())
            if meta.get("vault_id") != self.vault_id:
                raise VaultError("the fleet's copy is another vault (a different vault id): every instance of a "
                                 "fleet must start from a copy of the same vault")
            # this host's master-key header stays (the shared image carries none), in the same transaction
            src.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(n, self._meta[n]) for n in _HOST_META])
            src.commit()
            src.backup(self._db)
        except sqlite3.Error as e:
            raise VaultError(f"the fleet's copy of the vault cannot be read: {e}") from None
        finally:
            src.close()
        self._meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())

    def changes(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0

    def backup_to(self, dest: Path) -> dict[str, Any]:
        """A consistent copy while others write (SQLite's online backup); still encrypted; mode 0600.

        Written under a temporary name, fsynced, then linked into place: never a partial file,
        never an overwrite.
        """
        dest = Path(dest)
        if dest.exists() or dest.is_symlink():
            raise AlreadyExists(f"{dest} exists; refusing to overwrite it")
        try:
            with _atomic_file(dest) as tmp:
                target = sqlite3.connect(tmp)
                try:
                    self._db.backup(target)
                    target.execute("PRAGMA journal_mode=DELETE")
                finally:
                    target.close()
        except sqlite3.Error as e:
            raise _sqlite_problem(dest, e) from None
        except FileNotFoundError as e:  # no such directory
            raise VaultError(f"cannot write a backup in {dest.parent}: {e.strerror or 'no such directory'} "
                             "(create the directory first, mode 0700)") from None
        except OSError as e:  # not ours to write, disk full...
            raise VaultError(f"cannot write a backup to {dest}: {e.strerror or type(e).__name__}") from None
        return {"backup": str(dest), "changes": self.changes(), "vault_id": self._meta["vault_id"]}

    def status(self) -> dict[str, Any]:
        count = self._db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        seals = self._db.execute("SELECT value FROM meta WHERE name = 'seal_count'").fetchone()[0]
        return {
            "path": str(self.path),
            "vault_id": self._meta["vault_id"],
            "format": self._meta["format"],
            "master_source": self._meta["master_source"],
            "master_generation": int(self._meta["master_generation"]),
            "accounts": count,
            "seal_count": int(seals),
            "changes": self.changes(),
        }


def sweep_temp_files(path: Path) -> None:
    """Remove temp files a crashed `create` may have left (they hold no plaintext)."""
    prefix = f".{path.name}.tmp-"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix) and stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def restore_vault(live: Path, backup: Path, source_for: SourceFor, *, force: bool = False) -> dict[str, Any]:
    """Put `backup` in place of the live vault, atomically; the daemon must be stopped.

    Refused unless the backup opens with the current master key and every record in it passes
    its integrity check, and (without `force`) unless it is at least as new as the live vault. The backup is only
    read: it is copied first, and the copy is checked and put in place (session 35's review: opening the backup
    itself turned it to WAL and, from a read-only directory, failed).
    """
    try:  # a regular file, read for its size only: a FIFO would hang the copy, a device never end it
        st = os.stat(backup)
    except OSError as e:
        raise VaultError(f"no vault at {backup} ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise VaultError(f"{backup} is not a regular file")
    with Vault.open(live, source_for) as current:  # opening and closing also checkpoints the live WAL
        live_changes, live_id = current.changes(), current.status()["vault_id"]
    with _atomic_file(live, overwrite=True) as tmp:
        with open(tmp, "wb") as out, open(backup, "rb") as src:
            left = st.st_size
            while left > 0 and (chunk := src.read(min(left, 1 << 20))):
                out.write(chunk)
                left -= len(chunk)
        with Vault.open(tmp, source_for) as b:
            problems = b.check_integrity()
            if problems:
                raise IntegrityError(f"{backup}: {problems[0]}")
            if b.status()["vault_id"] != live_id and not force:
                raise VaultError(f"{backup} is a copy of another vault; pass --force to restore it anyway")
            backup_changes = b.changes()
        for suffix in ("-wal", "-shm"):  # the copy's, closed cleanly above (checkpointed)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(tmp) + suffix)
        if backup_changes < live_changes and not force:
            raise VaultError(f"{backup} is older than the live vault ({backup_changes} changes, live "
                             f"{live_changes}); pass --force to restore it anyway")
        for suffix in ("-wal", "-shm"):  # the live vault was closed cleanly above; nothing of it may be replayed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(live) + suffix)
    return {"restored": str(backup), "changes": backup_changes, "live_changes_before": live_changes}


def record_names(path: Path, table: str) -> list[str]:
    """Account or bot names, read without unlocking (names are not secret): shell completion. [] without a vault."""
    if table not in ("accounts", "bots"):
        raise ValueError(table)
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return [name for (name,) in db.execute(f"SELECT name FROM {table} ORDER BY name")]  # noqa: S608 (fixed names)
    except sqlite3.Error:
        return []
    finally:
        db.close()


def account_exchanges(path: Path) -> dict[str, str]:
    """Account name -> exchange, read without unlocking (names and exchanges are not secret): what
    `config check` needs to check per-exchange settings. {} when there is no readable vault."""
    try:
        db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return dict(db.execute("SELECT name, exchange FROM accounts").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        db.close()
