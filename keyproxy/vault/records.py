"""Plain values the vault stores and returns; validation of operator input.

Nothing here touches the disk or a key: `validate_new_account` says what is
wrong with an input before the vault opens a transaction for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keyproxy.errors import UsageError
from keyproxy.exchanges.catalog import EXCHANGES, KEY_TYPES
from keyproxy.secret import Secret
from keyproxy.vault import _crypto

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ACCOUNT_STATUSES = ("active", "quarantined", "revoked")
SECRET_FIELDS = ("api_key", "secret", "passphrase", "private_key")
MAX_FIELD_BYTES = 16_384


def check_name(kind: str, name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid {kind} name {name[:80]!r}: use 1-64 of a-z 0-9 _ -, starting with a letter or digit"
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """One version of an account's real exchange credential; every field masked."""

    api_key: Secret
    secret: Secret | None = None
    passphrase: Secret | None = None
    private_key: Secret | None = None

    def fields(self) -> dict[str, Secret | None]:
        return {f: getattr(self, f) for f in SECRET_FIELDS}


@dataclass(frozen=True, slots=True)
class NewAccount:
    name: str
    exchange: str
    key_type: str
    credentials: Credentials
    base_url: str | None = None
    insecure_upstream: bool = False
    rotate_every: int | None = None  # seconds
    environment: str | None = None  # the adapter's environment name; None: production or by base_url


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """Everything about an account except its secrets."""

    name: str
    exchange: str
    key_type: str
    status: str
    version: int
    fingerprint: str
    created_at: float
    rotated_at: float
    rotate_every: int | None
    base_url: str | None
    insecure_upstream: bool
    versions: int
    environment: str | None = None

    def as_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}


def check_account_meta(name: str, exchange: str, key_type: str) -> None:
    """The checks that need no secret, so the CLI can run them before unlocking."""
    check_name("account", name)
    rules = EXCHANGES.get(exchange)
    if rules is None:
        raise UsageError(f"unknown exchange {exchange[:40]!r}; known: {', '.join(sorted(EXCHANGES))}")
    if key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type {key_type[:40]!r}; known: {', '.join(KEY_TYPES)}")
    if key_type not in rules.key_types:
        raise UsageError(f"{exchange} keys are of type {', '.join(rules.key_types)}, not {key_type}")


def validate_new_account(acct: NewAccount) -> None:
    """Raise UsageError naming the first problem; nothing is written before this passes."""
    check_account_meta(acct.name, acct.exchange, acct.key_type)
    check_credentials(acct.exchange, acct.key_type, acct.credentials)


def check_credentials(exchange: str, key_type: str, creds: Credentials) -> None:
    for field, value in creds.fields().items():
        if value is not None and len(value) > MAX_FIELD_BYTES:
            raise UsageError(f"{field} is longer than {MAX_FIELD_BYTES} bytes")
    if not creds.api_key:
        raise UsageError("api_key is empty")
    if key_type == "eth":
        _check_eth_key(creds)
    elif key_type == "hmac":
        if not creds.secret:
            raise UsageError("secret is empty")
        if creds.private_key:
            raise UsageError("an hmac key has a secret, not a private_key")
        if exchange == "kraken":
            _check_kraken_secret(creds.secret.reveal())
    else:
        if not creds.private_key:
            raise UsageError(f"a {key_type} key needs private_key (PEM)")
        problem = _crypto.private_key_problem(creds.private_key.reveal(), key_type, raw_ed25519=exchange == "coinbase")
        if problem:
            raise UsageError(problem)
    if EXCHANGES[exchange].needs_passphrase and not creds.passphrase:
        raise UsageError(f"{exchange} keys need a passphrase")


def _check_kraken_secret(secret: bytes) -> None:
    """Kraken's private key is base64 (of 64 bytes); anything else could never sign a request."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise UsageError("secret: a Kraken private key is base64 (as Kraken shows it, about 88 characters); "
                         "this one is not")


def _check_eth_key(creds: Credentials) -> None:
    """Hyperliquid: api_key is the account's (master) address, private_key the signing key (0x + 64 hex)."""
    from keyproxy.exchanges import _eth

    if not _eth.is_address(creds.api_key.reveal().decode("ascii", "replace")):
        raise UsageError("api_key must be the account's master address (0x followed by 40 hex digits)")
    if creds.secret:
        raise UsageError("an eth key has a private_key, not a secret")
    if not creds.private_key:
        raise UsageError("an eth key needs private_key (0x followed by 64 hex digits)")
    try:
        _eth.parse_private_key(creds.private_key.reveal())
    except ValueError as e:
        raise UsageError(str(e)) from None


# --- bots -----------------------------------------------------------------

BOT_SCOPES = ("read", "trade", "withdraw", "transfer")  # admin is never granted to a bot
BOT_MODES = ("dropin", "token")
BOT_STATUSES = ("active", "revoked", "suspended")
DEFAULT_ALLOW_IPS = ("127.0.0.1/32", "::1/128")


def parse_scopes(text: str | list[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else text
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not scopes:
        raise UsageError("a bot needs at least one scope (read, trade, withdraw, transfer)")
    for s in scopes:
        if s == "admin":
            raise UsageError("the admin scope is never granted to a bot")
        if s not in BOT_SCOPES:
            raise UsageError(f"unknown scope {s[:40]!r}; known: {', '.join(BOT_SCOPES)}")
    return scopes


def parse_cidrs(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    import ipaddress

    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise UsageError(f"invalid CIDR {item[:60]!r} (e.g. 127.0.0.1/32 or ::1/128)") from None
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class BotInfo:
    """A bot as listed: never its secret."""

    name: str
    account: str
    mode: str
    key_type: str | None
    key_id: str | None
    scopes: tuple[str, ...]
    allow_ips: tuple[str, ...]
    status: str
    created_at: float
    revoked_at: float | None
    policy: dict[str, object] | None = None  # the full BotPolicy as JSON (limits beyond scopes and IPs)
    expires_at: float | None = None  # TTL: the credential is refused from then on (renew to extend)
    previous_valid_until: float | None = None  # after a rotation: the old credential's grace end

    def as_json(self) -> dict[str, object]:
        d = {f: getattr(self, f) for f in self.__slots__}
        d["scopes"], d["allow_ips"] = list(self.scopes), list(self.allow_ips)
        return d
