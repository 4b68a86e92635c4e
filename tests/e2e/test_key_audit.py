"""keyproxy key audit: each exchange says what the real key may do; warnings where it exceeds the bots' needs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key

OVER = {  # over-privileged: withdrawals on, no IP restriction
    "binance": {"enableReading": True, "enableSpotAndMarginTrading": True, "enableWithdrawals": True,
                "ipRestrict": False},
    "bybit": {"ips": ["*"], "permissions": {"Wallet": ["AccountTransfer", "Withdraw"], "Spot": ["SpotTrade"]}},
    "okx": {"read_only": True, "trade": True, "withdraw": True},
    "kraken": {"funds_withdraw": True},
    "coinbase": {"can_view": True, "can_trade": True, "can_transfer": True},
    "hyperliquid": {"master": True},  # the account's own key: it can withdraw
}
TIGHT = {  # what a trading bot needs, IP-restricted where the exchange can say so
    "binance": {"enableReading": True, "enableSpotAndMarginTrading": True, "enableWithdrawals": False,
                "ipRestrict": True},
    "bybit": {"ips": ["127.0.0.1"], "permissions": {"Wallet": [], "Spot": ["SpotTrade"]}},
    "okx": {"read_only": True, "trade": True, "withdraw": False, "ip": "127.0.0.1"},
    "kraken": {"funds_withdraw": False, "ip_allowlist": ["127.0.0.1"]},
    "coinbase": {"can_view": True, "can_trade": True, "can_transfer": False},
    "hyperliquid": {},  # an agent the master approved: it trades, cannot withdraw
}
KEY_TYPE = {"coinbase": "ec", "hyperliquid": "eth"}


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("keyaudit"))
    keys = {}
    for ex in OVER:
        keys[f"{ex}-over"] = new_real_key(KEY_TYPE.get(ex, "hmac"), permissions=OVER[ex], exchange=ex)
        keys[f"{ex}-tight"] = new_real_key(KEY_TYPE.get(ex, "hmac"), permissions=TIGHT[ex], exchange=ex)
    spare = {ex: new_real_key(KEY_TYPE.get(ex, "hmac"), exchange=ex) for ex in ("binance", "kraken", "okx")}
    try:
        dev.start_emulator(list(keys.values()) + list(spare.values()))  # spares: known there, not yet here
        dev.init()
        for name, key in keys.items():
            dev.add_account(name, key)
            dev.add_bot(f"{name}-bot", name, "read,trade")
        dev.spare_keys = spare  # type: ignore[attr-defined]
        yield dev
    finally:
        dev.close()


def check(results: dict) -> None:  # type: ignore[type-arg]
    for ex in OVER:
        over, tight = results[f"{ex}-over"], results[f"{ex}-tight"]
        assert not over["ok"] and any("withdraw" in w for w in over["warnings"]), (ex, over)
        assert tight["ok"], (ex, tight)


def test_key_audit_with_the_daemon_stopped(audited: DevStack) -> None:
    out = audited.cli("key", "audit", "--json", check=False)
    assert out.returncode == 1  # warnings exit non-zero
    check(json.loads(out.stdout))


def test_key_audit_through_the_daemon(audited: DevStack) -> None:
    audited.start_daemon()
    out = audited.cli("key", "audit", "--json", check=False)
    assert out.returncode == 1
    check(json.loads(out.stdout))
    one = audited.cli("key", "audit", "binance-tight")
    assert one.returncode == 0 and "binance-tight: ok" in one.stdout
    agent = json.loads(audited.cli("key", "audit", "hyperliquid-tight", "--json").stdout)["hyperliquid-tight"]
    assert agent["signer"]["role"] == "agent" and agent["signer"]["approved"] and agent["permissions"]["expires_at"]
    master = json.loads(audited.cli("key", "audit", "hyperliquid-over", "--json", check=False).stdout)
    assert master["hyperliquid-over"]["signer"]["role"] == "master"


@pytest.mark.parametrize("exchange", ["binance", "kraken", "okx"])
def test_key_add_verify_adds_only_a_key_the_exchange_accepts(audited: DevStack, exchange: str) -> None:
    held = audited.spare_keys[exchange]  # type: ignore[attr-defined]  # a key the emulator knows
    unknown = new_real_key(KEY_TYPE.get(exchange, "hmac"), exchange=exchange)  # one it was never given
    args = ("--exchange", exchange, "--base-url", audited.emulator_url, "--insecure-upstream", "--verify")
    bad = audited.cli("key", "add", f"{exchange}-unknown", *args, input=json.dumps(unknown.credentials), check=False)
    assert bad.returncode == 1 and "the exchange did not accept the key" in bad.stderr, bad.stderr
    assert "nothing was added" in bad.stderr and f"{exchange}-unknown" not in audited.cli("key", "list").stdout
    good = audited.cli("key", "add", f"{exchange}-verified", *args, input=json.dumps(held.credentials), check=False)
    assert good.returncode == 0, good.stderr
