"""Administrative operations, shared by the CLI (daemon stopped) and the admin socket (daemon running).

Each method takes and returns plain JSON-able values, so both paths print the
same thing. Secrets arrive as `Secret`s and leave only once: in the answer to
`add_bot`, which the operator hands to the bot.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import replace
from collections.abc import Callable, Mapping
from typing import Any

from keyproxy.errors import NotFound, StateError, UsageError
from keyproxy.exchanges.catalog import EXCHANGES
from keyproxy.policy.model import BotPolicy, PolicyError, parse_policy
from keyproxy.state import StateStore
from keyproxy.exchanges.base import Adapter, resolve_upstream
from keyproxy.secret import Secret
from keyproxy.vault import Credentials, NewAccount, Vault
from keyproxy.vault.bots import NewBot
from keyproxy.vault.records import (
    BOT_MODES,
    DEFAULT_ALLOW_IPS,
    parse_cidrs,
    parse_scopes,
    validate_new_account,
)

TOKEN_PREFIX = "kpt_"
INCIDENTS_PAGE = 200  # `incidents list` without --limit: the newest 200
MAX_INCIDENTS_PAGE = 1_000
CREDENTIAL_FIELDS = ("api_key", "secret", "passphrase", "private_key")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def field_names(names: list[str]) -> str:
    """Unknown JSON member names for an error: a name of letters only is shown (a typo to fix), any other is only
    counted, since a secret pasted in the wrong place may sit there (session 35's review: one was echoed)."""
    shown = [n for n in names if re.fullmatch(r"[A-Za-z_]{1,24}", n)]
    hidden = len(names) - len(shown)
    return ", ".join(shown + ([f"{hidden} more whose name{' is' if hidden == 1 else 's are'} not shown (it may be "
                               "a secret)"] if hidden else []))


def credentials_from_json(doc: Mapping[str, Any], where: str = "", accepted: str = "") -> Credentials:
    """A real credential from its JSON (`key add`/`key rotate` on stdin, or the admin socket's call): only
    the known fields, each a string, an api_key. `where`/`accepted` tell the operator where it came from."""
    unknown = sorted(set(doc) - set(CREDENTIAL_FIELDS))
    if unknown:
        raise UsageError(f"unknown credential field(s){' ' + where if where else ''}: "
                         f"{field_names(unknown)}" + (f"; accepted: {accepted}" if accepted else ""))
    for name, value in doc.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"credential field {name} must be a string")
        if isinstance(value, str) and not _utf8(value):  # a lone surrogate (\ud800 in the JSON) encodes to nothing
            raise UsageError(f"credential field {name} is not valid text (an unpaired UTF-16 surrogate)")
    if not doc.get("api_key"):
        raise UsageError(f"credential JSON {where} has no api_key" if where else "api_key is empty")
    for name in ("api_key", "passphrase"):  # sent in a header as they are: a CR/LF there is a paste error
        value = doc.get(name)
        if value and any(c < " " or c == "\x7f" for c in value):
            raise UsageError(f"credential field {name} holds a control character (a line break?): paste it again")
    return Credentials(**{k: Secret(v) for k, v in doc.items() if v})  # empty -> missing


