"""Accounts file for the exchange emulator.

The emulator plays the *exchange*, so it only ever holds what an exchange
holds: the API key, the HMAC secret (HMAC keys are symmetric, the exchange
knows the secret) or the *public* key (Ed25519/RSA), the key's permissions
and the account's starting balances.

File format (JSON)::

    {"keys": [{"exchange": "binance", "api_key": "...",
               "key_type": "hmac" | "ed25519" | "rsa",
               "secret": "<hmac secret>",          # hmac only
               "public_key": "<PEM>",              # ed25519 / rsa only
               "permissions": {"enableReading": true, ...},
               "balances": {"USDT": "10000", "BTC": "1"},
               "account": "main"}]}                # optional, Binance only: keys with the
                                                   # same account share balances and orders

Without ``account`` each key is an account of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

KEY_TYPES = ("hmac", "ed25519", "rsa", "ec", "eth")


class AccountsError(ValueError):
    """The accounts file is unusable; the message says which entry and why."""


@dataclass
class EmulatedKey:
    """One API key registered at the emulated exchange, with its account."""

    exchange: str
    api_key: str
    key_type: str
    secret: str | None = None
    public_key: str | None = None
    passphrase: str | None = None  # exchanges whose keys also carry a passphrase (OKX)
    permissions: dict[str, Any] = field(default_factory=dict)
    balances: dict[str, Decimal] = field(default_factory=dict)
    account: str | None = None  # keys of one exchange account share its state (Binance emulator)


def _fail(index: int, message: str) -> AccountsError:
    return AccountsError(f"accounts: keys[{index}]: {message}")


def _parse_balances(index: int, raw: Any) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(index, "'balances' must be an object of asset -> amount")
    out: dict[str, Decimal] = {}
    for asset, amount in raw.items():
        if not isinstance(asset, str) or not asset:
            raise _fail(index, f"balance asset name {asset!r} is not a non-empty string")
        if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
            raise _fail(index, f"balance of {asset} must be a decimal string")
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise _fail(index, f"balance of {asset} is not a decimal: {amount!r}") from None
        if not value.is_finite() or value < 0:
            raise _fail(index, f"balance of {asset} must be a finite amount >= 0")
        out[asset.upper()] = value
    return out


def _check_public_key(index: int, key_type: str, pem: Any) -> str:
    if not isinstance(pem, str) or "BEGIN PUBLIC KEY" not in pem:
        raise _fail(index, f"{key_type} key needs 'public_key' as a PEM 'BEGIN PUBLIC KEY' block")
    try:
        loaded = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _fail(index, f"'public_key' is not a loadable PEM public key: {exc}") from None
    expected = {"ed25519": ed25519.Ed25519PublicKey, "rsa": rsa.RSAPublicKey,
                "ec": ec.EllipticCurvePublicKey}[key_type]
    if not isinstance(loaded, expected):
        raise _fail(index, f"'public_key' is not an {key_type} public key")
    return pem


def parse_key(index: int, raw: Any) -> EmulatedKey:
    """Validate one entry of the ``keys`` list."""
    if not isinstance(raw, dict):
        raise _fail(index, "entry must be an object")
    exchange = raw.get("exchange")
    if not isinstance(exchange, str) or not exchange:
        raise _fail(index, "'exchange' must be a non-empty string")
    api_key = raw.get("api_key")
    if not isinstance(api_key, str) or not api_key:
        raise _fail(index, "'api_key' must be a non-empty string")
    key_type = raw.get("key_type", "hmac")
    if key_type not in KEY_TYPES:
        raise _fail(index, f"'key_type' must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    secret = raw.get("secret")
    public_key = raw.get("public_key")
    if key_type == "hmac":
        if not isinstance(secret, str) or not secret:
            raise _fail(index, "hmac key needs a non-empty 'secret'")
        if public_key is not None:
            raise _fail(index, "hmac key must not have 'public_key'")
    elif key_type == "eth":  # Hyperliquid: the api_key is the user's address; signers are recovered
        if secret is not None or public_key is not None:
            raise _fail(index, "eth key has neither 'secret' nor 'public_key' (its address is the api_key)")
    else:
        if secret is not None:
            raise _fail(
                index,
                f"{key_type} key must not have 'secret' (the exchange only knows the public key)",
            )
        public_key = _check_public_key(index, key_type, public_key)
    permissions = raw.get("permissions", {})
    if not isinstance(permissions, dict):
        raise _fail(index, "'permissions' must be an object")
    passphrase = raw.get("passphrase")
    if passphrase is not None and (not isinstance(passphrase, str) or not passphrase):
        raise _fail(index, "'passphrase' must be a non-empty string")
    account = raw.get("account")
    if account is not None and (not isinstance(account, str) or not account):
        raise _fail(index, "'account' must be a non-empty string")
    return EmulatedKey(
        exchange=exchange.lower(),
        api_key=api_key,
        key_type=key_type,
        secret=secret,
        public_key=public_key,
        passphrase=passphrase,
        permissions=dict(permissions),
        balances=_parse_balances(index, raw.get("balances")),
        account=account,
    )


def parse_accounts(data: Any) -> list[EmulatedKey]:
    """Validate a decoded accounts document and return its keys."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise AccountsError('accounts: top level must be an object {"keys": [...]}')
    keys = [parse_key(i, raw) for i, raw in enumerate(data["keys"])]
    seen: set[tuple[str, str]] = set()
    for i, key in enumerate(keys):
        ident = (key.exchange, key.api_key)
        if ident in seen:
            raise _fail(i, f"api_key is listed twice for exchange {key.exchange}")
        seen.add(ident)
    return keys


def load_accounts(path: str | Path) -> list[EmulatedKey]:
    """Read and validate an accounts JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsError(f"accounts: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AccountsError(f"accounts: {path} is not valid JSON: {exc}") from None
    return parse_accounts(data)


def dump_accounts(keys: list[EmulatedKey]) -> dict[str, Any]:
    """Inverse of :func:`parse_accounts`, for tests that write a file."""
    out = []
    for key in keys:
        entry: dict[str, Any] = {
            "exchange": key.exchange,
            "api_key": key.api_key,
            "key_type": key.key_type,
            "permissions": dict(key.permissions),
            "balances": {asset: str(amount) for asset, amount in key.balances.items()},
        }
        if key.secret is not None:
            entry["secret"] = key.secret
        if key.public_key is not None:
            entry["public_key"] = key.public_key
        if key.passphrase is not None:
            entry["passphrase"] = key.passphrase
        if key.account is not None:
            entry["account"] = key.account
        out.append(entry)
    return {"keys": out}
