"""Administrative operations, shared by the CLI (daemon stopped) and the admin socket (daemon running).

Each method takes and returns plain JSON-able values, so both paths print the
same thing. Secrets arrive as `Secret`s and leave only once: in the answer to
`add_bot`, which the operator hands to the bot.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from keyproxy.errors import UsageError
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
CREDENTIAL_FIELDS = ("api_key", "secret", "passphrase", "private_key")


def credentials_from_json(doc: Mapping[str, Any]) -> Credentials:
    unknown = sorted(set(doc) - set(CREDENTIAL_FIELDS))
    if unknown:
        raise UsageError(f"unknown credential field(s): {', '.join(u[:40] for u in unknown)}")
    for name, value in doc.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"credential field {name} must be a string")
    if not doc.get("api_key"):
        raise UsageError("api_key is empty")
    return Credentials(**{k: Secret(v) for k, v in doc.items() if v})


class Controls:
    def __init__(self, vault: Vault, adapters: Mapping[str, Adapter], proxy_base_url: str,
                 on_change: Callable[[], None] = lambda: None,
                 audit: Callable[..., object] | None = None) -> None:
        self.vault = vault
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
        return self.vault.account(name).as_json()

    def remove_account(self, name: str) -> dict[str, Any]:
        info = self.vault.account(name)
        bots = [b.name for b in self.vault.list_bots() if b.account == name]
        self._change("key.remove", {"account": name, "bots": bots}, lambda: self.vault.remove_account(name))
        return {**info.as_json(), "removed_bots": bots}

    # --- bots -------------------------------------------------------------

    def add_bot(self, name: str, account: str, scopes: str | list[str], allow_ips: list[str] | None,
                mode: str = "dropin", key_type: str = "hmac") -> dict[str, Any]:
        if mode not in BOT_MODES:
            raise UsageError(f"unknown bot mode {mode!r}; known: {', '.join(BOT_MODES)}")
        scope_list = parse_scopes(scopes)
        networks = parse_cidrs(allow_ips or list(DEFAULT_ALLOW_IPS))
        info = self.vault.account(account)
        adapter = self.adapters.get(info.exchange)
        if adapter is None:
            raise UsageError(f"exchange {info.exchange} is not supported by this version's proxy yet")
        shown: dict[str, Any] = {"bot": name, "account": account, "base_url": f"{self.proxy_base_url}/{account}"}
        if mode == "token":
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            new = NewBot(name, account, mode, scope_list, networks,
                         token_digest=self.vault.token_digest(Secret(token)))
            shown["token"] = token
        else:
            try:
                issued = adapter.issue_bot_key(key_type)
            except ValueError as e:
                raise UsageError(str(e)) from None
            kept = issued.kept
            new = NewBot(name, account, mode, scope_list, networks, key_type=kept.key_type, key_id=kept.key_id,
                         secret=kept.secret, public_key=kept.public_key, passphrase=kept.passphrase)
            shown.update(issued.shown)
        details = {"bot": name, "account": account, "mode": mode, "scopes": list(scope_list),
                   "allow_ips": list(networks)}
        self._change("bot.add", details, lambda: self.vault.add_bot(new))
        return shown

    def list_bots(self) -> list[dict[str, Any]]:
        return [b.as_json() for b in self.vault.list_bots()]

    def show_bot(self, name: str) -> dict[str, Any]:
        return self.vault.bot(name).as_json()

    def revoke_bot(self, name: str) -> dict[str, Any]:
        info = self._change("bot.revoke", {"bot": name}, lambda: self.vault.revoke_bot(name))
        return info.as_json()  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        st = self.vault.status()
        st["bots"] = len(self.vault.list_bots())
        return st
