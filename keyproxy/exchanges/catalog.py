"""Which exchanges keyproxy knows and which key types each one issues.

A pure table: `key add` validates against it before anything is written.
Adapters for the proxy live in sibling modules, one per exchange.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExchangeKeyRules:
    key_types: tuple[str, ...]
    needs_passphrase: bool = False


EXCHANGES: dict[str, ExchangeKeyRules] = {
    "binance": ExchangeKeyRules(key_types=("hmac", "ed25519", "rsa")),
    "bybit": ExchangeKeyRules(key_types=("hmac", "rsa")),
    "coinbase": ExchangeKeyRules(key_types=("ec", "ed25519")),
    # an Ethereum key (the master's, or an agent the master approved) and the master's address as api_key
    "hyperliquid": ExchangeKeyRules(key_types=("eth",)),
    "kraken": ExchangeKeyRules(key_types=("hmac",)),
    "okx": ExchangeKeyRules(key_types=("hmac",), needs_passphrase=True),
}

KEY_TYPES = ("hmac", "ed25519", "rsa", "ec", "eth")