class Controls:
    def __init__(self, vault: Vault, adapters: Mapping[str, Adapter], proxy_base_url: str,
                 on_change: Callable[[], None] = lambda: None,
                 audit: Callable[..., object] | None = None, state: StateStore | None = None,
                 pinned: Callable[[], Mapping[str, Mapping[str, Any]]] = dict,
                 reload_config: Callable[[], dict[str, Any]] | None = None,
                 source_for_new: Callable[[str, str | None, str | None], Any] | None = None,
                 budgets: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.vault = vault
        self._budgets = budgets  # the exchanges' own rate budgets in use (the daemon's governor)
        self.dead_man: Callable[[], list[dict[str, Any]]] | None = None  # the daemon's cancel-on-silence timers
        self.risk: Callable[[], list[dict[str, Any]]] | None = None  # the daemon's positions and loss limits
        self.fleet: Callable[[], dict[str, Any]] | None = None  # the daemon's view of its fleet ([shared_state])
        self._source_for_new = source_for_new
        self.pinned = pinned
        self._reload_config = reload_config
        self.state = state
        self.adapters = adapters
        self.proxy_base_url = proxy_base_url.rstrip("/")
        self.on_change = on_change
        self._audit = audit
        self.actor_uid = os.getuid()  # the admin socket sets the peer's uid for each call

    def _record(self, op: str, result: str, **details: Any) -> None:
        """Every change is recorded before it is made (fail closed) and again with its result."""
        if self._audit is not None:
            self._audit("admin", op=op, result=result, peer_uid=self.actor_uid, **details)

    def _change(self, op: str, details: dict[str, Any], apply: Callable[[], Any]) -> Any:
        self._record(op, "attempt", **details)
        try:
            result = apply()
        except Exception as e:
            self._record(op, f"failed: {e}"[:200], **details)
            self.on_change()  # what did change (a halt in force here that a fleet could not be told of) counts
            raise
        self._record(op, "ok", **details)
        self.on_change()
        return result

    # --- accounts ---------------------------------------------------------

    def add_account(self, acct: NewAccount) -> dict[str, Any]:
        validate_new_account(acct)
        adapter = self.adapters.get(acct.exchange)
        if adapter is not None and (acct.base_url is not None or acct.environment is not None):
            try:
                resolve_upstream(adapter, acct.base_url, acct.insecure_upstream, acct.environment)
            except ValueError as e:
                raise UsageError(f"--base-url: {e}") from None
        details = {"account": acct.name, "exchange": acct.exchange, "key_type": acct.key_type,
                   "environment": acct.environment, "base_url": acct.base_url}
        info = self._change("key.add", details, lambda: self.vault.add_account(acct))
        return info.as_json()  # type: ignore[no-any-return]

    def list_accounts(self) -> list[dict[str, Any]]:
        return [a.as_json() for a in self.vault.list_accounts()]

    def show_account(self, name: str) -> dict[str, Any]:
        info = self.vault.account(name).as_json()
        if info["exchange"] == "hyperliquid":  # addresses are public; the key itself is never shown
            from keyproxy.exchanges import _eth

            creds = self.vault.credentials(name)
            info["master_address"] = creds.api_key.reveal().decode("ascii", "replace").lower()
            signer = _eth.address_of(_eth.parse_private_key(creds.private_key.reveal())) if creds.private_key else None
            info["signer_address"] = signer
            info["signer_is_master"] = signer == info["master_address"]
        return info  # type: ignore[no-any-return]

    def remove_account(self, name: str) -> dict[str, Any]:
        info = self.vault.account(name)
        bots = [b.name for b in self.vault.list_bots() if b.account == name]
        self._change("key.remove", {"account": name, "bots": bots}, lambda: self.vault.remove_account(name))
        return {**info.as_json(), "removed_bots": bots}

    # --- bots -------------------------------------------------------------

    def add_bot(self, name: str, account: str, scopes: str | list[str], allow_ips: list[str] | None,
                mode: str = "dropin", key_type: str | None = None, policy: dict[str, Any] | None = None,
                ttl_seconds: float | None = None) -> dict[str, Any]:
        if mode not in BOT_MODES:
            raise UsageError(f"unknown bot mode {mode!r}; known: {', '.join(BOT_MODES)}")
        scope_list = parse_scopes(scopes)
        networks = parse_cidrs(allow_ips or list(DEFAULT_ALLOW_IPS))
        try:
            limits = parse_policy({**(policy or {}), "scopes": list(scope_list), "allow_ips": list(networks)})
        except PolicyError as e:
            raise UsageError(str(e)) from None
        info = self.vault.account(account)
        adapter = self.adapters.get(info.exchange)
        if adapter is None:
            raise UsageError(f"exchange {info.exchange} is not supported by this version's proxy yet")
        shown: dict[str, Any] = {"bot": name, "account": account, "base_url": f"{self.proxy_base_url}/{account}"}
        new, creds = self._new_credential(adapter, info.exchange, name, account, mode, key_type, scope_list, networks,
                                          limits.to_json())
        shown.update(creds)
        if info.exchange == "hyperliquid":  # the SDKs need the account's (public) master address too
            shown["wallet_address"] = self.vault.credentials(account).api_key.reveal().decode("ascii", "replace")
        details = {"bot": name, "account": account, "mode": mode, "policy": limits.to_json(), "ttl": ttl_seconds}
        expires = None if ttl_seconds is None else time.time() + ttl_seconds
        new = replace(new, expires_at=expires)  # one transaction: never a TTL bot written without its expiry
        self._change("bot.add", details, lambda: self.vault.add_bot(new))
        if expires is not None:
            shown["expires_at"] = expires
        return shown

    def _new_credential(self, adapter: Adapter, exchange: str, name: str, account: str, mode: str,
                        key_type: str | None, scopes: tuple[str, ...], networks: tuple[str, ...],
                        policy: dict[str, Any]) -> tuple[NewBot, dict[str, str]]:
        """A fresh virtual credential: what the vault keeps, and what the operator hands the bot once."""
        if mode == "token":
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            return NewBot(name, account, mode, scopes, networks, token_digest=self.vault.token_digest(Secret(token)),
                          policy=policy), {"token": token}
        # the exchange's own first key type unless asked otherwise (Coinbase: ec, the rest: hmac)
        try:
            issued = adapter.issue_bot_key(key_type or EXCHANGES[exchange].key_types[0])
        except ValueError as e:
            raise UsageError(str(e)) from None
        kept = issued.kept
        return NewBot(name, account, mode, scopes, networks, key_type=kept.key_type, key_id=kept.key_id,
                      secret=kept.secret, public_key=kept.public_key, passphrase=kept.passphrase,
                      policy=policy), dict(issued.shown)

    def rotate_bot(self, name: str, grace_seconds: float = 3600) -> dict[str, Any]:
        """A new virtual credential for the bot; the old one keeps working for `grace_seconds`."""
        info = self.vault.bot(name)
        account = self.vault.account(info.account)
        adapter = self.adapters.get(account.exchange)
        if adapter is None:
            raise UsageError(f"exchange {account.exchange} is not supported by this version's proxy yet")
        new, creds = self._new_credential(adapter, account.exchange, name, info.account, info.mode, info.key_type,
                                          info.scopes, info.allow_ips, dict(info.policy or {}))
        self._change("bot.rotate", {"bot": name, "grace_seconds": grace_seconds},
                     lambda: self.vault.rotate_bot(name, new, grace_seconds))
        if account.exchange == "hyperliquid":
            creds["wallet_address"] = self.vault.credentials(info.account).api_key.reveal().decode("ascii", "replace")
        return {"bot": name, "account": info.account, "base_url": f"{self.proxy_base_url}/{info.account}", **creds,
                "previous_valid_until": self.vault.bot(name).previous_valid_until}

    def renew_bot(self, name: str, ttl_seconds: float | None) -> dict[str, Any]:
        """Extend (or, with no TTL, lift) a bot credential's expiry."""
        expires = None if ttl_seconds is None else time.time() + ttl_seconds
        info = self._change("bot.renew", {"bot": name, "ttl": ttl_seconds},
                            lambda: self.vault.set_bot_expiry(name, expires))
        return info.as_json()  # type: ignore[no-any-return]

    def list_bots(self) -> list[dict[str, Any]]:
        return [b.as_json() for b in self.vault.list_bots()]

    def show_bot(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.vault.bot(name).as_json()
        risk = next((r for r in self.risk() if r["bot"] == name), None) if self.risk is not None else None
        if risk is not None:  # the daemon's positions book (docs/risk.md)
            out["positions"] = [f"{x['scope']} {x['position']} (resting buy {x['open_buy']}, sell {x['open_sell']})"
                                for x in risk["positions"]]
            limit = f" of limit -{risk['max_daily_loss']}" if risk["max_daily_loss"] else ""
            out["day_pnl"] = (f"{risk['day_pnl'] or '?'}{limit}"
                              + (" (LOSS LIMIT HIT)" if risk["loss_limit_hit"] else ""))
        return out

    def bot_where(self, name: str) -> dict[str, Any]:
        """What a client configuration names for a bot, without its secret: base URL, exchange, key id."""
        info = self.vault.bot(name)
        account = self.vault.account(info.account)
        out = {"bot": info.name, "account": info.account, "exchange": account.exchange, "mode": info.mode,
               "key_id": info.key_id, "base_url": f"{self.proxy_base_url}/{info.account}"}
        if account.exchange == "hyperliquid":
            out["wallet_address"] = self.vault.credentials(info.account).api_key.reveal().decode("ascii", "replace")
        return out

    def set_bot(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a bot's policy (`bot set BOT key=value ...`); validated whole before anything is written."""
        info = self.vault.bot(name)
        pinned = set(self.pinned().get(name, {})) & set(changes)
        if pinned:
            raise StateError(f"{', '.join(sorted(pinned))} for bot {name!r} is set in the config file "
                             f"([bots.{name}]); change it there and run `keyproxy reload`")
        stored = info.policy or {"scopes": list(info.scopes), "allow_ips": list(info.allow_ips)}
        try:  # what the change replaces is not read: a value stored unreadable is repaired by setting it again
            current = BotPolicy.from_json({k: v for k, v in stored.items() if k not in changes})
        except PolicyError as e:
            raise StateError(f"bot {name!r}'s stored policy cannot be read ({e}); set that value again with "
                             f"`keyproxy bot set {name} KEY=VALUE`") from None
        try:
            updated = parse_policy(changes, base=current)
        except PolicyError as e:
            raise UsageError(str(e)) from None
        new = self._change("bot.set", {"bot": name, "changes": {k: str(v) for k, v in changes.items()}},
                           lambda: self.vault.set_bot_policy(name, updated.to_json()))
        return new.as_json()  # type: ignore[no-any-return]

    def reload(self) -> dict[str, Any]:
        """Re-read the config file (SIGHUP does the same); an invalid one is refused and the old one stays."""
        if self._reload_config is None:
            raise UsageError("reload needs the running daemon")
        return self._reload_config()

    def backup(self, path: str) -> dict[str, Any]:
        """A consistent, still-encrypted copy of the vault (online: the daemon keeps serving)."""
        from pathlib import Path

        return self._change("vault.backup", {"file": path}, lambda: self.vault.backup_to(Path(path)))  # type: ignore[no-any-return]

    def rekey_with(self, source: Any) -> dict[str, Any]:
        """Rewrap the data key under a new master key (one transaction); records stay as they are."""
        self._change("vault.rekey", {"to": source.kind}, lambda: self.vault.rekey(source))
        return self.vault.status()

    def rekey(self, to: str | None = None, new_passphrase_file: str | None = None,
              new_key_file: str | None = None) -> dict[str, Any]:
        """The admin-socket form: the daemon builds the new source from file paths (never a secret in the call)."""
        if self._source_for_new is None:
            raise UsageError("rekey through the admin socket needs the running daemon")
        source = self._source_for_new(to or self.vault.status()["master_source"], new_passphrase_file, new_key_file)
        return self.rekey_with(source)

    def rotate_key(self, name: str, creds: Credentials, verified: str) -> dict[str, Any]:
        """Switch to a new real key that the exchange has just accepted (`verified` says how)."""
        info = self._change("key.rotate", {"account": name, "verified": verified},
                            lambda: self.vault.rotate_account(name, creds))
        return info.as_json()  # type: ignore[no-any-return]

    def rollback_key(self, name: str) -> dict[str, Any]:
        info = self._change("key.rollback", {"account": name}, lambda: self.vault.rollback_account(name))
        return info.as_json()  # type: ignore[no-any-return]

    def retire_key(self, name: str) -> dict[str, Any]:
        removed = self._change("key.retire", {"account": name}, lambda: self.vault.retire_previous(name))
        return {**self.vault.account(name).as_json(), "retired_versions": removed}

    def restore_bot(self, name: str) -> dict[str, Any]:
        """Lift a suspension (by an anomaly rule or an operator); recorded with who did it."""
        self._change("bot.restore", {"bot": name}, lambda: self.vault.set_bot_status(name, "active"))
        return self.vault.bot(name).as_json()

    def restore_key(self, name: str) -> dict[str, Any]:
        """Lift a quarantine; refused for a key the exchange itself revoked (rotate instead)."""
        self._change("key.restore", {"account": name}, lambda: self.vault.set_account_status(name, "active"))
        return self.vault.account(name).as_json()

    def list_incidents(self, limit: int | None = None, before: int | None = None,
                       since: int | None = None) -> list[dict[str, Any]]:
        """A page, oldest first: the newest `limit` (below id `before`), or the oldest above id `since`. Paged
        because the table holds thousands: one answer of them all was megabytes built on the daemon's loop."""
        from keyproxy.anomaly.respond import incident_json

        for name, value, low in (("limit", limit, 1), ("before", before, 0), ("since", since, 0)):
            if value is not None and (type(value) is not int or value < low or value > 2**62):
                raise UsageError(f"{name} must be a whole number of at least {low}, not {str(value)[:20]!r}")
        limit = INCIDENTS_PAGE if limit is None else limit
        if limit > MAX_INCIDENTS_PAGE:
            raise UsageError(f"limit must be at most {MAX_INCIDENTS_PAGE} (page on with --before ID)")
        rows = self._need_state().incidents(limit=limit, before=before, since=since)
        return [incident_json(row) for row in rows]

    def show_incident(self, incident_id: int) -> dict[str, Any]:
        from keyproxy.anomaly.respond import incident_json

        if type(incident_id) is not int or not 0 < incident_id < 2**62:
            raise UsageError(f"an incident id is a whole number of at least 1, not {str(incident_id)[:20]!r}")
        rows = self._need_state().incidents(incident_id)
        if not rows:
            raise NotFound(f"no incident {incident_id}")
        return incident_json(rows[0])

    def _need_state(self) -> StateStore:
        if self.state is None:
            raise StateError("no state store available")
        return self.state

    def halt(self, scope: str, target: str, reason: str) -> dict[str, Any]:
        """Kill switch: only reads and cancels (and reduce-only orders) pass; persisted, effective at once."""
        if scope not in ("all", "account", "bot"):
            raise UsageError("halt needs --all, --account A or --bot B")
        if scope == "all" and target != "*":  # a halt of "all x" halted nothing and no resume lifted it
            raise UsageError("a halt of everything names no target")
        if scope == "account":
            self.vault.account(target)
        elif scope == "bot":
            self.vault.bot(target)
        state = self._need_state()
        self._change("halt", {"scope": scope, "target": target, "reason": reason},
                     lambda: state.set_halt(scope, target, reason, time.time()))
        return {"scope": scope, "target": target, "reason": reason}

    def resume(self, scope: str, target: str) -> dict[str, Any]:
        state = self._need_state()
        found = self._change("resume", {"scope": scope, "target": target}, lambda: state.clear_halt(scope, target))
        if not found:
            raise StateError(f"no halt in force for {scope} {target}")
        return {"scope": scope, "target": target}

    def list_halts(self) -> list[dict[str, Any]]:
        state = self._need_state()
        return [{"scope": s, "target": t, "reason": r, "since": since} for s, t, r, since in state.halts()]

    def revoke_bot(self, name: str) -> dict[str, Any]:
        info = self._change("bot.revoke", {"bot": name}, lambda: self.vault.revoke_bot(name))
        return info.as_json()  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        st = self.vault.status()
        st["bots"] = len(self.vault.list_bots())
        st["halts"] = self.list_halts() if self.state is not None else []
        st["suspended_bots"] = [b.name for b in self.vault.list_bots() if b.status == "suspended"]
        st["quarantined_keys"] = [a.name for a in self.vault.list_accounts() if a.status != "active"]
        st["incidents"] = self._need_state().incident_count() if self.state is not None else 0
        st["throttled_bots"] = sorted(self._need_state().throttles(time.time())) if self.state is not None else []
        st["budgets"] = self._budgets() if self._budgets is not None else []
        st["dead_man"] = self.dead_man() if self.dead_man is not None else []
        st["risk"] = self.risk() if self.risk is not None else []
        st["fleet"] = self._fleet_report()
        return st

    def _fleet_report(self) -> dict[str, Any] | None:
        """The fleet ([shared_state]) as Redis sees it: its version, the instances and how far behind each is."""
        if self.fleet is not None:
            return self.fleet()
        replica = getattr(self.vault, "replica", None)
        return replica.fleet.report() if replica is not None else None
