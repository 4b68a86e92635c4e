"""Positions on Hyperliquid (docs/risk.md), with the official SDK through keyproxy: a filled order's
answer moves the position at once, a resting order counts at full size until its fills are reported, the
daily loss limit holds, and keyproxy's own `userFills` read settles a fill that happened while it was down."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from keyproxy.emulator.devstack import DevStack, new_real_key
from tests.e2e.test_risk_positions import eventually, series

pytest.importorskip("hyperliquid")
MID = 65000  # the emulator's BTC mid


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("risk-hl"))
    try:
        stack.serve_account("hl", new_real_key("eth", exchange="hyperliquid"))
        yield stack
    finally:
        stack.close()


def sdk(dev: DevStack, name: str, *settings: str) -> Any:
    from eth_account import Account
    from hyperliquid.exchange import Exchange

    creds = dev.add_bot(name, "hl", "read,trade", *[x for s in settings for x in ("--set", s)])
    return Exchange(Account.from_key(creds["private_key"]), creds["base_url"], account_address=creds["wallet_address"])


def set_mid(dev: DevStack, price: float) -> None:
    req = urllib.request.Request(f"{dev.emulator_url}/_emulator/price", method="POST", data=json.dumps(
        {"exchange": "hyperliquid", "symbol": "BTC", "price": str(price)}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def position(dev: DevStack, name: str) -> float | None:
    return series(dev, "keyproxy_bot_position", bot=name, scope="perp:BTC")


def test_filled_and_resting_orders_against_max_position(dev: DevStack) -> None:
    from hyperliquid.utils.error import ClientError

    set_mid(dev, MID)
    ex = sdk(dev, "hlsized", "max_position=0.01")
    done = ex.order("BTC", True, 0.006, MID * 1.01, {"limit": {"tif": "Gtc"}})
    assert "filled" in done["response"]["data"]["statuses"][0]
    assert eventually(lambda: position(dev, "hlsized") == 0.006), position(dev, "hlsized")
    rest = ex.order("BTC", True, 0.003, MID * 0.9, {"limit": {"tif": "Gtc"}})  # 0.006 + 0.003 <= 0.01
    oid = rest["response"]["data"]["statuses"][0]["resting"]["oid"]
    with pytest.raises(ClientError) as refused:  # 0.006 + 0.003 resting + 0.002 > 0.01
        ex.order("BTC", True, 0.002, MID * 0.9, {"limit": {"tif": "Gtc"}})
    assert "position_exceeded" in str(refused.value.args)
    ex.cancel("BTC", oid)
    ex.order("BTC", True, 0.002, MID * 0.9, {"limit": {"tif": "Gtc"}})  # the cancel freed its room


def test_the_daily_loss_limit_on_a_perpetual(dev: DevStack) -> None:
    from hyperliquid.utils.error import ClientError

    set_mid(dev, MID)
    ex = sdk(dev, "hlloser", "max_daily_loss=50")
    ex.order("BTC", True, 0.01, MID * 1.01, {"limit": {"tif": "Gtc"}})  # 650 USDC of BTC
    set_mid(dev, MID * 0.99)  # down 6.5: nothing yet
    set_mid(dev, MID * 0.9)  # down 65: past 50
    assert eventually(lambda: series(dev, "keyproxy_anomalies_total", rule="loss_limit", action="halt") == 1)
    with pytest.raises(ClientError) as refused:
        ex.order("BTC", True, 0.001, MID * 0.8, {"limit": {"tif": "Gtc"}})
    assert "loss_limit" in str(refused.value.args)
    ex.order("BTC", False, 0.01, MID * 0.85, {"limit": {"tif": "Ioc"}}, reduce_only=True)  # getting out passes
    set_mid(dev, MID)


def test_a_fill_while_keyproxy_was_down_is_settled_by_its_userfills_read(dev: DevStack) -> None:
    set_mid(dev, MID)
    ex = sdk(dev, "hlsleeper")
    ex.order("BTC", True, 0.002, MID * 0.98, {"limit": {"tif": "Gtc"}})  # rests
    assert position(dev, "hlsleeper") is None
    assert dev.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    set_mid(dev, MID * 0.97)  # it fills while keyproxy is down
    dev.start_daemon()
    assert eventually(lambda: position(dev, "hlsleeper") == 0.002), position(dev, "hlsleeper")
    assert (series(dev, "keyproxy_reconciled_fills_total", account="hl") or 0) >= 1
    set_mid(dev, MID)


def test_a_twap_order_is_refused_to_every_bot(dev: DevStack) -> None:
    """Session 15's review: a TWAP (`twapOrder`) fills as child orders its answer never names, so its fills never
    reached the bot's position. Session 18's: no info request lists running TWAPs, so a halt's sweep could not
    stop one, and it kept trading after the halt. Refused to every bot (even reduce-only), nothing sent."""
    from hyperliquid.utils.error import ClientError
    from hyperliquid.utils.signing import get_timestamp_ms, sign_l1_action

    def twap(ex: Any, reduce_only: bool) -> Any:
        action = {"type": "twapOrder", "twap": {"a": 0, "b": True, "s": "0.001", "r": reduce_only, "m": 5,
                                                "t": False}}
        nonce = get_timestamp_ms()
        signature = sign_l1_action(ex.wallet, action, None, nonce, None, False)
        return ex._post_action(action, signature, nonce)

    set_mid(dev, MID)
    for name, settings in (("hltwap-capped", ("max_position=1",)), ("hltwap-free", ())):
        ex = sdk(dev, name, *settings)
        for reduce_only in (False, True):
            start = len(dev.journal())
            with pytest.raises(ClientError) as refused:
                twap(ex, reduce_only)
            assert "bad_request" in str(refused.value.args) and "TWAP" in str(refused.value.args)
            assert [e for e in dev.journal()[start:] if e["path"] == "/exchange"] == []


def test_a_cancel_by_cloid_frees_the_orders_room_at_once(dev: DevStack) -> None:
    """A `cancelByCloid` answer names no oid, so the book kept the order resting until reconciliation reached
    its scope (a minute), and its size blocked the bot's next order under its position cap. The book now knows
    which oid each client id it saw placed names, and frees the order when the cancel is confirmed."""
    from hyperliquid.utils.error import ClientError
    from hyperliquid.utils.types import Cloid

    set_mid(dev, MID)
    ex = sdk(dev, "hlcloid", "max_position=0.01")
    cloid = Cloid.from_str("0x" + "cd" * 16)
    rest = ex.order("BTC", True, 0.009, MID * 0.9, {"limit": {"tif": "Gtc"}}, cloid=cloid)
    assert "resting" in rest["response"]["data"]["statuses"][0], rest
    with pytest.raises(ClientError) as refused:  # 0.009 resting + 0.002 > 0.01
        ex.order("BTC", True, 0.002, MID * 0.9, {"limit": {"tif": "Gtc"}})
    assert "position_exceeded" in str(refused.value.args)
    done = ex.cancel_by_cloid("BTC", cloid)
    assert done["response"]["data"]["statuses"] == ["success"], done
    placed = ex.order("BTC", True, 0.002, MID * 0.9, {"limit": {"tif": "Gtc"}})  # its room is free
    ex.cancel("BTC", placed["response"]["data"]["statuses"][0]["resting"]["oid"])


def test_a_reduce_only_order_reduces_only_the_bots_own_position(dev: DevStack) -> None:
    """Session 23's review (high): the exchange measures reduce-only against the account's position, every bot's on a
    shared account: a bot capped at 0.001 and holding nothing sold another bot's 0.05 long with a reduce-only order,
    which passed as "reducing", and was booked short 0.05, 50 times its cap. A reduce-only order now reduces only
    up to the bot's own position; its own way out still passes."""
    from hyperliquid.utils.error import ClientError

    set_mid(dev, MID)
    owner = sdk(dev, "hlro-owner")
    done = owner.order("BTC", True, 0.05, MID * 1.01, {"limit": {"tif": "Gtc"}})
    assert "filled" in done["response"]["data"]["statuses"][0]
    assert eventually(lambda: position(dev, "hlro-owner") == 0.05)
    capped = sdk(dev, "hlro-capped", "max_position=0.001")
    start = len(dev.journal())
    with pytest.raises(ClientError) as refused:
        capped.order("BTC", False, 0.05, MID * 0.99, {"limit": {"tif": "Ioc"}}, reduce_only=True)
    assert "position_exceeded" in str(refused.value.args)
    assert [e for e in dev.journal()[start:] if e["path"] == "/exchange"] == []
    done = capped.order("BTC", True, 0.001, MID * 1.01, {"limit": {"tif": "Gtc"}})
    assert "filled" in done["response"]["data"]["statuses"][0]
    assert eventually(lambda: position(dev, "hlro-capped") == 0.001)
    out = capped.order("BTC", False, 0.001, MID * 0.99, {"limit": {"tif": "Ioc"}}, reduce_only=True)  # its own
    assert "filled" in out["response"]["data"]["statuses"][0], out
