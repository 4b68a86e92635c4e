"""Which exchanges keyproxy knows, which key types each one issues and which request headers carry its
credentials.

A pure table, light to import (no adapter is loaded): `key add` validates against it before anything is
written, and the log redactor masks every header it names (audit/log.py). Adapters for the proxy live in
sibling modules, one per exchange; tests/exchanges/test_catalog.py holds them to it (every credential
header an adapter sends is named here, every key type here is one its adapter issues).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExchangeKeyRules:
    key_types: tuple[str, ...]
    needs_passphrase: bool = False
    # request headers (lower case) that carry a key id, signature, passphrase or token, the bot's or the real one
    credential_headers: tuple[str, ...] = ()


EXCHANGES: dict[str, ExchangeKeyRules] = {
    "binance": ExchangeKeyRules(key_types=("hmac", "ed25519", "rsa"), credential_headers=("x-mbx-apikey",)),
    "bybit": ExchangeKeyRules(key_types=("hmac", "rsa"), credential_headers=("x-bapi-api-key", "x-bapi-sign")),
    "coinbase": ExchangeKeyRules(key_types=("ec", "ed25519"), credential_headers=(
        "authorization", "cb-access-key", "cb-access-sign", "cb-access-passphrase")),
    # an Ethereum key (the master's, or an agent the master approved) and the master's address as api_key;
    # its signatures travel in the body, never in a header
    "hyperliquid": ExchangeKeyRules(key_types=("eth",)),
    "kraken": ExchangeKeyRules(key_types=("hmac",), credential_headers=("api-key", "api-sign")),
    "okx": ExchangeKeyRules(key_types=("hmac",), needs_passphrase=True,
                            credential_headers=("ok-access-key", "ok-access-sign", "ok-access-passphrase")),
}


def credential_headers() -> frozenset[str]:
    """Every exchange's credential header names: what the log redactor masks by name."""
    return frozenset(name for rules in EXCHANGES.values() for name in rules.credential_headers)

KEY_TYPES = ("hmac", "ed25519", "rsa", "ec", "eth")
