"""Real, unmodified ccxt ``binance()`` against the emulator, for each key type.

ccxt takes an Ed25519 or RSA key as a PKCS#8 PEM in ``secret`` (its
``binance.sign()``: a secret containing "PRIVATE KEY" is RSA if longer than
120 characters, otherwise Ed25519). Only the hosts in ``urls['api']`` are
pointed at the emulator; no ccxt option is changed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import pytest

from keyproxy.emulator.keys import new_emulated_key


def point_at(exchange: ccxt.Exchange, base_url: str) -> None:
    """Replace scheme+host of every API URL by the emulator's, keeping the path."""
    for name, url in exchange.urls["api"].items():
        exchange.urls["api"][name] = base_url + urlsplit(url).path


@pytest.mark.parametrize("key_type", ["hmac", "ed25519", "rsa"])
async def test_ccxt_round_trip(emulator_factory, key_type):
    key, secret = new_emulated_key(key_type, balances={"USDT": "10000", "BTC": "1"})
    emu = await emulator_factory([key])
    exchange = ccxt.binance({"apiKey": key.api_key, "secret": secret})
    point_at(exchange, emu.url)
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "ETH/BTC", "BTC/USDT:USDT", "BTC/USD:BTC"} <= set(markets)
        assert exchange.currencies["USDT"]["networks"]["ERC20"]["withdraw"] is True
        balance = await exchange.fetch_balance()
        assert balance["USDT"]["free"] == 10000 and balance["BTC"]["total"] == 1
        order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
        assert order["status"] == "open"
        open_orders = await exchange.fetch_open_orders("BTC/USDT")
        assert [o["id"] for o in open_orders] == [order["id"]]
        assert (await exchange.fetch_balance())["USDT"]["used"] == 50
        cancelled = await exchange.cancel_order(order["id"], "BTC/USDT")
        assert cancelled["status"] == "canceled"
        assert await exchange.fetch_open_orders("BTC/USDT") == []
    finally:
        await exchange.close()

    journal = emu.journal.entries()
    assert journal and all(e["status"] == 200 for e in journal), [
        e for e in journal if e["status"] != 200
    ]
    private = [e for e in journal if e["api_key"] is not None]
    assert {e["path"] for e in private} >= {
        "/sapi/v1/capital/config/getall",
        "/sapi/v1/margin/allPairs",
        "/sapi/v1/margin/isolated/allPairs",
        "/api/v3/account",
        "/api/v3/order",
        "/api/v3/openOrders",
    }
    assert all(e["api_key"] == key.api_key and e["signature_verified"] is True for e in private)
    public = {e["path"] for e in journal if e["api_key"] is None}
    assert public == {"/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"}


async def test_ccxt_futures_market_order_and_withdraw(emulator_factory):
    key, secret = new_emulated_key("ed25519", permissions={"enableWithdrawals": True})
    emu = await emulator_factory([key])
    exchange = ccxt.binance({"apiKey": key.api_key, "secret": secret})
    point_at(exchange, emu.url)
    try:
        await exchange.set_leverage(10, "BTC/USDT:USDT")
        order = await exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.002)
        assert order["status"] == "closed" and order["filled"] == 0.002
        swap = await exchange.fetch_balance({"type": "swap"})
        assert swap["USDT"]["free"] == 10000
        market = await exchange.create_order("ETH/USDT", "market", "buy", 0.1)
        assert market["cost"] == 300
        withdrawal = await exchange.withdraw(
            "USDT", 100, "0x" + "b" * 40, params={"network": "ETH"}
        )
        assert withdrawal["id"]
        assert (await exchange.fetch_balance())["USDT"]["free"] == 10000 - 300 - 100
    finally:
        await exchange.close()
    assert all(e["signature_verified"] is True for e in emu.journal.entries() if e["api_key"])
