"""What the running proxy knows: accounts with their real keys, bots with their credentials.

Built from the vault in one go and swapped in whole, so a request in flight
keeps the snapshot it started with and a reload never shows half a state.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from keyproxy.exchanges.base import Adapter, BotKey, RealKey, Upstream, resolve_upstream
from keyproxy.policy.model import AccountLimits, BotPolicy, PolicyError, parse_policy
from keyproxy.secret import Secret
from keyproxy.vault.records import AccountInfo, BotInfo

log = logging.getLogger("keyproxy.proxy")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AccountEntry:
    info: AccountInfo
    adapter: Adapter | None  # None: the exchange has no adapter in this version
    upstream: Upstream | None
    key: RealKey | None


@dataclass(frozen=True, slots=True)
class BotEntry:
    info: BotInfo
    key: BotKey | None  # drop-in mode
    token_digest: str | None  # token mode
    networks: tuple[IPNetwork, ...]
    policy: BotPolicy
    valid_until: float | None = None  # TTL, or a rotated-out credential's grace end: refused from then on

    @property
    def credential(self) -> str:
        """Which of the bot's credentials this entry is (`Snapshot.bot_by_credential` finds it again)."""
        return f"k:{self.key.key_id}" if self.key is not None else f"t:{self.token_digest}"

    def allows_ip(self, address: str) -> bool:
        return _allowed(address, self.networks)


@functools.lru_cache(maxsize=4096)
def _allowed(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """The peer address within one of the networks: parsed once per (address, allowlist), not per request."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: Mapping[str, AccountEntry]
    bots_by_key: Mapping[str, BotEntry]
    bots_by_token: Mapping[str, BotEntry]
    token_digest: Callable[[Secret], str]
    halts: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (all|account|bot, target) -> reason
    account_limits: Mapping[str, AccountLimits] = field(default_factory=dict)
    throttles: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # bot -> (until, requests/s)

    def bot_named(self, name: str) -> BotEntry | None:
        """A bot by name, whatever its credential (key or token)."""
        for bots in (self.bots_by_key, self.bots_by_token):
            for bot in bots.values():
                if bot.info.name == name:
                    return bot
        return None

    def bot_by_credential(self, credential: str) -> BotEntry | None:
        """The bot entry of one credential (`BotEntry.credential`): gone once that credential is rotated out or
        revoked."""
        kind, _, ident = credential.partition(":")
        return (self.bots_by_key if kind == "k" else self.bots_by_token if kind == "t" else {}).get(ident)

    def halt_reason(self, bot: str, account: str) -> str | None:
        """The kill switch covering this bot, if any (the widest first)."""
        for key in (("all", "*"), ("account", account), ("bot", bot)):
            if key in self.halts:
                return self.halts[key]
        return None


def build_snapshot(vault: object, adapters: Mapping[str, Adapter],
                   halts: list[tuple[str, str, str, float]] | None = None,
                   pinned: Mapping[str, Mapping[str, object]] | None = None,
                   account_limits: Mapping[str, AccountLimits] | None = None,
                   throttles: Mapping[str, tuple[float, float]] | None = None) -> Snapshot:
    """Read every account and bot from an open vault (duck-typed to keep this module I/O-free)."""
    accounts: dict[str, AccountEntry] = {}
    for info in vault.list_accounts():  # type: ignore[attr-defined]
        adapter = adapters.get(info.exchange)
        if adapter is None:
            accounts[info.name] = AccountEntry(info, None, None, None)
            continue
        creds = vault.credentials(info.name)  # type: ignore[attr-defined]
        key = RealKey(info.key_type, creds.api_key, creds.secret, creds.passphrase, creds.private_key)
        upstream = resolve_upstream(adapter, info.base_url, info.insecure_upstream, info.environment)
        accounts[info.name] = AccountEntry(info, adapter, upstream, key)
    by_key: dict[str, BotEntry] = {}
    by_token: dict[str, BotEntry] = {}
    for rec in vault.bot_records():  # type: ignore[attr-defined]
        info = rec.info
        key = (BotKey(info.key_id, info.key_type, secret=rec.secret, public_key=rec.public_key,
                      passphrase=rec.passphrase)
               if info.mode == "dropin" and info.key_id else None)
        try:
            policy = BotPolicy.from_json(info.policy or {"scopes": list(info.scopes),
                                                         "allow_ips": list(info.allow_ips)})
        except PolicyError as e:  # one bot's unreadable record keeps that bot out, not every bot's change
            log.error("a bot's stored policy cannot be read: the bot is refused until `keyproxy bot set` sets the "
                      "value again", extra={"bot": info.name, "problem": str(e)[:200]})
            continue
        if pinned and info.name in pinned:  # [bots.NAME] in the config file wins over `bot set`
            policy = parse_policy(dict(pinned[info.name]), base=policy)
        networks = tuple(ipaddress.ip_network(c) for c in policy.allow_ips)
        entry = BotEntry(info, key, rec.token_digest, networks, policy, rec.expires_at)
        if key is not None:
            by_key[key.key_id] = entry
        if rec.token_digest:
            by_token[rec.token_digest] = entry
        prev = rec.previous
        if prev is not None:  # the credential before the last rotation, accepted through its grace period
            until = prev.until if rec.expires_at is None else min(prev.until, rec.expires_at)
            prev_key = (BotKey(prev.key_id, info.key_type or "hmac", secret=prev.secret, public_key=prev.public_key,
                               passphrase=prev.passphrase) if prev.key_id else None)
            old = BotEntry(info, prev_key, prev.token_digest, networks, policy, until)
            if prev_key is not None and prev_key.key_id not in by_key:
                by_key[prev_key.key_id] = old
            if prev.token_digest and prev.token_digest not in by_token:
                by_token[prev.token_digest] = old
    return Snapshot(accounts, by_key, by_token, vault.token_digest,  # type: ignore[attr-defined]
                    {(scope, target): reason for scope, target, reason, _ in (halts or [])},
                    dict(account_limits or {}), dict(throttles or {}))
