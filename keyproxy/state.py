"""The daemon's small durable state beside the vault: nonce high-water marks, halts, usage, incidents,
and the newest vault change keyproxy has seen (so an older vault copied into place is noticed).

SQLite in WAL mode, one transaction per change, so a `kill -9` at any instant leaves the last committed
value. `synchronous=FULL` by default; the daemon opens it with NORMAL unless `[audit] fsync = "always"`:
in WAL mode NORMAL commits survive any crash of the process (kill -9) and may lose only the newest
transactions to a power loss or an OS crash, the same promise as the audit trail's default interval fsync,
and it keeps an fsync per order answer off the request path. Nothing secret is stored here.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keyproxy.errors import KeyproxyError, VaultError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS nonces (account TEXT PRIMARY KEY, ceiling INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bot_sequences (bot TEXT PRIMARY KEY, last INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS halts (scope TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,"
    " since REAL NOT NULL, PRIMARY KEY (scope, target))",
    "CREATE TABLE IF NOT EXISTS usage (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS throttles (bot TEXT PRIMARY KEY, until REAL NOT NULL, rate REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS incidents (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, rule TEXT NOT NULL,"
    " subject TEXT NOT NULL, actions TEXT NOT NULL, reason TEXT NOT NULL, evidence TEXT NOT NULL, steps TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vault_seen (vault_id TEXT PRIMARY KEY, changes INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS placed_orders (account TEXT NOT NULL, order_id TEXT NOT NULL, bot TEXT NOT NULL,"
    " market TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (account, order_id)) WITHOUT ROWID",
    # the positions book (proxy/positions.py): orders with what the exchange confirmed filled, and each bot's
    # position per scope with today's flows; decimals as text
    "CREATE TABLE IF NOT EXISTS risk_orders (account TEXT NOT NULL, order_id TEXT NOT NULL, bot TEXT NOT NULL,"
    " scope TEXT NOT NULL, side TEXT NOT NULL, price TEXT, quantity TEXT, filled TEXT NOT NULL,"
    " filled_quote TEXT NOT NULL, final INTEGER NOT NULL, ts REAL NOT NULL, PRIMARY KEY (account, order_id))"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS risk_positions (bot TEXT NOT NULL, scope TEXT NOT NULL, account TEXT NOT NULL,"
    " qty TEXT NOT NULL, day TEXT NOT NULL, day_qty TEXT NOT NULL, day_cash TEXT NOT NULL, day_mark TEXT,"
    " PRIMARY KEY (bot, scope)) WITHOUT ROWID",
)
# tables written on every order answer, kept as one b-tree each (WITHOUT ROWID: the primary key is the table, no
# second index to update): a state.db file made before has them with rowids, rebuilt once (_without_rowids)
_KEYED_BY_PRIMARY_KEY = ("placed_orders", "risk_orders", "risk_positions")
MAX_PLACED_ORDERS = 40_000  # per account (an order's exchange id and client id each): beyond, the oldest of the
# bots holding the most are dropped (`_prune_shares`)
MAX_OUTSIDE = 10_000  # per account: client ids of orders placed outside keyproxy, bounded apart from the bots'
PRUNE_EVERY = 500  # records between two checks of that bound at the least (so at most this many over it)
MAX_INCIDENTS = 10_000  # incident records kept: older alerts are pruned past it, records of actions never
PRUNE_INCIDENTS = 1_000  # alerts pruned by one write at the most
ALERT_ONLY = '["alert"]'  # an incident's `actions` when it changed nothing (json.dumps(["alert"]))


def _prune_shares(counts: dict[str, int], excess: int) -> dict[str, int]:
    """How many of each bot's oldest records go to bring the account's `placed_orders` `excess` rows down: taken
    from the bots holding the most, levelled, never from a bot holding fewer. A bot flooding the record with
    orders pushes out only its own records, never another bot's (whose orders it could then cancel)."""
    shares: dict[str, int] = {}
    left = dict(counts)
    # never below an equal share of the bound: a bot flooding the record to the level of another's (a market maker
    # resting many orders) levels both down otherwise (session 30's review)
    floor = MAX_PLACED_ORDERS // max(1, len(counts))
    while excess > 0 and left and (top := max(left.values())) > floor:
        at_top = sorted(b for b, n in left.items() if n == top)
        below = max(max((n for n in left.values() if n < top), default=0), floor)
        step = min(top - below, -(-excess // len(at_top)))  # each bot at the top gives this many at most
        for owner in at_top:
            take = min(step, excess)
            shares[owner] = shares.get(owner, 0) + take
            left[owner] -= take
            excess -= take
    return {b: n for b, n in shares.items() if n > 0}


def placed_key(order_id: str, scope: str | None) -> str:
    """An order's key in `placed_orders`: its id, and its `market:symbol` scope where the exchange numbers each
    market's and symbol's orders apart (Binance: order 500 on ETHUSDT is not order 500 on BTCUSDT, nor spot
    BTCUSDT's order 500 USD-M BTCUSDT's). Keys written before carried `id@symbol` or the id alone."""
    return f"{order_id}@{scope}" if scope else order_id


# the owner `placed_orders` records for a client id of an order placed outside keyproxy (never a bot's name, which
# starts with a letter or digit): no bot places under it (`OrderOwners.learn_outside`), and it is no bot trading
OUTSIDE = "(outside)"


def client_key(client_id: str) -> str:
    """A client id's key in `placed_orders` (beside the exchange ids): which bot last placed an order under it."""
    return f"cid:{client_id}"


def placed_keys(order_id: str, scope: str | None) -> tuple[str, ...]:
    """Every key a version of keyproxy recorded the order under, newest first: `id@market:symbol`, then
    `id@symbol` (session 17), then the id alone."""
    if not scope:
        return (order_id,)
    return placed_key(order_id, scope), f"{order_id}@{scope.partition(':')[2]}", order_id


class VaultRolledBack(VaultError):
    """The vault file holds fewer changes than keyproxy has already seen in it: an older copy was put
    in place outside `keyproxy vault restore`, bringing back revoked bots and retired keys."""

    fix = "put the newest vault back, or go back to this copy on purpose with `keyproxy vault restore --force FILE`"

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}; {self.fix}")


def _without_rowids(db: sqlite3.Connection) -> None:
    """Rebuild the order tables of a state.db made by an older version as WITHOUT ROWID tables (each order
    answer then writes one b-tree per table, not two), in one transaction: a kill -9 leaves the old tables or
    the new ones, never neither."""
    schema = {table: statement for statement in _SCHEMA
              if (table := statement.split()[5]) in _KEYED_BY_PRIMARY_KEY}
    old = [table for table, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
           if table in schema and "WITHOUT ROWID" not in sql.upper()]
    if not old:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in old:
            db.execute(schema[table].replace(f"IF NOT EXISTS {table} ", f"{table}_rebuilt ", 1))
            db.execute(f"INSERT INTO {table}_rebuilt SELECT * FROM {table}")  # noqa: S608 (names from _SCHEMA)
            db.execute(f"DROP TABLE {table}")
            db.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class OwnersUnknown(KeyproxyError):
    """In a fleet whose shared record cannot be read: who placed an order this instance has no record of."""

    def __init__(self) -> None:
        super().__init__("the fleet's record of who placed which order cannot be read")


class StateStore:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            path.touch(mode=0o600)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            _without_rowids(self._db)
            for statement in _SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as e:
            raise VaultError(f"{path}: state database error: {e}") from None
        self._lock = threading.RLock()  # reentrant: writes inside `batch` take it again on the same thread
        self._batch = False
        self._prune_due: dict[str, int] = {}  # account -> attributions recorded before its bound is checked again
        self.mirror: Any = None  # a fleet's halts and throttles (fleet/store.py): changes here are shared there
        self.placed_mirror: Any = None  # a fleet's order attributions (fleet/gate.py FleetUsage)
        self.unshared_halts: list[tuple[str, str, str, float]] = []  # set here while the fleet could not be told

    def nonce_ceiling(self, account: str) -> int:
        row = self._db.execute("SELECT ceiling FROM nonces WHERE account = ?", (account,)).fetchone()
        return int(row[0]) if row else 0

    def raise_nonce_ceiling(self, account: str, ceiling: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO nonces VALUES (?, ?) ON CONFLICT(account) DO UPDATE SET ceiling = MAX(ceiling, ?)",
                (account, ceiling, ceiling),
            )

    def set_nonce_ceiling(self, account: str, ceiling: int) -> None:
        """The ceiling set as it is, lower too: only to repair one counted in the wrong unit (`NonceSequence.next`)."""
        with self._lock:
            self._db.execute("INSERT INTO nonces VALUES (?, ?) ON CONFLICT(account) DO UPDATE SET ceiling = ?",
                             (account, ceiling, ceiling))

    def advance_bot_sequence(self, bot: str, value: int) -> bool:
        """Record `value` as the bot's newest nonce; False if it is not above the last one (a replay)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT last FROM bot_sequences WHERE bot = ?", (bot,)).fetchone()
                if row is not None and value <= int(row[0]):
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute("INSERT OR REPLACE INTO bot_sequences VALUES (?, ?)", (bot, value))
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def record_audit_head(self, seq: int) -> None:
        """The newest audit seq known written; `audit verify` flags a trail that ends before it."""
        with self._lock:
            self._db.execute("INSERT INTO audit_head VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET seq = MAX(seq, ?)",
                             (seq, seq))

    def audit_head(self) -> int | None:
        row = self._db.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        return int(row[0]) if row else None

    def vault_seen(self, vault_id: str) -> int | None:
        row = self._db.execute("SELECT changes FROM vault_seen WHERE vault_id = ?", (vault_id,)).fetchone()
        return int(row[0]) if row else None

    def record_vault_seen(self, vault_id: str, changes: int, *, restored: bool = False) -> None:
        """Remember the vault's change count; it only rises, except when `vault restore` put a copy in place."""
        with self._lock:
            self._db.execute(
                "INSERT INTO vault_seen VALUES (?, ?) ON CONFLICT(vault_id) DO UPDATE SET changes = "
                + ("excluded.changes" if restored else "MAX(changes, excluded.changes)"), (vault_id, changes))

    def check_vault_current(self, vault_id: str, changes: int, path: Path) -> None:
        """Refuse a vault older than the one keyproxy last used (VaultRolledBack)."""
        seen = self.vault_seen(vault_id)
        if seen is not None and changes < seen:
            raise VaultRolledBack(
                f"{path} is older than the vault keyproxy last used ({changes} changes, {seen} seen before): an "
                "older copy was put in place outside `keyproxy vault restore`, which would bring back revoked bots "
                "and keys")

    def halts(self) -> list[tuple[str, str, str, float]]:
        """(scope, target, reason, since) for every halt in force; scope is all | account | bot."""
        return [tuple(r) for r in self._db.execute("SELECT scope, target, reason, since FROM halts ORDER BY since")]  # type: ignore[misc]

    def set_halt(self, scope: str, target: str, reason: str, since: float) -> None:
        """In force here at once; in a fleet then shared (a failure to share raises, the halt stays here)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO halts VALUES (?, ?, ?, ?)", (scope, target, reason, since))
        if self.mirror is not None:
            try:
                self.mirror.set_halt(scope, target, reason, since)
            except KeyproxyError:
                self.unshared_halts.append((scope, target, reason, since))  # kept, and shared once possible
                raise

    def clear_halt(self, scope: str, target: str) -> bool:
        """In a fleet the fleet's halt is lifted first: a resume that cannot be shared lifts nothing."""
        if self.mirror is not None:
            self.mirror.clear_halt(scope, target)
        with self._lock:
            return self._db.execute("DELETE FROM halts WHERE scope = ? AND target = ?", (scope, target)).rowcount > 0

    def set_throttle(self, bot: str, until: float, rate: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO throttles VALUES (?, ?, ?)", (bot, until, rate))
        if self.mirror is not None:
            self.mirror.set_throttle(bot, until, rate)

    def replace_halts(self, halts: list[tuple[str, str, str, float]],
                      throttles: dict[str, tuple[float, float]]) -> bool:
        """A fleet follower: the fleet's halts and throttles become this instance's, in one transaction.
        True when anything changed."""
        held = {(h[0], h[1]) for h in halts}
        halts = list(halts) + [h for h in self.unshared_halts if (h[0], h[1]) not in held]  # never dropped unshared
        with self._lock, self.batch():
            before = (self.halts(), self._db.execute("SELECT bot, until, rate FROM throttles ORDER BY bot").fetchall())
            self._db.execute("DELETE FROM halts")
            self._db.executemany("INSERT OR REPLACE INTO halts VALUES (?, ?, ?, ?)", halts)
            self._db.execute("DELETE FROM throttles")
            self._db.executemany("INSERT OR REPLACE INTO throttles VALUES (?, ?, ?)",
                                 [(bot, until, rate) for bot, (until, rate) in throttles.items()])
            after = (self.halts(), self._db.execute("SELECT bot, until, rate FROM throttles ORDER BY bot").fetchall())
        return before != after

    def throttles(self, now: float) -> dict[str, tuple[float, float]]:
        rows = self._db.execute("SELECT bot, until, rate FROM throttles WHERE until > ?", (now,)).fetchall()
        return {bot: (until, rate) for bot, until, rate in rows}

    def add_incident(self, ts: float, rule: str, subject: str, actions: list[str], reason: str,
                     evidence: list[str], steps: list[str]) -> int:
        """The record and the pruning it makes due in one transaction: a crash keeps both or neither."""
        import json

        with self.batch():
            cur = self._db.execute(
                "INSERT INTO incidents (ts, rule, subject, actions, reason, evidence, steps) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, rule, subject, json.dumps(actions), reason, json.dumps(evidence), json.dumps(steps)))
            self._prune_incidents()
            return int(cur.lastrowid or 0)

    def _prune_incidents(self) -> None:
        """Alerts older than the newest MAX_INCIDENTS records go, at most PRUNE_INCIDENTS a write (a table an
        older version let grow shrinks a step per incident, no write stalls on it); a record of an action
        (a suspension, quarantine, throttle, halt, cancel) is never pruned: it may still be in force."""
        row = self._db.execute("SELECT id FROM incidents ORDER BY id DESC LIMIT 1 OFFSET ?",
                               (MAX_INCIDENTS - 1,)).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE id < ? AND "
                             "actions = ? ORDER BY id LIMIT ?)", (row[0], ALERT_ONLY, PRUNE_INCIDENTS))

    def incidents(self, incident_id: int | None = None, *, limit: int | None = None, before: int | None = None,
                  since: int | None = None) -> list[tuple[object, ...]]:
        """Oldest first: one incident; or a page of `limit`, the newest (below `before`), or the oldest above
        `since` (to follow new ones); no limit: all. Read on a connection of its own, so a caller in another
        thread (the admin socket reads off the event loop) never shares the daemon's."""
        q = "SELECT id, ts, rule, subject, actions, reason, evidence, steps FROM incidents"
        with self._reader() as db:
            if incident_id is not None:
                return db.execute(q + " WHERE id = ?", (incident_id,)).fetchall()
            q += " WHERE id < ? AND id > ? ORDER BY id " + ("ASC" if since is not None else "DESC") + " LIMIT ?"
            rows = db.execute(q, (before if before is not None else 2**63 - 1, since if since is not None else -1,
                                  limit if limit is not None else -1)).fetchall()
        return rows if since is not None else rows[::-1]

    def incident_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0])

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30)  # WAL: reads what is committed, blocks no writer
        except sqlite3.Error as e:
            raise VaultError(f"{self.path}: state database error: {e}") from None
        try:
            yield db
        except sqlite3.Error as e:
            raise VaultError(f"{self.path}: state database error: {e}") from None
        finally:
            db.close()

    def usage_items(self, prefix: str) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM usage WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff"))
        return dict(rows.fetchall())

    def usage_value(self, key: str) -> str | None:
        """One usage row's value (None: there is none)."""
        row = self._db.execute("SELECT value FROM usage WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else None

    def forget_usage(self, low: str, high: str | None = None) -> None:
        """The usage rows with keys in [low, high) removed; without `high`, the row `low` alone."""
        with self._lock:
            if high is None:
                self._db.execute("DELETE FROM usage WHERE key = ?", (low,))
            else:
                self._db.execute("DELETE FROM usage WHERE key >= ? AND key < ?", (low, high))

    def set_usage(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO usage VALUES (?, ?)", (key, value))

    def record_placed_orders(self, account: str, bot: str, market: str, order_ids: tuple[str, ...],
                             ts: float) -> None:
        """Which bot placed which order (the exchange's id, from the answer it gave that bot): what lets
        `halt --bot B --cancel-orders` cancel B's orders and no other bot's. In a fleet, every instance's."""
        if self.placed_mirror is not None:
            self.placed_mirror.record_placed_orders(account, bot, market, order_ids, ts)
        self._insert_placed(account, [(oid, bot, market, ts) for oid in order_ids])

    def _insert_placed(self, account: str, rows: list[tuple[str, str, str, float]]) -> None:
        """(key, owner, market, ts) rows, each replacing its key's, and the account's records kept within bounds."""
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO placed_orders VALUES (?, ?, ?, ?, ?)",
                                 [(account, *row) for row in rows])
            self._bound_placed(account, len(rows))

    def _bound_placed(self, account: str, added: int) -> None:
        """The account's records within MAX_PLACED_ORDERS for the bots (`_prune_shares`) and MAX_OUTSIDE for client
        ids placed outside keyproxy, apart: a bot reading the operator's history must not push out another bot's
        records (session 33's review). Checked when a bound may be passed, not on each record (a count is a scan of
        the account's rows): a record adds a row at most, so a check that counted N rows is next due MAX - N
        records on (PRUNE_EVERY at the least: at the bound, by at most that many over it)."""
        due = self._prune_due.get(account, 0) - added
        self._prune_due[account] = due
        if due > 0:
            return
        counts = dict(self._db.execute("SELECT bot, COUNT(*) FROM placed_orders WHERE account = ? GROUP BY bot",
                                       (account,)).fetchall())
        outside = counts.pop(OUTSIDE, 0)
        total = sum(counts.values())
        self._prune_due[account] = max(PRUNE_EVERY, min(MAX_PLACED_ORDERS - total, MAX_OUTSIDE - outside))
        excesses = _prune_shares(counts, total - MAX_PLACED_ORDERS)
        if outside > MAX_OUTSIDE:
            excesses[OUTSIDE] = outside - MAX_OUTSIDE
        for owner, excess in excesses.items():
            dropped = self._db.execute(
                # a conditional order's last (`algo#`): the record is all that names its owner where the
                # positions book holds none, and the order may rest for weeks (session 30's review)
                "SELECT order_id, market, ts FROM placed_orders WHERE account = ? AND bot = ? "
                "ORDER BY order_id LIKE 'algo#%' OR order_id LIKE 'cid:algo#%', ts LIMIT ?",
                (account, owner, excess)).fetchall()
            self._db.executemany("DELETE FROM placed_orders WHERE account = ? AND order_id = ?",
                                 [(account, oid) for oid, _, _ in dropped])
            if self.placed_mirror is not None:  # the fleet's record holds no more than its instances do
                self.placed_mirror.forget_pruned(account, owner, dropped)

    def recorded(self, account: str, keys: list[str]) -> set[str]:
        """Those of `keys` anyone is on record under: this instance's record, and (in a fleet) every instance's in one
        round trip (`OwnersUnknown` where it cannot be read)."""
        marks = ",".join("?" * len(keys))
        found = {str(k) for (k,) in self._db.execute(
            f"SELECT order_id FROM placed_orders WHERE account = ? AND order_id IN ({marks})", (account, *keys))} \
            if keys else set()
        if self.placed_mirror is not None and len(found) < len(set(keys)):
            try:
                found |= set(self.placed_mirror.owners_of(account, [k for k in keys if k not in found]))
            except KeyproxyError:
                raise OwnersUnknown() from None
        return found

    def record_outside(self, account: str, rows: tuple[tuple[str, str, float], ...]) -> None:
        """Client ids of orders placed outside keyproxy (`OUTSIDE`; rows of key, market and when the order was made,
        the oldest pruned first), in a fleet written to Redis before this returns
        (`SharedStateUnavailable` if they cannot be: nothing is recorded then): the answer naming them is relayed
        after, and a bot must not name one through another instance meanwhile."""
        if self.placed_mirror is not None:
            self.placed_mirror.record_placed_now(account, OUTSIDE, rows)
        self._insert_placed(account, [(key, OUTSIDE, market, ts) for key, market, ts in rows])

    def placed_orders(self, account: str) -> dict[str, tuple[str, str]]:
        """order id -> (bot, market) for the account's orders keyproxy saw placed; in a fleet, any instance
        (the fleet's record first: an instance that cannot reach it still knows its own)."""
        rows = self._db.execute("SELECT order_id, bot, market FROM placed_orders WHERE account = ?", (account,))
        placed = {oid: (bot, market) for oid, bot, market in rows.fetchall()}
        if self.placed_mirror is not None:
            try:
                placed.update(self.placed_mirror.placed_orders(account))
            except KeyproxyError:
                pass
        return placed

    def placed_owner(self, account: str, keys: tuple[str, ...], strict: bool = False) -> str | None:
        """The bot recorded as placing the order any of `keys` names: this instance's record, else (in a fleet)
        any instance's; the fleet's record unreachable, this instance's answer stands (None: not known), or with
        `strict` an order this instance has no record of raises `OwnersUnknown` (it may be another bot's)."""
        if (owner := self.local_owner(account, keys)) is not None:
            return owner
        if self.placed_mirror is not None:
            try:
                return self.placed_mirror.placed_owner(account, keys)  # type: ignore[no-any-return]
            except KeyproxyError:
                if strict:
                    raise OwnersUnknown() from None
                return None
        return None

    def placed_owners(self, account: str, keys: tuple[str, ...], strict: bool = False) -> list[str]:
        """Every bot a record names under `keys`: this instance's, then (in a fleet) the fleet's, which may differ
        for a client id another bot used since through another instance (neither record is known to be the newer);
        the fleet's unreachable, this instance's alone (`strict`: `OwnersUnknown` where this instance has none)."""
        found = [owner] if (owner := self.local_owner(account, keys)) is not None else []
        if self.placed_mirror is not None:
            try:
                shared = self.placed_mirror.placed_owner(account, keys)
            except KeyproxyError:
                if strict and not found:
                    raise OwnersUnknown() from None
                shared = None
            if shared is not None and shared not in found:
                found.append(str(shared))
        return found

    def local_owner(self, account: str, keys: tuple[str, ...]) -> str | None:
        """The bot this instance recorded under any of `keys` (one query: a new order's id is under none)."""
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(f"SELECT order_id, bot FROM placed_orders WHERE account = ? AND order_id IN ({marks})",
                                (account, *keys)).fetchall()
        found = dict(rows)
        return next((str(found[k]) for k in keys if k in found), None)

    def other_placer(self, account: str, bot: str, market: str, symbol: str, strict: bool = False) -> str | None:
        """A bot other than `bot` recorded as placing an order in `market` (`*`: any) and `symbol` (`*`: any; a key
        naming no symbol matches every one): this instance's record, then (in a fleet) every instance's (unreachable:
        None, or with `strict` `OwnersUnknown`)."""
        def matches(key: str, where: str) -> bool:
            named = key.partition("@")[2].partition(":")[2]
            return market in ("*", where) and (symbol == "*" or not named or named == symbol)

        rows = self._db.execute("SELECT order_id, bot, market FROM placed_orders WHERE account = ? AND bot != ? "
                                "AND bot != ?" + (" AND market = ?" if market != "*" else ""),
                                (account, bot, OUTSIDE, market) if market != "*" else (account, bot, OUTSIDE))
        for key, owner, where in rows:
            if matches(key, where):
                return str(owner)
        if self.placed_mirror is not None:
            try:
                shared = self.placed_mirror.placed_orders(account)
            except KeyproxyError:
                if strict:
                    raise OwnersUnknown() from None
                return None
            return next((owner for key, (owner, where) in shared.items()
                         if owner not in (bot, OUTSIDE) and matches(key, where)), None)
        return None

    def forget_placed_orders(self, account: str, order_ids: list[str]) -> None:
        if self.placed_mirror is not None:
            self.placed_mirror.forget_placed_orders(account, order_ids)
        with self._lock:
            self._db.executemany("DELETE FROM placed_orders WHERE account = ? AND order_id = ?",
                                 [(account, oid) for oid in order_ids])

    def risk_rows(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        """Every row of the positions book: (orders, positions), in their tables' column order."""
        orders = self._db.execute("SELECT * FROM risk_orders ORDER BY ts").fetchall()
        positions = self._db.execute("SELECT * FROM risk_positions").fetchall()
        return orders, positions

    def save_risk(self, orders: list[tuple[object, ...]], positions: list[tuple[object, ...]],
                  dropped: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        """Orders and the positions their fills moved, in one transaction: a kill -9 leaves both or neither."""
        with self._lock:
            if self._batch:  # part of the batch's transaction
                self._risk_rows(orders, positions, dropped)
                return
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._risk_rows(orders, positions, dropped)

    def _risk_rows(self, orders: list[tuple[object, ...]], positions: list[tuple[object, ...]],
                   dropped: list[tuple[str, str]]) -> None:
        if orders:
            self._db.executemany("INSERT OR REPLACE INTO risk_orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", orders)
        if positions:
            self._db.executemany("INSERT OR REPLACE INTO risk_positions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", positions)
        if dropped:
            self._db.executemany("DELETE FROM risk_orders WHERE account = ? AND order_id = ?", list(dropped))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside is one transaction (one fsync): what one exchange answer changes (open-order
        counts, who placed which order, fills and positions) lands whole or not at all."""
        with self._lock:
            if self._batch:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._batch = True
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._batch = False

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside `batch`: what the block writes is undone alone if it raises, the rest of the transaction kept
        (answers learned together, one of which fails: proxy/learn_queue.py)."""
        with self._lock:
            self._db.execute("SAVEPOINT one")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO one")
                self._db.execute("RELEASE one")
                raise
            self._db.execute("RELEASE one")

    def close(self) -> None:
        self._db.close()
