"""Vault records an older keyproxy or the exchange left in a state the operator must get out of (session 35's
review): a bot policy stored unreadable refuses that bot only and is repaired by setting the value again; a key
the exchange revoked is replaced by a rotation."""

from __future__ import annotations

import pytest

from keyproxy.admin.controls import Controls
from keyproxy.errors import StateError
from keyproxy.exchanges import default_adapters
from keyproxy.proxy.registry import build_snapshot
from keyproxy.secret import Secret
from keyproxy.vault import Vault
from keyproxy.vault.bots import NewBot
from tests.vault.helpers import hmac_account


def _bot(name: str) -> NewBot:
    return NewBot(name, "main", "dropin", ("read", "trade"), ("127.0.0.1/32",), key_type="hmac",
                  key_id=f"KP-{name}", secret=Secret(f"secret-{name}"))


def test_an_unreadable_policy_leaves_out_its_bot_only_and_is_repaired_by_setting_it(vault: Vault) -> None:
    vault.add_account(hmac_account("main"))
    vault.add_bot(_bot("good"))
    vault.add_bot(_bot("bad"))
    vault.set_bot_policy("bad", {"scopes": ["read", "trade"], "allow_ips": ["127.0.0.1/32"],
                                 "requests_per_second": "Infinity"})
    snap = build_snapshot(vault, default_adapters())
    assert {entry.info.name for entry in snap.bots_by_key.values()} == {"good"}  # "bad" refused as unknown
    controls = Controls(vault, default_adapters(), "http://127.0.0.1:1")
    with pytest.raises(StateError, match="stored policy cannot be read .*requests_per_second"):
        controls.set_bot("bad", {"burst": "3"})  # another key: the unreadable one is not silently dropped
    controls.revoke_bot("good")  # another bot's change is never blocked by it
    controls.set_bot("bad", {"requests_per_second": "2"})
    snap = build_snapshot(vault, default_adapters())
    [entry] = [e for e in snap.bots_by_key.values() if e.info.name == "bad"]
    assert entry.policy.requests_per_second == 2.0


def test_a_rotation_replaces_a_revoked_key_for_good(vault: Vault) -> None:
    """`key restore` of a key the exchange revoked says "rotate it instead", and a rotation left the account
    revoked: removing it, with its bots, was the only way out (session 35's review). The rotation makes it active
    and forgets the revoked versions, so no rollback returns to one."""
    from keyproxy.vault import Credentials

    vault.add_account(hmac_account("main"))
    vault.set_account_status("main", "revoked")
    with pytest.raises(StateError, match="rotate it instead"):
        vault.set_account_status("main", "active")
    info = vault.rotate_account("main", Credentials(api_key=Secret("AK-new"), secret=Secret("SK-new")))
    assert info.status == "active" and info.version == 2
    with pytest.raises(StateError, match="no previous key version"):
        vault.rollback_account("main")
    assert vault.credentials("main").api_key.reveal() == b"AK-new"


def test_a_number_stored_past_todays_bounds_reads_as_the_nearest_bound(vault: Vault) -> None:
    """An older keyproxy stored `daily_notional_cap=1e16` (a cap meaning "none") and 31-digit values; after the
    bounds of session 35 the daemon left such a bot out (its regression review). Read as the nearest bound now."""
    vault.add_account(hmac_account("main"))
    vault.add_bot(_bot("old"))
    vault.set_bot_policy("old", {"scopes": ["read", "trade"], "allow_ips": ["127.0.0.1/32"],
                                 "daily_notional_cap": "1E+16", "max_position": "0." + "1" * 31,
                                 "requests_per_second": "1e-13"})
    [entry] = build_snapshot(vault, default_adapters()).bots_by_key.values()
    assert str(entry.policy.daily_notional_cap) == "1E+15" and entry.policy.requests_per_second == 1e-12
    assert len(entry.policy.max_position.as_tuple().digits) == 30
