"""Fresh test credentials shaped like real exchange keys.

Tests of other parts (vault, proxy, e2e) need key material the emulator will
accept; these helpers produce it without touching any real account.
Binance API keys and HMAC secrets are 64 alphanumeric characters; private
keys are PKCS#8 PEM (what Binance documents and what ccxt expects in
``secret``), public keys SubjectPublicKeyInfo PEM (what Binance accepts).
"""

from __future__ import annotations

import secrets
import string
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from keyproxy.emulator.accounts import EmulatedKey

_ALNUM = string.ascii_letters + string.digits


def _random_alnum(length: int = 64) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_api_key() -> str:
    """A random API key in Binance's format (64 alphanumerics)."""
    return _random_alnum(64)


def new_hmac_key() -> str:
    """A random HMAC secret in Binance's format (64 alphanumerics)."""
    return _random_alnum(64)


def _pem_pair(private_key: Any) -> tuple[str, str]:
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private_key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode("ascii")
    )
    return private_pem, public_pem


def new_ed25519_key() -> tuple[str, str]:
    """Return ``(private_pem, public_pem)`` for a new Ed25519 key."""
    return _pem_pair(ed25519.Ed25519PrivateKey.generate())


def new_rsa_key(bits: int = 2048) -> tuple[str, str]:
    """Return ``(private_pem, public_pem)``; Binance accepts 2048 and 4096 bits."""
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=bits))


DEFAULT_PERMISSIONS: dict[str, Any] = {
    "enableReading": True,
    "enableSpotAndMarginTrading": True,
    "enableFutures": True,
    "enableMargin": False,
    "enableWithdrawals": False,
    "ipRestrict": False,
}


def new_emulated_key(
    key_type: str = "hmac",
    *,
    exchange: str = "binance",
    permissions: dict[str, Any] | None = None,
    balances: dict[str, str] | None = None,
) -> tuple[EmulatedKey, str]:
    """Make a key the emulator knows plus the client-side signing secret.

    Returns ``(emulated_key, client_secret)`` where ``client_secret`` is the
    HMAC secret or the private-key PEM, i.e. what a bot (or ccxt's
    ``secret``) would hold.
    """
    perms = dict(DEFAULT_PERMISSIONS)
    perms.update(permissions or {})
    bal = {k.upper(): Decimal(v) for k, v in (balances or {"USDT": "10000", "BTC": "1"}).items()}
    api_key = new_api_key()
    if key_type == "hmac":
        secret = new_hmac_key()
        return EmulatedKey(
            exchange, api_key, "hmac", secret=secret, permissions=perms, balances=bal
        ), secret
    if key_type == "ed25519":
        private_pem, public_pem = new_ed25519_key()
    elif key_type == "rsa":
        private_pem, public_pem = new_rsa_key()
    else:
        raise ValueError(f"unknown key_type {key_type!r}")
    key = EmulatedKey(
        exchange, api_key, key_type, public_key=public_pem, permissions=perms, balances=bal
    )
    return key, private_pem
