"""Bot credentials in the vault: the virtual key a drop-in bot signs with, or a token's digest.

A drop-in HMAC bot's secret is sealed like any other field (keyproxy must
recompute the bot's HMAC). An asymmetric bot's private half is printed once
and never stored: keyproxy keeps only the public key. A token is stored as
HMAC(token key, token), so the vault never holds a usable token.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from keyproxy.errors import AlreadyExists, IntegrityError, NotFound, StateError
from keyproxy.secret import Secret
from keyproxy.vault import _crypto
from keyproxy.vault.records import BotInfo, check_name

BOTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS bots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mode TEXT NOT NULL,
    key_type TEXT,
    key_id TEXT UNIQUE,
    secret BLOB,
    public_key TEXT,
    token_digest TEXT UNIQUE,
    policy TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""


@dataclass(frozen=True, slots=True)
class NewBot:
    name: str
    account: str
    mode: str  # dropin | token
    scopes: tuple[str, ...]
    allow_ips: tuple[str, ...]
    key_type: str | None = None
    key_id: str | None = None
    secret: Secret | None = None
    public_key: bytes | None = None
    token_digest: str | None = None
    passphrase: Secret | None = None
    policy: dict[str, Any] | None = None  # limits beyond scopes and IPs (BotPolicy JSON)
    expires_at: float | None = None  # TTL end, written in the same transaction as the bot


@dataclass(frozen=True, slots=True)
class PreviousCredential:
    """A bot's credential before its last rotation, still accepted until `until`."""

    key_id: str | None
    secret: Secret | None
    public_key: bytes | None
    token_digest: str | None
    passphrase: Secret | None
    until: float


@dataclass(frozen=True, slots=True)
class BotRecord:
    """Everything the daemon needs to authenticate a bot (secret masked)."""

    info: BotInfo
    secret: Secret | None
    public_key: bytes | None
    token_digest: str | None
    passphrase: Secret | None = None
    expires_at: float | None = None
    previous: PreviousCredential | None = None


