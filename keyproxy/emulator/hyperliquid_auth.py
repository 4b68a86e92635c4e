"""Hyperliquid's signature checks, as the exchange makes them (emulator side).

Written from Hyperliquid's docs "Signing" and "Nonces and API wallets"
(https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/nonces-and-api-wallets), apart from
keyproxy's adapter: it recovers the signer of each action with eth-account and msgpack directly.

* An L1 action (orders, cancels, ...) recovers to an address that must be a user (master) or an agent
  ("API wallet") that user approved; the action then acts for that user.
* A user-signed action (withdraw3, usdSend, spotSend, usdClassTransfer, approveAgent, approveBuilderFee)
  must be signed by the user itself: an agent cannot move funds or approve agents.
* Nonces are kept per signer: the 100 highest; a new one must be unseen, above the smallest kept once 100
  are kept, and within (now - 2 days, now + 1 day).
"""

from __future__ import annotations

from typing import Any

import msgpack
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

NONCES_KEPT = 100
DAY_MS = 86_400_000
_ZERO = "0x0000000000000000000000000000000000000000"
_DOMAIN = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
           {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]
_CHAIN = {"name": "hyperliquidChain", "type": "string"}
_DEST = {"name": "destination", "type": "string"}
_AMT = {"name": "amount", "type": "string"}
_TIME = {"name": "time", "type": "uint64"}
_NONCE = {"name": "nonce", "type": "uint64"}
USER_SIGNED: dict[str, tuple[str, list[dict[str, str]], str]] = {
    "withdraw3": ("HyperliquidTransaction:Withdraw", [_CHAIN, _DEST, _AMT, _TIME], "time"),
    "usdSend": ("HyperliquidTransaction:UsdSend", [_CHAIN, _DEST, _AMT, _TIME], "time"),
    "spotSend": ("HyperliquidTransaction:SpotSend", [_CHAIN, _DEST, {"name": "token", "type": "string"}, _AMT, _TIME],
                 "time"),
    "usdClassTransfer": ("HyperliquidTransaction:UsdClassTransfer",
                         [_CHAIN, _AMT, {"name": "toPerp", "type": "bool"}, _NONCE], "nonce"),
    "approveAgent": ("HyperliquidTransaction:ApproveAgent",
                     [_CHAIN, {"name": "agentAddress", "type": "address"}, {"name": "agentName", "type": "string"},
                      _NONCE], "nonce"),
    "approveBuilderFee": ("HyperliquidTransaction:ApproveBuilderFee",
                          [_CHAIN, {"name": "maxFeeRate", "type": "string"}, {"name": "builder", "type": "address"},
                           _NONCE], "nonce"),
}


class HyperliquidError(Exception):
    """An `{"status": "err", "response": message}` answer."""


def _recover(typed: dict[str, Any], signature: Any) -> str:
    try:
        vrs = (int(signature["v"]), int(signature["r"], 16), int(signature["s"], 16))
        return str(Account.recover_message(encode_typed_data(full_message=typed), vrs=vrs)).lower()
    except Exception:  # noqa: BLE001 - any malformed signature is the same answer
        raise HyperliquidError("Invalid signature") from None


def l1_signer(action: Any, nonce: int, vault: str | None, expires_after: int | None, signature: Any) -> str:
    data = msgpack.packb(action) + nonce.to_bytes(8, "big")
    data += b"\x00" if vault is None else b"\x01" + bytes.fromhex(vault[2:])
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    typed = {"domain": {"chainId": 1337, "name": "Exchange", "verifyingContract": _ZERO, "version": "1"},
             "types": {"Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}],
                       "EIP712Domain": _DOMAIN},
             "primaryType": "Agent", "message": {"source": "a", "connectionId": keccak(data)}}
    return _recover(typed, signature)


def user_signer(action: dict[str, Any], nonce: int, signature: Any) -> str:
    primary, fields, nonce_field = USER_SIGNED[action["type"]]
    if action.get("hyperliquidChain") != "Mainnet":
        raise HyperliquidError("Invalid hyperliquidChain")
    if action.get(nonce_field) != nonce:
        raise HyperliquidError("Nonce in action does not match request nonce")
    try:
        chain_id = int(action["signatureChainId"], 16)
    except (KeyError, TypeError, ValueError):
        raise HyperliquidError("Invalid signatureChainId") from None
    typed = {"domain": {"name": "HyperliquidSignTransaction", "version": "1", "chainId": chain_id,
                        "verifyingContract": _ZERO},
             "types": {primary: fields, "EIP712Domain": _DOMAIN}, "primaryType": primary, "message": action}
    return _recover(typed, signature)


class NonceSet:
    """The 100 highest nonces of each signer, as Hyperliquid keeps them."""

    def __init__(self) -> None:
        self.kept: dict[str, list[int]] = {}

    def use(self, signer: str, nonce: int, now_ms: int) -> None:
        if not now_ms - 2 * DAY_MS < nonce < now_ms + DAY_MS:
            raise HyperliquidError(f"Invalid nonce: nonce {nonce} is outside the allowed window")
        kept = self.kept.setdefault(signer, [])
        if nonce in kept or (len(kept) >= NONCES_KEPT and nonce <= kept[0]):
            raise HyperliquidError(f"Invalid nonce: duplicate or too low nonce {nonce}")
        kept.append(nonce)
        kept.sort()
        del kept[:-NONCES_KEPT]
