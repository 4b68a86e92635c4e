"""The exchanges package's only door to Ethereum signing: secp256k1 keys, EIP-712 typed data, msgpack.

Hyperliquid signs with Ethereum keys (hyperliquid.py). Everything here is the field's own libraries
(`eth-account` for EIP-712 hashing, signing and recovery, `eth-utils` for Keccak-256, `msgpack` for the
action encoding); nothing is hand-written. As in `_sign.py`, recovery never raises on a bad signature:
it answers None, so a caller cannot forget to catch.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import msgpack


@cache
def _eth() -> Any:
    """eth-account, imported on first use: it costs ~0.4 s, which every CLI command would pay otherwise."""
    import eth_account
    import eth_account.messages
    import eth_utils

    return eth_account.Account, eth_account.messages.encode_typed_data, eth_utils.keccak


def warm() -> None:
    """Import eth-account now (the daemon, before its first Hyperliquid request)."""
    _eth()


ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def is_address(text: object) -> bool:
    """A 0x-prefixed 20-byte hex address (any case)."""
    if not isinstance(text, str) or len(text) != 42 or not text.startswith("0x"):
        return False
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        return False
    return True


def address_of(private_key: bytes) -> str:
    """The lower-case address of a 32-byte private key (ValueError when it is not one)."""
    return str(_signer(private_key).address).lower()


def parse_private_key(text: bytes) -> bytes:
    """A 0x-prefixed (or bare) 64-hex-digit secp256k1 private key as 32 bytes; ValueError otherwise."""
    raw = text.strip()
    if raw[:2] in (b"0x", b"0X"):
        raw = raw[2:]
    if len(raw) != 64:
        raise ValueError("private_key must be 32 bytes as 64 hex digits (0x...)")
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("private_key must be 32 bytes as 64 hex digits (0x...)") from None
    address_of(key)  # out of the curve's range (0, or above n) is ValueError here
    return key


def new_private_key() -> tuple[str, str]:
    """(0x-hex private key, lower-case address) of a fresh key."""
    account = _eth()[0].create()
    return "0x" + bytes(account.key).hex(), str(account.address).lower()


def action_hash(action: Any, vault_address: str | None, nonce: int, expires_after: int | None) -> bytes:
    """Hyperliquid's L1 action hash: keccak(msgpack(action) || nonce (8 bytes BE) || vault flag [+ address]
    || [0x00 + expiresAfter (8 bytes BE)]). `action` keeps the key order it was sent in: msgpack maps are
    ordered, so a reordered action is another hash."""
    data = msgpack.packb(action)
    data += nonce.to_bytes(8, "big")
    if vault_address is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault_address[2:])
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    return bytes(_eth()[2](data))


def l1_typed_data(connection_id: bytes, mainnet: bool) -> dict[str, Any]:
    """The "phantom agent" an L1 action is signed as: EIP-712 `Agent{source, connectionId}`, chain 1337."""
    return {
        "domain": {"chainId": 1337, "name": "Exchange", "verifyingContract": ZERO_ADDRESS, "version": "1"},
        "types": {"Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}],
                  "EIP712Domain": _DOMAIN_TYPES},
        "primaryType": "Agent",
        "message": {"source": "a" if mainnet else "b", "connectionId": connection_id},
    }


def user_typed_data(primary_type: str, fields: list[dict[str, str]], message: dict[str, Any],
                    chain_id: int) -> dict[str, Any]:
    """A user-signed action's typed data (`HyperliquidSignTransaction` domain, the wallet's chain id)."""
    return {
        "domain": {"name": "HyperliquidSignTransaction", "version": "1", "chainId": chain_id,
                   "verifyingContract": ZERO_ADDRESS},
        "types": {primary_type: fields, "EIP712Domain": _DOMAIN_TYPES},
        "primaryType": primary_type,
        "message": message,
    }


@lru_cache(maxsize=64)
def _signer(private_key: bytes) -> Any:
    """The library's account object for a key, made once: deriving its public key costs ~0.3 ms."""
    return _eth()[0].from_key(private_key)


def sign_typed(typed: dict[str, Any], private_key: bytes) -> dict[str, Any]:
    """{r, s, v} as Hyperliquid's SDK sends them (r and s as minimal 0x-hex)."""
    _, encode, _ = _eth()
    signed = _signer(private_key).sign_message(encode(full_message=typed))
    return {"r": hex(signed.r), "s": hex(signed.s), "v": signed.v}


def recover_typed(typed: dict[str, Any], signature: object) -> str | None:
    """The lower-case address that signed `typed`, or None for anything that is not a valid signature."""
    if not isinstance(signature, dict):
        return None
    r, s, v = signature.get("r"), signature.get("s"), signature.get("v")
    if not (isinstance(r, str) and isinstance(s, str) and isinstance(v, int) and not isinstance(v, bool)):
        return None
    if not (r.startswith("0x") and s.startswith("0x") and 2 < len(r) <= 66 and 2 < len(s) <= 66 and v in (27, 28)):
        return None
    account, encode, _ = _eth()
    try:
        address = account.recover_message(encode(full_message=typed), vrs=(v, int(r, 16), int(s, 16)))
    except Exception:  # noqa: BLE001 - eth-keys raises several kinds for an invalid signature: none is one
        return None
    return str(address).lower()