class BotsMixin:
    """Bot methods of `Vault` (see store.py for the transaction and sealing helpers)."""

    _db: sqlite3.Connection
    _meta: dict[str, str]

    def token_digest(self, token: Secret) -> str:
        return _crypto.mac_hex(self._token_key, token.reveal())  # type: ignore[attr-defined]

    def add_bot(self, bot: NewBot, *, now: float | None = None) -> BotInfo:
        check_name("bot", bot.name)
        check_name("account", bot.account)
        now = time.time() if now is None else now
        policy = json.dumps({**(bot.policy or {}), "scopes": list(bot.scopes), "allow_ips": list(bot.allow_ips)})
        with self._write() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT id FROM accounts WHERE name = ?", (bot.account,)).fetchone()
            if row is None:
                raise NotFound(f"no account named {bot.account!r}")
            if db.execute("SELECT 1 FROM bots WHERE name = ?", (bot.name,)).fetchone():
                raise AlreadyExists(f"bot {bot.name!r} already exists")
            cur = db.execute(
                "INSERT INTO bots (name, account_id, mode, key_type, key_id, public_key, token_digest, policy,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (bot.name, row[0], bot.mode, bot.key_type, bot.key_id,
                 bot.public_key.decode() if bot.public_key else None, bot.token_digest, policy, now, bot.expires_at),
            )
            bot_id = int(cur.lastrowid or 0)
            for field in ("secret", "passphrase"):
                value = getattr(bot, field)
                if value is not None:
                    sealed = self._seal(db, value, self._bot_aad(bot_id, field))  # type: ignore[attr-defined]
                    db.execute(f"UPDATE bots SET {field} = ? WHERE id = ?", (sealed, bot_id))
        return self.bot(bot.name)

    def _bot_aad(self, bot_id: int, field: str, generation: int = 1) -> bytes:
        return f"keyproxy/v1|{self._meta['vault_id']}|bot|{bot_id}|{generation}|{field}".encode()

    _BOT_SELECT = (
        "SELECT b.name, a.name, b.mode, b.key_type, b.key_id, b.policy, b.status, b.created_at, b.revoked_at,"
        " b.id, b.secret, b.public_key, b.token_digest, b.passphrase, b.expires_at, b.generation, b.prev_key_id,"
        " b.prev_secret, b.prev_public_key, b.prev_token_digest, b.prev_passphrase, b.prev_until"
        " FROM bots b JOIN accounts a ON a.id = b.account_id"
    )

    @staticmethod
    def _bot_info(row: tuple[Any, ...]) -> BotInfo:
        policy = json.loads(row[5])
        return BotInfo(name=row[0], account=row[1], mode=row[2], key_type=row[3], key_id=row[4],
                       scopes=tuple(policy["scopes"]), allow_ips=tuple(policy["allow_ips"]), status=row[6],
                       created_at=row[7], revoked_at=row[8], policy=policy, expires_at=row[14],
                       previous_valid_until=row[21])

    def list_bots(self) -> list[BotInfo]:
        return [self._bot_info(r) for r in self._db.execute(self._BOT_SELECT + " ORDER BY b.name").fetchall()]

    def bot(self, name: str) -> BotInfo:
        check_name("bot", name)
        row = self._db.execute(self._BOT_SELECT + " WHERE b.name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no bot named {name!r}")
        return self._bot_info(row)

    def bot_records(self) -> list[BotRecord]:
        """Every bot with what authenticating it takes; a record that fails integrity is skipped loudly."""
        records = []
        for row in self._db.execute(self._BOT_SELECT + " ORDER BY b.name").fetchall():
            info = self._bot_info(row)
            generation = int(row[15])
            opened: dict[str, Secret | None] = {}
            for field, blob, gen in (("secret", row[10], generation), ("passphrase", row[13], generation),
                                     ("prev_secret", row[17], generation - 1),
                                     ("prev_passphrase", row[20], generation - 1)):
                opened[field] = None
                if blob is not None:
                    try:
                        opened[field] = Secret(_crypto.unseal(self._seal_key, bytes(blob),  # type: ignore[attr-defined]
                                                              self._bot_aad(row[9], field.removeprefix("prev_"), gen)))
                    except _crypto.SealError:
                        raise IntegrityError(f"bot {info.name!r} ({field}) failed its integrity check") from None
            previous = None
            if row[21] is not None:
                previous = PreviousCredential(row[16], opened["prev_secret"], row[18].encode() if row[18] else None,
                                              row[19], opened["prev_passphrase"], float(row[21]))
            records.append(BotRecord(info, opened["secret"], row[11].encode() if row[11] else None, row[12],
                                     opened["passphrase"], row[14], previous))
        return records

    def set_bot_policy(self, name: str, policy: dict[str, Any]) -> BotInfo:
        """Replace a bot's whole policy (validated by the caller) in one transaction."""
        check_name("bot", name)
        with self._write() as db:  # type: ignore[attr-defined]
            if db.execute("UPDATE bots SET policy = ? WHERE name = ?", (json.dumps(policy), name)).rowcount == 0:
                raise NotFound(f"no bot named {name!r}")
        return self.bot(name)

    def rotate_bot(self, name: str, new: NewBot, grace_seconds: float, *, now: float | None = None) -> BotInfo:
        """Give the bot a new credential; the current one stays valid for `grace_seconds` (then refused)."""
        now = time.time() if now is None else now
        with self._write() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT id, status, generation, key_id, secret, public_key, token_digest, passphrase"
                             " FROM bots WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no bot named {name!r}")
            if row[1] == "revoked":
                raise StateError(f"bot {name!r} is revoked; add a new bot instead")
            bot_id, generation = int(row[0]), int(row[2]) + 1
            # the current fields stay sealed under their generation and become the previous credential
            db.execute("UPDATE bots SET prev_key_id = ?, prev_secret = ?, prev_public_key = ?, prev_token_digest = ?,"
                       " prev_passphrase = ?, prev_until = ?, generation = ?, key_id = ?, public_key = ?,"
                       " token_digest = ?, secret = NULL, passphrase = NULL WHERE id = ?",
                       (row[3], row[4], row[5], row[6], row[7], now + grace_seconds, generation, new.key_id,
                        new.public_key.decode() if new.public_key else None, new.token_digest, bot_id))
            for field in ("secret", "passphrase"):
                value = getattr(new, field)
                if value is not None:
                    sealed = self._seal(db, value, self._bot_aad(bot_id, field, generation))  # type: ignore[attr-defined]
                    db.execute(f"UPDATE bots SET {field} = ? WHERE id = ?", (sealed, bot_id))
        return self.bot(name)

    def set_bot_expiry(self, name: str, expires_at: float | None) -> BotInfo:
        check_name("bot", name)
        with self._write() as db:  # type: ignore[attr-defined]
            if db.execute("UPDATE bots SET expires_at = ? WHERE name = ?", (expires_at, name)).rowcount == 0:
                raise NotFound(f"no bot named {name!r}")
        return self.bot(name)

    def set_bot_status(self, name: str, status: str) -> bool:
        """active <-> suspended (a revoked bot stays revoked); True when the status changed."""
        assert status in ("active", "suspended")
        with self._write() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT status FROM bots WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no bot named {name!r}")
            if row[0] == "revoked":
                raise StateError(f"bot {name!r} is revoked; add a new bot instead")
            if row[0] == status:
                return False
            db.execute("UPDATE bots SET status = ? WHERE name = ?", (status, name))
        return True

    def revoke_bot(self, name: str, *, now: float | None = None) -> BotInfo:
        check_name("bot", name)
        now = time.time() if now is None else now
        with self._write() as db:  # type: ignore[attr-defined]
            row = db.execute("SELECT status FROM bots WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no bot named {name!r}")
            if row[0] == "revoked":
                raise StateError(f"bot {name!r} is already revoked")
            db.execute("UPDATE bots SET status = 'revoked', revoked_at = ?, secret = NULL, passphrase = NULL,"
                       " prev_secret = NULL, prev_passphrase = NULL, prev_until = NULL WHERE name = ?",
                       (now, name))
        return self.bot(name)
