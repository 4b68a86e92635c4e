"""What a real key may do, as each exchange reports it, and what the account's bots need.

Pure: each adapter names its exchange's key-info endpoint (`key_info_request`) and reads the answer into
`KeyPermissions` (`key_permissions`); `findings` compares it with the least privilege the bots need. The
request itself is made by `keyproxy key audit` and `doctor` (rotation.py, proxy/own_calls.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

def hyperliquid_request(master: str) -> tuple[str, str, str, bytes]:
    """Hyperliquid has no key-info endpoint: a signer's standing is the master's `extraAgents` list (public)."""
    return ("POST", "/info", "", json.dumps({"type": "extraAgents", "user": master.lower()}).encode())


def hyperliquid_standing(body: bytes, signer: str, master: str) -> tuple[KeyPermissions | None, str]:
    """What the vault's Hyperliquid key is: the master's own key (it can withdraw), an agent the master
    approved (trades only; `expires_at` its validUntil), or neither (None: it cannot act for the account)."""
    if signer == master.lower():
        return KeyPermissions(trade=True, withdraw=True, transfer=True, ip_restricted=None, expires_at=None), \
            "the vault holds the account's master key (it can withdraw); an approved agent key is the safer choice"
    agents = json_or_none(body)
    if not isinstance(agents, list):
        raise ValueError("the extraAgents answer is not a list")
    for agent in agents:
        if isinstance(agent, dict) and str(agent.get("address", "")).lower() == signer:
            until = agent.get("validUntil")
            expires = until / 1000 if isinstance(until, int | float) and not isinstance(until, bool) else None
            return KeyPermissions(trade=True, withdraw=False, transfer=False, ip_restricted=None,
                                  expires_at=expires), f"an agent of {master.lower()} named {agent.get('name')!r}"
    return None, f"the signer {signer} is not an approved agent of {master.lower()} (never approved, or expired)"


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """None: the exchange does not say."""

    trade: bool | None
    withdraw: bool | None
    transfer: bool | None
    ip_restricted: bool | None
    expires_at: float | None


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ValueError("the key-info answer is not JSON") from None


def iso_time(text: Any) -> float | None:
    from datetime import datetime

    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def findings(perms: KeyPermissions, bot_scopes: set[str], now: float | None = None,
             expiry_warning: float = 7 * 86400) -> list[str]:
    """Warnings where the real key can do more than the account's bots need, or is about to expire."""
    now = time.time() if now is None else now
    out = []
    if perms.withdraw and "withdraw" not in bot_scopes:
        out.append("the key can withdraw but no bot of this account has the withdraw scope")
    if perms.transfer and "transfer" not in bot_scopes:
        out.append("the key can transfer funds but no bot of this account has the transfer scope")
    if perms.trade and "trade" not in bot_scopes:
        out.append("the key can trade but no bot of this account has the trade scope")
    if perms.ip_restricted is False:
        out.append("the key has no IP restriction at the exchange")
    if perms.expires_at is not None and perms.expires_at - now < expiry_warning:
        out.append("the key expires within 7 days" if perms.expires_at > now else "the key has expired")
    return out
