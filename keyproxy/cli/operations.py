"""The operations every command uses, one interface whether the daemon runs or not.

`DirectControls` is the vault itself (daemon stopped): `Controls`, plus what asks the exchange (a new key's
check, `key audit`) made from this process. `RemoteControls` is the running daemon over its admin socket.
Commands call the same methods on either; `running` says which it is where only the daemon can act
(`halt --cancel-orders`, `reload`), and the direct side refuses those in one line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from keyproxy.admin.client import AdminClient
from keyproxy.admin.controls import Controls
from keyproxy.config import Settings
from keyproxy.errors import KeyproxyError, MasterKeyUnavailable, StateError, UsageError
from keyproxy.exchanges import default_adapters
from keyproxy.vault import Credentials, NewAccount

CANCEL_TIMEOUT_S = 300.0  # the daemon lists and cancels at every exchange of the scope


async def check_key(info: dict[str, Any], creds: Credentials, state: Any = None) -> tuple[bool, str]:
    """A new key of the account described by `info` (`key show`'s fields) checked with a signed read from
    this process; the account's own nonce sequence when this process holds the state, else the clock."""
    from keyproxy.exchanges.base import resolve_upstream
    from keyproxy.proxy.upstream import UpstreamClients
    from keyproxy.rotation import KeyAtExchange, check_new_key, real_key
    from keyproxy.nonces import NonceSequence

    adapter = default_adapters().get(info["exchange"])
    if adapter is None:
        raise UsageError(f"exchange {info['exchange']} is not supported by this version")
    upstream = resolve_upstream(adapter, info["base_url"], info["insecure_upstream"], info.get("environment"))
    target = KeyAtExchange(info["name"], info["exchange"], adapter, upstream, real_key(info["key_type"], creds))
    nonce = None
    if adapter.needs_nonce:  # in the exchange's unit (Hyperliquid's ms: a µs nonce broke the account's sequence)
        nonce = NonceSequence(state).for_adapter(info["name"], adapter) if state else \
            time.time_ns() // (1_000_000 if adapter.nonce_in_ms else 1000)
    clients = UpstreamClients()
    try:
        return await check_new_key(target, clients, nonce)
    finally:
        await clients.close()


class DirectControls(Controls):
    """The vault itself, with the daemon stopped."""

    running = False

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings

    def rotate_key_checked(self, name: str, creds: Credentials) -> dict[str, Any]:
        """`key rotate`: the exchange accepts the new key first, or nothing changes."""
        ok, answer = asyncio.run(check_key(self.show_account(name), creds, self.state))
        if not ok:
            raise KeyproxyError(f"the new key was not activated: the exchange answered {answer}")
        return self.rotate_key(name, creds, verified=answer)

    def audit_keys(self, name: str | None = None) -> dict[str, Any]:
        return asyncio.run(self._ask_exchanges(name))

    async def _ask_exchanges(self, name: str | None) -> dict[str, Any]:
        from keyproxy.proxy.upstream import UpstreamClients
        from keyproxy.rotation import audit_accounts, bot_scopes, stored_nonces, vault_targets

        bots = self.list_bots()
        clients = UpstreamClients()
        try:
            return await audit_accounts(vault_targets(self.vault, name), lambda account: bot_scopes(bots, account),
                                        clients, stored_nonces(self.state), name)
        finally:
            await clients.close()

    def rekey_to(self, to: str | None, new_passphrase_file: Any, new_key_file: Any) -> dict[str, Any]:
        from keyproxy.cli.context import has_tty
        from keyproxy.unlock import UnlockInputs, source_for_new

        choice = to or self.vault.status()["master_source"]
        if choice == "passphrase" and new_passphrase_file is None and not has_tty():
            raise MasterKeyUnavailable("rekey to a passphrase needs --new-passphrase-file or a terminal")
        return self.rekey_with(source_for_new(choice, self._settings, UnlockInputs(new_passphrase_file, new_key_file),
                                              named=True))

    def reload(self) -> dict[str, Any]:
        raise StateError("no daemon is running; the config is read when `keyproxy serve` starts")

    def cancel_orders(self, scope: str, target: str, reason: str) -> list[dict[str, Any]]:
        raise StateError("--cancel-orders needs the running daemon (it holds the keys and the record of who "
                         "placed which order); start `keyproxy serve`, or cancel on the exchange")


class RemoteControls:
    """The same operations, carried out by the running daemon."""

    running = True

    def __init__(self, client: AdminClient) -> None:
        self.client = client

    def add_account(self, acct: NewAccount) -> Any:
        return self.client.call("add_account", name=acct.name, exchange=acct.exchange, key_type=acct.key_type,
                                base_url=acct.base_url, insecure_upstream=acct.insecure_upstream,
                                rotate_every=acct.rotate_every, environment=acct.environment,
                                credentials=_revealed(acct.credentials))

    def rotate_key_checked(self, name: str, creds: Credentials) -> Any:
        return self.client.call("rotate_key", name=name, credentials=_revealed(creds))

    def audit_keys(self, name: str | None = None) -> Any:
        return self.client.call("audit_keys", name=name)

    def rekey_to(self, to: str | None, new_passphrase_file: Any, new_key_file: Any) -> Any:
        """The daemon rewraps its data key (no restart); it reads the new secret from the files named."""
        if to == "passphrase" and new_passphrase_file is None:
            raise UsageError("while the daemon runs, rekey to a passphrase needs --new-passphrase-file")
        return self.client.call("rekey", to=to, new_passphrase_file=str(new_passphrase_file) if new_passphrase_file
                                else None, new_key_file=str(new_key_file) if new_key_file else None)

    def cancel_orders(self, scope: str, target: str, reason: str) -> Any:
        self.client.timeout = CANCEL_TIMEOUT_S
        return self.client.call("cancel_orders", scope=scope, target=target, reason=reason)

    def __getattr__(self, op: str) -> Any:
        return getattr(self.client, op)


def _revealed(creds: Credentials) -> dict[str, str]:
    """The credential for the admin socket's JSON (a 0600 Unix socket to the same user's daemon)."""
    return {k: v.reveal_str() for k, v in creds.fields().items() if v is not None}
