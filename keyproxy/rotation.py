"""Asking the exchange about a real key, one way whether the daemon runs or not.

A new key is checked with a signed read before `key add --verify` or `key rotate` switches to it (the staged
rotation: add new -> verify with a read call -> switch -> keep the old version for rollback -> retire), and
`key audit` compares what each account's key may do at the exchange with what its bots need. The daemon
passes its live accounts, nonce sequence and upstream sessions; the CLI, with the daemon stopped, the
vault's accounts and its own sessions. Due dates and key age live in metrics.py (`rotation_due`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from keyproxy.errors import KeyproxyError
from keyproxy.exchanges.base import RealKey, Upstream
from keyproxy.proxy.own_calls import audit_key, verify_key
from keyproxy.proxy.upstream import UpstreamClients
from keyproxy.vault import Credentials


@dataclass(frozen=True)
class KeyAtExchange:
    """An account's key with what reaching its exchange takes."""

    name: str
    exchange: str
    adapter: Any
    upstream: Upstream
    key: RealKey


def real_key(key_type: str, creds: Credentials) -> RealKey:
    return RealKey(key_type, creds.api_key, creds.secret, creds.passphrase, creds.private_key)


def bot_scopes(bots: Iterable[Any], account: str) -> set[str]:
    """The scopes the account's active bots hold (vault records or their JSON), what the key must allow."""
    out: set[str] = set()
    for b in bots:
        doc = b if isinstance(b, dict) else {"account": b.account, "status": b.status, "scopes": b.scopes}
        if doc["account"] == account and doc["status"] == "active":
            out.update(doc["scopes"])
    return out


def vault_targets(vault: Any, name: str | None = None, active_only: bool = False) -> list[KeyAtExchange]:
    """The vault's accounts (or only `name`; only active keys with `active_only`) with what reaching their
    exchanges takes, for a process that holds the vault itself (the CLI with the daemon stopped, doctor)."""
    from keyproxy.exchanges import default_adapters
    from keyproxy.exchanges.base import resolve_upstream

    adapters = default_adapters()
    out = []
    for a in vault.list_accounts():
        adapter = adapters.get(a.exchange)
        if adapter is None or (name is not None and a.name != name) or (active_only and a.status != "active"):
            continue
        upstream = resolve_upstream(adapter, a.base_url, a.insecure_upstream, a.environment)
        key = real_key(a.key_type, vault.credentials(a.name))
        out.append(KeyAtExchange(a.name, a.exchange, adapter, upstream, key))
    return out


def stored_nonces(state: Any) -> Callable[[KeyAtExchange], int | None]:
    """Each account's own nonce sequence in state.db (None: an exchange without nonces, or no state here)."""
    from keyproxy.nonces import NonceSequence

    sequence = NonceSequence(state) if state is not None else None
    return lambda t: sequence.for_adapter(t.name, t.adapter) if sequence is not None else None


async def check_new_key(target: KeyAtExchange, clients: UpstreamClients, nonce: int | None) -> tuple[bool, str]:
    """(ok, what the exchange answered) for the adapter's signed read with the new key."""
    return await verify_key(target.adapter, target.upstream, target.key, clients, nonce)


async def audit_accounts(targets: Iterable[KeyAtExchange], scopes_of: Callable[[str], set[str]],
                         clients: UpstreamClients, nonce_for: Callable[[KeyAtExchange], int | None],
                         name: str | None = None) -> dict[str, Any]:
    """`key audit`: each account (or only `name`) asked at its exchange, in turn."""
    results = {}
    for target in targets:
        if name is None or target.name == name:
            results[target.name] = await audit_key(target.exchange, target.adapter, target.upstream, target.key,
                                                   clients, scopes_of(target.name), nonce_for(target))
    if name is not None and not results:
        raise KeyproxyError(f"no account named {name!r} (with a key keyproxy can use)")
    return results
